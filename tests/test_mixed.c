/* Mixed precision (an op table's bf16_dense): the fp32 -> bf16 conversion, the
 * bf16 dense against an error bound derived from bf16 rounding, the flag in
 * an op table, the whole model against the golden vectors within a tolerance
 * derived from bf16 rounding (below), and a short training run against fp32.
 * Each check also shows that bf16 was really in play (an error above fp32
 * level), so none can pass by silently running fp32. The bf16 parts skip
 * where the CPU has no AVX512_BF16. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "train/golden.h"
#include "model/model.h"
#include "ops/bf16.h"
#include "ops/dense_bf16.h"
#include "ops/ops.h"
#include "train/adamw.h"
#include "train/init.h"
#include "train/train_step.h"
#include "util/rng.h"

static uint16_t bits16(float x) { return bf16_from_f32(x); }
static float from_bits(uint32_t u)
{
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

Test(mixed, scalar_rounding_rule)
{
    cr_expect_eq(bits16(1.0f), 0x3f80);
    cr_expect_eq(bits16(from_bits(0x3f808000)), 0x3f80, "a tie rounds to even (down)");
    cr_expect_eq(bits16(from_bits(0x3f818000)), 0x3f82, "a tie rounds to even (up)");
    cr_expect_eq(bits16(from_bits(0x3f808001)), 0x3f81, "above the tie rounds up");
    cr_expect_eq(bits16(from_bits(0xbf807fff)), 0xbf80, "below the tie rounds down");
    cr_expect_eq(bits16(INFINITY), 0x7f80);
    cr_expect_eq(bits16(from_bits(0x7f7fffff)), 0x7f80, "the largest float rounds to inf");
    const uint16_t nan = bits16(NAN);
    cr_expect((nan & 0x7f80) == 0x7f80 && (nan & 0x7f) != 0, "NaN stays NaN (0x%04x)", nan);
    cr_expect_eq(bits16(from_bits(0x00000001)), 0x0000, "a denormal becomes zero");
    cr_expect_eq(bits16(from_bits(0x80400000)), 0x8000, "a negative denormal becomes -0");
    cr_expect_eq(bf16_to_f32(0x3f80), 1.0f);
}

/* The vector path equals the scalar rule bit for bit, at every tail length. */
Test(mixed, vector_conversion_matches_scalar)
{
    float src[80];
    uint16_t got[80], want[80];
    rng_stream r = {9, 0};
    for (int i = 0; i < 80; i++) {
        uint32_t u = (uint32_t)rng_next_below(&r, 1u << 31) << 1 | (uint32_t)rng_next_below(&r, 2);
        src[i] = from_bits(u);
    }
    src[3] = from_bits(0x3f808000), src[4] = from_bits(0x3f818000), src[5] = NAN;
    src[6] = -INFINITY, src[7] = from_bits(0x00000003);
    for (int i = 0; i < 80; i++) want[i] = bf16_from_f32(src[i]);
    for (size_t n = 0; n <= 70; n++) {
        memset(got, 0xab, sizeof got);
        bf16_convert(got, src, n);
        cr_expect_eq(memcmp(got, want, n * sizeof(uint16_t)), 0, "n = %zu: differs", n);
        cr_expect_eq(got[n], 0xabab, "n = %zu: wrote past the end", n);
    }
}

/* Large conversions run on threads: still the scalar rule, and the column
 * sums add their rows in order, bit for bit, whatever the thread count (odd
 * column counts leave a partial block; 3 threads own unequal shares; 150
 * columns are more than one 64-column group of register sums). */
