/* ops_first: an op's backward_first (ops.h) against zeroing its input
 * gradients and calling its backward: bit for bit, on every backend that has
 * one, on odd shapes (column tails, one row, keys past a vector) and with
 * attention dropout; the buffers start as garbage, which backward_first must
 * overwrite everywhere, and the parameter gradients still accumulate. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/ops.h"
#include "util/rng.h"

static float *filled(size_t n, uint64_t seed, float scale)
{
    float *x = malloc((n ? n : 1) * sizeof *x);
    cr_assert_not_null(x);
    rng_stream r = {seed, 0};
    for (size_t i = 0; i < n; i++) x[i] = scale * (2.0f * rng_next_uniform(&r) - 1.0f);
    return x;
}

static void expect_same(const float *a, const float *b, size_t n, const char *what, const char *be)
{
    cr_expect(memcmp(a, b, n * sizeof *a) == 0, "%s[%s]: backward_first differs from zero + backward", what, be);
}

/* {5, 19, 300}: dinp's R is N = 300, longer than two of dense_simd.h's
 * spans; {9, 64, 300} the same on threads (over PARALLEL_MACS). */
static const int dense_shapes[][3] = {{1, 1, 1}, {3, 5, 17}, {37, 64, 64}, {7, 17, 5}, {13, 256, 64}, {5, 0, 3},
                                      {4, 3, 0}, {5, 19, 300}, {9, 64, 300}};

Test(ops_first, dense_is_zero_then_backward)
{
    int cases = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const dense_op *op = ops_impl_dense((tlb_backend)b);
        if (!op || !op->backward_first || !backend_supported((tlb_backend)b)) continue;
        for (size_t s = 0; s < sizeof dense_shapes / sizeof *dense_shapes; s++, cases++) {
            const int M = dense_shapes[s][0], K = dense_shapes[s][1], N = dense_shapes[s][2];
            float *dout = filled((size_t)M * N, 1 + s, 1.0f), *inp = filled((size_t)M * K, 2 + s, 1.0f);
            float *w = filled((size_t)K * N, 3 + s, 0.5f);
            float *dinp_a = filled((size_t)M * K, 4 + s, 1e6f), *dinp_b = calloc((size_t)M * K + 1, sizeof(float));
            float *dw_a = filled((size_t)K * N, 5 + s, 1.0f), *dw_b = malloc(((size_t)K * N + 1) * sizeof(float));
            float *db_a = filled((size_t)N, 6 + s, 1.0f), *db_b = malloc(((size_t)N + 1) * sizeof(float));
            memcpy(dw_b, dw_a, (size_t)K * N * sizeof(float));
            memcpy(db_b, db_a, (size_t)N * sizeof(float));
            op->backward_first(dinp_a, dw_a, db_a, dout, inp, w, M, K, N);
            op->backward(dinp_b, dw_b, db_b, dout, inp, w, M, K, N);
            const char *be = backend_name((tlb_backend)b);
            expect_same(dinp_a, dinp_b, (size_t)M * K, "dense dinp", be);
            expect_same(dw_a, dw_b, (size_t)K * N, "dense dw (accumulated)", be);
            expect_same(db_a, db_b, (size_t)N, "dense dbias (accumulated)", be);
            free(dout), free(inp), free(w), free(dinp_a), free(dinp_b), free(dw_a), free(dw_b), free(db_a), free(db_b);
        }
    }
    /* avx2 and avx512 have it; a CPU with neither runs none (ref and dnnl do not) */
    if (backend_supported(TLB_BACKEND_AVX2)) cr_expect_geq(cases, 7);
}

/* {B, Tq, Tk, H, K}: Tk a multiple of both vector widths and not, key_dim
 * below, at and above one vector, LRA Image's blocks. */
static const int attn_shapes[][5] = {{3, 8, 8, 1, 64}, {3, 3, 5, 3, 5}, {2, 5, 16, 4, 16}, {2, 32, 32, 8, 8},
                                     {1, 1, 1, 1, 1}, {2, 7, 5, 2, 9}};

