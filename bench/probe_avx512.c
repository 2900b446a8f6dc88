/* The fp32 FMA peak: 16 independent zmm accumulators, enough to cover the FMA
 * latency on both FMA pipes, and nothing else in the loop. */
#include <immintrin.h>

#include "bench.h"

/* Named accumulators, not an array: GCC keeps an array on the stack and
 * turns every FMA into a load + FMA + store, halving the rate. */
#define ACC16(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#define DECL(i) __m512 acc##i = _mm512_set1_ps((float)(i) * seed);
#define STEP(i) acc##i = _mm512_fmadd_ps(acc##i, a, b);
#define SUM(i) s = _mm512_add_ps(s, acc##i);

double probe_fma_avx512(long iters)
{
    volatile float seed = 1.0f;
    const __m512 a = _mm512_set1_ps(0.999999f * seed), b = _mm512_set1_ps(1e-7f * seed);
    ACC16(DECL)
    for (long it = 0; it < iters; it++) {
        ACC16(STEP)
        __asm__ volatile("" : "+v"(acc0), "+v"(acc1), "+v"(acc2), "+v"(acc3), "+v"(acc4), "+v"(acc5),
                         "+v"(acc6), "+v"(acc7));
        __asm__ volatile("" : "+v"(acc8), "+v"(acc9), "+v"(acc10), "+v"(acc11), "+v"(acc12),
                         "+v"(acc13), "+v"(acc14), "+v"(acc15));
    }
    __m512 s = _mm512_setzero_ps();
    ACC16(SUM)
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)iters * 16 * 16 * 2;
}
