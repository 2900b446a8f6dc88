/* ffn (ops.h) on the register-blocked GEMM of dense_simd.h, with the
 * elementwise ops where the products' rows are still in L1:
 *   forward:  a thread takes MR rows at a time through the whole FFN: fc1's
 *             tiles for the rows into a per-thread buffer, gelu(h) of them
 *             into another, h saved from there (ffn_save_rows), fc2's
 *             tiles from gelu(h), then res + keep * (. + b2) on the stored
 *             output rows. Neither gelu(h) nor (in inference) h ever exists
 *             as an [M, F] tensor;
 *   backward: one pass over dout applies the mask (dy) and adds dres; the
 *             dg product's rows become dh = dg * gelu'(h) in place
 *             (GEMM_EPILOGUE), and gelu(h) for dw2 is written beside them
 *             from the same h in registers and the same Phi
 *             (gelu_simd.h), so neither dg nor a GELU pass exists (gelu(h)
 *             is recomputed rather than kept from the forward: memory).
 * Each piece does what the unfused ops do on the same backend, in the same
 * order, so the results are theirs bit for bit. Include simd_avx512.h or
 * simd_avx2.h, the matching dropout_mask_*.h and VKEEP first (as
 * dropout_simd.h). */
#ifndef TLB_FFN_SIMD_H
#define TLB_FFN_SIMD_H

#include <stddef.h>

#include "ops/dropout_mask.h"
#include "ops/gelu_simd.h"
#include "ops/prefetch.h"

struct gemm_args;
static inline void ffn_epilogue(const struct gemm_args *g, int m0);
#define GEMM_EPILOGUE ffn_epilogue
/* slot 0: a transposed weight (dense_simd.h); 2: gelu(h); 3: dy; 4: dh;
 * 5: the forward's per-thread rows (gelu(h), h); 6: w1^T beside w2^T */
#define SCRATCH_SLOTS 7
#define FFN_G 2
#define FFN_DY 3
#define FFN_DH 4
#define FFN_ROWS 5
#define FFN_W1T 6
#include "ops/dense_simd.h"

/* The backward's dg product epilogue: g (gelu(h) for dw2, or NULL) and h,
 * fp32 or (h16) bf16. */
typedef struct {
    float *g;
    const float *h;
    const uint16_t *h16;
} ffn_epi;

/* h's VW values at i, widened where it is kept in bf16. */
static inline vec ffn_h_at(const ffn_epi *e, size_t i) { return e->h16 ? vbf16_load(e->h16 + i) : VLOAD(e->h + i); }
/* Its last n < VW values at i, the other lanes zero. */
static inline vec ffn_h_tail(const ffn_epi *e, size_t i, size_t n)
{
    if (!e->h16) return VMLOAD(e->h + i, VMASK((int)n));
    uint16_t t[VW] = {0};
    memcpy(t, e->h16 + i, n * sizeof *t);
    return vbf16_load(t);
}

/* Rows [m0, m0 + MR) of dg, just stored by the GEMM, become dh in place
 * (and gelu(h) beside them). Every ffn product has ldc == N, so the rows
 * are one span: the flat loop of a separate pass. */
static inline void ffn_epilogue(const struct gemm_args *g, int m0)
{
    const ffn_epi *e = g->epi;
    const int rows = g->M - m0 < MR ? g->M - m0 : MR, N = g->N;
    const size_t at = (size_t)m0 * N, n = (size_t)rows * N, nv = n / VW * VW;
    float *C = g->C + at;
    if (e->g) { /* gelu(h) for dw2 too, while h is in registers: no recompute pass */
        float *gh = e->g + at;
        for (size_t i = 0; i < nv; i += VW) { /* one Phi serves both */
            vec value;
            const vec grad = gelu_grad_value(ffn_h_at(e, at + i), &value);
            VSTORE(C + i, VMUL(VLOAD(C + i), grad));
            VSTORE(gh + i, value);
        }
        if (n > nv) {
            const vmask k = VMASK((int)(n - nv));
            vec value;
            const vec grad = gelu_grad_value(ffn_h_tail(e, at + nv, n - nv), &value);
            VMSTORE(C + nv, k, VMUL(VMLOAD(C + nv, k), grad));
            VMSTORE(gh + nv, k, value);
        }
        return;
    }
    for (size_t i = 0; i < nv; i += VW) VSTORE(C + i, VMUL(VLOAD(C + i), gelu_grad(ffn_h_at(e, at + i))));
    if (n > nv) {
        const vmask k = VMASK((int)(n - nv));
        VMSTORE(C + nv, k, VMUL(VMLOAD(C + nv, k), gelu_grad(ffn_h_tail(e, at + nv, n - nv))));
    }
}

/* g[0, n) = gelu(h[0, n)): the GELU op's vector loop (gelu_simd.h); and
 * h16 = bf16(h) where h is saved so. */
