/* The counter-based dropout mask of dropout_mask.h, 8 elements at a time with
 * AVX2: bit-identical keep decisions. Include only from files compiled for
 * AVX2. */
#ifndef TLB_DROPOUT_MASK_AVX2_H
#define TLB_DROPOUT_MASK_AVX2_H

#include <immintrin.h>

#include "ops/dropout_mask.h"

/* dropout_hash32 on eight lanes. */
static inline __m256i mask_hash32_x8(__m256i x)
{
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
    x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
    x = _mm256_mullo_epi32(x, _mm256_set1_epi32((int)0x846ca68bU));
    return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

/* dropout_scale_at(d, key, elem0 + l) for l < 8. The 24-bit values and the
 * threshold (at most 2^24) are non-negative, so the signed compare serves. */
static inline __m256 mask_keep_x8(const dropout_ctx *d, uint64_t key, uint64_t elem0)
{
    const __m256i n = _mm256_add_epi32(_mm256_set1_epi32((int)((uint32_t)elem0 + (uint32_t)key)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    const __m256i x = mask_hash32_x8(_mm256_xor_si256(mask_hash32_x8(n),
                                                      _mm256_set1_epi32((int)(uint32_t)(key >> 32))));
    const __m256i dropped = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)dropout_threshold(d)),
                                               _mm256_srli_epi32(x, 8));
    return _mm256_andnot_ps(_mm256_castsi256_ps(dropped), _mm256_set1_ps(1.0f / (1.0f - d->rate)));
}

#endif
