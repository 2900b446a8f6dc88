/* Patch convolution with AVX512 FMA tiles over per-sample gathered
 * patches (see patch_conv_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/patch_conv_simd.h"

const patch_conv_op patch_conv_avx512 = {patch_conv_forward_simd, patch_conv_backward_simd, patch_conv_prepare_simd, NULL};
