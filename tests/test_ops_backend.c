/* ops_backend: every other backend against ref; += and NULL-gradient
 * contracts of every backend; in-place forwards. */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_testing.h"
#include "ops/ops.h"
#include "util/rng.h"

#define MAX_BACKEND_SHAPES 256
static shape be_shapes[MAX_BACKEND_SHAPES];
static int n_be_shapes;

static void add_shape(const char *op, int d0, int d1, int d2, int d3, int d4, int d5, float rate)
{
    cr_assert(n_be_shapes < MAX_BACKEND_SHAPES);
    be_shapes[n_be_shapes++] = (shape){op, {d0, d1, d2, d3, d4, d5}, rate};
}

/* Odd sizes exercise vector tails: M in {1,3,37} (and 301), K,N in {1,5,17,64,256} (and 300), D in
 * {5,16,64}; attention with H*K = 64 and H*K = 15, Tq == Tk and Tq != Tk,
 * Tk = 8 and 16 (one and two vectors of keys). */
static void backend_shapes(void)
{
    if (n_be_shapes) return;
    static const int Ms[] = {1, 3, 37}, KNs[] = {1, 5, 17, 64, 256}, Ds[] = {5, 16, 64};
    for (int m = 0; m < 3; m++)
        for (int k = 0; k < 5; k++)
            for (int n = 0; n < 5; n++) add_shape("dense", Ms[m], KNs[k], KNs[n], 1, 0, 0, 0);
    add_shape("dense", 3, 17, 5, 0, 0, 0, 0);
    add_shape("dense", 37, 64, 64, 0, 0, 0, 0);
    /* R longer than two spans (dense_simd.h's R_SPAN 128) with a short last
     * span: the forward's R is K, dW's M, dX's N. */
    add_shape("dense", 7, 300, 9, 1, 0, 0, 0);
    add_shape("dense", 301, 17, 5, 1, 0, 0, 0);
    add_shape("dense", 5, 19, 300, 1, 0, 0, 0);
    /* ... and on threads (over PARALLEL_MACS): dW 64 x 64 over R = 301 */
    add_shape("dense", 301, 64, 64, 1, 0, 0, 0);
    /* bias gradients summed by columns on threads (over COLUMN_SUMS_PARALLEL
     * values), a column tail on both AVX widths */
    add_shape("dense", 1031, 5, 67, 1, 0, 0, 0);
    for (int m = 0; m < 3; m++)
        for (int d = 0; d < 3; d++) {
            add_shape("layernorm", Ms[m], Ds[d], 0, 0, 0, 0, 0);
            add_shape("gelu", Ms[m] * Ds[d], 0, 0, 0, 0, 0, 0);
            add_shape("residual", Ms[m] * Ds[d], 0, 0, 0, 0, 0, 0);
            add_shape("relu", Ms[m] * Ds[d], 0, 0, 0, 0, 0, 0);
            add_shape("meanpool", 3, Ms[m], Ds[d], 0, 0, 0, 0);
            add_shape("posemb", 2, Ms[m], Ds[d], 0, 0, 0, 0);
            add_shape("dropout", 3, Ms[m] * Ds[d], 1, 0, 0, 0, 0.3f);
        }
    /* large enough for the threaded, row-blocked LayerNorm backward (D above
     * and below its in-register limit of 64), and D above its blocked limit */
    add_shape("layernorm", 301, 67, 0, 0, 0, 0, 0);
    add_shape("layernorm", 400, 50, 0, 0, 0, 0, 0);
    add_shape("layernorm", 7, 300, 0, 0, 0, 0, 0);
    add_shape("gelu", 1, 0, 0, 0, 0, 0, 0);
    add_shape("gelu", 1000, 0, 0, 0, 0, 0, 0);
    add_shape("residual", 1001, 0, 0, 0, 0, 0, 0);
    add_shape("dropout", 2, 77, 0, 0, 0, 0, 0.0f);
    add_shape("dropout", 2, 77, 0, 0, 0, 0, -1);
    add_shape("dropout", 1, 1, 0, 0, 0, 0, 0.5f);
    /* Tk a multiple of the vector width (8, 16) takes pair_dots' row-group
     * path; Tk half of it (8 on AVX-512, 4 on AVX2) with Tq even its
     * two-row path, Tq odd (3 x 4) the general one */
    static const int TqTk[][2] = {{8, 8}, {3, 5}, {1, 1}, {5, 16}, {6, 4}, {3, 4}},
                     HK[][2] = {{1, 64}, {3, 5}, {4, 16}};
    for (int t = 0; t < 6; t++)
        for (int h = 0; h < 3; h++) {
            add_shape("attention", 3, TqTk[t][0], TqTk[t][1], HK[h][0], HK[h][1], 0, -1);
            add_shape("attention", 3, TqTk[t][0], TqTk[t][1], HK[h][0], HK[h][1], 2, 0.3f);
        }
    add_shape("attention", 2, 8, 8, 2, 32, 0, 0.0f);
    /* LRA Image's blocks (8 heads of key_dim 8, chunk 32): pair_dots' short-row path */
    add_shape("attention", 2, 32, 32, 8, 8, 0, 0.2f);
    add_shape("attention", 2, 5, 32, 8, 8, 1, 0.0f);
    for (int d = 0; d < 3; d++) {
        add_shape("patch_conv", 2, 8, 4, Ds[d], 1, 0, 0);
        add_shape("patch_conv", 3, 6, 3, Ds[d], 1, 0, 0);
    }
    add_shape("patch_conv", 1, 32, 4, 17, 0, 0, 0);
    add_shape("patch_conv", 2, 7, 3, 5, 1, 0, 0); /* P does not divide S: border unused */
    static const int Vs[] = {1, 5, 10, 17, 64};
    for (int v = 0; v < 5; v++) add_shape("softmax_xent", 3, Vs[v], 0, 0, 0, 0, 0);
    add_shape("softmax_xent", 37, 10, 0, 0, 0, 0, 0);
    add_shape("softmax_xent", 2, 33, 0, 0, 0, 0, 0);
    /* above the SIMD backends' threading thresholds (32768 values), odd sizes:
     * posemb's dpos in several 1024-value blocks plus a tail */
    add_shape("residual", 40001, 0, 0, 0, 0, 0, 0);
    add_shape("relu", 40001, 0, 0, 0, 0, 0, 0);
    add_shape("posemb", 5, 37, 181, 0, 0, 0, 0);
    add_shape("meanpool", 2, 9, 67, 0, 0, 0, 0);
    add_shape("dropout", 3, 1001, 12345, 0, 0, 0, 0.5f);
    /* token_embed: repeated ids (N > V), unused rows (N < V), D in and off
     * the vector width; the last two above the threading threshold, where
     * the backward splits D into column slabs */
    for (int d = 0; d < 3; d++) {
        add_shape("token_embed", 37, 5, Ds[d], 0, 0, 0, 0);
        add_shape("token_embed", 3, 17, Ds[d], 0, 0, 0, 0);
    }
    add_shape("token_embed", 1, 1, 1, 0, 0, 0, 0);
    add_shape("token_embed", 2000, 7, 67, 0, 0, 0, 0);
    add_shape("token_embed", 1031, 256, 128, 0, 0, 0, 0);
    /* the fused stages: layernorm_pair over layernorm's shapes (threaded,
     * row-blocked, above the blocked limit); ffn with odd D and F, one row,
     * the model's D=64 F=256 with dropout, and above the threading limits */
    for (int m = 0; m < 3; m++)
        for (int d = 0; d < 3; d++) add_shape("layernorm_pair", Ms[m], Ds[d], 0, 0, 0, 0, 0);
    add_shape("layernorm_pair", 301, 67, 0, 0, 0, 0, 0);
    add_shape("layernorm_pair", 400, 50, 0, 0, 0, 0, 0);
    add_shape("layernorm_pair", 7, 300, 0, 0, 0, 0, 0);
    add_shape("ffn", 1, 1, 1, 1, 0, 0, -1);
    add_shape("ffn", 2, 3, 5, 17, 1, 0, 0.3f);
    add_shape("ffn", 3, 1, 17, 5, 0, 0, -1);
    add_shape("ffn", 3, 7, 33, 65, 2, 0, 0.0f);
    add_shape("ffn", 5, 8, 64, 256, 3, 0, 0.2f);
    add_shape("ffn", 37, 3, 64, 37, 0, 0, 0.5f);
}

