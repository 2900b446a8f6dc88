/* layernorm_pair (ops.h) in vector chunks: one statistics pass per row
 * feeding both outputs, and one backward pass reading the row's input once
 * for both normalisations. Bit for bit the two LayerNorms of
 * layernorm_simd.h: the same row statistics, the same per-block partial
 * sums of dgamma/dbeta (blocks fixed by the shape), and dinp receiving the
 * first normalisation's term before the second's. Include simd_avx512.h or
 * simd_avx2.h first. */
#ifndef TLB_LAYERNORM_PAIR_SIMD_H
#define TLB_LAYERNORM_PAIR_SIMD_H

#include "ops/layernorm_simd.h"

static inline void layernorm_pair_forward_simd(float *out1, float *out2, float *mean, float *rstd,
                                               const float *inp, const float *gamma1,
                                               const float *beta1, const float *gamma2,
                                               const float *beta2, int M, int D)
{
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
    for (int g = 0; g <= M / VW; g++) {
        const int m0 = g * VW, rows = layernorm_group_rows(inp, mean, rstd, g, M, D);
        for (int m = m0; m < m0 + rows; m++) {
            const float *x = inp + (size_t)m * D;
            layernorm_row_apply(out1 + (size_t)m * D, x, gamma1, beta1, mean[m], rstd[m], D);
            layernorm_row_apply(out2 + (size_t)m * D, x, gamma2, beta2, mean[m], rstd[m], D);
        }
    }
}

/* Rows [m0, m1): dgamma/dbeta partials into part[0..3] (g1, b1, g2, b2;
 * NULL: not wanted) and both input-gradient terms into dinp (NULL: skip). */
static inline void layernorm_pair_rows(float *dinp, float (*part)[LN_MAX_D], const float *dout1,
                                       const float *dout2, const float *inp, const float *gamma1,
                                       const float *gamma2, const float *mean, const float *rstd,
                                       int m0, int m1, int D)
{
    for (int m = m0; m < m1; m++) {
        const float *x = inp + (size_t)m * D;
        const float *g1 = dout1 + (size_t)m * D, *g2 = dout2 + (size_t)m * D;
        const vec mu = VSET1(mean[m]), rs = VSET1(rstd[m]);
        vec a1 = VZERO, b1 = VZERO, a2 = VZERO, b2 = VZERO;
        for (int d = 0; d < D; d += VW) {
            const vmask k = vlanes(D - d);
            const vec xh = VMUL(VSUB(VMLOAD(x + d, k), mu), rs);
            const vec gd1 = VMLOAD(g1 + d, k), gd2 = VMLOAD(g2 + d, k);
            if (part) {
                VMSTORE(part[0] + d, k, VFMA(gd1, xh, VMLOAD(part[0] + d, k)));
                VMSTORE(part[1] + d, k, VADD(gd1, VMLOAD(part[1] + d, k)));
                VMSTORE(part[2] + d, k, VFMA(gd2, xh, VMLOAD(part[2] + d, k)));
                VMSTORE(part[3] + d, k, VADD(gd2, VMLOAD(part[3] + d, k)));
            }
            if (dinp) {
                const vec dn1 = VMUL(gd1, VMLOAD(gamma1 + d, k));
                const vec dn2 = VMUL(gd2, VMLOAD(gamma2 + d, k));
                a1 = VADD(a1, dn1);
                b1 = VFMA(dn1, xh, b1);
                a2 = VADD(a2, dn2);
                b2 = VFMA(dn2, xh, b2);
            }
        }
        if (!dinp) continue;
        const vec mdn1 = VSET1(vhsum(a1) / (float)D), mdx1 = VSET1(vhsum(b1) / (float)D);
        const vec mdn2 = VSET1(vhsum(a2) / (float)D), mdx2 = VSET1(vhsum(b2) / (float)D);
        float *dx = dinp + (size_t)m * D;
        for (int d = 0; d < D; d += VW) {
            const vmask k = vlanes(D - d);
            const vec xh = VMUL(VSUB(VMLOAD(x + d, k), mu), rs);
            const vec dn1 = VMUL(VMLOAD(g1 + d, k), VMLOAD(gamma1 + d, k));
            const vec dn2 = VMUL(VMLOAD(g2 + d, k), VMLOAD(gamma2 + d, k));
            const vec t1 = VFNMA(xh, mdx1, VSUB(dn1, mdn1));
            const vec t2 = VFNMA(xh, mdx2, VSUB(dn2, mdn2));
            VMSTORE(dx + d, k, VFMA(t2, rs, VFMA(t1, rs, VMLOAD(dx + d, k))));
        }
    }
}

/* The same for D <= 64 with the four partials of rows [m0, m1) in
 * registers (as layernorm_rows_backward_regs), stored into part at the end. */
