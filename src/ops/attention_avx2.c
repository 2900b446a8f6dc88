/* Attention core with AVX2 (see attention_simd.h). AVX2 has no 64-bit
 * multiply, so the dropout mask comes from the scalar dropout_scale_at
 * (identical by construction): no VKEEP here. */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/attention_simd.h"

const attention_op attention_avx2 = {attention_forward_simd, attention_backward_simd};
