/* Dropout with the mask generated 16 lanes at a time (the reference spends
 * most of its time in the scalar 64-bit hashing). */
#include "ops/impls.h"

#include "ops/dropout_mask_avx512.h"

static inline __mmask16 tail_mask(size_t left) { return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << left) - 1); }

static void dropout_forward_avx512(float *out, const float *inp, int B, size_t per_sample,
                                   const dropout_ctx *drop)
{
    const int active = dropout_active(drop);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const uint64_t skey = active ? dropout_sample_key(drop, b) : 0;
        const float *x = inp + (size_t)b * per_sample;
        float *y = out + (size_t)b * per_sample;
        for (size_t i = 0; i < per_sample; i += 16) {
            const __mmask16 m = tail_mask(per_sample - i);
            __m512 v = _mm512_maskz_loadu_ps(m, x + i);
            if (active) v = _mm512_mul_ps(v, mask_keep_x16(drop, skey, i));
            _mm512_mask_storeu_ps(y + i, m, v);
        }
    }
}

static void dropout_backward_avx512(float *dinp, const float *dout, int B, size_t per_sample,
                                    const dropout_ctx *drop)
{
    if (!dinp) return;
    const int active = dropout_active(drop);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const uint64_t skey = active ? dropout_sample_key(drop, b) : 0;
        const float *g = dout + (size_t)b * per_sample;
        float *dx = dinp + (size_t)b * per_sample;
        for (size_t i = 0; i < per_sample; i += 16) {
            const __mmask16 m = tail_mask(per_sample - i);
            __m512 v = _mm512_maskz_loadu_ps(m, g + i);
            if (active) v = _mm512_mul_ps(v, mask_keep_x16(drop, skey, i));
            _mm512_mask_storeu_ps(dx + i, m, _mm512_add_ps(_mm512_maskz_loadu_ps(m, dx + i), v));
        }
    }
}

const dropout_op dropout_avx512 = {dropout_forward_avx512, dropout_backward_avx512};
