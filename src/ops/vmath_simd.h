/* Vector exp and erf, written once over the vector macros of simd_avx512.h /
 * simd_avx2.h (include one of those first). Coefficients are our own
 * Chebyshev fits (mpmath.chebyfit), accurate to a few float ulps: exp ~2 ulp
 * relative; erf < 1e-7 absolute on all floats. The ISA header supplies exp's
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

/* erf: |x| < 1: x P(x^2); 1 <= |x| < 4: 1 - e^{-x^2} h(|x| - 2.5) with
 * h ~ erfc(x) e^{x^2}; beyond 4 erf rounds to +-1 in float. */
static inline vec verf(vec x)
{
    const vec a = VABS(x);
    const vec t = VMUL(x, x);
    vec p = VSET1(7.875875063e-5f);
    p = VFMA(p, t, VSET1(-0.0008016864287f));
    p = VFMA(p, t, VSET1(0.005189087423f));
    p = VFMA(p, t, VSET1(-0.02685421201f));
    p = VFMA(p, t, VSET1(0.1128359472f));
    p = VFMA(p, t, VSET1(-0.3761262667f));
    p = VFMA(p, t, VSET1(1.128379166f));
    const vec small = VMUL(x, p);
    const vmask big = VCMPGE(a, VSET1(1.0f));
    if (VNONE(big)) return small;
    const vec ac = VMIN(a, VSET1(4.0f));
    const vec y = VSUB(ac, VSET1(2.5f));
    vec h = VSET1(1.611890749e-6f);
    h = VFMA(h, y, VSET1(-6.377862276e-6f));
    h = VFMA(h, y, VSET1(1.468955683e-5f));
    h = VFMA(h, y, VSET1(-5.362729453e-5f));
    h = VFMA(h, y, VSET1(0.0002123135674f));
    h = VFMA(h, y, VSET1(-0.0007389278863f));
    h = VFMA(h, y, VSET1(0.00246650857f));
    h = VFMA(h, y, VSET1(-0.007999388865f));
    h = VFMA(h, y, VSET1(0.02493805689f));
    h = VFMA(h, y, VSET1(-0.0743475937f));
    h = VFMA(h, y, VSET1(0.2108063641f));
    const vec erfc = VMUL(vexp(VMUL(VSET1(-1.0f), VMUL(ac, ac))), h);
    /* 1 - erfc with the sign of x */
    const vec large = VOR(VSUB(VSET1(1.0f), erfc), VAND(x, VSET1(-0.0f)));
    return VBLEND(big, small, large);
}

#endif
