#include "model/block.h"

#include <string.h>

#include "model/norm_fold.h"
#include "ops/bf16.h"
#include "ops/dense_bf16.h"
#include "ops/ffn_bf16.h"

void block_acts_plan(block_acts *acts, arena *a, block_dims d, int B, int Tq, int Tk, block_keep keep)
{
    const size_t rq = (size_t)B * Tq, rk = (size_t)B * Tk, HK = (size_t)d.H * d.K;
    acts->ln_q = keep.normalised ? arena_take(a, rq * d.D) : NULL;
    acts->ln_q_mean = arena_take(a, rq);
    acts->ln_q_rstd = arena_take(a, rq);
    acts->ln_k = keep.normalised ? arena_take(a, rk * d.D) : NULL;
    acts->ln_k_mean = arena_take(a, rk);
    acts->ln_k_rstd = arena_take(a, rk);
    acts->ln_v = keep.normalised ? arena_take(a, rk * d.D) : NULL;
    acts->ln_v_mean = arena_take(a, rk);
    acts->ln_v_rstd = arena_take(a, rk);
    acts->q = arena_take(a, rq * HK);
    acts->k = arena_take(a, rk * HK);
    acts->v = arena_take(a, rk * HK);
    acts->probs = arena_take(a, (size_t)B * d.H * Tq * Tk);
    acts->att = keep.att ? arena_take(a, rq * HK) : NULL;
    acts->attn_out = arena_take(a, rq * d.D);
    acts->ln_f = keep.normalised ? arena_take(a, rq * d.D) : NULL;
    acts->ln_f_mean = arena_take(a, rq);
    acts->ln_f_rstd = arena_take(a, rq);
    acts->h = keep.h_bf16 || keep.h_none ? NULL : arena_take(a, rq * d.F);
    acts->h16 = keep.h_bf16 ? (uint16_t *)arena_take(a, (rq * d.F + 1) / 2) : NULL; /* two in a float's room */
    acts->out = arena_take(a, rq * d.D);
    acts->x_q = acts->x_kv = NULL;
    acts->Tq = Tq, acts->Tk = Tk;
}

void block_scratch_plan(block_scratch *s, arena *a, block_dims d, int B, int Tq, int Tk)
{
    const size_t rq = (size_t)B * Tq, rk = (size_t)B * Tk, HK = (size_t)d.H * d.K;
    s->d_ln_f = arena_take(a, rq * d.D);
    s->d_y2 = arena_take(a, rq * d.D);
    s->d_h = arena_take(a, rq * d.F);
    s->d_g = arena_take(a, rq * d.F);
    s->g = arena_take(a, rq * d.F);
    s->d_att = arena_take(a, rq * HK);
    s->d_q = arena_take(a, rq * HK);
    s->d_k = arena_take(a, rk * HK);
    s->d_v = arena_take(a, rk * HK);
    s->d_ln_q = arena_take(a, rq * d.D);
    s->d_ln_k = arena_take(a, rk * d.D);
    s->d_ln_v = arena_take(a, rk * d.D);
    s->ln_q = arena_take(a, rq * d.D);
    s->ln_f = arena_take(a, rq * d.D);
    s->ln_k = arena_take(a, rk * d.D);
    s->ln_v = arena_take(a, rk * d.D);
    s->att = arena_take(a, rq * HK);
}

void kernels_dense_forward(const block_kernels *k, float *out, const float *inp, const float *params,
                           size_t w_at, size_t b_at, int M, int K, int N)
{
    if (k->params16)
        dense_bf16_forward(out, inp, k->params16 + w_at, params + b_at, M, K, N, k->staging);
    else
        k->ops->dense.forward(out, inp, params + w_at, params + b_at, M, K, N);
}

void kernels_dense_backward(const block_kernels *k, float *dinp, float *grads, const float *dout,
                            const float *inp, const float *params, size_t w_at, size_t b_at, int M,
                            int K, int N)
{
    if (k->params16)
        dense_bf16_backward(dinp, grads + w_at, grads + b_at, dout, inp, k->params16 + w_at, M, K, N,
                            k->staging);
    else
        k->ops->dense.backward(dinp, grads + w_at, grads + b_at, dout, inp, params + w_at, M, K, N);
}

