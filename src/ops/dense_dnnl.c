/* Dense layer on oneDNN matmul. Primitives (and their memory objects and a
 * user-owned scratchpad) are created once per (kind, M, K, N, bias) and kept
 * in a small cache; a call only swaps data handles and executes. Gradients
 * accumulate through the sum post-op (dst = 1 * dst + product). */
#include "ops/impls.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include <oneapi/dnnl/dnnl.h>

#define CHECK(call)                                                                     \
    do {                                                                                \
        dnnl_status_t st_ = (call);                                                     \
        if (st_ != dnnl_success) {                                                      \
            fprintf(stderr, "dense_dnnl: %s failed (status %d) at %s:%d\n", #call,      \
                    (int)st_, __FILE__, __LINE__);                                      \
            abort();                                                                    \
        }                                                                               \
    } while (0)

enum { KIND_FWD, KIND_FWD_BIAS, KIND_BWD_DATA, KIND_BWD_WEIGHTS };

typedef struct {
    int kind, M, K, N;
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, bias, dst, scratch;
    void *scratch_buf;
    pthread_mutex_t lock; /* one execution at a time per entry: handles are shared */
} mm_entry;

#define CACHE_SIZE 64
static mm_entry cache[CACHE_SIZE];
static int cache_used;
static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static dnnl_engine_t engine;
static dnnl_stream_t stream;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void)
{
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
}

static void md2d(dnnl_memory_desc_t *md, long rows, long cols, long rs, long cs)
{
    const dnnl_dims_t dims = {rows, cols}, strides = {rs, cs};
    CHECK(dnnl_memory_desc_init_by_strides(md, 2, dims, dnnl_f32, strides));
}

static dnnl_memory_t mem_for(const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, engine, DNNL_MEMORY_NONE));
    return m;
}

/* Builds the matmul of one kind. Row-major operands and transposes are plain
 * strided views: bwd-data reads w[K,N] as w^T[N,K]; bwd-weights reads
 * inp[M,K] as inp^T[K,M]. */
static void entry_build(mm_entry *e, int kind, int M, int K, int N)
{
    dnnl_memory_desc_t src, wei, bias, dst;
    int accumulate = 0;
    switch (kind) {
    case KIND_FWD:
    case KIND_FWD_BIAS:
        md2d(&src, M, K, K, 1);
        md2d(&wei, K, N, N, 1);
        md2d(&bias, 1, N, N, 1);
        md2d(&dst, M, N, N, 1);
        break;
    case KIND_BWD_DATA: /* dinp[M,K] += dout[M,N] @ w^T[N,K] */
        md2d(&src, M, N, N, 1);
        md2d(&wei, N, K, 1, N);
        md2d(&dst, M, K, K, 1);
        accumulate = 1;
        break;
    default: /* dw[K,N] += inp^T[K,M] @ dout[M,N] */
        md2d(&src, K, M, 1, K);
        md2d(&wei, M, N, N, 1);
        md2d(&dst, K, N, N, 1);
        accumulate = 1;
        break;
    }
    dnnl_primitive_attr_t attr;
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (accumulate) {
        dnnl_post_ops_t po;
        CHECK(dnnl_post_ops_create(&po));
        CHECK(dnnl_post_ops_append_sum(po, 1.0f));
        CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        CHECK(dnnl_post_ops_destroy(po));
    }
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_matmul_desc_init(&desc, &src, &wei, kind == KIND_FWD_BIAS ? &bias : NULL, &dst));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    CHECK(dnnl_primitive_attr_destroy(attr));
    CHECK(dnnl_primitive_create(&e->prim, pd));

    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t ssize = smd ? dnnl_memory_desc_get_size(smd) : 0;
    e->scratch_buf = NULL;
    e->scratch = NULL;
    if (ssize) {
        e->scratch_buf = aligned_alloc(64, (ssize + 63) & ~(size_t)63);
        if (!e->scratch_buf) abort();
        CHECK(dnnl_memory_create(&e->scratch, smd, engine, e->scratch_buf));
    }
    CHECK(dnnl_primitive_desc_destroy(pd));
    e->src = mem_for(&src);
    e->wei = mem_for(&wei);
    e->bias = kind == KIND_FWD_BIAS ? mem_for(&bias) : NULL;
    e->dst = mem_for(&dst);
    e->kind = kind;
    e->M = M;
    e->K = K;
    e->N = N;
    pthread_mutex_init(&e->lock, NULL);
}

