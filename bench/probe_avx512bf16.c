/* The bf16 dot-product peak: VDPBF16PS (_mm512_dpbf16_ps) over 24
 * independent zmm accumulators. Each instruction multiplies 32 bf16 pairs
 * and adds them, two per lane, into 16 fp32 lanes: 32 multiply-adds = 64
 * FLOPs, counted like an FMA's two, so the rate compares with the fp32 FMA
 * peak and with a bf16 step's effective GFLOP/s.
 *
 * This file alone is compiled with -mavx512bf16 (the Makefile's rule for
 * bench/probe_avx512bf16.o); bench/probe.c calls it only when the CPU has
 * AVX512_BF16 (bf16_native()). 24 accumulators, not the fp32 probe's 16:
 * VDPBF16PS has a longer latency than VFMADD on some CPUs, and a, b and 24
 * accumulators still fit in the 32 zmm registers. Named variables and the
 * empty asm per accumulator as in probe_simd.h (no stack traffic, no
 * folding); check with `objdump -d build/bench/probe_avx512bf16.o`. */
#include <immintrin.h>

#include "bench.h"

#define BF16_NACC 24
#define BF16_ACCS(X)                                                                               \
    X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) X(16)     \
    X(17) X(18) X(19) X(20) X(21) X(22) X(23)
#define BF16_DECL(i) __m512 acc##i = _mm512_set1_ps((float)(i) * seed);
#define BF16_STEP(i) acc##i = _mm512_dpbf16_ps(acc##i, a, b);
#define BF16_KEEP(i) __asm__ volatile("" : "+v"(acc##i));
#define BF16_SUM(i) s = _mm512_add_ps(s, acc##i);

double probe_dpbf16_avx512(long iters)
{
    volatile float seed = 1.0f;
    /* normal bf16 values (the instruction flushes denormals), small enough
     * that the accumulators stay finite for any run length */
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.999f * seed), _mm512_set1_ps(0.999f * seed));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-7f * seed), _mm512_set1_ps(1e-7f * seed));
    BF16_ACCS(BF16_DECL)
    for (long it = 0; it < iters; it++) {
        BF16_ACCS(BF16_STEP)
        BF16_ACCS(BF16_KEEP)
    }
    __m512 s = _mm512_setzero_ps();
    BF16_ACCS(BF16_SUM)
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)iters * BF16_NACC * 16 * 4;
}
