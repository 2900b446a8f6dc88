/* The op x backend table and the run-time choice of each op's backend. */
#include "ops/bf16.h"
#include "ops/impls.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Preference order of the automatic choice, best first (the same for every
 * op today). It comes from `make bench` (BENCHMARKS.md); the registry takes
 * the first supported backend that implements the op. Measured
 * (bench/ops_time.c, 2 threads): dense avx512 ~= dnnl (avx512 ahead on the
 * 64x64 and head shapes, dnnl ~10% ahead on fc1/fc2 backward) and avx512 is
 * thread-count deterministic, so it leads. On an AVX2-only CPU (AMD EPYC Zen
 * 3, session 18) our avx2 kernels beat oneDNN's on every op (dense 8%,
 * LayerNorm 1.5x, GELU 2.1x, patch conv 2.4x), and with the fused stages a
 * micro-batch took 0.850x the time it took on oneDNN's (bench/ab.sh); so avx2
 * comes before dnnl. */
static const tlb_backend preference[TLB_BACKEND_COUNT] = {TLB_BACKEND_AVX512, TLB_BACKEND_AVX2,
                                                          TLB_BACKEND_DNNL, TLB_BACKEND_REF};

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

/* The ops each fused stage does the work of. */
static unsigned fused_parts(int op)
{
    switch (op) {
    case TLB_OP_layernorm_pair: return 1u << TLB_OP_layernorm;
    case TLB_OP_ffn:
        return 1u << TLB_OP_dense | 1u << TLB_OP_gelu | 1u << TLB_OP_dropout | 1u << TLB_OP_residual;
    default: return 0;
    }
}

int ops_count(void) { return NUM_OPS; }
const char *ops_name(int op) { return op >= 0 && op < NUM_OPS ? op_names[op] : NULL; }

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

int ops_table_force(op_table *t, int op, tlb_backend b)
{
    if (op < 0 || op >= NUM_OPS || b >= TLB_BACKEND_COUNT) return -1;
    if (!ops_impl(op, b) || !backend_supported(b)) return -1;
    switch ((tlb_op)op) { /* a typed copy into the op's own slot */
#define INSTALL(name, ...) \
    case TLB_OP_##name: t->name = *name##_impls[b]; break;
        TLB_OP_LIST(INSTALL)
#undef INSTALL
    default: return -1;
    }
    t->backend[op] = b;
    t->forced |= 1u << op;
    t->off &= ~(1u << op);
    if (op == TLB_OP_dense) t->bf16_dense = 0;
    return 0;
}

/* Whether t's slot for op holds the registry's implementation for the
 * backend it names (not one a caller put there by hand). */
static int slot_is_registry(const op_table *t, int op)
{
    switch ((tlb_op)op) {
#define SAME(name, ...) \
    case TLB_OP_##name: \
        return name##_impls[t->backend[op]] && memcmp(&t->name, name##_impls[t->backend[op]], sizeof t->name) == 0;
        TLB_OP_LIST(SAME)
#undef SAME
    default: return 0;
    }
}

layernorm_apply_fn ops_layernorm_apply(const op_table *t, int op)
{
    if ((op != TLB_OP_layernorm && op != TLB_OP_layernorm_pair) || t->backend[op] >= TLB_BACKEND_COUNT ||
        !slot_is_registry(t, op))
        return NULL;
    switch (t->backend[op]) {
    case TLB_BACKEND_REF: return layernorm_apply_ref;
    case TLB_BACKEND_AVX2: return layernorm_apply_avx2;
    case TLB_BACKEND_AVX512: return layernorm_apply_avx512;
    default: return NULL;
    }
}

attention_mix_fn ops_attention_mix(const op_table *t)
{
    if (t->backend[TLB_OP_attention] >= TLB_BACKEND_COUNT || !slot_is_registry(t, TLB_OP_attention)) return NULL;
    switch (t->backend[TLB_OP_attention]) {
    case TLB_BACKEND_REF: return attention_mix_ref;
    case TLB_BACKEND_AVX2: return attention_mix_avx2;
    case TLB_BACKEND_AVX512: return attention_mix_avx512;
    default: return NULL;
    }
}

attention_backward_mix_fn ops_attention_backward_mix(const op_table *t)
{
    if (t->backend[TLB_OP_attention] >= TLB_BACKEND_COUNT || !slot_is_registry(t, TLB_OP_attention)) return NULL;
    switch (t->backend[TLB_OP_attention]) {
    case TLB_BACKEND_AVX2: return attention_backward_mix_avx2;
    case TLB_BACKEND_AVX512: return attention_backward_mix_avx512;
    default: return NULL;
    }
}

static const ffn_h16_op *ffn_h16_of(const op_table *t)
{
    if (!ops_table_fused(t, TLB_OP_ffn)) return NULL;
    switch (t->backend[TLB_OP_ffn]) {
    case TLB_BACKEND_AVX2: return &ffn_h16_avx2;
    case TLB_BACKEND_AVX512: return &ffn_h16_avx512;
    default: return NULL;
    }
}

const ffn_h16_op *ops_ffn_h16(const op_table *t) { return t->bf16_h ? ffn_h16_of(t) : NULL; }

int ops_table_saves_h16(const op_table *t) { return t->bf16_h && (ffn_h16_of(t) || ops_table_ffn_bf16(t)); }

int ops_table_set_bf16_h(op_table *t, int on)
{
    if (on && !ffn_h16_of(t) && !ops_table_ffn_bf16(t)) return -1;
    t->bf16_h = on;
    return 0;
}

