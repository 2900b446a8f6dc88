/* layernorm_pair with AVX-512 (see layernorm_pair_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/layernorm_pair_simd.h"

const layernorm_pair_op layernorm_pair_avx512 = {layernorm_pair_forward_simd, layernorm_pair_backward_simd,
                                              NULL, NULL};
