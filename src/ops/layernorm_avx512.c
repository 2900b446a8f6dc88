/* Layer normalisation with AVX-512, in zmm chunks (see layernorm_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/layernorm_simd.h"

const layernorm_op layernorm_avx512 = {layernorm_forward_simd, layernorm_backward_simd, NULL, NULL};
