/* ffn (ops.h) on the register-blocked GEMM of dense_simd.h, with the
 * elementwise ops in the products' output passes (GEMM_EPILOGUE, on each
 * block of rows as soon as it is stored):
 *   forward:  fc1's rows get h and gelu(h); fc2's rows become
 *             res + keep * (g @ w2 + b2), the mask drawn for the rows;
 *   backward: one pass over dout applies the mask (dy) and adds dres; the
 *             dg product's rows become dh = dg * gelu'(h) in place, and
 *             gelu(h) for dw2 is written beside them from the same h in
 *             registers and the same exp and Phi (gelu_simd.h), so neither
 *             dg nor a GELU pass exists (gelu(h) is recomputed rather than
 *             kept from the forward: memory per step).
 * Each piece does what the unfused ops do on the same backend, in the same
 * order, so the results are theirs bit for bit. Include simd_avx512.h or
 * simd_avx2.h, the matching dropout_mask_*.h and VKEEP first (as
 * dropout_simd.h). */
#ifndef TLB_FFN_SIMD_H
#define TLB_FFN_SIMD_H

#include <stddef.h>

#include "ops/dropout_mask.h"
#include "ops/gelu_simd.h"

struct gemm_args;
static inline void ffn_epilogue(const struct gemm_args *g, int m0);
#define GEMM_EPILOGUE ffn_epilogue
/* slot 0: a transposed weight (dense_simd.h); 2: gelu(h); 3: dy; 4: dh */
#define SCRATCH_SLOTS 5
#define FFN_G 2
#define FFN_DY 3
#define FFN_DH 4
#include "ops/dense_simd.h"

typedef enum { FFN_EPI_GELU, FFN_EPI_GELU_GRAD, FFN_EPI_DROP_RES } ffn_epi_kind;

typedef struct {
    ffn_epi_kind kind;
    float *g;             /* GELU: gelu(c), laid out like C */
    const float *aux;     /* GELU_GRAD: h; DROP_RES: res (like C) */
    const dropout_ctx *drop;
    int active, T;        /* DROP_RES: mask on or off; rows per sample */
} ffn_epi;

/* Rows [m0, m0 + MR) of C, just stored by the GEMM, in place (and gelu(h)
 * beside them). Every ffn product has ldc == N, so the rows are one span:
 * GELU and its derivative run the flat loop of a separate pass (a loop per
 * kind: a per-vector branch cost AVX2 a third of the GELU's speed). */
