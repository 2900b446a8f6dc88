/* Vector exp and erf, written once over the vector macros of simd_avx512.h /
 * simd_avx2.h (include one of those first). exp's coefficients are
 * our own Chebyshev fit (mpmath.chebyfit), ~2 ulp relative; erf is a
 * rational minimax fit (below). The ISA header supplies exp's
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

/* erf(x) as x P(x^2) / Q(x^2) on [-4, 4], x clamped there (erf(4) is 1 in
 * float to 2e-8): the odd/even minimax pair of Eigen's and XLA's float
 * erf, absolute error below 3.4e-7 (tests/test_ops_forward.c measures
 * GELU's). AVX2's GELU takes its Phi from it (AVX-512's from the tables
 * of gelu_tables.h). No exp: the forward GELU needs none (Hastings' form,
 * which this replaced, cost an exp and a division; this costs 12 FMAs and
 * a division). */
static inline vec verf(vec a)
{
    const vec x = VMAX(VMIN(a, VSET1(4.0f)), VSET1(-4.0f)), x2 = VMUL(x, x);
    vec p = VFMA(x2, VSET1(-2.72614225801306e-10f), VSET1(2.77068142495902e-08f));
    p = VFMA(x2, p, VSET1(-2.10102402082508e-06f));
    p = VFMA(x2, p, VSET1(-5.69250639462346e-05f));
    p = VFMA(x2, p, VSET1(-7.34990630326855e-04f));
    p = VFMA(x2, p, VSET1(-2.95459980854025e-03f));
    p = VFMA(x2, p, VSET1(-1.60960333262415e-02f));
    vec q = VFMA(x2, VSET1(-1.45660718464996e-05f), VSET1(-2.13374055278905e-04f));
    q = VFMA(x2, q, VSET1(-1.68282697438203e-03f));
    q = VFMA(x2, q, VSET1(-7.37332916720468e-03f));
    q = VFMA(x2, q, VSET1(-1.42647390514189e-02f));
    return VDIV(VMUL(x, p), q);
}

#endif
