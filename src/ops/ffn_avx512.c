/* ffn with AVX-512: fc1 with GELU and fc2 with dropout and the residual add
 * in the products' output passes (see ffn_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/dropout_mask_avx512.h"
#define VKEEP(drop, key, elem0) mask_keep_x16(drop, key, elem0)
#include "ops/ffn_simd.h"

const ffn_op ffn_avx512 = {ffn_forward_simd, ffn_backward_simd, ffn_prepare_simd, ffn_backward_first_simd};
const ffn_h16_op ffn_h16_avx512 = {ffn_forward_h16_simd, ffn_backward_h16_simd, ffn_backward_first_h16_simd};
