/* Patch convolution (kernel = stride): each token is the dot product of one
 * P x P x 3 patch, read in (kh, kw, c) order, with the [P*P*3, D] kernel. */
#include "ops/impls.h"

/* Offset of patch element `row` (= (kh*P + kw)*3 + c) of token n in img. */
static inline size_t patch_pixel(int b, int n, int row, int S, int P)
{
    const int G = S / P, i = n / G, j = n % G;
    const int c = row % 3, kw = (row / 3) % P, kh = row / (3 * P);
    return (((size_t)b * S + (size_t)i * P + kh) * S + (size_t)j * P + kw) * 3 + c;
}

static void patch_conv_forward_ref(float *out, const float *img, const float *w,
                                   const float *bias, int B, int S, int P, int D)
{
    const int N = (S / P) * (S / P), R = P * P * 3;
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int n = 0; n < N; n++) {
            float *o = out + ((size_t)b * N + n) * D;
            for (int d = 0; d < D; d++) o[d] = bias ? bias[d] : 0.0f;
            for (int row = 0; row < R; row++) {
                const float x = img[patch_pixel(b, n, row, S, P)];
                const float *wr = w + (size_t)row * D;
                for (int d = 0; d < D; d++) o[d] += x * wr[d];
            }
        }
    }
}

static void patch_conv_backward_ref(float *dimg, float *dw, float *dbias, const float *dout,
                                    const float *img, const float *w, int B, int S, int P, int D)
{
    const int N = (S / P) * (S / P), R = P * P * 3;
    if (dimg) { /* patches do not overlap, so each pixel has one writer */
#pragma omp parallel for collapse(2) schedule(static)
        for (int b = 0; b < B; b++)
            for (int n = 0; n < N; n++) {
                const float *g = dout + ((size_t)b * N + n) * D;
                for (int row = 0; row < R; row++) {
                    const float *wr = w + (size_t)row * D;
                    float s = 0.0f;
                    for (int d = 0; d < D; d++) s += g[d] * wr[d];
                    dimg[patch_pixel(b, n, row, S, P)] += s;
                }
            }
    }
    if (dw) {
#pragma omp parallel for schedule(static)
        for (int row = 0; row < R; row++) {
            float *dwr = dw + (size_t)row * D;
            for (int b = 0; b < B; b++)
                for (int n = 0; n < N; n++) {
                    const float x = img[patch_pixel(b, n, row, S, P)];
                    const float *g = dout + ((size_t)b * N + n) * D;
                    for (int d = 0; d < D; d++) dwr[d] += x * g[d];
                }
        }
    }
    if (dbias) {
        for (size_t t = 0; t < (size_t)B * N; t++)
            for (int d = 0; d < D; d++) dbias[d] += dout[t * D + d];
    }
}

const patch_conv_op patch_conv_ref = {patch_conv_forward_ref, patch_conv_backward_ref, NULL, NULL};
