/* Dropout with AVX2: the mask 8 lanes at a time (dropout_mask_avx2.h), see
 * dropout_simd.h. */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/dropout_mask_avx2.h"
#define VKEEP(drop, key, elem0) mask_keep_x8(drop, key, elem0)
#include "ops/dropout_simd.h"

const dropout_op dropout_avx2 = {dropout_forward_simd, dropout_backward_simd, NULL, NULL};
