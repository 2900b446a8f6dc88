/* ops_forward: ref forwards against plain double-precision definitions. */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_testing.h"
#include "ops/ops.h"

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

/* Every backend's GELU against its definition in double precision, across
 * the whole range it meets and beyond the SIMD clamps (AVX2's erf at |x| >
 * 4 sqrt2, AVX-512's tables at 6): the forward within 4e-7 of max(1, |x|)
 * (AVX2's rational erf is good to 3.4e-7) and the derivative (the backward
 * with dout 1), O(1) everywhere, within 1e-6 absolute; a fit with a wrong
 * coefficient misses both, and a NaN counts as the worst error. */
Test(ops_forward, gelu_every_backend_against_the_definition)
{
    /* x in [-12, 12] in steps of 1e-3 (every cell of the AVX-512 tables, and
     * past their clamp at 6), then far out: a cell index that wrapped or a
     * clamp that failed shows there. */
    static const float far[] = {-3e38f, -1e30f, -1e4f, -100.0f, -20.0f, 20.0f, 100.0f, 1e4f, 1e30f, 3e38f};
    const int grid = 24001, nfar = (int)(sizeof far / sizeof *far), n = grid + nfar;
    float *x = malloc(n * sizeof(float)), *y = malloc(n * sizeof(float)), *dx = malloc(n * sizeof(float));
    float *ones = malloc(n * sizeof(float));
    for (int i = 0; i < n; i++) x[i] = i < grid ? -12.0f + 1e-3f * (float)i : far[i - grid], ones[i] = 1.0f;
    int runs = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b) || !ops_impl_gelu((tlb_backend)b)) continue;
        const gelu_op *g = ops_impl_gelu((tlb_backend)b);
        g->forward(y, x, (size_t)n);
        memset(dx, 0, n * sizeof(float));
        g->backward(dx, ones, x, (size_t)n);
        double worst_f = 0.0, worst_d = 0.0;
        int at_f = 0, at_d = 0;
        for (int i = 0; i < n; i++) {
            const double v = x[i], cdf = 0.5 * (1 + erf(v / sqrt(2.0)));
            const double pdf = exp(-0.5 * v * v) / sqrt(2.0 * M_PI), s = fmax(1.0, fabs(v));
            const double ef = fabs(y[i] - v * cdf) / s, ed = fabs(dx[i] - (cdf + v * pdf)); /* gelu' is O(1) everywhere */
            if (!(ef <= worst_f)) worst_f = isnan(ef) ? INFINITY : ef, at_f = i; /* NaN: worst */
            if (!(ed <= worst_d)) worst_d = isnan(ed) ? INFINITY : ed, at_d = i;
        }
        cr_log_info("gelu %s: forward %.3g at x = %g, derivative %.3g at x = %g", backend_name((tlb_backend)b),
                    worst_f, x[at_f], worst_d, x[at_d]);
        cr_expect_leq(worst_f, 4e-7, "%s: gelu(%g) off by %.3g", backend_name((tlb_backend)b), x[at_f], worst_f);
        cr_expect_leq(worst_d, 1e-6, "%s: gelu'(%g) off by %.3g", backend_name((tlb_backend)b), x[at_d], worst_d);
        runs++;
    }
    cr_expect_geq(runs, 1);
    free(x), free(y), free(dx), free(ones);
}
