/* The counter-based dropout mask of dropout_mask.h, 16 elements at a time
 * with AVX-512 (DQ for 64-bit multiplies): bit-identical keep decisions.
 * Include only from files compiled for AVX-512. */
#ifndef TLB_DROPOUT_MASK_AVX512_H
#define TLB_DROPOUT_MASK_AVX512_H

#include <immintrin.h>

#include "ops/dropout_mask.h"

/* rng_mix64 on eight lanes. */
static inline __m512i mask_mix64_x8(__m512i z)
{
    z = _mm512_add_epi64(z, _mm512_set1_epi64((long long)0x9e3779b97f4a7c15ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)),
                           _mm512_set1_epi64((long long)0xbf58476d1ce4e5b9ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)),
                           _mm512_set1_epi64((long long)0x94d049bb133111ebULL));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

/* rng_uniform(key, n0 + l) for l < 8; the 24-bit integer converts exactly. */
static inline __m256 mask_uniform_x8(uint64_t key, uint64_t n0)
{
    const __m512i n = _mm512_add_epi64(_mm512_set1_epi64((long long)n0),
                                       _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    const __m512i z = mask_mix64_x8(_mm512_add_epi64(_mm512_set1_epi64((long long)key), mask_mix64_x8(n)));
    return _mm256_mul_ps(_mm512_cvtepu64_ps(_mm512_srli_epi64(z, 40)), _mm256_set1_ps(1.0f / 16777216.0f));
}

/* dropout_scale_at(d, key, elem0 + l) for l < 16. */
static inline __m512 mask_keep_x16(const dropout_ctx *d, uint64_t key, uint64_t elem0)
{
    const __m512 u = _mm512_insertf32x8(_mm512_castps256_ps512(mask_uniform_x8(key, elem0)),
                                        mask_uniform_x8(key, elem0 + 8), 1);
    const __mmask16 dropped = _mm512_cmp_ps_mask(u, _mm512_set1_ps(d->rate), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps((__mmask16)~dropped, _mm512_set1_ps(1.0f / (1.0f - d->rate)));
}

#endif
