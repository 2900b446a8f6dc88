/* The ListOps generator, its split cache and loading (choices: listops.h). */
#include "data/listops.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "data/listops_eval.h"
#include "util/fs.h"
#include "util/rng.h"

int listops_split_count(data_split split)
{
    switch (split) {
    case DATA_SPLIT_TRAIN: return LISTOPS_TRAIN_COUNT;
    case DATA_SPLIT_VAL: return LISTOPS_VAL_COUNT;
    case DATA_SPLIT_TEST: return LISTOPS_TEST_COUNT;
    default: return 0;
    }
}

/* ---- the generator: a recursive tree walk that emits tokens and computes
 * each node's value from its children's ---- */

typedef struct {
    rng_stream rng;
    uint8_t *tok;
    int len;
    int over; /* the tree passed LISTOPS_MAX_LEN: rejected, stop emitting */
} gen_state;

static void emit(gen_state *g, int t)
{
    if (g->len == LISTOPS_MAX_LEN) g->over = 1;
    else g->tok[g->len++] = (uint8_t)t;
}

static int apply_op(int op, int *v, int k)
{
    int r = v[0], s = 0;
    switch (op) {
    case LISTOPS_OP_MAX:
        for (int i = 1; i < k; i++) r = v[i] > r ? v[i] : r;
        return r;
    case LISTOPS_OP_MIN:
        for (int i = 1; i < k; i++) r = v[i] < r ? v[i] : r;
        return r;
    case LISTOPS_OP_MED:
        for (int i = 1; i < k; i++) /* insertion sort, k <= 10 */
            for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
                const int t = v[j];
                v[j] = v[j - 1];
                v[j - 1] = t;
            }
        return k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2; /* int(np.median) */
    default: /* LISTOPS_OP_SM */
        for (int i = 0; i < k; i++) s += v[i];
        return s % 10;
    }
}

static int gen_node(gen_state *g, int depth, int force_op)
{
    if (g->over) return 0;
    const int op = force_op || (depth < LISTOPS_MAX_DEPTH && rng_next_uniform(&g->rng) < 0.25f);
    if (!op) {
        const int v = (int)rng_next_below(&g->rng, 10);
        emit(g, LISTOPS_DIGIT0 + v);
        return v;
    }
    const int which = LISTOPS_OP_MAX + (int)rng_next_below(&g->rng, 4);
    const int k = 2 + (int)rng_next_below(&g->rng, LISTOPS_MAX_ARGS - 1);
    int v[LISTOPS_MAX_ARGS];
    emit(g, which);
    for (int i = 0; i < k; i++) v[i] = gen_node(g, depth + 1, 0);
    emit(g, LISTOPS_CLOSE);
    return apply_op(which, v, k);
}

int listops_generate_one(uint8_t *tokens, int *len, uint64_t key)
{
    gen_state g = {.rng = {key, 0}, .tok = tokens};
    for (;;) {
        g.len = 0;
        g.over = 0;
        const int value = gen_node(&g, 1, 1);
        if (!g.over && g.len >= LISTOPS_MIN_LEN) {
            memset(tokens + g.len, LISTOPS_PAD, LISTOPS_MAX_LEN - g.len); /* rejected trees' tail */
            *len = g.len;
            return value;
        }
    }
}

uint64_t listops_sequence_key(uint64_t seed, data_split split, int i)
{
    return rng_key(rng_key(rng_key(seed, 0x4c6973744f7073ULL /* "ListOps" */), (uint64_t)split),
                   (uint64_t)i);
}

/* ---- checking a set with the evaluator ---- */

