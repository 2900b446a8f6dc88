/* The machine probe: measured fp32 FMA peak and, on a CPU with AVX512_BF16,
 * bf16 dot-product (VDPBF16PS) peak (1 thread, all threads), and memory
 * bandwidth (triad and copy over large buffers, all threads). These are the
 * denominators of every "% of peak" in the other tables: fp32 work against
 * the fp32 peak, bf16 (mixed-precision) training steps against the bf16 one. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "ops/bf16.h"
#include "ops/ops.h"

/* GFLOP/s of `threads` threads each running `loop` (the FMA or the VDPBF16PS
 * loop) for ~0.1 s; best of 5
 * (the best run is the one least disturbed by anything else on the machine). */
static double fma_rate(double (*loop)(long), int threads)
{
    long iters = 100000;
    for (;;) { /* calibrate on one thread */
        const double t0 = bench_now();
        loop(iters);
        const double t = bench_now() - t0;
        if (t > 0.02) {
            iters = (long)(iters * 0.1 / t) + 1;
            break;
        }
        iters *= 4;
    }
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double flops = 0;
        const double t0 = bench_now();
#pragma omp parallel num_threads(threads) reduction(+ : flops)
        flops += loop(iters);
        const double rate = flops / (bench_now() - t0) * 1e-9;
        if (rate > best) best = rate;
    }
    return best;
}

static void bandwidth(size_t bytes, double *triad, double *copy)
{
    const size_t n = bytes / sizeof(float);
    float *a = aligned_alloc(64, n * sizeof(float)), *b = aligned_alloc(64, n * sizeof(float)),
          *c = aligned_alloc(64, n * sizeof(float));
    if (!a || !b || !c) {
        fprintf(stderr, "tlb_bench: no memory for the bandwidth probe\n");
        exit(1);
    }
#pragma omp parallel for schedule(static) /* first touch by the thread that streams it */
    for (size_t i = 0; i < n; i++) a[i] = 0.0f, b[i] = 1.0f, c[i] = 2.0f;
    *triad = *copy = 0;
    for (int rep = 0; rep < 5; rep++) {
        const float s = 0.5f + rep;
        double t0 = bench_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) a[i] = b[i] + s * c[i];
        double t = bench_now() - t0;
        if (3.0 * n * sizeof(float) / t * 1e-9 > *triad) *triad = 3.0 * n * sizeof(float) / t * 1e-9;
        t0 = bench_now();
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) c[i] = a[i];
        t = bench_now() - t0;
        if (2.0 * n * sizeof(float) / t * 1e-9 > *copy) *copy = 2.0 * n * sizeof(float) / t * 1e-9;
    }
    volatile float sink = a[n / 2] + c[n / 3];
    (void)sink;
    free(a), free(b), free(c);
}

/* fma_rate on all threads, measured again (after a pause, up to 4 times)
 * while it stays below 95% of `threads` times the one-thread rate `one`: on
 * a shared host a whole best-of-5 can fall in a spell where another guest
 * holds one of our cores (a sitting read 174.9 GFLOP/s on 2 threads against
 * 175.3 on 1, and every % of peak after it was nonsense; one on the AMD EPYC
 * Zen 3 read 188.8 against 2 x 102.4 and inflated every share by 8%). A CPU
 * whose threads do not scale (SMT siblings) keeps its low rate: a note below
 * 95%, a warning below 3/4. */
static double fma_rate_all(double (*loop)(long), int threads, double one, const char *what)
{
    double best = fma_rate(loop, threads);
    for (int tries = 0; threads > 1 && best < 0.95 * threads * one && tries < 4; tries++) {
        nanosleep(&(struct timespec){1, 0}, NULL);
        const double again = fma_rate(loop, threads);
        if (again > best) best = again;
    }
    if (threads > 1 && best < 0.75 * threads * one)
        printf("warning: %s on %d threads reads %.2fx one thread's rate (5 tries): the threads do not scale "
               "now (shared cores?); the %% of peak below divide by this rate\n", what, threads, best / one);
    else if (threads > 1 && best < 0.95 * threads * one)
        printf("note: %s on %d threads reads %.2fx one thread's rate (best of 5 tries)\n", what, threads, best / one);
    return best;
}

