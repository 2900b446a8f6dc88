/* Mean over tokens with AVX2: 8 features per step (see meanpool_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/meanpool_simd.h"

const meanpool_op meanpool_avx2 = {meanpool_forward_simd, meanpool_backward_simd, NULL, NULL};
