/* Attention core, one (sample, head) at a time like the reference: the
 * Tq x Tk score (and dprob) dot products are formed VW at a time in the
 * flattened [Tq*Tk] order of probs and reduced with one VW-way transpose-add
 * (vsums); softmax, dropout and the row combinations (P V, dS K, ...) run over
 * K in vector chunks with masked tails. Written once over the vector macros
 * of simd_avx512.h / simd_avx2.h (include one first). The dropout mask is
 * dropout_mask.h's: vectorized when the including file defines
 * VKEEP(drop, key, elem0) (dropout_scale_at for VW elements), scalar if not. */
#ifndef TLB_ATTENTION_SIMD_H
#define TLB_ATTENTION_SIMD_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops/dropout_mask.h"
#include "ops/prefetch.h"
#include "ops/thread_scratch.h"
#include "util/error.h"
#include "ops/vmath_simd.h"

/* out[i*Tk + j] = scale * <a_i, b_j> over K, rows `stride` floats apart;
 * bt: room for K * Tk floats (the transposed keys of the short-row path).
 * Each dot is summed over K in order, VW lanes at a time; the VW dots of a
 * group advance together (independent chains). Full vectors use plain loads
 * and stores: masked ones are slow (AMD's maskstore above all) and give the
 * same values. */
static void pair_dots(float *out, const float *a, const float *b, size_t stride, int Tq, int Tk,
                      int K, float scale, float *bt)
{
    const int np = Tq * Tk, kfull = K - K % VW;
    const vmask ktail = vlanes(K - kfull);
    if (Tk % VW == 0 && K <= VW) {
        /* Short rows (LRA's key_dim 8): a row group would load VW keys for a
         * few lanes each and spend a transpose-add on them. Instead the keys
         * go column-major once (bt[c][j], K x Tk, from scratch) and a score
         * vector is K broadcast FMAs over VW keys, summed over c in order. */
        for (int j = 0; j < Tk; j++)
            for (int c = 0; c < K; c++) bt[(size_t)c * Tk + j] = b[(size_t)j * stride + c];
        for (int i = 0; i < Tq; i++) {
            const float *x = a + (size_t)i * stride;
            for (int j0 = 0; j0 < Tk; j0 += VW) {
                vec acc = VZERO;
                for (int c = 0; c < K; c++) acc = VFMA(VSET1(x[c]), VLOAD(bt + (size_t)c * Tk + j0), acc);
                VSTORE(out + (size_t)i * Tk + j0, VMUL(acc, VSET1(scale)));
            }
        }
        return;
    }
    if (Tk % VW == 0) { /* a group is VW keys of one query row: its q chunk is loaded once */
        for (int i = 0; i < Tq; i++)
            for (int j0 = 0; j0 < Tk; j0 += VW) {
                const float *x = a + (size_t)i * stride;
                vec acc[VW];
                for (int l = 0; l < VW; l++) acc[l] = VZERO;
                for (int c = 0; c < kfull; c += VW) {
                    const vec xv = VLOAD(x + c);
                    for (int l = 0; l < VW; l++)
                        acc[l] = VFMA(xv, VLOAD(b + (size_t)(j0 + l) * stride + c), acc[l]);
                }
                if (kfull < K) {
                    const vec xv = VMLOAD(x + kfull, ktail);
                    for (int l = 0; l < VW; l++)
                        acc[l] = VFMA(xv, VMLOAD(b + (size_t)(j0 + l) * stride + kfull, ktail), acc[l]);
                }
                VSTORE(out + (size_t)i * Tk + j0, VMUL(vsums(acc), VSET1(scale)));
            }
        return;
    }
    if (2 * Tk == VW && Tq % 2 == 0) {
        /* Half a vector of keys (the seed's 8 on AVX-512): a group is two
         * whole query rows, as below, but each query and key chunk is loaded
         * once (2 + Tk loads per VW FMAs, not 2 VW); the lanes' products and
         * sums are the general path's, so are its bits. */
        for (int p0 = 0; p0 < np; p0 += VW) {
            vec acc[VW];
            const float *x0 = a + (size_t)(p0 / Tk) * stride, *x1 = x0 + stride;
            for (int l = 0; l < VW; l++) acc[l] = VZERO;
            for (int c = 0; c < kfull; c += VW) {
                const vec u = VLOAD(x0 + c), w = VLOAD(x1 + c);
                for (int j = 0; j < VW / 2; j++) {
                    const vec y = VLOAD(b + (size_t)j * stride + c);
                    acc[j] = VFMA(u, y, acc[j]);
                    acc[VW / 2 + j] = VFMA(w, y, acc[VW / 2 + j]);
                }
            }
            if (kfull < K) {
                const vec u = VMLOAD(x0 + kfull, ktail), w = VMLOAD(x1 + kfull, ktail);
                for (int j = 0; j < VW / 2; j++) {
                    const vec y = VMLOAD(b + (size_t)j * stride + kfull, ktail);
                    acc[j] = VFMA(u, y, acc[j]);
                    acc[VW / 2 + j] = VFMA(w, y, acc[VW / 2 + j]);
                }
            }
            VSTORE(out + p0, VMUL(vsums(acc), VSET1(scale)));
        }
        return;
    }
    for (int p0 = 0; p0 < np; p0 += VW) {
        vec acc[VW];
        const float *x[VW], *y[VW];
        const int cnt = np - p0 < VW ? np - p0 : VW;
        for (int l = 0; l < VW; l++) {
            acc[l] = VZERO;
            const int pl = l < cnt ? p0 + l : p0; /* unused lanes repeat a valid pair */
            x[l] = a + (size_t)(pl / Tk) * stride;
            y[l] = b + (size_t)(pl % Tk) * stride;
        }
        for (int c = 0; c < kfull; c += VW)
            for (int l = 0; l < VW; l++) acc[l] = VFMA(VLOAD(x[l] + c), VLOAD(y[l] + c), acc[l]);
        if (kfull < K)
            for (int l = 0; l < VW; l++)
                acc[l] = VFMA(VMLOAD(x[l] + kfull, ktail), VMLOAD(y[l] + kfull, ktail), acc[l]);
        const vec r = VMUL(vsums(acc), VSET1(scale));
        if (cnt == VW) VSTORE(out + p0, r);
        else VMSTORE(out + p0, vlanes(cnt), r);
    }
}

