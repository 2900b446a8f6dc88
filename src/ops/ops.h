/* The op registry: every op of the model as a forward/backward pair with one
 * signature shared by all backends (ref, avx2, avx512, dnnl).
 *
 * Conventions (llm.c): outputs first, then inputs, then sizes. All tensors are
 * row-major float32. Backward functions ACCUMULATE (+=) into every gradient
 * they write (input and parameter gradients alike), so a tensor used twice
 * simply receives two contributions; gradients are zeroed once per step. A
 * NULL gradient pointer means "not needed" and is skipped.
 *
 * Callers go through an op_table, the chosen implementation of each op, which
 * its owner (a model) fills with ops_table_select() from the CPU's features
 * and any override; there is no process-wide table, so two models in one
 * process may run on different backends or precisions. */
#ifndef TLB_OPS_H
#define TLB_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "ops/op_list.h"
#include "util/error.h"

/* Dropout draws are a pure function of (key, global sample index, element
 * index within the sample), so masks are identical whatever the micro-batch
 * split or thread count, and backward regenerates the mask instead of storing
 * it. rate == 0 means off (the identity). */
typedef struct {
    float rate;
    uint64_t key;    /* per step and per dropout site */
    long sample0;    /* global index of the micro-batch's first sample */
} dropout_ctx;

/* out[M,N] = inp[M,K] @ w[K,N] + bias[N]   (bias may be NULL) */
typedef void (*dense_forward_fn)(float *out, const float *inp, const float *w, const float *bias,
                                 int M, int K, int N);
/* dinp[M,K] += dout @ w^T;  dw[K,N] += inp^T @ dout;  dbias[N] += column sums of dout */
typedef void (*dense_backward_fn)(float *dinp, float *dw, float *dbias, const float *dout,
                                  const float *inp, const float *w, int M, int K, int N);

/* Normalises each of M rows of width D: out = (x - mean) * rstd * gamma + beta,
 * with the biased variance and eps = 1e-5; saves mean[M] and rstd[M]. */
typedef void (*layernorm_forward_fn)(float *out, float *mean, float *rstd, const float *inp,
                                     const float *gamma, const float *beta, int M, int D);
typedef void (*layernorm_backward_fn)(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                      const float *inp, const float *gamma, const float *mean,
                                      const float *rstd, int M, int D);

/* Exact GELU, 0.5 x (1 + erf(x / sqrt 2)), elementwise over n values. */
typedef void (*gelu_forward_fn)(float *out, const float *inp, size_t n);
typedef void (*gelu_backward_fn)(float *dinp, const float *dout, const float *inp, size_t n);

/* Multi-head scaled dot-product attention core for B samples:
 * q[B*Tq, H*K], k and v[B*Tk, H*K] (head h = columns h*K .. h*K+K-1);
 * probs[B, H, Tq, Tk] receives the softmax (before dropout, kept for backward);
 * out[B*Tq, H*K] = dropout(probs) @ v per head. Tk <= TLB_MAX_KEYS.
 * kv_len[B] (NULL: every key) masks padded keys: sample b attends to its first
 * kv_len[b] keys (0..Tk) only; the others get probability exactly 0, and
 * with none a query's probabilities and output are 0. Backward needs no mask:
 * it reads probs, whose zeros pass no gradient to masked keys. */
#define TLB_MAX_KEYS 1024
typedef void (*attention_forward_fn)(float *out, float *probs, const float *q, const float *k,
                                     const float *v, const int *kv_len, int B, int Tq, int Tk, int H,
                                     int K, const dropout_ctx *drop);
typedef void (*attention_backward_fn)(float *dq, float *dk, float *dv, const float *dout,
                                      const float *q, const float *k, const float *v,
                                      const float *probs, int B, int Tq, int Tk, int H, int K,
                                      const dropout_ctx *drop);

/* Patch convolution, kernel = stride = P, valid padding, 3 -> D channels:
 * img[B, S, S, 3] (channels last), w[P*P*3, D] in (kh, kw, c) row order,
 * out[B*N, D] with N = (S/P)^2 tokens in row-major patch order. */
typedef void (*patch_conv_forward_fn)(float *out, const float *img, const float *w,
                                      const float *bias, int B, int S, int P, int D);
typedef void (*patch_conv_backward_fn)(float *dimg, float *dw, float *dbias, const float *dout,
                                       const float *img, const float *w, int B, int S, int P,
                                       int D);

/* Position embedding: out[B, N, D] = inp + pos[N, D] (in place allowed). */
typedef void (*posemb_forward_fn)(float *out, const float *inp, const float *pos, int B, int N,
                                  int D);