Test(mixed, threaded_conversion_and_sums_match_scalar)
{
    const size_t rows = 2111, shapes[] = {64, 40, 10, 150};
    const size_t most = rows * 150;
    float *src = malloc(most * sizeof(float)), *sums = malloc(150 * sizeof(float)), *want_sums = malloc(150 * sizeof(float));
    uint16_t *got = malloc((most + 1) * sizeof(uint16_t)), *want = malloc(most * sizeof(uint16_t));
    const size_t pairs_n = bf16_pairs_len(rows, 150) + 2; /* one pair past the longest */
    uint32_t *pairs = malloc(pairs_n * sizeof(uint16_t)), *want_pairs = malloc(pairs_n * sizeof(uint16_t));
    cr_assert(src && sums && want_sums && got && want && pairs && want_pairs);
    const int saved = omp_get_max_threads();
    rng_stream r = {11, 0};
    for (size_t i = 0; i < most; i++) src[i] = (float)rng_next_below(&r, 1u << 24) * 0x1p-20f - 8.0f;
    for (size_t i = 0; i < most; i++) want[i] = bf16_from_f32(src[i]);
    for (int threads = 1; threads <= 3; threads += 2) {
        omp_set_num_threads(threads);
        memset(got, 0xab, (most + 1) * sizeof(uint16_t));
        bf16_convert(got, src, most - 5);
        cr_expect_eq(memcmp(got, want, (most - 5) * sizeof(uint16_t)), 0, "%d threads: conversion differs", threads);
        cr_expect_eq(got[most - 5], 0xabab, "%d threads: wrote past the end", threads);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const size_t cols = shapes[s];
            for (size_t j = 0; j < cols; j++) sums[j] = want_sums[j] = 0.25f;
            for (size_t i = 0; i < rows; i++)
                for (size_t j = 0; j < cols; j++) want_sums[j] += src[i * cols + j];
            bf16_pack_pairs(want_pairs, want, rows, cols);
            /* rows, row pairs and sums in one pass; the pairs alone; the rows and sums */
            for (int form = 0; form < 3; form++) {
                memset(got, 0xab, (most + 1) * sizeof(uint16_t));
                memset(pairs, 0xab, pairs_n * sizeof(uint16_t));
                for (size_t j = 0; j < cols; j++) sums[j] = 0.25f;
                bf16_convert_sums(form != 1 ? got : NULL, form != 2 ? pairs : NULL, form != 1 ? sums : NULL, src,
                                  rows, cols);
                if (form != 1) {
                    cr_expect_eq(memcmp(got, want, rows * cols * sizeof(uint16_t)), 0,
                                 "%d threads, %zu columns, form %d: differs", threads, cols, form);
                    cr_expect_eq(got[rows * cols], 0xabab, "%d threads, %zu columns: wrote past the end", threads,
                                 cols);
                    cr_expect_eq(memcmp(sums, want_sums, cols * sizeof(float)), 0,
                                 "%d threads, %zu columns, form %d: sums differ", threads, cols, form);
                }
                if (form != 2) {
                    cr_expect_eq(memcmp(pairs, want_pairs, (rows + 1) / 2 * cols * sizeof(uint32_t)), 0,
                                 "%d threads, %zu columns, form %d: row pairs differ", threads, cols, form);
                    cr_expect_eq(pairs[(rows + 1) / 2 * cols], 0xabababab,
                                 "%d threads, %zu columns: pairs past the end", threads, cols);
                }
            }
        }
    }
    omp_set_num_threads(saved);
    free(src), free(sums), free(want_sums), free(got), free(want), free(pairs), free(want_pairs);
}

/* A unit LayerNorm rebuilt and rounded in one pass: the bits of every
 * LayerNorm apply this CPU runs (gamma 1, beta 0) and then bf16_convert; odd
 * widths, enough rows to run on threads. Each backend is asked for by name:
 * the automatic choice may be oneDNN's, which has no apply (the model then
 * does not fold the LayerNorm, block.c); ref runs everywhere. */
static void check_normalised_conversion(const char *spec);

