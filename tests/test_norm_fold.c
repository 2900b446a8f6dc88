/* norm_fold: LayerNorm folded into the product it feeds (model/norm_fold.h).
 * In double precision beside it: LN(x) @ W + b against z @ W' + b' from the
 * folded weights, and the gradients of W, b, gamma and beta that the
 * unfolded chain gives (dW = LN(x)^T dY, db = column sums of dY,
 * dgamma = sum over rows of (dY W^T) z, dbeta = sum of dY W^T) against
 * norm_fold_grads of z^T dY and the column sums; odd shapes, random gamma
 * and beta, and accumulation onto what the gradients held. */
#include <criterion/criterion.h>

#include <math.h>
#include <stdlib.h>

#include "model/norm_fold.h"
#include "util/rng.h"

static float *uniform(size_t n, uint64_t seed, float amp, float offset)
{
    rng_stream r = {seed, 0};
    float *p = malloc(n * sizeof(float));
    cr_assert_not_null(p);
    for (size_t i = 0; i < n; i++) p[i] = offset + amp * (rng_next_uniform(&r) - 0.5f);
    return p;
}

static double scale_of(const double *x, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s = fmax(s, fabs(x[i]));
    return s;
}

/* Each of n values within tol of the scale of want. */
static void expect_near(const char *what, int M, int D, int N, const double *want, const float *got, size_t n,
                        double tol)
{
    const double scale = scale_of(want, n);
    for (size_t i = 0; i < n; i++)
        if (fabs(got[i] - want[i]) > tol * scale) {
            cr_expect_fail("M%d D%d N%d: %s[%zu] = %.9g, want %.9g (scale %.3g)", M, D, N, what, i, got[i],
                           want[i], scale);
            return;
        }
}

static const int shapes[][3] = {{1, 1, 1}, {9, 5, 7}, {3, 16, 17}, {37, 64, 64}, {6, 33, 2}};

Test(norm_fold, forward_and_gradients_equal_the_unfolded_chain)
{
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int M = shapes[s][0], D = shapes[s][1], N = shapes[s][2];
        float *x = uniform((size_t)M * D, 1 + s, 4.0f, 0.7f), *W = uniform((size_t)D * N, 2 + s, 1.0f, 0.0f);
        float *b = uniform(N, 3 + s, 1.0f, 0.0f), *gamma = uniform(D, 4 + s, 1.0f, 1.0f);
        float *beta = uniform(D, 5 + s, 1.0f, 0.0f), *dY = uniform((size_t)M * N, 6 + s, 2.0f, 0.0f);
        float *wf = malloc((size_t)D * N * sizeof(float)), *bf = malloc(N * sizeof(float));
        double *z = calloc((size_t)M * D, sizeof(double)), *y = calloc((size_t)M * N, sizeof(double));
        for (int m = 0; m < M; m++) { /* z = (x - mean) rstd in double */
            double mean = 0.0, var = 0.0;
            for (int d = 0; d < D; d++) mean += x[m * D + d];
            mean /= D;
            for (int d = 0; d < D; d++) var += (x[m * D + d] - mean) * (x[m * D + d] - mean);
            const double rstd = 1.0 / sqrt(var / D + 1e-5);
            for (int d = 0; d < D; d++) z[m * D + d] = (x[m * D + d] - mean) * rstd;
        }
        for (int m = 0; m < M; m++) /* y = LN(x) @ W + b */
            for (int j = 0; j < N; j++) {
                double acc = b[j];
                for (int d = 0; d < D; d++) acc += (z[m * D + d] * gamma[d] + beta[d]) * W[d * N + j];
                y[m * N + j] = acc;
            }
        norm_fold_weights(wf, bf, gamma, beta, W, b, D, N);
        float *yf = malloc((size_t)M * N * sizeof(float));
        for (int m = 0; m < M; m++)
            for (int j = 0; j < N; j++) {
                double acc = bf[j];
                for (int d = 0; d < D; d++) acc += z[m * D + d] * wf[d * N + j];
                yf[m * N + j] = (float)acc;
            }
        expect_near("z @ W' + b'", M, D, N, y, yf, (size_t)M * N, 1e-6);

        /* the unfolded chain's gradients, onto start values */
        float *dW = uniform((size_t)D * N, 7 + s, 1.0f, 0.0f), *db = uniform(N, 8 + s, 1.0f, 0.0f);
        float *dg = uniform(D, 9 + s, 1.0f, 0.0f), *dbe = uniform(D, 10 + s, 1.0f, 0.0f);
        double *wdW = malloc((size_t)D * N * sizeof(double)), *wdb = malloc(N * sizeof(double));
        double *wdg = malloc(D * sizeof(double)), *wdbe = malloc(D * sizeof(double));
        for (int d = 0; d < D; d++) wdg[d] = dg[d], wdbe[d] = dbe[d];
        for (int j = 0; j < N; j++) wdb[j] = db[j];
        for (int i = 0; i < D * N; i++) wdW[i] = dW[i];
        float *G = calloc((size_t)D * N, sizeof(float)), *g = calloc(N, sizeof(float));
        for (int m = 0; m < M; m++) {
            for (int j = 0; j < N; j++) {
                wdb[j] += dY[m * N + j];
                g[j] += dY[m * N + j];
                for (int d = 0; d < D; d++) {
                    wdW[d * N + j] += (z[m * D + d] * gamma[d] + beta[d]) * dY[m * N + j];
                    G[d * N + j] += (float)(z[m * D + d] * dY[m * N + j]);
                }
            }
            for (int d = 0; d < D; d++) { /* d LN(x) = dY W^T */
                double dln = 0.0;
                for (int j = 0; j < N; j++) dln += dY[m * N + j] * (double)W[d * N + j];
                wdg[d] += dln * z[m * D + d];
                wdbe[d] += dln;
            }
        }
        norm_fold_grads(dW, db, dg, dbe, G, g, gamma, beta, W, D, N);
        expect_near("dW", M, D, N, wdW, dW, (size_t)D * N, 2e-6);
        expect_near("db", M, D, N, wdb, db, (size_t)N, 2e-6);
        expect_near("dgamma", M, D, N, wdg, dg, (size_t)D, 2e-6);
        expect_near("dbeta", M, D, N, wdbe, dbe, (size_t)D, 2e-6);
        free(x), free(W), free(b), free(gamma), free(beta), free(dY), free(wf), free(bf), free(z), free(y), free(yf);
        free(dW), free(db), free(dg), free(dbe), free(wdW), free(wdb), free(wdg), free(wdbe), free(G), free(g);
    }
}