void bench_probe(const bench_opts *o, bench_machine *m)
{
    const int avx512 = backend_supported(TLB_BACKEND_AVX512);
    double (*loop)(long) = avx512 ? probe_fma_avx512 : probe_fma_avx2;
    m->fma_isa = avx512 ? "avx512 (16 zmm accumulators)" : "avx2 (12 ymm accumulators)";
    m->fma_1t = fma_rate(loop, 1);
    m->fma_all = fma_rate_all(loop, o->threads, m->fma_1t, "the fp32 FMA peak");
    /* the AVX2 kernels' own ceiling on an AVX-512 CPU: half the lanes per FMA */
    m->fma_avx2_all = avx512 ? fma_rate_all(probe_fma_avx2, o->threads, fma_rate(probe_fma_avx2, 1),
                                            "the AVX2 FMA peak") : 0;
    /* bf16: only where the CPU has the instruction (the file is compiled for it) */
    const int bf16 = avx512 && bf16_native();
    m->bf16_1t = bf16 ? fma_rate(probe_dpbf16_avx512, 1) : 0;
    m->bf16_all = bf16 ? fma_rate_all(probe_dpbf16_avx512, o->threads, m->bf16_1t, "the bf16 peak") : 0;
    bandwidth(o->bw_bytes, &m->bw_triad, &m->bw_copy);

    printf("\n## Machine probe\n\n");
    printf("fp32 FMA peak, %s: %.1f GFLOP/s on 1 thread, %.1f GFLOP/s on %d threads\n",
           m->fma_isa, m->fma_1t, m->fma_all, o->threads);
    if (m->fma_avx2_all > 0)
        printf("fp32 FMA peak, avx2 (12 ymm accumulators) on this CPU: %.1f GFLOP/s on %d threads (the avx2 "
               "step row's denominator)\n", m->fma_avx2_all, o->threads);
    if (bf16)
        printf("bf16 peak, avx512_bf16 VDPBF16PS (24 zmm accumulators, 64 FLOPs each): %.1f GFLOP/s on 1 thread, "
               "%.1f GFLOP/s on %d threads (%.2fx the fp32 peak)\n",
               m->bf16_1t, m->bf16_all, o->threads, m->bf16_all / m->fma_all);
    else
        printf("bf16 peak: not available (this CPU has no AVX512_BF16)\n");
    printf("memory bandwidth, %d threads, 3 buffers of %.0f MiB: triad %.1f GB/s, copy %.1f GB/s\n",
           o->threads, o->bw_bytes / 1048576.0, m->bw_triad, m->bw_copy);
    FILE *f = bench_csv(o, "probe.csv", "what,value,unit");
    if (f) {
        fprintf(f, "fma_peak_1_thread,%.2f,GFLOP/s\nfma_peak_%d_threads,%.2f,GFLOP/s\n", m->fma_1t,
                o->threads, m->fma_all);
        if (m->fma_avx2_all > 0) fprintf(f, "fma_avx2_peak_%d_threads,%.2f,GFLOP/s\n", o->threads, m->fma_avx2_all);
        if (bf16)
            fprintf(f, "bf16_peak_1_thread,%.2f,GFLOP/s\nbf16_peak_%d_threads,%.2f,GFLOP/s\n", m->bf16_1t,
                    o->threads, m->bf16_all);
        else
            fprintf(f, "bf16_peak_1_thread,,not available\nbf16_peak_%d_threads,,not available\n", o->threads);
        fprintf(f, "bandwidth_triad,%.2f,GB/s\nbandwidth_copy,%.2f,GB/s\n", m->bw_triad, m->bw_copy);
        fclose(f);
    }
}
