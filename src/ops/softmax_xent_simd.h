/* Softmax cross-entropy, one row at a time vectorized across the V classes
 * (V = 10: one masked vector in AVX-512, one full and one masked in AVX2),
 * exp from vmath_simd.h; written once over the vector macros of
 * simd_avx512.h / simd_avx2.h (include one of those first).
 * Same contract as softmax_xent_ref.c: forward overwrites losses[B] and
 * probs[B, V]; backward accumulates into dlogits (NULL: nothing). The
 * log-sum-exp is mx + log(sum) in double as in ref, but the sum of
 * e^(l - mx) is a float vector sum and probs = e^(l - mx) / sum, so results
 * match ref to a few float ulps, not bitwise. The backward is ref's
 * arithmetic (bit-identical). Single-threaded like ref (B x V is tiny). */
#ifndef TLB_SOFTMAX_XENT_SIMD_H
#define TLB_SOFTMAX_XENT_SIMD_H

#include <math.h>
#include <stddef.h>

#include "ops/vmath_simd.h"

static void softmax_xent_forward_simd(float *losses, float *probs, const float *logits,
                                      const int *labels, int B, int V)
{
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * V;
        float *p = probs + (size_t)b * V;
        vec vmx = VSET1(-INFINITY);
        for (int v = 0; v < V; v += VW) vmx = VMAX(vmx, VMLOAD_OR(l + v, vlanes(V - v), vmx));
        const float mx = vhmax(vmx);
        const vec mxv = VSET1(mx);
        vec acc = VZERO;
        for (int v = 0; v < V; v += VW) { /* p = e^(l - mx) for now */
            const vmask m = vlanes(V - v);
            const vec e = VMASKZ(m, vexp(VSUB(VMLOAD(l + v, m), mxv)));
            acc = VADD(acc, e);
            VMSTORE(p + v, m, e);
        }
        const float sum = vhsum(acc);
        const vec sv = VSET1(sum);
        for (int v = 0; v < V; v += VW) {
            const vmask m = vlanes(V - v);
            VMSTORE(p + v, m, VDIV(VMLOAD(p + v, m), sv));
        }
        const double lse = mx + log((double)sum);
        losses[b] = (float)(lse - l[labels[b]]);
    }
}

#define XENT_ROWS 32 /* rows per backward block (their one-hot entries saved on the stack) */

/* dlogits += probs * scale over a block of whole rows as one flat vector loop
 * (V = 10 rows are not vector-aligned), then each row's label entry is redone
 * as ref computes it, d + (p - 1) * scale, from its saved old value. */
static void softmax_xent_backward_simd(float *dlogits, const float *probs, const int *labels,
                                       float scale, int B, int V)
{
    if (!dlogits) return; /* NULL gradient = not needed (ops.h) */
    const vec sc = VSET1(scale);
    float old[XENT_ROWS];
    for (int b0 = 0; b0 < B; b0 += XENT_ROWS) {
        const int rows = B - b0 < XENT_ROWS ? B - b0 : XENT_ROWS;
        float *d = dlogits + (size_t)b0 * V;
        const float *p = probs + (size_t)b0 * V;
        for (int r = 0; r < rows; r++) old[r] = d[(size_t)r * V + labels[b0 + r]];
        const size_t n = (size_t)rows * V;
        size_t i = 0;
        for (; i + VW <= n; i += VW) VSTORE(d + i, VADD(VLOAD(d + i), VMUL(VLOAD(p + i), sc)));
        if (i < n) {
            const vmask m = VMASK((int)(n - i));
            VMSTORE(d + i, m, VADD(VMLOAD(d + i, m), VMUL(VMLOAD(p + i, m), sc)));
        }
        for (int r = 0; r < rows; r++) {
            const size_t at = (size_t)r * V + labels[b0 + r];
            d[at] = old[r] + (p[at] - 1.0f) * scale;
        }
    }
}

#endif
