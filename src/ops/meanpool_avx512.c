/* Mean over tokens with AVX-512: 16 features per step (see meanpool_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/meanpool_simd.h"

const meanpool_op meanpool_avx512 = {meanpool_forward_simd, meanpool_backward_simd, NULL, NULL};
