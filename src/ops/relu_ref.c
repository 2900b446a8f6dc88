/* ReLU: the head's hidden layer (head_hidden). */
#include "ops/impls.h"

static void relu_forward_ref(float *out, const float *inp, size_t n)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

static void relu_backward_ref(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}

const relu_op relu_ref = {relu_forward_ref, relu_backward_ref, NULL, NULL};
