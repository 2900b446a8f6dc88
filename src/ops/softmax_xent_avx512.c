/* Softmax cross-entropy with AVX-512: 16 classes per step (see softmax_xent_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/softmax_xent_simd.h"

const softmax_xent_op softmax_xent_avx512 = {softmax_xent_forward_simd, softmax_xent_backward_simd, NULL, NULL};
