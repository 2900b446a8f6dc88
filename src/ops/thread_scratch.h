/* A per-thread buffer of floats for a kernel's intermediates. A plan
 * reserves it (the op's `prepare`, ops.h) on each thread that will call
 * the kernel, so calls only read it; a call with a shape no plan prepared
 * (op-level callers such as the tests) grows it on the spot. */
#ifndef TLB_OPS_THREAD_SCRATCH_H
#define TLB_OPS_THREAD_SCRATCH_H

#include <stdlib.h>

#include "util/error.h"

typedef struct thread_scratch {
    float *p;
    size_t cap;                  /* floats */
    struct thread_scratch *next; /* the thread's other buffers, freed with it */
} thread_scratch;

/* Frees s's buffer when the calling thread exits (thread_scratch.c): an
 * OpenMP runtime ends threads of a smaller or nested team, and their
 * buffers must not outlive them. Once per buffer, on its first allocation. */
int thread_scratch_free_at_exit(thread_scratch *s);

/* Room for n floats, 64-byte aligned: 0, or -1 when out of memory (the old
 * buffer kept). */
static inline int thread_scratch_reserve(thread_scratch *s, size_t n)
{
    if (n <= s->cap) return 0;
    float *p = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!p) return -1;
    if (!s->p && thread_scratch_free_at_exit(s) != 0) {
        free(p);
        return -1;
    }
    free(s->p);
    s->p = p, s->cap = n;
    return 0;
}

/* The buffer for n floats (an unprepared shape that cannot grow aborts). */
static inline float *thread_scratch_get(thread_scratch *s, size_t n)
{
    if (thread_scratch_reserve(s, n) != 0) abort();
    return s->p;
}

/* Reserves n floats on every thread of a team, as an op's parallel loops
 * would use them (inside a batch shard, that team is the one thread): mine()
 * returns the calling thread's buffer (a _Thread_local). */
static inline int thread_scratch_reserve_team(thread_scratch *(*mine)(void), size_t n, const char *what,
                                              tlb_error *err)
{
    int failed = 0;
#pragma omp parallel reduction(| : failed)
    failed |= thread_scratch_reserve(mine(), n) != 0;
    return failed ? tlb_fail(err, "out of memory for %zu floats of %s scratch", n, what) : 0;
}

#endif
