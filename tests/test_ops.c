/* The op test suite:
 *   ops_fd       finite-difference checks of every ref backward (and of the
 *                small ops' and the dnnl ops' other backends), and that the
 *                checker catches a 1% error in one element
 *   ops_forward  ref forwards against plain double-precision definitions
 *   ops_backend  every other backend against ref; += and NULL-gradient
 *                contracts of every backend; in-place forwards
 *   ops_dropout  mask properties (determinism, micro-batch split, rate)
 *   ops_registry ops_select specs, TLB_BACKEND, introspection */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_testing.h"
#include "ops/dropout_mask.h"
#include "ops/ops.h"

typedef struct {
    const char *op;
    int dims[6];
    float rate; /* attention / dropout: < 0 passes a NULL ctx */
} shape;

static const void *ref_impl(const char *op) { return ops_impl(ops_find(op), TLB_BACKEND_REF); }

static int same_op(const shape *s, const char *op) { return strcmp(s->op, op) == 0; }

/* ======================= ops_fd: finite differences ======================= */

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

Test(ops_fd, dense) { fd_op("dense"); }
Test(ops_fd, layernorm) { fd_op("layernorm"); }
Test(ops_fd, gelu) { fd_op("gelu"); }
Test(ops_fd, attention) { fd_op("attention"); }
Test(ops_fd, patch_conv) { fd_op("patch_conv"); }
Test(ops_fd, posemb) { fd_op("posemb"); }
Test(ops_fd, meanpool) { fd_op("meanpool"); }
Test(ops_fd, softmax_xent) { fd_op("softmax_xent"); }
Test(ops_fd, dropout) { fd_op("dropout"); }
Test(ops_fd, residual) { fd_op("residual"); }

/* The small ops' optimized backends get their own FD check too (cheap; the
 * big ops' backends are held to ref by ops_backend instead). */
Test(ops_fd, small_ops_every_backend)
{
    static const char *const small[] = {"posemb", "meanpool", "softmax_xent", "dropout",
                                        "residual"};
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
    ref_dense = ref_impl("dense");
    ref_attention = ref_impl("attention");
    const dense_op bad_dense = {ref_dense->forward, dense_backward_1pct_off};
    const attention_op bad_attention = {ref_attention->forward, attention_backward_1pct_off};
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

/* ================ ops_forward: ref forwards against definitions =============== */

static void expect_close(const char *label, const char *what, const float *got, const double *want,
                         size_t n, double rtol)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(want[i]));
    for (size_t i = 0; i < n; i++) {
        const double err = fabs(got[i] - want[i]);
        if (!(err <= rtol * scale + 1e-6)) {
            cr_expect(0, "%s: %s[%zu] = %.8g, definition gives %.8g", label, what, i, got[i],
                      want[i]);
            return;
        }
    }
}

static op_case *ref_case(const char *op, int d0, int d1, int d2, int d3, int d4, int d5,
                         float rate)
{
    const int dims[6] = {d0, d1, d2, d3, d4, d5};
    op_case *c = opt_case(op, ref_impl(op), "ref", dims, rate, 4242);
    c->forward(c);
    return c;
}

Test(ops_forward, dense_layernorm_gelu)
{
    op_case *c = ref_case("dense", 3, 17, 5, 1, 0, 0, 0);
    double want[64];
    for (int m = 0; m < 3; m++)
        for (int n = 0; n < 5; n++) {
            double s = c->in[2].x[n];
            for (int k = 0; k < 17; k++) s += (double)c->in[0].x[m * 17 + k] * c->in[1].x[k * 5 + n];
            want[m * 5 + n] = s;
        }
    expect_close(c->label, "out", c->out[0].x, want, 15, 1e-6);
    opt_case_free(c);

    c = ref_case("layernorm", 3, 13, 0, 0, 0, 0, 0);
    for (int m = 0; m < 3; m++) {
        const float *x = c->in[0].x + m * 13;
        double mu = 0, var = 0;
        for (int d = 0; d < 13; d++) mu += x[d] / 13.0;
        for (int d = 0; d < 13; d++) var += (x[d] - mu) * (x[d] - mu) / 13.0; /* biased */
        for (int d = 0; d < 13; d++)
            want[m * 13 + d] = (x[d] - mu) / sqrt(var + 1e-5) * c->in[1].x[d] + c->in[2].x[d];
        cr_expect(fabs(c->out[1].x[m] - mu) < 1e-6, "%s: mean[%d]", c->label, m);
        cr_expect(fabs(c->out[2].x[m] - 1 / sqrt(var + 1e-5)) < 1e-5 / sqrt(var + 1e-5),
                  "%s: rstd[%d]", c->label, m);
    }
    expect_close(c->label, "out", c->out[0].x, want, 39, 2e-6);
    opt_case_free(c);

    c = ref_case("gelu", 33, 0, 0, 0, 0, 0, 0);
    for (int i = 0; i < 33; i++) {
        const double x = c->in[0].x[i];
        want[i] = 0.5 * x * (1 + erf(x / sqrt(2.0))); /* exact, not the tanh form */
    }
    expect_close(c->label, "out", c->out[0].x, want, 33, 1e-6);
    opt_case_free(c);
}