static inline void ffn_epilogue(const struct gemm_args *g, int m0)
{
    const ffn_epi *e = g->epi;
    const int rows = g->M - m0 < MR ? g->M - m0 : MR, N = g->N;
    const size_t at = (size_t)m0 * N, n = (size_t)rows * N, nv = n / VW * VW;
    float *C = g->C + at;
    switch (e->kind) {
    case FFN_EPI_GELU: {
        float *out = e->g + at;
        for (size_t i = 0; i < nv; i += VW) {
            const vec x = VLOAD(C + i);
            VSTORE(out + i, VMUL(x, gelu_cdf(x)));
        }
        if (n > nv) {
            const vmask k = VMASK((int)(n - nv));
            const vec x = VMLOAD(C + nv, k);
            VMSTORE(out + nv, k, VMUL(x, gelu_cdf(x)));
        }
        return;
    }
    case FFN_EPI_GELU_GRAD: {
        const float *h = e->aux + at;
        if (e->g) { /* gelu(h) for dw2 too, while h is in registers: no recompute pass */
            float *g = e->g + at;
            for (size_t i = 0; i < nv; i += VW) { /* one exp and one Phi serve both */
                const vec x = VLOAD(h + i), e = gelu_exp(x), cdf = gelu_cdf_given_exp(x, e);
                VSTORE(C + i, VMUL(VLOAD(C + i), gelu_grad_given(x, e, cdf)));
                VSTORE(g + i, VMUL(x, cdf));
            }
            if (n > nv) {
                const vmask k = VMASK((int)(n - nv));
                const vec x = VMLOAD(h + nv, k), e = gelu_exp(x), cdf = gelu_cdf_given_exp(x, e);
                VMSTORE(C + nv, k, VMUL(VMLOAD(C + nv, k), gelu_grad_given(x, e, cdf)));
                VMSTORE(g + nv, k, VMUL(x, cdf));
            }
            return;
        }
        for (size_t i = 0; i < nv; i += VW) VSTORE(C + i, VMUL(VLOAD(C + i), gelu_grad(VLOAD(h + i))));
        if (n > nv) {
            const vmask k = VMASK((int)(n - nv));
            VMSTORE(C + nv, k, VMUL(VMLOAD(C + nv, k), gelu_grad(VMLOAD(h + nv, k))));
        }
        return;
    }
    case FFN_EPI_DROP_RES:
        for (int i = 0; i < rows; i++) { /* mask coordinates as dropout_simd.h */
            float *c = C + (size_t)i * N;
            const float *res = e->aux + at + (size_t)i * N;
            const int m = m0 + i;
            const uint64_t skey = e->active ? dropout_sample_key(e->drop, m / e->T) : 0;
            const size_t elem = (size_t)(m % e->T) * N;
            int j = 0;
            for (; j + VW <= N; j += VW) {
                vec v = VLOAD(c + j);
                if (e->active) v = VMUL(v, VKEEP(e->drop, skey, elem + j));
                VSTORE(c + j, VADD(v, VLOAD(res + j)));
            }
            if (j < N) {
                const vmask k = VMASK(N - j);
                vec v = VMLOAD(c + j, k);
                if (e->active) v = VMUL(v, VKEEP(e->drop, skey, elem + j));
                VMSTORE(c + j, k, VADD(v, VMLOAD(res + j, k)));
            }
        }
        return;
    }
}

static inline int ffn_prepare_simd(int B, int T, int D, int F, tlb_error *err)
{
    const size_t M = (size_t)B * T;
    if (scratch_reserve(0, (size_t)D * F) != 0 || scratch_reserve(FFN_G, M * F) != 0 ||
        scratch_reserve(FFN_DY, M * D) != 0 || scratch_reserve(FFN_DH, M * F) != 0)
        return tlb_fail(err, "out of memory for the FFN's scratch (%zu rows of %d and %d)", M, D, F);
    return 0;
}

static inline void ffn_forward_simd(float *out, float *h, const float *inp, const float *w1,
                                    const float *b1, const float *w2, const float *b2,
                                    const float *res, int B, int T, int D, int F,
                                    const dropout_ctx *drop)
{
    const int M = B * T;
    if (M <= 0 || D <= 0) return;
    float *g = scratch(FFN_G, (size_t)M * F);
    const ffn_epi up = {FFN_EPI_GELU, g, NULL, NULL, 0, T};
    const gemm_args fc1 = {h, (size_t)F, inp, (size_t)D, 1, w1, (size_t)F, b1, 0, M, F, D, &up, NULL};
    gemm(&fc1);
    const ffn_epi down = {FFN_EPI_DROP_RES, NULL, res, drop, dropout_active(drop), T};
    const gemm_args fc2 = {out, (size_t)D, g, (size_t)F, 1, w2, (size_t)D, b2, 0, M, D, F, &down, NULL};
    gemm(&fc2);
}

/* dy = keep * dout over sample b (when the mask is on) and dres += dout, in
 * one pass over dout; plain accesses but for the tail (AVX2's masked ones
 * cost several). */
