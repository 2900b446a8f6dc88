/* Token embedding, VW values per step with masked tails; written once over
 * the vector macros of simd_avx512.h / simd_avx2.h (include one of those
 * first). Same contract as token_embed_ref.c. The backward splits the D
 * columns into slabs of VW, one slab per task: a task owns its columns of
 * every table row and adds the tokens in order n = 0, 1, ..., so repeated
 * ids never race and every value is the sum ref takes, in ref's order:
 * bit-identical to ref for any thread count. Threaded above
 * TOKEN_EMBED_PARALLEL_MIN values. */
#ifndef TLB_TOKEN_EMBED_SIMD_H
#define TLB_TOKEN_EMBED_SIMD_H

#include <stddef.h>

#define TOKEN_EMBED_PARALLEL_MIN 32768

static void token_embed_forward_simd(float *out, const int *ids, const float *table, int N, int V,
                                     int D)
{
    (void)V;
#pragma omp parallel for schedule(static) if ((size_t)N * D >= TOKEN_EMBED_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        const float *src = table + (size_t)ids[n] * D;
        float *dst = out + (size_t)n * D;
        int d = 0;
        for (; d + VW <= D; d += VW) VSTORE(dst + d, VLOAD(src + d));
        if (d < D) {
            const vmask m = VMASK(D - d);
            VMSTORE(dst + d, m, VMLOAD(src + d, m));
        }
    }
}

static void token_embed_backward_simd(float *dtable, const float *dout, const int *ids, int N,
                                      int V, int D)
{
    (void)V;
    if (!dtable) return; /* NULL gradient = not needed (ops.h) */
    const int slabs = (D + VW - 1) / VW;
#pragma omp parallel for schedule(static) if ((size_t)N * D >= TOKEN_EMBED_PARALLEL_MIN && slabs > 1)
    for (int s = 0; s < slabs; s++) {
        const int d = s * VW;
        if (d + VW <= D) {
            for (int n = 0; n < N; n++) {
                float *p = dtable + (size_t)ids[n] * D + d;
                VSTORE(p, VADD(VLOAD(p), VLOAD(dout + (size_t)n * D + d)));
            }
        } else {
            const vmask m = VMASK(D - d);
            for (int n = 0; n < N; n++) {
                float *p = dtable + (size_t)ids[n] * D + d;
                VMSTORE(p, m, VADD(VMLOAD(p, m), VMLOAD(dout + (size_t)n * D + d, m)));
            }
        }
    }
}

#endif