typedef void (*posemb_backward_fn)(float *dinp, float *dpos, const float *dout, int B, int N,
                                   int D);

/* Mean over T tokens: out[B, D] = mean_t inp[B, T, D]. */
typedef void (*meanpool_forward_fn)(float *out, const float *inp, int B, int T, int D);
typedef void (*meanpool_backward_fn)(float *dinp, const float *dout, int B, int T, int D);

/* Softmax cross-entropy over V classes: losses[B], probs[B, V] (saved).
 * Backward: dlogits += (probs - onehot(label)) * scale (scale = 1 / full batch). */
typedef void (*softmax_xent_forward_fn)(float *losses, float *probs, const float *logits,
                                        const int *labels, int B, int V);
typedef void (*softmax_xent_backward_fn)(float *dlogits, const float *probs, const int *labels,
                                         float scale, int B, int V);

/* Dropout over B samples of `per_sample` values each (in place allowed). */
typedef void (*dropout_forward_fn)(float *out, const float *inp, int B, size_t per_sample,
                                   const dropout_ctx *drop);
typedef void (*dropout_backward_fn)(float *dinp, const float *dout, int B, size_t per_sample,
                                    const dropout_ctx *drop);

/* Residual add: out = a + b (out may alias a or b). Backward: da += dout; db += dout. */
typedef void (*residual_forward_fn)(float *out, const float *a, const float *b, size_t n);
typedef void (*residual_backward_fn)(float *da, float *db, const float *dout, size_t n);

/* Token embedding (the sequence front end): out[n, :] = table[ids[n], :] for
 * the N = B*T token rows, ids in [0, V) (int32, as softmax_xent's labels;
 * the caller checks the range). Backward: dtable[ids[n], :] += dout[n, :],
 * summed over n in increasing order on every backend and thread count
 * (deterministic); rows of ids that do not occur get nothing, and the ids
 * get no gradient. */
typedef void (*token_embed_forward_fn)(float *out, const int *ids, const float *table, int N,
                                       int V, int D);
typedef void (*token_embed_backward_fn)(float *dtable, const float *dout, const int *ids, int N,
                                        int V, int D);

/* ReLU, max(x, 0) elementwise over n values (a NaN gives 0); backward
 * dinp += dout where inp > 0 (relu'(0) taken as 0). The head's hidden layer. */
typedef void (*relu_forward_fn)(float *out, const float *inp, size_t n);
typedef void (*relu_backward_fn)(float *dinp, const float *dout, const float *inp, size_t n);

/* Fused stages: ops that do the work of several others in fewer passes over
 * memory, with the same contracts (backward accumulates, NULL skips). The
 * model runs one in place of the ops it fuses where ops_table_fused() says
 * so; each equals the composition of those ops on its own backend, bit for
 * bit (the same kernels in the same summation order).
 *
 * layernorm_pair: two LayerNorms of one input (LN_k and LN_v of x_kv) from
 * one set of statistics: out1 = LN(inp; gamma1, beta1), out2 = LN(inp;
 * gamma2, beta2), mean[M] and rstd[M] saved once. Backward: both
 * normalisations' input gradients into dinp in one pass. */
typedef void (*layernorm_pair_forward_fn)(float *out1, float *out2, float *mean, float *rstd,
                                          const float *inp, const float *gamma1, const float *beta1,
                                          const float *gamma2, const float *beta2, int M, int D);
typedef void (*layernorm_pair_backward_fn)(float *dinp, float *dgamma1, float *dbeta1,
                                           float *dgamma2, float *dbeta2, const float *dout1,
                                           const float *dout2, const float *inp,
                                           const float *gamma1, const float *gamma2,
                                           const float *mean, const float *rstd, int M, int D);

/* ffn: the FFN after its LayerNorm, fc1 with GELU and fc2 with dropout and
 * the residual add, over B samples of T rows:
 *   h[M, F] = inp[M, D] @ w1 + b1   (saved: the backward's GELU input;
 *                                    h NULL saves nothing: inference)
 *   out[M, D] = res + dropout(gelu(h) @ w2 + b2),  M = B*T,
 * dropout over each sample's T*D values as the dropout op draws them. out
 * must not alias inp, h or res. gelu(h) lives in the backend's scratch
 * (recomputed by the backward). Backward: dinp, dw1, db1, dw2, db2 and
 * dres (+= dout) accumulate; the mask is applied to dout once. */
typedef void (*ffn_forward_fn)(float *out, float *h, const float *inp, const float *w1,
                               const float *b1, const float *w2, const float *b2, const float *res,
                               int B, int T, int D, int F, const dropout_ctx *drop);
