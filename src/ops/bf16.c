/* fp32 -> bf16 conversion (bf16.h). */
#include "ops/bf16.h"

#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "ops/bf16_pairs_avx512bf16.h"
#include "ops/prefetch.h"

/* Rows ahead that convert_sums prefetches. */
#define CONVERT_PREFETCH_ROWS 8

int bf16_native(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
}

uint16_t bf16_from_f32(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* quiet NaN */
    if ((u & 0x7f800000u) == 0) return (uint16_t)((u >> 16) & 0x8000); /* denormal: signed zero */
    u += 0x7fffu + ((u >> 16) & 1u); /* ties to even; overflow rounds to inf as it should */
    return (uint16_t)(u >> 16);
}

float bf16_to_f32(uint16_t h)
{
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* Below this many values a conversion runs on the calling thread alone. */
#define CONVERT_PARALLEL_MIN 65536

/* The AVX512_BF16 bodies are compiled for it by attribute, so the file needs
 * no special flags and the binary still runs on CPUs without it
 * (bf16_native() gates them). They are serial: the threads are split in
 * plain functions around them (clang outlines an OpenMP region into a
 * function without the caller's target attribute). */
#define TARGET_BF16 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* n values, 32 at a time; the tail under a mask (no scalar loop, same
 * rounding). */
TARGET_BF16 static void convert_range_avx512bf16(uint16_t *dst, const float *src, size_t n)
{
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src + i + 16), _mm512_loadu_ps(src + i));
        _mm512_storeu_si512((void *)(dst + i), (__m512i)v);
    }
    if (i < n) {
        const __mmask16 lo = (__mmask16)(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1);
        const __mmask16 hi = (__mmask16)(n - i > 16 ? (1u << (n - i - 16)) - 1 : 0);
        const __m256bh a = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(lo, src + i));
        _mm256_mask_storeu_epi16(dst + i, lo, (__m256i)a);
        if (hi) {
            const __m256bh b = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(hi, src + i + 16));
            _mm256_mask_storeu_epi16(dst + i + 16, hi, (__m256i)b);
        }
    }
}

/* The thread's share [*a, *b) of n items in units of `unit`. */
static void thread_share(size_t n, size_t unit, size_t *a, size_t *b)
{
    const size_t units = (n + unit - 1) / unit, nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    *a = units * t / nt * unit;
    *b = units * (t + 1) / nt * unit;
    if (*b > n) *b = n;
}

/* Each value is rounded alone, so splitting the work changes no bit. */
static void convert_avx512bf16(uint16_t *dst, const float *src, size_t n)
{
#pragma omp parallel if (n >= CONVERT_PARALLEL_MIN)
    {
        size_t a, b;
        thread_share(n, 32, &a, &b);
        if (a < b) convert_range_avx512bf16(dst + a, src + a, b - a);
    }
}

/* Columns of a group that convert_sums sums in registers: 4 vectors. */
#define SUM_GROUP 64

/* Rows r and r + 1 (where `second`) of the columns [g, g + 64) under k[]:
 * rounded into dst's rows and pairs' row pair r / 2 (each where not NULL),
 * and added to sum[] in row order. */
TARGET_BF16 static inline __attribute__((always_inline)) void
convert_row_pair(uint16_t *dst, uint32_t *pairs, __m512 sum[4], const __mmask16 k[4], const float *src, size_t r,
                 size_t cols, size_t g, const int second, const int sums)
{
    const float *x = src + r * cols + g;
#pragma GCC unroll 4
    for (int q = 0; q < 4; q++) {
        if (!k[q]) break;
        const __m512 v0 = _mm512_maskz_loadu_ps(k[q], x + 16 * q);
        const __m512 v1 = second ? _mm512_maskz_loadu_ps(k[q], x + cols + 16 * q) : _mm512_setzero_ps();
        bf16_store_rows_and_pairs(dst ? dst + r * cols + g + 16 * q : NULL, cols,
                                  pairs ? pairs + r / 2 * cols + g + 16 * q : NULL, v0, v1, k[q], second);
        if (sums) {
            sum[q] = _mm512_add_ps(sum[q], v0);
            if (second) sum[q] = _mm512_add_ps(sum[q], v1);
        }
    }
}