Test(mixed, normalised_conversion_is_layernorm_apply_then_convert)
{
    const char *specs[] = {"layernorm:ref", "layernorm:avx2", "layernorm:avx512"};
    int checked = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        op_table t;
        tlb_error err;
        if (ops_table_select(&t, specs[s], &err) != 0) continue; /* this CPU lacks it */
        check_normalised_conversion(specs[s]);
        checked++;
    }
    cr_expect_geq(checked, 1, "no LayerNorm backend ran");
}

static void check_normalised_conversion(const char *spec)
{
    const int rows = 2111, widths[] = {64, 40, 10};
    op_table t;
    tlb_error err;
    cr_assert_eq(ops_table_select(&t, spec, &err), 0, "%s", err.msg);
    layernorm_apply_fn apply = ops_layernorm_apply(&t, TLB_OP_layernorm);
    cr_assert(apply, "%s: no LayerNorm apply", spec);
    float *x = malloc(sizeof(float) * rows * 64), *z = malloc(sizeof(float) * rows * 64);
    float *mean = malloc(sizeof(float) * rows), *rstd = malloc(sizeof(float) * rows);
    float ones[64], zeros[64];
    uint16_t *got = malloc(sizeof(uint16_t) * (rows * 64 + 1)), *want = malloc(sizeof(uint16_t) * rows * 64);
    const size_t pairs_n = (rows + 1) / 2 * 64 + 1;
    uint32_t *pairs = malloc(sizeof(uint32_t) * pairs_n), *want_pairs = malloc(sizeof(uint32_t) * pairs_n);
    cr_assert(x && z && mean && rstd && got && want && pairs && want_pairs);
    rng_stream r = {13, 0};
    for (int i = 0; i < rows * 64; i++) x[i] = 8 * rng_next_uniform(&r) - 4;
    for (int m = 0; m < rows; m++) mean[m] = 2 * rng_next_uniform(&r) - 1, rstd[m] = 0.25f + rng_next_uniform(&r);
    x[5] = mean[0]; /* x - mean = 0 exactly */
    for (int d = 0; d < 64; d++) ones[d] = 1.0f, zeros[d] = 0.0f;
    for (size_t w = 0; w < sizeof widths / sizeof widths[0]; w++) {
        const int D = widths[w];
        apply(z, x, mean, rstd, ones, zeros, rows, D);
        bf16_convert(want, z, (size_t)rows * D);
        bf16_pack_pairs(want_pairs, want, (size_t)rows, (size_t)D);
        for (int form = 0; form < 3; form++) { /* rows and pairs, rows, pairs */
            memset(got, 0xab, sizeof(uint16_t) * (rows * 64 + 1));
            memset(pairs, 0xab, sizeof(uint32_t) * pairs_n);
            bf16_convert_normalised(form != 2 ? got : NULL, form != 1 ? pairs : NULL, x, mean, rstd, (size_t)rows,
                                    (size_t)D);
            if (form != 2) {
                cr_expect_eq(memcmp(got, want, sizeof(uint16_t) * rows * D), 0, "%s, width %d: differs", spec, D);
                cr_expect_eq(got[rows * D], 0xabab, "%s, width %d: wrote past the end", spec, D);
            }
            if (form != 1) {
                cr_expect_eq(memcmp(pairs, want_pairs, sizeof(uint32_t) * (rows + 1) / 2 * D), 0,
                             "%s, width %d: row pairs differ", spec, D);
                cr_expect_eq(pairs[(rows + 1) / 2 * D], 0xabababab, "%s, width %d: pairs past the end", spec, D);
            }
        }
    }
    free(x), free(z), free(mean), free(rstd), free(got), free(want), free(pairs), free(want_pairs);
}

/* The precision is a property of one op table: turning bf16 on in one
 * leaves another alone; forcing a dense backend or a new selection is fp32. */