Test(ops_forward, attention)
{
    const int B = 2, Tq = 3, Tk = 5, H = 3, K = 5, HK = H * K;
    op_case *c = ref_case("attention", B, Tq, Tk, H, K, 0, -1);
    double out[2 * 3 * 15], probs[2 * 3 * 3 * 5];
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            for (int i = 0; i < Tq; i++) {
                double s[5], mx = -INFINITY, sum = 0;
                for (int j = 0; j < Tk; j++) {
                    s[j] = 0;
                    for (int e = 0; e < K; e++)
                        s[j] += (double)c->in[0].x[(b * Tq + i) * HK + h * K + e] *
                                c->in[1].x[(b * Tk + j) * HK + h * K + e];
                    s[j] /= sqrt((double)K);
                    mx = fmax(mx, s[j]);
                }
                for (int j = 0; j < Tk; j++) sum += exp(s[j] - mx);
                double *p = probs + ((b * H + h) * Tq + i) * Tk;
                for (int j = 0; j < Tk; j++) p[j] = exp(s[j] - mx) / sum;
                for (int e = 0; e < K; e++) {
                    double o = 0;
                    for (int j = 0; j < Tk; j++)
                        o += p[j] * c->in[2].x[(b * Tk + j) * HK + h * K + e];
                    out[(b * Tq + i) * HK + h * K + e] = o;
                }
            }
    expect_close(c->label, "probs", c->out[1].x, probs, c->out[1].n, 2e-6);
    expect_close(c->label, "out", c->out[0].x, out, c->out[0].n, 2e-6);
    opt_case_free(c);
}

Test(ops_forward, patch_conv_and_pooling)
{
    const int B = 2, S = 6, P = 3, D = 7, G = S / P;
    op_case *c = ref_case("patch_conv", B, S, P, D, 1, 0, 0);
    double want[2 * 4 * 7];
    for (int b = 0; b < B; b++)
        for (int gi = 0; gi < G; gi++)
            for (int gj = 0; gj < G; gj++)
                for (int d = 0; d < D; d++) {
                    double s = c->in[2].x[d];
                    for (int kh = 0; kh < P; kh++)
                        for (int kw = 0; kw < P; kw++)
                            for (int ch = 0; ch < 3; ch++)
                                s += (double)c->in[0].x[((b * S + gi * P + kh) * S + gj * P + kw) * 3 + ch] *
                                     c->in[1].x[((kh * P + kw) * 3 + ch) * D + d];
                    want[((b * G + gi) * G + gj) * D + d] = s;
                }
    expect_close(c->label, "out", c->out[0].x, want, c->out[0].n, 1e-6);
    opt_case_free(c);

    c = ref_case("meanpool", 2, 3, 5, 0, 0, 0, 0);
    for (int b = 0; b < 2; b++)
        for (int d = 0; d < 5; d++) {
            want[b * 5 + d] = 0;
            for (int t = 0; t < 3; t++) want[b * 5 + d] += c->in[0].x[(b * 3 + t) * 5 + d] / 3.0;
        }
    expect_close(c->label, "out", c->out[0].x, want, 10, 1e-6);
    opt_case_free(c);

    c = ref_case("posemb", 2, 3, 5, 0, 0, 0, 0);
    for (int i = 0; i < 30; i++) want[i] = (double)c->in[0].x[i] + c->in[1].x[i % 15];
    expect_close(c->label, "out", c->out[0].x, want, 30, 1e-7);
    opt_case_free(c);

    c = ref_case("residual", 17, 0, 0, 0, 0, 0, 0);
    for (int i = 0; i < 17; i++) want[i] = (double)c->in[0].x[i] + c->in[1].x[i];
    expect_close(c->label, "out", c->out[0].x, want, 17, 1e-7);
    opt_case_free(c);
}

Test(ops_forward, softmax_xent)
{
    const int B = 4, V = 13;
    op_case *c = ref_case("softmax_xent", B, V, 0, 0, 0, 0, 0);
    double loss[4], probs[4 * 13];
    for (int b = 0; b < B; b++) {
        const float *l = c->in[0].x + b * V;
        double mx = -INFINITY, sum = 0;
        for (int v = 0; v < V; v++) mx = fmax(mx, l[v]);
        for (int v = 0; v < V; v++) sum += exp(l[v] - mx);
        for (int v = 0; v < V; v++) probs[b * V + v] = exp(l[v] - mx) / sum;
        loss[b] = mx + log(sum) - l[c->labels[b]];
    }
    expect_close(c->label, "losses", c->out[0].x, loss, B, 1e-6);
    expect_close(c->label, "probs", c->out[1].x, probs, (size_t)B * V, 1e-6);
    opt_case_free(c);
}

/* ============== ops_backend: other backends against ref, contracts ============== */

#define MAX_BACKEND_SHAPES 256
static shape be_shapes[MAX_BACKEND_SHAPES];
static int n_be_shapes;

static void add_shape(const char *op, int d0, int d1, int d2, int d3, int d4, int d5, float rate)
{
    cr_assert(n_be_shapes < MAX_BACKEND_SHAPES);
    be_shapes[n_be_shapes++] = (shape){op, {d0, d1, d2, d3, d4, d5}, rate};
}

