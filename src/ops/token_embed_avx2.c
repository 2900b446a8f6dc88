/* Token embedding with AVX2: 8 values per step (see token_embed_simd.h). */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/token_embed_simd.h"

const token_embed_op token_embed_avx2 = {token_embed_forward_simd, token_embed_backward_simd, NULL, NULL};