/* 0 if sequence i of s is valid and its label is its value; else a message. */
static int check_one(const token_set *s, int i, char *why, size_t n)
{
    const uint8_t *t = s->tokens + (size_t)i * s->max_len;
    const int len = s->lengths[i];
    if (len < LISTOPS_MIN_LEN || len > LISTOPS_MAX_LEN || len > s->max_len) {
        snprintf(why, n, "length %d outside %d..%d", len, LISTOPS_MIN_LEN, LISTOPS_MAX_LEN);
        return -1;
    }
    for (int j = len; j < s->max_len; j++)
        if (t[j] != LISTOPS_PAD) {
            snprintf(why, n, "token %d after the length %d is %d, not padding", j, len, t[j]);
            return -1;
        }
    listops_eval e;
    if (listops_evaluate(t, len, &e) < 0) {
        snprintf(why, n, "malformed at token %d", e.at);
        return -1;
    }
    if (e.max_args > LISTOPS_MAX_ARGS || e.min_args < 2) {
        snprintf(why, n, "an operator has %d arguments, expected 2..%d",
                 e.max_args > LISTOPS_MAX_ARGS ? e.max_args : e.min_args, LISTOPS_MAX_ARGS);
        return -1;
    }
    if (e.value != s->labels[i]) {
        snprintf(why, n, "label %d, the evaluator gives %d", s->labels[i], e.value);
        return -1;
    }
    return 0;
}

int listops_check(const token_set *s, tlb_error *err)
{
    int first = INT_MAX;
#pragma omp parallel for schedule(dynamic, 256) reduction(min : first)
    for (int i = 0; i < s->count; i++) {
        char why[160];
        if (i < first && check_one(s, i, why, sizeof why) != 0) first = i;
    }
    if (first == INT_MAX) return 0;
    char why[160];
    check_one(s, first, why, sizeof why);
    return tlb_fail(err, "ListOps sequence %d: %s", first, why);
}

int listops_generate(token_set *out, data_split split, uint64_t seed, int count, tlb_error *err)
{
    if ((unsigned)split >= DATA_SPLIT_COUNT || count < 0)
        return tlb_fail(err, "ListOps: bad split %d or count %d", (int)split, count);
    if (token_set_alloc(out, count, LISTOPS_MAX_LEN, LISTOPS_VOCAB, LISTOPS_PAD,
                        LISTOPS_NUM_CLASSES, err))
        return -1;
    /* A sequence is a pure function of its key: any thread count, same bytes. */
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < count; i++) {
        int len;
        const int v = listops_generate_one(out->tokens + (size_t)i * LISTOPS_MAX_LEN, &len,
                                           listops_sequence_key(seed, split, i));
        out->lengths[i] = len;
        out->labels[i] = (uint8_t)v;
    }
    if (listops_check(out, err) != 0) {
        token_set_free(out);
        return tlb_fail_prefix(err, "ListOps %s generator", data_split_name(split));
    }
    return 0;
}

/* ---- the cache file ---- */

#define CACHE_MAGIC "TLBLSTOP"
#define CACHE_VERSION 1u

static void put_u16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8); }
static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> 8 * i);
}
static uint32_t get_u16(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }
static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) v |= (uint32_t)p[i] << 8 * i;
    return v;
}
static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << 8 * i;
    return v;
}

/* The header fields in file order after the magic. */
typedef struct {
    uint32_t version, split;
    uint64_t seed;
    uint32_t count, min_len, max_len, max_depth, max_args;
    uint64_t total;
} cache_header;

static void put_header(uint8_t *p, const cache_header *h)
{
    memcpy(p, CACHE_MAGIC, 8);
    put_u32(p + 8, h->version);
    put_u32(p + 12, h->split);
    put_u64(p + 16, h->seed);
    put_u32(p + 24, h->count);
    put_u32(p + 28, h->min_len);
    put_u32(p + 32, h->max_len);
    put_u32(p + 36, h->max_depth);
    put_u32(p + 40, h->max_args);
    put_u64(p + 44, h->total);
}

static void get_header(const uint8_t *p, cache_header *h)
{
    h->version = get_u32(p + 8);
    h->split = get_u32(p + 12);
    h->seed = get_u64(p + 16);
    h->count = get_u32(p + 24);
    h->min_len = get_u32(p + 28);
    h->max_len = get_u32(p + 32);
    h->max_depth = get_u32(p + 36);
    h->max_args = get_u32(p + 40);
    h->total = get_u64(p + 44);
}
#define HEADER_BYTES 52 /* the magic and the fields as put_header lays them out */