void kernels_dense_backward_first(const block_kernels *k, float *dinp, float *grads, const float *dout,
                                  const float *inp, const float *params, size_t w_at, size_t b_at, int M,
                                  int K, int N)
{
    if (k->params16) {
        dense_bf16_backward_first(dinp, grads + w_at, grads + b_at, dout, inp, k->params16 + w_at, M, K, N,
                                  k->staging);
        return;
    }
    if (k->ops->dense.backward_first) {
        k->ops->dense.backward_first(dinp, grads + w_at, grads + b_at, dout, inp, params + w_at, M, K, N);
        return;
    }
    memset(dinp, 0, (size_t)M * K * sizeof(float));
    kernels_dense_backward(k, dinp, grads, dout, inp, params, w_at, b_at, M, K, N);
}

int kernels_dense_prepare(const block_kernels *k, int M, int K, int N, size_t *staging, tlb_error *err)
{
    if (k->ops->bf16_dense) {
        const size_t need = dense_bf16_staging(M, K, N);
        if (need > *staging) *staging = need;
        return dense_bf16_prepare(M, K, N, err);
    }
    return k->ops->dense.prepare ? k->ops->dense.prepare(M, K, N, err) : 0;
}

/* The fused stages (ops.h) run where the table says so; ffn carries fp32
 * products of its own, so not in mixed precision. */
static int fuse_ffn(const block_kernels *k) { return !k->params16 && ops_table_fused(k->ops, TLB_OP_ffn); }
/* Mixed precision's FFN stage (ops_table_ffn_bf16) on the bf16 weights. */
static int ffn_bf16_runs(const op_table *o, block_dims d) { return ops_table_ffn_bf16(o) && d.D > 0 && d.F > 0; }
static int fuse_ffn_bf16(const block_kernels *k, block_dims d) { return k->params16 && ffn_bf16_runs(k->ops, d); }
static int fuse_kv_norms(const block_kernels *k) { return ops_table_fused(k->ops, TLB_OP_layernorm_pair); }

/* The attention's LayerNorms folded into its q, k, v products (norm_fold.h,
 * ops_table_folds_norms): one normalised z per input, which a
 * self-attention's three products share. In mixed precision the folded
 * kernels are in params16 (model_fold_norms_bf16 writes them over bf16(W)
 * wherever a model or inference plan holds `folded`), the folded biases in
 * k->folded. */
static int fold_norms(const block_kernels *k)
{
    return ops_table_folds_norms(k->ops) && (!k->params16 || k->folded);
}

/* The offsets of q's, k's and v's kernel, bias, LayerNorm gamma and beta. */
typedef struct {
    size_t w[3], b[3], gamma[3], beta[3];
} qkv_offsets;

static qkv_offsets offsets_of(const attn_params *ap)
{
    return (qkv_offsets){{ap->q_kernel, ap->k_kernel, ap->v_kernel},
                         {ap->q_bias, ap->k_bias, ap->v_bias},
                         {ap->ln_q_gamma, ap->ln_k_gamma, ap->ln_v_gamma},
                         {ap->ln_q_beta, ap->ln_k_beta, ap->ln_v_beta}};
}

void block_fold_params(float *folded, const float *params, const attn_params *ap, block_dims d)
{
    const qkv_offsets o = offsets_of(ap);
    for (int i = 0; i < 3; i++)
        norm_fold_weights(folded + o.w[i], folded + o.b[i], params + o.gamma[i], params + o.beta[i],
                          params + o.w[i], params + o.b[i], d.D, d.H * d.K);
}

/* The folded weights and biases of q, k, v: the forward's (k->folded), or
 * folded now into the workspace. */
static void folded_weights(const float *wf[3], const float *bf[3], norm_fold *f, const block_kernels *k,
                           const float *w, const attn_params *ap, block_dims d)
{
    const qkv_offsets o = offsets_of(ap);
    for (int i = 0; i < 3; i++) {
        if (k->folded) {
            wf[i] = k->folded + o.w[i], bf[i] = k->folded + o.b[i];
            continue;
        }
        norm_fold_weights(f->w[i], f->b[i], w + o.gamma[i], w + o.beta[i], w + o.w[i], w + o.b[i], d.D,
                          d.H * d.K);
        wf[i] = f->w[i], bf[i] = f->b[i];
    }
}

int block_keeps_normalised(const op_table *ops)
{
    const int kv = ops_table_fused(ops, TLB_OP_layernorm_pair) ? TLB_OP_layernorm_pair : TLB_OP_layernorm;
    return !ops_layernorm_apply(ops, TLB_OP_layernorm) || !ops_layernorm_apply(ops, kv);
}

int block_keeps_att(const op_table *ops) { return !ops_attention_mix(ops); }

int block_saves_h_bf16(const op_table *ops) { return ops_table_saves_h16(ops); }

/* A LayerNorm output the plan did not keep, rebuilt into scratch from the
 * input and the saved statistics (the forward's bits); a kept one as is. */
