/* The fp32 FMA peak: 16 independent zmm accumulators, enough to cover the FMA
 * latency on both FMA pipes, and nothing else in the loop. */
#include <immintrin.h>

#include "bench.h"

double probe_fma_avx512(long iters)
{
    volatile float seed = 1.0f;
    const __m512 a = _mm512_set1_ps(0.999999f * seed), b = _mm512_set1_ps(1e-7f * seed);
    __m512 acc[16];
    for (int i = 0; i < 16; i++) acc[i] = _mm512_set1_ps((float)i * seed);
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 16
        for (int i = 0; i < 16; i++) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(acc[0]), "+v"(acc[1]), "+v"(acc[2]), "+v"(acc[3]),
                         "+v"(acc[4]), "+v"(acc[5]), "+v"(acc[6]), "+v"(acc[7]));
    }
    __m512 s = acc[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_ps(s, acc[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)iters * 16 * 16 * 2;
}
