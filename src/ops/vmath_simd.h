/* Vector exp and erf, written once over the vector macros of simd_avx512.h /
 * simd_avx2.h (include one of those first). exp's coefficients are
 * our own Chebyshev fit (mpmath.chebyfit), ~2 ulp relative; erf is
 * Hastings' approximation (below). The ISA header supplies exp's
 * input range (VEXP_LO, VEXP_HI) and the 2^n scaling (VSCALE2). */
#ifndef TLB_VMATH_SIMD_H
#define TLB_VMATH_SIMD_H

/* e^x = 2^n e^r, r = x - n ln2 in [-ln2/2, ln2/2], e^r = 1 + r + r^2 q(r). */
static inline vec vexp(vec x)
{
    x = VMAX(x, VSET1(VEXP_LO));
    x = VMIN(x, VSET1(VEXP_HI));
    const vec n = VROUND(VMUL(x, VSET1(1.44269504089f)));
    vec r = VFNMA(n, VSET1(0.693115234375f), x);
    r = VFNMA(n, VSET1(3.19461849e-05f), r);
    vec q = VSET1(0.0001989098087f);
    q = VFMA(q, r, VSET1(0.001393364103f));
    q = VFMA(q, r, VSET1(0.008333310934f));
    q = VFMA(q, r, VSET1(0.04166646501f));
    q = VFMA(q, r, VSET1(0.1666666668f));
    q = VFMA(q, r, VSET1(0.5f));
    const vec e = VFMA(VMUL(r, r), q, VADD(r, VSET1(1.0f)));
    return VSCALE2(e, n);
}

/* erf(x) = sign(x) (1 - t P(t) e^{-x^2}), t = 1 / (1 + p|x|): Hastings'
 * rational form (Abramowitz & Stegun 7.1.26), absolute error below 1.5e-7
 * everywhere -- what GELU needs, since it uses erf through
 * Phi(x) = (1 + erf(x/sqrt2)) / 2 -- with one exp and one division and no
 * range branches (a 7 + 11 term piecewise fit blended over both ranges
 * cost about 1.6x as much). emx2 = e^{-x^2}, shared with a caller that
 * needs it anyway (GELU's derivative). */
static inline vec verf_given_exp(vec x, vec emx2)
{
    const vec t = VDIV(VSET1(1.0f), VFMA(VSET1(0.3275911f), VABS(x), VSET1(1.0f)));
    vec p = VSET1(1.061405429f);
    p = VFMA(p, t, VSET1(-1.453152027f));
    p = VFMA(p, t, VSET1(1.421413741f));
    p = VFMA(p, t, VSET1(-0.284496739f));
    p = VFMA(p, t, VSET1(0.254829592f));
    const vec erf_abs = VFNMA(VMUL(p, t), emx2, VSET1(1.0f));
    return VOR(erf_abs, VAND(x, VSET1(-0.0f))); /* sign of x */
}

#endif
