/* The counter-based dropout mask of dropout_mask.h, 16 elements at a time
 * with AVX-512: bit-identical keep decisions. Include only from files
 * compiled for AVX-512. */
#ifndef TLB_DROPOUT_MASK_AVX512_H
#define TLB_DROPOUT_MASK_AVX512_H

#include <immintrin.h>

#include "ops/dropout_mask.h"

/* dropout_hash32 on sixteen lanes. */
static inline __m512i mask_hash32_x16(__m512i x)
{
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32(0x7feb352d));
    x = _mm512_xor_si512(x, _mm512_srli_epi32(x, 15));
    x = _mm512_mullo_epi32(x, _mm512_set1_epi32((int)0x846ca68bU));
    return _mm512_xor_si512(x, _mm512_srli_epi32(x, 16));
}

/* dropout_scale_at(d, key, elem0 + l) for l < 16. */
static inline __m512 mask_keep_x16(const dropout_ctx *d, uint64_t key, uint64_t elem0)
{
    const __m512i n = _mm512_add_epi32(_mm512_set1_epi32((int)((uint32_t)elem0 + (uint32_t)key)),
                                       _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512i x = mask_hash32_x16(_mm512_xor_si512(mask_hash32_x16(n),
                                                       _mm512_set1_epi32((int)(uint32_t)(key >> 32))));
    const __mmask16 dropped = _mm512_cmplt_epu32_mask(_mm512_srli_epi32(x, 8),
                                                      _mm512_set1_epi32((int)dropout_threshold(d)));
    return _mm512_maskz_mov_ps((__mmask16)~dropped, _mm512_set1_ps(1.0f / (1.0f - d->rate)));
}

#endif
