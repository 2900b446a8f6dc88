/* The op x backend table and the run-time choice of each op's backend. */
#include "ops/bf16.h"
#include "ops/impls.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

op_table tlb_ops;

typedef struct {
    const char *name;
    size_t offset;                     /* where the chosen impl goes in op_table */
    size_t size;                       /* sizeof the op's *_op struct */
    const void *impl[TLB_BACKEND_COUNT];
    tlb_backend preference[TLB_BACKEND_COUNT]; /* automatic choice, best first */
} op_entry;

#define OP_ENTRY(op, ...) \
    {#op, offsetof(op_table, op), sizeof(op##_op), __VA_ARGS__}

/* Preference orders come from `make bench` on the development machine
 * (BENCHMARKS.md); the registry takes the first supported backend that
 * implements the op. */
#define PREFER_DEFAULT {TLB_BACKEND_AVX512, TLB_BACKEND_DNNL, TLB_BACKEND_AVX2, TLB_BACKEND_REF}

/* Measured (make bench: bench/ops_time.c, 2 threads; BENCHMARKS.md): dense avx512 ~= dnnl
 * (avx512 ahead on the 64x64 and head shapes, dnnl ~10% ahead on fc1/fc2
 * backward) and avx512 is thread-count deterministic, so it leads; dnnl stays
 * ahead of our avx2 kernels for CPUs without AVX-512. */
static op_entry registry[] = {
    OP_ENTRY(dense, {[TLB_BACKEND_REF] = &dense_ref, [TLB_BACKEND_DNNL] = &dense_dnnl,
                     [TLB_BACKEND_AVX512] = &dense_avx512, [TLB_BACKEND_AVX2] = &dense_avx2}, PREFER_DEFAULT),
    OP_ENTRY(layernorm, {[TLB_BACKEND_REF] = &layernorm_ref, [TLB_BACKEND_AVX512] = &layernorm_avx512,
                         [TLB_BACKEND_AVX2] = &layernorm_avx2, [TLB_BACKEND_DNNL] = &layernorm_dnnl}, PREFER_DEFAULT),
    OP_ENTRY(gelu, {[TLB_BACKEND_REF] = &gelu_ref, [TLB_BACKEND_AVX512] = &gelu_avx512,
                    [TLB_BACKEND_AVX2] = &gelu_avx2, [TLB_BACKEND_DNNL] = &gelu_dnnl}, PREFER_DEFAULT),
    OP_ENTRY(attention, {[TLB_BACKEND_REF] = &attention_ref, [TLB_BACKEND_AVX512] = &attention_avx512,
                         [TLB_BACKEND_AVX2] = &attention_avx2}, PREFER_DEFAULT),
    OP_ENTRY(patch_conv, {[TLB_BACKEND_REF] = &patch_conv_ref, [TLB_BACKEND_AVX512] = &patch_conv_avx512,
                          [TLB_BACKEND_AVX2] = &patch_conv_avx2, [TLB_BACKEND_DNNL] = &patch_conv_dnnl}, PREFER_DEFAULT),
    OP_ENTRY(posemb, {[TLB_BACKEND_REF] = &posemb_ref, [TLB_BACKEND_AVX512] = &posemb_avx512,
                      [TLB_BACKEND_AVX2] = &posemb_avx2}, PREFER_DEFAULT),
    OP_ENTRY(meanpool, {[TLB_BACKEND_REF] = &meanpool_ref, [TLB_BACKEND_AVX512] = &meanpool_avx512,
                        [TLB_BACKEND_AVX2] = &meanpool_avx2}, PREFER_DEFAULT),
    OP_ENTRY(softmax_xent, {[TLB_BACKEND_REF] = &softmax_xent_ref, [TLB_BACKEND_AVX512] = &softmax_xent_avx512,
                            [TLB_BACKEND_AVX2] = &softmax_xent_avx2, [TLB_BACKEND_DNNL] = &softmax_xent_dnnl},
             PREFER_DEFAULT),
    OP_ENTRY(dropout, {[TLB_BACKEND_REF] = &dropout_ref, [TLB_BACKEND_AVX512] = &dropout_avx512,
                       [TLB_BACKEND_AVX2] = &dropout_avx2}, PREFER_DEFAULT),
    OP_ENTRY(residual, {[TLB_BACKEND_REF] = &residual_ref, [TLB_BACKEND_AVX512] = &residual_avx512,
                        [TLB_BACKEND_AVX2] = &residual_avx2}, PREFER_DEFAULT),
};

#define NUM_OPS ((int)(sizeof registry / sizeof registry[0]))

static tlb_backend chosen[NUM_OPS];
static int mixed_precision; /* dense runs dense_bf16 instead of chosen[dense] */

static const char *const backend_names[TLB_BACKEND_COUNT] = {"ref", "avx2", "avx512", "dnnl"};

const char *backend_name(tlb_backend b) { return b < TLB_BACKEND_COUNT ? backend_names[b] : "?"; }

int backend_supported(tlb_backend b)
{
    switch (b) {
    case TLB_BACKEND_REF: return 1;
    case TLB_BACKEND_AVX2:
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case TLB_BACKEND_AVX512:
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    case TLB_BACKEND_DNNL: return 1; /* oneDNN dispatches to whatever ISA the CPU has */
    default: return 0;
    }
}

int ops_count(void) { return NUM_OPS; }
const char *ops_name(int op) { return op >= 0 && op < NUM_OPS ? registry[op].name : NULL; }
tlb_backend ops_chosen(int op) { return chosen[op]; }

const void *ops_impl(int op, tlb_backend b)
{
    if (op < 0 || op >= NUM_OPS || b >= TLB_BACKEND_COUNT) return NULL;
    return registry[op].impl[b];
}

int ops_find(const char *name)
{
    for (int i = 0; i < NUM_OPS; i++)
        if (strcmp(registry[i].name, name) == 0) return i;
    return -1;
}

int ops_force(int op, tlb_backend b)
{
    if (op < 0 || op >= NUM_OPS || b >= TLB_BACKEND_COUNT) return -1;
    if (!registry[op].impl[b] || !backend_supported(b)) return -1;
    memcpy((char *)&tlb_ops + registry[op].offset, registry[op].impl[b], registry[op].size);
    chosen[op] = b;
    if (registry[op].offset == offsetof(op_table, dense)) mixed_precision = 0;
    return 0;
}

int ops_mixed_precision_supported(void) { return bf16_native(); }
int ops_mixed_precision(void) { return mixed_precision; }

int ops_set_mixed_precision(int on)
{
    const int dense = ops_find("dense");
    if (!on) return ops_force(dense, chosen[dense]);
    if (!ops_mixed_precision_supported()) return -1;
    tlb_ops.dense = dense_bf16;
    mixed_precision = 1;
    return 0;
}

static void choose_automatic(int op)
{
    for (int i = 0; i < TLB_BACKEND_COUNT; i++)
        if (ops_force(op, registry[op].preference[i]) == 0) return;
    ops_force(op, TLB_BACKEND_REF);
}

static int parse_backend(const char *name, size_t len, tlb_backend *out)
{
    for (int b = 0; b < TLB_BACKEND_COUNT; b++)
        if (strlen(backend_names[b]) == len && strncmp(backend_names[b], name, len) == 0) {
            *out = (tlb_backend)b;
            return 0;
        }
    return -1;
}

static int apply_spec(const char *spec, tlb_error *err);

int ops_spec_check(const char *spec, tlb_error *err)
{
    if (!spec || !*spec) return 0;
    const op_table saved_ops = tlb_ops;
    tlb_backend saved[NUM_OPS];
    memcpy(saved, chosen, sizeof saved);
    const int saved_mixed = mixed_precision; /* forcing dense turns it off */
    int rc = apply_spec(spec, err);
    tlb_ops = saved_ops;
    memcpy(chosen, saved, sizeof saved);
    mixed_precision = saved_mixed;
    return rc;
}

/* Applies one spec; callers prefix errors with where the spec came from. */
static int apply_spec(const char *spec, tlb_error *err)
{
    const char *p = spec;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *colon = memchr(p, ':', len);
        if (len == 0) {
            p += end ? 1 : 0;
            continue;
        }
        tlb_backend b;
        if (!colon) { /* one backend for every op it implements */
            if (parse_backend(p, len, &b) != 0)
                return tlb_fail(err, "unknown backend '%.*s' (ref, avx2, avx512, dnnl)",
                                (int)len, p);
            if (!backend_supported(b))
                return tlb_fail(err, "backend '%s' is not supported by this CPU",
                                backend_name(b));
            for (int op = 0; op < NUM_OPS; op++) ops_force(op, b);
        } else {
            size_t oplen = (size_t)(colon - p);
            int op = -1;
            for (int i = 0; i < NUM_OPS; i++)
                if (strlen(registry[i].name) == oplen && strncmp(registry[i].name, p, oplen) == 0)
                    op = i;
            if (op < 0) return tlb_fail(err, "unknown op '%.*s'", (int)oplen, p);
            if (parse_backend(colon + 1, len - oplen - 1, &b) != 0)
                return tlb_fail(err, "unknown backend '%.*s' for op %s",
                                (int)(len - oplen - 1), colon + 1, registry[op].name);
            if (ops_force(op, b) != 0)
                return tlb_fail(err, "op %s has no %s backend on this CPU",
                                registry[op].name, backend_name(b));
        }
        p += len + (end ? 1 : 0);
    }
    return 0;
}

int ops_select(const char *spec, tlb_error *err)
{
    for (int op = 0; op < NUM_OPS; op++) choose_automatic(op);
    if (spec && *spec && apply_spec(spec, err) != 0) return tlb_fail_prefix(err, "backend");
    const char *env = getenv("TLB_BACKEND");
    if (env && *env && apply_spec(env, err) != 0) return tlb_fail_prefix(err, "TLB_BACKEND");
    return 0;
}

/* Every program starts with the automatic choice, so tlb_ops is never empty. */
__attribute__((constructor)) static void ops_init_default(void)
{
    for (int op = 0; op < NUM_OPS; op++) choose_automatic(op);
}
