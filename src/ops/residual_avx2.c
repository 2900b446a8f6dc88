/* Residual add with AVX2: 8 values per step (see residual_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/residual_simd.h"

const residual_op residual_avx2 = {residual_forward_simd, residual_backward_simd, NULL, NULL};
