/* Residual add with AVX-512: 16 values per step (see residual_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/residual_simd.h"

const residual_op residual_avx512 = {residual_forward_simd, residual_backward_simd, NULL, NULL};
