/* "No allocation in a training step", the first one included: model_plan
 * sets up every kernel (oneDNN primitives, per-thread scratch, bf16 staging)
 * for the planned micro-batch and model_prepare_batch for the smaller last
 * one, so train_steps -- forward, backward, the guard and AdamW over
 * micro-batches, with dropout; one with soft targets (mixup and label
 * smoothing) and clipping -- must not call malloc at all, on every backend
 * and with mixed precision (where the CPU has AVX512_BF16). No warm-up. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "alloc_counter.h"
#include "model/infer.h"
#include "model/model.h"
#include "ops/ops.h"
#include "train/adamw.h"
#include "train/init.h"
#include "train/train_step.h"
#include "util/rng.h"

/* The trainer's step (train/train_step.c): micro-batches, guard, AdamW;
 * step 3 with the recipe's soft targets and clipping. */
static void step(tlb_model *m, float *am, float *av, const float *img, const int *labels, int B, int mb, long t)
{
    static int y2[32];
    static float lam[32];
    for (int b = 0; b < B; b++) y2[b] = (labels[b] + 3) % 10, lam[b] = 0.7f;
    const model_targets soft = {y2, lam, 0.1f};
    const train_stepper s = {.model = m, .adam_m = am, .adam_v = av,
                             .hparams = adamw_keras_defaults(1e-3f, 1e-4f), .micro_batch = mb,
                             .grad_clip = t == 3 ? 0.5f : 0.0f};
    train_step_result r;
    tlb_error err;
    if (train_step(&s, img, labels, t == 3 ? &soft : NULL, B, t, (uint64_t)t, 1e-3f, &r, &err) != 0)
        cr_assert_fail("%s", err.msg);
}

static void no_alloc_on(tlb_model_config c, const op_table *ops, const char *what)
{
    const int B = 20, mb = 8; /* micro-batches of 8, 8 and 4 */
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    model_use_ops(&m, ops);
    cr_assert_eq(model_plan(&m, mb, &err), 0, "%s", err.msg);
    cr_assert_eq(model_prepare_batch(&m, B % mb, &err), 0, "%s", err.msg);
    init_keras(&m, 3);
    const size_t n = model_num_params(&m), per = 16 * 16 * 3;
    float *am = calloc(n, sizeof(float)), *av = calloc(n, sizeof(float));
    float *img = malloc(B * per * sizeof(float));
    int *labels = malloc(B * sizeof(int));
    rng_stream r = {1, 0};
    for (size_t i = 0; i < B * per; i++) img[i] = rng_next_uniform(&r);
    for (int b = 0; b < B; b++) labels[b] = b % 10;
    const long before = alloc_count();
    for (long t = 1; t <= 3; t++) step(&m, am, av, img, labels, B, mb, t);
    cr_expect_eq(alloc_count() - before, 0, "%s: %ld allocations in the first three training steps", what,
                 alloc_count() - before);
    free(am), free(av), free(img), free(labels);
    model_destroy(&m);
}

static void no_alloc_on_every_backend(tlb_model_config c)
{
    tlb_error err;
    op_table ops;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        cr_assert_eq(ops_table_select(&ops, backend_name((tlb_backend)b), &err), 0, "%s", err.msg);
        char what[64];
        snprintf(what, sizeof what, "backend %s", backend_name((tlb_backend)b));
        no_alloc_on(c, &ops, what);
    }
    if (ops_mixed_precision_supported()) { /* bf16 dense: weights and staging planned too */
        ops_table_automatic(&ops);
        cr_assert_eq(ops_table_set_bf16(&ops, 1), 0);
        no_alloc_on(c, &ops, "mixed precision");
    }
}

Test(no_alloc, training_step_on_every_backend)
{
    tlb_model_config c = model_config_seed();
    c.image_size = 16; /* 16 tokens, 2 chunks: small but every path runs */
    no_alloc_on_every_backend(c);
}

