/* The training recipe beyond the seed: the learning-rate schedule, the soft
 * targets of label smoothing and mixup/cutmix (loss and gradient by finite
 * differences, and the seed's loss bit for bit when off), and gradient
 * clipping by the global norm. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "train/grad_clip.h"
#include "train/lr_schedule.h"
#include "util/rng.h"

/* ---- learning-rate schedule ---- */

Test(lr_schedule, constant_is_the_peak_at_every_step)
{
    const lr_schedule s = {LR_CONSTANT, 1e-4, 0.0, 2.0, 10, 300};
    for (long t = 0; t < 300; t += 37) cr_expect_eq(lr_at_step(&s, t), 1e-4);
}

/* 10 steps per epoch, 100 steps, 1.5 warmup epochs (W = 15), peak 1e-3, min 1e-5. */
Test(lr_schedule, cosine_values_at_chosen_steps)
{
    const lr_schedule s = {LR_COSINE, 1e-3, 1e-5, 1.5, 10, 100};
    /* Warmup: step t (0-based) is update t + 1 of W. */
    cr_expect_float_eq(lr_at_step(&s, 0), 1e-3 / 15, 1e-15);
    cr_expect_float_eq(lr_at_step(&s, 6), 1e-3 * 7 / 15, 1e-15);
    cr_expect_float_eq(lr_at_step(&s, 13), 1e-3 * 14 / 15, 1e-15);
    /* The peak when warmup ends, half way down at the middle of the decay, min_lr at the end. */
    cr_expect_float_eq(lr_at_step(&s, 14), 1e-3, 1e-15);
    const double mid = 1e-5 + (1e-3 - 1e-5) * 0.5;
    cr_expect_float_eq(lr_at_step(&s, 14 + 85 / 2), 1e-5 + (1e-3 - 1e-5) * 0.5 * (1 + cos(M_PI * 42.0 / 85)), 1e-15);
    cr_expect(lr_at_step(&s, 56) > mid && lr_at_step(&s, 57) < mid);
    cr_expect_float_eq(lr_at_step(&s, 99), 1e-5, 1e-15);
    /* Monotone: up through warmup, down after. */
    for (long t = 1; t < 100; t++) {
        if (t < 15) cr_expect_gt(lr_at_step(&s, t), lr_at_step(&s, t - 1), "step %ld", t);
        else cr_expect_lt(lr_at_step(&s, t), lr_at_step(&s, t - 1), "step %ld", t);
    }
}

Test(lr_schedule, cosine_without_warmup_starts_at_the_peak)
{
    const lr_schedule s = {LR_COSINE, 2e-3, 0.0, 0.0, 7, 70};
    cr_expect_float_eq(lr_at_step(&s, 0), 2e-3 * 0.5 * (1 + cos(M_PI / 70)), 1e-15);
    cr_expect_float_eq(lr_at_step(&s, 69), 0.0, 1e-18);
}

/* A resumed run knows only its step count: the rate is a function of it. */
Test(lr_schedule, a_resumed_run_sees_the_same_rates)
{
    const lr_schedule s = {LR_COSINE, 1e-3, 1e-5, 0.5, 16, 32};
    double straight[32];
    for (long t = 0; t < 32; t++) straight[t] = lr_at_step(&s, t);
    const lr_schedule again = s; /* rebuilt from the run's config.cfg */
    for (long t = 5; t < 32; t++) cr_expect_eq(lr_at_step(&again, t), straight[t]);
}

/* ---- soft targets ---- */

static const model_targets *with(model_targets *t, const int *y2, const float *lam, float e)
{
    *t = (model_targets){y2, lam, e};
    return t;
}

/* The loss and its gradient w.r.t. the logits (the op's p - onehot(y) plus
 * the correction) against central differences of targets_loss, over smoothing
 * alone, mixing alone, and both; the partner equal to the label too. */
static double worst_fd_error(int corrupt)
{
    enum { V = 7 };
    const int y = 2;
    const int partners[3] = {5, 2, 0};
    const float lams[3] = {0.7f, 0.35f, 1.0f};
    const float smooth[3] = {0.1f, 0.0f, 0.3f};
    double worst = 0.0;
    rng_stream r = {31, 0};
    for (int c = 0; c < 3; c++) {
        float logits[V], probs[V], loss;
        for (int k = 0; k < V; k++) logits[k] = 3.0f * (rng_next_uniform(&r) - 0.5f);
        model_targets t;
        with(&t, &partners[c], &lams[c], smooth[c]);
        if (c == 2) t.y2 = NULL, t.lam = NULL; /* smoothing only */
        ops_impl_softmax_xent(TLB_BACKEND_REF)->forward(&loss, probs, logits, &y, 1, V);
        float grad[V] = {0};
        ops_impl_softmax_xent(TLB_BACKEND_REF)->backward(grad, probs, &y, 1.0f, 1, V);
        if (!corrupt) targets_grad_correction(grad, V, y, &t, 0, 1.0f);
        for (int k = 0; k < V; k++) {
            const float h = 1e-2f, saved = logits[k];
            logits[k] = saved + h;
            const double lp = targets_loss(logits, V, y, &t, 0);
            logits[k] = saved - h;
            const double lm = targets_loss(logits, V, y, &t, 0);
            logits[k] = saved;
            const double fd = (lp - lm) / (2.0 * h);
            worst = fmax(worst, fabs(fd - grad[k]));
        }
        /* The sum of the gradient is 0 (the target sums to 1). */
        double sum = 0;
        for (int k = 0; k < V; k++) sum += grad[k];
        if (!corrupt) cr_expect_lt(fabs(sum), 1e-5, "case %d: gradient sums to %g", c, sum);
    }
    return worst;
}

