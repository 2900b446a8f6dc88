/* The fp32 FMA peak without AVX-512: 12 independent ymm accumulators. */
#include <immintrin.h>

#include "bench.h"

/* Named accumulators (an array would live on the stack, see probe_avx512.c). */
#define ACC12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define DECL(i) __m256 acc##i = _mm256_set1_ps((float)(i) * seed);
#define STEP(i) acc##i = _mm256_fmadd_ps(acc##i, a, b);
#define SUM(i) s = _mm256_add_ps(s, acc##i);

double probe_fma_avx2(long iters)
{
    volatile float seed = 1.0f;
    const __m256 a = _mm256_set1_ps(0.999999f * seed), b = _mm256_set1_ps(1e-7f * seed);
    ACC12(DECL)
    for (long it = 0; it < iters; it++) {
        ACC12(STEP)
        __asm__ volatile("" : "+x"(acc0), "+x"(acc1), "+x"(acc2), "+x"(acc3), "+x"(acc4), "+x"(acc5),
                         "+x"(acc6), "+x"(acc7), "+x"(acc8), "+x"(acc9), "+x"(acc10), "+x"(acc11));
    }
    __m256 s = _mm256_setzero_ps();
    ACC12(SUM)
    float out[8];
    _mm256_storeu_ps(out, s);
    volatile float sink = out[0] + out[7];
    (void)sink;
    return (double)iters * 12 * 8 * 2;
}
