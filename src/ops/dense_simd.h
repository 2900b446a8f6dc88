/* The register-blocked GEMM behind dense_avx512.c and dense_avx2.c, written
 * once over a few vector macros that the including file defines:
 *   VW                    floats per vector
 *   NV_MAX                vectors per tile row (tile = MR x NV_MAX*VW of C)
 *   vec, vmask            vector and lane-mask types
 *   VZERO, VSET1(x), VLOAD(p), VFMA(a, b, c) = a*b + c, VADD(a, b)
 *   VMASK(n)              mask of the first n lanes (1 <= n <= VW)
 *   VSTORE(p, v), VMLOAD(p, m), VMSTORE(p, m, v)   store, masked load (zero fill), masked store
 *
 * C[M,N] = init + A[M,R] @ B[R,N], where init is C itself (accumulate), the
 * bias row, or zero. A is read through (row stride, column stride), so the
 * same kernel serves inp @ w, dout @ w^T (w^T pre-transposed) and inp^T @ dout.
 * Each tile of C is owned by one thread and reduced over R in order, so the
 * result does not depend on the thread count.
 *
 * Fused stages (ffn_simd.h) define GEMM_EPILOGUE(g, m0) before including
 * this file: with g->epi set, gemm() runs it on rows [m0, m0 + MR) of C as
 * soon as they are stored, while they are in L1, so an elementwise op runs
 * in the product's output pass (on the stored rows, not the accumulator
 * registers, which would crowd the FMA loop's). SCRATCH_SLOTS (default 2)
 * sizes the scratch below. */
#ifndef TLB_DENSE_SIMD_H
#define TLB_DENSE_SIMD_H

#include <stdlib.h>
#include <string.h>

#include <omp.h>

#include "ops/thread_scratch.h"
#include "util/error.h"

#define MR 6
#define TILE_N (NV_MAX * VW)
/* Below this many multiply-adds a parallel region costs more than it saves. */
#define PARALLEL_MACS 131072

typedef struct gemm_args {
    float *C;
    size_t ldc;
    const float *A;
    size_t ars, acs; /* A[i][r] = A[i*ars + r*acs] */
    const float *B;
    size_t ldb;
    const float *bias; /* NULL: zero init */
    int accumulate;    /* init from C */
    int M, N, R;
    const void *epi; /* NULL: plain store; else GEMM_EPILOGUE's own data */
    float *colsum;   /* spans only (gemm_spans): colsum[n] += sum over R of B[r][n], in order */
} gemm_args;

/* One tile of C over R's rows [r0, r1): it starts from C itself when the
 * GEMM accumulates or an earlier span of R stored it (a store and a reload
 * of fp32 are exact, so spans give the bits of one pass). tail: the last
 * vector of a row is partial (`last`); a full tile loads B plainly, as AVX2's
 * VMASKMOVPS load cost 6-11% of the tile's speed on Zen 4 even with every
 * lane on. */
