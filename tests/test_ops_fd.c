/* ops_fd: finite-difference checks of every ref backward (and of the small
 * ops' and the dnnl ops' other backends), and that the checker catches a 1%
 * error in one element. */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_testing.h"
#include "ops/ops.h"

/* FD makes thousands of tiny forward calls; one thread keeps them from
 * stalling in OpenMP barriers when Criterion runs tests side by side on a
 * busy machine. Threaded paths are covered by the other suites. */
static void single_thread(void) { omp_set_num_threads(1); }
TestSuite(ops_fd, .init = single_thread);

/* Odd widths (not multiples of 8/16), single tokens, H*K != D, Tq != Tk. */
static const shape fd_shapes[] = {
    {"dense", {1, 1, 1, 1}, 0},       {"dense", {3, 5, 17, 1}, 0},
    {"dense", {4, 13, 5, 1}, 0},      {"dense", {1, 33, 3, 0}, 0},
    {"dense", {2, 16, 8, 1}, 0},
    {"layernorm", {1, 5}, 0},         {"layernorm", {3, 13}, 0},
    {"layernorm", {2, 17}, 0},        {"layernorm", {1, 33}, 0},
    {"layernorm", {2, 1}, 0},
    {"gelu", {1}, 0},                 {"gelu", {17}, 0},
    {"gelu", {33}, 0},
    {"attention", {1, 1, 1, 1, 1, 0}, -1},     {"attention", {2, 3, 5, 3, 5, 0}, 0},
    {"attention", {2, 4, 4, 2, 8, 0}, -1},     {"attention", {1, 1, 7, 2, 3, 0}, -1},
    {"attention", {2, 5, 3, 1, 13, 0}, -1},    {"attention", {2, 3, 5, 3, 5, 3}, 0.3f},
    {"attention", {2, 4, 6, 2, 4, 0}, 0.3f},
    {"patch_conv", {1, 8, 4, 5, 1}, 0},  {"patch_conv", {2, 6, 3, 13, 1}, 0},
    {"patch_conv", {1, 4, 4, 1, 1}, 0},  {"patch_conv", {1, 6, 3, 7, 0}, 0},
    {"posemb", {2, 3, 5}, 0},         {"posemb", {1, 1, 17}, 0},
    {"meanpool", {2, 3, 5}, 0},       {"meanpool", {1, 1, 13}, 0},
    {"meanpool", {3, 7, 17}, 0},
    {"softmax_xent", {3, 7}, 0},      {"softmax_xent", {1, 1}, 0},
    {"softmax_xent", {4, 13}, 0},     {"softmax_xent", {2, 2}, 0},
    {"dropout", {3, 17, 0}, 0.3f},    {"dropout", {1, 1, 5}, 0.5f},
    {"dropout", {2, 9, 0}, 0.0f},     {"dropout", {2, 9, 0}, -1},
    {"residual", {1}, 0},             {"residual", {17}, 0},
    {"token_embed", {7, 3, 5}, 0},    {"token_embed", {2, 9, 17}, 0},
    {"token_embed", {1, 1, 1}, 0},
    {"relu", {1}, 0},                 {"relu", {17}, 0},
    {"relu", {33}, 0},
    {"layernorm_pair", {1, 5}, 0},    {"layernorm_pair", {3, 13}, 0},
    {"layernorm_pair", {2, 17}, 0},
    {"ffn", {1, 1, 1, 1, 0}, -1},     {"ffn", {2, 3, 5, 7, 0}, 0.3f},
    {"ffn", {1, 2, 9, 17, 1}, 0.0f},  {"ffn", {2, 2, 3, 4, 0}, -1},
};
#define N_FD_SHAPES (sizeof fd_shapes / sizeof fd_shapes[0])

static void fd_op(const char *op)
{
    const void *impl = ref_impl(op);
    cr_assert_not_null(impl, "op %s has no ref backend", op);
    int cases = 0;
    for (size_t i = 0; i < N_FD_SHAPES; i++) {
        if (!same_op(&fd_shapes[i], op)) continue;
        op_case *c = opt_case(op, impl, "ref", fd_shapes[i].dims, fd_shapes[i].rate, 1000 + i);
        cr_assert_not_null(c, "no test case builder for op %s", op);
        fd_report r;
        fd_check(c, &fd_default_opts, &r);
        cr_expect(r.checked > 0, "%s: nothing checked", c->label);
        cr_expect(r.failures == 0, "%d of %d FD checks failed; first: %s", r.failures, r.checked,
                  r.first);
        cr_log_info("%s: %d checks, worst error %.3f of tolerance", c->label, r.checked, r.worst);
        opt_case_free(c);
        cases++;
    }
    cr_expect(cases > 0, "no FD shapes for op %s", op);
}

