/* Position embedding add, VW values per step with masked tails; written once
 * over the vector macros of simd_avx512.h / simd_avx2.h (include one of
 * those first). Same contract as posemb_ref.c: out may alias inp; backward
 * accumulates into dinp and dpos, either may be NULL. dpos[i] sums the
 * samples in order b = 0, 1, ... as ref does, so it is bit-identical to ref
 * for any thread count. Threaded above POSEMB_PARALLEL_MIN values. */
#ifndef TLB_POSEMB_SIMD_H
#define TLB_POSEMB_SIMD_H

#include <stddef.h>

#define POSEMB_PARALLEL_MIN 32768
#define POSEMB_BLOCK 1024 /* dpos values per task: the block stays in L1 over all samples */

/* dst[0..n) = x[0..n) + y[0..n) */
static inline void posemb_add_row(float *dst, const float *x, const float *y, size_t n)
{
    size_t i = 0;
    for (; i + VW <= n; i += VW) VSTORE(dst + i, VADD(VLOAD(x + i), VLOAD(y + i)));
    if (i < n) {
        const vmask m = VMASK((int)(n - i));
        VMSTORE(dst + i, m, VADD(VMLOAD(x + i, m), VMLOAD(y + i, m)));
    }
}

static void posemb_forward_simd(float *out, const float *inp, const float *pos, int B, int N,
                                int D)
{
    const size_t nd = (size_t)N * D;
#pragma omp parallel for schedule(static) if ((size_t)B * nd >= POSEMB_PARALLEL_MIN)
    for (int b = 0; b < B; b++) posemb_add_row(out + b * nd, inp + b * nd, pos, nd);
}

static void posemb_backward_simd(float *dinp, float *dpos, const float *dout, int B, int N,
                                 int D)
{
    const size_t nd = (size_t)N * D, total = (size_t)B * nd;
    const int threaded = total >= POSEMB_PARALLEL_MIN;
    if (dinp) { /* NULL gradient = not needed (ops.h) */
        const long rows = B;
#pragma omp parallel for schedule(static) if (threaded)
        for (long b = 0; b < rows; b++)
            posemb_add_row(dinp + b * nd, dinp + b * nd, dout + b * nd, nd);
    }
    if (dpos) {
        const long blocks = (long)((nd + POSEMB_BLOCK - 1) / POSEMB_BLOCK);
#pragma omp parallel for schedule(static) if (threaded && blocks > 1)
        for (long k = 0; k < blocks; k++) {
            const size_t i0 = (size_t)k * POSEMB_BLOCK;
            const size_t len = nd - i0 < POSEMB_BLOCK ? nd - i0 : POSEMB_BLOCK;
            for (int b = 0; b < B; b++)
                posemb_add_row(dpos + i0, dpos + i0, dout + (size_t)b * nd + i0, len);
        }
    }
}

#endif