/* dst[0..K) (+)= sum_r coef[r * cs] * rows[r * rs + 0..K), summed over r in
 * order; plain loads and stores where all VW lanes are in range. */
static void combine(float *dst, int accumulate, const float *coef, size_t cs, const float *rows,
                    size_t rs, int nrows, int K)
{
    int c0 = 0;
    for (; c0 + 4 * VW <= K; c0 += 4 * VW) {
        vec acc[4];
        for (int v = 0; v < 4; v++) acc[v] = accumulate ? VLOAD(dst + c0 + VW * v) : VZERO;
        for (int r = 0; r < nrows; r++) {
            const vec w = VSET1(coef[(size_t)r * cs]);
            const float *row = rows + (size_t)r * rs + c0;
            for (int v = 0; v < 4; v++) acc[v] = VFMA(w, VLOAD(row + VW * v), acc[v]);
        }
        for (int v = 0; v < 4; v++) VSTORE(dst + c0 + VW * v, acc[v]);
    }
    for (; c0 < K; c0 += VW) {
        const vmask m = vlanes(K - c0);
        vec acc = accumulate ? VMLOAD(dst + c0, m) : VZERO;
        for (int r = 0; r < nrows; r++)
            acc = VFMA(VSET1(coef[(size_t)r * cs]), VMLOAD(rows + (size_t)r * rs + c0, m), acc);
        VMSTORE(dst + c0, m, acc);
    }
}

/* combine for n destinations at once: dst + d * ds (+)= sum_r coef[d * cd +
 * r * cs] * rows[r * rs + 0..K), each summed over r in order exactly as
 * combine sums it (so the results are combine's, bit for bit). Four
 * destinations advance together: four independent FMA chains sharing each
 * row load, where one destination alone is one chain bound by the FMA's
 * latency whenever K fits a vector or two (key_dim 8 or 16). */
