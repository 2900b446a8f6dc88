/* Vector exp and erf for the AVX2 backends (include only from *_avx2.c): the
 * same fits as vmath_avx512.h, with 2^n built from the exponent bits. */
#ifndef TLB_VMATH_AVX2_H
#define TLB_VMATH_AVX2_H

#include <immintrin.h>

static inline __m256 exp256(__m256 x)
{
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f)); /* keeps 2^n normal */
    x = _mm256_min_ps(x, _mm256_set1_ps(88.3f));
    const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504089f)),
                                     _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693115234375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(3.19461849e-05f), r);
    __m256 q = _mm256_set1_ps(0.0001989098087f);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.001393364103f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.008333310934f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.04166646501f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.1666666668f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(0.5f));
    const __m256 e = _mm256_fmadd_ps(_mm256_mul_ps(r, r), q, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    const __m256i bits = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(e, _mm256_castsi256_ps(bits));
}

static inline __m256 erf256(__m256 x)
{
    const __m256 sign = _mm256_and_ps(x, _mm256_set1_ps(-0.0f));
    const __m256 a = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x);
    const __m256 t = _mm256_mul_ps(x, x);
    __m256 p = _mm256_set1_ps(7.875875063e-5f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.0008016864287f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.005189087423f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.02685421201f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.1128359472f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.3761262667f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.128379166f));
    const __m256 small = _mm256_mul_ps(x, p);
    const __m256 big = _mm256_cmp_ps(a, _mm256_set1_ps(1.0f), _CMP_GE_OQ);
    if (_mm256_testz_ps(big, big)) return small;
    const __m256 ac = _mm256_min_ps(a, _mm256_set1_ps(4.0f));
    const __m256 y = _mm256_sub_ps(ac, _mm256_set1_ps(2.5f));
    __m256 h = _mm256_set1_ps(1.611890749e-6f);
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(-6.377862276e-6f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(1.468955683e-5f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(-5.362729453e-5f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(0.0002123135674f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(-0.0007389278863f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(0.00246650857f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(-0.007999388865f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(0.02493805689f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(-0.0743475937f));
    h = _mm256_fmadd_ps(h, y, _mm256_set1_ps(0.2108063641f));
    const __m256 erfc = _mm256_mul_ps(exp256(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(ac, ac))), h);
    const __m256 large = _mm256_or_ps(_mm256_sub_ps(_mm256_set1_ps(1.0f), erfc), sign);
    return _mm256_blendv_ps(small, large, big);
}

#endif