static inline void layernorm_pair_rows_regs(float *dinp, float (*part)[LN_MAX_D], const float *dout1,
                                            const float *dout2, const float *inp, const float *gamma1,
                                            const float *gamma2, const float *mean, const float *rstd,
                                            int m0, int m1, int D)
{
    vec p[4][LN_RV];
#pragma GCC unroll 8
    for (int j = 0; j < LN_RV; j++) p[0][j] = p[1][j] = p[2][j] = p[3][j] = VZERO;
    /* VW rows at a time: their dx means in one transpose-add each */
    for (int g0 = m0; g0 < m1; g0 += VW) {
        const int n = m1 - g0 < VW ? m1 - g0 : VW;
        vec a1[VW], b1[VW], a2[VW], b2[VW];
        for (int r = 0; r < n; r++) {
            const int m = g0 + r;
            const float *x = inp + (size_t)m * D;
            const float *g1 = dout1 + (size_t)m * D, *g2 = dout2 + (size_t)m * D;
            const vec mu = VSET1(mean[m]), rs = VSET1(rstd[m]);
            a1[r] = b1[r] = a2[r] = b2[r] = VZERO;
#pragma GCC unroll 8
            for (int j = 0; j < LN_RV; j++) {
                if (j * VW >= D) break;
                const vmask k = vlanes(D - j * VW);
                const vec xh = VMUL(VSUB(VMLOAD(x + j * VW, k), mu), rs);
                const vec gd1 = VMLOAD(g1 + j * VW, k), gd2 = VMLOAD(g2 + j * VW, k);
                p[0][j] = VFMA(gd1, xh, p[0][j]);
                p[1][j] = VADD(gd1, p[1][j]);
                p[2][j] = VFMA(gd2, xh, p[2][j]);
                p[3][j] = VADD(gd2, p[3][j]);
                const vec dn1 = VMUL(gd1, VMLOAD(gamma1 + j * VW, k));
                const vec dn2 = VMUL(gd2, VMLOAD(gamma2 + j * VW, k));
                a1[r] = VADD(a1[r], dn1);
                b1[r] = VFMA(dn1, xh, b1[r]);
                a2[r] = VADD(a2[r], dn2);
                b2[r] = VFMA(dn2, xh, b2[r]);
            }
        }
        if (!dinp) continue;
        float mdn1[VW], mdx1[VW], mdn2[VW], mdx2[VW];
        layernorm_group_means(mdn1, a1, n, D);
        layernorm_group_means(mdx1, b1, n, D);
        layernorm_group_means(mdn2, a2, n, D);
        layernorm_group_means(mdx2, b2, n, D);
        for (int r = 0; r < n; r++) {
            const int m = g0 + r;
            const float *x = inp + (size_t)m * D;
            const float *g1 = dout1 + (size_t)m * D, *g2 = dout2 + (size_t)m * D;
            const vec mu = VSET1(mean[m]), rs = VSET1(rstd[m]);
            const vec n1 = VSET1(mdn1[r]), x1 = VSET1(mdx1[r]), n2 = VSET1(mdn2[r]), x2 = VSET1(mdx2[r]);
            float *dx = dinp + (size_t)m * D;
#pragma GCC unroll 8
            for (int j = 0; j < LN_RV; j++) {
                if (j * VW >= D) break;
                const vmask k = vlanes(D - j * VW);
                const vec xh = VMUL(VSUB(VMLOAD(x + j * VW, k), mu), rs);
                const vec dn1 = VMUL(VMLOAD(g1 + j * VW, k), VMLOAD(gamma1 + j * VW, k));
                const vec dn2 = VMUL(VMLOAD(g2 + j * VW, k), VMLOAD(gamma2 + j * VW, k));
                const vec t1 = VFNMA(xh, x1, VSUB(dn1, n1));
                const vec t2 = VFNMA(xh, x2, VSUB(dn2, n2));
                VMSTORE(dx + j * VW, k, VFMA(t2, rs, VFMA(t1, rs, VMLOAD(dx + j * VW, k))));
            }
        }
    }
#pragma GCC unroll 8
    for (int j = 0; j < LN_RV; j++) {
        if (j * VW >= D) break;
        const vmask k = vlanes(D - j * VW);
        for (int q = 0; q < 4; q++) VMSTORE(part[q] + j * VW, k, p[q][j]);
    }
}

static inline void layernorm_pair_backward_simd(float *dinp, float *dgamma1, float *dbeta1,
                                                float *dgamma2, float *dbeta2, const float *dout1,
                                                const float *dout2, const float *inp,
                                                const float *gamma1, const float *gamma2,
                                                const float *mean, const float *rstd, int M, int D)
{
    if (D > LN_MAX_D) { /* rare widths: the two LayerNorms as they are */
        layernorm_backward_simd(dinp, dgamma1, dbeta1, dout1, inp, gamma1, mean, rstd, M, D);
        layernorm_backward_simd(dinp, dgamma2, dbeta2, dout2, inp, gamma2, mean, rstd, M, D);
        return;
    }
    const int want_params = dgamma1 || dbeta1 || dgamma2 || dbeta2;
    if (!want_params) {
        if (!dinp) return;
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
        for (int m = 0; m < M; m++)
            layernorm_pair_rows(dinp, NULL, dout1, dout2, inp, gamma1, gamma2, mean, rstd, m, m + 1, D);
        return;
    }
    /* the block split of layernorm_backward_simd, so the sums match it */
    const int blocks = (long)M * D >= PARALLEL_MIN ? (M < LN_BLOCKS ? M : LN_BLOCKS) : 1;
    _Alignas(64) float partial[LN_BLOCKS][4][LN_MAX_D];
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int blk = 0; blk < blocks; blk++) {
        const int m0 = (int)((long)M * blk / blocks), m1 = (int)((long)M * (blk + 1) / blocks);
        if (D <= LN_RV * VW) {
            layernorm_pair_rows_regs(dinp, partial[blk], dout1, dout2, inp, gamma1, gamma2, mean, rstd, m0,
                                     m1, D);
            continue;
        }
        for (int j = 0; j < 4; j++)
            for (int d = 0; d < D; d++) partial[blk][j][d] = 0.0f;
        layernorm_pair_rows(dinp, partial[blk], dout1, dout2, inp, gamma1, gamma2, mean, rstd, m0, m1, D);
    }
    float *const dst[4] = {dgamma1, dbeta1, dgamma2, dbeta2};
    for (int j = 0; j < 4; j++) {
        if (!dst[j]) continue;
        for (int d = 0; d < D; d++) {
            float s = 0.0f;
            for (int blk = 0; blk < blocks; blk++) s += partial[blk][j][d];
            dst[j][d] += s;
        }
    }
}

#endif