Test(mixed, precision_belongs_to_a_table)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    op_table a, b;
    cr_assert_eq(ops_table_select(&a, NULL, NULL), 0);
    b = a;
    cr_assert_eq(ops_table_set_bf16(&a, 1), 0);
    cr_expect_eq(a.bf16_dense, 1);
    cr_expect_eq(b.bf16_dense, 0, "another table changed");
    cr_expect_str_eq(ops_table_precision(&a), "bf16 dense");
    cr_expect_str_eq(ops_table_precision(&b), "fp32");
    cr_assert_eq(ops_table_force(&a, TLB_OP_dense, TLB_BACKEND_REF), 0);
    cr_expect_eq(a.bf16_dense, 0, "forcing a dense backend turns bf16 off");
    cr_assert_eq(ops_table_set_bf16(&a, 1), 0);
    cr_assert_eq(ops_table_select(&a, "avx2", NULL), 0);
    cr_expect_eq(a.bf16_dense, 0, "a new selection starts in fp32");
}

Test(mixed, bf16_refused_without_avx512_bf16)
{
    if (ops_mixed_precision_supported()) cr_skip_test("this CPU has AVX512_BF16");
    op_table a;
    ops_table_automatic(&a);
    cr_expect_eq(ops_table_set_bf16(&a, 1), -1);
    cr_expect_eq(a.bf16_dense, 0);
}

/* out = A @ B for row-major A[M,K] (stride sa_r, sa_c) and B[K,N]: the
 * double-precision product and sum_k |a||b|, the scale of the error that
 * bf16 rounding of both operands can add (check_bound). */
static void ref_product(double *out, double *absum, const float *a, long sar, long sac,
                        const float *b, int M, int K, int N)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0, t = 0;
            for (int k = 0; k < K; k++) {
                const double x = a[m * sar + k * sac], y = b[(size_t)k * N + n];
                s += x * y, t += fabs(x * y);
            }
            out[(size_t)m * N + n] = s, absum[(size_t)m * N + n] = t;
        }
}

/* Checks got - base (the op accumulates onto base) against want within the
 * bf16 bound; returns the largest error relative to the largest |want|. */
static double check_bound(const char *what, const float *got, float base, const double *want,
                          const double *absum, size_t n, int K)
{
    /* bf16 keeps 8 significant bits: rounding to nearest moves a value by at
     * most u = 2^-8 of itself, so a product of two rounded operands by
     * (1 + u)^2 - 1 = 2u + u^2 of the exact one; plus K fp32 additions.
     * (The bound said u per product until session 20: a single product of
     * the tiles test came out at 1.18 u.) */
    const double u = ldexp(1.0, -8), unit = 2 * u + u * u + K * ldexp(1.0, -23);
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - base - want[i]);
        cr_expect_leq(err, unit * absum[i] + 1e-6, "%s[%zu]: error %.3e over the bf16 bound %.3e",
                      what, i, err, unit * absum[i]);
        worst = fmax(worst, err), scale = fmax(scale, fabs(want[i]));
    }
    return worst / scale;
}

