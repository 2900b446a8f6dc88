/* ops_fused: the fused stages (layernorm_pair, ffn; ops.h) against the
 * unfused ops they stand in for, composed on the same backend as the block
 * calls them: bit for bit (the same kernels in the same summation order), on
 * odd shapes and the model's, for 1 and 3 threads; finite differences of
 * every backend's backward; when the op table runs them; and a whole model
 * fused vs unfused (the ffn bit for bit; the LayerNorms folded into the
 * q, k, v products within the fp32 level). (ops_backend and ops_fd hold them to ref, to the +=
 * and NULL contracts and to finite differences like every op.) */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "op_testing.h"
#include "ops/ops.h"
#include "test_helpers.h"
#include "util/rng.h"

static float *copy_of(const float *x, size_t n)
{
    float *p = malloc(n * sizeof(float));
    memcpy(p, x, n * sizeof(float));
    return p;
}

static void expect_same_bits(const char *what, const char *label, const float *want, const float *got,
                             size_t n)
{
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (want[i] != got[i] && !(isnan(want[i]) && isnan(got[i])) && bad++ == 0) first = i;
    cr_expect(bad == 0, "%s: %s: %zu of %zu differ from the unfused ops, first [%zu] %.9g vs %.9g", label,
              what, bad, n, first, bad ? want[first] : 0.0, bad ? got[first] : 0.0);
}

/* ---- layernorm_pair = layernorm twice ------------------------------------- */

static void pair_vs_layernorms(tlb_backend b, int M, int D, uint64_t seed)
{
    const layernorm_pair_op *pair = ops_impl_layernorm_pair(b);
    const layernorm_op *ln = ops_impl_layernorm(b);
    const int dims[6] = {M, D};
    op_case *c = opt_case("layernorm_pair", pair, backend_name(b), dims, 0, seed);
    opt_fill_grads(c, 4); /* accumulate onto something */
    const size_t n = (size_t)M * D;
    float *x = c->in[0].x;
    float *out = malloc(2 * n * sizeof(float)), *mean = malloc(M * sizeof(float)), *rstd = malloc(M * sizeof(float));
    float *dx = copy_of(c->in[0].g, n), *dp[4];
    for (int i = 0; i < 4; i++) dp[i] = copy_of(c->in[1 + i].g, D);
    ln->forward(out, mean, rstd, x, c->in[1].x, c->in[2].x, M, D);
    ln->forward(out + n, mean, rstd, x, c->in[3].x, c->in[4].x, M, D);
    ln->backward(dx, dp[0], dp[1], c->cot, x, c->in[1].x, mean, rstd, M, D);
    ln->backward(dx, dp[2], dp[3], c->cot + n, x, c->in[3].x, mean, rstd, M, D);

    c->forward(c);
    c->backward(c, OPT_ALL_GRADS);
    expect_same_bits("out1, out2", c->label, out, c->out[0].x, 2 * n);
    expect_same_bits("mean", c->label, mean, c->out[1].x, (size_t)M);
    expect_same_bits("rstd", c->label, rstd, c->out[2].x, (size_t)M);
    expect_same_bits("dinp", c->label, dx, c->in[0].g, n);
    for (int i = 0; i < 4; i++) expect_same_bits(c->in[1 + i].name, c->label, dp[i], c->in[1 + i].g, D);
    free(out), free(mean), free(rstd), free(dx);
    for (int i = 0; i < 4; i++) free(dp[i]);
    opt_case_free(c);
}

/* Odd widths, the threaded row-blocked backward (D below and above the
 * in-register 64), above the blocked limit (256), and the model's shape. */
static const int pair_shapes[][2] = {{1, 1}, {1, 5}, {3, 17}, {37, 64}, {301, 67}, {400, 50},
                                     {7, 300}, {2344, 64}};

