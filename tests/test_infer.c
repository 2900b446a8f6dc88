/* The forward-only inference plan (model/infer.c) against the training
 * plan's forward: the same logits, losses, final state and slow-update
 * attention, bit for bit on our own kernels and to rounding on oneDNN, for
 * both wirings, every slow-state option, odd batch and tile sizes and 1 or
 * 3 threads; it reads the live parameters and allocates nothing when it
 * runs. Against the golden files it is checked by golden_check (group
 * "inference", test_golden.c and `tlb check`). */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_counter.h"
#include "model/attention_map.h"
#include "model/infer.h"
#include "model/model.h"
#include "ops/ops.h"
#include "test_helpers.h"
#include "util/rng.h"

static void random_model(tlb_model *m, const tlb_model_config *c, int B, const op_table *ops)
{
    tlb_error err;
    cr_assert_eq(model_create(m, c, &err), 0, "%s", err.msg);
    if (ops) model_use_ops(m, ops);
    cr_assert_eq(model_plan(m, B, &err), 0, "%s", err.msg);
    rng_stream r = {17, 0};
    for (size_t i = 0; i < model_num_params(m); i++) m->params[i] = 0.4f * (rng_next_uniform(&r) - 0.5f);
}

static float *random_images(const tlb_model_config *c, int B, int *labels)
{
    const size_t n = (size_t)B * c->image_size * c->image_size * 3;
    float *img = malloc(n * sizeof(float));
    rng_stream r = {5, 0};
    for (size_t i = 0; i < n; i++) img[i] = rng_next_uniform(&r);
    for (int b = 0; labels && b < B; b++) labels[b] = (int)rng_next_below(&r, (uint64_t)c->num_classes);
    return img;
}

/* Worst |a - b| over n, against max |a| in *scale. */
static double worst_diff(const float *a, const float *b, size_t n, double *scale)
{
    double w = 0;
    *scale = 0;
    for (size_t i = 0; i < n; i++) {
        w = fmax(w, fabs((double)a[i] - b[i]));
        *scale = fmax(*scale, fabs((double)a[i]));
    }
    return w;
}

/* Equal bit for bit unless dense runs on oneDNN (row-count-dependent kernels). */
static void expect_same(const op_table *ops, const char *what, const float *train, const float *infer, size_t n,
                        const char *ctx)
{
    double scale;
    const double w = worst_diff(train, infer, n, &scale);
    cr_expect_gt(scale, 0.0, "%s %s: all zero, nothing compared", ctx, what);
    if (ops->backend[TLB_OP_dense] == TLB_BACKEND_DNNL || ops->backend[TLB_OP_patch_conv] == TLB_BACKEND_DNNL ||
        ops->bf16_dense)
        cr_expect_leq(w, 1e-5 * scale, "%s %s: differ by %.3e (scale %.3e)", ctx, what, w, scale);
    else
        cr_expect_eq(memcmp(train, infer, n * sizeof(float)), 0, "%s %s: not bit-identical (worst %.3e)", ctx,
                     what, w);
}

/* One configuration: the training plan's forward of B samples, then the
 * inference plan in tiles of `tile` on `threads` threads. */