static void combine_many(float *dst, size_t ds, int n, int accumulate, const float *coef, size_t cd,
                         size_t cs, const float *rows, size_t rs, int nrows, int K)
{
    int d0 = 0;
    for (; d0 + 4 <= n; d0 += 4) {
        int c0 = 0;
        /* Four vectors of K at once: 16 chains, where four were bound by the
         * FMA's latency (the seed's key_dim 64 is four vectors on AVX-512). */
        for (; c0 + 4 * VW <= K; c0 += 4 * VW) {
            vec acc[4][4];
            for (int g = 0; g < 4; g++)
                for (int v = 0; v < 4; v++)
                    acc[g][v] = accumulate ? VLOAD(dst + (size_t)(d0 + g) * ds + c0 + v * VW) : VZERO;
            const float *c = coef + (size_t)d0 * cd;
            for (int r = 0; r < nrows; r++) {
                const float *row = rows + (size_t)r * rs + c0;
                const size_t at = (size_t)r * cs;
                const vec x0 = VLOAD(row), x1 = VLOAD(row + VW);
                const vec x2 = VLOAD(row + 2 * VW), x3 = VLOAD(row + 3 * VW);
                for (int g = 0; g < 4; g++) {
                    const vec w = VSET1(c[g * cd + at]);
                    acc[g][0] = VFMA(w, x0, acc[g][0]);
                    acc[g][1] = VFMA(w, x1, acc[g][1]);
                    acc[g][2] = VFMA(w, x2, acc[g][2]);
                    acc[g][3] = VFMA(w, x3, acc[g][3]);
                }
            }
            for (int g = 0; g < 4; g++)
                for (int v = 0; v < 4; v++) VSTORE(dst + (size_t)(d0 + g) * ds + c0 + v * VW, acc[g][v]);
        }
        for (; c0 < K; c0 += VW) {
            const int full = K - c0 >= VW;
            const vmask m = vlanes(K - c0);
            float *o[4];
            vec acc[4];
            for (int g = 0; g < 4; g++) {
                o[g] = dst + (size_t)(d0 + g) * ds + c0;
                acc[g] = !accumulate ? VZERO : full ? VLOAD(o[g]) : VMLOAD(o[g], m);
            }
            const float *c = coef + (size_t)d0 * cd;
            for (int r = 0; r < nrows; r++) {
                const float *row = rows + (size_t)r * rs + c0;
                const vec x = full ? VLOAD(row) : VMLOAD(row, m);
                const size_t at = (size_t)r * cs;
                acc[0] = VFMA(VSET1(c[at]), x, acc[0]);
                acc[1] = VFMA(VSET1(c[cd + at]), x, acc[1]);
                acc[2] = VFMA(VSET1(c[2 * cd + at]), x, acc[2]);
                acc[3] = VFMA(VSET1(c[3 * cd + at]), x, acc[3]);
            }
            for (int g = 0; g < 4; g++) {
                if (full) VSTORE(o[g], acc[g]);
                else VMSTORE(o[g], m, acc[g]);
            }
        }
    }
    for (; d0 < n; d0++)
        combine(dst + (size_t)d0 * ds, accumulate, coef + (size_t)d0 * cd, cs, rows, rs, nrows, K);
}

/* y0[e] = x0[e] * keep_e and, if y1, y1[e] = x1[e] * keep_e for e < n, with
 * keep_e = dropout_scale_at(drop, skey, elem0 + e); y0 may be x0. */
static inline void dropout_apply(float *y0, const float *x0, float *y1, const float *x1, int n,
                                 const dropout_ctx *drop, uint64_t skey, uint64_t elem0)
{
#ifdef VKEEP
    for (int e0 = 0; e0 < n; e0 += VW) {
        const vmask m = vlanes(n - e0);
        const vec keep = VKEEP(drop, skey, elem0 + e0);
        VMSTORE(y0 + e0, m, VMUL(VMLOAD(x0 + e0, m), keep));
        if (y1) VMSTORE(y1 + e0, m, VMUL(VMLOAD(x1 + e0, m), keep));
    }
#else
    for (int e = 0; e < n; e++) {
        const float keep = dropout_scale_at(drop, skey, elem0 + e);
        y0[e] = x0[e] * keep;
        if (y1) y1[e] = x1[e] * keep;
    }
#endif
}

