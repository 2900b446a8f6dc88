/* Mixed precision's FFN stage (ffn_bf16.h): oneDNN's bf16 products, the
 * elementwise ops in AVX-512 inside the passes that round to bf16
 * (VCVTNEPS2BF16, as bf16_convert). Compiled for AVX512_BF16. */
#include "ops/ffn_bf16.h"

#include <omp.h>

#include "ops/bf16.h"
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

size_t ffn_bf16_staging(int M, int D, int F)
{
    if (M <= 0 || D <= 0 || F <= 0) return 0;
    const size_t m = (size_t)M;
    return 2 * on_line(m * (size_t)D) + 2 * on_line(m * (size_t)F);
}

/* The staging's operands: x16 and dy16 [M, D], g16 and dh16 [M, F]. */
typedef struct {
    uint16_t *x16, *dy16, *g16, *dh16;
} ffn_operands;

static ffn_operands operands(uint16_t *staging, int M, int D, int F)
{
    const size_t md = on_line((size_t)M * D), mf = on_line((size_t)M * F);
    return (ffn_operands){staging, staging + md, staging + 2 * md, staging + 2 * md + mf};
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

/* dres = dout; dy16 = bf16(keep * dout); db2 += column sums of keep * dout,
 * in groups of up to 4 vectors whose sums stay in registers down the rows
 * (through memory, each row's add waited on the last one's store). */
static void dout_pass(uint16_t *dy16, float *dres, float *db2, const float *dout, int M, int T, int D,
                      const dropout_ctx *drop)
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
            for (int m = 0; m < M; m++) {
                const size_t row = (size_t)m * D + g, elem = (size_t)(m % T) * D + g;
                const uint64_t skey = active ? dropout_sample_key(drop, m / T) : 0;
                if (m + PASS_PREFETCH_ROWS < M)
                    prefetch_floats(dout + row + (size_t)PASS_PREFETCH_ROWS * D, (size_t)(ge - g));
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) {
                    if (!k[q]) break;
                    const size_t j = (size_t)q * VW;
                    const vec v = VMLOAD(dout + row + j, k[q]);
                    if (dres) VMSTORE(dres + row + j, k[q], v);
                    const vec dy = active ? VMUL(v, mask_keep_x16(drop, skey, elem + j)) : v;
                    store16(dy16 + row + j, dy, k[q]);
                    sum[q] = VADD(sum[q], dy);
                }
            }
            if (db2) {
#pragma GCC unroll 4
                for (int q = 0; q < 4; q++) VMSTORE(db2 + g + q * VW, k[q], sum[q]);
            }
        }
    }
}

/* dh16 = bf16(dg gelu'(h)), g16 = bf16(gelu(h)), db1 += column sums of
 * dg gelu'(h): the GELU op's derivative and value from one Phi; h widened
 * from h16 where that is what was saved. */
static void dh_pass(uint16_t *dh16, uint16_t *g16, float *db1, const float *dg, const float *h, const uint16_t *h16,
                    int M, int F)
{
#pragma omp parallel if ((size_t)M * F >= PASS_PARALLEL_MIN)
    {
        int j0, j1;
        owned_blocks(F, &j0, &j1);
        for (int m = 0; m < M; m++) {
            const size_t row = (size_t)m * F;
            if (m + PASS_PREFETCH_ROWS < M) {
                /* half rows 1 KiB apart defeat the hardware prefetchers:
                 * h came from memory on demand (perf: most of the pass) */
                const size_t ahead = row + (size_t)PASS_PREFETCH_ROWS * F + j0, n = (size_t)(j1 - j0);
                prefetch_floats(dg + ahead, n);
                if (h16) prefetch_bf16(h16 + ahead, n);
                else prefetch_floats(h + ahead, n);
            }
            for (int j = j0; j < j1; j += VW) {
                const vmask k = vlanes(F - j);
                vec value;
                const vec x = h16 ? load16(h16 + row + j, k) : VMLOAD(h + row + j, k);
                const vec grad = gelu_grad_value(x, &value);
                const vec dh = VMUL(VMLOAD(dg + row + j, k), grad);
                store16(dh16 + row + j, dh, k);
                store16(g16 + row + j, value, k);
                if (db1) VMSTORE(db1 + j, k, VADD(VMLOAD(db1 + j, k), dh));
            }
        }
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
    dout_pass(s.dy16, dres, db2, dout, M, T, D, drop);
    tlb_dnnl_dense_product(TLB_DENSE_BWD_DATA_SET, M, F, D, dnnl_bf16, s.dy16, w2_16, NULL, dg);
    dh_pass(s.dh16, s.g16, db1, dg, h, h16, M, F);
    if (dw2) dense_bf16_dw(dw2, s.g16, s.dy16, M, F, D);
    if (dinp) tlb_dnnl_dense_product(TLB_DENSE_BWD_DATA_SET, M, D, F, dnnl_bf16, s.dh16, w1_16, NULL, dinp);
    if (dw1) {
        bf16_convert(s.x16, inp, (size_t)M * D);
        dense_bf16_dw(dw1, s.x16, s.dh16, M, D, F);
    }
}
