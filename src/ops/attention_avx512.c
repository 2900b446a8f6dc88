/* Attention core with AVX-512 (see attention_simd.h); the dropout mask is
 * generated 16 lanes at a time, bit-exactly (dropout_mask_avx512.h). */
#include "ops/impls.h"

#include "ops/simd_avx512.h"
#include "ops/dropout_mask_avx512.h"
#define VKEEP(drop, key, elem0) mask_keep_x16(drop, key, elem0)
#include "ops/attention_simd.h"

const attention_op attention_avx512 = {attention_forward_simd, attention_backward_simd, attention_prepare_simd,
                                     attention_backward_first_simd};

void attention_mix_avx512(float *out, const float *probs, const float *v, const int *kv_len, int B, int Tq,
                          int Tk, int H, int K, const dropout_ctx *drop)
{
    attention_mix_simd(out, probs, v, kv_len, B, Tq, Tk, H, K, drop);
}

void attention_backward_mix_avx512(float *att, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                   const float *k, const float *v, const float *probs, const int *kv_len, int B,
                                   int Tq, int Tk, int H, int K, const dropout_ctx *drop)
{
    attention_backward_into(att, kv_len, dq, dk, dv, dout, q, k, v, probs, B, Tq, Tk, H, K, drop, 0);
}
