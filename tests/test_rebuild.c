/* rebuild: a plan that drops the LayerNorm outputs and the attention's
 * output and rebuilds them for the backward (block.h, block_keeps_normalised,
 * block_keeps_att) gives the gradients of one that keeps them, bit for bit.
 * First the ops: every backend's LayerNorm apply (ops_layernorm_apply) and
 * attention mix (ops_attention_mix) write what its forward wrote, on odd
 * shapes, dropout on and off; none where that cannot be promised. Then whole
 * models, rebuilt vs kept, on every backend the CPU runs, fp32 and, where the
 * CPU has it, bf16 dense, with the attention's LayerNorms unfolded (the
 * fold's z is the same apply with gamma 1 and beta 0, always rebuilt). */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "model/model.h"
#include "ops/impls.h"
#include "ops/ops.h"
#include "test_helpers.h"
#include "util/rng.h"

static float *random_floats(size_t n, uint64_t seed, float scale, float offset)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    rng_stream r = {seed, 0};
    for (size_t i = 0; i < n; i++) p[i] = offset + scale * (rng_next_uniform(&r) - 0.5f);
    return p;
}

static size_t differing(const float *a, const float *b, size_t n)
{
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += memcmp(&a[i], &b[i], sizeof(float)) != 0;
    return bad;
}

static op_table table_on(tlb_backend b)
{
    op_table t;
    tlb_error err;
    cr_assert_eq(ops_table_select(&t, backend_name(b), &err), 0, "%s", err.msg);
    return t;
}

/* ---- the op -------------------------------------------------------------- */

static const int shapes[][2] = {{1, 1}, {3, 16}, {37, 67}, {300, 64}, {33, 256}, {5, 7}};

Test(rebuild, apply_writes_the_forwards_bits)
{
    int checked = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        const op_table t = table_on((tlb_backend)b);
        const layernorm_apply_fn apply = ops_layernorm_apply(&t, TLB_OP_layernorm);
        if (b == TLB_BACKEND_DNNL) {
            cr_expect_null(apply, "dnnl normalises its own way: no exact apply");
            continue;
        }
        cr_assert_not_null(apply, "%s: no apply", backend_name((tlb_backend)b));
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int M = shapes[s][0], D = shapes[s][1];
            const size_t n = (size_t)M * D;
            /* rows off zero mean with a spread of scales: rounding has room to differ */
            float *x = random_floats(n, 11 + s, 6.0f, 2.5f), *gamma = random_floats(D, 12, 2.0f, 1.0f);
            float *beta = random_floats(D, 13, 1.0f, 0.0f), *mean = malloc(M * sizeof(float));
            float *rstd = malloc(M * sizeof(float)), *out = malloc(n * sizeof(float)), *again = malloc(n * sizeof(float));
            t.layernorm.forward(out, mean, rstd, x, gamma, beta, M, D);
            apply(again, x, mean, rstd, gamma, beta, M, D);
            const size_t bad = differing(out, again, n);
            cr_expect_eq(bad, 0, "%s layernorm M%d D%d: %zu of %zu values differ", backend_name((tlb_backend)b), M,
                         D, bad, n);
            checked++;
            free(x), free(gamma), free(beta), free(mean), free(rstd), free(out), free(again);
        }
    }
    cr_expect_geq(checked, 2 * (int)(sizeof shapes / sizeof shapes[0]), "ref and at least one SIMD backend");
}

Test(rebuild, pair_outputs_are_applies_of_the_shared_statistics)
{
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b) || !ops_impl_layernorm_pair((tlb_backend)b)) continue;
        const op_table t = table_on((tlb_backend)b);
        const layernorm_apply_fn apply = ops_layernorm_apply(&t, TLB_OP_layernorm_pair);
        cr_assert_not_null(apply, "%s: no apply for the pair", backend_name((tlb_backend)b));
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            const int M = shapes[s][0], D = shapes[s][1];
            const size_t n = (size_t)M * D;
            float *x = random_floats(n, 21 + s, 6.0f, -1.5f), *g1 = random_floats(D, 22, 2.0f, 1.0f);
            float *b1 = random_floats(D, 23, 1.0f, 0.0f), *g2 = random_floats(D, 24, 2.0f, -1.0f);
            float *b2 = random_floats(D, 25, 1.0f, 0.5f), *mean = malloc(M * sizeof(float));
            float *rstd = malloc(M * sizeof(float)), *o1 = malloc(n * sizeof(float)), *o2 = malloc(n * sizeof(float));
            float *r1 = malloc(n * sizeof(float)), *r2 = malloc(n * sizeof(float));
            t.layernorm_pair.forward(o1, o2, mean, rstd, x, g1, b1, g2, b2, M, D);
            apply(r1, x, mean, rstd, g1, b1, M, D);
            apply(r2, x, mean, rstd, g2, b2, M, D);
            cr_expect_eq(differing(o1, r1, n) + differing(o2, r2, n), 0,
                         "%s layernorm_pair M%d D%d: outputs differ", backend_name((tlb_backend)b), M, D);
            free(x), free(g1), free(b1), free(g2), free(b2), free(mean), free(rstd), free(o1), free(o2), free(r1), free(r2);
        }
    }
}