static void dense_case(int M, int K, int N)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    tlb_error err;
    size_t staging_n = dense_bf16_staging(M, K, N);
    cr_assert_eq(dense_bf16_prepare(M, K, N, &err), 0, "%s", err.msg);
    rng_stream r = {(uint64_t)(M * 131 + K * 7 + N), 0};
    float *inp = malloc(sizeof(float) * M * K), *w = malloc(sizeof(float) * K * N);
    float *bias = malloc(sizeof(float) * N), *dout = malloc(sizeof(float) * M * N);
    for (int i = 0; i < M * K; i++) inp[i] = 2 * rng_next_uniform(&r) - 1;
    for (int i = 0; i < K * N; i++) w[i] = 2 * rng_next_uniform(&r) - 1;
    for (int i = 0; i < N; i++) bias[i] = 2 * rng_next_uniform(&r) - 1;
    for (int i = 0; i < M * N; i++) dout[i] = 2 * rng_next_uniform(&r) - 1;
    const size_t big = (size_t)(M > K ? M : K) * (N > K ? N : K);
    double *want = malloc(sizeof(double) * big), *absum = malloc(sizeof(double) * big);
    float *out = malloc(sizeof(float) * M * N), *dinp = malloc(sizeof(float) * M * K);
    float *dw = malloc(sizeof(float) * K * N), *dbias = malloc(sizeof(float) * N);
    uint16_t *w16 = malloc(sizeof(uint16_t) * K * N), *staging = malloc(sizeof(uint16_t) * staging_n);
    bf16_convert(w16, w, (size_t)K * N); /* as the model converts its weights once per forward */

    /* forward, bias added exactly */
    dense_bf16_forward(out, inp, w16, bias, M, K, N, staging);
    ref_product(want, absum, inp, K, 1, w, M, K, N);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) want[(size_t)m * N + n] += bias[n];
    double rel[3];
    rel[0] = check_bound("out", out, 0.0f, want, absum, (size_t)M * N, K);

    /* backward accumulates onto what the gradients hold */
    for (int i = 0; i < M * K; i++) dinp[i] = 0.5f;
    for (int i = 0; i < K * N; i++) dw[i] = 0.5f;
    for (int i = 0; i < N; i++) dbias[i] = 0.5f;
    dense_bf16_backward(dinp, dw, dbias, dout, inp, w16, M, K, N, staging);
    float *wt = calloc((size_t)K * N, sizeof(float)); /* w^T as a row-major [N,K] */
    for (int k = 0; k < K; k++)
        for (int n = 0; n < N; n++) wt[(size_t)n * K + k] = w[(size_t)k * N + n];
    ref_product(want, absum, dout, N, 1, wt, M, N, K);
    rel[1] = check_bound("dinp", dinp, 0.5f, want, absum, (size_t)M * K, N);
    ref_product(want, absum, inp, 1, K, dout, K, M, N); /* inp^T @ dout */
    rel[2] = check_bound("dw", dw, 0.5f, want, absum, (size_t)K * N, M);
    for (int n = 0; n < N; n++) {
        double s = 0.5;
        for (int m = 0; m < M; m++) s += dout[(size_t)m * N + n];
        cr_expect_leq(fabs(dbias[n] - s), 1e-4 * (1 + fabs(s)), "dbias[%d] is an fp32 column sum", n);
        float f = 0.5f; /* and exactly the fp32 sum of the rows in order */
        for (int m = 0; m < M; m++) f += dout[(size_t)m * N + n];
        cr_expect_eq(dbias[n], f, "dbias[%d] = %.9g, the rows' fp32 sum in order %.9g", n, dbias[n], f);
    }

    /* backward_first writes dinp over stale values: the numbers of a
     * zeroed dinp accumulated, and the same dw and dbias */
    float *dinp1 = malloc(sizeof(float) * M * K), *dw1 = malloc(sizeof(float) * K * N);
    float *dbias1 = malloc(sizeof(float) * N);
    for (int i = 0; i < M * K; i++) dinp[i] = 0.0f, dinp1[i] = 1e30f;
    for (int i = 0; i < K * N; i++) dw[i] = dw1[i] = 0.5f;
    for (int i = 0; i < N; i++) dbias[i] = dbias1[i] = 0.5f;
    dense_bf16_backward(dinp, dw, dbias, dout, inp, w16, M, K, N, staging);
    dense_bf16_backward_first(dinp1, dw1, dbias1, dout, inp, w16, M, K, N, staging);
    for (int i = 0; i < M * K; i++)
        cr_expect_eq(dinp1[i], dinp[i], "first: dinp[%d] %.9g vs %.9g", i, dinp1[i], dinp[i]);
    for (int i = 0; i < K * N; i++) cr_expect_eq(dw1[i], dw[i], "first: dw[%d]", i);
    for (int i = 0; i < N; i++) cr_expect_eq(dbias1[i], dbias[i], "first: dbias[%d]", i);
    /* on inp's row pairs written by the caller (the folded q/k/v
     * products): the same bits, written (first) or accumulated */
    uint16_t *inp16 = malloc(sizeof(uint16_t) * M * K), *dout16 = malloc(sizeof(uint16_t) * dense_bf16_dout_staging(M, N));
    uint32_t *inp_pairs = malloc(sizeof(uint16_t) * bf16_pairs_len((size_t)M, (size_t)K));
    float *dinp2 = malloc(sizeof(float) * M * K), *dw2 = malloc(sizeof(float) * K * N);
    float *dbias2 = malloc(sizeof(float) * N);
    bf16_convert(inp16, inp, (size_t)M * K);
    bf16_pack_pairs(inp_pairs, inp16, (size_t)M, (size_t)K);
    for (int first = 1; first >= 0; first--) {
        for (int i = 0; i < M * K; i++) dinp2[i] = first ? 1e30f : 0.0f;
        for (int i = 0; i < K * N; i++) dw2[i] = 0.5f;
        for (int i = 0; i < N; i++) dbias2[i] = 0.5f;
        dense_bf16_backward_paired(dinp2, dw2, dbias2, dout, inp_pairs, w16, M, K, N, dout16, first);
        for (int i = 0; i < M * K; i++) cr_expect_eq(dinp2[i], dinp[i], "paired (first %d): dinp[%d]", first, i);
        for (int i = 0; i < K * N; i++) cr_expect_eq(dw2[i], dw[i], "paired (first %d): dw[%d]", first, i);
        for (int i = 0; i < N; i++) cr_expect_eq(dbias2[i], dbias[i], "paired (first %d): dbias[%d]", first, i);
    }
    free(inp16), free(inp_pairs), free(dout16), free(dinp2), free(dw2), free(dbias2);
    free(dinp1), free(dw1), free(dbias1);
    /* bf16 was in play: fp32 would sit near 1e-7 */
    for (int i = 0; i < 3; i++)
        cr_expect_gt(rel[i], 1e-5, "product %d: relative error %.2e is fp32-level", i, rel[i]);
    free(inp), free(w), free(bias), free(dout), free(want), free(absum), free(out), free(dinp);
    free(dw), free(dbias), free(wt), free(w16), free(staging);
}