int ops_table_fused(const op_table *t, int op)
{
    const unsigned parts = fused_parts(op);
    if (!parts || (t->off >> op & 1u) || t->backend[op] >= TLB_BACKEND_COUNT || !slot_is_registry(t, op))
        return 0;
    if (op == TLB_OP_ffn && t->bf16_dense) return 0; /* its products are fp32 */
    for (int p = 0; p < NUM_OPS; p++) {
        if (!(parts >> p & 1u)) continue;
        if (t->backend[p] >= TLB_BACKEND_COUNT || !slot_is_registry(t, p)) return 0; /* by hand: runs itself */
        if (t->backend[p] == t->backend[op]) continue;
        /* an op put on another backend runs itself; so does a dense put on
         * another backend by a spec or a table built by hand (a CPU where
         * oneDNN's products would lead), unless the stage itself was asked for */
        if ((t->forced >> p & 1u) || (p == TLB_OP_dense && !(t->forced >> op & 1u))) return 0;
    }
    return 1;
}

int ops_table_ffn_bf16(const op_table *t)
{
    if (!t->bf16_dense || (t->off >> TLB_OP_ffn & 1u) || t->backend[TLB_OP_ffn] != TLB_BACKEND_AVX512 ||
        !slot_is_registry(t, TLB_OP_ffn))
        return 0;
    const unsigned elementwise = fused_parts(TLB_OP_ffn) & ~(1u << TLB_OP_dense); /* dense is bf16 here */
    for (int p = 0; p < NUM_OPS; p++)
        if ((elementwise >> p & 1u) && (t->backend[p] != TLB_BACKEND_AVX512 || !slot_is_registry(t, p))) return 0;
    return 1;
}

int ops_table_folds_norms(const op_table *t)
{
    return ops_table_fused(t, TLB_OP_layernorm_pair) && t->dense.forward && t->dense.backward;
}

int ops_mixed_precision_supported(void) { return bf16_native(); }

int ops_table_set_bf16(op_table *t, int on)
{
    if (on && !ops_mixed_precision_supported()) return -1;
    t->bf16_dense = on != 0;
    return 0;
}

void ops_table_automatic(op_table *t)
{
    memset(t, 0, sizeof *t);
    for (int op = 0; op < NUM_OPS; op++) {
        int done = 0;
        for (int i = 0; i < TLB_BACKEND_COUNT && !done; i++) done = ops_table_force(t, op, preference[i]) == 0;
        if (!done) ops_table_force(t, op, TLB_BACKEND_REF);
    }
    t->forced = 0; /* chosen, not forced */
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

/* Applies one spec to t; callers prefix errors with where the spec came from. */
static int apply_spec(op_table *t, const char *spec, tlb_error *err)
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
            for (int op = 0; op < NUM_OPS; op++) ops_table_force(t, op, b);
        } else {
            size_t oplen = (size_t)(colon - p);
            int op = -1;
            for (int i = 0; i < NUM_OPS; i++)
                if (strlen(op_names[i]) == oplen && strncmp(op_names[i], p, oplen) == 0)
                    op = i;
            if (op < 0) return tlb_fail(err, "unknown op '%.*s'", (int)oplen, p);
            if (len - oplen - 1 == 3 && strncmp(colon + 1, "off", 3) == 0) { /* "ffn:off" */
                if (!fused_parts(op))
                    return tlb_fail(err, "op %s cannot be off (only the fused stages layernorm_pair and ffn)",
                                    op_names[op]);
                t->off |= 1u << op;
                p += len + (end ? 1 : 0);
                continue;
            }
            if (parse_backend(colon + 1, len - oplen - 1, &b) != 0)
                return tlb_fail(err, "unknown backend '%.*s' for op %s",
                                (int)(len - oplen - 1), colon + 1, op_names[op]);
            if (ops_table_force(t, op, b) != 0)
                return tlb_fail(err, "op %s has no %s backend on this CPU",
                                op_names[op], backend_name(b));
        }
        p += len + (end ? 1 : 0);
    }
    return 0;
}

int ops_spec_check(const char *spec, tlb_error *err)
{
    if (!spec || !*spec) return 0;
    op_table scratch;
    ops_table_automatic(&scratch);
    return apply_spec(&scratch, spec, err);
}

int ops_table_select(op_table *t, const char *spec, tlb_error *err)
{
    ops_table_automatic(t);
    int rc = 0;
    if (spec && *spec && apply_spec(t, spec, err) != 0) rc = tlb_fail_prefix(err, "backend");
    const char *env = getenv("TLB_BACKEND");
    if (rc == 0 && env && *env && apply_spec(t, env, err) != 0) rc = tlb_fail_prefix(err, "TLB_BACKEND");
    if (rc != 0) ops_table_automatic(t);
    return rc;
}

void ops_table_describe(const op_table *t, char *backends, size_t n)
{
    size_t at = 0;
    if (n) backends[0] = '\0';
    for (int op = 0; op < NUM_OPS && at < n; op++) {
        const char *b = t->bf16_dense && op == TLB_OP_dense                    ? "bf16"
                        : op == TLB_OP_ffn && ops_table_ffn_bf16(t)             ? "bf16"
                        : fused_parts(op) && !ops_table_fused(t, op) ? "off"
                                                                     : backend_name(t->backend[op]);
        at += (size_t)snprintf(backends + at, n - at, "%s%s:%s", op ? "," : "", op_names[op], b);
    }
}

const char *ops_table_precision(const op_table *t)
{
    if (t->bf16_dense) return ops_table_saves_h16(t) ? "bf16 dense, bf16 h" : "bf16 dense";
    return ops_ffn_h16(t) ? "fp32, bf16 h" : "fp32";
}