/* Odd sizes exercise vector tails: M in {1,3,37}, K,N in {1,5,17,64,256}, D in
 * {5,16,64}; attention with H*K = 64 and H*K = 15, Tq == Tk and Tq != Tk. */
static void backend_shapes(void)
{
    if (n_be_shapes) return;
    static const int Ms[] = {1, 3, 37}, KNs[] = {1, 5, 17, 64, 256}, Ds[] = {5, 16, 64};
    for (int m = 0; m < 3; m++)
        for (int k = 0; k < 5; k++)
            for (int n = 0; n < 5; n++) add_shape("dense", Ms[m], KNs[k], KNs[n], 1, 0, 0, 0);
    add_shape("dense", 3, 17, 5, 0, 0, 0, 0);
    add_shape("dense", 37, 64, 64, 0, 0, 0, 0);
    for (int m = 0; m < 3; m++)
        for (int d = 0; d < 3; d++) {
            add_shape("layernorm", Ms[m], Ds[d], 0, 0, 0, 0, 0);
            add_shape("gelu", Ms[m] * Ds[d], 0, 0, 0, 0, 0, 0);
            add_shape("residual", Ms[m] * Ds[d], 0, 0, 0, 0, 0, 0);
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
    static const int TqTk[][2] = {{8, 8}, {3, 5}, {1, 1}}, HK[][2] = {{1, 64}, {3, 5}, {4, 16}};
    for (int t = 0; t < 3; t++)
        for (int h = 0; h < 3; h++) {
            add_shape("attention", 3, TqTk[t][0], TqTk[t][1], HK[h][0], HK[h][1], 0, -1);
            add_shape("attention", 3, TqTk[t][0], TqTk[t][1], HK[h][0], HK[h][1], 2, 0.3f);
        }
    add_shape("attention", 2, 8, 8, 2, 32, 0, 0.0f);
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
    add_shape("posemb", 5, 37, 181, 0, 0, 0, 0);
    add_shape("meanpool", 2, 9, 67, 0, 0, 0, 0);
    add_shape("dropout", 3, 1001, 12345, 0, 0, 0, 0.5f);
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

Test(ops_backend, dense) { backend_vs_ref("dense"); }
Test(ops_backend, layernorm) { backend_vs_ref("layernorm"); }
Test(ops_backend, gelu) { backend_vs_ref("gelu"); }
Test(ops_backend, attention) { backend_vs_ref("attention"); }
Test(ops_backend, patch_conv) { backend_vs_ref("patch_conv"); }
Test(ops_backend, posemb) { backend_vs_ref("posemb"); }
Test(ops_backend, meanpool) { backend_vs_ref("meanpool"); }
Test(ops_backend, softmax_xent) { backend_vs_ref("softmax_xent"); }
Test(ops_backend, dropout) { backend_vs_ref("dropout"); }
Test(ops_backend, residual) { backend_vs_ref("residual"); }

/* The harness must not silently test nothing: every op has ref, a case
 * builder, backend shapes and its own test above. */
Test(ops_backend, ref_exists_for_every_op)
{
    backend_shapes();
    static const char *const tested[] = {"dense",  "layernorm", "gelu",         "attention",
                                         "patch_conv", "posemb", "meanpool", "softmax_xent",
                                         "dropout", "residual"};
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

/* Every backend (ref included) on a few odd shapes per op. */
static const shape contract_shapes[] = {
    {"dense", {3, 17, 5, 1}, 0},          {"dense", {37, 64, 17, 0}, 0},
    {"layernorm", {3, 17}, 0},            {"layernorm", {37, 64}, 0},
    {"gelu", {37}, 0},                    {"attention", {3, 3, 5, 3, 5, 0}, 0.3f},
    {"attention", {3, 8, 8, 1, 64, 0}, -1}, {"patch_conv", {2, 6, 3, 17, 1}, 0},
    {"posemb", {2, 3, 17}, 0},            {"meanpool", {3, 5, 17}, 0},
    {"softmax_xent", {3, 17}, 0},         {"dropout", {3, 37, 0}, 0.3f},
    {"residual", {37}, 0},
};

/* backward twice from zero == 2 x backward once; from random g0 == g0 + once. */
static void accumulates(const char *op_name)
{
    const int op = ops_find(op_name);
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const void *impl = ops_impl(op, (tlb_backend)b);
        if (!impl || !backend_supported((tlb_backend)b)) continue;
        for (size_t s = 0; s < sizeof contract_shapes / sizeof contract_shapes[0]; s++) {
            const shape *sh = &contract_shapes[s];
            if (!same_op(sh, op_name)) continue;
            op_case *once = opt_case(op_name, impl, backend_name((tlb_backend)b), sh->dims,
                                     sh->rate, 31 + s);
            op_case *twice = opt_case(op_name, impl, backend_name((tlb_backend)b), sh->dims,
                                      sh->rate, 31 + s);
            op_case *onto = opt_case(op_name, impl, backend_name((tlb_backend)b), sh->dims,
                                     sh->rate, 31 + s);
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
                snprintf(what, sizeof what, "%s: d%s after two backward calls vs 2 x one call",
                         once->label, once->in[i].name);
                if (opt_compare(what, want, twice->in[i].g, n, 1e-6, 1e-7, msg, sizeof msg))
                    cr_expect(0, "%s", msg);
                /* what opt_fill_grads(onto, 5) wrote, regenerated */
                op_case *tmp = opt_case(op_name, impl, "", sh->dims, sh->rate, 31 + s);
                opt_fill_grads(tmp, 5);
                for (size_t j = 0; j < n; j++) want[j] = tmp->in[i].g[j] + once->in[i].g[j];
                opt_case_free(tmp);
                snprintf(what, sizeof what, "%s: d%s accumulated onto nonzero buffer (+=)",
                         once->label, once->in[i].name);
                if (opt_compare(what, want, onto->in[i].g, n, 1e-6, 1e-7, msg, sizeof msg))
                    cr_expect(0, "%s", msg);
                free(want);
            }
            opt_case_free(once);
            opt_case_free(twice);
            opt_case_free(onto);
        }
    }
}

Test(ops_backend, backward_accumulates)
{
    for (int op = 0; op < ops_count(); op++) accumulates(ops_name(op));
}

/* NULL gradients: backward with each gradient alone gives the same values as
 * with all of them and leaves the others untouched; all NULL does nothing. One
 * test per op so a crash names the op. */
static void null_gradients(const char *op_name)
{
    const int op = ops_find(op_name);
    cr_assert(op >= 0);
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const void *impl = ops_impl(op, (tlb_backend)b);
        if (!impl || !backend_supported((tlb_backend)b)) continue;
        for (size_t s = 0; s < sizeof contract_shapes / sizeof contract_shapes[0]; s++) {
            const shape *sh = &contract_shapes[s];
            if (!same_op(sh, op_name)) continue;
            op_case *all = opt_case(op_name, impl, backend_name((tlb_backend)b), sh->dims,
                                    sh->rate, 61 + s);
            op_case *one = opt_case(op_name, impl, backend_name((tlb_backend)b), sh->dims,
                                    sh->rate, 61 + s);
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
                    snprintf(what, sizeof what, "%s: d%s with gradient mask 0x%x", one->label,
                             one->in[i].name, mask);
                    if (mask >> i & 1u) {
                        if (opt_compare(what, all->in[i].g, one->in[i].g, one->in[i].n, 1e-6,
                                        1e-7, msg, sizeof msg))
                            cr_expect(0, "%s", msg);
                    } else {
                        size_t nz = 0;
                        for (size_t j = 0; j < one->in[i].n; j++) nz += one->in[i].g[j] != 0.0f;
                        cr_expect(nz == 0, "%s: written although NULL was passed (%zu nonzero)",
                                  what, nz);
                    }
                }
            }
            opt_case_free(all);
            opt_case_free(one);
        }
    }
}

