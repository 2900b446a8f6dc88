/* One block Blk(x_q, x_kv) = FFN(Attn(x_q, x_kv)) (golden README section 2):
 *   Attn(x_q, x_kv) = x_q + MHA(LN_q(x_q), LN_k(x_kv), LN_v(x_kv)) @ Wo + bo
 *   FFN(x)          = x + Dropout(gelu(LN_f(x) @ W1 + b1) @ W2 + b2)
 * The forward caches exactly what the backward needs in a block_acts. */
#ifndef TLB_BLOCK_H
#define TLB_BLOCK_H

#include "model/params.h"
#include "ops/ops.h"
#include "util/arena.h"

typedef struct {
    int D, H, K, F; /* embed, heads, key_dim per head, FFN hidden */
} block_dims;

/* Activations of one block execution over B samples. */
typedef struct {
    float *ln_q, *ln_q_mean, *ln_q_rstd;   /* [B*Tq, D], [B*Tq] x2 (ln_q .. ln_f: NULL where rebuilt, below) */
    float *ln_k, *ln_k_mean, *ln_k_rstd;   /* [B*Tk, D] */
    float *ln_v, *ln_v_mean, *ln_v_rstd;   /* [B*Tk, D] (layernorm_pair: ln_k's statistics serve both) */
    float *q, *k, *v;                      /* [B*Tq, HK], [B*Tk, HK] x2 */
    float *probs;                          /* [B, H, Tq, Tk] */
    float *att;                            /* [B*Tq, HK] heads concatenated (NULL where rebuilt) */
    float *attn_out;                       /* [B*Tq, D] = x_q + O */
    float *ln_f, *ln_f_mean, *ln_f_rstd;   /* [B*Tq, D] */
    float *h;                              /* [B*Tq, F] pre-GELU (GELU is recomputed, not stored); NULL where h16 */
    uint16_t *h16;                         /* [B*Tq, F] the same in bf16 (block_keep.h_bf16), else NULL */
    float *out;                            /* [B*Tq, D] the block's output */
    const float *x_q, *x_kv;               /* inputs, recorded by the forward */
    int Tq, Tk;                            /* rows of the query / key-value stream, from the plan */
} block_acts;

/* Scratch for one block forward or backward, reused by every block. */
typedef struct {
    float *d_ln_f, *d_y2;                  /* [B*Tq, D] */
    float *d_h, *d_g;                      /* [B*Tq, F] (d_y2, d_h, d_g, g: the unfused FFN only) */
    float *g;                              /* [B*Tq, F] GELU output, rebuilt when needed */
    float *d_att, *d_q;                    /* [B*Tq, HK] */
    float *d_k, *d_v;                      /* [B*Tk, HK] */
    float *d_ln_q;                         /* [B*Tq, D] */
    float *d_ln_k, *d_ln_v;                /* [B*Tk, D] */
    float *ln_q, *ln_f;                    /* [B*Tq, D] the normalised inputs of a plan that */
    float *ln_k, *ln_v;                    /* [B*Tk, D] rebuilds them rather than keep them */
    float *att;                            /* [B*Tq, HK] likewise the attention's output */
} block_scratch;

typedef struct {
    dropout_ctx attn, ffn;
} block_dropout;

/* What the ops of a block (and of the model around it) run on: the model's op
 * table and, in mixed precision, the bf16 copy of the parameters (laid out
 * like them) and the calling shard's staging for bf16 activations. */
typedef struct {
    const op_table *ops;
    const uint16_t *params16; /* NULL: dense in fp32 on ops->dense */
    uint16_t *staging;        /* dense_bf16_staging() of the largest product */
    /* NULL, or a buffer laid out like the parameters holding each
     * attention's folded q, k, v kernels and biases (block_fold_params),
     * made once per forward: read instead of folding them at every call */
    const float *folded;
} block_kernels;

/* A dense layer of the model, weights and bias at offsets into params:
 * ops->dense, or bf16 products when k->params16 is set. */
void kernels_dense_forward(const block_kernels *k, float *out, const float *inp, const float *params,
                           size_t w_at, size_t b_at, int M, int K, int N);
void kernels_dense_backward(const block_kernels *k, float *dinp, float *grads, const float *dout,
                            const float *inp, const float *params, size_t w_at, size_t b_at, int M,
                            int K, int N);
