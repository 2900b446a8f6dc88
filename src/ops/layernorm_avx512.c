/* Layer normalisation with AVX-512, in zmm chunks (see layernorm_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/layernorm_simd.h"

const layernorm_op layernorm_avx512 = {layernorm_forward_simd, layernorm_backward_simd, NULL, NULL};

void layernorm_apply_avx512(float *out, const float *inp, const float *mean, const float *rstd,
                            const float *gamma, const float *beta, int M, int D)
{
    layernorm_apply_simd(out, inp, mean, rstd, gamma, beta, M, D);
}
