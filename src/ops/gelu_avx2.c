/* Exact GELU with AVX2: 8 values per step (see gelu_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/gelu_simd.h"

const gelu_op gelu_avx2 = {gelu_forward_simd, gelu_backward_simd, NULL, NULL};