/* Returns the entry for the shape, locked. The cache only grows (a model has a
 * handful of shapes); past CACHE_SIZE a shape is built into a transient entry. */
static mm_entry *entry_get(int kind, int M, int K, int N, mm_entry *transient)
{
    pthread_once(&engine_once, engine_init);
    pthread_mutex_lock(&cache_lock);
    for (int i = 0; i < cache_used; i++) {
        mm_entry *e = &cache[i];
        if (e->kind == kind && e->M == M && e->K == K && e->N == N) {
            pthread_mutex_unlock(&cache_lock);
            pthread_mutex_lock(&e->lock);
            return e;
        }
    }
    mm_entry *e = cache_used < CACHE_SIZE ? &cache[cache_used] : transient;
    entry_build(e, kind, M, K, N);
    if (e != transient) cache_used++;
    pthread_mutex_lock(&e->lock);
    pthread_mutex_unlock(&cache_lock);
    return e;
}

static void entry_release(mm_entry *e, mm_entry *transient)
{
    pthread_mutex_unlock(&e->lock);
    if (e != transient) return;
    dnnl_primitive_destroy(e->prim);
    dnnl_memory_destroy(e->src);
    dnnl_memory_destroy(e->wei);
    if (e->bias) dnnl_memory_destroy(e->bias);
    dnnl_memory_destroy(e->dst);
    if (e->scratch) dnnl_memory_destroy(e->scratch);
    free(e->scratch_buf);
    pthread_mutex_destroy(&e->lock);
}

static void run(int kind, int M, int K, int N, const float *src, const float *wei,
                const float *bias, float *dst)
{
    mm_entry transient;
    mm_entry *e = entry_get(kind, M, K, N, &transient);
    CHECK(dnnl_memory_set_data_handle(e->src, (void *)src));
    CHECK(dnnl_memory_set_data_handle(e->wei, (void *)wei));
    CHECK(dnnl_memory_set_data_handle(e->dst, dst));
    dnnl_exec_arg_t args[5] = {
        {DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->wei}, {DNNL_ARG_DST, e->dst}};
    int nargs = 3;
    if (e->bias) {
        CHECK(dnnl_memory_set_data_handle(e->bias, (void *)bias));
        args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_BIAS, e->bias};
    }
    if (e->scratch) args[nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, e->scratch};
    CHECK(dnnl_primitive_execute(e->prim, stream, nargs, args));
    CHECK(dnnl_stream_wait(stream));
    entry_release(e, &transient);
}

static void dense_forward_dnnl(float *out, const float *inp, const float *w, const float *bias,
                               int M, int K, int N)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* oneDNN rejects empty reductions: out is just the bias */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) out[(size_t)m * N + n] = bias ? bias[n] : 0.0f;
        return;
    }
    run(bias ? KIND_FWD_BIAS : KIND_FWD, M, K, N, inp, w, bias, out);
}

static void dense_backward_dnnl(float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int M, int K, int N)
{
    if (M <= 0 || N <= 0) return;
    if (dinp && K > 0) run(KIND_BWD_DATA, M, K, N, dout, w, NULL, dinp);
    if (dw && K > 0) run(KIND_BWD_WEIGHTS, M, K, N, inp, dout, NULL, dw);
    if (dbias) {
        for (int m = 0; m < M; m++) {
            const float *g = dout + (size_t)m * N;
            for (int n = 0; n < N; n++) dbias[n] += g[n];
        }
    }
}

const dense_op dense_dnnl = {dense_forward_dnnl, dense_backward_dnnl};
