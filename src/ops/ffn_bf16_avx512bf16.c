/* Mixed precision's FFN stage (ffn_bf16.h): oneDNN's bf16 products, the
 * elementwise ops in AVX-512 inside the passes that round to bf16
 * (VCVTNEPS2BF16, as bf16_convert). Compiled for AVX512_BF16. */
#include "ops/ffn_bf16.h"

#include <omp.h>

#include "ops/bf16.h"
#include "ops/bf16_pairs_avx512bf16.h"
#include "ops/dense_bf16.h"
#include "ops/dense_bf16_dw.h"
#include "ops/dnnl_common.h"
#include "ops/simd_avx512.h"
#include "ops/dropout_mask_avx512.h"
#include "ops/gelu_simd.h"
#include "ops/prefetch.h"

/* Below this many values a pass runs on the calling thread alone. */
#define PASS_PARALLEL_MIN 32768

/* How many rows ahead a pass over column halves prefetches. */
#define PASS_PREFETCH_ROWS 4

/* bf16 values rounded up to 64 bytes: each operand starts on a line. */
static size_t on_line(size_t n) { return (n + 31) & ~(size_t)31; }

/* The staging: the forward's x16 [M, D] and g16 [M, F], fc1's and fc2's
 * operands; over them the backward's dy16 [M, D] and dh16 [M, F] (the dinp
 * products' operands), then the weight gradients' row pairs (bf16.h) of
 * dy, g and dh, and of x where dy's were (dw2, their reader, is done). */
typedef struct {
    uint16_t *x16, *g16;
    uint16_t *dy16, *dh16;
    uint32_t *dy_pairs, *g_pairs, *dh_pairs, *x_pairs;
} ffn_operands;

static ffn_operands operands(uint16_t *staging, int M, int D, int F)
{
    const size_t md = on_line((size_t)M * D), mf = on_line((size_t)M * F);
    const size_t pd = bf16_pairs_len((size_t)M, (size_t)D), pf = bf16_pairs_len((size_t)M, (size_t)F);
    uint16_t *pairs = staging + md + mf;
    return (ffn_operands){staging,
                          staging + md,
                          staging,
                          staging + md,
                          (uint32_t *)pairs,
                          (uint32_t *)(pairs + pd),
                          (uint32_t *)(pairs + pd + pf),
                          (uint32_t *)pairs};
}

size_t ffn_bf16_staging(int M, int D, int F)
{
    if (M <= 0 || D <= 0 || F <= 0) return 0;
    const size_t m = (size_t)M;
    return on_line(m * (size_t)D) + on_line(m * (size_t)F) + bf16_pairs_len(m, (size_t)D) +
           2 * bf16_pairs_len(m, (size_t)F);
}

int ffn_bf16_prepare(int M, int D, int F, tlb_error *err)
{
    if (M <= 0 || D <= 0 || F <= 0) return tlb_fail(err, "ffn_bf16: empty shape [%d, %d, %d]", M, D, F);
    /* fc1's and fc2's products, each kind (dense_bf16's set-up) */
    return dense_bf16_prepare(M, D, F, err) != 0 || dense_bf16_prepare(M, F, D, err) != 0 ? -1 : 0;
}

/* The lanes of v that k selects, rounded to bf16, at p. */
static inline void store16(uint16_t *p, vec v, vmask k)
{
    const __m256i r = (__m256i)_mm512_cvtneps_pbh(v);
    if (k == 0xffff) _mm256_storeu_si256((__m256i *)p, r);
    else _mm256_mask_storeu_epi16(p, k, r);
}

/* The bf16 values at p that k selects, widened (the other lanes zero). */
static inline vec load16(const uint16_t *p, vmask k)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, p)), 16));
}

/* g16 = bf16(gelu(h)) over n values: the GELU op's values, rounded as
 * bf16_convert rounds them; and h16 = bf16(h) where it is saved. */