/* Columns [j0, j1) of rows x cols: rounded into dst and pairs (either may
 * be NULL), and where colsum is not NULL added into it row by row in order,
 * in groups of up to 4 vectors whose sums stay in registers down the rows
 * (through memory, each row's add waited on the last one's store); two rows
 * a step (one rounding instruction for both, and a row pair's operand); the
 * rows prefetched ahead (column parts of rows defeat the hardware
 * prefetchers). */
TARGET_BF16 static void convert_cols_avx512bf16(uint16_t *dst, uint32_t *pairs, float *colsum, const float *src,
                                                size_t rows, size_t cols, size_t j0, size_t j1)
{
    for (size_t g = j0; g < j1; g += SUM_GROUP) {
        const size_t ge = g + SUM_GROUP < j1 ? g + SUM_GROUP : j1;
        __mmask16 k[4];
        __m512 sum[4];
#pragma GCC unroll 4
        for (int q = 0; q < 4; q++) {
            const size_t j = g + 16 * (size_t)q;
            k[q] = (__mmask16)(j >= ge ? 0 : ge - j >= 16 ? 0xffff : (1u << (ge - j)) - 1);
            sum[q] = colsum ? _mm512_maskz_loadu_ps(k[q], colsum + j) : _mm512_setzero_ps();
        }
        size_t r = 0;
        for (; r + 2 <= rows; r += 2) {
            if (r + CONVERT_PREFETCH_ROWS + 1 < rows) {
                prefetch_floats(src + (r + CONVERT_PREFETCH_ROWS) * cols + g, ge - g);
                prefetch_floats(src + (r + CONVERT_PREFETCH_ROWS + 1) * cols + g, ge - g);
            }
            if (colsum) convert_row_pair(dst, pairs, sum, k, src, r, cols, g, 1, 1);
            else convert_row_pair(dst, pairs, sum, k, src, r, cols, g, 1, 0);
        }
        if (r < rows) convert_row_pair(dst, pairs, sum, k, src, r, cols, g, 0, colsum != NULL);
        if (colsum) {
#pragma GCC unroll 4
            for (int q = 0; q < 4; q++) _mm512_mask_storeu_ps(colsum + g + 16 * q, k[q], sum[q]);
        }
    }
}

/* convert_cols_avx512bf16 over every column. Threads own blocks of 16
 * columns, so a sum's order does not depend on their count. */
static void convert_sums_avx512bf16(uint16_t *dst, uint32_t *pairs, float *colsum, const float *src, size_t rows,
                                    size_t cols)
{
#pragma omp parallel if (rows * cols >= CONVERT_PARALLEL_MIN)
    {
        size_t j0, j1;
        thread_share(cols, 16, &j0, &j1);
        if (j0 < j1) convert_cols_avx512bf16(dst, pairs, colsum, src, rows, cols, j0, j1);
    }
}

/* Row r (and r + 1 where `second`) of the unit LayerNorm, rounded into
 * dst's rows and pairs' row pair r / 2 (each where not NULL). */
TARGET_BF16 static inline __attribute__((always_inline)) void
normalised_row_pair(uint16_t *dst, uint32_t *pairs, const float *x, const float *mean, const float *rstd, size_t r,
                    size_t cols, const int second)
{
    const float *xr = x + r * cols;
    const __m512 mu0 = _mm512_set1_ps(mean[r]), rs0 = _mm512_set1_ps(rstd[r]);
    const __m512 mu1 = _mm512_set1_ps(second ? mean[r + 1] : 0.0f), rs1 = _mm512_set1_ps(second ? rstd[r + 1] : 0.0f);
    for (size_t j = 0; j < cols; j += 16) {
        const __mmask16 k = (__mmask16)(cols - j >= 16 ? 0xffff : (1u << (cols - j)) - 1);
        const __m512 v0 = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + j), mu0), rs0);
        const __m512 v1 = second ? _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, xr + cols + j), mu1), rs1)
                                 : _mm512_setzero_ps();
        bf16_store_rows_and_pairs(dst ? dst + r * cols + j : NULL, cols, pairs ? pairs + r / 2 * cols + j : NULL, v0,
                                  v1, k, second);
    }
}

