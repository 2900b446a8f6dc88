#include "ops/impls.h"

#include <math.h>

static void gelu_forward_ref(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = 0.5f * inp[i] * (1.0f + erff(inp[i] * (float)M_SQRT1_2));
}

static void gelu_backward_ref(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
    const float inv_sqrt_2pi = 0.3989422804014327f;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float x = inp[i];
        const float cdf = 0.5f * (1.0f + erff(x * (float)M_SQRT1_2));
        const float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

const gelu_op gelu_ref = {gelu_forward_ref, gelu_backward_ref, NULL, NULL};