Test(ops_fused, layernorm_pair_is_two_layernorms_bit_for_bit)
{
    int cases = 0;
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t == 0 ? 1 : 3);
        for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
            if (!ops_impl_layernorm_pair((tlb_backend)b) || !backend_supported((tlb_backend)b)) continue;
            for (size_t s = 0; s < sizeof pair_shapes / sizeof pair_shapes[0]; s++, cases++)
                pair_vs_layernorms((tlb_backend)b, pair_shapes[s][0], pair_shapes[s][1], 40 + s);
        }
    }
    cr_expect_geq(cases, 2 * (int)(sizeof pair_shapes / sizeof pair_shapes[0]));
}

/* ---- ffn = dense, gelu, dense, dropout, residual -------------------------- */

/* The unfused FFN exactly as block.c runs it (forward, then the backward
 * from zeroed intermediates), onto the case's own buffers' starting values. */
static void ffn_vs_ops(tlb_backend be, const int dims[6], float rate, uint64_t seed)
{
    const dense_op *dense = ops_impl_dense(be);
    const gelu_op *gelu = ops_impl_gelu(be);
    const dropout_op *dropout = ops_impl_dropout(be);
    const residual_op *residual = ops_impl_residual(be);
    op_case *c = opt_case("ffn", ops_impl_ffn(be), backend_name(be), dims, rate, seed);
    opt_fill_grads(c, 4);
    const int B = dims[0], T = dims[1], D = dims[2], F = dims[3], M = B * T;
    /* A cotangent of full 24-bit mantissas: the dyadic test values (k/4096)
     * make every plain sum exact, so a bias gradient summed in another
     * order would still match. */
    rng_stream cr = {seed, 1};
    for (size_t i = 0; i < (size_t)M * D; i++) c->cot[i] = rng_next_uniform(&cr) - 0.5f;
    const size_t md = (size_t)M * D, mf = (size_t)M * F;
    const float *inp = c->in[0].x, *w1 = c->in[1].x, *b1 = c->in[2].x, *w2 = c->in[3].x,
                *b2 = c->in[4].x, *res = c->in[5].x;
    float *g[6];
    for (int i = 0; i < 6; i++) g[i] = copy_of(c->in[i].g, c->in[i].n);
    float *out = malloc(md * sizeof(float)), *h = malloc(mf * sizeof(float));
    float *act = malloc(mf * sizeof(float)), *dy = calloc(md, sizeof(float));
    float *dg = calloc(mf, sizeof(float)), *dh = calloc(mf, sizeof(float));

    dense->forward(h, inp, w1, b1, M, D, F);
    gelu->forward(act, h, mf);
    dense->forward(out, act, w2, b2, M, F, D);
    if (c->dropp && c->dropp->rate > 0.0f) dropout->forward(out, out, B, (size_t)T * D, c->dropp);
    residual->forward(out, out, res, md);

    residual->backward(g[5], NULL, c->cot, md);
    dropout->backward(dy, c->cot, B, (size_t)T * D, c->dropp);
    gelu->forward(act, h, mf);
    dense->backward(dg, g[3], g[4], dy, act, w2, M, F, D);
    gelu->backward(dh, dg, h, mf);
    dense->backward(g[0], g[1], g[2], dh, inp, w1, M, D, F);

    c->forward(c);
    c->backward(c, OPT_ALL_GRADS);
    expect_same_bits("out", c->label, out, c->out[0].x, md);
    expect_same_bits("h", c->label, h, c->out[1].x, mf);
    for (int i = 0; i < 6; i++) {
        char what[32];
        snprintf(what, sizeof what, "d%s", c->in[i].name);
        expect_same_bits(what, c->label, g[i], c->in[i].g, c->in[i].n);
    }
    for (int i = 0; i < 6; i++) free(g[i]);
    free(out), free(h), free(act), free(dy), free(dg), free(dh);
    opt_case_free(c);
}

