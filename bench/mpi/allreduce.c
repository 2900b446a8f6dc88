/* The gradient allreduce alone: `mpirun -np N build/bench_allreduce [FLOATS]
 * [REPS]` sums FLOATS floats (default 415882, the seed model's gradient
 * buffer) across the N ranks REPS times (default 200, after 10 warm-up
 * calls) through dist_sum_floats, the call the trainer makes, and rank 0
 * prints the min, median and max seconds per call (each call timed between
 * barriers made of a one-int reduction; the mean of the ranks' times). */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "train/dist.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    tlb_error err;
    if (dist_init(&argc, &argv, &err) != 0) {
        fprintf(stderr, "bench_allreduce: %s\n", err.msg);
        return 2;
    }
    const size_t n = argc > 1 ? (size_t)atol(argv[1]) : 415882;
    const int reps = argc > 2 ? atoi(argv[2]) : 200, warmup = 10;
    float *buf = malloc(n * sizeof(float));
    double *t = malloc((size_t)reps * sizeof(double));
    if (!buf || !t || reps < 1) return 2;
    for (size_t i = 0; i < n; i++) buf[i] = 1e-3f * (float)(i % 1000);
    for (int r = -warmup; r < reps; r++) {
        int sync = 0;
        if (dist_max_ints(&sync, 1, &err) != 0) goto fail;
        const double t0 = now();
        if (dist_sum_floats(buf, n, &err) != 0) goto fail;
        double dt = now() - t0;
        /* Ranks leave the call at different moments: take their mean. */
        if (dist_sum_doubles(&dt, 1, &err) != 0) goto fail;
        if (r >= 0) t[r] = dt / dist_size();
        for (size_t i = 0; i < n; i += 4096) buf[i] *= 0.5f; /* keep values finite */
    }
    qsort(t, (size_t)reps, sizeof *t, cmp_double);
    if (dist_rank() == 0)
        printf("allreduce of %zu floats (%.2f MB) over %d ranks, %d calls: min %.3f ms, median %.3f ms, max %.3f ms\n",
               n, n * 4.0 / 1e6, dist_size(), reps, t[0] * 1e3, t[reps / 2] * 1e3, t[reps - 1] * 1e3);
    free(buf);
    free(t);
    dist_finalize();
    return 0;
fail:
    fprintf(stderr, "bench_allreduce: %s\n", err.msg);
    dist_abort(1);
}