static void gelu_to_bf16(uint16_t *g16, uint16_t *h16, const float *h, size_t n)
{
    const long nv = (long)(n / VW);
#pragma omp parallel for schedule(static) if (n >= PASS_PARALLEL_MIN)
    for (long i = 0; i < nv; i++) {
        const vec x = VLOAD(h + i * VW);
        store16(g16 + i * VW, VMUL(x, gelu_cdf(x)), 0xffff);
        if (h16) store16(h16 + i * VW, x, 0xffff);
    }
    const size_t at = (size_t)nv * VW;
    if (n > at) {
        const vmask k = VMASK((int)(n - at));
        const vec x = VMLOAD(h + at, k);
        store16(g16 + at, VMUL(x, gelu_cdf(x)), k);
        if (h16) store16(h16 + at, x, k);
    }
}

/* out = res + keep * out over M rows of D (dropout's then the residual's
 * values; the mask at dropout_simd.h's coordinates). */
static void drop_residual(float *out, const float *res, int M, int T, int D, const dropout_ctx *drop)
{
    const int active = dropout_active(drop);
#pragma omp parallel for schedule(static) if ((size_t)M * D >= PASS_PARALLEL_MIN)
    for (int m = 0; m < M; m++) {
        float *c = out + (size_t)m * D;
        const float *r = res + (size_t)m * D;
        const uint64_t skey = active ? dropout_sample_key(drop, m / T) : 0;
        const size_t elem = (size_t)(m % T) * D;
        if (m + PASS_PREFETCH_ROWS < M) /* res was written long before (the attention's output) */
            prefetch_floats(r + (size_t)PASS_PREFETCH_ROWS * D, (size_t)D);
        for (int j = 0; j < D; j += VW) {
            const vmask k = vlanes(D - j);
            vec v = VMLOAD(c + j, k);
            if (active) v = VMUL(v, mask_keep_x16(drop, skey, elem + j));
            VMSTORE(c + j, k, VADD(v, VMLOAD(r + j, k)));
        }
    }
}

void ffn_bf16_forward(float *out, float *h, uint16_t *h16, const float *inp, const uint16_t *w1_16,
                      const float *b1, const uint16_t *w2_16, const float *b2, const float *res, int B, int T, int D,
                      int F, const dropout_ctx *drop, uint16_t *staging)
{
    const int M = B * T;
    if (M <= 0) return;
    const ffn_operands s = operands(staging, M, D, F);
    bf16_convert(s.x16, inp, (size_t)M * D);
    tlb_dnnl_dense_product(b1 ? TLB_DENSE_FWD_BIAS : TLB_DENSE_FWD, M, D, F, dnnl_bf16, s.x16, w1_16, b1, h);
    gelu_to_bf16(s.g16, h16, h, (size_t)M * F);
    tlb_dnnl_dense_product(b2 ? TLB_DENSE_FWD_BIAS : TLB_DENSE_FWD, M, F, D, dnnl_bf16, s.g16, w2_16, b2, out);
    drop_residual(out, res, M, T, D, drop);
}

/* The columns [j0, j1) of N in VW blocks that thread t of nt owns: a column
 * sum then adds its rows in order whatever the thread count. */
static void owned_blocks(int N, int *j0, int *j1)
{
    const int blocks = (N + VW - 1) / VW, nt = omp_get_num_threads(), t = omp_get_thread_num();
    *j0 = (int)((long)blocks * t / nt) * VW;
    *j1 = (int)((long)blocks * (t + 1) / nt) * VW;
}

/* Columns of a group whose sums dout_pass keeps in registers: 4 vectors. */
#define SUM_GROUP (4 * VW)

