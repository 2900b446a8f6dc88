/* Dropout with AVX-512: the mask 16 lanes at a time (dropout_mask_avx512.h;
 * the reference spends most of its time in the scalar 64-bit hashing), see
 * dropout_simd.h. */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/dropout_mask_avx512.h"
#define VKEEP(drop, key, elem0) mask_keep_x16(drop, key, elem0)
#include "ops/dropout_simd.h"

const dropout_op dropout_avx512 = {dropout_forward_simd, dropout_backward_simd, NULL, NULL};