static inline void ffn_gelu_span(float *g, uint16_t *h16, const float *h, size_t n)
{
    const size_t nv = n / VW * VW;
    for (size_t i = 0; i < nv; i += VW) {
        const vec x = VLOAD(h + i);
        VSTORE(g + i, VMUL(x, gelu_cdf(x)));
        if (h16) vbf16_store(h16 + i, x);
    }
    if (n > nv) {
        const vmask k = VMASK((int)(n - nv));
        const vec x = VMLOAD(h + nv, k);
        VMSTORE(g + nv, k, VMUL(x, gelu_cdf(x)));
        if (h16) {
            uint16_t t[VW];
            vbf16_store(t, x);
            memcpy(h16 + nv, t, (n - nv) * sizeof *t);
        }
    }
}

/* Output rows [m0, m0 + rows) of N: c = res + keep * c, the mask at the
 * coordinates dropout_simd.h draws it at. */
static inline void ffn_drop_res_rows(float *C, const float *res, int m0, int rows, int N, int T,
                                     const dropout_ctx *drop, int active)
{
    for (int i = 0; i < rows; i++) {
        float *c = C + (size_t)i * N;
        const float *r = res + (size_t)i * N;
        const int m = m0 + i;
        const uint64_t skey = active ? dropout_sample_key(drop, m / T) : 0;
        const size_t elem = (size_t)(m % T) * N;
        int j = 0;
        for (; j + VW <= N; j += VW) {
            vec v = VLOAD(c + j);
            if (active) v = VMUL(v, VKEEP(drop, skey, elem + j));
            VSTORE(c + j, VADD(v, VLOAD(r + j)));
        }
        if (j < N) {
            const vmask k = VMASK(N - j);
            vec v = VMLOAD(c + j, k);
            if (active) v = VMUL(v, VKEEP(drop, skey, elem + j));
            VMSTORE(c + j, k, VADD(v, VMLOAD(r + j, k)));
        }
    }
}

/* dst[0, n) = src[0, n): the saved h, read next in the backward, after
 * every other step's forward, so it goes past the caches (streaming
 * stores: no read of the lines it overwrites, no eviction of what the next
 * ops read); plain stores where dst is not vector-aligned. The caller
 * fences before its threads join. */
static inline void ffn_save_rows(float *dst, const float *src, size_t n)
{
    size_t i = 0;
    if (((uintptr_t)dst & (VW * sizeof(float) - 1)) == 0)
        for (; i + VW <= n; i += VW) VSTREAM(dst + i, VLOAD(src + i));
    for (; i < n; i++) dst[i] = src[i];
}

/* Floats of the forward's per-thread rows: gelu(h) and h (streamed to the
 * arena from there where it is saved). */
static inline size_t ffn_rows_floats(int F) { return (size_t)omp_get_max_threads() * 2 * MR * (size_t)F; }

static inline int ffn_prepare_simd(int B, int T, int D, int F, tlb_error *err)
{
    const size_t M = (size_t)B * T;
    if (scratch_reserve(0, (size_t)D * F) != 0 || scratch_reserve(FFN_W1T, (size_t)D * F) != 0 ||
        scratch_reserve(FFN_G, M * F) != 0 ||
        scratch_reserve(FFN_DY, M * D) != 0 || scratch_reserve(FFN_DH, M * F) != 0 ||
        scratch_reserve(FFN_ROWS, ffn_rows_floats(F)) != 0)
        return tlb_fail(err, "out of memory for the FFN's scratch (%zu rows of %d and %d)", M, D, F);
    return 0;
}

/* h (fp32) or h16 (bf16) the saved pre-activation, or neither (inference). */
static inline void ffn_forward_rows(float *out, float *h, uint16_t *h16, const float *inp, const float *w1,
                                    const float *b1, const float *w2, const float *b2, const float *res,
                                    int B, int T, int D, int F, const dropout_ctx *drop)
{
    const int M = B * T;
    if (M <= 0 || D <= 0) return;
    const int mt = (M + MR - 1) / MR, active = dropout_active(drop);
    const double macs = 2.0 * M * D * (F > 0 ? F : 1);
    float *rows_all = scratch(FFN_ROWS, ffn_rows_floats(F));
#pragma omp parallel if (macs >= PARALLEL_MACS)
    {
        float *g = rows_all + (size_t)omp_get_thread_num() * 2 * MR * F, *h_rows = g + (size_t)MR * F;
#pragma omp for schedule(static)
        for (int r = 0; r < mt; r++) {
            const int m0 = r * MR, rows = M - m0 < MR ? M - m0 : MR;
            const gemm_args up = {h_rows, (size_t)F, inp + (size_t)m0 * D, (size_t)D, 1, w1, (size_t)F, b1, 0,
                                  rows, F, D, NULL, NULL};
            for (int n0 = 0; n0 < F; n0 += TILE_N) tile_any(&up, 0, n0);
            ffn_gelu_span(g, h16 ? h16 + (size_t)m0 * F : NULL, h_rows, (size_t)rows * F);
            if (h) ffn_save_rows(h + (size_t)m0 * F, h_rows, (size_t)rows * F);
            const gemm_args down = {out + (size_t)m0 * D, (size_t)D, g, (size_t)F, 1, w2, (size_t)D, b2, 0,
                                    rows, D, F, NULL, NULL};
            for (int n0 = 0; n0 < D; n0 += TILE_N) tile_any(&down, 0, n0);
            ffn_drop_res_rows(out + (size_t)m0 * D, res + (size_t)m0 * D, m0, rows, D, T, drop, active);
        }
        if (h) VSTREAM_FENCE(); /* the streamed h visible before the threads join */
    }
}

