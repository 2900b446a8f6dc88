/* Dense layer with AVX-512 FMA: 6 x 64 tiles of C in 24 zmm registers, masked
 * loads and stores for column tails (see dense_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/dense_simd.h"

const dense_op dense_avx512 = {dense_forward_simd, dense_backward_simd, dense_prepare_simd, dense_backward_first_simd};