Test(targets, loss_gradient_by_finite_differences)
{
    const double worst = worst_fd_error(0);
    cr_expect_lt(worst, 1e-4, "worst |fd - analytic| %.3g", worst);
}

/* Negative control: without the correction (the hard-label gradient) the check fails. */
Test(targets, finite_differences_catch_a_missing_correction)
{
    const double worst = worst_fd_error(1);
    cr_expect_gt(worst, 1e-2, "a missing correction went unnoticed (worst %.3g)", worst);
}

/* Against the definition -sum_k t_k log p_k with p in double (python gives
 * 1.12138509 for this case). */
Test(targets, loss_is_the_cross_entropy_with_the_soft_target)
{
    enum { V = 5 };
    const float logits[V] = {0.3f, -1.2f, 2.0f, 0.0f, 0.7f};
    const int y = 2, y2 = 4;
    const float lam = 0.6f, e = 0.1f;
    double z = 0;
    for (int k = 0; k < V; k++) z += exp((double)logits[k]);
    double expect = 0;
    for (int k = 0; k < V; k++) {
        const double tk = (1.0 - e) * (lam * (k == y) + (1.0 - lam) * (k == y2)) + (double)e / V;
        expect -= tk * log(exp((double)logits[k]) / z);
    }
    model_targets t;
    const double loss = targets_loss(logits, V, y, with(&t, &y2, &lam, e), 0);
    cr_expect_float_eq(loss, expect, 1e-6, "loss %.9g, direct sum %.9g", loss, expect);
    cr_expect(targets_soft(&t, 0));
    cr_expect(!targets_soft(with(&t, &y2, (const float[]){1.0f}, 0.0f), 0));
    cr_expect(!targets_soft(NULL, 0));
}

/* ---- the model with targets ---- */

static tlb_model_config tiny(void)
{
    return (tlb_model_config){.image_size = 8, .patch_size = 4, .embed_dim = 6, .chunk_size = 2, .r = 2,
                              .num_layers = 3, .num_heads = 2, .key_dim = 4, .ffn_mult = 2,
                              .num_classes = 5, .wiring = TLB_WIRING_KERAS};
}

typedef struct {
    tlb_model m;
    float img[4 * 8 * 8 * 3];
    int labels[4], y2[4];
    float lam[4];
} fixture;