typedef void (*ffn_backward_fn)(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                float *dres, const float *dout, const float *inp, const float *w1,
                                const float *w2, const float *h, int B, int T, int D, int F,
                                const dropout_ctx *drop);

typedef enum {
    TLB_BACKEND_REF,
    TLB_BACKEND_AVX2,
    TLB_BACKEND_AVX512,
    TLB_BACKEND_DNNL,
    TLB_BACKEND_COUNT
} tlb_backend;

/* Set-up before a shape's first call (plan time): an op whose backend keeps
 * per-thread resources (oneDNN primitives, SIMD scratch) creates them for the
 * calling thread and the shape given, forward and backward, and reports a
 * failure instead of aborting. NULL where a backend needs nothing. A call
 * with a shape that was not prepared still works: it sets the resources up
 * on the spot (allocating, and aborting if that fails): for op-level callers
 * such as the tests; a model prepares every shape it plans. */
typedef int (*dense_prepare_fn)(int M, int K, int N, tlb_error *err);
typedef int (*layernorm_prepare_fn)(int M, int D, tlb_error *err);
typedef int (*gelu_prepare_fn)(size_t n, tlb_error *err);
typedef int (*attention_prepare_fn)(int B, int Tq, int Tk, int H, int K, tlb_error *err);
typedef int (*patch_conv_prepare_fn)(int B, int S, int P, int D, tlb_error *err);
typedef int (*softmax_xent_prepare_fn)(int B, int V, tlb_error *err);
typedef int (*posemb_prepare_fn)(int B, int N, int D, tlb_error *err);
typedef int (*meanpool_prepare_fn)(int B, int T, int D, tlb_error *err);
typedef int (*dropout_prepare_fn)(int B, size_t per_sample, tlb_error *err);
typedef int (*residual_prepare_fn)(size_t n, tlb_error *err);
typedef int (*token_embed_prepare_fn)(int N, int V, int D, tlb_error *err);
typedef int (*relu_prepare_fn)(size_t n, tlb_error *err);

typedef int (*layernorm_pair_prepare_fn)(int M, int D, tlb_error *err);
typedef int (*ffn_prepare_fn)(int B, int T, int D, int F, tlb_error *err);

/* From the op list (op_list.h): per op a struct `name_op` of its typed
 * forward/backward pair and set-up, an id TLB_OP_name, and a slot in the
 * dispatch table.
 * backward_first (optional, NULL where a backend has none): backward with
 * the *input* gradients (dense: dinp; attention: dq, dk, dv) written, not
 * accumulated, bit for bit what zeroing them and calling backward gives;
 * parameter gradients still accumulate. It saves a caller that is the
 * buffers' first writer the memset and the product's read of zeros
 * (block_backward). */
#define TLB_OP_STRUCT(name, ...)                                                                   \
    typedef struct {                                                                               \
        name##_forward_fn forward;                                                                 \
        name##_backward_fn backward;                                                               \
        name##_prepare_fn prepare;                                                                 \
        name##_backward_fn backward_first;                                                         \
    } name##_op;
TLB_OP_LIST(TLB_OP_STRUCT)
#undef TLB_OP_STRUCT

typedef enum {
#define TLB_OP_ID(name, ...) TLB_OP_##name,
    TLB_OP_LIST(TLB_OP_ID)
#undef TLB_OP_ID
    TLB_OP_COUNT
} tlb_op;

/* The chosen implementation of every op, the backend each came from, and
 * whether the dense layers run in bf16 (mixed precision: the model then calls
 * dense_bf16.h with bf16 weights it converts once per update; `dense` stays
 * the fp32 implementation for the bias gradients and for callers that want
 * fp32). A plain value: copy it, keep one per model. */
typedef struct {
#define TLB_OP_SLOT(name, ...) name##_op name;
    TLB_OP_LIST(TLB_OP_SLOT)
#undef TLB_OP_SLOT
    tlb_backend backend[TLB_OP_COUNT];
    int bf16_dense;
    int bf16_h; /* the fused ffn saves h in bf16 (ops_table_set_bf16_h) */
    unsigned forced; /* bit op: put on its backend by ops_table_force (a spec, TLB_BACKEND) */
    unsigned off;    /* bit op: a fused stage turned off by a spec ("ffn:off") */
} op_table;

/* The implementation of one op in backend b, typed (NULL where that backend
 * lacks the op): ops_impl_dense(TLB_BACKEND_REF) and so on. */