static const float *normalised(const float *kept, float *scratch, const block_kernels *k, int op, const float *x,
                               const float *mean, const float *rstd, const float *gamma, const float *beta,
                               int M, int D)
{
    if (kept) return kept;
    ops_layernorm_apply(k->ops, op)(scratch, x, mean, rstd, gamma, beta, M, D);
    return scratch;
}

int block_prepare(const block_kernels *k, block_dims d, int B, int Tq, int Tk, size_t *staging,
                  tlb_error *err)
{
    const op_table *o = k->ops;
    const int rq = B * Tq, rk = B * Tk, HK = d.H * d.K;
    if (o->layernorm.prepare &&
        (o->layernorm.prepare(rq, d.D, err) != 0 || o->layernorm.prepare(rk, d.D, err) != 0))
        return -1;
    if (kernels_dense_prepare(k, rq, d.D, HK, staging, err) != 0 ||
        kernels_dense_prepare(k, rk, d.D, HK, staging, err) != 0 ||
        kernels_dense_prepare(k, rq, HK, d.D, staging, err) != 0 ||
        kernels_dense_prepare(k, rq, d.D, d.F, staging, err) != 0 ||
        kernels_dense_prepare(k, rq, d.F, d.D, staging, err) != 0)
        return -1;
    if (o->attention.prepare && o->attention.prepare(B, Tq, Tk, d.H, d.K, err) != 0) return -1;
    if (o->gelu.prepare && o->gelu.prepare((size_t)rq * d.F, err) != 0) return -1;
    if (fuse_kv_norms(k) && o->layernorm_pair.prepare && o->layernorm_pair.prepare(rk, d.D, err) != 0)
        return -1;
    if (fuse_ffn(k) && o->ffn.prepare && o->ffn.prepare(B, Tq, d.D, d.F, err) != 0)
        return -1;
    if (ffn_bf16_runs(o, d)) {
        const size_t need = ffn_bf16_staging(rq, d.D, d.F);
        if (need > *staging) *staging = need;
        if (ffn_bf16_prepare(rq, d.D, d.F, err) != 0) return -1;
    }
    if (ops_table_folds_norms(o) && norm_fold_prepare(d.D, HK, err) != 0) return -1;
    return 0;
}

/* The folded forward of the attention's three LayerNorms and products:
 * z_q = unit LN(x_q) (its statistics in ln_q's), and where x_kv is another
 * tensor z_kv = unit LN(x_kv) (in ln_k's); a self-attention's k and v read
 * z_q. Returns whether it ran (fold_norms). */
static int folded_qkv_forward(block_acts *a, block_scratch *s, const block_kernels *k, const float *w,
                              const attn_params *ap, block_dims d, int B, int Tq, int Tk)
{
    if (!fold_norms(k)) return 0;
    const int rq = B * Tq, rk = B * Tk, HK = d.H * d.K;
    const int self = a->x_q == a->x_kv && Tq == Tk;
    norm_fold f = norm_fold_workspace(d.D, HK);
    const float *wf[3], *bf[3];
    folded_weights(wf, bf, &f, k, w, ap, d);
    float *zq = a->ln_q ? a->ln_q : s->ln_q;
    float *zkv = self ? zq : a->ln_k ? a->ln_k : s->ln_k;
    k->ops->layernorm.forward(zq, a->ln_q_mean, a->ln_q_rstd, a->x_q, f.ones, f.zeros, rq, d.D);
    if (!self) k->ops->layernorm.forward(zkv, a->ln_k_mean, a->ln_k_rstd, a->x_kv, f.ones, f.zeros, rk, d.D);
    if (k->params16) { /* each z rounded to bf16 once for the products that read it */
        const qkv_offsets o = offsets_of(ap);
        uint16_t *z16 = k->staging;
        bf16_convert(z16, zq, (size_t)rq * d.D);
        dense_bf16_forward_rounded(a->q, z16, k->params16 + o.w[0], bf[0], rq, d.D, HK);
        if (!self) bf16_convert(z16, zkv, (size_t)rk * d.D);
        dense_bf16_forward_rounded(a->k, z16, k->params16 + o.w[1], bf[1], rk, d.D, HK);
        dense_bf16_forward_rounded(a->v, z16, k->params16 + o.w[2], bf[2], rk, d.D, HK);
        return 1;
    }
    k->ops->dense.forward(a->q, zq, wf[0], bf[0], rq, d.D, HK);
    k->ops->dense.forward(a->k, zkv, wf[1], bf[1], rk, d.D, HK);
    k->ops->dense.forward(a->v, zkv, wf[2], bf[2], rk, d.D, HK);
    return 1;
}