/* Rows [r0, r1) of rows (r0 even), two a step; x (saved by the forward,
 * from memory) prefetched ahead. */
TARGET_BF16 static void convert_normalised_rows_avx512bf16(uint16_t *dst, uint32_t *pairs, const float *x,
                                                           const float *mean, const float *rstd, size_t r0,
                                                           size_t r1, size_t cols)
{
    size_t r = r0;
    for (; r + 2 <= r1; r += 2) {
        if (r + CONVERT_PREFETCH_ROWS + 2 <= r1) prefetch_floats(x + (r + CONVERT_PREFETCH_ROWS) * cols, 2 * cols);
        normalised_row_pair(dst, pairs, x, mean, rstd, r, cols, 1);
    }
    if (r < r1) normalised_row_pair(dst, pairs, x, mean, rstd, r, cols, 0);
}

static void convert_normalised_avx512bf16(uint16_t *dst, uint32_t *pairs, const float *x, const float *mean,
                                          const float *rstd, size_t rows, size_t cols)
{
#pragma omp parallel if (rows * cols >= CONVERT_PARALLEL_MIN)
    {
        size_t r0, r1;
        thread_share(rows, 2, &r0, &r1); /* whole row pairs */
        if (r0 < r1) convert_normalised_rows_avx512bf16(dst, pairs, x, mean, rstd, r0, r1, cols);
    }
}

size_t bf16_pairs_len(size_t rows, size_t cols) { return ((rows + 1) / 2 * 2 * cols + 31) & ~(size_t)31; }

void bf16_pack_pairs(uint32_t *pairs, const uint16_t *src16, size_t rows, size_t cols)
{
    for (size_t p = 0; p < (rows + 1) / 2; p++)
        for (size_t j = 0; j < cols; j++) {
            const uint32_t odd = 2 * p + 1 < rows ? src16[(2 * p + 1) * cols + j] : 0;
            pairs[p * cols + j] = src16[2 * p * cols + j] | odd << 16;
        }
}

/* The plain-C path: h, the rounded value of row r, column j, into dst and
 * pairs (either may be NULL). */
static void store_rounded(uint16_t *dst, uint32_t *pairs, size_t r, size_t j, size_t cols, uint16_t h)
{
    if (dst) dst[r * cols + j] = h;
    if (pairs) {
        uint32_t *p = pairs + r / 2 * cols + j;
        *p = r % 2 ? (*p & 0xffffu) | (uint32_t)h << 16 : h; /* the odd row after its even one */
    }
}

void bf16_convert_normalised(uint16_t *dst, uint32_t *pairs, const float *x, const float *mean, const float *rstd,
                             size_t rows, size_t cols)
{
    if (bf16_native()) {
        convert_normalised_avx512bf16(dst, pairs, x, mean, rstd, rows, cols);
        return;
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++)
            store_rounded(dst, pairs, r, j, cols, bf16_from_f32((x[r * cols + j] - mean[r]) * rstd[r]));
}

void bf16_convert_sums(uint16_t *dst, uint32_t *pairs, float *colsum, const float *src, size_t rows, size_t cols)
{
    if (!colsum && !pairs) {
        bf16_convert(dst, src, rows * cols);
        return;
    }
    if (bf16_native()) {
        convert_sums_avx512bf16(dst, pairs, colsum, src, rows, cols);
        return;
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t j = 0; j < cols; j++) {
            store_rounded(dst, pairs, r, j, cols, bf16_from_f32(src[r * cols + j]));
            if (colsum) colsum[j] += src[r * cols + j];
        }
}

void bf16_convert(uint16_t *dst, const float *src, size_t n)
{
    if (bf16_native()) {
        convert_avx512bf16(dst, src, n);
        return;
    }
    for (size_t i = 0; i < n; i++) dst[i] = bf16_from_f32(src[i]);
}
