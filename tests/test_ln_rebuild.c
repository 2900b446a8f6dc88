/* ln_rebuild: a plan that drops the LayerNorm outputs and rebuilds them for
 * the backward (block.h, block_keeps_normalised) gives the gradients of one
 * that keeps them, bit for bit. First the op: every backend's apply
 * (ops_layernorm_apply) writes what its forward wrote, layernorm and
 * layernorm_pair, on odd shapes; none where it cannot promise that. Then
 * whole models, rebuilt vs kept, on every backend the CPU runs, fp32 and,
 * where the CPU has it, bf16 dense. */
#include <criterion/criterion.h>

#include <math.h>
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

Test(ln_rebuild, apply_writes_the_forwards_bits)
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
            cr_expect_eq(differing(out, again, n), 0, "%s layernorm M%d D%d: %zu of %zu values differ",
                         backend_name((tlb_backend)b), M, D, differing(out, again, n), n);
            checked++;
            free(x), free(gamma), free(beta), free(mean), free(rstd), free(out), free(again);
        }
    }
    cr_expect_geq(checked, 2 * (int)(sizeof shapes / sizeof shapes[0]), "ref and at least one SIMD backend");
}

Test(ln_rebuild, pair_outputs_are_applies_of_the_shared_statistics)
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
            cr_expect_eq(differing(o1, r1, n) + differing(o2, r2, n), 0, "%s layernorm_pair M%d D%d: outputs differ",
                         backend_name((tlb_backend)b), M, D);
            free(x), free(g1), free(b1), free(g2), free(b2), free(mean), free(rstd), free(o1), free(o2), free(r1), free(r2);
        }
    }
}

/* A LayerNorm put in the table by hand: the registry cannot vouch for its
 * outputs, so nothing is rebuilt. Here it is a registry kernel in disguise
 * (`disguised`), which the model tests below use to plan a model that keeps
 * the outputs while computing exactly what the rebuilding one does. */
static layernorm_forward_fn disguised;

static void ln_forward_by_hand(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                               const float *beta, int M, int D)
{
    disguised(out, mean, rstd, inp, gamma, beta, M, D);
}

Test(ln_rebuild, nothing_rebuilt_for_a_hand_made_layernorm)
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
}

/* ---- whole models ---------------------------------------------------------- */

#define MB 3

/* Logits and every gradient of one forward + backward with dropout on,
 * and the plan's bytes. */
static size_t model_run(const op_table *ops, tlb_wiring wiring, float *logits, float **grads, size_t *n)
{
    tlb_model_config c = test_small_config(wiring);
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    model_use_ops(&m, ops);
    cr_assert_eq(model_plan(&m, MB, &err), 0, "%s", err.msg);
    rng_stream r = {31, 0};
    for (size_t i = 0; i < model_num_params(&m); i++) m.params[i] = 0.6f * (rng_next_uniform(&r) - 0.5f);
    float x[MB * 8 * 8 * 3];
    int labels[MB];
    rng_stream ri = {5, 0};
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++) x[i] = rng_next_uniform(&ri);
    for (int b = 0; b < MB; b++) labels[b] = b % 5;
    const model_dropout drop = {1, 0xb10c, 3};
    model_zero_grads(&m);
    model_forward(&m, x, labels, MB, &drop);
    model_backward(&m, x, labels, MB, 1.0f / MB, &drop);
    memcpy(logits, m.logits, sizeof(float) * MB * 5);
    *n = model_num_params(&m);
    *grads = malloc(*n * sizeof(float));
    memcpy(*grads, m.grads, *n * sizeof(float));
    const size_t bytes = model_plan_bytes(&m, MB);
    model_destroy(&m);
    return bytes;
}

static void rebuilt_vs_kept(tlb_backend b, int bf16, tlb_wiring wiring)
{
    op_table rebuilt = table_on(b);
    if (bf16) cr_assert_eq(ops_table_set_bf16(&rebuilt, 1), 0);
    op_table kept = rebuilt; /* the same kernels, the LayerNorm in disguise: kept (and the kv
                              * norms unfused, which layernorm_pair equals bit for bit: ops_fused) */
    disguised = rebuilt.layernorm.forward;
    kept.layernorm.forward = ln_forward_by_hand;
    cr_assert_eq(block_keeps_normalised(&rebuilt), 0);
    cr_assert_eq(block_keeps_normalised(&kept), 1);
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

Test(ln_rebuild, model_gradients_equal_the_kept_plans)
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
Test(ln_rebuild, bf16_dense_gradients_equal_the_kept_plans)
{
    if (!ops_mixed_precision_supported()) {
        op_table t = table_on(TLB_BACKEND_REF);
        cr_expect_neq(ops_table_set_bf16(&t, 1), 0, "no AVX512_BF16 here: bf16 dense must be refused");
        return;
    }
    rebuilt_vs_kept(TLB_BACKEND_AVX512, 1, TLB_WIRING_KERAS);
}