/* Rows m and m + 1 (where `second`) of dout_pass's column group g under k[]. */
static inline __attribute__((always_inline)) void dout_row_pair(uint16_t *dy16, uint32_t *dy_pairs, float *dres,
                                                                vec sum[4], const vmask k[4], const float *dout, int m,
                                                                int T, int D, int g, const dropout_ctx *drop,
                                                                int active, const int second)
{
    const size_t row = (size_t)m * D + g, elem0 = (size_t)(m % T) * D + g, elem1 = (size_t)((m + 1) % T) * D + g;
    const uint64_t skey0 = active ? dropout_sample_key(drop, m / T) : 0;
    const uint64_t skey1 = active && second ? dropout_sample_key(drop, (m + 1) / T) : 0;
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        if (!k[q]) break;
        const size_t j = (size_t)q * VW;
        const vec v0 = VMLOAD(dout + row + j, k[q]);
        const vec v1 = second ? VMLOAD(dout + row + D + j, k[q]) : VZERO;
        if (dres) {
            VMSTORE(dres + row + j, k[q], v0);
            if (second) VMSTORE(dres + row + D + j, k[q], v1);
        }
        const vec dy0 = active ? VMUL(v0, mask_keep_x16(drop, skey0, elem0 + j)) : v0;
        const vec dy1 = second && active ? VMUL(v1, mask_keep_x16(drop, skey1, elem1 + j)) : v1;
        bf16_store_rows_and_pairs(dy16 + row + j, (size_t)D, dy_pairs ? dy_pairs + (size_t)(m / 2) * D + g + j : NULL,
                                  dy0, dy1, k[q], second);
        sum[q] = VADD(sum[q], dy0);
        if (second) sum[q] = VADD(sum[q], dy1);
    }
}

/* dres = dout; dy16 = bf16(keep * dout) and its row pairs (where dy_pairs
 * is not NULL); db2 += column sums of keep * dout, in groups of up to 4
 * vectors whose sums stay in registers down the rows (through memory, each
 * row's add waited on the last one's store); two rows a step. */
static void dout_pass(uint16_t *dy16, uint32_t *dy_pairs, float *dres, float *db2, const float *dout, int M, int T,
                      int D, const dropout_ctx *drop)
{
    const int active = dropout_active(drop);
#pragma omp parallel if ((size_t)M * D >= PASS_PARALLEL_MIN)
    {
        int j0, j1;
        owned_blocks(D, &j0, &j1);
        for (int g = j0; g < j1; g += SUM_GROUP) {
            const int ge = g + SUM_GROUP < j1 ? g + SUM_GROUP : j1;
            vmask k[4];
            vec sum[4];
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) {
                k[q] = g + q * VW < ge ? vlanes(D - g - q * VW) : 0;
                sum[q] = db2 ? VMLOAD(db2 + g + q * VW, k[q]) : VZERO;
            }
            int m = 0;
            for (; m + 2 <= M; m += 2) {
                if (m + PASS_PREFETCH_ROWS + 2 <= M) {
                    const size_t ahead = (size_t)(m + PASS_PREFETCH_ROWS) * D + g;
                    prefetch_floats(dout + ahead, (size_t)(ge - g));
                    prefetch_floats(dout + ahead + D, (size_t)(ge - g));
                }
                dout_row_pair(dy16, dy_pairs, dres, sum, k, dout, m, T, D, g, drop, active, 1);
            }
            if (m < M) dout_row_pair(dy16, dy_pairs, dres, sum, k, dout, m, T, D, g, drop, active, 0);
            if (db2) {
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) VMSTORE(db2 + g + q * VW, k[q], sum[q]);
            }
        }
    }
}

/* Rows m and m + 1 (where `second`) of dh_pass over the columns [j0, j1). */
static inline __attribute__((always_inline)) void dh_row_pair(uint16_t *dh16, uint32_t *dh_pairs, uint32_t *g_pairs,
                                                              float *db1, const float *dg, const float *h,
                                                              const uint16_t *h16, int m, int F, int j0, int j1,
                                                              const int second)
{
    const size_t row = (size_t)m * F, pair = (size_t)(m / 2) * F;
    for (int j = j0; j < j1; j += VW) {
        const vmask k = vlanes(F - j);
        vec value0, value1 = VZERO, dh1 = VZERO;
        const vec x0 = h16 ? load16(h16 + row + j, k) : VMLOAD(h + row + j, k);
        const vec dh0 = VMUL(VMLOAD(dg + row + j, k), gelu_grad_value(x0, &value0));
        if (second) {
            const vec x1 = h16 ? load16(h16 + row + F + j, k) : VMLOAD(h + row + F + j, k);
            dh1 = VMUL(VMLOAD(dg + row + F + j, k), gelu_grad_value(x1, &value1));
        }
        bf16_store_rows_and_pairs(dh16 ? dh16 + row + j : NULL, (size_t)F, dh_pairs ? dh_pairs + pair + j : NULL, dh0,
                                  dh1, k, second);
        if (g_pairs) bf16_store_rows_and_pairs(NULL, (size_t)F, g_pairs + pair + j, value0, value1, k, second);
        if (db1) {
            vec sum = VADD(VMLOAD(db1 + j, k), dh0);
            if (second) sum = VADD(sum, dh1);
            VMSTORE(db1 + j, k, sum);
        }
    }
}