static inline void ffn_dout_sample(float *dy, float *dres, const float *dout, size_t n,
                                   const dropout_ctx *drop, int active, uint64_t skey, int add)
{
    size_t i = 0;
    for (; i + VW <= n; i += VW) {
        const vec v = VLOAD(dout + i);
        if (dres) VSTORE(dres + i, add ? VADD(VLOAD(dres + i), v) : v);
        if (active) VSTORE(dy + i, VMUL(v, VKEEP(drop, skey, i)));
    }
    if (i < n) {
        const vmask m = VMASK((int)(n - i));
        const vec v = VMLOAD(dout + i, m);
        if (dres) VMSTORE(dres + i, m, add ? VADD(VMLOAD(dres + i, m), v) : v);
        if (active) VMSTORE(dy + i, m, VMUL(v, VKEEP(drop, skey, i)));
    }
}

/* add 0: dinp and dres are written, not accumulated (ops.h, backward_first):
 * dres = dout replaces the caller's copy of the residual path. */
static inline void ffn_backward_into(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                     float *dres, const float *dout, const float *inp,
                                     const float *w1, const float *w2, const float *h, int B, int T,
                                     int D, int F, const dropout_ctx *drop, int add)
{
    const int M = B * T;
    if (M <= 0 || D <= 0) return;
    if (!add && dinp && F <= 0) memset(dinp, 0, (size_t)M * D * sizeof(float)); /* no products reach it */
    const int active = dropout_active(drop);
    const size_t per = (size_t)T * D;
    const float *dy = dout; /* without the mask, dy is dout itself */
    if (active || dres) {
        float *masked = active ? scratch(FFN_DY, (size_t)M * D) : NULL;
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
        for (int b = 0; b < B; b++)
            ffn_dout_sample(masked ? masked + b * per : NULL, dres ? dres + b * per : NULL,
                            dout + b * per, per, drop, active, active ? dropout_sample_key(drop, b) : 0, add);
        if (active) dy = masked;
    }
    if (F <= 0) {
        if (db2) column_sums(db2, dy, (size_t)M, D);
        return;
    }
    float *g = dw2 ? scratch(FFN_G, (size_t)M * F) : NULL; /* gelu(h), for dw2 */
    int have_g = 0;
    if (dinp || dw1 || db1) { /* dh[M,F] = (dy @ w2^T) * gelu'(h) (and g), then fc1's backward */
        float *dh = scratch(FFN_DH, (size_t)M * F);
        const float *w2t = transposed(w2, F, D);
        const ffn_epi grad = {FFN_EPI_GELU_GRAD, g, h, NULL, 0, T};
        const gemm_args dg = {dh, (size_t)F, dy, (size_t)D, 1, w2t, (size_t)F, NULL, 0, M, F, D, &grad, NULL};
        gemm(&dg);
        have_g = g != NULL;
        dense_backward_into(dinp, dw1, db1, dh, inp, w1, M, D, F, add);
    }
    if (dw2) { /* dw2[F,D] += gelu(h)^T @ dy (and db2 in spans, as the unfused dense backward) */
        if (!have_g) gelu_forward_simd(g, h, (size_t)M * F);
        gemm_args a = {dw2, (size_t)D, g, 1, (size_t)F, dy, (size_t)D, NULL, 1, F, D, M, NULL, NULL};
        if (db2 && gemm_spans(M)) a.colsum = db2, db2 = NULL;
        gemm(&a);
    }
    if (db2) column_sums(db2, dy, (size_t)M, D);
}

static inline void ffn_backward_simd(float *dinp, float *dw1, float *db1, float *dw2, float *db2, float *dres,
                                     const float *dout, const float *inp, const float *w1, const float *w2,
                                     const float *h, int B, int T, int D, int F, const dropout_ctx *drop)
{
    ffn_backward_into(dinp, dw1, db1, dw2, db2, dres, dout, inp, w1, w2, h, B, T, D, F, drop, 1);
}

static inline void ffn_backward_first_simd(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                           float *dres, const float *dout, const float *inp, const float *w1,
                                           const float *w2, const float *h, int B, int T, int D, int F,
                                           const dropout_ctx *drop)
{
    ffn_backward_into(dinp, dw1, db1, dw2, db2, dres, dout, inp, w1, w2, h, B, T, D, F, drop, 0);
}

#endif