/* B T D F sample0, rate (< 0: NULL ctx): one value, odd sizes, the model's
 * shape (micro-batch 37, T 8, D 64, F 256), T*D not a vector multiple
 * (the mask's element index runs across rows), and rows enough for the
 * backward's blocks (M > 256: ffn_backward_blocks) with a last block of
 * odd height, D and F not tile multiples, D over one column tile. */
static const struct {
    int dims[6];
    float rate;
} ffn_shapes[] = {
    {{1, 1, 1, 1, 0}, -1},     {{2, 3, 5, 17, 1}, 0.3f}, {{3, 1, 17, 5, 0}, 0.0f},
    {{3, 7, 33, 65, 2}, 0.5f}, {{37, 8, 64, 256, 5}, 0.2f}, {{37, 8, 64, 256, 0}, -1},
    {{4, 5, 20, 40, 1}, 0.2f},    {{41, 7, 19, 37, 3}, 0.3f}, {{45, 6, 70, 130, 4}, 0.1f},
};

Test(ops_fused, ffn_is_the_unfused_ops_bit_for_bit)
{
    int cases = 0;
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t == 0 ? 1 : 3);
        for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
            if (!ops_impl_ffn((tlb_backend)b) || !backend_supported((tlb_backend)b)) continue;
            for (size_t s = 0; s < sizeof ffn_shapes / sizeof ffn_shapes[0]; s++, cases++)
                ffn_vs_ops((tlb_backend)b, ffn_shapes[s].dims, ffn_shapes[s].rate, 70 + s);
        }
    }
    cr_expect_geq(cases, 2 * (int)(sizeof ffn_shapes / sizeof ffn_shapes[0]));
}

/* h NULL (a forward-only plan, block_keep.h_none): the same out, every
 * backend, odd shapes and the model's, dropout on. */
Test(ops_fused, ffn_forward_without_h_is_the_same)
{
    int cases = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const ffn_op *ffn = ops_impl_ffn((tlb_backend)b);
        if (!ffn || !backend_supported((tlb_backend)b)) continue;
        for (size_t s = 0; s < sizeof ffn_shapes / sizeof ffn_shapes[0]; s++, cases++) {
            const int *dm = ffn_shapes[s].dims, B = dm[0], T = dm[1], D = dm[2], F = dm[3];
            op_case *c = opt_case("ffn", ffn, backend_name((tlb_backend)b), dm, ffn_shapes[s].rate, 170 + s);
            const size_t md = (size_t)B * T * D;
            float *with = malloc(md * sizeof(float)), *without = malloc(md * sizeof(float));
            float *h = malloc((size_t)B * T * F * sizeof(float));
            const float *in[6];
            for (int i = 0; i < 6; i++) in[i] = c->in[i].x;
            ffn->forward(with, h, in[0], in[1], in[2], in[3], in[4], in[5], B, T, D, F, c->dropp);
            ffn->forward(without, NULL, in[0], in[1], in[2], in[3], in[4], in[5], B, T, D, F, c->dropp);
            expect_same_bits("out with h NULL", c->label, with, without, md);
            free(with), free(without), free(h);
            opt_case_free(c);
        }
    }
    cr_expect_geq(cases, (int)(sizeof ffn_shapes / sizeof ffn_shapes[0]));
}

/* ---- finite differences on every backend ---------------------------------- */

Test(ops_fused, finite_differences_every_backend)
{
    omp_set_num_threads(1);
    static const struct {
        const char *op;
        int dims[6];
        float rate;
    } shapes[] = {
        {"layernorm_pair", {3, 13}, 0}, {"layernorm_pair", {2, 17}, 0},
        {"ffn", {2, 3, 5, 7, 0}, 0.3f}, {"ffn", {1, 2, 9, 17, 1}, -1}, {"ffn", {2, 1, 17, 3, 0}, 0.5f},
    };
    int cases = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
            const void *impl = ops_impl(ops_find(shapes[s].op), (tlb_backend)b);
            if (!impl || !backend_supported((tlb_backend)b)) continue;
            op_case *c = opt_case(shapes[s].op, impl, backend_name((tlb_backend)b), shapes[s].dims,
                                  shapes[s].rate, 900 + s);
            fd_report r;
            fd_check(c, &fd_default_opts, &r);
            cr_expect(r.checked > 0, "%s: nothing checked", c->label);
            cr_expect(r.failures == 0, "%d of %d FD checks failed; first: %s", r.failures, r.checked, r.first);
            cr_log_info("%s: %d checks, worst error %.3f of tolerance", c->label, r.checked, r.worst);
            opt_case_free(c);
            cases++;
        }
    cr_expect_geq(cases, 5);
}

