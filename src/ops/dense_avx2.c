/* Dense layer with AVX2 FMA: 6 x 16 tiles of C in 12 ymm registers, maskload
 * and maskstore for column tails (see dense_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/dense_simd.h"

const dense_op dense_avx2 = {dense_forward_simd, dense_backward_simd, dense_prepare_simd, dense_backward_first_simd};