/* B, Tq, Tk, H, K: the seed's, one query, more keys than a vector, odd everything, more
 * samples than keys (padded: some with none) */
static const int att_shapes[][5] = {{4, 8, 8, 1, 64}, {2, 1, 33, 3, 16}, {3, 5, 7, 2, 9}, {2, 16, 16, 2, 32},
                                    {5, 2, 3, 1, 16}};

/* One attention case: att_shapes[s], dropout (variant bit 0) and padded
 * keys (bit 1: sample b offers Tk - b keys, none when b >= Tk); q, k, v
 * random (seeds from `seed`), probs and out from the forward of table t. */
typedef struct {
    int B, Tq, Tk, H, K;
    size_t nq, nk, np;
    int kv_len[8];
    const int *kl;
    dropout_ctx drop;
    const dropout_ctx *dp;
    float *q, *k, *v, *probs, *out;
} att_case;

static void att_case_run(att_case *c, const op_table *t, size_t s, int variant, uint64_t seed)
{
    *c = (att_case){.B = att_shapes[s][0], .Tq = att_shapes[s][1], .Tk = att_shapes[s][2], .H = att_shapes[s][3],
                    .K = att_shapes[s][4]};
    c->nq = (size_t)c->B * c->Tq * c->H * c->K, c->nk = (size_t)c->B * c->Tk * c->H * c->K;
    c->np = (size_t)c->B * c->H * c->Tq * c->Tk;
    for (int i = 0; i < c->B; i++) c->kv_len[i] = c->Tk - i > 0 ? c->Tk - i : 0;
    c->kl = variant >> 1 ? c->kv_len : NULL; /* pointers into *c: the caller's case */
    c->drop = (dropout_ctx){0.3f, 0xa77e, 11};
    c->dp = variant & 1 ? &c->drop : NULL;
    c->q = random_floats(c->nq, seed + s, 2.0f, 0.0f), c->k = random_floats(c->nk, seed + 1, 2.0f, 0.0f);
    c->v = random_floats(c->nk, seed + 2, 2.0f, 0.3f);
    c->probs = malloc(c->np * sizeof(float)), c->out = malloc(c->nq * sizeof(float));
    t->attention.forward(c->out, c->probs, c->q, c->k, c->v, c->kl, c->B, c->Tq, c->Tk, c->H, c->K, c->dp);
}

static void att_case_free(att_case *c) { free(c->q), free(c->k), free(c->v), free(c->probs), free(c->out); }

#define ATT_CASE_FMT "%s attention B%d Tq%d Tk%d H%d K%d%s%s"
#define ATT_CASE_ARGS(b, c) backend_name((tlb_backend)(b)), (c).B, (c).Tq, (c).Tk, (c).H, (c).K, \
                            (c).dp ? " dropout" : "", (c).kl ? " padded" : ""

Test(rebuild, attention_mix_writes_the_forwards_bits)
{
    int checked = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b) || !ops_impl_attention((tlb_backend)b)) continue;
        const op_table t = table_on((tlb_backend)b);
        const attention_mix_fn mix = ops_attention_mix(&t);
        cr_assert_not_null(mix, "%s: no mix", backend_name((tlb_backend)b));
        for (size_t s = 0; s < sizeof att_shapes / sizeof att_shapes[0]; s++)
            for (int variant = 0; variant < 4; variant++) {
                att_case c;
                att_case_run(&c, &t, s, variant, 41);
                float *again = malloc(c.nq * sizeof(float));
                mix(again, c.probs, c.v, c.kl, c.B, c.Tq, c.Tk, c.H, c.K, c.dp);
                const size_t bad = differing(c.out, again, c.nq);
                cr_expect_eq(bad, 0, ATT_CASE_FMT ": %zu of %zu values differ", ATT_CASE_ARGS(b, c), bad, c.nq);
                checked++;
                free(again);
                att_case_free(&c);
            }
    }
    cr_expect_geq(checked, 32, "ref and at least one SIMD backend");
}

