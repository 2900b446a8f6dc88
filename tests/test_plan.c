/* plan: a model owns its op table and its plan. Two models with different
 * backends or precisions live in one process, each with its own results;
 * a batch beyond the plan's capacity is refused, in training and in
 * inference; a failed plan is an error, not an abort. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_counter.h"
#include "model/infer.h"
#include "model/model.h"
#include "ops/ops.h"
#include "test_helpers.h"
#include "train/adamw.h"
#include "train/train_step.h"
#include "util/rng.h"

#define B 5

static void make_model(tlb_model *m, const op_table *ops)
{
    const tlb_model_config c = test_small_config(TLB_WIRING_KERAS);
    tlb_error err;
    cr_assert_eq(model_create(m, &c, &err), 0, "%s", err.msg);
    model_use_ops(m, ops);
    cr_assert_eq(model_plan(m, B, &err), 0, "%s", err.msg);
    rng_stream r = {23, 0};
    for (size_t i = 0; i < model_num_params(m); i++) m->params[i] = 0.4f * (rng_next_uniform(&r) - 0.5f);
}

static float *images(int *labels)
{
    const size_t n = (size_t)B * 8 * 8 * 3;
    float *x = malloc(n * sizeof(float));
    rng_stream r = {3, 0};
    for (size_t i = 0; i < n; i++) x[i] = rng_next_uniform(&r);
    for (int b = 0; b < B; b++) labels[b] = b % 5;
    return x;
}

/* Logits and gradients of one forward + backward of model m. */
static void run(tlb_model *m, const float *x, const int *labels, float *logits, float *grads)
{
    model_zero_grads(m);
    model_forward(m, x, labels, B, NULL);
    model_backward(m, x, labels, B, 1.0f / B, NULL);
    memcpy(logits, m->logits, sizeof(float) * B * 5);
    memcpy(grads, m->grads, sizeof(float) * model_num_params(m));
}

/* Model a on ref and model b on another table (the CPU's own SIMD kernels,
 * oneDNN, bf16 where the CPU has it): interleaved runs give each exactly
 * what it gives alone, and b's differ from a's (another kernel really ran). */
static void two_models(const op_table *other, const char *what)
{
    op_table ref;
    tlb_error err;
    cr_assert_eq(ops_table_select(&ref, "ref", &err), 0, "%s", err.msg);
    int labels[B];
    float *x = images(labels);
    tlb_model alone, a, b;
    make_model(&alone, &ref);
    const size_t n = model_num_params(&alone);
    float la[B * 5], lb[B * 5], l0[B * 5], lb2[B * 5];
    float *ga = malloc(n * 4), *gb = malloc(n * 4), *g0 = malloc(n * 4), *gb2 = malloc(n * 4);
    run(&alone, x, labels, l0, g0);
    model_destroy(&alone);

    make_model(&a, &ref);
    make_model(&b, other);
    run(&b, x, labels, lb, gb);
    run(&a, x, labels, la, ga);
    run(&b, x, labels, lb2, gb2);
    cr_expect_eq(a.ops.backend[TLB_OP_dense], TLB_BACKEND_REF);
    cr_expect_eq(memcmp(la, l0, sizeof la), 0, "%s: the ref model's logits changed beside it", what);
    cr_expect_eq(memcmp(ga, g0, n * 4), 0, "%s: the ref model's gradients changed beside it", what);
    cr_expect_eq(memcmp(lb, lb2, sizeof lb), 0, "%s: the other model does not repeat itself", what);
    cr_expect_neq(memcmp(lb, la, sizeof lb), 0, "%s: identical to ref bit for bit: did its kernels run?", what);
    double worst = 0, scale = 0;
    for (int i = 0; i < B * 5; i++) worst = fmax(worst, fabs((double)lb[i] - la[i])), scale = fmax(scale, fabs(la[i]));
    cr_expect_leq(worst, (other->bf16_dense ? 3e-2 : 1e-5) * scale, "%s: logits off ref by %.3e", what, worst);
    model_destroy(&a);
    model_destroy(&b);
    free(x), free(ga), free(gb), free(g0), free(gb2);
}

