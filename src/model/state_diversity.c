#include "model/state_diversity.h"

#include <math.h>
#include <stddef.h>

/* Eigenvalues of the symmetric n x n matrix a (row-major, destroyed) by
 * cyclic Jacobi rotations, left on its diagonal. n is small (the state has
 * a few rows), so the O(n^3) sweeps cost nothing next to a forward. */
static void jacobi_eigenvalues(double *a, int n)
{
    for (int sweep = 0; sweep < 100; sweep++) {
        double off = 0.0, diag = 0.0;
        for (int i = 0; i < n; i++)
            for (int j = 0; j < n; j++) {
                if (i == j) diag += a[i * n + i] * a[i * n + i];
                else off += a[i * n + j] * a[i * n + j];
            }
        if (off <= 1e-30 * diag || off == 0.0) return;
        for (int p = 0; p < n; p++)
            for (int q = p + 1; q < n; q++) {
                const double apq = a[p * n + q];
                if (apq == 0.0) continue;
                const double theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1.0));
                const double c = 1.0 / sqrt(t * t + 1.0), s = t * c;
                for (int k = 0; k < n; k++) { /* columns p, q */
                    const double akp = a[k * n + p], akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for (int k = 0; k < n; k++) { /* rows p, q */
                    const double apk = a[p * n + k], aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
            }
    }
}

state_diversity state_diversity_of(const float *states, int B, int Ns, int D, double *work)
{
    state_diversity sum = {0.0, 0.0};
    if (B < 1) return sum;
    double *g = work;
    for (int b = 0; b < B; b++) {
        const float *x = states + (size_t)b * Ns * D;
        /* The Gram matrix S S^T: its eigenvalues are the squared singular values. */
        for (int i = 0; i < Ns; i++)
            for (int j = i; j < Ns; j++) {
                double dot = 0.0;
                for (int d = 0; d < D; d++) dot += (double)x[(size_t)i * D + d] * x[(size_t)j * D + d];
                g[i * Ns + j] = g[j * Ns + i] = dot;
            }
        double cos_sum = 0.0;
        for (int i = 0; i < Ns; i++)
            for (int j = i + 1; j < Ns; j++) {
                const double ni = g[i * Ns + i], nj = g[j * Ns + j];
                /* Two zero rows are the same row; a zero and a non-zero one are not alike. */
                cos_sum += (ni > 0 && nj > 0) ? g[i * Ns + j] / sqrt(ni * nj) : (ni == nj ? 1.0 : 0.0);
            }
        const int pairs = Ns * (Ns - 1) / 2;
        sum.cosine += pairs > 0 ? cos_sum / pairs : 1.0;

        jacobi_eigenvalues(g, Ns);
        double top = 0.0;
        for (int i = 0; i < Ns; i++) top = fmax(top, g[i * Ns + i]);
        int rank = 0;
        /* sigma_i > 0.01 sigma_max  <=>  lambda_i > 1e-4 lambda_max */
        for (int i = 0; i < Ns; i++) rank += top > 0 && g[i * Ns + i] > 1e-4 * top;
        sum.rank += rank;
    }
    sum.cosine /= B;
    sum.rank /= B;
    return sum;
}