Test(ops_backend, null_gradients_dense) { null_gradients("dense"); }
Test(ops_backend, null_gradients_layernorm) { null_gradients("layernorm"); }
Test(ops_backend, null_gradients_attention) { null_gradients("attention"); }
Test(ops_backend, null_gradients_patch_conv) { null_gradients("patch_conv"); }
Test(ops_backend, null_gradients_posemb) { null_gradients("posemb"); }
Test(ops_backend, null_gradients_residual) { null_gradients("residual"); }
/* Single-gradient ops: NULL means the caller wants nothing. */
Test(ops_backend, null_gradients_gelu) { null_gradients("gelu"); }
Test(ops_backend, null_gradients_meanpool) { null_gradients("meanpool"); }
Test(ops_backend, null_gradients_softmax_xent) { null_gradients("softmax_xent"); }
Test(ops_backend, null_gradients_dropout) { null_gradients("dropout"); }

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
        const posemb_op *pe = ops_impl(ops_find("posemb"), (tlb_backend)b);
        if (pe) {
            op_case *c = opt_case("posemb", pe, bn, (int[6]){3, 5, 17}, 0, 3);
            c->forward(c);
            pe->forward(c->in[0].x, c->in[0].x, c->in[1].x, 3, 5, 17);
            cr_expect(memcmp(c->in[0].x, c->out[0].x, c->out[0].n * sizeof(float)) == 0,
                      "%s: in-place forward differs", c->label);
            opt_case_free(c);
        }
        const dropout_op *dr = ops_impl(ops_find("dropout"), (tlb_backend)b);
        if (dr) {
            op_case *c = opt_case("dropout", dr, bn, (int[6]){3, 37, 4}, 0.3f, 3);
            c->forward(c);
            dr->forward(c->in[0].x, c->in[0].x, 3, 37, c->dropp);
            cr_expect(memcmp(c->in[0].x, c->out[0].x, c->out[0].n * sizeof(float)) == 0,
                      "%s: in-place forward differs", c->label);
            opt_case_free(c);
        }
        const residual_op *rs = ops_impl(ops_find("residual"), (tlb_backend)b);
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

/* ========================= ops_dropout: mask properties ========================= */

/* Every available dropout implementation (ref first). */
#define FOR_DROPOUT_BACKENDS(b, impl)                                                       \
    for (int b = 0; b < TLB_BACKEND_COUNT; b++)                                           \
        for (const dropout_op *impl = ops_impl(ops_find("dropout"), (tlb_backend)b);        \
             impl && backend_supported((tlb_backend)b); impl = NULL)

static float *ones(size_t n)
{
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    return x;
}