#define TLB_OP_IMPL_FN(name, ...) const name##_op *ops_impl_##name(tlb_backend b);
TLB_OP_LIST(TLB_OP_IMPL_FN)
#undef TLB_OP_IMPL_FN

const char *backend_name(tlb_backend b);
/* Whether this CPU (and this build) can run backend b at all. */
int backend_supported(tlb_backend b);

/* Registry introspection, for `tlb ops`, the tests and the benchmarks. */
int ops_count(void);
const char *ops_name(int op);
/* The implementation of op `op` (a tlb_op) in backend b as a pointer to its
 * *_op struct, or NULL if that backend does not implement the op: for code
 * that treats every op alike (`tlb ops`, the test harness); the typed
 * ops_impl_<name>() above is for code that calls the op. */
const void *ops_impl(int op, tlb_backend b);
int ops_find(const char *name);

/* The automatic choice alone (fastest supported backend of each op by a
 * fixed per-op preference order; fp32), ignoring TLB_BACKEND. */
void ops_table_automatic(op_table *t);

/* Fills t: the automatic choice, then `spec` if non-NULL, then the
 * environment variable TLB_BACKEND. A spec is either one backend name for all
 * ops ("ref") or a comma list "op:backend,..." ("dense:dnnl,gelu:ref"); both
 * forms may be mixed ("avx2,attention:ref"). An unsupported or unknown name is
 * an error naming it (t is then the automatic choice); an op that backend
 * lacks falls back to the automatic choice; a fused stage may be "off"
 * ("ffn:off"). fp32: see ops_table_set_bf16. */
int ops_table_select(op_table *t, const char *spec, tlb_error *err);

/* Checks a spec as ops_table_select would apply it; changes nothing. The
 * message names the unknown or unsupported op or backend. */
int ops_spec_check(const char *spec, tlb_error *err);

/* Puts one op of t on one backend (marking it forced, see ops_table_fused).
 * -1 if that backend does not implement the op or the CPU cannot run it.
 * Forcing dense turns bf16 dense off. */
int ops_table_force(op_table *t, int op, tlb_backend b);

/* Whether the fused stage `op` (layernorm_pair, ffn) stands in for the ops
 * it fuses: yes unless one of those was put (by a spec or TLB_BACKEND) on
 * another backend than the stage's or replaced in the table by hand (a
 * test's own dense), or, for ffn, the dense layers run in bf16. So the automatic choice fuses on AVX-512 and AVX2 (the stage then
 * carries its own products, also where dense would be dnnl), TLB_BACKEND=ref
 * runs ref's fused stages (the ref ops composed) and TLB_BACKEND=dnnl,
 * which has none, the unfused ops; "ffn:off" or "layernorm_pair:off" in a
 * spec turns a stage off. 0 for an op that is not a fused stage. */
int ops_table_fused(const op_table *t, int op);

/* Whether the model folds an attention's LayerNorms into its q, k, v
 * products (model/norm_fold.h: one unit normalisation per input, gamma and
 * beta in the weights; a self-attention's three products read one z): with
 * the k/v pair stage (ops_table_fused), on whatever dense the table holds:
 * the registry's fp32, its bf16 in mixed precision (which then multiplies
 * bf16(z) by bf16(diag(gamma) W), the folded kernels rounded once per
 * update), or one put there by hand (test_mixed.c's emulation of bf16,
 * which so rounds what mixed precision rounds); not a slot without
 * functions. Not bit for bit the unfolded ops (the same function, rounded
 * in another order). "layernorm_pair:off" turns the fold off with the
 * pair. */
int ops_table_folds_norms(const op_table *t);

/* out = (inp - mean) rstd gamma + beta over M rows of D, from the mean and
 * rstd a LayerNorm forward saved: the out that forward wrote, bit for bit,
 * so a plan may drop the normalised tensor and rebuild it for the backward
 * (block.h) instead of storing it. */
typedef void (*layernorm_apply_fn)(float *out, const float *inp, const float *mean, const float *rstd,
                                   const float *gamma, const float *beta, int M, int D);
/* The apply that reproduces the outputs of t's `op` (TLB_OP_layernorm or
 * TLB_OP_layernorm_pair, whose outputs are each such an apply of the shared
 * statistics): NULL where there is none (oneDNN's normalisation rounds its
 * own way) or the slot holds a function put there by hand. */
layernorm_apply_fn ops_layernorm_apply(const op_table *t, int op);

/* out = dropout(probs) @ v per (sample, head) over its kv_len[b] valid keys
 * (NULL: all): the out attention's forward wrote with the same kv_len, from
 * the probabilities it saved and v, bit for bit, so a plan may rebuild it
 * for the backward rather than store it (block.h). */
