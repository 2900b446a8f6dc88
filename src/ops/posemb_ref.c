/* Position embedding add: one learned vector per token position. */
#include "ops/impls.h"

static void posemb_forward_ref(float *out, const float *inp, const float *pos, int B, int N, int D)
{
    const size_t nd = (size_t)N * D;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (size_t i = 0; i < nd; i++) out[b * nd + i] = inp[b * nd + i] + pos[i];
}

static void posemb_backward_ref(float *dinp, float *dpos, const float *dout, int B, int N, int D)
{
    const size_t nd = (size_t)N * D;
    if (dinp)
        for (size_t i = 0; i < (size_t)B * nd; i++) dinp[i] += dout[i];
    if (dpos)
        for (int b = 0; b < B; b++)
            for (size_t i = 0; i < nd; i++) dpos[i] += dout[b * nd + i];
}

const posemb_op posemb_ref = {posemb_forward_ref, posemb_backward_ref, NULL, NULL};