Test(ops_dropout, same_ctx_same_mask_other_key_other_mask)
{
    const int B = 4;
    const size_t per = 257, n = B * per;
    float *x = ones(n), *a = malloc(n * 4), *c = malloc(n * 4);
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        dropout_ctx d = {0.3f, 12345, 7};
        impl->forward(a, x, B, per, &d);
        impl->forward(c, x, B, per, &d);
        cr_expect(memcmp(a, c, n * 4) == 0, "dropout[%s]: same ctx, different masks",
                  backend_name((tlb_backend)b));
        d.key = 12346;
        impl->forward(c, x, B, per, &d);
        cr_expect(memcmp(a, c, n * 4) != 0, "dropout[%s]: key ignored",
                  backend_name((tlb_backend)b));
        d.key = 12345;
        d.sample0 = 8;
        impl->forward(c, x, B, per, &d);
        /* sample0 shifts the samples: sample b of this call is sample b+1 of the first */
        cr_expect(memcmp(a + per, c, (n - per) * 4) == 0,
                  "dropout[%s]: mask is not a function of sample0 + b",
                  backend_name((tlb_backend)b));
        cr_expect(memcmp(a, a + per, per * 4) != 0, "dropout[%s]: samples 0 and 1 share a mask",
                  backend_name((tlb_backend)b));
        /* the mask is the one dropout_mask.h defines */
        for (int s = 0; s < B; s++) {
            const uint64_t key = dropout_sample_key(&(dropout_ctx){0.3f, 12345, 7}, s);
            for (size_t i = 0; i < per; i++)
                if (a[s * per + i] != dropout_scale_at(&(dropout_ctx){0.3f, 12345, 7}, key, i)) {
                    cr_expect(0, "dropout[%s]: sample %d elem %zu = %g, dropout_mask.h says %g",
                              backend_name((tlb_backend)b), s, i, a[s * per + i],
                              dropout_scale_at(&(dropout_ctx){0.3f, 12345, 7}, key, i));
                    break;
                }
        }
    }
    free(x);
    free(a);
    free(c);
}

/* The model's golden and micro-batch tests assume every backend draws the
 * same mask: forward and backward of every backend equal ref bit for bit, on
 * sizes with vector tails, a large sample0 and several rates. */
Test(ops_dropout, every_backend_bit_identical_to_ref)
{
    const dropout_op *ref = ref_impl("dropout");
    static const size_t pers[] = {1, 7, 9, 15, 17, 31, 33, 100, 1001};
    static const float rates[] = {0.1f, 0.5f, 0.9f};
    static const long sample0s[] = {0, 12345678901L};
    const int B = 3;
    const size_t cap = B * 1001;
    float *x = malloc(cap * 4), *g0 = malloc(cap * 4), *yr = malloc(cap * 4), *y = malloc(cap * 4);
    float *gr = malloc(cap * 4), *g = malloc(cap * 4);
    opt_fill(x, cap, 1.0f, 21);
    opt_fill(g0, cap, 1.0f, 22);
    int compared = 0;
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        if (b == TLB_BACKEND_REF) continue;
        for (size_t p = 0; p < sizeof pers / sizeof pers[0]; p++)
            for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++)
                for (size_t s = 0; s < sizeof sample0s / sizeof sample0s[0]; s++) {
                    const size_t per = pers[p], n = B * per;
                    const dropout_ctx d = {rates[r], 0x5eed + p, sample0s[s]};
                    ref->forward(yr, x, B, per, &d);
                    impl->forward(y, x, B, per, &d);
                    memcpy(gr, g0, n * 4);
                    memcpy(g, g0, n * 4);
                    ref->backward(gr, x, B, per, &d);
                    impl->backward(g, x, B, per, &d);
                    cr_expect(memcmp(y, yr, n * 4) == 0,
                              "dropout[%s] forward differs from ref: per_sample %zu rate %g sample0 %ld",
                              backend_name((tlb_backend)b), per, rates[r], sample0s[s]);
                    cr_expect(memcmp(g, gr, n * 4) == 0,
                              "dropout[%s] backward differs from ref: per_sample %zu rate %g sample0 %ld",
                              backend_name((tlb_backend)b), per, rates[r], sample0s[s]);
                    compared++;
                }
    }
    cr_log_info("dropout: %d (backend, shape) pairs bit-compared with ref", compared);
    free(x);
    free(g0);
    free(yr);
    free(y);
    free(gr);
    free(g);
}

Test(ops_dropout, microbatch_split_matches_one_call)
{
    const int B = 5, B1 = 2;
    const size_t per = 37, n = B * per;
    float *x = malloc(n * 4), *whole = malloc(n * 4), *split = malloc(n * 4);
    float *gw = calloc(n, 4), *gs = calloc(n, 4);
    opt_fill(x, n, 1.0f, 3);
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        const dropout_ctx d = {0.3f, 99, 0}, d1 = {0.3f, 99, B1};
        impl->forward(whole, x, B, per, &d);
        impl->forward(split, x, B1, per, &d);
        impl->forward(split + B1 * per, x + B1 * per, B - B1, per, &d1);
        cr_expect(memcmp(whole, split, n * 4) == 0, "dropout[%s] forward: split %d+%d differs",
                  backend_name((tlb_backend)b), B1, B - B1);
        memset(gw, 0, n * 4);
        memset(gs, 0, n * 4);
        impl->backward(gw, x, B, per, &d);
        impl->backward(gs, x, B1, per, &d);
        impl->backward(gs + B1 * per, x + B1 * per, B - B1, per, &d1);
        cr_expect(memcmp(gw, gs, n * 4) == 0, "dropout[%s] backward: split %d+%d differs",
                  backend_name((tlb_backend)b), B1, B - B1);
        /* backward applies the forward's mask: dinp = dout * mask, with dout = x */
        for (size_t i = 0; i < n; i++)
            if (gw[i] != whole[i]) {
                cr_expect(0, "dropout[%s]: backward mask differs from forward at %zu",
                          backend_name((tlb_backend)b), i);
                break;
            }
    }
    free(x);
    free(whole);
    free(split);
    free(gw);
    free(gs);
}

