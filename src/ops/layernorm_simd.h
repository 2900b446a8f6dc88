/* Layer normalisation, each row in vector chunks (masked tail), rows split
 * across threads; dgamma/dbeta reduce over rows in order. Written once over
 * the vector macros of simd_avx512.h / simd_avx2.h (include one first). */
#ifndef TLB_LAYERNORM_SIMD_H
#define TLB_LAYERNORM_SIMD_H

#include <math.h>
#include <stddef.h>

#include "ops/prefetch.h"

#define LN_EPS 1e-5f
#define PARALLEL_MIN 16384

/* One row's mean and 1/sqrt(variance + eps), two passes (also the fused
 * layernorm_pair's statistics, so both agree bit for bit). */
static inline void layernorm_row_stats(const float *x, int D, float *mean, float *rstd)
{
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
    *mean = mu;
    *rstd = 1.0f / sqrtf(vhsum(v) / (float)D + LN_EPS);
}

/* layernorm_row_stats for VW consecutive rows (x: the first), bit for bit:
 * each row's vector sums as there, their horizontal sums in one
 * transpose-add (vhsums, vhsum's order), the divisions and square roots on
 * a vector -- a row alone waited on two horizontal sums and a scalar
 * square root and division. */
static inline void layernorm_group_stats(const float *x, int D, float *mean, float *rstd)
{
    vec s[VW];
    for (int r = 0; r < VW; r++) {
        const float *xr = x + (size_t)r * D;
        vec a = VZERO;
        for (int d = 0; d < D; d += VW) a = VADD(a, VMLOAD(xr + d, vlanes(D - d)));
        s[r] = a;
    }
    const vec vD = VSET1((float)D), mu = VDIV(vhsums(s), vD);
    float mus[VW];
    VSTORE(mus, mu);
    for (int r = 0; r < VW; r++) {
        const float *xr = x + (size_t)r * D;
        const vec vmu = VSET1(mus[r]);
        vec v = VZERO;
        for (int d = 0; d < D; d += VW) {
            const vmask k = vlanes(D - d);
            const vec c = VMASKZ(k, VSUB(VMLOAD(xr + d, k), vmu));
            v = VFMA(c, c, v);
        }
        s[r] = v;
    }
    VSTORE(mean, mu);
    VSTORE(rstd, VDIV(VSET1(1.0f), VSQRT(VADD(VDIV(vhsums(s), vD), VSET1(LN_EPS)))));
}

/* Statistics of rows [VW g, VW g + VW) of inp[M, D], or of the rows left
 * past the last whole group when g = M / VW. */
static inline int layernorm_group_rows(const float *inp, float *mean, float *rstd, int g, int M, int D)
{
    const int m0 = g * VW;
    if (m0 + VW <= M) {
        layernorm_group_stats(inp + (size_t)m0 * D, D, mean + m0, rstd + m0);
        return VW;
    }
    for (int m = m0; m < M; m++) layernorm_row_stats(inp + (size_t)m * D, D, &mean[m], &rstd[m]);
    return M - m0;
}

/* o = (x - mean) rstd gamma + beta over one row */
static inline void layernorm_row_apply(float *o, const float *x, const float *gamma,
                                       const float *beta, float mean, float rstd, int D)
{
    const vec vmu = VSET1(mean), vrs = VSET1(rstd);
    for (int d = 0; d < D; d += VW) {
        const vmask k = vlanes(D - d);
        const vec xh = VMUL(VSUB(VMLOAD(x + d, k), vmu), vrs);
        VMSTORE(o + d, k, VFMA(xh, VMLOAD(gamma + d, k), VMLOAD(beta + d, k)));
    }
}

/* Rows ahead that a pass over saved rows prefetches. */
#define LN_PREFETCH_ROWS 8

/* The forward's output from its saved statistics (ops.h, layernorm_apply_fn):
 * the same layernorm_row_apply, so the same bits. */
static inline void layernorm_apply_simd(float *out, const float *inp, const float *mean, const float *rstd,
                                        const float *gamma, const float *beta, int M, int D)
{
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
    for (int m = 0; m < M; m++) {
        /* inp was saved by the forward long ago: from memory, where the
         * hardware prefetchers fell behind (AMD EPYC, perf) */
        if (m + LN_PREFETCH_ROWS < M) prefetch_floats(inp + (size_t)(m + LN_PREFETCH_ROWS) * D, (size_t)D);
        layernorm_row_apply(out + (size_t)m * D, inp + (size_t)m * D, gamma, beta, mean[m], rstd[m], D);
    }
}