/* dinp (+)= dout @ w^T (written where first), dw += inp^T dout, db += column sums. */
static void fold_dense_backward(const block_kernels *k, float *dinp, float *dw, float *db, const float *dout,
                                const float *inp, const float *w, size_t w_at, int M, int K, int N, int first)
{
    if (k->params16) { /* the folded kernel's bf16 at w_at (model_fold_norms_bf16) */
        (first ? dense_bf16_backward_first : dense_bf16_backward)(dinp, dw, db, dout, inp, k->params16 + w_at, M,
                                                                  K, N, k->staging);
        return;
    }
    if (first && k->ops->dense.backward_first) {
        k->ops->dense.backward_first(dinp, dw, db, dout, inp, w, M, K, N);
        return;
    }
    if (first) memset(dinp, 0, (size_t)M * K * sizeof(float));
    k->ops->dense.backward(dinp, dw, db, dout, inp, w, M, K, N);
}

/* z (unit LN of x from its statistics, or the kept z) rounded to bf16 into
 * the row pairs of the weight gradients' operand (bf16.h) in one pass. */
static void rounded_unit_norm_pairs(uint32_t *z_pairs, const float *kept, const float *x, const float *mean,
                                    const float *rstd, int M, int D)
{
    if (kept) bf16_convert_sums(NULL, z_pairs, NULL, kept, (size_t)M, (size_t)D);
    else bf16_convert_normalised(NULL, z_pairs, x, mean, rstd, (size_t)M, (size_t)D);
}

/* Mixed precision's q, k, v products backward on the folded kernels: each z
 * rounded to bf16 once (straight from x and its statistics, no fp32 z) into
 * the row pairs the products' weight gradients read; the same bits as three
 * dense_bf16_backward calls on the rebuilt fp32 z. */
static void folded_qkv_products_bf16(float *gw[3], float *gb[3], float *dzkv, const block_acts *a,
                                     block_scratch *s, const block_kernels *k, qkv_offsets o, block_dims d, int rq,
                                     int rk, int self)
{
    const int HK = d.H * d.K;
    uint32_t *z_pairs = (uint32_t *)k->staging;
    rounded_unit_norm_pairs(z_pairs, a->ln_q, a->x_q, a->ln_q_mean, a->ln_q_rstd, rq, d.D);
    dense_bf16_backward_paired(s->d_ln_q, gw[0], gb[0], s->d_q, z_pairs, k->params16 + o.w[0], rq, d.D, HK,
                               k->staging + bf16_pairs_len((size_t)rq, (size_t)d.D), 1);
    if (!self) rounded_unit_norm_pairs(z_pairs, a->ln_k, a->x_kv, a->ln_k_mean, a->ln_k_rstd, rk, d.D);
    uint16_t *dout_staging = k->staging + bf16_pairs_len((size_t)rk, (size_t)d.D);
    dense_bf16_backward_paired(dzkv, gw[1], gb[1], s->d_k, z_pairs, k->params16 + o.w[1], rk, d.D, HK, dout_staging,
                               !self);
    dense_bf16_backward_paired(dzkv, gw[2], gb[2], s->d_v, z_pairs, k->params16 + o.w[2], rk, d.D, HK, dout_staging,
                               0);
}

/* The backward of folded_qkv_forward from d_q, d_k, d_v: the z's rebuilt
 * (or kept), dz through the folded weights, the unit LayerNorms' backward
 * into dx_q (and dx_kv), and the folded gradients turned into those of the
 * q, k, v products and of the three LayerNorms. A self-attention's one z
 * takes all three products' gradient into dx_q: x_q is x_kv, so the
 * caller's sum of dx_q and dx_kv (one buffer in the model) is the same. */
