/* ReLU with AVX2: 8 values per step (see relu_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/relu_simd.h"

const relu_op relu_avx2 = {relu_forward_simd, relu_backward_simd, NULL, NULL};