/* Per-thread scratch (thread_scratch.h), reserved by attention_prepare_simd. */
static _Thread_local thread_scratch attention_tls;
static thread_scratch *attention_scratch(void) { return &attention_tls; }
static float *scratch(size_t n) { return thread_scratch_get(&attention_tls, n); }

static int attention_prepare_simd(int B, int Tq, int Tk, int H, int K, tlb_error *err)
{
    (void)B, (void)H;
    /* backward's ds and pk (forward's dropped-out probabilities in the first),
     * then pair_dots' transposed keys */
    return thread_scratch_reserve_team(attention_scratch, 2 * (size_t)Tq * Tk + (size_t)K * Tk, "attention",
                                       err);
}

/* Rows of Tk keys, Tk < VW dividing VW (the seed's 8 on AVX-512), lie
 * VW / Tk to a vector. Every lane gets its row's max or sum by exchanging
 * lanes l ^ Tk/2, ..., l ^ 1 (vswap_lanes): for the sum, the pairs and their
 * order of vhsum's tree on a row alone in a zero-filled vector (vhsum adds
 * its upper halves first, zeros there), so the bits are the row-at-a-time
 * path's. */
static inline vec seg_max(vec v, int Tk)
{
    for (int s = Tk / 2; s >= 1; s /= 2) v = VMAX(v, vswap_lanes(v, s));
    return v;
}

static inline vec seg_sum(vec v, int Tk)
{
    for (int s = Tk / 2; s >= 1; s /= 2) v = VADD(v, vswap_lanes(v, s));
    return v;
}

static inline int rows_share_vectors(int Tk, int nk) { return nk == Tk && Tk < VW && VW % Tk == 0; }

/* softmax_rows for rows_share_vectors: a row-at-a-time pass spent a
 * vector's reductions and an exp on each 8-key row, serially dependent. */
static void softmax_shared(float *p, int np, int Tk)
{
    for (int e0 = 0; e0 < np; e0 += VW) {
        const vmask k = vlanes(np - e0); /* a tail holds whole rows */
        const vec x = VMLOAD(p + e0, k);
        const vec e = vexp(VSUB(x, seg_max(x, Tk)));
        VMSTORE(p + e0, k, VDIV(e, seg_sum(e, Tk)));
    }
}

/* Row-wise softmax in place over the first nk of each row's Tk entries (the
 * rest, padded keys, set to 0); full vectors use plain loads and stores. */
static void softmax_rows(float *p, int Tq, int Tk, int nk)
{
    if (rows_share_vectors(Tk, nk)) {
        softmax_shared(p, Tq * Tk, Tk);
        return;
    }
    for (int i = 0; i < Tq; i++) {
        float *row = p + (size_t)i * Tk;
        if (nk < Tk) memset(row + nk, 0, (size_t)(Tk - nk) * sizeof *row);
        if (nk == 0) continue;
        vec mx = VSET1(-INFINITY);
        for (int j = 0; j < nk; j += VW)
            mx = VMAX(mx, nk - j >= VW ? VLOAD(row + j) : VMLOAD_OR(row + j, vlanes(nk - j), mx));
        const vec m = VSET1(vhmax(mx));
        vec s = VZERO;
        for (int j = 0; j < nk; j += VW) {
            if (nk - j >= VW) {
                const vec e = vexp(VSUB(VLOAD(row + j), m));
                s = VADD(s, e);
                VSTORE(row + j, e);
            } else {
                const vmask k = vlanes(nk - j);
                const vec e = VMASKZ(k, vexp(VSUB(VMLOAD(row + j, k), m)));
                s = VADD(s, e);
                VMSTORE(row + j, k, e);
            }
        }
        const vec sum = VSET1(vhsum(s));
        for (int j = 0; j < nk; j += VW) {
            if (nk - j >= VW) {
                VSTORE(row + j, VDIV(VLOAD(row + j), sum));
            } else {
                const vmask k = vlanes(nk - j);
                VMSTORE(row + j, k, VDIV(VMLOAD(row + j, k), sum));
            }
        }
    }
}

