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

int tlb_dnnl_failed(tlb_dnnl_entry *e, dnnl_status_t st, const char *what)
{
    if (st == dnnl_success) return 0;
    e->failed = 1;
    snprintf(e->error, sizeof e->error, "oneDNN: %.150s failed (status %d)", what, (int)st);
    return 1;
}

/* The engine: made once per process, read-only afterwards. */
static dnnl_engine_t engine;
static pthread_once_t engine_once = PTHREAD_ONCE_INIT;

static void engine_init(void)
{
    if (dnnl_engine_create(&engine, dnnl_cpu, 0) != dnnl_success) engine = NULL;
}

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

dnnl_status_t tlb_dnnl_md2d(dnnl_memory_desc_t *md, long rows, long cols, long rs, long cs,
                            dnnl_data_type_t dt)
{
    const dnnl_dims_t dims = {rows, cols}, strides = {rs, cs};
    return dnnl_memory_desc_init_by_strides(md, 2, dims, dt, strides);
}

dnnl_primitive_attr_t tlb_dnnl_attr(int accumulate, int user_scratchpad)
{
    dnnl_primitive_attr_t attr;
    if (dnnl_primitive_attr_create(&attr) != dnnl_success) return NULL;
    int ok = !user_scratchpad || dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user) == dnnl_success;
    if (ok && accumulate) {
        dnnl_post_ops_t po;
        ok = dnnl_post_ops_create(&po) == dnnl_success;
        if (ok) {
            ok = dnnl_post_ops_append_sum(po, 1.0f) == dnnl_success &&
                 dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
            dnnl_post_ops_destroy(po);
        }
    }
    if (!ok) {
        dnnl_primitive_attr_destroy(attr);
        return NULL;
    }
    return attr;
}

static void *alloc64(size_t bytes) { return aligned_alloc(64, (bytes + 63) & ~(size_t)63); }

static void entry_destroy(tlb_dnnl_entry *e)
{
    if (e->prim) dnnl_primitive_destroy(e->prim);
    for (int i = 0; i < e->nargs; i++) dnnl_memory_destroy(e->args[i].memory);
    free(e->scratchpad);
    free(e->work);
    e->prim = NULL, e->nargs = 0, e->scratchpad = NULL, e->work = NULL;
}

void tlb_dnnl_entry_init(tlb_dnnl_entry *e, dnnl_primitive_desc_t pd, const int *args, int nargs,
                         size_t work_n)
{
    const dnnl_engine_t eng = tlb_dnnl_engine();
    e->nargs = 0, e->prim = NULL, e->scratchpad = NULL, e->work = NULL, e->work_n = work_n;
    if (nargs > TLB_DNNL_MAX_ARGS - 1) { /* one slot stays for the scratchpad */
        tlb_dnnl_failed(e, dnnl_invalid_arguments, "too many arguments");
        dnnl_primitive_desc_destroy(pd);
        return;
    }
    if (!tlb_dnnl_failed(e, dnnl_primitive_create(&e->prim, pd), "dnnl_primitive_create")) {
        for (int i = 0; i < nargs && !e->failed; i++) {
            const dnnl_memory_desc_t *md = dnnl_primitive_desc_query_md(pd, dnnl_query_exec_arg_md, args[i]);
            dnnl_memory_t m;
            if (!tlb_dnnl_failed(e, md ? dnnl_memory_create(&m, md, eng, DNNL_MEMORY_NONE) : dnnl_invalid_arguments,
                                 "dnnl_memory_create for an argument"))
                e->args[e->nargs++] = (dnnl_exec_arg_t){args[i], m};
        }
        const dnnl_memory_desc_t *smd = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        const size_t ssize = smd ? dnnl_memory_desc_get_size(smd) : 0;
        if (!e->failed && ssize) {
            dnnl_memory_t m;
            e->scratchpad = alloc64(ssize);
            if (!e->scratchpad) tlb_dnnl_failed(e, dnnl_out_of_memory, "the scratchpad");
            else if (!tlb_dnnl_failed(e, dnnl_memory_create(&m, smd, eng, e->scratchpad), "dnnl_memory_create for the scratchpad"))
                e->args[e->nargs++] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m};
        }
        if (!e->failed && work_n && !(e->work = alloc64(work_n * sizeof(float))))
            tlb_dnnl_failed(e, dnnl_out_of_memory, "the work buffer");
    }
    dnnl_primitive_desc_destroy(pd);
    if (e->failed) entry_destroy(e);
}

/* Builds e for key on the calling thread; 0, or -1 with e->error set. */
static int build_entry(tlb_dnnl_entry *e, const int key[TLB_DNNL_KEY], tlb_dnnl_build_fn build)
{
    memset(e, 0, sizeof *e);
    memcpy(e->key, key, sizeof e->key);
    e->threads = omp_get_max_threads();
    if (!tlb_dnnl_engine()) {
        tlb_dnnl_failed(e, dnnl_runtime_error, "dnnl_engine_create");
        return -1;
    }
    build(e, key);
    if (!e->failed && !e->prim) tlb_dnnl_failed(e, dnnl_runtime_error, "building a primitive");
    return e->failed ? -1 : 0;
}

/* The cache's entry for key at the calling thread's thread count, or NULL. */
static tlb_dnnl_entry *find(tlb_dnnl_cache *c, const int key[TLB_DNNL_KEY])
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
    return NULL;
}

/* Room for one more entry; 0, or -1 when out of memory. */
static int grow(tlb_dnnl_cache *c)
{
    if (c->used < c->cap) return 0;
    const int cap = c->cap ? 2 * c->cap : 16;
    tlb_dnnl_entry *e = realloc(c->entries, (size_t)cap * sizeof *e);
    if (!e) return -1;
    c->entries = e, c->cap = cap;
    return 0;
}

int tlb_dnnl_prepare(tlb_dnnl_cache *c, const int key[TLB_DNNL_KEY], tlb_dnnl_build_fn build,
                     tlb_error *err)
{
    if (!stream) {
        dnnl_engine_t eng = tlb_dnnl_engine();
        if (!eng || dnnl_stream_create(&stream, eng, dnnl_stream_default_flags) != dnnl_success) {
            stream = NULL;
            return tlb_fail(err, "oneDNN: cannot create an engine or stream");
        }
    }
    if (find(c, key)) return 0;
    if (grow(c) != 0) return tlb_fail(err, "oneDNN: out of memory for a primitive cache entry");
    tlb_dnnl_entry *e = &c->entries[c->used];
    if (build_entry(e, key, build) != 0) return tlb_fail(err, "%s", e->error);
    c->used++;
    return 0;
}

tlb_dnnl_entry *tlb_dnnl_acquire(tlb_dnnl_cache *c, const int key[TLB_DNNL_KEY],
                                 tlb_dnnl_build_fn build, tlb_dnnl_entry *transient)
{
    tlb_dnnl_entry *e = find(c, key);
    if (e) return e;
    e = grow(c) == 0 ? &c->entries[c->used] : transient;
    if (build_entry(e, key, build) != 0) { /* an unprepared shape (see dnnl_common.h) */
        fprintf(stderr, "%s (a shape no plan prepared)\n", e->error);
        abort();
    }
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