Test(ops_first, attention_is_zero_then_backward)
{
    int cases = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const attention_op *op = ops_impl_attention((tlb_backend)b);
        if (!op || !op->backward_first || !backend_supported((tlb_backend)b)) continue;
        for (size_t s = 0; s < sizeof attn_shapes / sizeof *attn_shapes; s++)
            for (int drop_on = 0; drop_on < 2; drop_on++, cases++) {
                const int B = attn_shapes[s][0], Tq = attn_shapes[s][1], Tk = attn_shapes[s][2];
                const int H = attn_shapes[s][3], K = attn_shapes[s][4];
                const size_t nq = (size_t)B * Tq * H * K, nk = (size_t)B * Tk * H * K;
                const size_t np = (size_t)B * H * Tq * Tk;
                const dropout_ctx drop = {0.3f, 77 + s, 5};
                const dropout_ctx *d = drop_on ? &drop : NULL;
                float *q = filled(nq, 10 + s, 1.5f), *k = filled(nk, 11 + s, 1.5f), *v = filled(nk, 12 + s, 1.0f);
                float *out = malloc(nq * sizeof(float)), *probs = malloc(np * sizeof(float));
                float *dout = filled(nq, 13 + s, 1.0f);
                op->forward(out, probs, q, k, v, NULL, B, Tq, Tk, H, K, d);
                float *dq_a = filled(nq, 14 + s, 1e6f), *dk_a = filled(nk, 15 + s, 1e6f), *dv_a = filled(nk, 16 + s, 1e6f);
                float *dq_b = calloc(nq, sizeof(float)), *dk_b = calloc(nk, sizeof(float)), *dv_b = calloc(nk, sizeof(float));
                op->backward_first(dq_a, dk_a, dv_a, dout, q, k, v, probs, B, Tq, Tk, H, K, d);
                op->backward(dq_b, dk_b, dv_b, dout, q, k, v, probs, B, Tq, Tk, H, K, d);
                const char *be = backend_name((tlb_backend)b);
                expect_same(dq_a, dq_b, nq, "attention dq", be);
                expect_same(dk_a, dk_b, nk, "attention dk", be);
                expect_same(dv_a, dv_b, nk, "attention dv", be);
                free(q), free(k), free(v), free(out), free(probs), free(dout);
                free(dq_a), free(dk_a), free(dv_a), free(dq_b), free(dk_b), free(dv_b);
            }
    }
    if (backend_supported(TLB_BACKEND_AVX2)) cr_expect_geq(cases, 12);
}

/* {B, T, D, F}: tails on both widths, one row, no hidden units, and rows
 * enough for the backward's blocks (M > 256: ffn_backward_blocks). */
static const int ffn_shapes[][4] = {{2, 3, 5, 7},   {1, 2, 9, 17},    {3, 8, 64, 256}, {2, 1, 17, 3},
                                    {1, 1, 4, 0},   {37, 8, 64, 256}, {41, 7, 19, 37}};

Test(ops_first, ffn_is_zero_then_backward)
{
    int cases = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const ffn_op *op = ops_impl_ffn((tlb_backend)b);
        if (!op || !op->backward_first || !backend_supported((tlb_backend)b)) continue;
        for (size_t s = 0; s < sizeof ffn_shapes / sizeof *ffn_shapes; s++)
            for (int drop_on = 0; drop_on < 2; drop_on++, cases++) {
                const int B = ffn_shapes[s][0], T = ffn_shapes[s][1], D = ffn_shapes[s][2], F = ffn_shapes[s][3];
                const size_t M = (size_t)B * T;
                const dropout_ctx drop = {0.3f, 91 + s, 2};
                const dropout_ctx *d = drop_on ? &drop : NULL;
                float *inp = filled(M * D, 20 + s, 1.0f), *res = filled(M * D, 21 + s, 1.0f);
                float *w1 = filled((size_t)D * F, 22 + s, 0.5f), *b1 = filled((size_t)F, 23 + s, 0.1f);
                float *w2 = filled((size_t)F * D, 24 + s, 0.5f), *b2 = filled((size_t)D, 25 + s, 0.1f);
                float *out = malloc(M * D * sizeof(float)), *h = malloc((M * F + 1) * sizeof(float));
                float *dout = filled(M * D, 26 + s, 1.0f);
                op->forward(out, h, inp, w1, b1, w2, b2, res, B, T, D, F, d);
                /* a: garbage input gradients, backward_first; b: zeros, backward; same parameter gradients */
                float *dinp_a = filled(M * D, 27 + s, 1e6f), *dres_a = filled(M * D, 28 + s, 1e6f);
                float *dinp_b = calloc(M * D, sizeof(float)), *dres_b = calloc(M * D, sizeof(float));
                const size_t np = 2 * (size_t)D * F + F + D;
                float *pg_a = filled(np, 29 + s, 1.0f), *pg_b = malloc(np * sizeof(float));
                memcpy(pg_b, pg_a, np * sizeof(float));
                float *ga[4] = {pg_a, pg_a + (size_t)D * F, pg_a + (size_t)D * F + F, pg_a + 2 * (size_t)D * F + F};
                float *gb[4] = {pg_b, pg_b + (size_t)D * F, pg_b + (size_t)D * F + F, pg_b + 2 * (size_t)D * F + F};
                op->backward_first(dinp_a, ga[0], ga[1], ga[2], ga[3], dres_a, dout, inp, w1, w2, h, B, T, D, F, d);
                op->backward(dinp_b, gb[0], gb[1], gb[2], gb[3], dres_b, dout, inp, w1, w2, h, B, T, D, F, d);
                const char *be = backend_name((tlb_backend)b);
                expect_same(dinp_a, dinp_b, M * D, "ffn dinp", be);
                expect_same(dres_a, dres_b, M * D, "ffn dres", be);
                expect_same(pg_a, pg_b, np, "ffn parameter gradients (accumulated)", be);
                free(inp), free(res), free(w1), free(b1), free(w2), free(b2), free(out), free(h), free(dout);
                free(dinp_a), free(dres_a), free(dinp_b), free(dres_b), free(pg_a), free(pg_b);
            }
    }
    if (backend_supported(TLB_BACKEND_AVX2)) cr_expect_geq(cases, 10);
}