static void folded_qkv_backward(float *dx_q, float *dx_kv, float *g, const block_acts *a, block_scratch *s,
                                const block_kernels *k, const float *w, const attn_params *ap, block_dims d,
                                int B, int Tq, int Tk)
{
    const int rq = B * Tq, rk = B * Tk, HK = d.H * d.K;
    const int self = a->x_q == a->x_kv && Tq == Tk;
    norm_fold f = norm_fold_workspace(d.D, HK);
    const float *wf[3], *bf[3];
    folded_weights(wf, bf, &f, k, w, ap, d);
    for (int i = 0; i < 3; i++) {
        memset(f.gw[i], 0, (size_t)d.D * HK * sizeof(float));
        memset(f.gb[i], 0, (size_t)HK * sizeof(float));
    }
    const qkv_offsets o = offsets_of(ap);
    float *dzkv = self ? s->d_ln_q : s->d_ln_k;
    if (k->params16) {
        folded_qkv_products_bf16(f.gw, f.gb, dzkv, a, s, k, o, d, rq, rk, self);
    } else {
        const float *zq = normalised(a->ln_q, s->ln_q, k, TLB_OP_layernorm, a->x_q, a->ln_q_mean, a->ln_q_rstd,
                                     f.ones, f.zeros, rq, d.D);
        fold_dense_backward(k, s->d_ln_q, f.gw[0], f.gb[0], s->d_q, zq, wf[0], o.w[0], rq, d.D, HK, 1);
        const float *zkv = self ? zq
                                : normalised(a->ln_k, s->ln_k, k, TLB_OP_layernorm, a->x_kv, a->ln_k_mean,
                                             a->ln_k_rstd, f.ones, f.zeros, rk, d.D);
        fold_dense_backward(k, dzkv, f.gw[1], f.gb[1], s->d_k, zkv, wf[1], o.w[1], rk, d.D, HK, !self);
        fold_dense_backward(k, dzkv, f.gw[2], f.gb[2], s->d_v, zkv, wf[2], o.w[2], rk, d.D, HK, 0);
    }
    k->ops->layernorm.backward(dx_q, NULL, NULL, s->d_ln_q, a->x_q, f.ones, a->ln_q_mean, a->ln_q_rstd, rq, d.D);
    if (!self)
        k->ops->layernorm.backward(dx_kv, NULL, NULL, dzkv, a->x_kv, f.ones, a->ln_k_mean, a->ln_k_rstd, rk,
                                   d.D);
    for (int i = 0; i < 3; i++)
        norm_fold_grads(g + o.w[i], g + o.b[i], g + o.gamma[i], g + o.beta[i], f.gw[i], f.gb[i], w + o.gamma[i],
                        w + o.beta[i], w + o.w[i], d.D, HK);
}

