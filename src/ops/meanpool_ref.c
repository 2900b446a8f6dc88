/* Mean over tokens: the head pools the last chunk's fast stream. */
#include "ops/impls.h"

static void meanpool_forward_ref(float *out, const float *inp, int B, int T, int D)
{
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++) {
            float s = 0.0f;
            for (int t = 0; t < T; t++) s += inp[((size_t)b * T + t) * D + d];
            out[(size_t)b * D + d] = s / (float)T;
        }
}

static void meanpool_backward_ref(float *dinp, const float *dout, int B, int T, int D)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
            for (int d = 0; d < D; d++)
                dinp[((size_t)b * T + t) * D + d] += dout[(size_t)b * D + d] / (float)T;
}

const meanpool_op meanpool_ref = {meanpool_forward_ref, meanpool_backward_ref, NULL, NULL};
