/* The fp32 FMA peak without AVX-512: 12 independent ymm accumulators. */
#include <immintrin.h>

#include "bench.h"

double probe_fma_avx2(long iters)
{
    volatile float seed = 1.0f;
    const __m256 a = _mm256_set1_ps(0.999999f * seed), b = _mm256_set1_ps(1e-7f * seed);
    __m256 acc[12];
    for (int i = 0; i < 12; i++) acc[i] = _mm256_set1_ps((float)i * seed);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
        __asm__ volatile("" : "+x"(acc[0]), "+x"(acc[1]), "+x"(acc[2]), "+x"(acc[3]));
    }
    __m256 s = acc[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_ps(s, acc[i]);
    float out[8];
    _mm256_storeu_ps(out, s);
    volatile float sink = out[0] + out[7];
    (void)sink;
    return (double)iters * 12 * 8 * 2;
}