/* The slow-state options' buffers (the per-chunk state + table, the readout
 * LayerNorm) are planned with the rest. */
Test(no_alloc, slow_state_options_on_every_backend)
{
    tlb_model_config c = model_config_seed();
    c.image_size = 16;
    c.num_state_tokens = 5;
    c.readout = READOUT_STATE;
    c.state_init = STATE_INIT_LEARNED;
    no_alloc_on_every_backend(c);
    c.state_init = STATE_INIT_SINUSOID;
    c.num_state_tokens = 11;
    no_alloc_on_every_backend(c);
}

/* Token models on padded batches (the sequence options and the per-chunk
 * key counts planned with the rest): forward, backward and inference, with
 * dropout, on every backend, no warm-up. */
static void no_alloc_tokens_on(tlb_model_config c, const op_table *ops, const char *what)
{
    const int B = 6, T = c.seq_len;
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    model_use_ops(&m, ops);
    cr_assert_eq(model_plan(&m, B, &err), 0, "%s", err.msg);
    model_inference inf;
    cr_assert_eq(model_inference_plan(&inf, &m, B, 4, INFER_STATE, &err), 0, "%s", err.msg);
    init_keras(&m, 3);
    int ids[6 * 32], labels[6], lengths[6] = {T, 1, T - 3, c.chunk_size, T / 2 + 1, 2};
    rng_stream r = {1, 0};
    for (int i = 0; i < B * T; i++) ids[i] = (int)rng_next_below(&r, (uint32_t)c.vocab_size);
    for (int b = 0; b < B; b++) labels[b] = b % c.num_classes;
    const model_dropout d = {1, 7, 0};
    const long before = alloc_count();
    for (int t = 0; t < 2; t++) {
        model_zero_grads(&m);
        model_forward_padded(&m, ids, lengths, labels, NULL, B, &d);
        model_backward_padded(&m, ids, lengths, labels, NULL, B, 1.0f / B, &d);
        cr_assert_eq(model_inference_run_padded(&inf, ids, lengths, labels, B, &err), 0, "%s", err.msg);
    }
    cr_expect_eq(alloc_count() - before, 0, "%s: %ld allocations", what, alloc_count() - before);
    model_inference_free(&inf);
    model_destroy(&m);
}

Test(no_alloc, padded_token_batches_on_every_backend)
{
    tlb_model_config c = model_config_seed();
    c.input = INPUT_TOKENS, c.vocab_size = 11, c.seq_len = 32, c.pos_emb = POS_EMB_CHUNK, c.head_hidden = 12;
    c.embed_drop = 0.1f, c.wiring = TLB_WIRING_PAPER, c.r = 1, c.num_layers = 1, c.num_state_tokens = 5;
    c.state_init = STATE_INIT_SINUSOID;
    tlb_error err;
    op_table ops;
    for (int ro = 0; ro < 2; ro++) {
        c.readout = ro ? READOUT_STATE : READOUT_LAST_FAST;
        for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
            if (!backend_supported((tlb_backend)b)) continue;
            cr_assert_eq(ops_table_select(&ops, backend_name((tlb_backend)b), &err), 0, "%s", err.msg);
            char what[64];
            snprintf(what, sizeof what, "tokens, readout %s, backend %s", readout_name(c.readout),
                     backend_name((tlb_backend)b));
            no_alloc_tokens_on(c, &ops, what);
        }
    }
}

/* The counter sees the library's allocations (the test above cannot pass
 * vacuously): planning a model allocates. */
Test(no_alloc, counter_sees_library_allocations)
{
    tlb_model_config c = model_config_seed();
    c.image_size = 16;
    tlb_model m;
    tlb_error err;
    const long before = alloc_count();
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(model_plan(&m, 4, &err), 0, "%s", err.msg);
    cr_expect_geq(alloc_count() - before, 3, "model_create + model_plan: %ld allocations seen", alloc_count() - before);
    model_destroy(&m);
}