/* One test per op of the op list (ops/op_list.h), named after it. */
#define FD_TEST(name, ...) \
    Test(ops_fd, name) { fd_op(#name); }
TLB_OP_LIST(FD_TEST)
#undef FD_TEST

/* The small ops' optimized backends get their own FD check too (cheap; the
 * big ops' backends are held to ref by ops_backend instead). */
Test(ops_fd, small_ops_every_backend)
{
    static const char *const small[] = {"posemb", "meanpool", "softmax_xent", "dropout",
                                        "residual", "token_embed", "relu"};
    int cases = 0;
    for (size_t k = 0; k < sizeof small / sizeof small[0]; k++) {
        const int op = ops_find(small[k]);
        cr_assert(op >= 0, "op %s not registered", small[k]);
        for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
            const void *impl = ops_impl(op, (tlb_backend)b);
            if (b == TLB_BACKEND_REF || !impl || !backend_supported((tlb_backend)b)) continue;
            for (size_t i = 0; i < N_FD_SHAPES; i++) {
                if (!same_op(&fd_shapes[i], small[k])) continue;
                op_case *c = opt_case(small[k], impl, backend_name((tlb_backend)b),
                                      fd_shapes[i].dims, fd_shapes[i].rate, 1000 + i);
                fd_report r;
                fd_check(c, &fd_default_opts, &r);
                cr_expect(r.checked > 0, "%s: nothing checked", c->label);
                cr_expect(r.failures == 0, "%d of %d FD checks failed; first: %s", r.failures,
                          r.checked, r.first);
                opt_case_free(c);
                cases++;
            }
        }
    }
    cr_log_info("%d (backend, shape) FD cases", cases);
}

/* oneDNN's kernels are not ours: every op with a dnnl backend gets its own FD
 * check (its own erf approximation, its variance, its convolution), not only
 * the comparison with ref. */
Test(ops_fd, dnnl_every_op)
{
    int cases = 0;
    for (int op = 0; op < ops_count(); op++) {
        const void *impl = ops_impl(op, TLB_BACKEND_DNNL);
        if (!impl || !backend_supported(TLB_BACKEND_DNNL)) continue;
        for (size_t i = 0; i < N_FD_SHAPES; i++) {
            if (!same_op(&fd_shapes[i], ops_name(op))) continue;
            op_case *c = opt_case(ops_name(op), impl, "dnnl", fd_shapes[i].dims, fd_shapes[i].rate,
                                  1000 + i);
            fd_report r;
            fd_check(c, &fd_default_opts, &r);
            cr_expect(r.checked > 0, "%s: nothing checked", c->label);
            cr_expect(r.failures == 0, "%d of %d FD checks failed; first: %s", r.failures,
                      r.checked, r.first);
            cr_log_info("%s: %d checks, worst error %.3f of tolerance", c->label, r.checked, r.worst);
            opt_case_free(c);
            cases++;
        }
    }
    cr_expect(cases >= 4 * 4, "only %d dnnl FD cases (dense, layernorm, gelu, patch_conv expected)",
              cases);
}

Test(ops_fd, every_registered_op_has_fd_shapes)
{
    for (int op = 0; op < ops_count(); op++) {
        int found = 0;
        for (size_t i = 0; i < N_FD_SHAPES; i++) found |= same_op(&fd_shapes[i], ops_name(op));
        cr_expect(found, "op %s has no finite-difference test (add shapes to fd_shapes)",
                  ops_name(op));
    }
}

/* Negative controls: a backward that is wrong by 1% in its largest element
 * must fail the check, or the tolerance is too loose to catch wrong formulas. */
static const dense_op *ref_dense;
static const attention_op *ref_attention;

static void bump_largest(float *g, size_t n)
{
    size_t at = 0;
    for (size_t i = 1; i < n; i++)
        if (fabsf(g[i]) > fabsf(g[at])) at = i;
    g[at] *= 1.01f;
}

static void dense_backward_1pct_off(float *dinp, float *dw, float *dbias, const float *dout,
                                    const float *inp, const float *w, int M, int K, int N)
{
    ref_dense->backward(dinp, dw, dbias, dout, inp, w, M, K, N);
    if (dw) bump_largest(dw, (size_t)K * N);
}

static void attention_backward_1pct_off(float *dq, float *dk, float *dv, const float *dout,
                                        const float *q, const float *k, const float *v,
                                        const float *probs, int B, int Tq, int Tk, int H, int K,
                                        const dropout_ctx *drop)
{
    ref_attention->backward(dq, dk, dv, dout, q, k, v, probs, B, Tq, Tk, H, K, drop);
    if (dk) bump_largest(dk, (size_t)B * Tk * H * K);
}

Test(ops_fd, checker_detects_1pct_error_in_one_element)
{
    ref_dense = ops_impl_dense(TLB_BACKEND_REF);
    ref_attention = ops_impl_attention(TLB_BACKEND_REF);
    const dense_op bad_dense = {ref_dense->forward, dense_backward_1pct_off, NULL, NULL};
    const attention_op bad_attention = {ref_attention->forward, attention_backward_1pct_off, NULL, NULL};
    const struct {
        const char *op;
        const void *good, *bad;
        int dims[6];
        float rate;
    } controls[] = {
        {"dense", ref_dense, &bad_dense, {3, 5, 17, 1}, 0},
        {"dense", ref_dense, &bad_dense, {37, 64, 17, 1}, 0}, /* larger: dw sampled */
        {"attention", ref_attention, &bad_attention, {2, 3, 5, 3, 5, 0}, 0.3f},
    };
    for (size_t i = 0; i < sizeof controls / sizeof controls[0]; i++) {
        fd_report r;
        op_case *c = opt_case(controls[i].op, controls[i].good, "ref", controls[i].dims,
                              controls[i].rate, 77 + i);
        fd_check(c, &fd_default_opts, &r);
        cr_expect(r.failures == 0, "control %zu, correct backward: %s", i, r.first);
        /* Margin: FD noise well under the tolerance. */
        cr_expect(r.worst < 0.2, "%s: FD noise at %.2f of the tolerance", c->label, r.worst);
        opt_case_free(c);

        c = opt_case(controls[i].op, controls[i].bad, "1%-off", controls[i].dims,
                     controls[i].rate, 77 + i);
        fd_check(c, &fd_default_opts, &r);
        cr_expect(r.failures > 0, "%s: a 1%% error in one element went undetected (worst %.2f)",
                  c->label, r.worst);
        opt_case_free(c);
    }
}
