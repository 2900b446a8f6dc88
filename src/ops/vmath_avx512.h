/* Vector exp and erf for the AVX-512 backends (include only from *_avx512.c).
 * Coefficients are our own Chebyshev fits (mpmath.chebyfit), accurate to a
 * few float ulps: exp ~2 ulp relative; erf < 1e-7 absolute on all floats. */
#ifndef TLB_VMATH_AVX512_H
#define TLB_VMATH_AVX512_H

#include <immintrin.h>

/* e^x = 2^n e^r, r = x - n ln2 in [-ln2/2, ln2/2], e^r = 1 + r + r^2 q(r). */
static inline __m512 exp512(__m512 x)
{
    x = _mm512_max_ps(x, _mm512_set1_ps(-103.0f)); /* below: 0 after scalef */
    x = _mm512_min_ps(x, _mm512_set1_ps(88.7f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693115234375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(3.19461849e-05f), r);
    __m512 q = _mm512_set1_ps(0.0001989098087f);
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.001393364103f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.008333310934f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.04166646501f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.1666666668f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.5f));
    const __m512 e = _mm512_fmadd_ps(_mm512_mul_ps(r, r), q, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(e, n);
}

/* erf: |x| < 1: x P(x^2); 1 <= |x| < 4: 1 - e^{-x^2} h(|x| - 2.5) with
 * h ~ erfc(x) e^{x^2}; beyond 4 erf rounds to +-1 in float. */
static inline __m512 erf512(__m512 x)
{
    const __m512 a = _mm512_abs_ps(x);
    const __m512 t = _mm512_mul_ps(x, x);
    __m512 p = _mm512_set1_ps(7.875875063e-5f);
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.0008016864287f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.005189087423f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.02685421201f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(0.1128359472f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(-0.3761262667f));
    p = _mm512_fmadd_ps(p, t, _mm512_set1_ps(1.128379166f));
    const __m512 small = _mm512_mul_ps(x, p);
    const __mmask16 big = _mm512_cmp_ps_mask(a, _mm512_set1_ps(1.0f), _CMP_GE_OQ);
    if (!big) return small;
    const __m512 ac = _mm512_min_ps(a, _mm512_set1_ps(4.0f));
    const __m512 y = _mm512_sub_ps(ac, _mm512_set1_ps(2.5f));
    __m512 h = _mm512_set1_ps(1.611890749e-6f);
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(-6.377862276e-6f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(1.468955683e-5f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(-5.362729453e-5f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(0.0002123135674f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(-0.0007389278863f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(0.00246650857f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(-0.007999388865f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(0.02493805689f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(-0.0743475937f));
    h = _mm512_fmadd_ps(h, y, _mm512_set1_ps(0.2108063641f));
    const __m512 erfc = _mm512_mul_ps(exp512(_mm512_mul_ps(_mm512_set1_ps(-1.0f), _mm512_mul_ps(ac, ac))), h);
    __m512 large = _mm512_sub_ps(_mm512_set1_ps(1.0f), erfc);
    /* copy the sign of x */
    large = _mm512_or_ps(large, _mm512_and_ps(x, _mm512_set1_ps(-0.0f)));
    return _mm512_mask_blend_ps(big, small, large);
}

#endif