static inline void layernorm_forward_simd(float *out, float *mean, float *rstd, const float *inp,
                                          const float *gamma, const float *beta, int M, int D)
{
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
    for (int g = 0; g <= M / VW; g++) {
        const int m0 = g * VW, rows = layernorm_group_rows(inp, mean, rstd, g, M, D);
        for (int m = m0; m < m0 + rows; m++)
            layernorm_row_apply(out + (size_t)m * D, inp + (size_t)m * D, gamma, beta, mean[m], rstd[m], D);
    }
}

/* dgamma/dbeta partial sums: rows split into a block count fixed by the
 * shape (not the thread count), each block summed in one pass with the
 * input gradient, blocks added in order -- deterministic, and one sweep over
 * inp/dout instead of one column-strided sweep per vector of D. */
#define LN_BLOCKS 16
#define LN_MAX_D 256

/* dx += rstd (dn - mean(dn) - xh mean(dn xh)), dn = g gamma, given the
 * row's sums a = sum(dn) and b = sum(dn xh) as vectors. */
static inline void layernorm_row_dx_given(float *dx, const float *x, const float *g, const float *gamma,
                                          vec mu, vec rs, vec mdn, vec mdx, int D)
{
    for (int d = 0; d < D; d += VW) {
        const vmask k = vlanes(D - d);
        const vec dn = VMUL(VMLOAD(g + d, k), VMLOAD(gamma + d, k));
        const vec xh = VMUL(VSUB(VMLOAD(x + d, k), mu), rs);
        const vec t = VFNMA(xh, mdx, VSUB(dn, mdn));
        VMSTORE(dx + d, k, VFMA(t, rs, VMLOAD(dx + d, k)));
    }
}

static inline void layernorm_row_dx(float *dx, const float *x, const float *g,
                                    const float *gamma, vec mu, vec rs, vec a, vec b, int D)
{
    layernorm_row_dx_given(dx, x, g, gamma, mu, rs, VSET1(vhsum(a) / (float)D), VSET1(vhsum(b) / (float)D), D);
}

/* means[r] = hsum(v[r]) / D for the n (<= VW) rows of a group, as
 * layernorm_row_dx takes each row's: a whole group in one transpose-add
 * (vhsums, bit for bit), a tail row by row (so a row alone is checked
 * against the group path: ops_backend's rows-independent test). */
static inline void layernorm_group_means(float *means, const vec v[VW], int n, int D)
{
    if (n < VW) {
        for (int r = 0; r < n; r++) means[r] = vhsum(v[r]) / (float)D;
        return;
    }
    VSTORE(means, VDIV(vhsums(v), VSET1((float)D)));
}

static inline void layernorm_row_backward(float *dx, float *sg, float *sb, const float *x,
                                   const float *g, const float *gamma, float mean, float rstd,
                                   int D)
{
    const vec mu = VSET1(mean), rs = VSET1(rstd);
    vec a = VZERO, b = VZERO;
    for (int d = 0; d < D; d += VW) {
        const vmask k = vlanes(D - d);
        /* tail lanes: dn = 0 and xh finite, so they add nothing */
        const vec gd = VMLOAD(g + d, k);
        const vec xh = VMUL(VSUB(VMLOAD(x + d, k), mu), rs);
        if (sg) {
            VMSTORE(sg + d, k, VFMA(gd, xh, VMLOAD(sg + d, k)));
            VMSTORE(sb + d, k, VADD(gd, VMLOAD(sb + d, k)));
        }
        if (dx) {
            const vec dn = VMUL(gd, VMLOAD(gamma + d, k));
            a = VADD(a, dn);
            b = VFMA(dn, xh, b);
        }
    }
    if (!dx) return;
    layernorm_row_dx(dx, x, g, gamma, mu, rs, a, b, D);
}

/* The blocked pass for D <= 64: dgamma/dbeta partials of rows [m0, m1)
 * live in registers instead of being reloaded and stored for every row. */
#define LN_RV (64 / VW)