/* ---- when the table runs them --------------------------------------------- */

static op_table table(const char *spec)
{
    op_table t;
    tlb_error err;
    unsetenv("TLB_BACKEND");
    cr_assert_eq(ops_table_select(&t, spec, &err), 0, "%s: %s", spec ? spec : "automatic", err.msg);
    return t;
}

Test(ops_fused, table_runs_them_where_their_backend_is_the_ops)
{
    const int simd = backend_supported(TLB_BACKEND_AVX512) || backend_supported(TLB_BACKEND_AVX2);
    op_table t = table(NULL);
    /* automatic: layernorm_pair wherever AVX2 is; ffn where dense is on its backend (AVX-512) */
    cr_expect_eq(ops_table_fused(&t, TLB_OP_layernorm_pair), simd);
    cr_expect_eq(ops_table_fused(&t, TLB_OP_ffn), simd && t.backend[TLB_OP_dense] == t.backend[TLB_OP_ffn]);
    if (backend_supported(TLB_BACKEND_AVX512)) cr_expect(ops_table_fused(&t, TLB_OP_ffn), "AVX-512: ffn fused");
    if (simd) cr_expect_neq(t.backend[TLB_OP_ffn], TLB_BACKEND_REF);

    t = table("ref"); /* ref's fused stages: the ref ops composed */
    cr_expect(ops_table_fused(&t, TLB_OP_ffn) && ops_table_fused(&t, TLB_OP_layernorm_pair));
    cr_expect_eq(t.backend[TLB_OP_ffn], TLB_BACKEND_REF);

    t = table("dnnl"); /* oneDNN has no fused stage: its own ops run */
    cr_expect(!ops_table_fused(&t, TLB_OP_ffn) && !ops_table_fused(&t, TLB_OP_layernorm_pair));
    char desc[512];
    ops_table_describe(&t, desc, sizeof desc);
    cr_expect(strstr(desc, "layernorm_pair:off") && strstr(desc, "ffn:off"), "%s", desc);

    t = table("gelu:ref"); /* one fused op elsewhere: that stage is off, the other on */
    cr_expect(!ops_table_fused(&t, TLB_OP_ffn));
    cr_expect_eq(ops_table_fused(&t, TLB_OP_layernorm_pair), simd);

    t = table("dense:ref,gelu:ref,dropout:ref,residual:ref,layernorm:ref");
    cr_expect(!ops_table_fused(&t, TLB_OP_ffn) || t.backend[TLB_OP_ffn] == TLB_BACKEND_REF);
    t = table("ffn:ref,layernorm_pair:ref,dense:ref,gelu:ref,dropout:ref,residual:ref,layernorm:ref");
    cr_expect(ops_table_fused(&t, TLB_OP_ffn) && ops_table_fused(&t, TLB_OP_layernorm_pair));

    t = table("ref,ffn:off"); /* off by name; a later backend for it turns it back on */
    cr_expect(!ops_table_fused(&t, TLB_OP_ffn) && ops_table_fused(&t, TLB_OP_layernorm_pair));
    ops_table_describe(&t, desc, sizeof desc);
    cr_expect(strstr(desc, "ffn:off") && strstr(desc, "layernorm_pair:ref"), "%s", desc);
    t = table("layernorm_pair:off,ffn:off,layernorm_pair:ref");
    cr_expect(!ops_table_fused(&t, TLB_OP_ffn) && ops_table_fused(&t, TLB_OP_layernorm_pair));
    tlb_error err = {0};
    cr_expect_eq(ops_spec_check("dense:off", &err), -1, "only a fused stage can be off");
    cr_expect(strstr(err.msg, "dense cannot be off"), "%s", err.msg);
    cr_expect_eq(ops_spec_check("avx2,ffn:off,layernorm_pair:off", &err), 0, "%s", err.msg);

    for (int b = TLB_BACKEND_AVX2; b <= TLB_BACKEND_AVX512; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        t = table(backend_name((tlb_backend)b));
        cr_expect(ops_table_fused(&t, TLB_OP_ffn) && ops_table_fused(&t, TLB_OP_layernorm_pair), "%s",
                  backend_name((tlb_backend)b));
        cr_expect_eq(t.backend[TLB_OP_ffn], (tlb_backend)b);
    }
    cr_expect_eq(ops_table_fused(&t, TLB_OP_dense), 0, "dense is no fused stage");

    t = table("ref"); /* a dense of the caller's own (test_mixed.c's emulated bf16) must run */
    cr_expect(ops_table_folds_norms(&t), "ref folds its LayerNorms into the products");
    t.dense.forward = NULL;
    cr_expect(!ops_table_fused(&t, TLB_OP_ffn) && ops_table_fused(&t, TLB_OP_layernorm_pair));
    cr_expect(!ops_table_folds_norms(&t), "the fold calls dense: not a slot without its forward");

    /* the LayerNorm fold goes with the pair stage */
    t = table(NULL);
    cr_expect_eq(ops_table_folds_norms(&t), simd);
    t = table("layernorm_pair:off");
    cr_expect(!ops_table_folds_norms(&t));
    t = table("dnnl");
    cr_expect(!ops_table_folds_norms(&t));

    /* dense on another backend in a table built by hand (a CPU where
     * oneDNN's products led would choose it): ffn steps aside unless asked
     * for by name; layernorm_pair stays */
    if (simd) {
        t = table(NULL);
        t.dense = *ops_impl_dense(TLB_BACKEND_DNNL);
        t.backend[TLB_OP_dense] = TLB_BACKEND_DNNL;
        cr_expect(!ops_table_fused(&t, TLB_OP_ffn) && ops_table_fused(&t, TLB_OP_layernorm_pair));
        const tlb_backend own = t.backend[TLB_OP_ffn];
        cr_assert_eq(ops_table_force(&t, TLB_OP_ffn, own), 0);
        cr_expect(ops_table_fused(&t, TLB_OP_ffn), "ffn asked for by name runs beside dnnl dense");
    }

    if (ops_mixed_precision_supported()) { /* bf16 products are dense's: ffn steps aside for ffn_bf16 */
        t = table(NULL);
        cr_assert_eq(ops_table_set_bf16(&t, 1), 0);
        cr_expect(!ops_table_fused(&t, TLB_OP_ffn));
        cr_expect_eq(ops_table_fused(&t, TLB_OP_layernorm_pair), simd);
        cr_expect_eq(ops_table_folds_norms(&t), simd, "mixed precision folds too (bf16 of the folded kernels)");
    }
}