static inline __attribute__((always_inline)) void tile(const gemm_args *g, int m0, int n0, const int mr,
                                                       const int nv, const int tail, vmask last, int r0, int r1)
{
    vec c[MR][NV_MAX];
    float *C = g->C + (size_t)m0 * g->ldc + n0;
    const int from_c = g->accumulate || r0 > 0;
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 8
        for (int j = 0; j < nv; j++) {
            if (from_c)
                c[i][j] = j == nv - 1 ? VMLOAD(C + i * g->ldc + j * VW, last)
                                      : VLOAD(C + i * g->ldc + j * VW);
            else if (g->bias)
                c[i][j] = j == nv - 1 ? VMLOAD(g->bias + n0 + j * VW, last)
                                      : VLOAD(g->bias + n0 + j * VW);
            else
                c[i][j] = VZERO;
        }
    const float *A = g->A + (size_t)m0 * g->ars;
    const float *B = g->B + n0;
    const size_t ars = g->ars, acs = g->acs, ldb = g->ldb;
    for (int r = r0; r < r1; r++) {
        vec b[NV_MAX];
#pragma GCC unroll 8
        for (int j = 0; j < nv; j++)
            b[j] = tail && j == nv - 1 ? VMLOAD(B + (size_t)r * ldb + j * VW, last)
                                       : VLOAD(B + (size_t)r * ldb + j * VW);
#pragma GCC unroll 8
        for (int i = 0; i < mr; i++) {
            const vec a = VSET1(A[i * ars + (size_t)r * acs]);
#pragma GCC unroll 8
            for (int j = 0; j < nv; j++) c[i][j] = VFMA(a, b[j], c[i][j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < mr; i++)
#pragma GCC unroll 8
        for (int j = 0; j < nv; j++) {
            if (j == nv - 1) VMSTORE(C + i * g->ldc + j * VW, last, c[i][j]);
            else VSTORE(C + i * g->ldc + j * VW, c[i][j]);
        }
}

#define TILE_NV_TAIL(mr, tail)                                                  \
    switch (nv) {                                                               \
    case 1: tile(g, m0, n0, mr, 1, tail, last, r0, r1); break;                  \
    case 2: if (NV_MAX >= 2) tile(g, m0, n0, mr, 2, tail, last, r0, r1); break; \
    case 3: if (NV_MAX >= 3) tile(g, m0, n0, mr, 3, tail, last, r0, r1); break; \
    default: if (NV_MAX >= 4) tile(g, m0, n0, mr, 4, tail, last, r0, r1); break; \
    }
/* Only where a masked load costs more than a plain one (simd_avx2.h sets
 * VMASKED_LOAD_COSTS) does a whole tile get its own copy: the copies
 * doubled the tiles a file inlines, and the fuzz build (clang -O1 with ASan)
 * of dense_avx512.c went from 52 to 185 s for nothing on AVX-512. */
#ifdef VMASKED_LOAD_COSTS
#define TILE_NV(mr)                   \
    if (nc == nv * VW) {              \
        TILE_NV_TAIL(mr, 0)           \
    } else {                          \
        TILE_NV_TAIL(mr, 1)           \
    }
#else
#define TILE_NV(mr) TILE_NV_TAIL(mr, 1)
#endif

/* The tile of mr (<= MR) rows at (m0, n0) over R's rows [r0, r1). */
static inline void tile_rows(const gemm_args *g, int m0, int mr, int n0, int r0, int r1)
{
    const int nc = g->N - n0 < TILE_N ? g->N - n0 : TILE_N;
    const int nv = (nc + VW - 1) / VW;
    const vmask last = VMASK(nc - (nv - 1) * VW);
    switch (mr) {
    case 1: TILE_NV(1); break;
    case 2: TILE_NV(2); break;
    case 3: TILE_NV(3); break;
    case 4: TILE_NV(4); break;
    case 5: TILE_NV(5); break;
    default: TILE_NV(6); break;
    }
}

static inline void tile_span(const gemm_args *g, int m0, int n0, int r0, int r1)
{
    tile_rows(g, m0, g->M - m0 < MR ? g->M - m0 : MR, n0, r0, r1);
}

static inline void tile_any(const gemm_args *g, int m0, int n0) { tile_span(g, m0, n0, 0, g->R); }

/* R rows per span when R is long (a weight gradient's R is the batch's
 * rows): every tile streams all of A's and B's rows, so without spans each
 * tile of C re-read megabytes from L3 (fc1's dW ran at a third of peak);
 * a span's rows of A and B (at most 128 x (M + N) floats) stay in L2 while
 * all the tiles pass over them. */
#define R_SPAN 128

/* Whether gemm() runs R in spans, and so can fold column sums of B in. */
static inline int gemm_spans(int R) { return R > 2 * R_SPAN; }

/* colsum[n0 .. n0 + TILE_N) += B's rows [r0, r1), row by row (stored and
 * reloaded exactly between spans: one running sum per column). A weight
 * gradient's product streams dout as B anyway, so the bias gradient rides
 * along instead of a pass of its own (fc1's was 42 us of its backward). */
static inline void colsum_span(const gemm_args *g, int n0, int r0, int r1)
{
    const int nc = g->N - n0 < TILE_N ? g->N - n0 : TILE_N, nv = (nc + VW - 1) / VW;
    const vmask last = VMASK(nc - (nv - 1) * VW);
    const int tail = nc != nv * VW; /* plain loads where the row is whole (tile()) */
    vec c[NV_MAX];
    for (int j = 0; j < nv; j++)
        c[j] = j == nv - 1 ? VMLOAD(g->colsum + n0 + j * VW, last) : VLOAD(g->colsum + n0 + j * VW);
    const float *B = g->B + n0;
    for (int r = r0; r < r1; r++)
        for (int j = 0; j < nv; j++)
            c[j] = VADD(c[j], tail && j == nv - 1 ? VMLOAD(B + (size_t)r * g->ldb + j * VW, last)
                                                  : VLOAD(B + (size_t)r * g->ldb + j * VW));
    for (int j = 0; j < nv; j++) {
        if (j == nv - 1) VMSTORE(g->colsum + n0 + j * VW, last, c[j]);
        else VSTORE(g->colsum + n0 + j * VW, c[j]);
    }
}

#ifdef GEMM_EPILOGUE
/* With an epilogue: a thread takes MR rows at a time, all their column
 * tiles, then GEMM_EPILOGUE over those whole rows while they are in L1
 * (long rows give the elementwise op the same vector loop a separate pass
 * has). */
static inline void gemm_rows(const gemm_args *g)
{
    const int mt = (g->M + MR - 1) / MR, nt = (g->N + TILE_N - 1) / TILE_N;
    const double macs = (double)g->M * g->N * (g->R > 0 ? g->R : 1);
#pragma omp parallel for schedule(static) if (macs >= PARALLEL_MACS)
    for (int r = 0; r < mt; r++) {
        for (int t = 0; t < nt; t++) tile_any(g, r * MR, t * TILE_N);
        GEMM_EPILOGUE(g, r * MR);
    }
}
#endif

/* Thread me of nth's share of one span [r0, r1) of R: an equal share of C's
 * rows, in tiles of at most MR rows of near-equal height, the same rows in
 * every span (no tile shared, no barrier between spans); and column tile t
 * of the column sums on thread t mod nth, so each sum stays in order. */
static inline void gemm_span_share(const gemm_args *g, int r0, int r1, int me, int nth)
{
    const int lo = (int)((long)g->M * me / nth), rows = (int)((long)g->M * (me + 1) / nth) - lo;
    const int mine = (rows + MR - 1) / MR;
    for (int i = 0; i < mine; i++) {
        const int a = lo + rows * i / mine, b = lo + rows * (i + 1) / mine;
        for (int n0 = 0; n0 < g->N; n0 += TILE_N) tile_rows(g, a, b - a, n0, r0, r1);
    }
    if (g->colsum)
        for (int t = me; t * TILE_N < g->N; t += nth) colsum_span(g, t * TILE_N, r0, r1);
}

static inline void gemm(const gemm_args *g)
{
    if (g->M <= 0 || g->N <= 0) return;
#ifdef GEMM_EPILOGUE
    if (g->epi) {
        gemm_rows(g);
        return;
    }
#endif
    const double macs = (double)g->M * g->N * (g->R > 0 ? g->R : 1);
    if (!gemm_spans(g->R)) {
        const int mt = (g->M + MR - 1) / MR, nt = (g->N + TILE_N - 1) / TILE_N, tiles = mt * nt;
#pragma omp parallel for schedule(static) if (macs >= PARALLEL_MACS)
        for (int t = 0; t < tiles; t++) tile_any(g, (t / nt) * MR, (t % nt) * TILE_N);
        return;
    }
    /* Spans of R outermost, each thread its share of C through every span
     * (gemm_span_share). (MR-row tiles dealt out left a weight gradient's 64
     * rows 36 : 28 between two threads.) A value of C is the same FMAs over
     * R in the same order whatever its tile, so the split changes no bit. */
#pragma omp parallel if (macs >= PARALLEL_MACS)
    {
        const int nth = omp_get_num_threads(), me = omp_get_thread_num();
        for (int r0 = 0; r0 < g->R; r0 += R_SPAN)
            gemm_span_share(g, r0, g->R - r0 < R_SPAN ? g->R : r0 + R_SPAN, me, nth);
    }
}

/* Per-thread scratch buffers (slot 0: w^T, slot 1: patches; thread_scratch.h). */
#ifndef SCRATCH_SLOTS
#define SCRATCH_SLOTS 2
#endif
static _Thread_local thread_scratch scratch_slots[SCRATCH_SLOTS];

static inline int scratch_reserve(int slot, size_t n) { return thread_scratch_reserve(&scratch_slots[slot], n); }
static inline float *scratch(int slot, size_t n) { return thread_scratch_get(&scratch_slots[slot], n); }
static inline thread_scratch *patches_scratch(void) { return &scratch_slots[1]; }

/* wt[N,K] = w[K,N]^T in scratch slot `slot`: whole VW x VW blocks in
 * registers (vtranspose_block), the edges element by element. Serial, ahead
 * of every dX product: one element at a time, fc1's 64 x 256 took 33 us
 * (each line of wt written 16 times far apart). */
static inline float *transposed_in(int slot, const float *w, int K, int N)
{
    float *wt = scratch(slot, (size_t)K * N);
    const int kb = K - K % VW, nb = N - N % VW;
    for (int k0 = 0; k0 < kb; k0 += VW)
        for (int n0 = 0; n0 < nb; n0 += VW)
            vtranspose_block(wt + (size_t)n0 * K + k0, K, w + (size_t)k0 * N + n0, N);
    for (int k = 0; k < K; k++) /* the right edge, then the bottom rows */
        for (int n = k < kb ? nb : 0; n < N; n++) wt[(size_t)n * K + k] = w[(size_t)k * N + n];
    return wt;
}

static inline float *transposed(const float *w, int K, int N) { return transposed_in(0, w, K, N); }

/* dbias[N] += column sums of g[M,N]: four interleaved partial sums (rows
 * m = r mod 4) break the add latency chain; the order is fixed. */
#define COLUMN_SUMS_PARALLEL 65536
static inline void column_sums(float *dbias, const float *g, size_t M, int N)
{
    const int nvec = (N + VW - 1) / VW;
    /* Threads take whole columns, so each column's order of additions, and
     * its bits, are the serial loop's whatever the thread count. */
#pragma omp parallel for schedule(static) if (nvec >= 2 && (double)M * N >= COLUMN_SUMS_PARALLEL)
    for (int v = 0; v < nvec; v++) {
        const int n0 = v * VW;
        const int nc = N - n0 < VW ? N - n0 : VW;
        const vmask mk = VMASK(nc);
        vec s0 = VZERO, s1 = VZERO, s2 = VZERO, s3 = VZERO;
        size_t m = 0;
        for (; m + 4 <= M; m += 4) {
            s0 = VADD(s0, VMLOAD(g + m * N + n0, mk));
            s1 = VADD(s1, VMLOAD(g + (m + 1) * N + n0, mk));
            s2 = VADD(s2, VMLOAD(g + (m + 2) * N + n0, mk));
            s3 = VADD(s3, VMLOAD(g + (m + 3) * N + n0, mk));
        }
        for (; m < M; m++) s0 = VADD(s0, VMLOAD(g + m * N + n0, mk));
        const vec s = VADD(VADD(s0, s1), VADD(s2, s3));
        VMSTORE(dbias + n0, mk, VADD(VMLOAD(dbias + n0, mk), s));
    }
}

static inline void dense_forward_simd(float *out, const float *inp, const float *w, const float *bias,
                               int M, int K, int N)
{
    gemm_args g = {out, (size_t)N, inp, (size_t)K, 1, w, (size_t)N, bias, 0, M, N, K, NULL, NULL};
    gemm(&g);
}

/* Backward transposes w on the calling thread (slot 0). */
static inline int dense_prepare_simd(int M, int K, int N, tlb_error *err)
{
    (void)M;
    return scratch_reserve(0, (size_t)K * N) != 0
               ? tlb_fail(err, "out of memory for a [%d,%d] transposed weight", K, N) : 0;
}

/* add_dinp 0: dinp is written, not accumulated (ops.h, backward_first). */
static inline void dense_backward_into(float *dinp, float *dw, float *dbias, const float *dout,
                                       const float *inp, const float *w, int M, int K, int N, int add_dinp)
{
    if (M <= 0) return;
    if (N <= 0) { /* no products: the written dinp is zeros */
        if (dinp && !add_dinp && K > 0) memset(dinp, 0, (size_t)M * K * sizeof(float));
        return;
    }
    if (dinp && K > 0) { /* dinp[M,K] (+)= dout[M,N] @ wt[N,K] */
        const float *wt = transposed(w, K, N);
        gemm_args g = {dinp, (size_t)K, dout, (size_t)N, 1, wt, (size_t)K, NULL, add_dinp, M, K, N, NULL, NULL};
        gemm(&g);
    }
    if (dw && K > 0) { /* dw[K,N] += inp^T[K,M] @ dout[M,N] (and dbias, when in spans) */
        gemm_args g = {dw, (size_t)N, inp, 1, (size_t)K, dout, (size_t)N, NULL, 1, K, N, M, NULL, NULL};
        if (dbias && gemm_spans(M)) g.colsum = dbias, dbias = NULL;
        gemm(&g);
    }
    if (dbias) column_sums(dbias, dout, (size_t)M, N);
}

static inline void dense_backward_simd(float *dinp, float *dw, float *dbias, const float *dout,
                                       const float *inp, const float *w, int M, int K, int N)
{
    dense_backward_into(dinp, dw, dbias, dout, inp, w, M, K, N, 1);
}

static inline void dense_backward_first_simd(float *dinp, float *dw, float *dbias, const float *dout,
                                             const float *inp, const float *w, int M, int K, int N)
{
    dense_backward_into(dinp, dw, dbias, dout, inp, w, M, K, N, 0);
}

#endif
