/* Token embedding with AVX-512: 16 values per step (see token_embed_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/token_embed_simd.h"

const token_embed_op token_embed_avx512 = {token_embed_forward_simd, token_embed_backward_simd, NULL, NULL};
