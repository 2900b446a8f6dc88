/* The fp32 FMA peak loop, written once over the ISA vector macros of
 * src/ops/simd_avx2.h / simd_avx512.h (include one of those first), like
 * the kernels in src/ops (gelu_simd.h, dense_simd.h ...). The including file defines
 *   PROBE_NAME      the function's name (declared in bench.h)
 *   PROBE_ACCS(X)   X(0) X(1) ... X(n-1): the independent accumulators,
 *                   enough to cover the FMA latency on both FMA pipes while
 *                   a, b and the accumulators still fit in the registers
 *   PROBE_NACC      n
 * and nothing but the FMAs runs in the loop.
 *
 * The accumulators are named variables, not an array: GCC keeps an array
 * on the stack and turns every FMA into a load + FMA + store, which halves
 * the rate. The empty asm per accumulator ("+v": in a vector register) stops
 * the compiler from folding the loop, without touching memory. Check with
 * `objdump -d build/bench/probe_avx*.o`: the loop is n FMAs, an add, a
 * compare and a jump. */
#ifndef TLB_BENCH_PROBE_SIMD_H
#define TLB_BENCH_PROBE_SIMD_H

#include "bench.h"

#define PROBE_DECL(i) vec acc##i = VSET1((float)(i) * seed);
#define PROBE_STEP(i) acc##i = VFMA(acc##i, a, b);
#define PROBE_KEEP(i) __asm__ volatile("" : "+v"(acc##i));
#define PROBE_SUM(i) s = VADD(s, acc##i);

double PROBE_NAME(long iters)
{
    volatile float seed = 1.0f;
    const vec a = VSET1(0.999999f * seed), b = VSET1(1e-7f * seed);
    PROBE_ACCS(PROBE_DECL)
    for (long it = 0; it < iters; it++) {
        PROBE_ACCS(PROBE_STEP)
        PROBE_ACCS(PROBE_KEEP)
    }
    vec s = VZERO;
    PROBE_ACCS(PROBE_SUM)
    volatile float sink = vhsum(s);
    (void)sink;
    return (double)iters * PROBE_NACC * VW * 2;
}

#endif
