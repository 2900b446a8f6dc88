/* Backpropagation through time checked by finite differences on tiny random
 * models of both wirings, independent of the golden files: for each parameter
 * tensor, the analytic directional derivative g . u (u a random +-1 direction
 * over that tensor) against central differences (L(w + eps u) - L(w - eps u)) / 2 eps
 * at two steps, extrapolated. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "util/rng.h"

static void randomize(tlb_model *m, uint64_t seed)
{
    rng_stream r = {seed, 0};
    const param_table *t = &m->layout.table;
    for (int i = 0; i < t->count; i++) {
        const param_entry *e = &t->entries[i];
        const int is_gamma = strstr(e->name, "gamma") != NULL;
        for (size_t k = 0; k < e->numel; k++) {
            const float u = rng_next_uniform(&r) * 2.0f - 1.0f;
            m->params[e->offset + k] = is_gamma ? 1.0f + 0.3f * u : 0.5f * u;
        }
    }
}

/* x: images, or token ids with per-sample lengths (NULL: whole). */
static double loss_at(tlb_model *m, const void *x, const int *lengths, const int *labels, int B,
                      const model_dropout *d)
{
    return model_forward_padded(m, x, lengths, labels, NULL, B, d) / B;
}

typedef struct {
    double worst; /* worst |fd - analytic| / (tol) over tensors */
    char tensor[160];
} fd_result;

/* Returns the worst ratio of the FD mismatch to its tolerance (<= 1 passes). */
static fd_result fd_check(tlb_model *m, const void *img, const int *lengths, const int *labels, int B,
                          const model_dropout *d, const float *grad_bias)
{
    fd_result res = {0, ""};
    model_zero_grads(m);
    loss_at(m, img, lengths, labels, B, d);
    model_backward_padded(m, img, lengths, labels, NULL, B, 1.0f / B, d);
    const param_table *t = &m->layout.table;
    float *grads = malloc(t->total * sizeof(float));
    memcpy(grads, m->grads, t->total * sizeof(float));
    if (grad_bias) /* negative control: a deliberately wrong gradient */
        for (size_t i = 0; i < t->total; i++) grads[i] += grad_bias[i];
    rng_stream r = {777, 0};
    const float eps = 1e-2f;
    for (int i = 0; i < t->count; i++) {
        const param_entry *e = &t->entries[i];
        float *w = m->params + e->offset;
        float *u = malloc(e->numel * sizeof(float));
        double analytic = 0.0, gnorm = 0.0;
        for (size_t k = 0; k < e->numel; k++) {
            u[k] = (rng_next_u64(&r) & 1) ? 1.0f : -1.0f;
            analytic += (double)grads[e->offset + k] * u[k];
            gnorm += fabs((double)grads[e->offset + k]);
        }
        float *saved = malloc(e->numel * sizeof(float));
        memcpy(saved, w, e->numel * sizeof(float));
        /* Central differences at eps and eps/2, extrapolated (Richardson):
         * the eps^2 term cancels, which tables shared by many tokens (chunk
         * positions) make large. */
        double central[2];
        for (int h = 0; h < 2; h++) {
            const float step = h ? eps / 2 : eps;
            for (size_t k = 0; k < e->numel; k++) w[k] = saved[k] + step * u[k];
            const double lp = loss_at(m, img, lengths, labels, B, d);
            for (size_t k = 0; k < e->numel; k++) w[k] = saved[k] - step * u[k];
            const double lm = loss_at(m, img, lengths, labels, B, d);
            central[h] = (lp - lm) / (2.0 * step);
        }
        memcpy(w, saved, e->numel * sizeof(float));
        const double fd = (4.0 * central[1] - central[0]) / 3.0;
        /* Second-order FD error and float32 round-off of the loss set the floor. */
        const double tol = 2e-2 * fabs(fd) + 2e-3 * gnorm + 2e-4;
        const double ratio = fabs(fd - analytic) / tol;
        if (ratio > res.worst) {
            res.worst = ratio;
            snprintf(res.tensor, sizeof res.tensor, "%s (fd %.6g, analytic %.6g)", e->name, fd, analytic);
        }
        free(u);
        free(saved);
    }
    free(grads);
    return res;
}

