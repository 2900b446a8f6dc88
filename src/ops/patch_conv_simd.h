/* Patch convolution as GEMMs over gathered patches, generic over the vector
 * macros (simd_avx512.h / simd_avx2.h) and the tiles of dense_simd.h.
 * Patches are gathered per sample into a small per-thread buffer (about
 * N*R floats), so no batch-sized im2col copy is ever made. */
#ifndef TLB_PATCH_CONV_SIMD_H
#define TLB_PATCH_CONV_SIMD_H

#include <omp.h>

#include "ops/dense_simd.h"

/* buf[n, R] = the patches of sample b in (kh, kw, c) row order. */
static inline void gather_patches(float *buf, const float *img, int b, int S, int P)
{
    const int G = S / P, R = P * P * 3, row = 3 * P;
    for (int i = 0; i < G; i++)
        for (int j = 0; j < G; j++)
            for (int kh = 0; kh < P; kh++)
                memcpy(buf + ((size_t)i * G + j) * R + kh * row,
                       img + (((size_t)b * S + (size_t)i * P + kh) * S + (size_t)j * P) * 3,
                       sizeof(float) * row);
}

/* dimg[sample b] += buf[n, R] scattered back to its pixels. */
static inline void scatter_add_patches(float *dimg, const float *buf, int b, int S, int P)
{
    const int G = S / P, R = P * P * 3, row = 3 * P;
    for (int i = 0; i < G; i++)
        for (int j = 0; j < G; j++)
            for (int kh = 0; kh < P; kh++) {
                float *d = dimg + (((size_t)b * S + (size_t)i * P + kh) * S + (size_t)j * P) * 3;
                const float *s = buf + ((size_t)i * G + j) * R + kh * row;
                for (int q = 0; q < row; q++) d[q] += s[q];
            }
}

static inline void tiles_serial(const gemm_args *g)
{
    const int mt = (g->M + MR - 1) / MR, nt = (g->N + TILE_N - 1) / TILE_N;
    for (int t = 0; t < mt * nt; t++) tile_any(g, (t / nt) * MR, (t % nt) * TILE_N);
}

/* Patches (slot 1) on every thread of the team; w^T (slot 0) on the caller. */
static inline int patch_conv_prepare_simd(int B, int S, int P, int D, tlb_error *err)
{
    (void)B;
    const int N = (S / P) * (S / P), R = P * P * 3;
    if (N <= 0 || D <= 0) return 0;
    if (scratch_reserve(0, (size_t)R * D) != 0) return tlb_fail(err, "out of memory for patch_conv scratch");
    return thread_scratch_reserve_team(patches_scratch, (size_t)N * R, "patch_conv", err);
}

static inline void patch_conv_forward_simd(float *out, const float *img, const float *w,
                                           const float *bias, int B, int S, int P, int D)
{
    const int N = (S / P) * (S / P), R = P * P * 3;
    if (N <= 0 || D <= 0) return;
#pragma omp parallel for schedule(static) if (B > 1)
    for (int b = 0; b < B; b++) {
        float *buf = scratch(1, (size_t)N * R);
        gather_patches(buf, img, b, S, P);
        gemm_args g = {out + (size_t)b * N * D, (size_t)D, buf, (size_t)R, 1, w, (size_t)D,
                       bias, 0, N, D, R, NULL, NULL};
        tiles_serial(&g);
    }
}

static inline void patch_conv_backward_simd(float *dimg, float *dw, float *dbias,
                                            const float *dout, const float *img, const float *w,
                                            int B, int S, int P, int D)
{
    const int N = (S / P) * (S / P), R = P * P * 3;
    if (N <= 0 || D <= 0) return;
    if (dimg) { /* per sample: dpatch[N,R] = dout_b[N,D] @ w^T[D,R], then scatter */
        const float *wt = transposed(w, R, D);
#pragma omp parallel for schedule(static) if (B > 1)
        for (int b = 0; b < B; b++) {
            float *buf = scratch(1, (size_t)N * R);
            gemm_args g = {buf, (size_t)R, dout + (size_t)b * N * D, (size_t)D, 1, wt,
                           (size_t)R, NULL, 0, N, R, D, NULL, NULL};
            tiles_serial(&g);
            scatter_add_patches(dimg, buf, b, S, P);
        }
    }
    if (dw) { /* dw[R,D] += patches^T @ dout: each thread owns dw tiles and walks
                 the samples in order, so the sum is independent of the thread count */
        const int mt = (R + MR - 1) / MR, nt = (D + TILE_N - 1) / TILE_N;
#pragma omp parallel if (B > 1)
        {
            const int tid = omp_get_thread_num(), nth = omp_get_num_threads();
            if (tid < mt * nt) {
                float *buf = scratch(1, (size_t)N * R);
                for (int b = 0; b < B; b++) {
                    gather_patches(buf, img, b, S, P);
                    gemm_args g = {dw, (size_t)D, buf, 1, (size_t)R, dout + (size_t)b * N * D,
                                   (size_t)D, NULL, 1, R, D, N, NULL, NULL};
                    for (int t = tid; t < mt * nt; t += nth) tile_any(&g, (t / nt) * MR, (t % nt) * TILE_N);
                }
            }
        }
    }
    if (dbias) column_sums(dbias, dout, (size_t)B * N, D);
}

#endif