Test(mixed, dense_odd_shape) { dense_case(37, 67, 19); }
Test(mixed, dense_head_shape) { dense_case(9, 64, 10); }
Test(mixed, dense_fc_shape) { dense_case(136, 256, 64); }
/* The weight gradient's own kernel (dense_bf16_dw.h): an odd row count (a
 * zero row pairs the last), dw rows in tiles of 6 and a tail, column tiles
 * of 4, 3 and 1 vectors with partial last vectors, one row alone. */
Test(mixed, dense_weight_gradient_tiles)
{
    dense_case(33, 13, 71);
    dense_case(6, 7, 40);
    dense_case(1, 5, 3);
}

/* bf16 rounding emulated on the ref backend: a dense layer whose operands
 * are rounded to bf16 (the scalar rule, ops/bf16.h) before an exact fp32
 * ref product; bias gradients from the unrounded dout, as dense_bf16 does.
 * What bf16 rounding alone does to the network, computed by a path that
 * shares nothing with oneDNN's bf16 kernels. */
static float *rounded_copy(const float *x, size_t n)
{
    float *y = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) y[i] = bf16_to_f32(bf16_from_f32(x[i]));
    return y;
}

static void emulated_forward(float *out, const float *inp, const float *w, const float *bias, int M, int K, int N)
{
    float *a = rounded_copy(inp, (size_t)M * K), *b = rounded_copy(w, (size_t)K * N);
    ops_impl_dense(TLB_BACKEND_REF)->forward(out, a, b, bias, M, K, N);
    free(a), free(b);
}

