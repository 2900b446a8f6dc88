/* Dropout with the mask generated VW lanes at a time, bit-identical to
 * dropout_mask.h; written once over the vector macros of simd_avx512.h /
 * simd_avx2.h and VKEEP(drop, key, elem0) (include those first; see
 * attention_simd.h for the same macro). The forward overwrites, the
 * backward accumulates (ops.h). */
#ifndef TLB_DROPOUT_SIMD_H
#define TLB_DROPOUT_SIMD_H

#include <stddef.h>

/* dst[i] (+)= src[i] * keep_i over one sample, `accumulate` fixed per call. */
static inline void dropout_sample(float *dst, const float *src, size_t n, const dropout_ctx *drop,
                                  int active, uint64_t skey, int accumulate)
{
    for (size_t i = 0; i < n; i += VW) {
        const vmask m = vlanes(n - i < VW ? (int)(n - i) : VW);
        vec v = VMLOAD(src + i, m);
        if (active) v = VMUL(v, VKEEP(drop, skey, i));
        if (accumulate) v = VADD(VMLOAD(dst + i, m), v);
        VMSTORE(dst + i, m, v);
    }
}

static void dropout_forward_simd(float *out, const float *inp, int B, size_t per_sample,
                                 const dropout_ctx *drop)
{
    const int active = dropout_active(drop);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        dropout_sample(out + (size_t)b * per_sample, inp + (size_t)b * per_sample, per_sample,
                       drop, active, active ? dropout_sample_key(drop, b) : 0, 0);
}

static void dropout_backward_simd(float *dinp, const float *dout, int B, size_t per_sample,
                                  const dropout_ctx *drop)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
    const int active = dropout_active(drop);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        dropout_sample(dinp + (size_t)b * per_sample, dout + (size_t)b * per_sample, per_sample,
                       drop, active, active ? dropout_sample_key(drop, b) : 0, 1);
}

#endif
