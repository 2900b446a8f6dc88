#include "ops/impls.h"

#include <math.h>

#define LN_EPS 1e-5f

static void layernorm_forward_ref(float *out, float *mean, float *rstd, const float *inp,
                                  const float *gamma, const float *beta, int M, int D)
{
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D;
        float *o = out + (size_t)m * D;
        float mu = 0.0f;
        for (int d = 0; d < D; d++) mu += x[d];
        mu /= (float)D;
        float var = 0.0f; /* two passes: exact enough for rows far from zero mean */
        for (int d = 0; d < D; d++) var += (x[d] - mu) * (x[d] - mu);
        var /= (float)D;
        const float rs = 1.0f / sqrtf(var + LN_EPS);
        for (int d = 0; d < D; d++) o[d] = (x[d] - mu) * rs * gamma[d] + beta[d];
        mean[m] = mu;
        rstd[m] = rs;
    }
}

/* The forward's last loop, from the saved statistics (its mu and rs are
 * the floats it saved, so the expression gives the same bits). */
void layernorm_apply_ref(float *out, const float *inp, const float *mean, const float *rstd,
                         const float *gamma, const float *beta, int M, int D)
{
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D;
        float *o = out + (size_t)m * D;
        const float mu = mean[m], rs = rstd[m];
        for (int d = 0; d < D; d++) o[d] = (x[d] - mu) * rs * gamma[d] + beta[d];
    }
}

static void layernorm_backward_ref(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                   const float *inp, const float *gamma, const float *mean,
                                   const float *rstd, int M, int D)
{
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *g = dout + (size_t)m * D;
            const float mu = mean[m], rs = rstd[m];
            float mean_dn = 0.0f, mean_dn_xhat = 0.0f;
            for (int d = 0; d < D; d++) {
                const float dn = g[d] * gamma[d];
                mean_dn += dn;
                mean_dn_xhat += dn * (x[d] - mu) * rs;
            }
            mean_dn /= (float)D;
            mean_dn_xhat /= (float)D;
            float *dx = dinp + (size_t)m * D;
            for (int d = 0; d < D; d++) {
                const float xhat = (x[d] - mu) * rs;
                dx[d] += (g[d] * gamma[d] - mean_dn - xhat * mean_dn_xhat) * rs;
            }
        }
    }
    if (dgamma || dbeta) {
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *g = dout + (size_t)m * D;
            for (int d = 0; d < D; d++) {
                if (dgamma) dgamma[d] += g[d] * (x[d] - mean[m]) * rstd[m];
                if (dbeta) dbeta[d] += g[d];
            }
        }
    }
}

const layernorm_op layernorm_ref = {layernorm_forward_ref, layernorm_backward_ref, NULL, NULL};