/* ---- a whole model, fused vs unfused -------------------------------------- */

#define MB 5

/* Logits and gradients of one forward + backward with dropout on. */
static void model_run(const char *spec, float *logits, float **grads, size_t *n)
{
    const op_table ops = table(spec);
    test_step s = test_small_step(&ops, TLB_WIRING_KERAS, MB, 23, 0.4f, 3, (model_dropout){1, 0x5eed, 7});
    memcpy(logits, s.logits, sizeof(float) * MB * 5);
    *n = s.n;
    *grads = s.grads; /* the caller frees it */
    free(s.logits);
}

/* The backend's first fused-stage-free partner: ref for SIMD, AVX2 for ref. */
static tlb_backend elsewhere_of(tlb_backend b)
{
    if (b != TLB_BACKEND_REF) return TLB_BACKEND_REF;
    return backend_supported(TLB_BACKEND_AVX2) ? TLB_BACKEND_AVX2 : TLB_BACKEND_COUNT;
}

/* Every backend with fused stages: the model's logits and all its
 * gradients with the fused ffn equal the unfused ops' (the stage put on
 * another backend while its ops stay, which turns it off) bit for bit,
 * dropout on. */
Test(ops_fused, model_fused_ffn_equals_unfused)
{
    int runs = 0;
    for (int b = TLB_BACKEND_REF; b <= TLB_BACKEND_AVX512; b++) {
        const tlb_backend elsewhere = elsewhere_of((tlb_backend)b);
        if (!backend_supported((tlb_backend)b) || elsewhere == TLB_BACKEND_COUNT) continue;
        char fused[64], unfused[128];
        snprintf(fused, sizeof fused, "%s", backend_name((tlb_backend)b));
        snprintf(unfused, sizeof unfused, "%s,ffn:%s", fused, backend_name(elsewhere));
        runs++;
        const op_table off = table(unfused);
        cr_assert(!ops_table_fused(&off, TLB_OP_ffn) && ops_table_fused(&off, TLB_OP_layernorm_pair));
        float la[MB * 5], lb[MB * 5], *ga, *gb;
        size_t n;
        model_run(fused, la, &ga, &n);
        model_run(unfused, lb, &gb, &n);
        expect_same_bits("logits", fused, lb, la, MB * 5);
        expect_same_bits("gradients", fused, gb, ga, n);
        free(ga), free(gb);
    }
    cr_expect_geq(runs, 1);
}