/* (b, h)'s output from its probabilities p over nk valid keys: dropout into
 * buf, then the rows of v combined -- the forward's last stage, and all of
 * attention_mix_simd. */
static inline void mix_head(float *out, const float *p, float *buf, const float *v, int b, int h, int nk, int Tq,
                            int Tk, int HK, int K, const dropout_ctx *drop)
{
    const int np = Tq * Tk;
    const float *pd = p;
    if (dropout_active(drop)) { /* dropped-out copy of the probabilities */
        dropout_apply(buf, p, NULL, NULL, np, drop, dropout_sample_key(drop, b), (uint64_t)h * np);
        pd = buf;
    }
    combine_many(out, HK, Tq, 0, pd, Tk, 1, v, HK, nk, K);
}

static void attention_forward_simd(float *out, float *probs, const float *q, const float *k,
                                   const float *v, const int *kv_len, int B, int Tq, int Tk, int H,
                                   int K, const dropout_ctx *drop)
{
    const int HK = H * K, np = Tq * Tk;
    const float scale = 1.0f / sqrtf((float)K);
#pragma omp parallel for collapse(2) schedule(static) if (B * H > 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const size_t qo = (size_t)b * Tq * HK + (size_t)h * K;
            const size_t ko = (size_t)b * Tk * HK + (size_t)h * K;
            float *p = probs + ((size_t)b * H + h) * np;
            const int nk = kv_len ? kv_len[b] : Tk; /* keys past nk are padding */
            float *buf = scratch(2 * (size_t)np + (size_t)K * Tk);
            pair_dots(p, q + qo, k + ko, HK, Tq, Tk, K, scale, buf + 2 * (size_t)np);
            softmax_rows(p, Tq, Tk, nk);
            mix_head(out + qo, p, buf, v + ko, b, h, nk, Tq, Tk, HK, K, drop);
        }
    }
}

/* The forward's last stage alone (ops.h, attention_mix_fn): mix_head over
 * the same keys, so the same bits. */
static void attention_mix_simd(float *out, const float *probs, const float *v, const int *kv_len, int B, int Tq,
                               int Tk, int H, int K, const dropout_ctx *drop)
{
    const int HK = H * K, np = Tq * Tk;
#pragma omp parallel for collapse(2) schedule(static) if (B * H > 1)
    for (int b = 0; b < B; b++)
        for (int h = 0; h < H; h++)
            mix_head(out + (size_t)b * Tq * HK + (size_t)h * K, probs + ((size_t)b * H + h) * np,
                     scratch((size_t)np), v + (size_t)b * Tk * HK + (size_t)h * K, b, h, kv_len ? kv_len[b] : Tk,
                     Tq, Tk, HK, K, drop);
}

/* Softmax backward in place: ds = p (ds - <ds, p>) scale, row by row (rows
 * sharing vectors as softmax_shared's). */
static void softmax_backward_rows(float *ds, const float *p, int Tq, int Tk, float scale)
{
    if (rows_share_vectors(Tk, Tk)) {
        for (int e0 = 0; e0 < Tq * Tk; e0 += VW) {
            const vmask m = vlanes(Tq * Tk - e0);
            const vec d = VMLOAD(ds + e0, m), pr = VMLOAD(p + e0, m);
            const vec dot = seg_sum(VFMA(d, pr, VZERO), Tk);
            VMSTORE(ds + e0, m, VMUL(VMUL(pr, VSUB(d, dot)), VSET1(scale)));
        }
        return;
    }
    for (int i = 0; i < Tq; i++) {
        float *d = ds + (size_t)i * Tk;
        const float *pr = p + (size_t)i * Tk;
        vec acc = VZERO;
        for (int j = 0; j < Tk; j += VW) {
            const vmask m = vlanes(Tk - j);
            acc = VFMA(VMLOAD(d + j, m), VMLOAD(pr + j, m), acc);
        }
        const vec dot = VSET1(vhsum(acc));
        for (int j = 0; j < Tk; j += VW) {
            const vmask m = vlanes(Tk - j);
            const vec x = VMUL(VMLOAD(pr + j, m), VSUB(VMLOAD(d + j, m), dot));
            VMSTORE(d + j, m, VMUL(x, VSET1(scale)));
        }
    }
}

