/* Rounding two rows at once into bf16 row pairs (bf16.h), for the passes
 * that write the weight gradient's operands: one VCVTNE2PS2BF16 for 16
 * lanes of both rows (the same rounding as VCVTNEPS2BF16), then one word
 * permutation into pairs. Carries its own target attribute, so files
 * compiled without AVX512_BF16 flags (bf16.c) can call it from functions
 * that have the attribute. */
#ifndef TLB_OPS_BF16_PAIRS_AVX512BF16_H
#define TLB_OPS_BF16_PAIRS_AVX512BF16_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

#define BF16_PAIRS_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* bf16(even) in the low 16 words, bf16(odd) in the high 16. */
BF16_PAIRS_TARGET static inline __m512i bf16_round_two_rows(__m512 even, __m512 odd)
{
    return (__m512i)_mm512_cvtne2ps_pbh(odd, even);
}

/* bf16_round_two_rows' halves interleaved into 16 row pairs. */
BF16_PAIRS_TARGET static inline __m512i bf16_interleave_pairs(__m512i two_rows)
{
    const __m512i order = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6,
                                           21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    return _mm512_permutexvar_epi16(order, two_rows);
}

/* The lanes k selects of 16 columns of two rows: rounded into row16 (its
 * even row; the odd one ld values on, where `second`) and into their row
 * pairs at pairs, each where not NULL. */
BF16_PAIRS_TARGET static inline __attribute__((always_inline)) void
bf16_store_rows_and_pairs(uint16_t *row16, size_t ld, uint32_t *pairs, __m512 even, __m512 odd, __mmask16 k,
                          const int second)
{
    const __m512i two = bf16_round_two_rows(even, odd);
    if (row16) {
        _mm256_mask_storeu_epi16(row16, k, _mm512_castsi512_si256(two));
        if (second) _mm256_mask_storeu_epi16(row16 + ld, k, _mm512_extracti64x4_epi64(two, 1));
    }
    if (pairs) _mm512_mask_storeu_epi32(pairs, k, bf16_interleave_pairs(two));
}

#endif