Test(ops_dropout, attention_microbatch_split_matches_one_call)
{
    const int B = 4, B1 = 1, Tq = 3, Tk = 5, H = 3, K = 5, HK = H * K;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const attention_op *at = ops_impl(ops_find("attention"), (tlb_backend)b);
        if (!at || !backend_supported((tlb_backend)b)) continue;
        op_case *c = opt_case("attention", at, backend_name((tlb_backend)b),
                              (int[6]){B, Tq, Tk, H, K, 0}, 0.3f, 8);
        opt_zero_grads(c);
        c->forward(c);
        c->backward(c, OPT_ALL_GRADS);
        const size_t nq = (size_t)B * Tq * HK, nk = (size_t)B * Tk * HK;
        float *out = calloc(nq, 4), *probs = calloc(c->out[1].n, 4);
        float *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4);
        const dropout_ctx d[2] = {{0.3f, c->drop.key, 0}, {0.3f, c->drop.key, B1}};
        const int b0[2] = {0, B1}, nb[2] = {B1, B - B1};
        for (int part = 0; part < 2; part++) {
            const size_t oq = (size_t)b0[part] * Tq * HK, ok = (size_t)b0[part] * Tk * HK;
            const size_t op = (size_t)b0[part] * H * Tq * Tk;
            at->forward(out + oq, probs + op, c->in[0].x + oq, c->in[1].x + ok, c->in[2].x + ok,
                        nb[part], Tq, Tk, H, K, &d[part]);
            at->backward(dq + oq, dk + ok, dv + ok, c->cot + oq, c->in[0].x + oq,
                         c->in[1].x + ok, c->in[2].x + ok, probs + op, nb[part], Tq, Tk, H, K,
                         &d[part]);
        }
        cr_expect(memcmp(out, c->out[0].x, nq * 4) == 0, "%s: split %d+%d changes out", c->label,
                  B1, B - B1);
        cr_expect(memcmp(dq, c->in[0].g, nq * 4) == 0, "%s: split changes dq", c->label);
        cr_expect(memcmp(dk, c->in[1].g, nk * 4) == 0, "%s: split changes dk", c->label);
        cr_expect(memcmp(dv, c->in[2].g, nk * 4) == 0, "%s: split changes dv", c->label);
        free(out);
        free(probs);
        free(dq);
        free(dk);
        free(dv);
        opt_case_free(c);
    }
}

Test(ops_dropout, kept_fraction_and_scale)
{
    const int B = 8;
    const size_t per = 25000, n = B * per;
    float *x = ones(n), *y = malloc(n * 4);
    static const float rates[] = {0.1f, 0.3f, 0.5f};
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        for (int r = 0; r < 3; r++) {
            const dropout_ctx d = {rates[r], 2024 + r, 0};
            impl->forward(y, x, B, per, &d);
            size_t kept = 0, odd = 0;
            const float keep_val = 1.0f / (1.0f - rates[r]);
            for (size_t i = 0; i < n; i++) {
                kept += y[i] != 0.0f;
                odd += y[i] != 0.0f && y[i] != keep_val;
            }
            const double frac = (double)kept / n, want = 1.0 - rates[r];
            const double sigma = sqrt(want * (1 - want) / n);
            cr_expect(fabs(frac - want) < 5 * sigma,
                      "dropout[%s] rate %g: kept %.5f, expected %.5f +- %.5f",
                      backend_name((tlb_backend)b), rates[r], frac, want, 5 * sigma);
            cr_expect(odd == 0, "dropout[%s] rate %g: %zu kept values not scaled by 1/(1-rate)",
                      backend_name((tlb_backend)b), rates[r], odd);
        }
    }
    free(x);
    free(y);
}

