/* What the oneDNN backends (*_dnnl.c) share: one engine and stream, error
 * checks, and a small per-op cache of primitives keyed by shape.
 *
 * A cache entry holds one primitive, a memory object (without data) for each
 * execution argument, a user-owned scratchpad and optionally a float work
 * buffer of the entry's own (for results oneDNN overwrites but our backward
 * contract accumulates). Everything is created when a plan prepares the
 * shape (tlb_dnnl_prepare, from each op's `prepare`), with failures returned;
 * calls only swap data handles and execute, so a training step allocates
 * nothing, its first one included. oneDNN here runs on the same OpenMP
 * runtime (libgomp) as our code, so it uses our thread pool and count.
 *
 * Re-entrancy: the model runs batch shards on concurrent threads, each with
 * an OpenMP thread count of 1 (model.c). Every thread gets its own stream and,
 * since the backends declare their caches _Thread_local, its own primitives,
 * memory objects and scratchpads: nothing is shared between shards. */
#ifndef TLB_OPS_DNNL_COMMON_H
#define TLB_OPS_DNNL_COMMON_H

#include <stddef.h>

#include <oneapi/dnnl/dnnl.h>

#include "util/error.h"

/* Execution-time checks (setting a data handle, executing a primitive that
 * was built): a failure there is a programming error, so it aborts with the
 * call, status and place. Building is different: see TLB_DNNL_TRY. */
#define TLB_DNNL_CHECK(call) tlb_dnnl_check((call), #call, __FILE__, __LINE__)
void tlb_dnnl_check(dnnl_status_t st, const char *what, const char *file, int line);

/* The process's CPU engine (NULL if oneDNN cannot create one) and the calling
 * thread's stream (created by tlb_dnnl_prepare, or on first use). */
dnnl_engine_t tlb_dnnl_engine(void);
dnnl_stream_t tlb_dnnl_stream(void);

/* A 2-D f32/bf16/... descriptor of a strided view (transposes are strides). */
dnnl_status_t tlb_dnnl_md2d(dnnl_memory_desc_t *md, long rows, long cols, long rs, long cs,
                   dnnl_data_type_t dt);
/* The matmul operands of one product of a dense layer out[M,N] = inp[M,K] @ w[K,N],
 * sources in data type dt, destination f32 (dense_dnnl.c; bench/mixed.c):
 * product 0: out = inp @ w; 1: dinp = dout @ w^T; 2: dw = inp^T @ dout. */
dnnl_status_t tlb_dnnl_matmul_mds(int product, int M, int K, int N, dnnl_data_type_t dt,
                         dnnl_memory_desc_t *src, dnnl_memory_desc_t *wei, dnnl_memory_desc_t *dst);
/* One product of a dense layer (dense_dnnl.c) with sources of type dt (f32,
 * or bf16 for mixed precision) and an f32 destination, on the calling
 * thread's primitive cache: TLB_DENSE_FWD(_BIAS) writes out = inp @ w (+ bias);
 * TLB_DENSE_BWD_DATA accumulates dinp += dout @ w^T (src = dout, wei = w);
 * TLB_DENSE_BWD_WEIGHTS accumulates dw += inp^T @ dout (src = inp, wei = dout);
 * TLB_DENSE_BWD_DATA_SET writes dinp = dout @ w^T (a first writer: no zeroing
 * pass before it). */
enum { TLB_DENSE_FWD, TLB_DENSE_FWD_BIAS, TLB_DENSE_BWD_DATA, TLB_DENSE_BWD_WEIGHTS, TLB_DENSE_BWD_DATA_SET };
void tlb_dnnl_dense_product(int kind, int M, int K, int N, dnnl_data_type_t dt, const void *src,
                            const void *wei, const float *bias, float *dst);

/* Creates the thread's primitives for the three products of a dense layer
 * [M,K] x [K,N] with sources of type dt (forward with bias, backward data,
 * backward weights): the plan-time set-up of dense_dnnl and dense_bf16. */