static tlb_model_config tiny(tlb_wiring wiring, float drop)
{
    return (tlb_model_config){.image_size = 8, .patch_size = 4, .embed_dim = 6, .chunk_size = 2, .r = 2,
                              .num_layers = 3, .num_heads = 2, .key_dim = 4, .ffn_mult = 2,
                              .num_classes = 5, .wiring = wiring, .ffn_drop = drop, .attn_drop = drop};
}

/* A difference quotient across ReLU's kink is no derivative: with a hidden
 * head layer, the seed must be one whose hidden units all stay clear of 0
 * under the test's dropout masks (as the golden files' do). */
static void expect_clear_of_kink(const tlb_model *m, int B, uint64_t seed)
{
    for (int i = 0; i < B * m->config.head_hidden; i++)
        cr_assert_gt(fabsf(m->hidden_pre[i]), 0.05f, "seed %llu: hidden unit %d at %g, near the kink",
                     (unsigned long long)seed, i, m->hidden_pre[i]);
}

static void run_fd_seeded(tlb_model_config c, int B, int training, uint64_t seed)
{
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(model_plan(&m, B, &err), 0, "%s", err.msg);
    randomize(&m, seed);
    const size_t nimg = (size_t)B * c.image_size * c.image_size * 3;
    float *img = malloc(nimg * sizeof(float));
    int *labels = malloc(B * sizeof(int));
    rng_stream r = {9, 0};
    for (size_t i = 0; i < nimg; i++) img[i] = rng_next_uniform(&r);
    for (int b = 0; b < B; b++) labels[b] = (int)rng_next_below(&r, c.num_classes);
    model_dropout d = {training, 1234, 0};
    if (c.head_hidden > 0) {
        loss_at(&m, img, NULL, labels, B, &d);
        expect_clear_of_kink(&m, B, seed);
    }
    fd_result res = fd_check(&m, img, NULL, labels, B, &d, NULL);
    cr_expect_leq(res.worst, 1.0, "%s wiring: worst tensor %s (ratio %.2f)", wiring_name(c.wiring),
                  res.tensor, res.worst);
    free(img);
    free(labels);
    model_destroy(&m);
}

static void run_fd(tlb_model_config c, int B, int training) { run_fd_seeded(c, B, training, 42); }

Test(model_fd, keras_wiring) { run_fd(tiny(TLB_WIRING_KERAS, 0.0f), 3, 0); }
Test(model_fd, paper_wiring) { run_fd(tiny(TLB_WIRING_PAPER, 0.0f), 3, 0); }
Test(model_fd, keras_with_dropout) { run_fd(tiny(TLB_WIRING_KERAS, 0.3f), 3, 1); }
Test(model_fd, paper_r1_one_head)
{
    tlb_model_config c = tiny(TLB_WIRING_PAPER, 0.0f);
    c.r = 1;
    c.num_heads = 1;
    c.key_dim = 5;
    c.chunk_size = 4; /* one chunk: the head reads the first chunk's fast stream */
    run_fd(c, 2, 0);
}

/* The slow-state options, dropout on: a learned state (its gradient is the
 * batch sum), the sinusoid table, the state readout (the last chunk's
 * update then reaches the loss) and Ns != C in both directions. */
static tlb_model_config with_state(tlb_model_config c, int ns, tlb_state_init init, tlb_readout ro)
{
    c.num_state_tokens = ns;
    c.state_init = init;
    c.readout = ro;
    return c;
}

Test(model_fd, keras_learned_state_readout_dropout)
{
    run_fd(with_state(tiny(TLB_WIRING_KERAS, 0.3f), 3, STATE_INIT_LEARNED, READOUT_STATE), 3, 1);
}
Test(model_fd, paper_learned_one_state_token_dropout)
{
    run_fd(with_state(tiny(TLB_WIRING_PAPER, 0.3f), 1, STATE_INIT_LEARNED, READOUT_LAST_FAST), 3, 1);
}
Test(model_fd, keras_sinusoid_dropout)
{
    run_fd(with_state(tiny(TLB_WIRING_KERAS, 0.3f), 5, STATE_INIT_SINUSOID, READOUT_LAST_FAST), 3, 1);
}
Test(model_fd, paper_sinusoid_readout_dropout)
{
    run_fd(with_state(tiny(TLB_WIRING_PAPER, 0.3f), 3, STATE_INIT_SINUSOID, READOUT_STATE), 3, 1);
}
Test(model_fd, paper_zeros_readout_dropout)
{
    run_fd(with_state(tiny(TLB_WIRING_PAPER, 0.3f), 4, STATE_INIT_ZEROS, READOUT_STATE), 3, 1);
}

