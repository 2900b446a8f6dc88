/* The reference layernorm_pair: ref's LayerNorm twice (ops.h). The second
 * forward recomputes the same statistics into the same mean/rstd. */
#include "ops/impls.h"

static void layernorm_pair_forward_ref(float *out1, float *out2, float *mean, float *rstd,
                                       const float *inp, const float *gamma1, const float *beta1,
                                       const float *gamma2, const float *beta2, int M, int D)
{
    layernorm_ref.forward(out1, mean, rstd, inp, gamma1, beta1, M, D);
    layernorm_ref.forward(out2, mean, rstd, inp, gamma2, beta2, M, D);
}

static void layernorm_pair_backward_ref(float *dinp, float *dgamma1, float *dbeta1, float *dgamma2,
                                        float *dbeta2, const float *dout1, const float *dout2,
                                        const float *inp, const float *gamma1, const float *gamma2,
                                        const float *mean, const float *rstd, int M, int D)
{
    layernorm_ref.backward(dinp, dgamma1, dbeta1, dout1, inp, gamma1, mean, rstd, M, D);
    layernorm_ref.backward(dinp, dgamma2, dbeta2, dout2, inp, gamma2, mean, rstd, M, D);
}

const layernorm_pair_op layernorm_pair_ref = {layernorm_pair_forward_ref, layernorm_pair_backward_ref,
                                              NULL, NULL};
