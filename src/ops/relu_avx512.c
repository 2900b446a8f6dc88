/* ReLU with AVX-512: 16 values per step (see relu_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/relu_simd.h"

const relu_op relu_avx512 = {relu_forward_simd, relu_backward_simd, NULL, NULL};