void block_forward(block_acts *a, block_scratch *s, const block_kernels *k, const float *params, const attn_params *ap,
                   const ffn_params *fp, const float *x_q, const float *x_kv, const int *kv_len, block_dims d,
                   int B, int Tq, int Tk, const block_dropout *drop)
{
    const float *w = params;
    const int rq = B * Tq, rk = B * Tk, HK = d.H * d.K;
    a->x_q = x_q;
    a->x_kv = x_kv;
    /* the LayerNorm outputs: kept, or in scratch for the products only */
    float *ln_q = a->ln_q ? a->ln_q : s->ln_q, *ln_k = a->ln_k ? a->ln_k : s->ln_k;
    float *ln_v = a->ln_v ? a->ln_v : s->ln_v, *ln_f = a->ln_f ? a->ln_f : s->ln_f;
    float *att = a->att ? a->att : s->att;

    /* Attention: three separate LayerNorms, as the Keras example wraps MHA
     * (or their fold into the products, the same function). */
    if (!folded_qkv_forward(a, s, k, w, ap, d, B, Tq, Tk)) {
        k->ops->layernorm.forward(ln_q, a->ln_q_mean, a->ln_q_rstd, x_q, w + ap->ln_q_gamma,
                                  w + ap->ln_q_beta, rq, d.D);
        if (fuse_kv_norms(k)) { /* one set of statistics (ln_k's) serves both */
            k->ops->layernorm_pair.forward(ln_k, ln_v, a->ln_k_mean, a->ln_k_rstd, x_kv,
                                           w + ap->ln_k_gamma, w + ap->ln_k_beta, w + ap->ln_v_gamma,
                                           w + ap->ln_v_beta, rk, d.D);
        } else {
            k->ops->layernorm.forward(ln_k, a->ln_k_mean, a->ln_k_rstd, x_kv, w + ap->ln_k_gamma,
                                      w + ap->ln_k_beta, rk, d.D);
            k->ops->layernorm.forward(ln_v, a->ln_v_mean, a->ln_v_rstd, x_kv, w + ap->ln_v_gamma,
                                      w + ap->ln_v_beta, rk, d.D);
        }
        kernels_dense_forward(k, a->q, ln_q, w, ap->q_kernel, ap->q_bias, rq, d.D, HK);
        kernels_dense_forward(k, a->k, ln_k, w, ap->k_kernel, ap->k_bias, rk, d.D, HK);
        kernels_dense_forward(k, a->v, ln_v, w, ap->v_kernel, ap->v_bias, rk, d.D, HK);
    }
    k->ops->attention.forward(att, a->probs, a->q, a->k, a->v, kv_len, B, Tq, Tk, d.H, d.K,
                              drop ? &drop->attn : NULL);
    kernels_dense_forward(k, a->attn_out, att, w, ap->o_kernel, ap->o_bias, rq, HK, d.D);
    k->ops->residual.forward(a->attn_out, a->attn_out, x_q, (size_t)rq * d.D);

    /* FFN with its dropout before the residual add. */
    k->ops->layernorm.forward(ln_f, a->ln_f_mean, a->ln_f_rstd, a->attn_out, w + fp->ln_gamma,
                              w + fp->ln_beta, rq, d.D);
    if (fuse_ffn_bf16(k, d)) { /* h into scratch where only its bf16 is saved */
        ffn_bf16_forward(a->out, a->h ? a->h : s->d_h, a->h16, ln_f, k->params16 + fp->fc1_kernel,
                         w + fp->fc1_bias, k->params16 + fp->fc2_kernel, w + fp->fc2_bias, a->attn_out, B, Tq,
                         d.D, d.F, drop ? &drop->ffn : NULL, k->staging);
        return;
    }
    if (a->h16) { /* fused (block_saves_h_bf16) */
        ops_ffn_h16(k->ops)->forward(a->out, a->h16, ln_f, w + fp->fc1_kernel, w + fp->fc1_bias,
                                     w + fp->fc2_kernel, w + fp->fc2_bias, a->attn_out, B, Tq, d.D, d.F,
                                     drop ? &drop->ffn : NULL);
        return;
    }
    if (fuse_ffn(k)) { /* a->h NULL: nothing saved (block_keep.h_none) */
        k->ops->ffn.forward(a->out, a->h, ln_f, w + fp->fc1_kernel, w + fp->fc1_bias,
                            w + fp->fc2_kernel, w + fp->fc2_bias, a->attn_out, B, Tq, d.D, d.F,
                            drop ? &drop->ffn : NULL);
        return;
    }
    kernels_dense_forward(k, a->h, ln_f, w, fp->fc1_kernel, fp->fc1_bias, rq, d.D, d.F);
    k->ops->gelu.forward(s->g, a->h, (size_t)rq * d.F);
    kernels_dense_forward(k, a->out, s->g, w, fp->fc2_kernel, fp->fc2_bias, rq, d.F, d.D);
    if (drop && drop->ffn.rate > 0.0f)
        k->ops->dropout.forward(a->out, a->out, B, (size_t)Tq * d.D, &drop->ffn);
    k->ops->residual.forward(a->out, a->out, a->attn_out, (size_t)rq * d.D);
}

/* The output product's backward, then the attention's, att rebuilt
 * (attention_mix) first where it is not kept. */
static void attention_backward_rebuilt(block_scratch *s, const block_acts *a, const block_kernels *k, const float *w,
                                       float *g, const attn_params *ap, const float *d_attn_out, const int *kv_len,
                                       block_dims d, int B, int Tq, int Tk, const block_dropout *drop)
{
    const size_t rq = (size_t)B * Tq, rk = (size_t)B * Tk, HK = (size_t)d.H * d.K;
    const float *att = a->att;
    if (!att) { /* rebuilt from what the attention's backward reads next anyway */
        ops_attention_mix(k->ops)(s->att, a->probs, a->v, kv_len, B, Tq, Tk, d.H, d.K,
                                  drop ? &drop->attn : NULL);
        att = s->att;
    }
    kernels_dense_backward_first(k, s->d_att, g, d_attn_out, att, w, ap->o_kernel, ap->o_bias, (int)rq,
                                 (int)HK, d.D);
    if (k->ops->attention.backward_first) {
        k->ops->attention.backward_first(s->d_q, s->d_k, s->d_v, s->d_att, a->q, a->k, a->v, a->probs, B, Tq,
                                         Tk, d.H, d.K, drop ? &drop->attn : NULL);
    } else {
        memset(s->d_q, 0, rq * HK * sizeof(float));
        memset(s->d_k, 0, rk * HK * sizeof(float));
        memset(s->d_v, 0, rk * HK * sizeof(float));
        k->ops->attention.backward(s->d_q, s->d_k, s->d_v, s->d_att, a->q, a->k, a->v, a->probs, B, Tq,
                                   Tk, d.H, d.K, drop ? &drop->attn : NULL);
    }
}