/* max |got - want| over max |want|, and where the worst is. */
static double worst_rel(const float *want, const float *got, size_t n, size_t *at)
{
    double scale = 0.0, worst = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++)
        if (fabs((double)got[i] - want[i]) > worst) worst = fabs((double)got[i] - want[i]), *at = i;
    return scale > 0.0 ? worst / scale : worst;
}

/* The LayerNorms folded into the q, k, v products (ops_table_folds_norms)
 * compute the same function as the three LayerNorms and products, rounded
 * in another order: logits and every gradient within the fp32 level the
 * golden README calibrates (2e-5 of the scale), dropout on, random gammas
 * and betas (test_small_step), both wirings, on every backend. Then each
 * gradient to within 1e-3 of itself plus 2e-5 of the scale, so a term the
 * fold dropped from a small tensor (a beta) shows too. */
Test(ops_fused, model_folded_norms_match_the_unfolded)
{
    int runs = 0;
    for (int b = TLB_BACKEND_REF; b <= TLB_BACKEND_AVX512; b++) {
        const tlb_backend elsewhere = elsewhere_of((tlb_backend)b);
        if (!backend_supported((tlb_backend)b) || elsewhere == TLB_BACKEND_COUNT) continue;
        char folded[64], unfolded[128];
        snprintf(folded, sizeof folded, "%s", backend_name((tlb_backend)b));
        snprintf(unfolded, sizeof unfolded, "%s,layernorm_pair:%s", folded, backend_name(elsewhere));
        const op_table on = table(folded), off = table(unfolded);
        cr_assert(ops_table_folds_norms(&on) && !ops_table_folds_norms(&off), "%s", folded);
        for (int wiring = TLB_WIRING_KERAS; wiring <= TLB_WIRING_PAPER; wiring++) {
            runs++;
            test_step a = test_small_step(&on, (tlb_wiring)wiring, MB, 23, 0.4f, 3, (model_dropout){1, 0x5eed, 7});
            test_step u = test_small_step(&off, (tlb_wiring)wiring, MB, 23, 0.4f, 3, (model_dropout){1, 0x5eed, 7});
            size_t at = 0;
            const double lo = worst_rel(u.logits, a.logits, MB * 5, &at);
            cr_expect_leq(lo, 2e-5, "%s wiring %d: logits off by %.3e of their scale at [%zu]", folded, wiring, lo, at);
            const double gr = worst_rel(u.grads, a.grads, a.n, &at);
            cr_expect_leq(gr, 2e-5, "%s wiring %d: gradients off by %.3e of their scale at [%zu]", folded, wiring, gr,
                          at);
            double scale = 0.0;
            for (size_t i = 0; i < a.n; i++) scale = fmax(scale, fabs(u.grads[i]));
            size_t bad = 0, first = 0;
            for (size_t i = 0; i < a.n; i++)
                if (fabs((double)a.grads[i] - u.grads[i]) > 1e-3 * fabs(u.grads[i]) + 2e-5 * scale && bad++ == 0)
                    first = i;
            cr_expect_eq(bad, 0, "%s wiring %d: %zu gradients off, first [%zu] %.9g vs unfolded %.9g", folded, wiring,
                         bad, first, bad ? a.grads[first] : 0.0, bad ? u.grads[first] : 0.0);
            cr_expect_gt(lo + gr, 0.0, "%s: the fold changed no bit: did it run?", folded);
            test_step_free(&a), test_step_free(&u);
        }
    }
    cr_expect_geq(runs, 2);
}