static inline __attribute__((always_inline)) void
layernorm_rows_backward_regs(float *dinp, float *sg_out, float *sb_out, const float *dout, const float *inp,
                             const float *gamma, const float *mean, const float *rstd, int m0, int m1, int M,
                             int D)
{
    const int params = sg_out != NULL; /* NULL: dinp only (a constant where inlined) */
    vec sg[LN_RV], sb[LN_RV];
#pragma GCC unroll 8
    for (int j = 0; j < LN_RV; j++) sg[j] = sb[j] = VZERO;
    /* VW rows at a time: their dx means in one transpose-add each */
    for (int g0 = m0; g0 < m1; g0 += VW) {
        const int n = m1 - g0 < VW ? m1 - g0 : VW;
        vec a[VW], b[VW];
        for (int r = 0; r < n; r++) {
            const int m = g0 + r;
            const float *x = inp + (size_t)m * D, *g = dout + (size_t)m * D;
            const vec mu = VSET1(mean[m]), rs = VSET1(rstd[m]);
            /* the next group's rows (of M in all): inp was saved by the
             * forward and dinp written long before, both from memory (perf
             * on the AMD EPYC) */
            if (m + VW < M) {
                prefetch_floats(x + (size_t)VW * D, (size_t)D), prefetch_floats(g + (size_t)VW * D, (size_t)D);
                if (dinp) prefetch_floats(dinp + (size_t)(m + VW) * D, (size_t)D); /* accumulated into: read first */
            }
            a[r] = b[r] = VZERO;
#pragma GCC unroll 8
            for (int j = 0; j < LN_RV; j++) {
                if (j * VW >= D) break;
                const vmask k = vlanes(D - j * VW);
                const vec gd = VMLOAD(g + j * VW, k);
                const vec xh = VMUL(VSUB(VMLOAD(x + j * VW, k), mu), rs);
                if (params) {
                    sg[j] = VFMA(gd, xh, sg[j]);
                    sb[j] = VADD(gd, sb[j]);
                }
                const vec dn = VMUL(gd, VMLOAD(gamma + j * VW, k));
                a[r] = VADD(a[r], dn);
                b[r] = VFMA(dn, xh, b[r]);
            }
        }
        if (!dinp) continue;
        float mdn[VW], mdx[VW];
        layernorm_group_means(mdn, a, n, D);
        layernorm_group_means(mdx, b, n, D);
        for (int r = 0; r < n; r++) {
            const int m = g0 + r;
            layernorm_row_dx_given(dinp + (size_t)m * D, inp + (size_t)m * D, dout + (size_t)m * D, gamma,
                                   VSET1(mean[m]), VSET1(rstd[m]), VSET1(mdn[r]), VSET1(mdx[r]), D);
        }
    }
    if (!params) return;
#pragma GCC unroll 8
    for (int j = 0; j < LN_RV; j++) {
        if (j * VW >= D) break;
        const vmask k = vlanes(D - j * VW);
        VMSTORE(sg_out + j * VW, k, sg[j]);
        VMSTORE(sb_out + j * VW, k, sb[j]);
    }
}

static inline void layernorm_backward_simd(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                    const float *inp, const float *gamma, const float *mean,
                                    const float *rstd, int M, int D)
{
    const int want_params = dgamma || dbeta;
    if (!want_params && dinp && D <= LN_RV * VW) {
        /* dinp alone (a LayerNorm whose gamma and beta are folded into the
         * product it feeds): VW rows' means in one transpose-add each, as
         * the blocked pass below takes them, so the same bits */
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
        for (int g = 0; g < (M + VW - 1) / VW; g++)
            layernorm_rows_backward_regs(dinp, NULL, NULL, dout, inp, gamma, mean, rstd, g * VW,
                                         g * VW + VW < M ? g * VW + VW : M, M, D);
        return;
    }
    if (!want_params || D > LN_MAX_D) {
        /* rare shapes: a row pass for dinp, then a column pass for the params */
        if (dinp) {
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
            for (int m = 0; m < M; m++)
                layernorm_row_backward(dinp + (size_t)m * D, NULL, NULL, inp + (size_t)m * D,
                                       dout + (size_t)m * D, gamma, mean[m], rstd[m], D);
        }
        if (!want_params) return;
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
        return;
    }
    const int blocks = (long)M * D >= PARALLEL_MIN ? (M < LN_BLOCKS ? M : LN_BLOCKS) : 1;
    _Alignas(64) float partial[LN_BLOCKS][2][LN_MAX_D];
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int blk = 0; blk < blocks; blk++) {
        float *sg = partial[blk][0], *sb = partial[blk][1];
        const int m0 = (int)((long)M * blk / blocks), m1 = (int)((long)M * (blk + 1) / blocks);
        if (D <= LN_RV * VW) {
            layernorm_rows_backward_regs(dinp, sg, sb, dout, inp, gamma, mean, rstd, m0, m1, M, D);
            continue;
        }
        for (int d = 0; d < D; d++) sg[d] = sb[d] = 0.0f;
        for (int m = m0; m < m1; m++)
            layernorm_row_backward(dinp ? dinp + (size_t)m * D : NULL, sg, sb,
                                   inp + (size_t)m * D, dout + (size_t)m * D, gamma, mean[m],
                                   rstd[m], D);
    }
    for (int d = 0; d < D; d++) {
        float sg = 0.0f, sb = 0.0f;
        for (int blk = 0; blk < blocks; blk++) {
            sg += partial[blk][0][d];
            sb += partial[blk][1][d];
        }
        if (dgamma) dgamma[d] += sg;
        if (dbeta) dbeta[d] += sb;
    }
}

#endif