/* The attention's backward with att rebuilt inside it (ops_attention_backward_mix):
 * att is the mix's, dq, dk, dv backward_first's, bit for bit, on the shapes
 * above, dropout on and off, padded keys, 1 and 3 threads; ref has none. */
Test(rebuild, attention_backward_mix_is_mix_then_backward_first)
{
    int checked = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b) || !ops_impl_attention((tlb_backend)b)) continue;
        const op_table t = table_on((tlb_backend)b);
        const attention_backward_mix_fn both = ops_attention_backward_mix(&t);
        if (b == TLB_BACKEND_REF) {
            cr_expect_null(both, "ref: none");
            continue;
        }
        cr_assert_not_null(both, "%s: none", backend_name((tlb_backend)b));
        const attention_mix_fn mix = ops_attention_mix(&t);
        for (int threads = 1; threads <= 3; threads += 2)
            for (size_t s = 0; s < sizeof att_shapes / sizeof att_shapes[0]; s++)
                for (int variant = 0; variant < 4; variant++) {
                    omp_set_num_threads(threads);
                    att_case c;
                    att_case_run(&c, &t, s, variant, 51);
                    float *dout = random_floats(c.nq, 54, 1.0f, 0.0f);
                    float *att[2], *dq[2], *dk[2], *dv[2];
                    for (int i = 0; i < 2; i++) { /* poisoned: every value must be written */
                        att[i] = random_floats(c.nq, 60 + i, 1e30f, 0.0f);
                        dq[i] = random_floats(c.nq, 62 + i, 1e30f, 0.0f);
                        dk[i] = random_floats(c.nk, 64 + i, 1e30f, 0.0f);
                        dv[i] = random_floats(c.nk, 66 + i, 1e30f, 0.0f);
                    }
                    mix(att[0], c.probs, c.v, c.kl, c.B, c.Tq, c.Tk, c.H, c.K, c.dp);
                    t.attention.backward_first(dq[0], dk[0], dv[0], dout, c.q, c.k, c.v, c.probs, c.B, c.Tq, c.Tk,
                                               c.H, c.K, c.dp);
                    both(att[1], dq[1], dk[1], dv[1], dout, c.q, c.k, c.v, c.probs, c.kl, c.B, c.Tq, c.Tk, c.H,
                         c.K, c.dp);
                    const size_t bad = differing(att[0], att[1], c.nq) + differing(dq[0], dq[1], c.nq) +
                                       differing(dk[0], dk[1], c.nk) + differing(dv[0], dv[1], c.nk);
                    cr_expect_eq(bad, 0, ATT_CASE_FMT ", %d threads: %zu values differ", ATT_CASE_ARGS(b, c),
                                 threads, bad);
                    checked++;
                    free(dout);
                    for (int i = 0; i < 2; i++) free(att[i]), free(dq[i]), free(dk[i]), free(dv[i]);
                    att_case_free(&c);
                }
    }
    cr_expect_geq(checked, 40, "at least one SIMD backend");
}

/* A LayerNorm put in the table by hand: the registry cannot vouch for its
 * outputs, so nothing is rebuilt. Here it is a registry kernel in disguise
 * (`disguised`), which the model tests below use to plan a model that keeps
 * the outputs while computing exactly what the rebuilding one does. */
static layernorm_forward_fn disguised;
static attention_forward_fn disguised_attention;

static void ln_forward_by_hand(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                               const float *beta, int M, int D)
{
    disguised(out, mean, rstd, inp, gamma, beta, M, D);
}

static void attention_forward_by_hand(float *out, float *probs, const float *q, const float *k, const float *v,
                                      const int *kv_len, int B, int Tq, int Tk, int H, int K,
                                      const dropout_ctx *drop)
{
    disguised_attention(out, probs, q, k, v, kv_len, B, Tq, Tk, H, K, drop);
}