#define BACKEND_RTOL 1e-5
#define BACKEND_ATOL 1e-6

/* Runs every available non-ref backend of `op` on every shape against ref.
 * Gradient buffers start at the same random values, so a backend that
 * overwrites instead of accumulating fails too. */
static void backend_vs_ref(const char *op_name)
{
    backend_shapes();
    const int op = ops_find(op_name);
    cr_assert(op >= 0, "op %s not registered", op_name);
    const void *ref = ops_impl(op, TLB_BACKEND_REF);
    cr_assert_not_null(ref, "op %s has no ref backend", op_name);
    int compared = 0, backends = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const void *impl = ops_impl(op, (tlb_backend)b);
        if (b == TLB_BACKEND_REF || !impl || !backend_supported((tlb_backend)b)) continue;
        backends++;
        for (int s = 0; s < n_be_shapes; s++) {
            if (!same_op(&be_shapes[s], op_name)) continue;
            const shape *sh = &be_shapes[s];
            op_case *r = opt_case(op_name, ref, "ref", sh->dims, sh->rate, 500 + s);
            op_case *c = opt_case(op_name, impl, backend_name((tlb_backend)b), sh->dims, sh->rate,
                                  500 + s);
            cr_assert(r && c);
            opt_fill_grads(r, 9);
            opt_fill_grads(c, 9);
            r->forward(r);
            c->forward(c);
            r->backward(r, OPT_ALL_GRADS);
            c->backward(c, OPT_ALL_GRADS);
            char msg[768];
            if (opt_compare_cases(r, c, BACKEND_RTOL, BACKEND_ATOL, msg, sizeof msg))
                cr_expect(0, "%s", msg);
            compared++;
            opt_case_free(r);
            opt_case_free(c);
        }
    }
    cr_log_info("%s: %d (backend, shape) pairs compared with ref", op_name, compared);
    /* A test that compared nothing must not pass (no shape for this op). */
    if (backends > 0) cr_expect_geq(compared, backends, "%s: %d backends, %d comparisons", op_name, backends, compared);
}

