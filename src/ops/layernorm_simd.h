/* Layer normalisation, each row in vector chunks (masked tail), rows split
 * across threads; dgamma/dbeta reduce over rows in order. Written once over
 * the vector macros of simd_avx512.h / simd_avx2.h (include one first). */
#ifndef TLB_LAYERNORM_SIMD_H
#define TLB_LAYERNORM_SIMD_H

#include <math.h>
#include <stddef.h>

#define LN_EPS 1e-5f
#define PARALLEL_MIN 16384

static void layernorm_forward_simd(float *out, float *mean, float *rstd, const float *inp,
                                   const float *gamma, const float *beta, int M, int D)
{
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D;
        float *o = out + (size_t)m * D;
        vec s = VZERO;
        for (int d = 0; d < D; d += VW) s = VADD(s, VMLOAD(x + d, vlanes(D - d)));
        const float mu = vhsum(s) / (float)D;
        const vec vmu = VSET1(mu);
        vec v = VZERO;
        for (int d = 0; d < D; d += VW) {
            const vmask k = vlanes(D - d);
            const vec c = VMASKZ(k, VSUB(VMLOAD(x + d, k), vmu));
            v = VFMA(c, c, v);
        }
        const float rs = 1.0f / sqrtf(vhsum(v) / (float)D + LN_EPS);
        const vec vrs = VSET1(rs);
        for (int d = 0; d < D; d += VW) {
            const vmask k = vlanes(D - d);
            const vec xh = VMUL(VSUB(VMLOAD(x + d, k), vmu), vrs);
            VMSTORE(o + d, k, VFMA(xh, VMLOAD(gamma + d, k), VMLOAD(beta + d, k)));
        }
        mean[m] = mu;
        rstd[m] = rs;
    }
}

static void layernorm_backward_simd(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                    const float *inp, const float *gamma, const float *mean,
                                    const float *rstd, int M, int D)
{
    if (dinp) {
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *g = dout + (size_t)m * D;
            float *dx = dinp + (size_t)m * D;
            const vec mu = VSET1(mean[m]), rs = VSET1(rstd[m]);
            vec a = VZERO, b = VZERO;
            for (int d = 0; d < D; d += VW) {
                const vmask k = vlanes(D - d);
                /* tail lanes: dn = 0 and xh finite, so they add nothing */
                const vec dn = VMUL(VMLOAD(g + d, k), VMLOAD(gamma + d, k));
                const vec xh = VMUL(VSUB(VMLOAD(x + d, k), mu), rs);
                a = VADD(a, dn);
                b = VFMA(dn, xh, b);
            }
            const vec mdn = VSET1(vhsum(a) / (float)D);
            const vec mdx = VSET1(vhsum(b) / (float)D);
            for (int d = 0; d < D; d += VW) {
                const vmask k = vlanes(D - d);
                const vec dn = VMUL(VMLOAD(g + d, k), VMLOAD(gamma + d, k));
                const vec xh = VMUL(VSUB(VMLOAD(x + d, k), mu), rs);
                const vec t = VFNMA(xh, mdx, VSUB(dn, mdn));
                VMSTORE(dx + d, k, VFMA(t, rs, VMLOAD(dx + d, k)));
            }
        }
    }
    if (dgamma || dbeta) {
        for (int d = 0; d < D; d += VW) {
            const vmask k = vlanes(D - d);
            vec sg = dgamma ? VMLOAD(dgamma + d, k) : VZERO;
            vec sb = dbeta ? VMLOAD(dbeta + d, k) : VZERO;
            for (int m = 0; m < M; m++) {
                const vec g = VMLOAD(dout + (size_t)m * D + d, k);
                const vec xh = VMUL(VSUB(VMLOAD(inp + (size_t)m * D + d, k), VSET1(mean[m])),
                                    VSET1(rstd[m]));
                sg = VFMA(g, xh, sg);
                sb = VADD(sb, g);
            }
            if (dgamma) VMSTORE(dgamma + d, k, sg);
            if (dbeta) VMSTORE(dbeta + d, k, sb);
        }
    }
}

#endif
