/* The op x backend table and the run-time choice of each op's backend. */
#include "ops/bf16.h"
#include "ops/impls.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

op_table tlb_ops;

/* Preference order of the automatic choice, best first (the same for every
 * op today). It comes from `make bench` on the development machine
 * (BENCHMARKS.md); the registry takes the first supported backend that
 * implements the op. Measured (bench/ops_time.c, 2 threads): dense avx512 ~=
 * dnnl (avx512 ahead on the 64x64 and head shapes, dnnl ~10% ahead on fc1/fc2
 * backward) and avx512 is thread-count deterministic, so it leads; dnnl stays
 * ahead of our avx2 kernels for CPUs without AVX-512. */
static const tlb_backend preference[TLB_BACKEND_COUNT] = {TLB_BACKEND_AVX512, TLB_BACKEND_DNNL,
                                                          TLB_BACKEND_AVX2, TLB_BACKEND_REF};

/* One typed row per op: name_impls[backend] is a `const name_op *`, so a
 * row can only hold implementations of its own op. */
#define IMPL_ROW(name, ref, avx2, avx512, dnnl)                                  \
    static const name##_op *const name##_impls[TLB_BACKEND_COUNT] = {           \
        [TLB_BACKEND_REF] = TLB_PICK(ref, &name##_ref),                         \
        [TLB_BACKEND_AVX2] = TLB_PICK(avx2, &name##_avx2),                      \
        [TLB_BACKEND_AVX512] = TLB_PICK(avx512, &name##_avx512),                \
        [TLB_BACKEND_DNNL] = TLB_PICK(dnnl, &name##_dnnl)};                     \
    const name##_op *ops_impl_##name(tlb_backend b)                             \
    {                                                                           \
        return b < TLB_BACKEND_COUNT ? name##_impls[b] : NULL;                  \
    }
TLB_OP_LIST(IMPL_ROW)
#undef IMPL_ROW

#define OP_NAME(name, ...) #name,
static const char *const op_names[] = {TLB_OP_LIST(OP_NAME)};
#undef OP_NAME

#define NUM_OPS TLB_OP_COUNT

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
const char *ops_name(int op) { return op >= 0 && op < NUM_OPS ? op_names[op] : NULL; }
tlb_backend ops_chosen(int op) { return chosen[op]; }

const void *ops_impl(int op, tlb_backend b)
{
    if (op < 0 || op >= NUM_OPS || b >= TLB_BACKEND_COUNT) return NULL;
    switch ((tlb_op)op) {
#define IMPL_CASE(name, ...) case TLB_OP_##name: return name##_impls[b];
        TLB_OP_LIST(IMPL_CASE)
#undef IMPL_CASE
    default: return NULL;
    }
}

int ops_find(const char *name)
{
    for (int i = 0; i < NUM_OPS; i++)
        if (strcmp(op_names[i], name) == 0) return i;
    return -1;
}

int ops_force(int op, tlb_backend b)
{
    if (op < 0 || op >= NUM_OPS || b >= TLB_BACKEND_COUNT) return -1;
    if (!ops_impl(op, b) || !backend_supported(b)) return -1;
    switch ((tlb_op)op) { /* a typed copy into the op's own slot */
#define INSTALL(name, ...) \
    case TLB_OP_##name: tlb_ops.name = *name##_impls[b]; break;
        TLB_OP_LIST(INSTALL)
#undef INSTALL
    default: return -1;
    }
    chosen[op] = b;
    if (op == TLB_OP_dense) mixed_precision = 0;
    return 0;
}

int ops_mixed_precision_supported(void) { return bf16_native(); }
int ops_mixed_precision(void) { return mixed_precision; }

int ops_set_mixed_precision(int on)
{
    if (!on) return ops_force(TLB_OP_dense, chosen[TLB_OP_dense]);
    if (!ops_mixed_precision_supported()) return -1;
    tlb_ops.dense = dense_bf16;
    mixed_precision = 1;
    return 0;
}

static void choose_automatic(int op)
{
    for (int i = 0; i < TLB_BACKEND_COUNT; i++)
        if (ops_force(op, preference[i]) == 0) return;
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
                if (strlen(op_names[i]) == oplen && strncmp(op_names[i], p, oplen) == 0)
                    op = i;
            if (op < 0) return tlb_fail(err, "unknown op '%.*s'", (int)oplen, p);
            if (parse_backend(colon + 1, len - oplen - 1, &b) != 0)
                return tlb_fail(err, "unknown backend '%.*s' for op %s",
                                (int)(len - oplen - 1), colon + 1, op_names[op]);
            if (ops_force(op, b) != 0)
                return tlb_fail(err, "op %s has no %s backend on this CPU",
                                op_names[op], backend_name(b));
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
