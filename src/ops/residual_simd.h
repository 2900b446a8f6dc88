/* Residual add, VW values per step with a masked tail; written once over the
 * vector macros of simd_avx512.h / simd_avx2.h (include one of those first).
 * Same contract as residual_ref.c: out may alias a or b, backward accumulates
 * into whichever of da, db is non-NULL. Threaded like ref, but only above
 * RESIDUAL_PARALLEL_MIN values (a fork costs more than a small add). */
#ifndef TLB_RESIDUAL_SIMD_H
#define TLB_RESIDUAL_SIMD_H

#include <stddef.h>

#define RESIDUAL_PARALLEL_MIN 32768

static void residual_forward_simd(float *out, const float *a, const float *b, size_t n)
{
    const long nv = (long)(n / VW);
#pragma omp parallel for schedule(static) if (n >= RESIDUAL_PARALLEL_MIN)
    for (long i = 0; i < nv; i++)
        VSTORE(out + i * VW, VADD(VLOAD(a + i * VW), VLOAD(b + i * VW)));
    const size_t rest = n - (size_t)nv * VW;
    if (rest) {
        const vmask m = VMASK((int)rest);
        const size_t at = (size_t)nv * VW;
        VMSTORE(out + at, m, VADD(VMLOAD(a + at, m), VMLOAD(b + at, m)));
    }
}

/* dst[0..n) += src[0..n) */
static void residual_accumulate(float *dst, const float *src, size_t n)
{
    const long nv = (long)(n / VW);
#pragma omp parallel for schedule(static) if (n >= RESIDUAL_PARALLEL_MIN)
    for (long i = 0; i < nv; i++)
        VSTORE(dst + i * VW, VADD(VLOAD(dst + i * VW), VLOAD(src + i * VW)));
    const size_t rest = n - (size_t)nv * VW;
    if (rest) {
        const vmask m = VMASK((int)rest);
        const size_t at = (size_t)nv * VW;
        VMSTORE(dst + at, m, VADD(VMLOAD(dst + at, m), VMLOAD(src + at, m)));
    }
}

static void residual_backward_simd(float *da, float *db, const float *dout, size_t n)
{
    if (da) residual_accumulate(da, dout, n); /* NULL gradient = not needed (ops.h) */
    if (db) residual_accumulate(db, dout, n);
}

#endif