/* dh = dg gelu'(h) into dh16 and its row pairs, the row pairs of g =
 * bf16(gelu(h)) for dw2 (each where not NULL), db1 += dh's column sums: the
 * GELU op's derivative and value from one Phi; h widened from h16 where
 * that is what was saved; two rows a step. */
static void dh_pass(uint16_t *dh16, uint32_t *dh_pairs, uint32_t *g_pairs, float *db1, const float *dg,
                    const float *h, const uint16_t *h16, int M, int F)
{
#pragma omp parallel if ((size_t)M * F >= PASS_PARALLEL_MIN)
    {
        int j0, j1;
        owned_blocks(F, &j0, &j1);
        int m = 0;
        for (; m + 2 <= M; m += 2) {
            if (m + PASS_PREFETCH_ROWS + 2 <= M) {
                /* half rows 1 KiB apart defeat the hardware prefetchers:
                 * h came from memory on demand (perf: most of the pass) */
                const size_t ahead = (size_t)(m + PASS_PREFETCH_ROWS) * F + j0, n = (size_t)(j1 - j0);
                for (int r = 0; r < 2; r++) {
                    prefetch_floats(dg + ahead + (size_t)r * F, n);
                    if (h16) prefetch_bf16(h16 + ahead + (size_t)r * F, n);
                    else prefetch_floats(h + ahead + (size_t)r * F, n);
                }
            }
            dh_row_pair(dh16, dh_pairs, g_pairs, db1, dg, h, h16, m, F, j0, j1, 1);
        }
        if (m < M) dh_row_pair(dh16, dh_pairs, g_pairs, db1, dg, h, h16, m, F, j0, j1, 0);
    }
}

void ffn_bf16_backward_first(float *dinp, float *dw1, float *db1, float *dw2, float *db2, float *dres,
                             const float *dout, const float *inp, const uint16_t *w1_16, const uint16_t *w2_16,
                             const float *h, const uint16_t *h16, float *dg, int B, int T, int D, int F,
                             const dropout_ctx *drop, uint16_t *staging)
{
    const int M = B * T;
    if (M <= 0) return;
    const ffn_operands s = operands(staging, M, D, F);
    dout_pass(s.dy16, dw2 ? s.dy_pairs : NULL, dres, db2, dout, M, T, D, drop);
    tlb_dnnl_dense_product(TLB_DENSE_BWD_DATA_SET, M, F, D, dnnl_bf16, s.dy16, w2_16, NULL, dg);
    dh_pass(dinp ? s.dh16 : NULL, dw1 ? s.dh_pairs : NULL, dw2 ? s.g_pairs : NULL, db1, dg, h, h16, M, F);
    if (dw2) dense_bf16_dw(dw2, s.g_pairs, s.dy_pairs, M, F, D);
    if (dinp) tlb_dnnl_dense_product(TLB_DENSE_BWD_DATA_SET, M, D, F, dnnl_bf16, s.dh16, w1_16, NULL, dinp);
    if (dw1) {
        bf16_convert_sums(NULL, s.x_pairs, NULL, inp, (size_t)M, (size_t)D);
        dense_bf16_dw(dw1, s.x_pairs, s.dh_pairs, M, D, F);
    }
}
