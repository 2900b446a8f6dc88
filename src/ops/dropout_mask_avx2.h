/* The counter-based dropout mask of dropout_mask.h, 8 elements at a time with
 * AVX2: bit-identical keep decisions. AVX2 has no 64-bit multiply, so
 * rng_mix64's two multiplies by constants are built from three 32 x 32 -> 64
 * bit _mm256_mul_epu32 each (the high half of a product never matters mod
 * 2^64). Include only from files compiled for AVX2. */
#ifndef TLB_DROPOUT_MASK_AVX2_H
#define TLB_DROPOUT_MASK_AVX2_H

#include <immintrin.h>

#include "ops/dropout_mask.h"

/* a * c mod 2^64 on four lanes, c = c_hi 2^32 + c_lo:
 * lo(a) c_lo + ((hi(a) c_lo + lo(a) c_hi) << 32). */
static inline __m256i mask_mul64_x4(__m256i a, uint64_t c)
{
    const __m256i c_lo = _mm256_set1_epi64x((long long)(c & 0xffffffffULL));
    const __m256i c_hi = _mm256_set1_epi64x((long long)(c >> 32));
    const __m256i lo = _mm256_mul_epu32(a, c_lo);
    const __m256i cross = _mm256_add_epi64(_mm256_mul_epu32(_mm256_srli_epi64(a, 32), c_lo),
                                           _mm256_mul_epu32(a, c_hi));
    return _mm256_add_epi64(lo, _mm256_slli_epi64(cross, 32));
}

/* rng_mix64 on four lanes. */
static inline __m256i mask_mix64_x4(__m256i z)
{
    z = _mm256_add_epi64(z, _mm256_set1_epi64x((long long)0x9e3779b97f4a7c15ULL));
    z = mask_mul64_x4(_mm256_xor_si256(z, _mm256_srli_epi64(z, 30)), 0xbf58476d1ce4e5b9ULL);
    z = mask_mul64_x4(_mm256_xor_si256(z, _mm256_srli_epi64(z, 27)), 0x94d049bb133111ebULL);
    return _mm256_xor_si256(z, _mm256_srli_epi64(z, 31));
}

/* rng_u64(key, n0 + l) >> 40 for l < 4: a 24-bit value in each 64-bit lane. */
static inline __m256i mask_bits24_x4(uint64_t key, uint64_t n0)
{
    const __m256i n = _mm256_add_epi64(_mm256_set1_epi64x((long long)n0),
                                       _mm256_setr_epi64x(0, 1, 2, 3));
    const __m256i z = mask_mix64_x4(_mm256_add_epi64(_mm256_set1_epi64x((long long)key),
                                                     mask_mix64_x4(n)));
    return _mm256_srli_epi64(z, 40);
}

/* rng_uniform(key, n0 + l) for l < 8; the 24-bit integers convert exactly. */
static inline __m256 mask_uniform_x8(uint64_t key, uint64_t n0)
{
    const __m256i a = mask_bits24_x4(key, n0), b = mask_bits24_x4(key, n0 + 4);
    /* dwords a0 b0 a1 b1 a2 b2 a3 b3 -> a0 a1 a2 a3 b0 b1 b2 b3 */
    const __m256i ab = _mm256_permutevar8x32_epi32(_mm256_or_si256(a, _mm256_slli_epi64(b, 32)),
                                                   _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
    return _mm256_mul_ps(_mm256_cvtepi32_ps(ab), _mm256_set1_ps(1.0f / 16777216.0f));
}

/* dropout_scale_at(d, key, elem0 + l) for l < 8. */
static inline __m256 mask_keep_x8(const dropout_ctx *d, uint64_t key, uint64_t elem0)
{
    const __m256 dropped = _mm256_cmp_ps(mask_uniform_x8(key, elem0), _mm256_set1_ps(d->rate),
                                         _CMP_LT_OQ);
    return _mm256_andnot_ps(dropped, _mm256_set1_ps(1.0f / (1.0f - d->rate)));
}

#endif