static void emulated_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                              const float *w, int M, int K, int N)
{
    float *g = rounded_copy(dout, (size_t)M * N), *a = rounded_copy(inp, (size_t)M * K);
    float *b = rounded_copy(w, (size_t)K * N);
    ops_impl_dense(TLB_BACKEND_REF)->backward(dinp, dw, NULL, g, a, b, M, K, N);
    if (dbias) ops_impl_dense(TLB_BACKEND_REF)->backward(NULL, NULL, dbias, dout, inp, w, M, K, N);
    free(g), free(a), free(b);
}

/* The golden files in mixed precision. The tolerance is derived from bf16's
 * rounding, not picked: the same file is first checked on the ref backend
 * with the emulated bf16 dense above, which measures, per group (loss,
 * logits, traces, gradients), the error that rounding the dense operands to
 * bf16 causes in this network and this input; the native bf16 run (oneDNN)
 * must stay within twice that, plus the fp32 level the golden README
 * calibrates (2e-5 of the scale). Twice: the two differ only in fp32
 * summation order, which can move an activation across a bf16 rounding
 * boundary now and then. Both sides fold the attention's LayerNorms into
 * the q, k, v products (ops_table_folds_norms: the emulation then rounds
 * z and diag(gamma) W, as mixed precision does), or, with unfolded = 1
 * ("layernorm_pair:off"), neither does. */
static void golden_within_bf16_tolerance_as(const char *path, int unfolded)
{
    tlb_error err = {0};
    op_table emulated, native;
    cr_assert_eq(ops_table_select(&emulated, unfolded ? "ref,layernorm_pair:off" : "ref", &err), 0, "%s", err.msg);
    emulated.dense = (dense_op){emulated_forward, emulated_backward, NULL, NULL};
    cr_assert_eq(ops_table_select(&native, unfolded ? "layernorm_pair:off" : NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(ops_table_set_bf16(&native, 1), 0);
    cr_assert_eq(ops_table_folds_norms(&emulated), !unfolded, "%s: the emulation's fold", path);
    cr_assert_eq(ops_table_folds_norms(&native), !unfolded && ops_table_fused(&native, TLB_OP_layernorm_pair),
                 "%s: mixed precision's fold", path);
    golden_report emu, rep;
    cr_assert_eq(golden_check(path, &emulated, &emu, &err), 0, "%s", err.msg);
    cr_assert_eq(golden_check(path, &native, &rep, &err), 0, "%s", err.msg);
    int seen = 0;
    for (int g = 0; g < rep.num_groups; g++) {
        const golden_group *x = &rep.groups[g];
        if (strcmp(x->name, "loss") && strcmp(x->name, "logits") && strcmp(x->name, "trace") && strcmp(x->name, "grad"))
            continue;
        const golden_group *e = NULL;
        for (int k = 0; k < emu.num_groups; k++)
            if (strcmp(emu.groups[k].name, x->name) == 0) e = &emu.groups[k];
        cr_assert_not_null(e, "%s: no %s group in the emulated check", path, x->name);
        seen++;
        const double tol = 2.0 * e->worst_rel + 2e-5;
        cr_log_info("mixed precision%s, golden %s: %-6s native %.3e, emulated bf16 %.3e, tolerance %.3e (%s)",
                    unfolded ? " (unfolded)" : "", path, x->name, x->worst_rel, e->worst_rel, tol, x->worst_tensor);
        cr_expect_leq(x->worst_rel, tol, "%s: %s: %s off by %.3e of its scale (emulated bf16: %.3e; tolerance %.3e)",
                      path, x->name, x->worst_tensor, x->worst_rel, e->worst_rel, tol);
        if (strcmp(x->name, "grad") == 0) {
            cr_expect_gt(x->worst_rel, 2e-5, "%s: gradients at fp32 level: was bf16 used?", path);
            cr_expect_gt(e->worst_rel, 2e-5, "%s: the emulation did not round", path);
        }
    }
    cr_expect_eq(seen, 4, "%s: expected loss, logits, trace and grad groups, saw %d", path, seen);
}

static void golden_within_bf16_tolerance(const char *path)
{
    golden_within_bf16_tolerance_as(path, 0);
    golden_within_bf16_tolerance_as(path, 1);
}

Test(mixed, golden_seed_keras_within_tolerance)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    golden_within_bf16_tolerance("tests/data/seed_keras.safetensors");
}

/* The slow-state options (learned state, sinusoid table, state readout,
 * Ns != C) in mixed precision, with the seed case's tolerances. (Written on
 * a machine without AVX512_BF16: it has not run yet where it skips.) */
Test(mixed, golden_state_files_within_tolerance)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    golden_within_bf16_tolerance("tests/data/state_learned_keras.safetensors");
    golden_within_bf16_tolerance("tests/data/state_sinusoid_paper.safetensors");
    golden_within_bf16_tolerance("tests/data/state_zeros_readout_keras.safetensors");
}