/* The sequence options (golden README, "Sequence options") on models no
 * golden file has: token inputs (the table's scatter-add), chunk positions,
 * the hidden ReLU head layer, dropout on the embedded tokens, and padded
 * sequences of different lengths in one batch (lengths: T, a partial last
 * chunk, fully padded chunks). */
static tlb_model_config tokens(tlb_model_config c, int T, int V)
{
    c.input = INPUT_TOKENS, c.seq_len = T, c.vocab_size = V, c.image_size = c.patch_size = 0;
    return c;
}

static void run_fd_tokens(tlb_model_config c, int B, int training, int padded, uint64_t seed)
{
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(model_plan(&m, B, &err), 0, "%s", err.msg);
    randomize(&m, seed);
    const int T = c.seq_len;
    int *ids = malloc((size_t)B * T * sizeof(int)), *labels = malloc(B * sizeof(int)), *lengths = NULL;
    rng_stream r = {9, 0};
    for (int i = 0; i < B * T; i++) ids[i] = (int)rng_next_below(&r, (uint32_t)c.vocab_size);
    for (int b = 0; b < B; b++) labels[b] = (int)rng_next_below(&r, c.num_classes);
    if (padded) {
        lengths = malloc(B * sizeof(int));
        for (int b = 0; b < B; b++) lengths[b] = b == 0 ? T : b == 1 ? T - c.chunk_size - 1 : 1;
        cr_assert_eq(model_check_lengths(&m, lengths, B, &err), 0, "%s", err.msg);
    }
    model_dropout d = {training, 1234, 0};
    loss_at(&m, ids, lengths, labels, B, &d);
    expect_clear_of_kink(&m, B, seed);
    fd_result res = fd_check(&m, ids, lengths, labels, B, &d, NULL);
    cr_expect_leq(res.worst, 1.0, "worst tensor %s (ratio %.2f)", res.tensor, res.worst);
    free(ids), free(labels), free(lengths);
    model_destroy(&m);
}

/* Seeds whose hidden units stay clear of ReLU's kink under the dropout
 * masks (expect_clear_of_kink; a new mask function may need new ones). */
#define SEED_TOKENS_HIDDEN 48
#define SEED_IMAGE_HIDDEN 44

Test(model_fd, tokens_keras_chunk_pos_hidden_head_dropout)
{
    tlb_model_config c = tokens(tiny(TLB_WIRING_KERAS, 0.3f), 8, 5);
    c.pos_emb = POS_EMB_CHUNK, c.head_hidden = 7, c.embed_drop = 0.3f;
    run_fd_tokens(c, 3, 1, 0, SEED_TOKENS_HIDDEN);
}
Test(model_fd, tokens_paper_sinusoid_readout_padded)
{
    tlb_model_config c = with_state(tokens(tiny(TLB_WIRING_PAPER, 0.0f), 10, 4), 3, STATE_INIT_SINUSOID, READOUT_STATE);
    c.head_hidden = 4;
    run_fd_tokens(c, 3, 0, 1, 42);
}
Test(model_fd, tokens_keras_last_fast_padded_dropout)
{
    tlb_model_config c = with_state(tokens(tiny(TLB_WIRING_KERAS, 0.3f), 8, 6), 0, STATE_INIT_LEARNED, READOUT_LAST_FAST);
    c.pos_emb = POS_EMB_CHUNK, c.embed_drop = 0.2f;
    run_fd_tokens(c, 3, 1, 1, 42);
}
Test(model_fd, image_chunk_pos_hidden_head_embed_dropout)
{
    tlb_model_config c = tiny(TLB_WIRING_PAPER, 0.3f);
    c.pos_emb = POS_EMB_CHUNK, c.head_hidden = 5, c.embed_drop = 0.3f;
    run_fd_seeded(c, 3, 1, SEED_IMAGE_HIDDEN);
}