/* The same with dinp written, not accumulated (its first writer): the op's
 * backward_first where it has one, else zeroing and backward. */
void kernels_dense_backward_first(const block_kernels *k, float *dinp, float *grads, const float *dout,
                                  const float *inp, const float *params, size_t w_at, size_t b_at, int M,
                                  int K, int N);
/* Plan time: sets up the dense kernel for [M,K] x [K,N] on the calling thread;
 * the bf16 values of staging it needs go into *staging (max). */
int kernels_dense_prepare(const block_kernels *k, int M, int K, int N, size_t *staging, tlb_error *err);

/* Plan time: every op of a block over B samples (Tq, Tk rows each) set up on
 * the calling thread (ops.h, `prepare`); *staging as above. */
int block_prepare(const block_kernels *k, block_dims d, int B, int Tq, int Tk, size_t *staging,
                  tlb_error *err);

/* Writes attention ap's folded q, k, v kernels and biases (norm_fold.h)
 * into `folded` at their own offsets (a buffer laid out like params). */
void block_fold_params(float *folded, const float *params, const attn_params *ap, block_dims d);

/* Whether a plan on these ops keeps the LayerNorm outputs (ln_q, ln_k, ln_v,
 * ln_f) for the backward. Where every LayerNorm of the block can be redone
 * bit for bit from its input and saved statistics (ops_layernorm_apply), the
 * forward writes them to scratch and the backward rebuilds each just before
 * its product: 256 of the ~900 floats a row a block stored, written to
 * memory and read back, traded for an elementwise pass over data the
 * backward reads anyway (BENCHMARKS.md, "Session 10"). The gradients are the
 * same bits. */
int block_keeps_normalised(const op_table *ops);
/* Likewise the attention's output att (64 floats a row in the seed), rebuilt
 * from the probabilities, v and the forward's kv_len (ops_attention_mix)
 * just before the output projection's weight gradient (in fp32 on the SIMD
 * backends, inside the attention's backward, ops_attention_backward_mix,
 * the output projection's dX before it and its dW after); kept for
 * hand-made attention slots. */
int block_keeps_att(const op_table *ops);

/* Whether a plan saves the FFN's pre-activation h in bf16 (fp32 arithmetic,
 * half its bytes; the gradients then are those of the rounded h): where the
 * table asks for it and its fused ffn can (ops_ffn_h16). */
int block_saves_h_bf16(const op_table *ops);

/* What a plan keeps (1) or rebuilds (0), and how it saves h: in bf16, or
 * (h_none, a forward-only plan where the fused ffn runs:
 * ops_table_fused) not at all. */
typedef struct {
    int normalised, att;
    int h_bf16, h_none;
} block_keep;

/* Carve a block_acts / block_scratch for up to B samples from `a` (see
 * util/arena.h: called once to measure, once to carve); what keep says is
 * rebuilt is left NULL in acts. */
void block_acts_plan(block_acts *acts, arena *a, block_dims d, int B, int Tq, int Tk, block_keep keep);
void block_scratch_plan(block_scratch *s, arena *a, block_dims d, int B, int Tq, int Tk);

/* kv_len[B]: the valid (unpadded) rows of each sample's x_kv, the rest masked
 * in the attention (ops.h); NULL = all Tk. */
void block_forward(block_acts *acts, block_scratch *s, const block_kernels *k, const float *params, const attn_params *ap,
                   const ffn_params *fp, const float *x_q, const float *x_kv, const int *kv_len, block_dims d,
                   int B, int Tq, int Tk, const block_dropout *drop);

/* Writes dx_q (whatever it held; it also holds the attention output's
 * gradient on the way), accumulates into dx_kv (which may be dx_q when x_q
 * and x_kv are the same tensor) and into the parameter gradients `grads`
 * (laid out like params). dx_q must not be dout. kv_len: the forward's (a
 * rebuilt att needs it). */
void block_backward(float *dx_q, float *dx_kv, float *grads, const float *dout,
                    const block_acts *acts, const block_kernels *k, const float *params,
                    const attn_params *ap,
                    const ffn_params *fp, block_scratch *s, const int *kv_len, block_dims d, int B, int Tq,
                    int Tk, const block_dropout *drop);

#endif