int tlb_dnnl_dense_prepare(int M, int K, int N, dnnl_data_type_t dt, tlb_error *err);
/* The same for one product kind (TLB_DENSE_*). */
int tlb_dnnl_dense_prepare_kind(int kind, int M, int K, int N, dnnl_data_type_t dt, tlb_error *err);

/* Primitive attributes: `accumulate` appends a sum post-op (dst = dst + result),
 * `user_scratchpad` makes the caller own the scratchpad. Destroy after use;
 * NULL if oneDNN failed. */
dnnl_primitive_attr_t tlb_dnnl_attr(int accumulate, int user_scratchpad);

#define TLB_DNNL_KEY 6
#define TLB_DNNL_MAX_ARGS 10

typedef struct {
    int key[TLB_DNNL_KEY];
    int threads; /* omp_get_max_threads() when built: part of the key */
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[TLB_DNNL_MAX_ARGS];
    void *scratchpad;
    float *work; /* work_n floats, 64-byte aligned, or NULL */
    size_t work_n;
    int failed;      /* building failed; error says where */
    char error[200];
} tlb_dnnl_entry;

/* In a build function (which returns void): on failure, records the call and
 * status in the entry and returns. */
#define TLB_DNNL_TRY(e, call)                                                   \
    do {                                                                        \
        if (tlb_dnnl_failed((e), (call), #call)) return;                        \
    } while (0)
int tlb_dnnl_failed(tlb_dnnl_entry *e, dnnl_status_t st, const char *what);

/* A cache is only ever used by its own thread (TLB_DNNL_THREAD_CACHE), so it
 * needs no locks. It grows at plan time (tlb_dnnl_prepare): a process may
 * plan many models and shapes (the tests do); entries are never dropped. */
typedef struct {
    tlb_dnnl_entry *entries;
    int used, cap;
} tlb_dnnl_cache;
/* Each backend's cache: one per thread (see above), zero-initialised. */
#define TLB_DNNL_THREAD_CACHE static _Thread_local tlb_dnnl_cache

/* Builds entry e for key: creates a primitive descriptor with user scratchpad
 * (tlb_dnnl_attr(x, 1)) and hands it to tlb_dnnl_entry_init; a failure is
 * recorded in e (TLB_DNNL_TRY), never fatal. */
typedef void (*tlb_dnnl_build_fn)(tlb_dnnl_entry *e, const int key[TLB_DNNL_KEY]);

/* Creates e's primitive from pd (which it then destroys), a memory object for
 * each of the nargs execution arguments (their descriptors queried from pd),
 * the scratchpad pd asks for, and work_n floats of work space; on failure
 * (out of memory included) marks e failed. */
void tlb_dnnl_entry_init(tlb_dnnl_entry *e, dnnl_primitive_desc_t pd, const int *args, int nargs,
                         size_t work_n);

/* Plan time: builds the calling thread's entry for key unless it exists;
 * -1 with the reason (oneDNN's status, out of memory, a full cache). */
int tlb_dnnl_prepare(tlb_dnnl_cache *c, const int key[TLB_DNNL_KEY], tlb_dnnl_build_fn build,
                     tlb_error *err);

/* The entry for key; built here if it was not prepared (op-level callers;
 * aborts if that build fails). Should the cache not grow, the entry is built
 * into *transient and torn down by tlb_dnnl_release. */
tlb_dnnl_entry *tlb_dnnl_acquire(tlb_dnnl_cache *c, const int key[TLB_DNNL_KEY],
                                 tlb_dnnl_build_fn build, tlb_dnnl_entry *transient);
void tlb_dnnl_release(tlb_dnnl_entry *e, tlb_dnnl_entry *transient);

/* Points execution argument `arg` (DNNL_ARG_*) of e at data. */
void tlb_dnnl_set(tlb_dnnl_entry *e, int arg, const void *data);
/* Executes e's primitive with every argument (and its scratchpad) and waits. */
void tlb_dnnl_execute(tlb_dnnl_entry *e);

#endif