static void setup(fixture *f)
{
    tlb_model_config c = tiny();
    tlb_error err;
    cr_assert_eq(model_create(&f->m, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(model_plan(&f->m, 4, &err), 0, "%s", err.msg);
    rng_stream r = {17, 0};
    const param_table *t = &f->m.layout.table;
    for (int i = 0; i < t->count; i++)
        for (size_t k = 0; k < t->entries[i].numel; k++)
            f->m.params[t->entries[i].offset + k] = strstr(t->entries[i].name, "gamma")
                                                        ? 1.0f + 0.3f * (rng_next_uniform(&r) - 0.5f)
                                                        : rng_next_uniform(&r) - 0.5f;
    for (size_t i = 0; i < sizeof f->img / sizeof f->img[0]; i++) f->img[i] = rng_next_uniform(&r);
    const int labels[4] = {0, 4, 2, 1}, y2[4] = {3, 4, 0, 2};
    const float lam[4] = {0.25f, 0.5f, 1.0f, 0.9f};
    memcpy(f->labels, labels, sizeof labels);
    memcpy(f->y2, y2, sizeof y2);
    memcpy(f->lam, lam, sizeof lam);
}

/* smoothing 0 and lam 1 (or no partner) is the seed's loss and gradient, bit for bit. */
Test(targets, off_reproduces_the_seed_loss_bit_for_bit)
{
    fixture f;
    setup(&f);
    const size_t n = model_num_params(&f.m);
    model_zero_grads(&f.m);
    const double seed_loss = model_forward(&f.m, f.img, f.labels, 4, NULL);
    model_backward(&f.m, f.img, f.labels, 4, 0.25f, NULL);
    float *g = malloc(n * sizeof(float));
    memcpy(g, f.m.grads, n * sizeof(float));
    const float ones[4] = {1, 1, 1, 1};
    model_targets t[3];
    with(&t[0], NULL, NULL, 0.0f);
    with(&t[1], f.y2, ones, 0.0f);
    with(&t[2], NULL, f.lam, 0.0f); /* lam without a partner: no mixing */
    for (int i = 0; i < 3; i++) {
        model_zero_grads(&f.m);
        const double loss = model_forward_targets(&f.m, f.img, f.labels, &t[i], 4, NULL);
        model_backward_targets(&f.m, f.img, f.labels, &t[i], 4, 0.25f, NULL);
        cr_expect(loss == seed_loss, "case %d: loss %.9g, seed %.9g", i, loss, seed_loss);
        cr_expect(memcmp(g, f.m.grads, n * sizeof(float)) == 0, "case %d: gradients differ", i);
    }
    free(g);
    model_destroy(&f.m);
}

/* Through the whole model: every tensor's directional derivative of the mean
 * smoothed and mixed loss against central differences. */
Test(targets, whole_model_gradient_by_finite_differences)
{
    fixture f;
    setup(&f);
    model_targets t;
    with(&t, f.y2, f.lam, 0.1f);
    model_zero_grads(&f.m);
    model_forward_targets(&f.m, f.img, f.labels, &t, 4, NULL);
    model_backward_targets(&f.m, f.img, f.labels, &t, 4, 0.25f, NULL);
    const param_table *tab = &f.m.layout.table;
    rng_stream r = {5, 0};
    for (int i = 0; i < tab->count; i++) {
        const param_entry *e = &tab->entries[i];
        float *w = f.m.params + e->offset;
        float *u = malloc(e->numel * sizeof(float)), *saved = malloc(e->numel * sizeof(float));
        double analytic = 0, gnorm = 0;
        for (size_t k = 0; k < e->numel; k++) {
            u[k] = (rng_next_u64(&r) & 1) ? 1.0f : -1.0f;
            analytic += (double)f.m.grads[e->offset + k] * u[k];
            gnorm += fabs(f.m.grads[e->offset + k]);
        }
        memcpy(saved, w, e->numel * sizeof(float));
        const float eps = 1e-2f;
        for (size_t k = 0; k < e->numel; k++) w[k] = saved[k] + eps * u[k];
        const double lp = model_forward_targets(&f.m, f.img, f.labels, &t, 4, NULL) / 4;
        for (size_t k = 0; k < e->numel; k++) w[k] = saved[k] - eps * u[k];
        const double lm = model_forward_targets(&f.m, f.img, f.labels, &t, 4, NULL) / 4;
        memcpy(w, saved, e->numel * sizeof(float));
        const double fd = (lp - lm) / (2.0 * eps);
        /* The tolerance of tests/test_model_fd.c. */
        cr_expect_leq(fabs(fd - analytic), 2e-2 * fabs(fd) + 2e-3 * gnorm + 2e-4, "%s: fd %.6g, analytic %.6g",
                      e->name, fd, analytic);
        free(u);
        free(saved);
    }
    model_destroy(&f.m);
}

/* ---- gradient clipping ---- */

Test(grad_clip, clips_the_global_norm)
{
    enum { N = 1001 };
    float *g = malloc(N * sizeof(float)), *orig = malloc(N * sizeof(float));
    rng_stream r = {3, 0};
    double sq = 0;
    for (int i = 0; i < N; i++) {
        orig[i] = rng_next_uniform(&r) - 0.5f;
        sq += (double)orig[i] * orig[i];
    }
    const double norm = sqrt(sq);
    memcpy(g, orig, N * sizeof(float));
    cr_expect_float_eq(grad_global_norm(g, N), norm, 1e-12 * norm);
    /* Above the threshold: scaled to it, direction kept. */
    cr_expect_float_eq(grad_clip_global(g, N, 0.5 * norm), norm, 1e-12 * norm);
    cr_expect_float_eq(grad_global_norm(g, N), 0.5 * norm, 1e-6 * norm);
    for (int i = 0; i < N; i++) cr_expect_float_eq(g[i], 0.5f * orig[i], 1e-6f * fabsf(orig[i]) + 1e-9f);
    /* At or below the threshold, and 0 (off): unchanged, bit for bit. */
    memcpy(g, orig, N * sizeof(float));
    grad_clip_global(g, N, 2.0 * norm);
    cr_expect(memcmp(g, orig, N * sizeof(float)) == 0);
    grad_clip_global(g, N, 0.0);
    cr_expect(memcmp(g, orig, N * sizeof(float)) == 0);
    free(g);
    free(orig);
}
