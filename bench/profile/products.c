/* Where mixed precision's products stand inside a training step: linked into
 * bench/profile/step_profile with -Wl,--wrap=tlb_dnnl_dense_product and
 * --wrap=dense_bf16_dw (bench/profile/products.sh), every oneDNN product (and
 * our own weight-gradient kernel) the step runs is timed in
 * place, with the caches as the step leaves them, and a table per (kind,
 * shape) is printed at exit: calls, time, GFLOP/s. Against the 1-thread peak
 * of `make bench`'s probe this shows what an isolated benchmark of the same
 * shape hides (products writing activations the backward reads later, weight
 * gradients whose operand oneDNN transposes itself). PRODUCTS_AGAIN=1 times
 * each call a second time right after the first (the same operands, now in
 * the caches: what the step's state costs; the numbers of the step are then
 * wrong, accumulating kinds adding twice). Development only. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ops/dense_bf16_dw.h"
#include "ops/dnnl_common.h"

void __real_tlb_dnnl_dense_product(int kind, int M, int K, int N, dnnl_data_type_t dt, const void *src,
                                   const void *wei, const float *bias, float *dst);
void __real_dense_bf16_dw(float *dw, const uint32_t *inp_pairs, const uint32_t *dout_pairs, int M, int K, int N);
void __wrap_dense_bf16_dw(float *dw, const uint32_t *inp_pairs, const uint32_t *dout_pairs, int M, int K, int N);
void __wrap_tlb_dnnl_dense_product(int kind, int M, int K, int N, dnnl_data_type_t dt, const void *src,
                                   const void *wei, const float *bias, float *dst);

#define KIND_OWN_DW 100 /* not a oneDNN kind */

#define SLOTS 64

typedef struct {
    int kind, M, K, N, dt;
    long calls;
    double seconds, again; /* again: the same call repeated at once (PRODUCTS_AGAIN=1) */
} product_slot;

static product_slot slots[SLOTS];
static int used;

static const char *kind_name(int kind)
{
    switch (kind) {
    case TLB_DENSE_FWD: return "fwd";
    case TLB_DENSE_FWD_BIAS: return "fwd+bias";
    case TLB_DENSE_BWD_DATA: return "dinp +=";
    case TLB_DENSE_BWD_WEIGHTS: return "dw +=";
    case TLB_DENSE_BWD_DATA_SET: return "dinp =";
    case KIND_OWN_DW: return "dw += own";
    default: return "?";
    }
}

static void print_table(void)
{
    double total = 0;
    for (int i = 0; i < used; i++) total += slots[i].seconds;
    printf("\nproducts inside the step (oneDNN's; dw += own: dense_bf16_dw) (all threads' calls; time per call on its own thread):\n");
    printf("%-9s %5s %4s %4s %-5s %7s %10s %8s %7s %s\n", "kind", "M", "K", "N", "type", "calls", "us/call", "GFLOP/s",
           "share", "  (again: us/call, GFLOP/s)");
    for (int i = 0; i < used; i++) {
        const product_slot *s = &slots[i];
        const double flops = 2.0 * s->M * s->K * s->N;
        printf("%-9s %5d %4d %4d %-5s %7ld %10.1f %8.1f %6.1f%%", kind_name(s->kind), s->M, s->K, s->N,
               s->dt == dnnl_bf16 ? "bf16" : "f32", s->calls, 1e6 * s->seconds / s->calls,
               1e-9 * flops * s->calls / s->seconds, 100 * s->seconds / total);
        if (s->again > 0)
            printf("   %8.1f %8.1f", 1e6 * s->again / s->calls, 1e-9 * flops * s->calls / s->again);
        printf("\n");
    }
    printf("products in all: %.3f s of thread time\n", total);
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0->tv_nsec);
}

static void record(int kind, int M, int K, int N, int dt, double s, double again)
{
#pragma omp critical(products_table)
    {
        int i = 0;
        while (i < used && !(slots[i].kind == kind && slots[i].M == M && slots[i].K == K && slots[i].N == N &&
                             slots[i].dt == dt))
            i++;
        if (i == used && used < SLOTS) {
            if (used == 0) atexit(print_table);
            slots[used++] = (product_slot){kind, M, K, N, dt, 0, 0.0, 0.0};
        }
        if (i < used) slots[i].calls++, slots[i].seconds += s, slots[i].again += again;
    }
}

/* s = seconds of one `call`, and again = a second one at once where
 * PRODUCTS_AGAIN is set (timing only: an accumulating kind then adds twice). */
#define TIME_CALL(s, again, call)                   \
    do {                                            \
        struct timespec t0_;                        \
        clock_gettime(CLOCK_MONOTONIC, &t0_);       \
        call;                                       \
        (s) = seconds_since(&t0_);                  \
        (again) = 0;                                \
        if (getenv("PRODUCTS_AGAIN")) {             \
            clock_gettime(CLOCK_MONOTONIC, &t0_);   \
            call;                                   \
            (again) = seconds_since(&t0_);          \
        }                                           \
    } while (0)

void __wrap_tlb_dnnl_dense_product(int kind, int M, int K, int N, dnnl_data_type_t dt, const void *src,
                                   const void *wei, const float *bias, float *dst)
{
    double s, again;
    TIME_CALL(s, again, __real_tlb_dnnl_dense_product(kind, M, K, N, dt, src, wei, bias, dst));
    record(kind, M, K, N, (int)dt, s, again);
}

/* The weight gradients of mixed precision run on our own kernel since
 * session 20 (dense_bf16_dw.h): timed the same way, as their own kind. */
void __wrap_dense_bf16_dw(float *dw, const uint32_t *inp_pairs, const uint32_t *dout_pairs, int M, int K, int N)
{
    double s, again;
    TIME_CALL(s, again, __real_dense_bf16_dw(dw, inp_pairs, dout_pairs, M, K, N));
    record(KIND_OWN_DW, M, K, N, (int)dnnl_bf16, s, again);
}