static inline void ffn_forward_simd(float *out, float *h, const float *inp, const float *w1,
                                    const float *b1, const float *w2, const float *b2,
                                    const float *res, int B, int T, int D, int F,
                                    const dropout_ctx *drop)
{
    ffn_forward_rows(out, h, NULL, inp, w1, b1, w2, b2, res, B, T, D, F, drop);
}

static inline void ffn_forward_h16_simd(float *out, uint16_t *h16, const float *inp, const float *w1,
                                        const float *b1, const float *w2, const float *b2,
                                        const float *res, int B, int T, int D, int F,
                                        const dropout_ctx *drop)
{
    ffn_forward_rows(out, NULL, h16, inp, w1, b1, w2, b2, res, B, T, D, F, drop);
}

/* g = gelu(widened h16) over n values (the GELU op's loop on them). */
static inline void ffn_gelu_of_h16(float *g, const uint16_t *h16, size_t n)
{
    const ffn_epi e = {NULL, NULL, h16};
    const size_t nv = n / VW * VW;
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (size_t i = 0; i < nv; i += VW) {
        const vec x = ffn_h_at(&e, i);
        VSTORE(g + i, VMUL(x, gelu_cdf(x)));
    }
    if (n > nv) {
        const vec x = ffn_h_tail(&e, nv, n - nv);
        VMSTORE(g + nv, VMASK((int)(n - nv)), VMUL(x, gelu_cdf(x)));
    }
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

/* The columns [n0, n0 + TILE_N) of the next row group's h (rows from
 * next, below M), one tile's share at a time: saved by the forward, h came
 * from memory when the epilogue read it (perf on the AMD EPYC: half the
 * blocks' non-product samples). */
static inline void prefetch_next_h(const float *h, const uint16_t *h16, size_t next, size_t M, int F, int n0)
{
    const size_t n = (size_t)((n0 + TILE_N < F ? n0 + TILE_N : F) - n0);
    for (size_t r = next; r < next + MR && r < M; r++) {
        if (h16) prefetch_bf16(h16 + r * F + n0, n);
        else if (h) prefetch_floats(h + r * F + n0, n);
    }
}

/* The backward's products in blocks of R_SPAN rows, so that a block's dh
 * and gelu(h) (R_SPAN x F each) stay in L2 from the product that makes them
 * to the three that read them, instead of two [M, F] tensors going out to
 * memory and back. Per block: each group of MR rows takes dg = dy @ w2^T
 * (dh and gelu(h) in the epilogue) and then dinp (+)= dh @ w1^T while its
 * dh is in L1; then (after a barrier) dw1 += inp^T @ dh and dw2 += gelu(h)^T
 * @ dy over the block's rows, with the bias gradients as their column sums.
 * A block is one span of the whole-M products (gemm), and each value takes
 * the same operations in the same order as there, so the bits are those of
 * the unblocked path. Runs where M is long enough for spans (gemm_spans). */
static inline void ffn_backward_blocks(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                       const float *dy, const float *inp, const float *w1t, const float *w2t,
                                       const float *h, const uint16_t *h16, float *dh, float *g, int M, int D,
                                       int F, int add)
{
    const double macs = 3.0 * M * D * F;
#pragma omp parallel if (macs >= PARALLEL_MACS)
    {
        const int nth = omp_get_num_threads(), me = omp_get_thread_num();
        for (int r0 = 0; r0 < M; r0 += R_SPAN) {
            const int rows = M - r0 < R_SPAN ? M - r0 : R_SPAN, groups = (rows + MR - 1) / MR;
#pragma omp for schedule(static)
            for (int q = 0; q < groups; q++) {
                const int i = q * MR, mr = rows - i < MR ? rows - i : MR;
                const size_t m = (size_t)r0 + i;
                const ffn_epi e = {g + (size_t)i * F, h ? h + m * F : NULL, h16 ? h16 + m * F : NULL};
                const gemm_args dg = {dh + (size_t)i * F, (size_t)F, dy + m * D, (size_t)D, 1, w2t, (size_t)F,
                                      NULL, 0, mr, F, D, &e, NULL};
                for (int n0 = 0; n0 < F; n0 += TILE_N) {
                    prefetch_next_h(h, h16, m + (size_t)mr, (size_t)M, F, n0);
                    tile_any(&dg, 0, n0);
                }
                ffn_epilogue(&dg, 0);
                if (dinp) {
                    const gemm_args dx = {dinp + m * D, (size_t)D, dh + (size_t)i * F, (size_t)F, 1, w1t,
                                          (size_t)D, NULL, add, mr, D, F, NULL, NULL};
                    for (int n0 = 0; n0 < D; n0 += TILE_N) tile_any(&dx, 0, n0);
                }
            } /* the block's dh and gelu(h) complete before any weight gradient reads them */
            const gemm_args a1 = {dw1, (size_t)F, inp + (size_t)r0 * D, 1, (size_t)D, dh, (size_t)F, NULL, 1,
                                  D, F, rows, NULL, db1};
            gemm_span_share(&a1, 0, rows, me, nth);
            const gemm_args a2 = {dw2, (size_t)D, g, 1, (size_t)F, dy + (size_t)r0 * D, (size_t)D, NULL, 1,
                                  F, D, rows, NULL, db2};
            gemm_span_share(&a2, 0, rows, me, nth);
#pragma omp barrier /* before the next block overwrites dh and gelu(h) */
        }
    }
}

/* add 0: dinp and dres are written, not accumulated (ops.h, backward_first):
 * dres = dout replaces the caller's copy of the residual path. */
static inline void ffn_backward_into(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                     float *dres, const float *dout, const float *inp,
                                     const float *w1, const float *w2, const float *h, const uint16_t *h16,
                                     int B, int T, int D, int F, const dropout_ctx *drop, int add)
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
    if (dw1 && dw2 && gemm_spans(M)) {
        ffn_backward_blocks(dinp, dw1, db1, dw2, db2, dy, inp, transposed_in(FFN_W1T, w1, D, F),
                            transposed(w2, F, D), h, h16, scratch(FFN_DH, (size_t)M * F), g, M, D, F, add);
        return;
    }
    int have_g = 0;
    if (dinp || dw1 || db1) { /* dh[M,F] = (dy @ w2^T) * gelu'(h) (and g), then fc1's backward */
        float *dh = scratch(FFN_DH, (size_t)M * F);
        const float *w2t = transposed(w2, F, D);
        const ffn_epi grad = {g, h, h16};
        const gemm_args dg = {dh, (size_t)F, dy, (size_t)D, 1, w2t, (size_t)F, NULL, 0, M, F, D, &grad, NULL};
        gemm(&dg);
        have_g = g != NULL;
        dense_backward_into(dinp, dw1, db1, dh, inp, w1, M, D, F, add);
    }
    if (dw2) { /* dw2[F,D] += gelu(h)^T @ dy (and db2 in spans, as the unfused dense backward) */
        if (!have_g && h16) ffn_gelu_of_h16(g, h16, (size_t)M * F);
        else if (!have_g) gelu_forward_simd(g, h, (size_t)M * F);
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
    ffn_backward_into(dinp, dw1, db1, dw2, db2, dres, dout, inp, w1, w2, h, NULL, B, T, D, F, drop, 1);
}

static inline void ffn_backward_first_simd(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                           float *dres, const float *dout, const float *inp, const float *w1,
                                           const float *w2, const float *h, int B, int T, int D, int F,
                                           const dropout_ctx *drop)
{
    ffn_backward_into(dinp, dw1, db1, dw2, db2, dres, dout, inp, w1, w2, h, NULL, B, T, D, F, drop, 0);
}

static inline void ffn_backward_h16_simd(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                         float *dres, const float *dout, const float *inp, const float *w1,
                                         const float *w2, const uint16_t *h16, int B, int T, int D, int F,
                                         const dropout_ctx *drop)
{
    ffn_backward_into(dinp, dw1, db1, dw2, db2, dres, dout, inp, w1, w2, NULL, h16, B, T, D, F, drop, 1);
}

static inline void ffn_backward_first_h16_simd(float *dinp, float *dw1, float *db1, float *dw2, float *db2,
                                               float *dres, const float *dout, const float *inp, const float *w1,
                                               const float *w2, const uint16_t *h16, int B, int T, int D, int F,
                                               const dropout_ctx *drop)
{
    ffn_backward_into(dinp, dw1, db1, dw2, db2, dres, dout, inp, w1, w2, NULL, h16, B, T, D, F, drop, 0);
}

#endif
