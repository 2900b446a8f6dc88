/* Position embedding add with AVX-512: 16 values per step (see posemb_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/posemb_simd.h"

const posemb_op posemb_avx512 = {posemb_forward_simd, posemb_backward_simd, NULL, NULL};
