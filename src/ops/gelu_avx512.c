/* Exact GELU with AVX-512: 16 values per step (see gelu_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/gelu_simd.h"

const gelu_op gelu_avx512 = {gelu_forward_simd, gelu_backward_simd, NULL, NULL};