Test(rebuild, nothing_rebuilt_for_a_hand_made_layernorm)
{
    op_table t = table_on(TLB_BACKEND_REF);
    cr_expect_eq(block_keeps_normalised(&t), 0, "ref: rebuilt");
    disguised = t.layernorm.forward;
    t.layernorm.forward = ln_forward_by_hand;
    cr_expect_null(ops_layernorm_apply(&t, TLB_OP_layernorm));
    cr_expect_eq(block_keeps_normalised(&t), 1);
    cr_expect_null(ops_layernorm_apply(&t, TLB_OP_ffn), "not a LayerNorm");
    if (backend_supported(TLB_BACKEND_DNNL)) {
        const op_table d = table_on(TLB_BACKEND_DNNL);
        cr_expect_eq(block_keeps_normalised(&d), 1, "dnnl: kept");
    }
    /* att: rebuilt, but for by-hand slots */
    op_table a = table_on(TLB_BACKEND_REF);
    cr_expect_eq(block_keeps_att(&a), 0);
    disguised_attention = a.attention.forward;
    a.attention.forward = attention_forward_by_hand;
    cr_expect_null(ops_attention_mix(&a));
    cr_expect_null(ops_attention_backward_mix(&a));
    cr_expect_eq(block_keeps_att(&a), 1);
}

/* ---- whole models ---------------------------------------------------------- */

#define MB 3

/* Logits and every gradient of one forward + backward with dropout on,
 * and the plan's bytes. */
static size_t model_run(const op_table *ops, tlb_wiring wiring, float *logits, float **grads, size_t *n)
{
    test_step s = test_small_step(ops, wiring, MB, 31, 0.6f, 5, (model_dropout){1, 0xb10c, 3});
    memcpy(logits, s.logits, sizeof(float) * MB * 5);
    *n = s.n;
    *grads = s.grads; /* the caller frees it */
    free(s.logits);
    return s.plan_bytes;
}

static void rebuilt_vs_kept(tlb_backend b, int bf16, tlb_wiring wiring)
{
    /* without the LayerNorm fold (ops_table_folds_norms), which a
     * disguised LayerNorm turns off: the kv norms unfused on both sides */
    op_table rebuilt;
    char spec[64];
    tlb_error err;
    snprintf(spec, sizeof spec, "%s,layernorm_pair:off", backend_name(b));
    cr_assert_eq(ops_table_select(&rebuilt, spec, &err), 0, "%s", err.msg);
    if (bf16) cr_assert_eq(ops_table_set_bf16(&rebuilt, 1), 0);
    /* the same kernels, LayerNorm and attention in disguise: everything kept */
    op_table kept = rebuilt;
    disguised = rebuilt.layernorm.forward;
    kept.layernorm.forward = ln_forward_by_hand;
    disguised_attention = rebuilt.attention.forward;
    kept.attention.forward = attention_forward_by_hand;
    cr_assert_eq(block_keeps_normalised(&rebuilt) + block_keeps_att(&rebuilt), 0);
    cr_assert_eq(block_keeps_normalised(&kept) + block_keeps_att(&kept), 2);
    float la[MB * 5], lb[MB * 5], *ga, *gb;
    size_t n;
    const size_t bytes_rebuilt = model_run(&rebuilt, wiring, la, &ga, &n);
    const size_t bytes_kept = model_run(&kept, wiring, lb, &gb, &n);
    const char *what = backend_name(b);
    cr_expect_lt(bytes_rebuilt, bytes_kept, "%s: the plan that rebuilds should be smaller", what);
    cr_expect_eq(differing(la, lb, MB * 5), 0, "%s%s: logits differ", what, bf16 ? " bf16" : "");
    cr_expect_eq(differing(ga, gb, n), 0, "%s%s wiring %d: %zu of %zu gradients differ", what, bf16 ? " bf16" : "",
                 (int)wiring, differing(ga, gb, n), n);
    free(ga), free(gb);
}

Test(rebuild, model_gradients_equal_the_kept_plans)
{
    int runs = 0;
    for (int b = TLB_BACKEND_REF; b <= TLB_BACKEND_AVX512; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        rebuilt_vs_kept((tlb_backend)b, 0, TLB_WIRING_KERAS);
        rebuilt_vs_kept((tlb_backend)b, 0, TLB_WIRING_PAPER);
        runs++;
    }
    cr_expect_geq(runs, 2, "ref and at least AVX2");
}

/* CPU-dependent: mixed precision only where the CPU has AVX512_BF16. */
Test(rebuild, bf16_dense_gradients_equal_the_kept_plans)
{
    if (!ops_mixed_precision_supported()) {
        op_table t = table_on(TLB_BACKEND_REF);
        cr_expect_neq(ops_table_set_bf16(&t, 1), 0, "no AVX512_BF16 here: bf16 dense must be refused");
        return;
    }
    rebuilt_vs_kept(TLB_BACKEND_AVX512, 1, TLB_WIRING_KERAS);
}