/* The sequence options (token inputs, chunk positions, the hidden ReLU head
 * in bf16 too) in mixed precision, with the same tolerances. */
Test(mixed, golden_sequence_files_within_tolerance)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    golden_within_bf16_tolerance("tests/data/tokens_keras.safetensors");
    golden_within_bf16_tolerance("tests/data/tokens_lra_paper.safetensors");
    golden_within_bf16_tolerance("tests/data/image_chunkpos_head_keras.safetensors");
}

/* Along a short training run (a small model, 12 AdamW steps at a high rate on
 * fixed data, dropout on) the bf16 loss stays within 2% of the fp32 loss. */
static void train_losses(double *loss, int steps, int mixed)
{
    tlb_model_config c = model_config_seed();
    c.image_size = 16;
    const int B = 24;
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    op_table ops;
    ops_table_automatic(&ops);
    if (mixed) cr_assert_eq(ops_table_set_bf16(&ops, 1), 0);
    model_use_ops(&m, &ops);
    cr_assert_eq(model_plan(&m, B, &err), 0, "%s", err.msg);
    init_keras(&m, 5);
    const size_t n = model_num_params(&m), per = 16 * 16 * 3;
    float *am = calloc(n, sizeof(float)), *av = calloc(n, sizeof(float));
    float *img = malloc(B * per * sizeof(float));
    int labels[B];
    rng_stream r = {21, 0};
    for (size_t i = 0; i < B * per; i++) img[i] = rng_next_uniform(&r);
    for (int b = 0; b < B; b++) labels[b] = b % 10;
    const train_stepper s = {.model = &m, .adam_m = am, .adam_v = av,
                             .hparams = adamw_keras_defaults(1e-3f, 1e-4f), .micro_batch = B};
    for (int t = 1; t <= steps; t++) {
        train_step_result res;
        cr_assert_eq(train_step(&s, img, labels, NULL, B, t, (uint64_t)t, 1e-3f, &res, &err), 0, "%s", err.msg);
        loss[t - 1] = res.loss / B;
    }
    free(am), free(av), free(img);
    model_destroy(&m);
}

Test(mixed, short_training_follows_fp32)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    enum { STEPS = 12 };
    double fp32[STEPS], bf16[STEPS];
    train_losses(fp32, STEPS, 0);
    train_losses(bf16, STEPS, 1);
    double worst = 0;
    for (int t = 0; t < STEPS; t++) {
        const double rel = fabs(bf16[t] - fp32[t]) / fp32[t];
        worst = fmax(worst, rel);
        cr_expect_leq(rel, 0.02, "step %d: bf16 loss %.5f vs fp32 %.5f", t + 1, bf16[t], fp32[t]);
    }
    cr_log_info("short training: worst relative loss difference %.3e", worst);
    cr_expect_lt(fp32[STEPS - 1], fp32[0], "the run should learn something (%.4f -> %.4f)", fp32[0],
                 fp32[STEPS - 1]);
    cr_expect_gt(worst, 0.0, "bf16 and fp32 losses identical: was bf16 used?");
}
