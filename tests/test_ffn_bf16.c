/* ffn_bf16: mixed precision's FFN stage (ops/ffn_bf16.h) against the
 * unfused mixed-precision ops it stands in for (dense_bf16.h and the
 * AVX-512 gelu, dropout and residual, composed as the block composes
 * them): the same values, on odd shapes (columns not a multiple of 16) and
 * the model's, dropout on and off, on 1 and 2 threads; the op table's
 * choice; and a whole model in mixed precision, fused vs "ffn:off", both
 * wirings. The same values, not a tolerance: where they differ, the stage
 * rounded something the unfused ops did not. (The model in mixed precision
 * against the golden vectors, which now runs this stage: test_mixed.c.)
 * Skips where the CPU has no AVX512_BF16. */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "ops/bf16.h"
#include "ops/dense_bf16.h"
#include "ops/ffn_bf16.h"
#include "ops/ops.h"
#include "test_helpers.h"
#include "util/rng.h"

static float *uniform(size_t n, float amp, uint64_t seed)
{
    float *p = malloc(n * sizeof(float));
    rng_stream r = {seed, 0};
    for (size_t i = 0; i < n; i++) p[i] = amp * (2.0f * rng_next_uniform(&r) - 1.0f);
    return p;
}

static uint16_t *to_bf16(const float *x, size_t n)
{
    uint16_t *p = malloc(n * sizeof(uint16_t));
    bf16_convert(p, x, n);
    return p;
}

/* Equal values (a zero's sign aside: the unfused ops add into zeroed
 * buffers, +0 + -0 = +0), every element. */
static void expect_same(const char *what, const char *label, const float *want, const float *got, size_t n)
{
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (want[i] != got[i] && !(isnan(want[i]) && isnan(got[i])) && bad++ == 0) first = i;
    cr_expect(bad == 0, "%s: %s: %zu of %zu differ from the unfused ops, first [%zu] %.9g vs %.9g", label, what,
              bad, n, first, bad ? want[first] : 0.0, bad ? got[first] : 0.0);
}

typedef struct {
    float *out, *h, *dinp, *dw1, *db1, *dw2, *db2, *dres;
} ffn_result;

static ffn_result result_alloc(int M, int D, int F, float start)
{
    ffn_result r = {calloc((size_t)M * D, 4), calloc((size_t)M * F, 4), calloc((size_t)M * D, 4),
                    malloc((size_t)D * F * 4),  malloc((size_t)F * 4),    malloc((size_t)F * D * 4),
                    malloc((size_t)D * 4),      calloc((size_t)M * D, 4)};
    /* the weight gradients accumulate: start them from something */
    for (size_t i = 0; i < (size_t)D * F; i++) r.dw1[i] = r.dw2[i] = start * (float)(i % 7);
    for (int i = 0; i < F; i++) r.db1[i] = start * (float)(i % 5);
    for (int i = 0; i < D; i++) r.db2[i] = start * (float)(i % 3);
    return r;
}

static void result_free(ffn_result *r)
{
    free(r->out), free(r->h), free(r->dinp), free(r->dw1), free(r->db1), free(r->dw2), free(r->db2),
        free(r->dres);
}

/* The block's unfused mixed-precision FFN (model/block.c), forward then
 * backward. */
/* h16: the backward reads h rounded to bf16 (bf16_activations), as the
 * fp32 ffn's h16 form does. */
