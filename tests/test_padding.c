/* padding: sequences of different lengths share a batch, padded to whole
 * chunks (model_forward_padded). A padded sequence must give the logits,
 * loss and gradients of the same sequence in a model whose seq_len is its own
 * (rounded up to a chunk): padded keys masked, fully padded chunks leaving
 * the state alone, the readout on its own last chunk; whatever ids the
 * padding holds. And the negative control: without the lengths the padding
 * does change the result. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/infer.h"
#include "model/model.h"
#include "util/rng.h"

#define V 7
#define LONG_T 24  /* 6 chunks of 4 */
#define SHORT_T 12 /* 3 chunks */
#define LEN 10     /* the short sequence: chunks of 4, 4, 2 valid tokens */

static tlb_model_config base_config(int variant)
{
    tlb_model_config c = model_config_seed();
    c.input = INPUT_TOKENS, c.vocab_size = V, c.image_size = 0, c.patch_size = 0;
    c.embed_dim = 16, c.chunk_size = 4, c.num_heads = 2, c.key_dim = 8, c.num_layers = 2;
    c.pos_emb = POS_EMB_CHUNK; /* the same parameters for both lengths */
    c.ffn_drop = c.attn_drop = 0.0f;
    if (variant == 1) { /* the authors' LRA shape */
        c.wiring = TLB_WIRING_PAPER, c.r = 1, c.num_layers = 1, c.num_state_tokens = 3;
        c.state_init = STATE_INIT_SINUSOID, c.readout = READOUT_STATE, c.head_hidden = 12;
    } else if (variant == 2) {
        c.state_init = STATE_INIT_LEARNED, c.head_hidden = 5;
    }
    return c;
}

static void make_model(tlb_model *m, int variant, int T, int B)
{
    tlb_model_config c = base_config(variant);
    c.seq_len = T;
    tlb_error err;
    cr_assert_eq(model_create(m, &c, &err), 0, "%s", err.msg);
    op_table ops;
    cr_assert_eq(ops_table_select(&ops, NULL, &err), 0, "%s", err.msg);
    model_use_ops(m, &ops);
    rng_stream r = {99, 0};
    const param_table *t = &m->layout.table;
    for (int i = 0; i < t->count; i++) {
        const param_entry *e = &t->entries[i];
        const int gamma = strstr(e->name, "gamma") != NULL;
        for (size_t k = 0; k < e->numel; k++) {
            const float u = rng_next_uniform(&r) * 2.0f - 1.0f;
            m->params[e->offset + k] = gamma ? 1.0f + 0.3f * u : 0.5f * u;
        }
    }
    cr_assert_eq(model_plan(m, B, &err), 0, "%s", err.msg);
}

/* Valid tokens use ids 0..4; padding ids 5 and 6 (never valid), drawn from `pad_seed`. */
static void fill_sequence(int *row, int T, int len, uint64_t seed, uint64_t pad_seed)
{
    rng_stream r = {seed, 0}, p = {pad_seed, 0};
    for (int t = 0; t < T; t++) row[t] = t < len ? (int)rng_next_below(&r, 5) : 5 + (int)rng_next_below(&p, 2);
}

static double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(x[i]));
    return m;
}

static void expect_close(const char *what, const float *ref, const float *got, size_t n, int variant)
{
    const double tol = 1e-5 * max_abs(ref, n) + 1e-7;
    for (size_t i = 0; i < n; i++)
        cr_expect(fabs((double)ref[i] - got[i]) <= tol, "variant %d: %s[%zu]: %.9g vs %.9g", variant, what, i,
                  ref[i], got[i]);
}

