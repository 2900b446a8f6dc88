/* Plain C dense layer: the readable definition every other backend is tested
 * against. Rows are independent, so OpenMP splits them; every reduction runs
 * in a fixed order so results do not depend on the thread count. */
#include "ops/impls.h"

static void dense_forward_ref(float *out, const float *inp, const float *w, const float *bias,
                              int M, int K, int N)
{
#pragma omp parallel for schedule(static)
    for (int m = 0; m < M; m++) {
        float *o = out + (size_t)m * N;
        const float *x = inp + (size_t)m * K;
        for (int n = 0; n < N; n++) o[n] = bias ? bias[n] : 0.0f;
        for (int k = 0; k < K; k++) {
            const float a = x[k];
            const float *wr = w + (size_t)k * N;
            for (int n = 0; n < N; n++) o[n] += a * wr[n];
        }
    }
}

static void dense_backward_ref(float *dinp, float *dw, float *dbias, const float *dout,
                               const float *inp, const float *w, int M, int K, int N)
{
    if (dinp) {
#pragma omp parallel for schedule(static)
        for (int m = 0; m < M; m++) {
            const float *g = dout + (size_t)m * N;
            float *dx = dinp + (size_t)m * K;
            for (int k = 0; k < K; k++) {
                const float *wr = w + (size_t)k * N;
                float s = 0.0f;
                for (int n = 0; n < N; n++) s += g[n] * wr[n];
                dx[k] += s;
            }
        }
    }
    if (dw) {
#pragma omp parallel for schedule(static)
        for (int k = 0; k < K; k++) {
            float *dwr = dw + (size_t)k * N;
            for (int m = 0; m < M; m++) {
                const float a = inp[(size_t)m * K + k];
                const float *g = dout + (size_t)m * N;
                for (int n = 0; n < N; n++) dwr[n] += a * g[n];
            }
        }
    }
    if (dbias) {
        for (int m = 0; m < M; m++) {
            const float *g = dout + (size_t)m * N;
            for (int n = 0; n < N; n++) dbias[n] += g[n];
        }
    }
}

const dense_op dense_ref = {dense_forward_ref, dense_backward_ref, NULL, NULL};
