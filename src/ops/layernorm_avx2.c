/* Layer normalisation with AVX2, in ymm chunks (see layernorm_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/layernorm_simd.h"

const layernorm_op layernorm_avx2 = {layernorm_forward_simd, layernorm_backward_simd, NULL, NULL};