Test(ops_dropout, rate_zero_is_identity)
{
    const int B = 3;
    const size_t per = 37, n = B * per;
    float *x = malloc(n * 4), *y = malloc(n * 4), *g = malloc(n * 4), *g0 = malloc(n * 4);
    opt_fill(x, n, 1.0f, 5);
    opt_fill(g0, n, 1.0f, 6);
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        const dropout_ctx zero = {0.0f, 1, 0};
        for (int null_ctx = 0; null_ctx < 2; null_ctx++) {
            const dropout_ctx *d = null_ctx ? NULL : &zero;
            impl->forward(y, x, B, per, d);
            cr_expect(memcmp(x, y, n * 4) == 0, "dropout[%s] with %s is not the identity",
                      backend_name((tlb_backend)b), null_ctx ? "NULL ctx" : "rate 0");
            memcpy(g, g0, n * 4);
            impl->backward(g, x, B, per, d);
            for (size_t i = 0; i < n; i++)
                if (g[i] != g0[i] + x[i]) {
                    cr_expect(0, "dropout[%s] backward with %s: dinp[%zu] %g != %g",
                              backend_name((tlb_backend)b), null_ctx ? "NULL ctx" : "rate 0", i,
                              g[i], g0[i] + x[i]);
                    break;
                }
        }
    }
    /* attention: rate 0 and a NULL ctx are the same function */
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const attention_op *at = ops_impl(ops_find("attention"), (tlb_backend)b);
        if (!at || !backend_supported((tlb_backend)b)) continue;
        op_case *z = opt_case("attention", at, backend_name((tlb_backend)b),
                              (int[6]){2, 3, 5, 3, 5, 0}, 0.0f, 4);
        op_case *nul = opt_case("attention", at, backend_name((tlb_backend)b),
                                (int[6]){2, 3, 5, 3, 5, 0}, -1, 4);
        opt_zero_grads(z);
        opt_zero_grads(nul);
        z->forward(z);
        nul->forward(nul);
        z->backward(z, OPT_ALL_GRADS);
        nul->backward(nul, OPT_ALL_GRADS);
        char msg[768];
        cr_expect(opt_compare_cases(nul, z, 0, 0, msg, sizeof msg) == 0, "rate 0 vs NULL: %s",
                  msg);
        opt_case_free(z);
        opt_case_free(nul);
    }
    free(x);
    free(y);
    free(g);
    free(g0);
}

/* ============================ ops_registry ============================ */

static void restore_automatic(void)
{
    unsetenv("TLB_BACKEND");
    tlb_error err;
    ops_select(NULL, &err);
}

static void start_automatic(void) { restore_automatic(); }

TestSuite(ops_registry, .init = start_automatic, .fini = restore_automatic);

/* Where each op's chosen implementation lives in tlb_ops. */
static const struct {
    const char *name;
    const void *slot;
    size_t size;
} table_slots[] = {
    {"dense", &tlb_ops.dense, sizeof(dense_op)},
    {"layernorm", &tlb_ops.layernorm, sizeof(layernorm_op)},
    {"gelu", &tlb_ops.gelu, sizeof(gelu_op)},
    {"attention", &tlb_ops.attention, sizeof(attention_op)},
    {"patch_conv", &tlb_ops.patch_conv, sizeof(patch_conv_op)},
    {"posemb", &tlb_ops.posemb, sizeof(posemb_op)},
    {"meanpool", &tlb_ops.meanpool, sizeof(meanpool_op)},
    {"softmax_xent", &tlb_ops.softmax_xent, sizeof(softmax_xent_op)},
    {"dropout", &tlb_ops.dropout, sizeof(dropout_op)},
    {"residual", &tlb_ops.residual, sizeof(residual_op)},
};

/* tlb_ops holds exactly ops_impl(op, ops_chosen(op)). */
static void expect_table_consistent(const char *when)
{
    for (int op = 0; op < ops_count(); op++) {
        const tlb_backend b = ops_chosen(op);
        const void *impl = ops_impl(op, b);
        cr_expect_not_null(impl, "%s: op %s chose backend %s, which lacks it", when,
                           ops_name(op), backend_name(b));
        cr_expect(backend_supported(b), "%s: op %s chose unsupported backend %s", when,
                  ops_name(op), backend_name(b));
        int found = 0;
        for (size_t i = 0; i < sizeof table_slots / sizeof table_slots[0]; i++) {
            if (strcmp(table_slots[i].name, ops_name(op)) != 0) continue;
            found = 1;
            if (impl)
                cr_expect(memcmp(table_slots[i].slot, impl, table_slots[i].size) == 0,
                          "%s: tlb_ops.%s is not the %s implementation", when, ops_name(op),
                          backend_name(b));
        }
        cr_expect(found, "op %s has no slot in this test's table", ops_name(op));
    }
}

Test(ops_registry, introspection)
{
    cr_expect_geq(ops_count(), 10);
    for (int op = 0; op < ops_count(); op++) {
        cr_expect_not_null(ops_name(op));
        cr_expect_eq(ops_find(ops_name(op)), op, "ops_find(\"%s\")", ops_name(op));
    }
    cr_expect_eq(ops_find("nosuchop"), -1);
    cr_expect_null(ops_name(-1));
    cr_expect_null(ops_name(ops_count()));
    cr_expect_null(ops_impl(-1, TLB_BACKEND_REF));
    cr_expect_null(ops_impl(ops_count(), TLB_BACKEND_REF));
    cr_expect_null(ops_impl(0, TLB_BACKEND_COUNT));
    cr_expect(backend_supported(TLB_BACKEND_REF));
    cr_expect_str_eq(backend_name(TLB_BACKEND_REF), "ref");
    cr_expect_str_eq(backend_name(TLB_BACKEND_AVX2), "avx2");
    cr_expect_str_eq(backend_name(TLB_BACKEND_AVX512), "avx512");
    cr_expect_str_eq(backend_name(TLB_BACKEND_DNNL), "dnnl");
    expect_table_consistent("automatic choice");
}