Test(plan, two_models_two_backends)
{
    op_table other;
    cr_assert_eq(ops_table_select(&other, "dnnl", NULL), 0);
    two_models(&other, "dnnl");
    const char *own = backend_supported(TLB_BACKEND_AVX512) ? "avx512" : backend_supported(TLB_BACKEND_AVX2) ? "avx2" : NULL;
    if (own) {
        cr_assert_eq(ops_table_select(&other, own, NULL), 0);
        two_models(&other, own);
    }
}

/* Where the CPU has AVX512_BF16 (skipped elsewhere): one model in bf16 and
 * one in fp32 side by side. */
Test(plan, two_models_two_precisions)
{
    if (!ops_mixed_precision_supported()) cr_skip_test("no AVX512_BF16");
    op_table bf16;
    ops_table_automatic(&bf16);
    cr_assert_eq(ops_table_set_bf16(&bf16, 1), 0);
    two_models(&bf16, "bf16");
}

Test(plan, batch_beyond_capacity_is_refused)
{
    op_table ops;
    ops_table_automatic(&ops);
    tlb_model m;
    make_model(&m, &ops);
    int labels[2 * B];
    float *x = calloc((size_t)2 * B * 8 * 8 * 3, sizeof(float));
    for (int b = 0; b < 2 * B; b++) labels[b] = b % 5;
    tlb_error err = {0};
    cr_expect_eq(model_check_batch(&m, B, &err), 0);
    cr_expect_eq(model_check_batch(&m, B + 1, &err), -1);
    cr_expect(strstr(err.msg, "6 samples exceeds the plan's capacity of 5"), "%s", err.msg);
    cr_expect(isnan(model_forward(&m, x, labels, B + 1, NULL)), "a forward past the capacity ran");

    /* Training: a micro-batch larger than the plan. */
    const size_t n = model_num_params(&m);
    float *am = calloc(n, 4), *av = calloc(n, 4);
    const train_stepper s = {.model = &m, .adam_m = am, .adam_v = av, .hparams = adamw_keras_defaults(1e-3f, 0),
                             .micro_batch = 2 * B};
    train_step_result res;
    cr_expect_eq(train_step(&s, x, labels, NULL, 2 * B, 1, 1, 1e-3f, &res, &err), -1);
    cr_expect(strstr(err.msg, "exceeds the plan's capacity"), "%s", err.msg);

    /* Inference. */
    model_inference inf;
    cr_assert_eq(model_inference_plan(&inf, &m, B, 2, 0, &err), 0, "%s", err.msg);
    cr_expect_eq(model_inference_run(&inf, x, NULL, B, &err), 0);
    cr_expect_eq(model_inference_run(&inf, x, NULL, B + 1, &err), -1);
    cr_expect(strstr(err.msg, "inference on 6 samples: the plan holds 1 to 5"), "%s", err.msg);
    model_inference_free(&inf);
    free(am), free(av), free(x);
    model_destroy(&m);
}

/* Every allocation of planning (arena, shards, kernels' set-up on each
 * backend) failed one at a time gives -1 and a message, never an abort. */
Test(plan, failed_set_up_is_an_error)
{
    for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
        if (!backend_supported((tlb_backend)be)) continue;
        op_table ops;
        cr_assert_eq(ops_table_select(&ops, backend_name((tlb_backend)be), NULL), 0);
        const tlb_model_config c = test_small_config(TLB_WIRING_PAPER);
        int k, failures = 0;
        for (k = 0; k < 200; k++) {
            tlb_model m;
            tlb_error err = {0};
            cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
            model_use_ops(&m, &ops);
            alloc_fail_next(k);
            const int rc = model_plan(&m, 3, &err);
            alloc_fail_next(-1);
            model_destroy(&m);
            if (rc == 0) break;
            failures++;
            cr_expect(err.msg[0] != '\0', "%s: allocation %d failed without a message", backend_name((tlb_backend)be), k);
        }
        cr_expect_lt(k, 200);
        cr_expect_geq(failures, 3, "%s: only %d allocations in a plan", backend_name((tlb_backend)be), failures);
    }
}
