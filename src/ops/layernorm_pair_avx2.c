/* layernorm_pair with AVX2 (see layernorm_pair_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/layernorm_pair_simd.h"

const layernorm_pair_op layernorm_pair_avx2 = {layernorm_pair_forward_simd, layernorm_pair_backward_simd,
                                              NULL, NULL};