typedef void (*attention_mix_fn)(float *out, const float *probs, const float *v, const int *kv_len, int B, int Tq,
                                 int Tk, int H, int K, const dropout_ctx *drop);
/* The mix that reproduces t's attention forward; NULL where the slot holds a
 * function put there by hand. */
attention_mix_fn ops_attention_mix(const op_table *t);

/* t's attention backward_first (dq, dk, dv written) with its forward's
 * output rebuilt on the way into att: what attention_mix gives, bit for bit,
 * from the dropped-out probabilities the dv product reads anyway, so a plan
 * that rebuilds att for the output product's weight gradient takes one pass
 * over probs and v, not two (block.c). NULL where t's attention backend has
 * none (ref, a slot put there by hand). */
typedef void (*attention_backward_mix_fn)(float *att, float *dq, float *dk, float *dv, const float *dout,
                                          const float *q, const float *k, const float *v, const float *probs,
                                          const int *kv_len, int B, int Tq, int Tk, int H, int K,
                                          const dropout_ctx *drop);
attention_backward_mix_fn ops_attention_backward_mix(const op_table *t);

/* The ffn with its saved pre-activation in bf16 (the config's
 * bf16_activations: bf16 storage, fp32 arithmetic): the forward is the ffn
 * op's, bit for bit, and stores h16[M, F] = bf16(h) (bf16.h's rounding) in
 * place of h; the backward is the ffn op's backward given h = the widened
 * h16, bit for bit. backward_first as the op's (above). */
typedef void (*ffn_forward_h16_fn)(float *out, uint16_t *h16, const float *inp, const float *w1,
                                   const float *b1, const float *w2, const float *b2, const float *res,
                                   int B, int T, int D, int F, const dropout_ctx *drop);
typedef void (*ffn_backward_h16_fn)(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                    float *dres, const float *dout, const float *inp, const float *w1,
                                    const float *w2, const uint16_t *h16, int B, int T, int D, int F,
                                    const dropout_ctx *drop);
typedef struct {
    ffn_forward_h16_fn forward;
    ffn_backward_h16_fn backward, backward_first;
} ffn_h16_op;
/* t's ffn in that form where t asks for it (ops_table_set_bf16_h) and the
 * fused ffn runs (ops_table_fused) on AVX2 or AVX-512; NULL elsewhere (ref,
 * oneDNN, bf16 dense, a slot put in by hand). */
const ffn_h16_op *ops_ffn_h16(const op_table *t);
/* Whether h is saved in bf16: t asks for it and a stage that can runs,
 * the fused fp32 ffn above or, in mixed precision, ffn_bf16
 * (ops_table_ffn_bf16, whose backward then reads the widened h16 just so);
 * elsewhere h stays fp32. */
int ops_table_saves_h16(const op_table *t);
/* on = 1: t's FFN stage saves h in bf16. -1 (and t unchanged) where no
 * stage could (ops_table_saves_h16 would be 0); on = 0 always succeeds. */
int ops_table_set_bf16_h(op_table *t, int on);

/* Mixed precision (the config's mixed_precision): dense layers multiply bf16
 * operands with fp32 accumulation on oneDNN; every other op, and every stored
 * tensor, stays fp32. Available where the CPU has AVX512_BF16, the only place
 * it was measured faster (BENCHMARKS.md). */
int ops_mixed_precision_supported(void);
/* on = 1 turns bf16 dense on in t (-1 if this CPU lacks it, t unchanged). */
int ops_table_set_bf16(op_table *t, int on);

/* Whether the FFN runs as mixed precision's stage (ffn_bf16.h: bf16
 * products, the GELU, dropout and residual in the passes that round to
 * bf16): with bf16 dense, where ffn, gelu, dropout and residual are the
 * registry's AVX-512 ones (the automatic choice on every CPU with
 * AVX512_BF16); "ffn:off" runs the unfused ops, the same numbers. */
int ops_table_ffn_bf16(const op_table *t);

/* "dense:avx512,layernorm:avx512,..." in op order ("bf16" for dense when
 * bf16_dense and for ffn when ops_table_ffn_bf16, "off" for a fused stage
 * not in use), and the precision
 * "bf16 dense", "bf16 dense, bf16 h", "fp32, bf16 h" (fp32 products, the
 * ffn's h saved in bf16) or "fp32". */
void ops_table_describe(const op_table *t, char *backends, size_t n);
const char *ops_table_precision(const op_table *t);

#endif