/* The negative controls: a backward of 3 samples whose gradient of tensor
 * `name` is off by `scale` times itself (-1: missing, 0.05: 5% too large)
 * must fail the finite-difference check. */
static void expect_fd_catches(tlb_model_config c, const char *name, float scale, const char *what)
{
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(model_plan(&m, 3, &err), 0);
    randomize(&m, 42);
    float img[3 * 8 * 8 * 3];
    int labels[3] = {0, 3, 1};
    rng_stream r = {9, 0};
    for (size_t i = 0; i < sizeof img / sizeof img[0]; i++) img[i] = rng_next_uniform(&r);
    model_zero_grads(&m);
    loss_at(&m, img, NULL, labels, 3, NULL);
    model_backward(&m, img, labels, 3, 1.0f / 3, NULL);
    float *bias = calloc(m.layout.table.total, sizeof(float));
    const param_entry *e = param_table_find(&m.layout.table, name);
    cr_assert(e, "no tensor %s", name);
    for (size_t k = 0; k < e->numel; k++) bias[e->offset + k] = scale * m.grads[e->offset + k];
    fd_result res = fd_check(&m, img, NULL, labels, 3, NULL, bias);
    cr_expect_gt(res.worst, 1.0, "%s went unnoticed (worst ratio %.2f)", what, res.worst);
    free(bias);
    model_destroy(&m);
}

/* Negative control for the new path: dropping the learned state's gradient
 * (as a backward that forgot the batch sum would) is caught. */
Test(model_fd, detects_a_missing_state_gradient)
{
    expect_fd_catches(with_state(tiny(TLB_WIRING_KERAS, 0.0f), 3, STATE_INIT_LEARNED, READOUT_STATE), "state.init",
                      -1.0f, "a missing state.init gradient");
}

/* The checker must be able to fail: a 5% error in one gradient is caught. */
Test(model_fd, detects_a_wrong_gradient)
{
    expect_fd_catches(tiny(TLB_WIRING_KERAS, 0.0f), "pm.1.ffn.fc1.kernel", 0.05f, "a 5% gradient error");
}

/* Splitting a batch into micro-batches (with their global sample offsets)
 * gives the gradient of the whole batch, dropout included. */
Test(model_fd, micro_batches_sum_to_the_batch_gradient)
{
    tlb_model_config c = tiny(TLB_WIRING_KERAS, 0.2f);
    const int B = 4;
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0);
    cr_assert_eq(model_plan(&m, B, &err), 0);
    randomize(&m, 5);
    float img[4 * 8 * 8 * 3];
    int labels[4] = {0, 4, 2, 1};
    rng_stream r = {11, 0};
    for (size_t i = 0; i < sizeof img / sizeof img[0]; i++) img[i] = rng_next_uniform(&r);
    const size_t n = model_num_params(&m), per = 8 * 8 * 3;
    model_dropout whole = {1, 99, 0};
    model_zero_grads(&m);
    model_forward(&m, img, labels, B, &whole);
    model_backward(&m, img, labels, B, 1.0f / B, &whole);
    float *g_whole = malloc(n * sizeof(float));
    memcpy(g_whole, m.grads, n * sizeof(float));
    model_zero_grads(&m);
    for (int half = 0; half < 2; half++) {
        model_dropout d = {1, 99, half * 2};
        model_forward(&m, img + half * 2 * per, labels + half * 2, 2, &d);
        model_backward(&m, img + half * 2 * per, labels + half * 2, 2, 1.0f / B, &d);
    }
    double worst = 0, scale = 0;
    for (size_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs(g_whole[i] - m.grads[i]));
        scale = fmax(scale, fabs(g_whole[i]));
    }
    cr_expect_leq(worst, 1e-5 * scale, "micro-batch gradient differs by %.3e (scale %.3e)", worst, scale);
    free(g_whole);
    model_destroy(&m);
}
