/* train_step (train/train_step.c): the reduction hook runs once per step on
 * the whole accumulated gradient, a failing hook or a non-finite gradient
 * leaves the parameters untouched, clipping bounds the global norm, and the
 * step's loss and correct count are the micro-batches' sums. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "train/train_step.h"
#include "util/rng.h"

#define B 6

typedef struct {
    tlb_model m;
    float *am, *av, *img, *before;
    int labels[B];
    size_t n;
} fixture;

static void setup(fixture *f, int mb)
{
    const tlb_model_config c = {.image_size = 8, .patch_size = 2, .embed_dim = 16, .chunk_size = 4,
                                .r = 2, .num_layers = 1, .num_heads = 2, .key_dim = 4, .ffn_mult = 2,
                                .num_classes = 5, .wiring = TLB_WIRING_KERAS, .ffn_drop = 0.1f,
                                .attn_drop = 0.1f};
    tlb_error err;
    cr_assert_eq(model_create(&f->m, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(model_plan(&f->m, mb, &err), 0, "%s", err.msg);
    f->n = model_num_params(&f->m);
    rng_stream r = {5, 0};
    for (size_t i = 0; i < f->n; i++) f->m.params[i] = 0.4f * (rng_next_uniform(&r) - 0.5f);
    f->am = calloc(f->n, sizeof(float));
    f->av = calloc(f->n, sizeof(float));
    f->img = malloc(sizeof(float) * B * 8 * 8 * 3);
    for (int i = 0; i < B * 8 * 8 * 3; i++) f->img[i] = rng_next_uniform(&r);
    for (int b = 0; b < B; b++) f->labels[b] = b % 5;
    f->before = malloc(f->n * sizeof(float));
    memcpy(f->before, f->m.params, f->n * sizeof(float));
}

static void teardown(fixture *f)
{
    free(f->am), free(f->av), free(f->img), free(f->before);
    model_destroy(&f->m);
}

typedef struct {
    int calls;
    const float *seen;
    size_t n;
    double sum_abs;
    int fail, poison;
} hook_log;

static int hook(void *ctx, float *grads, size_t n, train_step_result *r, tlb_error *err)
{
    (void)r;
    hook_log *h = ctx;
    h->calls++, h->seen = grads, h->n = n;
    for (size_t i = 0; i < n; i++) h->sum_abs += fabs(grads[i]);
    if (h->poison) grads[n - 1] = INFINITY;
    return h->fail ? tlb_fail(err, "reduce: peer went away") : 0;
}

static train_stepper stepper(fixture *f, int mb, hook_log *h)
{
    return (train_stepper){.model = &f->m, .adam_m = f->am, .adam_v = f->av,
                           .hparams = adamw_keras_defaults(1e-3f, 1e-4f), .micro_batch = mb,
                           .reduce = h ? hook : NULL, .reduce_ctx = h};
}

Test(train_step, reduce_hook_sees_the_whole_gradient_once)
{
    fixture f;
    setup(&f, 4); /* two micro-batches: 4 + 2 */
    hook_log h = {0};
    const train_stepper s = stepper(&f, 4, &h);
    train_step_result r;
    tlb_error err;
    cr_assert_eq(train_step(&s, f.img, f.labels, NULL, B, 1, 7, 1e-3f, &r, &err), 0, "%s", err.msg);
    cr_expect_eq(h.calls, 1);
    cr_expect_eq(h.seen, f.m.grads);
    cr_expect_eq(h.n, f.n);
    cr_expect_gt(h.sum_abs, 0.0, "the hook ran before any backward");
    cr_expect_neq(memcmp(f.before, f.m.params, f.n * sizeof(float)), 0, "no update");
    cr_expect(isfinite(r.loss) && r.loss > 0);
    cr_expect(r.correct >= 0 && r.correct <= B);
    teardown(&f);
}

Test(train_step, failing_hook_or_nonfinite_gradient_leaves_params)
{
    fixture f;
    setup(&f, B);
    hook_log h = {.fail = 1};
    train_stepper s = stepper(&f, B, &h);
    train_step_result r;
    tlb_error err = {0};
    cr_expect_eq(train_step(&s, f.img, f.labels, NULL, B, 1, 7, 1e-3f, &r, &err), -1);
    cr_expect_str_eq(err.msg, "reduce: peer went away");
    cr_expect_null(r.nonfinite);
    cr_expect_eq(memcmp(f.before, f.m.params, f.n * sizeof(float)), 0);

    hook_log p = {.poison = 1};
    s = stepper(&f, B, &p);
    cr_expect_eq(train_step(&s, f.img, f.labels, NULL, B, 1, 7, 1e-3f, &r, &err), -1);
    const param_table *t = &f.m.layout.table;
    cr_expect_str_eq(r.nonfinite, t->entries[t->count - 1].name);
    char want[200];
    snprintf(want, sizeof want, "non-finite gradient of %s", t->entries[t->count - 1].name);
    cr_expect_str_eq(err.msg, want);
    cr_expect_eq(memcmp(f.before, f.m.params, f.n * sizeof(float)), 0, "updated despite the guard");
    teardown(&f);
}

Test(train_step, grad_clip_bounds_the_global_norm)
{
    fixture f;
    setup(&f, B);
    train_stepper s = stepper(&f, B, NULL);
    s.grad_clip = 1e-3f;
    train_step_result r;
    tlb_error err;
    cr_assert_eq(train_step(&s, f.img, f.labels, NULL, B, 1, 7, 1e-3f, &r, &err), 0, "%s", err.msg);
    double sq = 0;
    for (size_t i = 0; i < f.n; i++) sq += (double)f.m.grads[i] * f.m.grads[i];
    cr_expect_gt(r.grad_norm, 1e-3, "the test needs a norm above the clip (%g)", r.grad_norm);
    cr_expect_leq(fabs(sqrt(sq) - 1e-3), 1e-8, "norm after clipping %.9g", sqrt(sq));
    teardown(&f);
}

/* Loss and correct over micro-batches are the sums a single micro-batch of
 * the whole batch gives (dropout offsets follow the sample index). */
Test(train_step, micro_batches_sum_to_the_whole_batch)
{
    double loss[2];
    long correct[2];
    for (int k = 0; k < 2; k++) {
        fixture f;
        const int mb = k ? 4 : B;
        setup(&f, mb);
        const train_stepper s = stepper(&f, mb, NULL);
        train_step_result r;
        tlb_error err;
        cr_assert_eq(train_step(&s, f.img, f.labels, NULL, B, 1, 7, 1e-3f, &r, &err), 0, "%s", err.msg);
        loss[k] = r.loss, correct[k] = r.correct;
        teardown(&f);
    }
    cr_expect_leq(fabs(loss[0] - loss[1]), 1e-5 * loss[0], "%.8f vs %.8f", loss[0], loss[1]);
    cr_expect_eq(correct[0], correct[1]);
}
