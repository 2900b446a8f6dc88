#include "ops/bf16_rate.h"

#include <immintrin.h>
#include <time.h>

#include "ops/bf16.h"

#define RATE_ITERS 40000L

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Independent accumulators so the loop runs at the instruction's
 * throughput, not its latency; the empty asm keeps each in its register
 * and stops the compiler folding the loop (as bench/probe_simd.h). */
#define ACCS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15) \
    X(16) X(17) X(18) X(19) X(20) X(21) X(22) X(23)
#define NACC 24
#define DECL(i) __m512 acc##i = _mm512_set1_ps((float)(i) * seed);
#define KEEP(i) __asm__ volatile("" : "+v"(acc##i));
#define SUM(i) s = _mm512_add_ps(s, acc##i);
#define FMA(i) acc##i = _mm512_fmadd_ps(a, b, acc##i);
#define DOT(i) acc##i = _mm512_dpbf16_ps(acc##i, ah, bh);

/* Seconds for RATE_ITERS rounds of NACC 512-bit FMAs (32 FLOPs each). */
__attribute__((target("avx512f,avx512bw,avx512vl,fma"))) static double fma_seconds(void)
{
    volatile float seed = 1.0f;
    const __m512 a = _mm512_set1_ps(0.999f * seed), b = _mm512_set1_ps(1e-7f * seed);
    ACCS(DECL)
    const double t0 = now_seconds();
    for (long it = 0; it < RATE_ITERS; it++) {
        ACCS(FMA)
        ACCS(KEEP)
    }
    const double t = now_seconds() - t0;
    __m512 s = _mm512_setzero_ps();
    ACCS(SUM)
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return t;
}

/* Seconds for RATE_ITERS rounds of NACC VDPBF16PS (32 multiply-adds = 64 FLOPs each). */
__attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16"))) static double dot_seconds(void)
{
    volatile float seed = 1.0f;
    const __m512bh ah = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.999f * seed), _mm512_set1_ps(0.999f * seed));
    const __m512bh bh = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-7f * seed), _mm512_set1_ps(1e-7f * seed));
    ACCS(DECL)
    const double t0 = now_seconds();
    for (long it = 0; it < RATE_ITERS; it++) {
        ACCS(DOT)
        ACCS(KEEP)
    }
    const double t = now_seconds() - t0;
    __m512 s = _mm512_setzero_ps();
    ACCS(SUM)
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return t;
}

double bf16_rate_ratio(void)
{
    if (!bf16_native()) return 0.0;
    /* Interleaved, best of five: a preemption or a frequency step hits one
     * try, not every try of one kind. */
    double fma = 1e30, dot = 1e30;
    for (int i = 0; i < 5; i++) {
        const double f = fma_seconds(), d = dot_seconds();
        if (f < fma) fma = f;
        if (d < dot) dot = d;
    }
    /* Same iteration and accumulator counts: the FLOPs per round are 32 vs 64. */
    return (64.0 / dot) / (32.0 / fma);
}