static void unfused(ffn_result *r, const float *inp, const float *w1, const float *b1, const float *w2,
                    const float *b2, const float *res, const float *dout, int B, int T, int D, int F,
                    const dropout_ctx *drop, int h16)
{
    const int M = B * T;
    const gelu_op *gelu = ops_impl_gelu(TLB_BACKEND_AVX512);
    const dropout_op *dropout = ops_impl_dropout(TLB_BACKEND_AVX512);
    const residual_op *residual = ops_impl_residual(TLB_BACKEND_AVX512);
    uint16_t *w1_16 = to_bf16(w1, (size_t)D * F), *w2_16 = to_bf16(w2, (size_t)F * D);
    const size_t st = dense_bf16_staging(M, D, F) > dense_bf16_staging(M, F, D) ? dense_bf16_staging(M, D, F)
                                                                                 : dense_bf16_staging(M, F, D);
    uint16_t *staging = malloc(st * sizeof(uint16_t));
    float *g = malloc((size_t)M * F * 4), *dy = calloc((size_t)M * D, 4), *dg = calloc((size_t)M * F, 4);
    float *dh = calloc((size_t)M * F, 4);
    dense_bf16_forward(r->h, inp, w1_16, b1, M, D, F, staging);
    gelu->forward(g, r->h, (size_t)M * F);
    dense_bf16_forward(r->out, g, w2_16, b2, M, F, D, staging);
    if (drop && drop->rate > 0.0f) dropout->forward(r->out, r->out, B, (size_t)T * D, drop);
    residual->forward(r->out, r->out, res, (size_t)M * D);

    float *h = malloc((size_t)M * F * 4); /* what the backward reads */
    for (size_t i = 0; i < (size_t)M * F; i++) h[i] = h16 ? bf16_to_f32(bf16_from_f32(r->h[i])) : r->h[i];
    memcpy(r->dres, dout, (size_t)M * D * 4);
    dropout->backward(dy, dout, B, (size_t)T * D, drop);
    gelu->forward(g, h, (size_t)M * F);
    dense_bf16_backward(dg, r->dw2, r->db2, dy, g, w2_16, M, F, D, staging);
    gelu->backward(dh, dg, h, (size_t)M * F);
    free(h);
    dense_bf16_backward(r->dinp, r->dw1, r->db1, dh, inp, w1_16, M, D, F, staging);
    free(w1_16), free(w2_16), free(staging), free(g), free(dy), free(dg), free(dh);
}

/* h16: h saved in bf16, r->h then the forward's scratch (still compared:
 * the same fp32 h). */
static void fused(ffn_result *r, const float *inp, const float *w1, const float *b1, const float *w2,
                  const float *b2, const float *res, const float *dout, int B, int T, int D, int F,
                  const dropout_ctx *drop, int h16)
{
    const int M = B * T;
    tlb_error err;
    cr_assert_eq(ffn_bf16_prepare(M, D, F, &err), 0, "%s", err.msg);
    uint16_t *w1_16 = to_bf16(w1, (size_t)D * F), *w2_16 = to_bf16(w2, (size_t)F * D);
    uint16_t *staging = malloc(ffn_bf16_staging(M, D, F) * sizeof(uint16_t));
    float *dg = malloc((size_t)M * F * 4);
    uint16_t *saved = h16 ? malloc((size_t)M * F * sizeof(uint16_t)) : NULL;
    /* stale values where the stage writes, not accumulates */
    for (size_t i = 0; i < (size_t)M * D; i++) r->dinp[i] = r->dres[i] = 1e30f;
    ffn_bf16_forward(r->out, r->h, saved, inp, w1_16, b1, w2_16, b2, res, B, T, D, F, drop, staging);
    if (saved) { /* the backward must read the bf16 copy: spoil the fp32 one */
        for (size_t i = 0; i < (size_t)M * F; i++)
            cr_expect_eq(saved[i], bf16_from_f32(r->h[i]), "h16[%zu] is not bf16(h)", i);
        float *kept = malloc((size_t)M * F * 4);
        memcpy(kept, r->h, (size_t)M * F * 4);
        for (size_t i = 0; i < (size_t)M * F; i++) r->h[i] = NAN;
        ffn_bf16_backward_first(r->dinp, r->dw1, r->db1, r->dw2, r->db2, r->dres, dout, inp, w1_16, w2_16, NULL,
                                saved, dg, B, T, D, F, drop, staging);
        memcpy(r->h, kept, (size_t)M * F * 4);
        free(kept);
    } else {
        ffn_bf16_backward_first(r->dinp, r->dw1, r->db1, r->dw2, r->db2, r->dres, dout, inp, w1_16, w2_16, r->h,
                                NULL, dg, B, T, D, F, drop, staging);
    }
    free(w1_16), free(w2_16), free(staging), free(dg), free(saved);
}

