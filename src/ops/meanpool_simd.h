/* Mean over tokens, VW features per step with masked tails; written once over
 * the vector macros of simd_avx512.h / simd_avx2.h (include one of those
 * first). Same contract and arithmetic as meanpool_ref.c (sum over t in
 * order, then divide by T; backward adds dout / T), so bit-identical to ref;
 * single-threaded like ref (the head's pooling is tiny). */
#ifndef TLB_MEANPOOL_SIMD_H
#define TLB_MEANPOOL_SIMD_H

#include <stddef.h>

static void meanpool_forward_simd(float *out, const float *inp, int B, int T, int D)
{
    const vec tv = VSET1((float)T);
    for (int b = 0; b < B; b++) {
        const float *x = inp + (size_t)b * T * D;
        float *y = out + (size_t)b * D;
        for (int d = 0; d < D; d += VW) {
            const vmask m = vlanes(D - d);
            vec s = VZERO;
            for (int t = 0; t < T; t++) s = VADD(s, VMLOAD(x + (size_t)t * D + d, m));
            VMSTORE(y + d, m, VDIV(s, tv));
        }
    }
}

static void meanpool_backward_simd(float *dinp, const float *dout, int B, int T, int D)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
    const vec tv = VSET1((float)T);
    for (int b = 0; b < B; b++) {
        float *dx = dinp + (size_t)b * T * D;
        for (int d = 0; d < D; d += VW) {
            const vmask m = vlanes(D - d);
            const vec g = VDIV(VMLOAD(dout + (size_t)b * D + d, m), tv);
            for (int t = 0; t < T; t++) {
                float *p = dx + (size_t)t * D + d;
                VMSTORE(p, m, VADD(VMLOAD(p, m), g));
            }
        }
    }
}

#endif
