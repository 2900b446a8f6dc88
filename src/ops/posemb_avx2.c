/* Position embedding add with AVX2: 8 values per step (see posemb_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/posemb_simd.h"

const posemb_op posemb_avx2 = {posemb_forward_simd, posemb_backward_simd, NULL, NULL};