static void stage_case(int B, int T, int D, int F, int threads, int dropout_on, int h16)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    const int M = B * T;
    float *inp = uniform((size_t)M * D, 2.0f, 1), *w1 = uniform((size_t)D * F, 0.3f, 2);
    float *b1 = uniform((size_t)F, 0.1f, 3), *w2 = uniform((size_t)F * D, 0.2f, 4);
    float *b2 = uniform((size_t)D, 0.1f, 5), *res = uniform((size_t)M * D, 1.0f, 6);
    float *dout = uniform((size_t)M * D, 1.0f, 7);
    const dropout_ctx drop = {0.25f, 0x5eedu, 3};
    const dropout_ctx *d = dropout_on ? &drop : NULL;
    ffn_result want = result_alloc(M, D, F, 0.01f), got = result_alloc(M, D, F, 0.01f);
    const int saved = omp_get_max_threads();
    omp_set_num_threads(threads);
    unfused(&want, inp, w1, b1, w2, b2, res, dout, B, T, D, F, d, h16);
    fused(&got, inp, w1, b1, w2, b2, res, dout, B, T, D, F, d, h16);
    omp_set_num_threads(saved);
    char label[96];
    snprintf(label, sizeof label, "B %d T %d D %d F %d, %d threads, dropout %s%s", B, T, D, F, threads,
             dropout_on ? "on" : "off", h16 ? ", h in bf16" : "");
    expect_same("out", label, want.out, got.out, (size_t)M * D);
    expect_same("h", label, want.h, got.h, (size_t)M * F);
    expect_same("dinp", label, want.dinp, got.dinp, (size_t)M * D);
    expect_same("dres", label, want.dres, got.dres, (size_t)M * D);
    expect_same("dw1", label, want.dw1, got.dw1, (size_t)D * F);
    expect_same("db1", label, want.db1, got.db1, (size_t)F);
    expect_same("dw2", label, want.dw2, got.dw2, (size_t)F * D);
    expect_same("db2", label, want.db2, got.db2, (size_t)D);
    /* bf16 was in play: h differs from the fp32 product */
    double off = 0.0;
    for (int m = 0; m < M; m++)
        for (int f = 0; f < F; f++) {
            double s = b1[f];
            for (int k = 0; k < D; k++) s += (double)inp[(size_t)m * D + k] * w1[(size_t)k * F + f];
            off = fmax(off, fabs(s - got.h[(size_t)m * F + f]));
        }
    cr_expect_gt(off, 1e-4, "%s: h is at fp32 level (%.3e): were the products bf16?", label, off);
    result_free(&want), result_free(&got);
    free(inp), free(w1), free(b1), free(w2), free(b2), free(res), free(dout);
}

Test(ffn_bf16, odd_shape_one_thread) { stage_case(3, 5, 19, 37, 1, 1, 0); }
Test(ffn_bf16, odd_shape_two_threads) { stage_case(3, 5, 19, 37, 2, 1, 0); }
Test(ffn_bf16, odd_shape_no_dropout) { stage_case(2, 7, 21, 50, 2, 0, 0); }
/* The model's shape at a few samples; enough values for the passes to fork. */
Test(ffn_bf16, model_shape_two_threads) { stage_case(24, 8, 64, 256, 2, 1, 0); }
Test(ffn_bf16, model_shape_one_thread) { stage_case(24, 8, 64, 256, 1, 1, 0); }
/* h saved in bf16: the backward of the rounded h, the forward unchanged. */
Test(ffn_bf16, h16_odd_shape) { stage_case(3, 5, 19, 37, 2, 1, 1); }
Test(ffn_bf16, h16_model_shape) { stage_case(24, 8, 64, 256, 2, 1, 1); }
/* More rows (335, 560) than the shapes above: odd counts past a few
 * hundred, as a shard of the trainer's micro-batch has (1640). */
Test(ffn_bf16, many_odd_rows) { stage_case(67, 5, 19, 37, 2, 1, 0); }
Test(ffn_bf16, many_rows_h16_one_thread) { stage_case(67, 5, 19, 37, 1, 1, 1); }
Test(ffn_bf16, many_rows_model_shape) { stage_case(70, 8, 64, 256, 1, 1, 0); }
/* D past one group of 4 vectors whose column sums stay in registers. */
Test(ffn_bf16, wide_d_one_thread) { stage_case(3, 5, 100, 37, 1, 1, 0); }
Test(ffn_bf16, wide_d_three_threads) { stage_case(67, 5, 150, 37, 3, 1, 0); }