/* One test per op of the op list (ops/op_list.h), named after it. */
#define BACKEND_TEST(name, ...) \
    Test(ops_backend, name) { backend_vs_ref(#name); }
TLB_OP_LIST(BACKEND_TEST)
#undef BACKEND_TEST

/* Every backend (ref included) on a few odd shapes per op. */
static const shape contract_shapes[] = {
    {"dense", {3, 17, 5, 1}, 0},          {"dense", {37, 64, 17, 0}, 0},
    {"layernorm", {3, 17}, 0},            {"layernorm", {37, 64}, 0},
    {"gelu", {37}, 0},                    {"attention", {3, 3, 5, 3, 5, 0}, 0.3f},
    {"attention", {3, 8, 8, 1, 64, 0}, -1}, {"patch_conv", {2, 6, 3, 17, 1}, 0},
    {"posemb", {2, 3, 17}, 0},            {"meanpool", {3, 5, 17}, 0},
    {"softmax_xent", {3, 17}, 0},         {"dropout", {3, 37, 0}, 0.3f},
    {"residual", {37}, 0},                {"token_embed", {37, 5, 17}, 0},
    {"relu", {37}, 0},
    {"layernorm_pair", {3, 17}, 0},       {"layernorm_pair", {37, 64}, 0},
    {"ffn", {2, 3, 5, 17, 1}, 0.3f},      {"ffn", {3, 5, 17, 9, 0}, -1},
};

/* The harness must not silently test nothing: every op has ref, a case
 * builder, backend shapes and its own test above. */
Test(ops_backend, ref_exists_for_every_op)
{
    backend_shapes();
#define TESTED_NAME(name, ...) #name,
    static const char *const tested[] = {TLB_OP_LIST(TESTED_NAME)};
#undef TESTED_NAME
    cr_assert(ops_count() > 0);
    for (int op = 0; op < ops_count(); op++) {
        const char *name = ops_name(op);
        cr_expect_not_null(ops_impl(op, TLB_BACKEND_REF), "op %s has no ref backend", name);
        int listed = 0, shapes = 0;
        for (size_t i = 0; i < sizeof tested / sizeof tested[0]; i++)
            listed |= strcmp(tested[i], name) == 0;
        for (int s = 0; s < n_be_shapes; s++) shapes += same_op(&be_shapes[s], name);
        cr_expect(listed, "op %s has no ops_backend test", name);
        cr_expect(shapes > 0, "op %s has no backend comparison shapes", name);
        int contracts = 0;
        for (size_t s = 0; s < sizeof contract_shapes / sizeof contract_shapes[0]; s++)
            contracts += same_op(&contract_shapes[s], name);
        cr_expect(contracts > 0, "op %s has no contract shapes (+=, NULL gradients)", name);
        const int dims[6] = {1, 1, 1, 1, 1, 0};
        op_case *c = opt_case(name, ops_impl(op, TLB_BACKEND_REF), "ref", dims, 0, 1);
        cr_expect_not_null(c, "op %s has no case builder in tests/op_testing.c", name);
        opt_case_free(c);
    }
}

/* The comparison itself: a 1e-4 relative error in one value is caught, and
 * the message names the op, the backend, the shape and the buffer. */
Test(ops_backend, comparison_detects_and_names_mismatch)
{
    const int dims[6] = {3, 3, 5, 3, 5, 0};
    op_case *r = opt_case("attention", ref_impl("attention"), "ref", dims, 0.3f, 2);
    op_case *c = opt_case("attention", ref_impl("attention"), "fake", dims, 0.3f, 2);
    opt_zero_grads(r);
    opt_zero_grads(c);
    r->forward(r);
    c->forward(c);
    r->backward(r, OPT_ALL_GRADS);
    c->backward(c, OPT_ALL_GRADS);
    char msg[768] = "";
    cr_expect_eq(opt_compare_cases(r, c, BACKEND_RTOL, BACKEND_ATOL, msg, sizeof msg), 0, "%s", msg);
    float mx = 0.0f;
    for (size_t i = 0; i < c->in[1].n; i++) mx = fmaxf(mx, fabsf(c->in[1].g[i]));
    c->in[1].g[7] += 1e-4f * mx;
    cr_expect_eq(opt_compare_cases(r, c, BACKEND_RTOL, BACKEND_ATOL, msg, sizeof msg), 1);
    cr_expect(strstr(msg, "attention[fake] B=3 Tq=3 Tk=5 H=3 K=5") && strstr(msg, "dk") &&
                  strstr(msg, "[7]"),
              "message does not name op, backend, shape, buffer and index: %s", msg);
    opt_case_free(r);
    opt_case_free(c);
}


/* Runs check(op_name, impl, backend, shape, seed) for every supported
 * backend of op_name and every contract shape of it (seed0 + shape index). */
typedef void (*contract_check)(const char *op_name, const void *impl, tlb_backend b, const shape *sh,
                               uint64_t seed);

static void each_contract_case(const char *op_name, uint64_t seed0, contract_check check)
{
    const int op = ops_find(op_name);
    cr_assert(op >= 0);
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const void *impl = ops_impl(op, (tlb_backend)b);
        if (!impl || !backend_supported((tlb_backend)b)) continue;
        for (size_t s = 0; s < sizeof contract_shapes / sizeof contract_shapes[0]; s++)
            if (same_op(&contract_shapes[s], op_name))
                check(op_name, impl, (tlb_backend)b, &contract_shapes[s], seed0 + s);
    }
}

/* backward twice from zero == 2 x backward once; from random g0 == g0 + once. */
static void accumulates_case(const char *op_name, const void *impl, tlb_backend b, const shape *sh, uint64_t seed)
{
    op_case *once = opt_case(op_name, impl, backend_name(b), sh->dims, sh->rate, seed);
    op_case *twice = opt_case(op_name, impl, backend_name(b), sh->dims, sh->rate, seed);
    op_case *onto = opt_case(op_name, impl, backend_name(b), sh->dims, sh->rate, seed);
    opt_zero_grads(once);
    opt_zero_grads(twice);
    opt_fill_grads(onto, 5);
    once->forward(once);
    twice->forward(twice);
    onto->forward(onto);
    once->backward(once, OPT_ALL_GRADS);
    twice->backward(twice, OPT_ALL_GRADS);
    twice->backward(twice, OPT_ALL_GRADS);
    onto->backward(onto, OPT_ALL_GRADS);
    for (int i = 0; i < once->n_in; i++) {
        const size_t n = once->in[i].n;
        float *want = malloc(n * sizeof(float));
        char msg[768], what[256];
        for (size_t j = 0; j < n; j++) want[j] = 2.0f * once->in[i].g[j];
        snprintf(what, sizeof what, "%s: d%s after two backward calls vs 2 x one call", once->label,
                 once->in[i].name);
        if (opt_compare(what, want, twice->in[i].g, n, 1e-6, 1e-7, msg, sizeof msg)) cr_expect(0, "%s", msg);
        /* what opt_fill_grads(onto, 5) wrote, regenerated */
        op_case *tmp = opt_case(op_name, impl, "", sh->dims, sh->rate, seed);
        opt_fill_grads(tmp, 5);
        for (size_t j = 0; j < n; j++) want[j] = tmp->in[i].g[j] + once->in[i].g[j];
        opt_case_free(tmp);
        snprintf(what, sizeof what, "%s: d%s accumulated onto nonzero buffer (+=)", once->label,
                 once->in[i].name);
        if (opt_compare(what, want, onto->in[i].g, n, 1e-6, 1e-7, msg, sizeof msg)) cr_expect(0, "%s", msg);
        free(want);
    }
    opt_case_free(once);
    opt_case_free(twice);
    opt_case_free(onto);
}

static void accumulates(const char *op_name) { each_contract_case(op_name, 31, accumulates_case); }

Test(ops_backend, backward_accumulates)
{
    for (int op = 0; op < ops_count(); op++) accumulates(ops_name(op));
}

/* NULL gradients: backward with each gradient alone gives the same values as
 * with all of them and leaves the others untouched; all NULL does nothing. One
 * test per op so a crash names the op. */
static void null_gradients_case(const char *op_name, const void *impl, tlb_backend b, const shape *sh,
                                uint64_t seed)
{
    op_case *all = opt_case(op_name, impl, backend_name(b), sh->dims, sh->rate, seed);
    op_case *one = opt_case(op_name, impl, backend_name(b), sh->dims, sh->rate, seed);
    opt_zero_grads(all);
    all->forward(all);
    all->backward(all, OPT_ALL_GRADS);
    one->forward(one);
    /* Shown if the call below crashes, naming the culprit. */
    cr_log_info("%s: backward with NULL gradients", one->label);
    for (unsigned mask = 0; mask < (1u << one->n_in); mask++) {
        opt_zero_grads(one);
        one->backward(one, mask);
        for (int i = 0; i < one->n_in; i++) {
            char msg[768], what[256];
            snprintf(what, sizeof what, "%s: d%s with gradient mask 0x%x", one->label, one->in[i].name, mask);
            if (mask >> i & 1u) {
                if (opt_compare(what, all->in[i].g, one->in[i].g, one->in[i].n, 1e-6, 1e-7, msg, sizeof msg))
                    cr_expect(0, "%s", msg);
            } else {
                size_t nz = 0;
                for (size_t j = 0; j < one->in[i].n; j++) nz += one->in[i].g[j] != 0.0f;
                cr_expect(nz == 0, "%s: written although NULL was passed (%zu nonzero)", what, nz);
            }
        }
    }
    opt_case_free(all);
    opt_case_free(one);
}

static void null_gradients(const char *op_name) { each_contract_case(op_name, 61, null_gradients_case); }

/* One test per op of the op list; for single-gradient ops (gelu, meanpool,
 * softmax_xent, dropout) NULL means the caller wants nothing. */
#define NULL_GRADIENTS_TEST(name, ...) \
    Test(ops_backend, null_gradients_##name) { null_gradients(#name); }
TLB_OP_LIST(NULL_GRADIENTS_TEST)
#undef NULL_GRADIENTS_TEST

/* ref reduces in a fixed order, so its results do not depend on the thread
 * count (dropout masks and resumed runs rely on it). Bitwise. */
Test(ops_backend, ref_independent_of_thread_count)
{
    for (size_t s = 0; s < sizeof contract_shapes / sizeof contract_shapes[0]; s++) {
        const shape *sh = &contract_shapes[s];
        const void *ref = ref_impl(sh->op);
        op_case *c[2];
        for (int t = 0; t < 2; t++) {
            omp_set_num_threads(t == 0 ? 1 : 3);
            c[t] = opt_case(sh->op, ref, t == 0 ? "ref 1 thread" : "ref 3 threads", sh->dims,
                            sh->rate, 11 + s);
            opt_fill_grads(c[t], 3);
            c[t]->forward(c[t]);
            c[t]->backward(c[t], OPT_ALL_GRADS);
        }
        char msg[768];
        if (opt_compare_cases(c[0], c[1], 0, 0, msg, sizeof msg)) cr_expect(0, "%s", msg);
        opt_case_free(c[0]);
        opt_case_free(c[1]);
    }
}

/* ops.h allows out to alias the input for posemb, dropout and residual. */
Test(ops_backend, in_place_forwards)
{
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        const char *bn = backend_name((tlb_backend)b);
        const posemb_op *pe = ops_impl_posemb((tlb_backend)b);
        if (pe) {
            op_case *c = opt_case("posemb", pe, bn, (int[6]){3, 5, 17}, 0, 3);
            c->forward(c);
            pe->forward(c->in[0].x, c->in[0].x, c->in[1].x, 3, 5, 17);
            cr_expect(memcmp(c->in[0].x, c->out[0].x, c->out[0].n * sizeof(float)) == 0,
                      "%s: in-place forward differs", c->label);
            opt_case_free(c);
        }
        const dropout_op *dr = ops_impl_dropout((tlb_backend)b);
        if (dr) {
            op_case *c = opt_case("dropout", dr, bn, (int[6]){3, 37, 4}, 0.3f, 3);
            c->forward(c);
            dr->forward(c->in[0].x, c->in[0].x, 3, 37, c->dropp);
            cr_expect(memcmp(c->in[0].x, c->out[0].x, c->out[0].n * sizeof(float)) == 0,
                      "%s: in-place forward differs", c->label);
            opt_case_free(c);
        }
        const residual_op *rs = ops_impl_residual((tlb_backend)b);
        if (rs) {
            for (int alias = 0; alias < 2; alias++) {
                op_case *c = opt_case("residual", rs, bn, (int[6]){37}, 0, 3);
                c->forward(c);
                rs->forward(c->in[alias].x, c->in[0].x, c->in[1].x, 37);
                cr_expect(memcmp(c->in[alias].x, c->out[0].x, 37 * sizeof(float)) == 0,
                          "%s: forward with out aliasing %s differs", c->label, c->in[alias].name);
                opt_case_free(c);
            }
        }
    }
}

/* A row's LayerNorm does not depend on the rows beside it: the SIMD
 * kernels reduce a vector's worth of rows in one transpose-add (vhsums)
 * and a lone row with vhsum, in the same pairs and order, so 37 rows at
 * once (two groups of 16 and a tail, or four of 8) give each row's mean,
 * rstd, output and input gradient bit for bit as that row alone; D = 64
 * takes the backward's register path, 67 the masked tails. */
Test(ops_backend, layernorm_rows_independent_bit_for_bit)
{
    enum { M = 37, DMAX = 67 };
    static const int Ds[] = {64, 67};
    float *x = malloc(M * DMAX * sizeof(float)), *g = malloc(M * DMAX * sizeof(float));
    float *out = malloc(M * DMAX * sizeof(float)), *dx = malloc(M * DMAX * sizeof(float));
    float gamma[DMAX], beta[DMAX], dgamma[DMAX], dbeta[DMAX], mean[M], rstd[M];
    rng_stream r = {21, 0};
    for (int i = 0; i < M * DMAX; i++)
        x[i] = 8.0f * rng_next_uniform(&r) - 3.0f, g[i] = rng_next_uniform(&r) - 0.5f;
    for (int d = 0; d < DMAX; d++) gamma[d] = 0.5f + rng_next_uniform(&r), beta[d] = rng_next_uniform(&r);
    for (size_t di = 0; di < sizeof Ds / sizeof Ds[0]; di++)
        for (int b = 1; b < TLB_BACKEND_COUNT; b++) {
            const int D = Ds[di];
            const layernorm_op *ln = ops_impl_layernorm((tlb_backend)b);
            if (!ln || !backend_supported((tlb_backend)b) || b == TLB_BACKEND_DNNL) continue;
            memset(dx, 0, M * DMAX * sizeof(float));
            memset(dgamma, 0, sizeof dgamma), memset(dbeta, 0, sizeof dbeta);
            ln->forward(out, mean, rstd, x, gamma, beta, M, D);
            ln->backward(dx, dgamma, dbeta, g, x, gamma, mean, rstd, M, D);
            for (int m = 0; m < M; m++) {
                float o1[DMAX], mu1, rs1, dx1[DMAX] = {0};
                ln->forward(o1, &mu1, &rs1, x + m * D, gamma, beta, 1, D);
                ln->backward(dx1, dgamma, dbeta, g + m * D, x + m * D, gamma, &mu1, &rs1, 1, D);
                cr_expect(memcmp(&mu1, &mean[m], 4) == 0 && memcmp(&rs1, &rstd[m], 4) == 0 &&
                              memcmp(o1, out + m * D, D * sizeof(float)) == 0 &&
                              memcmp(dx1, dx + m * D, D * sizeof(float)) == 0,
                          "layernorm[%s] D %d: row %d of %d differs from the row alone",
                          backend_name((tlb_backend)b), D, m, M);
            }
        }
    free(x), free(g), free(out), free(dx);
}

/* LayerNorm's input gradient alone (dgamma and dbeta NULL, as the model
 * calls it where they are folded into a product: model/norm_fold.h) is the
 * full backward's, bit for bit: its own pass takes each row's means as the
 * blocked pass does. Odd shapes, groups of rows cut short, 1 and 3 threads. */
Test(ops_backend, layernorm_input_gradient_alone_is_the_full_backwards)
{
    static const int shapes[][2] = {{1, 1}, {17, 64}, {33, 16}, {5, 7}, {40, 100}, {300, 64}, {16, 48}};
    int runs = 0;
    for (int b = TLB_BACKEND_AVX2; b <= TLB_BACKEND_AVX512; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        const layernorm_op *ln = ops_impl_layernorm((tlb_backend)b);
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (int threads = 1; threads <= 3; threads += 2) {
                omp_set_num_threads(threads);
                const int M = shapes[s][0], D = shapes[s][1];
                const size_t n = (size_t)M * D;
                rng_stream r = {97 + s, 0};
                float *x = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *out = malloc(n * sizeof(float));
                float *gamma = malloc(D * sizeof(float)), *beta = malloc(D * sizeof(float));
                float *mean = malloc(M * sizeof(float)), *rstd = malloc(M * sizeof(float));
                float *dx_all = malloc(n * sizeof(float)), *dx_one = malloc(n * sizeof(float));
                float *dg = calloc(D, sizeof(float)), *db = calloc(D, sizeof(float));
                for (size_t i = 0; i < n; i++)
                    x[i] = 3.0f * (rng_next_uniform(&r) - 0.3f), g[i] = rng_next_uniform(&r) - 0.5f;
                for (int d = 0; d < D; d++) gamma[d] = rng_next_uniform(&r) + 0.5f, beta[d] = rng_next_uniform(&r);
                for (size_t i = 0; i < n; i++) dx_all[i] = dx_one[i] = 0.25f * (float)(i % 7); /* accumulated onto */
                ln->forward(out, mean, rstd, x, gamma, beta, M, D);
                ln->backward(dx_all, dg, db, g, x, gamma, mean, rstd, M, D);
                ln->backward(dx_one, NULL, NULL, g, x, gamma, mean, rstd, M, D);
                size_t bad = 0;
                for (size_t i = 0; i < n; i++) bad += dx_all[i] != dx_one[i];
                cr_expect_eq(bad, 0, "%s M%d D%d %d threads: %zu of %zu dinp values differ",
                             backend_name((tlb_backend)b), M, D, threads, bad, n);
                runs++;
                free(x), free(g), free(out), free(gamma), free(beta), free(mean), free(rstd);
                free(dx_all), free(dx_one), free(dg), free(db);
            }
    }
    omp_set_num_threads(omp_get_num_procs());
    if (!backend_supported(TLB_BACKEND_AVX2)) cr_skip_test("no AVX2: only ref, which has one pass");
    cr_expect_gt(runs, 0);
}