static void padding_invariance(int variant)
{
    tlb_model S, L;
    make_model(&S, variant, SHORT_T, 1);
    make_model(&L, variant, LONG_T, 3);
    cr_assert_eq(model_num_params(&S), model_num_params(&L));
    const int labels[3] = {3, 7, 1};

    /* The short sequence alone, padded to its own whole chunks. */
    int xs[SHORT_T];
    fill_sequence(xs, SHORT_T, LEN, 1, 50);
    const int len_s[1] = {LEN};
    model_zero_grads(&S);
    const double loss_s = model_forward_padded(&S, xs, len_s, labels, NULL, 1, NULL);
    model_backward_padded(&S, xs, len_s, labels, NULL, 1, 1.0f, NULL);

    /* The same sequence in a batch with a whole one and another padded one,
     * its padding (other ids) running over three more chunks. */
    int xl[3 * LONG_T];
    fill_sequence(xl, LONG_T, LEN, 1, 51);
    fill_sequence(xl + LONG_T, LONG_T, LONG_T, 2, 52);
    fill_sequence(xl + 2 * LONG_T, LONG_T, 17, 3, 53);
    const int len_l[3] = {LEN, LONG_T, 17};
    tlb_error err;
    cr_assert_eq(model_check_lengths(&L, len_l, 3, &err), 0, "%s", err.msg);
    model_forward_padded(&L, xl, len_l, labels, NULL, 3, NULL);
    expect_close("batched logits", S.logits, L.logits, 10, variant);
    cr_expect(fabs(L.losses[0] - loss_s) <= 1e-5 * fabs(loss_s), "variant %d: loss %.9g vs %.9g", variant,
              L.losses[0], loss_s);

    /* Inference plans, in tiles of one and of two samples. */
    for (int tile = 1; tile <= 2; tile++) {
        model_inference inf;
        cr_assert_eq(model_inference_plan(&inf, &L, 3, tile, INFER_STATE, &err), 0, "%s", err.msg);
        cr_assert_eq(model_inference_run_padded(&inf, xl, len_l, labels, 3, &err), 0, "%s", err.msg);
        expect_close("inference logits", L.logits, inf.logits, 30, variant);
        model_inference_free(&inf);
    }

    /* Gradients: the padded sequence alone in the long model. */
    model_zero_grads(&L);
    model_forward_padded(&L, xl, len_l, labels, NULL, 1, NULL);
    model_backward_padded(&L, xl, len_l, labels, NULL, 1, 1.0f, NULL);
    const param_table *t = &S.layout.table;
    for (int i = 0; i < t->count; i++) {
        const param_entry *e = &t->entries[i];
        expect_close(e->name, S.grads + e->offset, L.grads + e->offset, e->numel, variant);
    }
    /* The padding ids (5, 6) never occur in the sequence: their rows get nothing. */
    const float *dtab = L.grads + L.layout.token_table;
    for (int k = 5 * 16; k < 7 * 16; k++) cr_expect_eq(dtab[k], 0.0f, "variant %d: a padding id's row", variant);

    /* Negative control: the same batch without lengths reads the padding. */
    model_forward(&L, xl, labels, 1, NULL);
    double diff = 0.0;
    for (int k = 0; k < 10; k++) diff = fmax(diff, fabs(L.logits[k] - S.logits[k]));
    cr_expect(diff > 1e-3, "variant %d: unmasked padding changed the logits by only %g", variant, diff);

    model_destroy(&S);
    model_destroy(&L);
}

Test(padding, keras_zeros_last_fast) { padding_invariance(0); }
Test(padding, paper_sinusoid_state_readout_hidden_head) { padding_invariance(1); }
Test(padding, keras_learned_state_hidden_head) { padding_invariance(2); }

Test(padding, lengths_are_checked)
{
    tlb_model L;
    make_model(&L, 0, LONG_T, 3);
    tlb_error err;
    const int bad[3] = {3, 0, 5}, long_one[3] = {3, 25, 5};
    cr_expect_neq(model_check_lengths(&L, bad, 3, &err), 0);
    cr_expect(strstr(err.msg, "sample 1: length 0") != NULL, "%s", err.msg);
    cr_expect_neq(model_check_lengths(&L, long_one, 3, &err), 0);
    cr_expect_eq(model_check_lengths(&L, NULL, 3, &err), 0);
    int ids[3 * LONG_T] = {0};
    ids[LONG_T + 4] = V;
    cr_expect_neq(model_check_tokens(&L, ids, 3, &err), 0);
    cr_expect(strstr(err.msg, "sample 1, token 4: id 7") != NULL, "%s", err.msg);
    model_destroy(&L);
}