static op_table table(const char *spec, int bf16)
{
    op_table t;
    tlb_error err;
    unsetenv("TLB_BACKEND");
    cr_assert_eq(ops_table_select(&t, spec, &err), 0, "%s: %s", spec ? spec : "automatic", err.msg);
    cr_assert_eq(ops_table_set_bf16(&t, bf16), 0);
    return t;
}

/* The stage runs in mixed precision on the automatic ops, not without bf16
 * dense, not with "ffn:off" or one of its elementwise ops elsewhere. */
Test(ffn_bf16, op_table_choice)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    op_table t = table(NULL, 1);
    cr_expect(ops_table_ffn_bf16(&t), "automatic + bf16: the stage should run");
    char desc[1024];
    ops_table_describe(&t, desc, sizeof desc);
    cr_expect_not_null(strstr(desc, "ffn:bf16"), "%s", desc);
    t = table(NULL, 0);
    cr_expect(!ops_table_ffn_bf16(&t), "fp32: not the bf16 stage");
    t = table("ffn:off", 1);
    cr_expect(!ops_table_ffn_bf16(&t), "ffn:off");
    t = table("gelu:ref", 1);
    cr_expect(!ops_table_ffn_bf16(&t), "gelu on ref: the ops run unfused");
}

/* A whole model in mixed precision with h saved in bf16: a smaller plan,
 * the same logits (the forward does not change), gradients near the fp32-h
 * ones but not all equal (they are the rounded h's). */
Test(ffn_bf16, model_with_h16)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    op_table on = table(NULL, 1);
    const op_table off = table(NULL, 1);
    cr_assert_eq(ops_table_set_bf16_h(&on, 1), 0);
    cr_expect(ops_table_saves_h16(&on) && !ops_table_saves_h16(&off));
    cr_expect_str_eq(ops_table_precision(&on), "bf16 dense, bf16 h");
    enum { MB = 6 };
    test_step a = test_small_step(&on, TLB_WIRING_KERAS, MB, 23, 0.4f, 3, (model_dropout){1, 0x5eed, 7});
    test_step u = test_small_step(&off, TLB_WIRING_KERAS, MB, 23, 0.4f, 3, (model_dropout){1, 0x5eed, 7});
    expect_same("logits", "h16", u.logits, a.logits, MB * 5);
    cr_expect_lt(a.plan_bytes, u.plan_bytes, "h in bf16 should shrink the plan (%zu vs %zu)", a.plan_bytes,
                 u.plan_bytes);
    double scale = 0.0, worst = 0.0;
    size_t differ = 0;
    for (size_t i = 0; i < a.n; i++) scale = fmax(scale, fabs(u.grads[i]));
    for (size_t i = 0; i < a.n; i++) {
        worst = fmax(worst, fabs((double)a.grads[i] - u.grads[i]));
        differ += a.grads[i] != u.grads[i];
    }
    cr_expect_gt(differ, 0, "h16 changed no gradient: was it read?");
    cr_expect_leq(worst, 2e-2 * scale, "gradients off by %.3e of their scale %.3e", worst, scale);
    test_step_free(&a), test_step_free(&u);
}

/* A whole model in mixed precision: logits and every gradient with the stage
 * equal the unfused ops' ("ffn:off"), dropout on, both wirings. */
Test(ffn_bf16, model_stage_equals_unfused)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    const op_table on = table(NULL, 1), off = table("ffn:off", 1);
    cr_assert(ops_table_ffn_bf16(&on) && !ops_table_ffn_bf16(&off));
    for (int wiring = TLB_WIRING_KERAS; wiring <= TLB_WIRING_PAPER; wiring++) {
        enum { MB = 6 };
        test_step a = test_small_step(&on, (tlb_wiring)wiring, MB, 23, 0.4f, 3, (model_dropout){1, 0x5eed, 7});
        test_step u = test_small_step(&off, (tlb_wiring)wiring, MB, 23, 0.4f, 3, (model_dropout){1, 0x5eed, 7});
        const char *label = wiring == TLB_WIRING_KERAS ? "keras" : "paper";
        expect_same("logits", label, u.logits, a.logits, MB * 5);
        expect_same("gradients", label, u.grads, a.grads, a.n);
        cr_expect_eq(a.loss, u.loss, "%s: loss %.9g vs %.9g", label, a.loss, u.loss);
        test_step_free(&a), test_step_free(&u);
    }
}
