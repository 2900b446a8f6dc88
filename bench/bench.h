/* tlb_bench: the machine probe, the op x backend table, the training step per
 * backend choice, the mixed-precision (bf16) measurements and inference. `make bench`
 * runs all of them; main.c has the flags. */
#ifndef TLB_BENCH_H
#define TLB_BENCH_H

#include <stddef.h>
#include <stdio.h>

/* What every part needs to know about the run. */
typedef struct {
    const char *out_dir;   /* CSV files go here */
    double seconds;        /* time budget per op measurement */
    int batch;             /* full batch of a training step (2048) */
    int micro_batch;       /* 0: the trainer's rule */
    int steps;             /* timed training steps per configuration */
    size_t bw_bytes;       /* bytes per bandwidth-probe buffer */
    int threads;
    const char *step_configs; /* comma list of bench_step_keys; NULL: all */
} bench_opts;

/* The probe's results, the denominators of every "% of peak"; 0 where not
 * measured (the probe not run, or no AVX512_BF16 for the bf16 peak). */
typedef struct {
    double fma_1t, fma_all; /* GFLOP/s, fp32 FMA */
    const char *fma_isa;
    double fma_avx2_all; /* AVX2's FMA peak, all threads, where fma_all is AVX-512's (else 0): the avx2 row's */
    double bw_triad, bw_copy; /* GB/s, all threads */
    double bf16_1t, bf16_all; /* GFLOP/s, bf16 dot products (VDPBF16PS), 2 FLOPs per multiply-add */
} bench_machine;

double bench_now(void);
float *bench_rand(size_t n, float scale); /* uniform in [-scale, scale); aborts on OOM */
/* Median seconds per call of fn(arg): one warm-up call, then calls until
 * `seconds` have passed (at least 5, at most 5000). */
double bench_median(void (*fn)(void *), void *arg, double seconds);
FILE *bench_csv(const bench_opts *o, const char *name, const char *header);
/* Whether `key` is an entry of the comma list `list`. */
int bench_listed(const char *list, const char *key);
/* Peak and current resident set of this process (MiB), from /proc/self/status. */
double bench_vm_hwm_mib(void);
double bench_vm_rss_mib(void);

int bench_check(void);
void bench_probe(const bench_opts *o, bench_machine *m);
/* The FMA loop: `iters` iterations on the calling thread; returns FLOPs done. */
double probe_fma_avx512(long iters);
double probe_fma_avx2(long iters);
/* The VDPBF16PS loop, the same way (bench/probe_avx512bf16.c); call only
 * when bf16_native() (ops/bf16.h). */
double probe_dpbf16_avx512(long iters);

/* What the op table adds up to for one micro-batch forward + backward (calls
 * per micro-batch x median time, automatic choice): the dense share feeds
 * the mixed-precision estimate. */
typedef struct {
    double mb_seconds_auto;
    double dense_seconds_auto;
} bench_op_summary;
void bench_ops(const bench_opts *o, const bench_machine *m, int micro_batch,
               bench_op_summary *sum);

/* The micro-batch train/trainer.c's choose_micro_batch picks for the seed
 * config (the largest within 1.5 GiB of activations, evened out). */
int bench_trainer_micro_batch(int batch);
int bench_step_child(int argc, char **argv);
/* The training-step configurations, as --step-configs names them. */
extern const char *const bench_step_keys;
/* The automatic choice's step (keras wiring) and the same with mixed
 * precision (bf16 dense), zeros if not measured. */
typedef struct {
    double step_seconds, mb_seconds;
    double bf16_step_seconds;
} bench_step_summary;
void bench_steps(const bench_opts *o, const bench_machine *m, int micro_batch,
                 bench_step_summary *out);

void bench_mixed(const bench_opts *o, const bench_machine *m, int micro_batch,
                 const bench_op_summary *sum, const bench_step_summary *step);
/* Forward-only images/s of the seed model at batch 256 on 2 threads, fp32
 * and bf16 dense (bench/infer.c). */
void bench_infer(const bench_opts *o);

/* bf16 storage vs fp32 for a bandwidth-bound elementwise op (y = x*a + b over n
 * values): seconds per pass for each; returns 0, or -1 without AVX512_BF16. */
int mixed_bf16_stream(size_t n, double seconds, double *t_f32, double *t_bf16);

#endif
