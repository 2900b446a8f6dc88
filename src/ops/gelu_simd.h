/* Exact GELU, x Phi(x), VW values per step through vmath_simd.h's erf (and
 * its exp for the derivative); written once over the vector macros of
 * simd_avx512.h / simd_avx2.h (include one of those first). */
#ifndef TLB_GELU_SIMD_H
#define TLB_GELU_SIMD_H

#include <stddef.h>

#include "ops/vmath_simd.h"

#define PARALLEL_MIN 32768

/* Phi(x) = (1 + erf(x / sqrt2)) / 2 from the rational erf: gelu(x) = x
 * Phi(x) takes no exp, and the forward, the derivative and the backward's
 * recomputed gelu(x) share this Phi bit for bit. */
static inline vec gelu_cdf(vec x) { return VFMA(VSET1(0.5f), verf(VMUL(x, VSET1(0.70710678118654752f))), VSET1(0.5f)); }

/* e^{-x^2/2}, for the pdf in GELU's derivative. */
static inline vec gelu_exp(vec x) { return vexp(VMUL(VSET1(-0.5f), VMUL(x, x))); }

/* d/dx gelu = cdf(x) + x pdf(x), pdf(x) = e / sqrt(2 pi). */
static inline vec gelu_grad_given(vec x, vec e, vec cdf)
{
    return VFMA(x, VMUL(VSET1(0.3989422804014327f), e), cdf);
}

static inline vec gelu_grad(vec x) { return gelu_grad_given(x, gelu_exp(x), gelu_cdf(x)); }

static inline void gelu_forward_simd(float *out, const float *inp, size_t n)
{
    const long nv = (long)(n / VW);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (long i = 0; i < nv; i++) {
        const vec x = VLOAD(inp + i * VW);
        VSTORE(out + i * VW, VMUL(x, gelu_cdf(x)));
    }
    const size_t rest = n - (size_t)nv * VW;
    if (rest) {
        const vmask m = VMASK((int)rest);
        const vec x = VMLOAD(inp + nv * VW, m);
        VMSTORE(out + nv * VW, m, VMUL(x, gelu_cdf(x)));
    }
}

static inline void gelu_backward_simd(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
    const long nv = (long)(n / VW);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (long i = 0; i < nv; i++) {
        const vec x = VLOAD(inp + i * VW);
        const vec g = VLOAD(dout + i * VW);
        const vec d = VLOAD(dinp + i * VW);
        VSTORE(dinp + i * VW, VFMA(g, gelu_grad(x), d));
    }
    const size_t rest = n - (size_t)nv * VW;
    if (rest) {
        const vmask m = VMASK((int)rest);
        const vec x = VMLOAD(inp + nv * VW, m);
        const vec g = VMLOAD(dout + nv * VW, m);
        const vec d = VMLOAD(dinp + nv * VW, m);
        VMSTORE(dinp + nv * VW, m, VFMA(g, gelu_grad(x), d));
    }
}

#endif
