/* The oneDNN backends' shared engine, stream and primitive cache (dnnl_common.h). */
#include "ops/dnnl_common.h"

#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void tlb_dnnl_check(dnnl_status_t st, const char *what, const char *file, int line)
{
    if (st == dnnl_success) return;
    fprintf(stderr, "oneDNN: %s failed (status %d) at %s:%d\n", what, (int)st, file, line);
    abort();
}

static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void) { TLB_DNNL_CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0)); }

dnnl_engine_t tlb_dnnl_engine(void)
{
    pthread_once(&engine_once, engine_init);
    return engine;
}

/* One stream per thread: batch shards execute primitives concurrently, and a
 * oneDNN stream is not meant to be shared between threads. It lives as long as
 * its thread (OpenMP's pool threads live as long as the process). */
static _Thread_local dnnl_stream_t stream;

dnnl_stream_t tlb_dnnl_stream(void)
{
    if (!stream) TLB_DNNL_CHECK(dnnl_stream_create(&stream, tlb_dnnl_engine(), dnnl_stream_default_flags));
    return stream;
}

void tlb_dnnl_md2d(dnnl_memory_desc_t *md, long rows, long cols, long rs, long cs,
                   dnnl_data_type_t dt)
{
    const dnnl_dims_t dims = {rows, cols}, strides = {rs, cs};
    TLB_DNNL_CHECK(dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides));
}

dnnl_primitive_attr_t tlb_dnnl_attr(int accumulate, int user_scratchpad)
{
    dnnl_primitive_attr_t attr;
    TLB_DNNL_CHECK(dnnl_primitive_attr_create(&attr));
    if (user_scratchpad)
        TLB_DNNL_CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (accumulate) {
        dnnl_post_ops_t po;
        TLB_DNNL_CHECK(dnnl_post_ops_create(&po));
        TLB_DNNL_CHECK(dnnl_post_ops_append_sum(po, 1.0f));
        TLB_DNNL_CHECK(dnnl_primitive_attr_set_post_ops(attr, po));
        TLB_DNNL_CHECK(dnnl_post_ops_destroy(po));
    }
    return attr;
}

static void *alloc64(size_t bytes)
{
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "oneDNN backend: out of memory (%zu bytes)\n", bytes);
        abort();
    }
    return p;
}

void tlb_dnnl_entry_init(tlb_dnnl_entry *e, dnnl_primitive_desc_t pd, const int *args, int nargs,
                         size_t work_n)
{
    if (nargs > TLB_DNNL_MAX_ARGS - 1) abort(); /* one slot stays for the scratchpad */
    const dnnl_engine_t eng = tlb_dnnl_engine();
    TLB_DNNL_CHECK(dnnl_primitive_create(&e->prim, pd));
    e->nargs = 0;
    for (int i = 0; i < nargs; i++) {
        const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, args[i]);
        if (!md) {
            fprintf(stderr, "oneDNN backend: primitive has no argument %d\n", args[i]);
            abort();
        }
        dnnl_memory_t m;
        TLB_DNNL_CHECK(dnnl_memory_create(&m, md, eng, DNNL_MEMORY_NONE));
        e->args[e->nargs++] = (dnnl_exec_arg_t){args[i], m};
    }
    const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    const size_t ssize = smd ? dnnl_memory_desc_get_size(smd) : 0;
    e->scratchpad = NULL;
    if (ssize) {
        dnnl_memory_t m;
        e->scratchpad = alloc64(ssize);
        TLB_DNNL_CHECK(dnnl_memory_create(&m, smd, eng, e->scratchpad));
        e->args[e->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m};
    }
    TLB_DNNL_CHECK(dnnl_primitive_desc_destroy(pd));
    e->work_n = work_n;
    e->work = work_n ? alloc64(work_n * sizeof(float)) : NULL;
}

static void entry_destroy(tlb_dnnl_entry *e)
{
    dnnl_primitive_destroy(e->prim);
    for (int i = 0; i < e->nargs; i++) dnnl_memory_destroy(e->args[i].memory);
    free(e->scratchpad);
    free(e->work);
}

tlb_dnnl_entry *tlb_dnnl_acquire(tlb_dnnl_cache *c, const int key[TLB_DNNL_KEY],
                                 tlb_dnnl_build_fn build, tlb_dnnl_entry *transient)
{
    /* A primitive may fix its work split from the thread count it sees when
     * built; shards run with 1 thread and the top level with all of them, so
     * each count gets its own primitive (f32 matmul measured right either way
     * on oneDNN 2.6; this is insurance, and costs one build per count). */
    const int threads = omp_get_max_threads();
    for (int i = 0; i < c->used; i++) {
        tlb_dnnl_entry *e = &c->entries[i];
        if (e->threads == threads && memcmp(e->key, key, sizeof e->key) == 0) return e;
    }
    tlb_dnnl_entry *e = c->used < TLB_DNNL_CACHE ? &c->entries[c->used] : transient;
    memcpy(e->key, key, sizeof e->key);
    e->threads = threads;
    build(e, key);
    if (e != transient) c->used++;
    return e;
}

void tlb_dnnl_release(tlb_dnnl_entry *e, tlb_dnnl_entry *transient)
{
    if (e == transient) entry_destroy(e);
}

void tlb_dnnl_set(tlb_dnnl_entry *e, int arg, const void *data)
{
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i].arg == arg) {
            TLB_DNNL_CHECK(dnnl_memory_set_data_handle(e->args[i].memory, (void *)data));
            return;
        }
    fprintf(stderr, "oneDNN backend: no argument %d in this primitive\n", arg);
    abort();
}

void tlb_dnnl_execute(tlb_dnnl_entry *e)
{
    const dnnl_stream_t s = tlb_dnnl_stream();
    TLB_DNNL_CHECK(dnnl_primitive_execute(e->prim, s, e->nargs, e->args));
    TLB_DNNL_CHECK(dnnl_stream_wait(s));
}