Test(ops_registry, select_ref_forces_every_op)
{
    tlb_error err = {{0}};
    cr_assert_eq(ops_select("ref", &err), 0, "%s", err.msg);
    for (int op = 0; op < ops_count(); op++)
        cr_expect_eq(ops_chosen(op), TLB_BACKEND_REF, "op %s is on %s after \"ref\"",
                     ops_name(op), backend_name(ops_chosen(op)));
    expect_table_consistent("after ops_select(\"ref\")");
}

Test(ops_registry, select_one_op)
{
    tlb_backend automatic[64];
    for (int op = 0; op < ops_count(); op++) automatic[op] = ops_chosen(op);
    tlb_error err = {{0}};
    cr_assert_eq(ops_select("dense:ref", &err), 0, "%s", err.msg);
    for (int op = 0; op < ops_count(); op++) {
        const tlb_backend want = strcmp(ops_name(op), "dense") == 0 ? TLB_BACKEND_REF : automatic[op];
        cr_expect_eq(ops_chosen(op), want, "after \"dense:ref\": op %s on %s, expected %s",
                     ops_name(op), backend_name(ops_chosen(op)), backend_name(want));
    }
    expect_table_consistent("after \"dense:ref\"");
    /* A backend-wide choice mixed with per-op ones, later entries winning. */
    cr_assert_eq(ops_select("ref,gelu:ref,attention:ref", &err), 0, "%s", err.msg);
    for (int op = 0; op < ops_count(); op++) cr_expect_eq(ops_chosen(op), TLB_BACKEND_REF);
}

/* Each supported backend name selects it for every op it implements and keeps
 * the automatic choice for the rest. */
Test(ops_registry, select_each_supported_backend)
{
    tlb_backend automatic[64];
    for (int op = 0; op < ops_count(); op++) automatic[op] = ops_chosen(op);
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        tlb_error err = {{0}};
        const char *name = backend_name((tlb_backend)b);
        if (!backend_supported((tlb_backend)b)) {
            cr_expect_eq(ops_select(name, &err), -1, "unsupported backend %s accepted", name);
            cr_expect(strstr(err.msg, name) != NULL, "error does not name %s: %s", name, err.msg);
            continue;
        }
        cr_assert_eq(ops_select(name, &err), 0, "\"%s\": %s", name, err.msg);
        for (int op = 0; op < ops_count(); op++) {
            const tlb_backend want = ops_impl(op, (tlb_backend)b) ? (tlb_backend)b : automatic[op];
            cr_expect_eq(ops_chosen(op), want, "after \"%s\": op %s on %s, expected %s", name,
                         ops_name(op), backend_name(ops_chosen(op)), backend_name(want));
            if (ops_impl(op, (tlb_backend)b))
                cr_expect_eq(ops_force(op, (tlb_backend)b), 0);
            else
                cr_expect_eq(ops_force(op, (tlb_backend)b), -1, "ops_force(%s, %s) accepted",
                             ops_name(op), name);
        }
        expect_table_consistent(name);
    }
}

Test(ops_registry, errors_name_the_culprit)
{
    static const struct {
        const char *spec, *named;
    } bad[] = {
        {"bogus", "bogus"},
        {"dense:bogus", "bogus"},
        {"nosuchop:ref", "nosuchop"},
        {"ref,gelu:avx3", "avx3"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        tlb_error err = {{0}};
        cr_expect_eq(ops_select(bad[i].spec, &err), -1, "spec \"%s\" accepted", bad[i].spec);
        cr_expect(strstr(err.msg, bad[i].named) != NULL,
                  "error for \"%s\" does not name '%s': %s", bad[i].spec, bad[i].named, err.msg);
    }
}

Test(ops_registry, environment_overrides)
{
    tlb_error err = {{0}};
    cr_assert_eq(setenv("TLB_BACKEND", "ref", 1), 0);
    cr_assert_eq(ops_select(NULL, &err), 0, "%s", err.msg);
    for (int op = 0; op < ops_count(); op++)
        cr_expect_eq(ops_chosen(op), TLB_BACKEND_REF, "TLB_BACKEND=ref: op %s on %s",
                     ops_name(op), backend_name(ops_chosen(op)));
    /* the environment is applied after the spec, so it wins */
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        cr_assert_eq(ops_select(backend_name((tlb_backend)b), &err), 0, "%s", err.msg);
        for (int op = 0; op < ops_count(); op++)
            cr_expect_eq(ops_chosen(op), TLB_BACKEND_REF, "spec %s, TLB_BACKEND=ref: op %s on %s",
                         backend_name((tlb_backend)b), ops_name(op),
                         backend_name(ops_chosen(op)));
    }
    cr_assert_eq(setenv("TLB_BACKEND", "dense:bogus", 1), 0);
    cr_expect_eq(ops_select(NULL, &err), -1, "TLB_BACKEND=dense:bogus accepted");
    cr_expect(strstr(err.msg, "TLB_BACKEND") && strstr(err.msg, "bogus"),
              "error does not name the variable and the value: %s", err.msg);
    unsetenv("TLB_BACKEND");
    cr_assert_eq(ops_select(NULL, &err), 0, "%s", err.msg);
    expect_table_consistent("after unsetenv");
}