static int header_equal(const cache_header *a, const cache_header *b)
{
    return a->version == b->version && a->split == b->split && a->seed == b->seed &&
           a->count == b->count && a->min_len == b->min_len && a->max_len == b->max_len &&
           a->max_depth == b->max_depth && a->max_args == b->max_args && a->total == b->total;
}

static cache_header expected_header(data_split split, uint64_t seed, int count, uint64_t total)
{
    return (cache_header){CACHE_VERSION, (uint32_t)split, seed, (uint32_t)count, LISTOPS_MIN_LEN,
                          LISTOPS_MAX_LEN, LISTOPS_MAX_DEPTH, LISTOPS_MAX_ARGS, total};
}

int listops_cache_path(char *buf, size_t n, const char *dir, data_split split, uint64_t seed,
                       tlb_error *err)
{
    char name[96];
    snprintf(name, sizeof name, "listops-%s-%016" PRIx64 ".bin", data_split_name(split), seed);
    return fs_join(buf, n, dir, name, err);
}

int listops_write_cache(const token_set *s, const char *dir, data_split split, uint64_t seed,
                        tlb_error *err)
{
    char path[FS_PATH_MAX];
    if (listops_cache_path(path, sizeof path, dir, split, seed, err) || fs_mkdir_p(dir, err))
        return -1;
    uint64_t total = 0;
    for (int i = 0; i < s->count; i++) total += (uint64_t)s->lengths[i];
    const size_t bytes = HEADER_BYTES + (size_t)s->count * 3 + (size_t)total + 8;
    uint8_t *buf = malloc(bytes);
    if (!buf) return tlb_fail(err, "%s: out of memory for %zu bytes", path, bytes);
    const cache_header h = expected_header(split, seed, s->count, total);
    put_header(buf, &h);
    uint8_t *p = buf + HEADER_BYTES;
    memcpy(p, s->labels, (size_t)s->count);
    p += s->count;
    for (int i = 0; i < s->count; i++, p += 2) put_u16(p, (uint32_t)s->lengths[i]);
    for (int i = 0; i < s->count; i++) {
        memcpy(p, s->tokens + (size_t)i * s->max_len, (size_t)s->lengths[i]);
        p += s->lengths[i];
    }
    put_u64(p, XXH3_64bits(buf, bytes - 8));
    const int rc = fs_write_file_atomic(path, buf, bytes, err);
    free(buf);
    return rc;
}

/* Reads the whole file; the messages name it. */
static int slurp(const char *path, uint8_t **out, size_t *n, tlb_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return tlb_fail(err, "%s: cannot open (%s)", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0) {
        fclose(f);
        return tlb_fail(err, "%s: cannot stat (%s)", path, strerror(errno));
    }
    *n = (size_t)st.st_size;
    *out = malloc(*n + 1);
    if (!*out) {
        fclose(f);
        return tlb_fail(err, "%s: out of memory for %zu bytes", path, *n);
    }
    const size_t got = fread(*out, 1, *n, f);
    fclose(f);
    if (got != *n) {
        free(*out);
        *out = NULL;
        return tlb_fail(err, "%s: read %zu of %zu bytes", path, got, *n);
    }
    return 0;
}