static void matches_training_forward(const op_table *ops, tlb_model_config c, int B, int tile, int threads)
{
    char ctx[160];
    snprintf(ctx, sizeof ctx, "%s Ns=%d init=%s readout=%s B=%d tile=%d threads=%d (dense %s)",
             wiring_name(c.wiring), model_num_state(&c), state_init_name(c.state_init), readout_name(c.readout),
             B, tile, threads, backend_name(ops->backend[TLB_OP_dense]));
    omp_set_num_threads(1);
    tlb_model m;
    random_model(&m, &c, B, ops);
    int *labels = malloc((size_t)B * sizeof(int));
    float *img = random_images(&c, B, labels);
    model_forward(&m, img, labels, B, NULL);
    const int V = c.num_classes, Ns = model_num_state(&c), N = model_num_patches(&c);
    const size_t state_n = (size_t)B * Ns * c.embed_dim;
    float *want_state = malloc(state_n * sizeof(float));
    memcpy(want_state, model_trace_slow(&m, model_num_chunks(&c) - 1), state_n * sizeof(float));
    float *want_maps = malloc((size_t)(Ns + 1) * N * sizeof(float)), *got_maps = malloc((size_t)(Ns + 1) * N * sizeof(float));
    model_slow_attention(&m, B - 1, want_maps + N, want_maps);

    omp_set_num_threads(threads);
    model_inference inf;
    tlb_error err;
    cr_assert_eq(model_inference_plan(&inf, &m, B, tile, INFER_STATE | INFER_ATTENTION, &err), 0, "%s", err.msg);
    cr_assert_eq(model_inference_run(&inf, img, labels, B, NULL), 0);
    expect_same(ops, "logits", m.logits, inf.logits, (size_t)B * V, ctx);
    expect_same(ops, "losses", m.losses, inf.losses, (size_t)B, ctx);
    expect_same(ops, "final state", want_state, inf.state, state_n, ctx);
    model_inference_slow_attention(&inf, B - 1, got_maps + N, got_maps);
    expect_same(ops, "attention maps", want_maps, got_maps, (size_t)(Ns + 1) * N, ctx);
    model_inference_free(&inf);

    /* Without the state the last update is skipped: the logits stay. */
    cr_assert_eq(model_inference_plan(&inf, &m, B, tile, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(model_inference_run(&inf, img, NULL, B, NULL), 0);
    expect_same(ops, "logits (no state kept)", m.logits, inf.logits, (size_t)B * V, ctx);
    cr_expect_null(inf.state);
    model_inference_free(&inf);

    free(want_state), free(want_maps), free(got_maps), free(img), free(labels);
    model_destroy(&m);
    omp_set_num_threads(2);
}

static void every_case(const char *spec)
{
    tlb_error err;
    op_table ops;
    cr_assert_eq(ops_table_select(&ops, spec, &err), 0, "%s", err.msg);
    matches_training_forward(&ops, test_small_config(TLB_WIRING_KERAS), 7, 3, 1);
    matches_training_forward(&ops, test_small_config(TLB_WIRING_KERAS), 7, 3, 3);
    matches_training_forward(&ops, test_small_config(TLB_WIRING_PAPER), 9, 4, 2);
    matches_training_forward(&ops, test_small_config(TLB_WIRING_PAPER), 5, 0, 2); /* default tile > B: one tile */
    matches_training_forward(&ops, test_small_config(TLB_WIRING_KERAS), 1, 1, 2);
    matches_training_forward(&ops, test_small_state_config(TLB_WIRING_KERAS, 6, STATE_INIT_LEARNED, READOUT_STATE), 7, 2, 3);
    matches_training_forward(&ops, test_small_state_config(TLB_WIRING_PAPER, 3, STATE_INIT_SINUSOID, READOUT_LAST_FAST), 8, 3, 2);
    matches_training_forward(&ops, test_small_state_config(TLB_WIRING_PAPER, 5, STATE_INIT_SINUSOID, READOUT_STATE), 6, 4, 2);
    matches_training_forward(&ops, test_small_state_config(TLB_WIRING_KERAS, 1, STATE_INIT_LEARNED, READOUT_LAST_FAST), 7, 5, 2);
}

Test(infer, matches_training_forward_on_ref) { every_case("ref"); }
Test(infer, matches_training_forward_automatic) { every_case(NULL); }
Test(infer, matches_training_forward_on_own_kernels)
{
    every_case(backend_supported(TLB_BACKEND_AVX512) ? "avx512" : backend_supported(TLB_BACKEND_AVX2) ? "avx2" : "ref");
}

/* Mixed precision: the inference plan's bf16 weights (the folded q, k, v
 * kernels among them) and its FFN stage give the training forward's
 * numbers (oneDNN's products as above: within the fp32 level). */
Test(infer, matches_training_forward_in_mixed_precision)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    op_table ops;
    ops_table_automatic(&ops);
    cr_assert_eq(ops_table_set_bf16(&ops, 1), 0);
    matches_training_forward(&ops, test_small_config(TLB_WIRING_KERAS), 7, 3, 1);
    matches_training_forward(&ops, test_small_config(TLB_WIRING_PAPER), 9, 4, 2);
    matches_training_forward(&ops, test_small_state_config(TLB_WIRING_KERAS, 6, STATE_INIT_LEARNED, READOUT_STATE), 7, 2, 3);
}

/* The plan holds a pointer to the model: a parameter changed after
 * planning (as the trainer's optimizer does between evaluations) changes
 * the logits; and a perturbed logit is caught by the comparison above. */
Test(infer, reads_the_live_parameters)
{
    const tlb_model_config c = test_small_config(TLB_WIRING_KERAS);
    const int B = 4;
    tlb_model m;
    random_model(&m, &c, B, NULL);
    float *img = random_images(&c, B, NULL);
    model_inference inf;
    tlb_error err;
    cr_assert_eq(model_inference_plan(&inf, &m, B, 2, 0, &err), 0, "%s", err.msg);
    cr_assert_eq(model_inference_run(&inf, img, NULL, B, NULL), 0);
    float before[4 * 5];
    memcpy(before, inf.logits, sizeof before);
    m.params[m.layout.head_bias] += 0.5f;
    cr_assert_eq(model_inference_run(&inf, img, NULL, B, NULL), 0);
    for (int b = 0; b < B; b++)
        cr_expect_float_eq(inf.logits[b * 5], before[b * 5] + 0.5f, 1e-6, "sample %d: the new head bias is not seen", b);
    double scale;
    cr_expect_gt(worst_diff(before, inf.logits, 20, &scale), 0.4);
    model_inference_free(&inf);
    free(img);
    model_destroy(&m);
}

/* "No allocation in the hot loop" holds for inference too, on every
 * backend and (where the CPU has it) bf16, from the first run on: the plan
 * sets up each thread's kernels for the tile shapes it meets (whole tiles
 * and the capacity's remainder). */
Test(infer, runs_without_allocating)
{
    tlb_model_config c = test_small_state_config(TLB_WIRING_KERAS, 6, STATE_INIT_LEARNED, READOUT_STATE);
    const int B = 11;
    int labels[11];
    float *img = random_images(&c, B, labels);
    tlb_error err;
    for (int b = 0; b <= TLB_BACKEND_COUNT; b++) {
        op_table ops;
        if (b < TLB_BACKEND_COUNT) { /* each backend in fp32, then the automatic choice in bf16 */
            if (!backend_supported((tlb_backend)b)) continue;
            cr_assert_eq(ops_table_select(&ops, backend_name((tlb_backend)b), &err), 0, "%s", err.msg);
        } else {
            if (!ops_mixed_precision_supported()) continue;
            ops_table_automatic(&ops);
            cr_assert_eq(ops_table_set_bf16(&ops, 1), 0);
        }
        tlb_model m;
        random_model(&m, &c, B, &ops);
        model_inference inf;
        cr_assert_eq(model_inference_plan(&inf, &m, B, 4, INFER_STATE | INFER_ATTENTION, &err), 0, "%s", err.msg);
        const long before = alloc_count();
        cr_assert_eq(model_inference_run(&inf, img, labels, B, NULL), 0);
        cr_assert_eq(model_inference_run(&inf, img, NULL, 7, NULL), 0);
        cr_expect_eq(alloc_count() - before, 0, "%s %s: %ld allocations in the first two inference runs",
                     backend_name((tlb_backend)(b < TLB_BACKEND_COUNT ? b : 0)), ops_table_precision(&ops),
                     alloc_count() - before);
        model_inference_free(&inf);
        model_destroy(&m);
    }
    free(img);
}