/* add 0: dq, dk and dv are written, not accumulated (ops.h, backward_first):
 * every (sample, head) writes all its rows of the three, padded keys included.
 * att (or NULL): the forward's output rebuilt as mix_head does it, over
 * kv_len's keys, from pk (the same p * keep as mix_head's copy). */
static void attention_backward_into(float *att, const int *kv_len, float *dq, float *dk, float *dv,
                                    const float *dout, const float *q, const float *k, const float *v,
                                    const float *probs, int B, int Tq, int Tk, int H, int K,
                                    const dropout_ctx *drop, int add)
{
    const int HK = H * K, np = Tq * Tk;
    const float scale = 1.0f / sqrtf((float)K);
    const int active = dropout_active(drop);
    if (!att && !dq && !dk && !dv) return;
#pragma omp parallel for collapse(2) schedule(static) if (B * H > 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const size_t qo = (size_t)b * Tq * HK + (size_t)h * K;
            const size_t ko = (size_t)b * Tk * HK + (size_t)h * K;
            const float *p = probs + ((size_t)b * H + h) * np;
            /* the next sample's inputs (saved by the forward long ago: 6 KB
             * in the seed, on demand 1.1% of the step), a tensor at a time
             * between this one's products, in the order they are read (all
             * 96 lines at once waited on the fill buffers: 0.6% more) */
            const int ahead = h == 0 && b + 1 < B;
            if (ahead) {
                prefetch_floats(v + ko + (size_t)Tk * HK, (size_t)Tk * HK);
                prefetch_floats(p + (size_t)H * np, (size_t)H * np);
            }
            float *ds = scratch(2 * (size_t)np + (size_t)K * Tk), *pk = ds + np;
            /* dp = dout v^T, then through dropout: dp *= keep, pk = p * keep */
            pair_dots(ds, dout + qo, v + ko, HK, Tq, Tk, K, 1.0f, ds + 2 * (size_t)np);
            if (active)
                dropout_apply(ds, ds, pk, p, np, drop, dropout_sample_key(drop, b), (uint64_t)h * np);
            else
                memcpy(pk, p, (size_t)np * sizeof *pk);
            if (att) combine_many(att + qo, HK, Tq, 0, pk, Tk, 1, v + ko, HK, kv_len ? kv_len[b] : Tk, K);
            if (ahead) prefetch_floats(k + ko + (size_t)Tk * HK, (size_t)Tk * HK);
            softmax_backward_rows(ds, p, Tq, Tk, scale);
            if (dv) combine_many(dv + ko, HK, Tk, add, pk, 1, Tk, dout + qo, HK, Tq, K);
            if (ahead) prefetch_floats(q + qo + (size_t)Tq * HK, (size_t)Tq * HK);
            if (dq) combine_many(dq + qo, HK, Tq, add, ds, Tk, 1, k + ko, HK, Tk, K);
            if (dk) combine_many(dk + ko, HK, Tk, add, ds, 1, Tk, q + qo, HK, Tq, K);
        }
    }
}

static void attention_backward_simd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                    const float *k, const float *v, const float *probs, int B, int Tq,
                                    int Tk, int H, int K, const dropout_ctx *drop)
{
    attention_backward_into(NULL, NULL, dq, dk, dv, dout, q, k, v, probs, B, Tq, Tk, H, K, drop, 1);
}

static void attention_backward_first_simd(float *dq, float *dk, float *dv, const float *dout, const float *q,
                                          const float *k, const float *v, const float *probs, int B,
                                          int Tq, int Tk, int H, int K, const dropout_ctx *drop)
{
    attention_backward_into(NULL, NULL, dq, dk, dv, dout, q, k, v, probs, B, Tq, Tk, H, K, drop, 0);
}

#endif