void block_backward(float *dx_q, float *dx_kv, float *grads, const float *dout,
                    const block_acts *a, const block_kernels *k, const float *params,
                    const attn_params *ap,
                    const ffn_params *fp, block_scratch *s, const int *kv_len, block_dims d, int B, int Tq,
                    int Tk, const block_dropout *drop)
{
    const float *w = params;
    float *g = grads;
    const size_t rq = (size_t)B * Tq, rk = (size_t)B * Tk, HK = (size_t)d.H * d.K;
    const int fused_ffn = fuse_ffn(k), fused_kv = fuse_kv_norms(k);
    /* Gradient buffers are written by their first writers (ops.h,
     * backward_first) where the kernels have it, else zeroed first. */

    /* FFN: out = attn_out + dropout(g @ W2 + b2). attn_out's gradient lives in
     * dx_q (x_q's is the same through the attention's residual): it starts as
     * dout (the residual path), written by its first writer. */
    float *d_attn_out = dx_q;
    const float *ln_f = normalised(a->ln_f, s->ln_f, k, TLB_OP_layernorm, a->attn_out, a->ln_f_mean,
                                   a->ln_f_rstd, w + fp->ln_gamma, w + fp->ln_beta, (int)rq, d.D);
    if (fuse_ffn_bf16(k, d)) { /* writes d_attn_out = dout and d_ln_f */
        ffn_bf16_backward_first(s->d_ln_f, g + fp->fc1_kernel, g + fp->fc1_bias, g + fp->fc2_kernel,
                                g + fp->fc2_bias, d_attn_out, dout, ln_f, k->params16 + fp->fc1_kernel,
                                k->params16 + fp->fc2_kernel, a->h, a->h16, s->d_g, B, Tq, d.D, d.F,
                                drop ? &drop->ffn : NULL, k->staging);
    } else if (a->h16) { /* the fused ffn's bf16 form has backward_first */
        ops_ffn_h16(k->ops)->backward_first(s->d_ln_f, g + fp->fc1_kernel, g + fp->fc1_bias, g + fp->fc2_kernel,
                                            g + fp->fc2_bias, d_attn_out, dout, ln_f, w + fp->fc1_kernel,
                                            w + fp->fc2_kernel, a->h16, B, Tq, d.D, d.F, drop ? &drop->ffn : NULL);
    } else if (fused_ffn && k->ops->ffn.backward_first) { /* it writes d_attn_out = dout in its pass over dout */
        k->ops->ffn.backward_first(s->d_ln_f, g + fp->fc1_kernel, g + fp->fc1_bias, g + fp->fc2_kernel,
                                   g + fp->fc2_bias, d_attn_out, dout, ln_f, w + fp->fc1_kernel,
                                   w + fp->fc2_kernel, a->h, B, Tq, d.D, d.F, drop ? &drop->ffn : NULL);
    } else if (fused_ffn) {
        memcpy(d_attn_out, dout, rq * d.D * sizeof(float));
        memset(s->d_ln_f, 0, rq * d.D * sizeof(float));
        k->ops->ffn.backward(s->d_ln_f, g + fp->fc1_kernel, g + fp->fc1_bias, g + fp->fc2_kernel,
                             g + fp->fc2_bias, NULL, dout, ln_f, w + fp->fc1_kernel,
                             w + fp->fc2_kernel, a->h, B, Tq, d.D, d.F, drop ? &drop->ffn : NULL);
    } else {
        memcpy(d_attn_out, dout, rq * d.D * sizeof(float));
        memset(s->d_y2, 0, rq * d.D * sizeof(float));
        memset(s->d_h, 0, rq * d.F * sizeof(float));
        k->ops->dropout.backward(s->d_y2, dout, B, (size_t)Tq * d.D, drop ? &drop->ffn : NULL);
        /* The GELU output is cheaper to recompute than to keep for every step. */
        k->ops->gelu.forward(s->g, a->h, rq * d.F);
        kernels_dense_backward_first(k, s->d_g, g, s->d_y2, s->g, w, fp->fc2_kernel, fp->fc2_bias, (int)rq, d.F,
                                     d.D);
        k->ops->gelu.backward(s->d_h, s->d_g, a->h, rq * d.F);
        kernels_dense_backward_first(k, s->d_ln_f, g, s->d_h, ln_f, w, fp->fc1_kernel, fp->fc1_bias, (int)rq,
                                     d.D, d.F);
    }
    k->ops->layernorm.backward(d_attn_out, g + fp->ln_gamma, g + fp->ln_beta, s->d_ln_f,
                               a->attn_out, w + fp->ln_gamma, a->ln_f_mean, a->ln_f_rstd, (int)rq,
                               d.D);

    /* Attention: attn_out = x_q + att @ Wo + bo. */
    const float *att = a->att;
    const attention_backward_mix_fn backward_mix = !att && !k->params16 ? ops_attention_backward_mix(k->ops) : NULL;
    if (backward_mix) { /* d_att first; att rebuilt inside the attention's backward; then Wo's gradients */
        const float *wo = w + ap->o_kernel;
        if (k->ops->dense.backward_first) {
            k->ops->dense.backward_first(s->d_att, NULL, NULL, d_attn_out, NULL, wo, (int)rq, (int)HK, d.D);
        } else {
            memset(s->d_att, 0, rq * HK * sizeof(float));
            k->ops->dense.backward(s->d_att, NULL, NULL, d_attn_out, NULL, wo, (int)rq, (int)HK, d.D);
        }
        backward_mix(s->att, s->d_q, s->d_k, s->d_v, s->d_att, a->q, a->k, a->v, a->probs, kv_len, B, Tq, Tk, d.H,
                     d.K, drop ? &drop->attn : NULL);
        k->ops->dense.backward(NULL, g + ap->o_kernel, g + ap->o_bias, d_attn_out, s->att, wo, (int)rq, (int)HK,
                               d.D);
    } else {
        attention_backward_rebuilt(s, a, k, w, g, ap, d_attn_out, kv_len, d, B, Tq, Tk, drop);
    }
    if (fold_norms(k)) {
        folded_qkv_backward(dx_q, dx_kv, g, a, s, k, w, ap, d, B, Tq, Tk);
        return;
    }
    /* each rebuilt LayerNorm output just before its product reads it */
    const int kv_op = fused_kv ? TLB_OP_layernorm_pair : TLB_OP_layernorm;
    const float *v_mean = fused_kv ? a->ln_k_mean : a->ln_v_mean, *v_rstd = fused_kv ? a->ln_k_rstd : a->ln_v_rstd;
    const float *ln_q = normalised(a->ln_q, s->ln_q, k, TLB_OP_layernorm, a->x_q, a->ln_q_mean, a->ln_q_rstd,
                                   w + ap->ln_q_gamma, w + ap->ln_q_beta, (int)rq, d.D);
    kernels_dense_backward_first(k, s->d_ln_q, g, s->d_q, ln_q, w, ap->q_kernel, ap->q_bias, (int)rq, d.D,
                                 (int)HK);
    const float *ln_k = normalised(a->ln_k, s->ln_k, k, kv_op, a->x_kv, a->ln_k_mean, a->ln_k_rstd,
                                   w + ap->ln_k_gamma, w + ap->ln_k_beta, (int)rk, d.D);
    kernels_dense_backward_first(k, s->d_ln_k, g, s->d_k, ln_k, w, ap->k_kernel, ap->k_bias, (int)rk, d.D,
                                 (int)HK);
    const float *ln_v = normalised(a->ln_v, s->ln_v, k, kv_op, a->x_kv, v_mean, v_rstd, w + ap->ln_v_gamma,
                                   w + ap->ln_v_beta, (int)rk, d.D);
    kernels_dense_backward_first(k, s->d_ln_v, g, s->d_v, ln_v, w, ap->v_kernel, ap->v_bias, (int)rk, d.D,
                                 (int)HK);
    k->ops->layernorm.backward(dx_q, g + ap->ln_q_gamma, g + ap->ln_q_beta, s->d_ln_q, a->x_q,
                               w + ap->ln_q_gamma, a->ln_q_mean, a->ln_q_rstd, (int)rq, d.D);
    if (fused_kv) {
        k->ops->layernorm_pair.backward(dx_kv, g + ap->ln_k_gamma, g + ap->ln_k_beta,
                                        g + ap->ln_v_gamma, g + ap->ln_v_beta, s->d_ln_k, s->d_ln_v,
                                        a->x_kv, w + ap->ln_k_gamma, w + ap->ln_v_gamma,
                                        a->ln_k_mean, a->ln_k_rstd, (int)rk, d.D);
        return;
    }
    k->ops->layernorm.backward(dx_kv, g + ap->ln_k_gamma, g + ap->ln_k_beta, s->d_ln_k, a->x_kv,
                               w + ap->ln_k_gamma, a->ln_k_mean, a->ln_k_rstd, (int)rk, d.D);
    k->ops->layernorm.backward(dx_kv, g + ap->ln_v_gamma, g + ap->ln_v_beta, s->d_ln_v, a->x_kv,
                               w + ap->ln_v_gamma, a->ln_v_mean, a->ln_v_rstd, (int)rk, d.D);
}