int listops_read_cache(token_set *out, const char *path, data_split split, uint64_t seed,
                       tlb_error *err)
{
    memset(out, 0, sizeof *out);
    uint8_t *buf;
    size_t n = 0;
    if (slurp(path, &buf, &n, err)) return -1;
    int rc = -1;
    const int count = listops_split_count(split);
    cache_header h;
    if (n < HEADER_BYTES + 8 || memcmp(buf, CACHE_MAGIC, 8) != 0) {
        tlb_fail(err, "%s: not a ListOps cache file (%zu bytes, no %s header)", path, n,
                 CACHE_MAGIC);
        goto done;
    }
    const uint64_t want_hash = get_u64(buf + n - 8), got_hash = XXH3_64bits(buf, n - 8);
    if (got_hash != want_hash) {
        tlb_fail(err,
                 "%s: XXH3-64 0x%016" PRIx64 ", the file records 0x%016" PRIx64
                 " (corrupted cache)",
                 path, got_hash, want_hash);
        goto done;
    }
    get_header(buf, &h);
    const cache_header want = expected_header(split, seed, count, h.total);
    if (!header_equal(&h, &want)) {
        tlb_fail(err,
                 "%s: made for version %u, split %u, seed 0x%" PRIx64
                 ", %u sequences, lengths %u..%u, depth %u, args %u; expected %u, %u, 0x%" PRIx64
                 ", %u, %u..%u, %u, %u (stale cache)",
                 path, h.version, h.split, h.seed, h.count, h.min_len, h.max_len, h.max_depth,
                 h.max_args, want.version, want.split, want.seed, want.count, want.min_len,
                 want.max_len, want.max_depth, want.max_args);
        goto done;
    }
    if (n != HEADER_BYTES + (size_t)count * 3 + h.total + 8) {
        tlb_fail(err, "%s: %zu bytes, the header implies %zu", path, n,
                 (size_t)(HEADER_BYTES + (size_t)count * 3 + h.total + 8));
        goto done;
    }
    if (token_set_alloc(out, count, LISTOPS_MAX_LEN, LISTOPS_VOCAB, LISTOPS_PAD,
                        LISTOPS_NUM_CLASSES, err))
        goto done;
    const uint8_t *p = buf + HEADER_BYTES;
    memcpy(out->labels, p, (size_t)count);
    p += count;
    uint64_t total = 0;
    for (int i = 0; i < count; i++, p += 2) {
        out->lengths[i] = (int32_t)get_u16(p);
        total += (uint64_t)out->lengths[i];
        if (out->lengths[i] > LISTOPS_MAX_LEN || total > h.total) {
            tlb_fail(err, "%s: sequence %d's length %d does not fit", path, i, out->lengths[i]);
            goto done;
        }
    }
    if (total != h.total) {
        tlb_fail(err, "%s: lengths sum to %" PRIu64 ", the header says %" PRIu64, path, total,
                 h.total);
        goto done;
    }
    for (int i = 0; i < count; i++) {
        memcpy(out->tokens + (size_t)i * LISTOPS_MAX_LEN, p, (size_t)out->lengths[i]);
        p += out->lengths[i];
    }
    rc = 0;
done:
    free(buf);
    if (rc) token_set_free(out);
    return rc;
}

int listops_load(token_set *out, const char *dir, data_split split, uint64_t seed,
                 listops_origin *origin, tlb_error *err)
{
    listops_origin scratch, *o = origin ? origin : &scratch;
    memset(o, 0, sizeof *o);
    memset(out, 0, sizeof *out);
    if (!dir) return tlb_fail(err, "ListOps: no data directory");
    if ((unsigned)split >= DATA_SPLIT_COUNT) return tlb_fail(err, "ListOps: bad split %d", split);
    char path[FS_PATH_MAX];
    if (listops_cache_path(path, sizeof path, dir, split, seed, err)) return -1;
    struct stat st;
    if (stat(path, &st) == 0) {
        tlb_error why;
        if (listops_read_cache(out, path, split, seed, &why) == 0) {
            if (listops_check(out, &why) == 0) return 0;
            token_set_free(out);
        }
        const size_t k = strnlen(why.msg, sizeof o->cache_problem - 1); /* cut, not overflow */
        memcpy(o->cache_problem, why.msg, k);
        o->cache_problem[k] = '\0';
    }
    o->generated = 1;
    if (listops_generate(out, split, seed, listops_split_count(split), err)) return -1;
    if (listops_write_cache(out, dir, split, seed, err)) {
        token_set_free(out);
        return tlb_fail_prefix(err, "ListOps %s cache", data_split_name(split));
    }
    return 0;
}