/* The folded weights made once per forward (tlb_model.folded,
 * model_fold_norms) give the bits of folding them at every block call (a
 * model without the buffer), forward and backward, on every backend, both
 * wirings, dropout on. */
Test(ops_fused, model_folds_once_as_each_call_would)
{
    int runs = 0;
    for (int b = TLB_BACKEND_REF; b <= TLB_BACKEND_AVX512; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        const op_table ops = table(backend_name((tlb_backend)b));
        for (int wiring = TLB_WIRING_KERAS; wiring <= TLB_WIRING_PAPER; wiring++) {
            const tlb_model_config c = test_small_config((tlb_wiring)wiring);
            tlb_model m;
            tlb_error err;
            cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
            model_use_ops(&m, &ops);
            cr_assert_eq(model_plan(&m, MB, &err), 0, "%s", err.msg);
            cr_assert_not_null(m.folded, "%s: the plan should hold the folded weights", backend_name((tlb_backend)b));
            rng_stream r = {29, 0};
            for (size_t i = 0; i < model_num_params(&m); i++) m.params[i] = 0.4f * (rng_next_uniform(&r) - 0.5f);
            const size_t nx = (size_t)MB * c.image_size * c.image_size * 3, n = model_num_params(&m);
            float *x = malloc(nx * sizeof(float)), *grads[2], logits[2][MB * 5];
            int labels[MB];
            for (size_t i = 0; i < nx; i++) x[i] = rng_next_uniform(&r);
            for (int i = 0; i < MB; i++) labels[i] = i % c.num_classes;
            float *kept = m.folded;
            for (int pass = 0; pass < 2; pass++) {
                m.folded = pass == 0 ? kept : NULL; /* NULL: each call folds for itself */
                const model_dropout drop = {1, 0x5eed, 7};
                model_zero_grads(&m);
                model_forward(&m, x, labels, MB, &drop);
                model_backward(&m, x, labels, MB, 1.0f / MB, &drop);
                grads[pass] = copy_of(m.grads, n);
                memcpy(logits[pass], m.logits, sizeof logits[pass]);
            }
            m.folded = kept;
            expect_same_bits("logits", backend_name((tlb_backend)b), logits[1], logits[0], MB * 5);
            expect_same_bits("gradients", backend_name((tlb_backend)b), grads[1], grads[0], n);
            free(grads[0]), free(grads[1]), free(x);
            model_destroy(&m);
            runs++;
        }
    }
    cr_expect_geq(runs, 2);
}
