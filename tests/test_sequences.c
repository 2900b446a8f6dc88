/* sequences: the building blocks of token inputs. The token_embed op
 * against its definition and bit for bit across backends and thread counts
 * (the op suites hold it to ref, finite differences and the += / NULL
 * contracts); the ListOps generator against the independent evaluator, its
 * limits, determinism and cache check; LRA Image's grayscale tokens on
 * synthetic records with hand-computed values, and on the real CIFAR-10
 * files when they are present. */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/cifar10.h"
#include "data/fetch.h"
#include "data/listops.h"
#include "data/listops_eval.h"
#include "data/lra_image.h"
#include "data/token_set.h"
#include "op_testing.h"
#include "ops/ops.h"
#include "test_helpers.h"
#include "util/rng.h"

/* ---- token_embed ------------------------------------------------------------ */

/* Forward rows are exact copies; backward equals the scatter-add computed
 * here in double (exact: at most a few float terms of a 2^-12 grid), rows of
 * ids that never occur keep their starting value. Every backend. */
Test(sequences, token_embed_matches_definition)
{
    const int N = 41, V = 9, D = 19; /* id 8 is left out below: an unused row */
    int backends = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const token_embed_op *o = ops_impl_token_embed((tlb_backend)b);
        if (!o || !backend_supported((tlb_backend)b)) continue;
        backends++;
        op_case *c = opt_case("token_embed", o, backend_name((tlb_backend)b),
                              (int[6]){N, V, D}, 0, 7);
        for (int n = 0; n < N; n++) c->labels[n] = (n * 5 + 3) % (V - 1); /* each of 0..7 about five times */
        opt_fill_grads(c, 3);
        float *g0 = malloc((size_t)V * D * sizeof(float));
        memcpy(g0, c->in[0].g, (size_t)V * D * sizeof(float));
        c->forward(c);
        c->backward(c, OPT_ALL_GRADS);
        for (int n = 0; n < N; n++)
            cr_expect(memcmp(c->out[0].x + (size_t)n * D, c->in[0].x + (size_t)c->labels[n] * D,
                             (size_t)D * sizeof(float)) == 0,
                      "%s: out row %d is not table row %d", c->label, n, c->labels[n]);
        int used[9] = {0};
        for (int v = 0; v < V; v++)
            for (int d = 0; d < D; d++) {
                double want = g0[v * D + d];
                for (int n = 0; n < N; n++)
                    if (c->labels[n] == v) {
                        want += c->cot[(size_t)n * D + d];
                        used[v] = 1;
                    }
                cr_expect(c->in[0].g[v * D + d] == (float)want,
                          "%s: dtable[%d][%d] = %.8g, the scatter-add gives %.8g", c->label, v, d,
                          c->in[0].g[v * D + d], want);
            }
        cr_expect(used[0] && used[V - 2] && !used[V - 1], "the ids should cover 0..V-2 only");
        free(g0);
        opt_case_free(c);
    }
    cr_expect_geq(backends, 1);
}

/* Values with full mantissas over several binades, so sums round and a
 * different summation order shows in the bits (the harness's 2^-12 grid
 * sums exactly in any order). */
static void fill_rounding(float *x, size_t n, uint64_t seed)
{
    rng_stream r = {seed, 0};
    for (size_t i = 0; i < n; i++)
        x[i] = ldexpf(rng_next_uniform(&r) - 0.5f, (int)rng_next_below(&r, 7) - 3);
}

static void rounding_case(op_case *c)
{
    fill_rounding(c->cot, c->out[0].n, 21);
    fill_rounding(c->in[0].g, c->in[0].n, 22);
}

/* The scatter-add is deterministic: every backend, with 1 and 3 threads,
 * above the threading threshold, with many repeats of few ids, gives ref's
 * values bit for bit. */
Test(sequences, token_embed_backward_bitwise_any_thread_count)
{
    const int dims[6] = {4099, 13, 131};
    op_case *ref = opt_case("token_embed", ref_impl("token_embed"), "ref", dims, 0, 11);
    omp_set_num_threads(1);
    rounding_case(ref);
    ref->forward(ref);
    ref->backward(ref, OPT_ALL_GRADS);
    int compared = 0;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const token_embed_op *o = ops_impl_token_embed((tlb_backend)b);
        if (!o || !backend_supported((tlb_backend)b)) continue;
        for (int threads = 1; threads <= 3; threads += 2) {
            omp_set_num_threads(threads);
            op_case *c = opt_case("token_embed", o, backend_name((tlb_backend)b), dims, 0, 11);
            rounding_case(c);
            c->forward(c);
            c->backward(c, OPT_ALL_GRADS);
            char msg[768];
            if (opt_compare_cases(ref, c, 0, 0, msg, sizeof msg))
                cr_expect(0, "%d threads: %s", threads, msg);
            opt_case_free(c);
            compared++;
        }
    }
    omp_set_num_threads(2);
    cr_expect_geq(compared, 2);
    opt_case_free(ref);
}

/* ---- ListOps ---------------------------------------------------------------- */

/* Builds a sequence from a string: "[MAX 2 9 [MIN 4 7 ] 0 ]". */
static int parse(uint8_t *t, const char *s)
{
    int n = 0;
    while (*s) {
        if (*s == ' ') {
            s++;
        } else if (*s >= '0' && *s <= '9') {
            t[n++] = (uint8_t)(LISTOPS_DIGIT0 + (*s++ - '0'));
        } else if (*s == ']') {
            t[n++] = LISTOPS_CLOSE;
            s++;
        } else if (*s == '_') { /* padding */
            t[n++] = LISTOPS_PAD;
            s++;
        } else {
            static const struct {
                const char *name;
                int id;
            } ops[] = {{"[MAX", LISTOPS_OP_MAX}, {"[MIN", LISTOPS_OP_MIN},
                       {"[MED", LISTOPS_OP_MED}, {"[SM", LISTOPS_OP_SM}};
            int found = 0;
            for (int i = 0; i < 4 && !found; i++)
                if (strncmp(s, ops[i].name, strlen(ops[i].name)) == 0) {
                    t[n++] = (uint8_t)ops[i].id;
                    s += strlen(ops[i].name);
                    found = 1;
                }
            cr_assert(found, "bad test expression at '%s'", s);
        }
    }
    return n;
}

static int eval_str(const char *s)
{
    uint8_t t[256];
    const int n = parse(t, s);
    return listops_evaluate(t, n, NULL);
}

/* The evaluator on hand-worked expressions, and what it refuses. */
Test(sequences, listops_evaluator_by_hand)
{
    static const struct {
        const char *expr;
        int value;
    } cases[] = {
        {"[MAX 2 9 [MIN 4 7 ] 0 ]", 9},
        {"[MIN 5 [MAX 1 2 ] 3 ]", 2},
        {"[MED 3 4 ]", 3},               /* even count: floor((3 + 4) / 2) */
        {"[MED 9 1 8 0 ]", 4},           /* middle 1, 8: floor(4.5) */
        {"[MED 7 1 5 ]", 5},
        {"[MED 2 2 9 9 9 ]", 9},
        {"[SM 8 7 9 ]", 4},              /* 24 mod 10 */
        {"[SM 0 0 ]", 0},
        {"[SM [MAX 9 9 ] [MED 1 2 3 ] 5 ]", 6}, /* 9 + 2 + 5 = 16 */
        {"7", 7},
        {"[MAX", -1},                    /* unclosed */
        {"[MAX 1 2 ] ]", -1},            /* extra bracket */
        {"[MAX 1 2 ] 3", -1},            /* a digit after the expression */
        {"[MAX ]", -1},                  /* no argument */
        {"[MAX 1 _ 2 ]", -1},            /* padding inside */
        {"1 2", -1},
        {"", -1},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_eq(eval_str(cases[i].expr), cases[i].value, "%s", cases[i].expr);
    /* 11 levels (10 brackets) is past the limit; 10 levels is not */
    char deep[128] = "", ok[128] = "";
    for (int i = 0; i < 10; i++) strcat(deep, "[MAX 1 ");
    for (int i = 0; i < 10; i++) strcat(deep, "] ");
    for (int i = 0; i < 9; i++) strcat(ok, "[MAX 1 ");
    for (int i = 0; i < 9; i++) strcat(ok, "] ");
    cr_expect_eq(eval_str(deep), -1, "11 levels accepted");
    cr_expect_eq(eval_str(ok), 1, "10 levels refused");
}

/* Per-sequence facts, scanned here without the evaluator. */
typedef struct {
    int depth;    /* levels: brackets open around a digit, plus one */
    int min_args, max_args;
    int ops[4];   /* openers of MAX, MIN, MED, SM */
    int bad;      /* an id out of range inside, padding missing after */
} scan;

static scan scan_sequence(const uint8_t *t, int len, int row)
{
    scan s = {.min_args = 1000};
    int open = 0, args[64] = {0};
    for (int i = 0; i < len; i++) {
        const int id = t[i];
        if (id >= LISTOPS_OP_MAX && id <= LISTOPS_OP_SM) {
            if (open) args[open - 1]++;
            s.ops[id - LISTOPS_OP_MAX]++;
            if (open == 63) return (scan){.bad = 1};
            args[open++] = 0;
        } else if (id == LISTOPS_CLOSE) {
            if (!open) return (scan){.bad = 1};
            open--;
            if (args[open] < s.min_args) s.min_args = args[open];
            if (args[open] > s.max_args) s.max_args = args[open];
        } else if (id >= LISTOPS_DIGIT0 && id < LISTOPS_DIGIT0 + 10) {
            if (open) args[open - 1]++;
            if (open + 1 > s.depth) s.depth = open + 1;
        } else {
            s.bad = 1;
        }
    }
    for (int i = len; i < row; i++) s.bad |= t[i] != LISTOPS_PAD;
    s.bad |= open != 0;
    return s;
}

/* A few thousand sequences: each label (the generator's value) equals the
 * evaluator's, and every limit holds; the limits are also reached (depth 10,
 * 10 arguments, lengths near both ends), so they are not met by accident. */
Test(sequences, listops_labels_and_limits, .timeout = 120)
{
    const int count = 3000;
    token_set s;
    tlb_error err = {0};
    cr_assert_eq(listops_generate(&s, DATA_SPLIT_TRAIN, LISTOPS_DEFAULT_SEED, count, &err), 0,
                 "%s", err.msg);
    cr_assert_eq(s.count, count);
    cr_expect_eq(s.max_len, LISTOPS_MAX_LEN);
    cr_expect_eq(s.vocab, LISTOPS_VOCAB);
    cr_expect_eq(s.pad_id, LISTOPS_PAD);
    int classes[10] = {0}, ops[4] = {0}, deepest = 0, most_args = 0, shortest = 1 << 30, longest = 0;
    int mismatches = 0;
    for (int i = 0; i < count; i++) {
        const uint8_t *t = s.tokens + (size_t)i * s.max_len;
        const int len = s.lengths[i];
        cr_expect(len >= 500 && len <= 2000, "sequence %d: length %d", i, len);
        listops_eval e;
        if (listops_evaluate(t, len, &e) != s.labels[i] && mismatches++ < 5)
            cr_expect(0, "sequence %d: generator says %d, evaluator %d", i, s.labels[i], e.value);
        const scan sc = scan_sequence(t, len, s.max_len);
        cr_expect(!sc.bad, "sequence %d: bad id, unbalanced or not padded", i);
        cr_expect(sc.depth <= 10, "sequence %d: %d levels", i, sc.depth);
        cr_expect(sc.min_args >= 2 && sc.max_args <= 10, "sequence %d: %d..%d arguments", i,
                  sc.min_args, sc.max_args);
        cr_expect(t[0] >= LISTOPS_OP_MAX && t[0] <= LISTOPS_OP_SM, "sequence %d starts with %d", i,
                  t[0]);
        classes[s.labels[i]]++;
        for (int k = 0; k < 4; k++) ops[k] += sc.ops[k];
        deepest = sc.depth > deepest ? sc.depth : deepest;
        most_args = sc.max_args > most_args ? sc.max_args : most_args;
        shortest = len < shortest ? len : shortest;
        longest = len > longest ? len : longest;
    }
    cr_expect_eq(mismatches, 0, "%d labels differ from the evaluator's value", mismatches);
    for (int c = 0; c < 10; c++) cr_expect_gt(classes[c], count / 50, "class %d: %d", c, classes[c]);
    for (int k = 0; k < 4; k++) cr_expect_gt(ops[k], 0, "operator %d never drawn", k);
    cr_expect_eq(deepest, 10);
    cr_expect_eq(most_args, 10);
    cr_expect(shortest < 550 && longest > 1900, "lengths %d..%d", shortest, longest);
    token_set_free(&s);
}

/* listops_check catches a wrong label and a damaged sequence, naming it. */
Test(sequences, listops_check_catches_bad_labels)
{
    token_set s;
    tlb_error err = {0};
    cr_assert_eq(listops_generate(&s, DATA_SPLIT_VAL, 5, 50, &err), 0, "%s", err.msg);
    cr_assert_eq(listops_check(&s, &err), 0, "%s", err.msg);
    s.labels[17] = (uint8_t)((s.labels[17] + 1) % 10);
    cr_expect_eq(listops_check(&s, &err), -1);
    cr_expect(strstr(err.msg, "sequence 17") && strstr(err.msg, "evaluator"), "%s", err.msg);
    s.labels[17] = (uint8_t)((s.labels[17] + 9) % 10);
    s.tokens[(size_t)30 * s.max_len + s.lengths[30] - 1] = LISTOPS_PAD; /* its last bracket */
    cr_expect_eq(listops_check(&s, &err), -1);
    cr_expect(strstr(err.msg, "sequence 30") && strstr(err.msg, "malformed"), "%s", err.msg);
    token_set_free(&s);
}

static int same_set(const token_set *a, const token_set *b)
{
    return a->count == b->count && a->max_len == b->max_len &&
           memcmp(a->tokens, b->tokens, (size_t)a->count * a->max_len) == 0 &&
           memcmp(a->lengths, b->lengths, (size_t)a->count * sizeof *a->lengths) == 0 &&
           memcmp(a->labels, b->labels, (size_t)a->count) == 0;
}

/* Same seed, same bytes, whatever the thread count; a prefix of a split is
 * the same sequences; another seed or split gives other sequences. */
Test(sequences, listops_deterministic)
{
    token_set a, b, prefix, other_seed, other_split;
    tlb_error err = {0};
    omp_set_num_threads(1);
    cr_assert_eq(listops_generate(&a, DATA_SPLIT_TRAIN, 42, 300, &err), 0, "%s", err.msg);
    omp_set_num_threads(3);
    cr_assert_eq(listops_generate(&b, DATA_SPLIT_TRAIN, 42, 300, &err), 0, "%s", err.msg);
    cr_assert_eq(listops_generate(&prefix, DATA_SPLIT_TRAIN, 42, 100, &err), 0, "%s", err.msg);
    cr_assert_eq(listops_generate(&other_seed, DATA_SPLIT_TRAIN, 43, 300, &err), 0, "%s", err.msg);
    cr_assert_eq(listops_generate(&other_split, DATA_SPLIT_TEST, 42, 300, &err), 0, "%s", err.msg);
    omp_set_num_threads(2);
    cr_expect(same_set(&a, &b), "1 and 3 threads generated different sequences");
    a.count = 100;
    cr_expect(same_set(&a, &prefix), "the first 100 of 300 differ from a set of 100");
    a.count = 300;
    int same_seed = 0, same_split = 0;
    for (int i = 0; i < 300; i++) {
        same_seed += a.lengths[i] == other_seed.lengths[i];
        same_split += a.lengths[i] == other_split.lengths[i];
    }
    cr_expect_lt(same_seed, 10, "seed 43 repeats %d lengths of seed 42", same_seed);
    cr_expect_lt(same_split, 10, "the test split repeats %d lengths of train", same_split);
    token_set_free(&a), token_set_free(&b), token_set_free(&prefix);
    token_set_free(&other_seed), token_set_free(&other_split);
}

Test(sequences, listops_split_sizes)
{
    cr_expect_eq(listops_split_count(DATA_SPLIT_TRAIN), 96000);
    cr_expect_eq(listops_split_count(DATA_SPLIT_VAL), 2000);
    cr_expect_eq(listops_split_count(DATA_SPLIT_TEST), 2000);
}

static void flip_byte(const char *path, long at)
{
    FILE *f = fopen(path, "r+b");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fseek(f, at, at < 0 ? SEEK_END : SEEK_SET), 0);
    const int c = fgetc(f);
    cr_assert_neq(c, EOF);
    cr_assert_eq(fseek(f, -1, SEEK_CUR), 0);
    fputc(c ^ 0x01, f);
    fclose(f);
}

/* The validation split through its cache: generated and written once, then
 * read back identical; a flipped byte anywhere (payload, header) is caught by
 * the XXH3 check, and listops_load regenerates the same bytes and says why;
 * a cache of another seed is refused as stale. */
Test(sequences, listops_cache_hash_check, .timeout = 120)
{
    char dir[64] = "/tmp/tlb-test-seq-XXXXXX";
    cr_assert_not_null(test_mkdtemp(dir));
    token_set first, again;
    listops_origin o;
    tlb_error err = {0};
    cr_assert_eq(listops_load(&first, dir, DATA_SPLIT_VAL, 9, &o, &err), 0, "%s", err.msg);
    cr_expect_eq(o.generated, 1);
    cr_expect_str_eq(o.cache_problem, "");
    cr_expect_eq(first.count, 2000);
    cr_assert_eq(listops_load(&again, dir, DATA_SPLIT_VAL, 9, &o, &err), 0, "%s", err.msg);
    cr_expect_eq(o.generated, 0, "the cache was not used: %s", o.cache_problem);
    cr_expect(same_set(&first, &again), "the cache read back differs");
    token_set_free(&again);

    char path[4200];
    cr_assert_eq(listops_cache_path(path, sizeof path, dir, DATA_SPLIT_VAL, 9, &err), 0);
    static const long where[] = {100000, 60, 20, -3}; /* tokens, labels, header (seed), hash */
    for (size_t k = 0; k < sizeof where / sizeof where[0]; k++) {
        flip_byte(path, where[k]);
        cr_expect_eq(listops_read_cache(&again, path, DATA_SPLIT_VAL, 9, &err), -1,
                     "byte %ld flipped: accepted", where[k]);
        cr_expect(strstr(err.msg, "XXH3-64") && strstr(err.msg, path), "%s", err.msg);
        cr_assert_eq(listops_load(&again, dir, DATA_SPLIT_VAL, 9, &o, &err), 0, "%s", err.msg);
        cr_expect_eq(o.generated, 1, "byte %ld flipped: the cache was used", where[k]);
        cr_expect(strstr(o.cache_problem, "XXH3-64") != NULL, "%s", o.cache_problem);
        cr_expect(same_set(&first, &again), "regenerated data differs");
        token_set_free(&again);
        cr_expect_eq(listops_read_cache(&again, path, DATA_SPLIT_VAL, 9, &err), 0,
                     "not rewritten: %s", err.msg);
        token_set_free(&again);
    }

    /* A valid file of seed 9 under seed 10's name: its header says seed 9. */
    char other[4200];
    cr_assert_eq(listops_cache_path(other, sizeof other, dir, DATA_SPLIT_VAL, 10, &err), 0);
    cr_assert_eq(link(path, other), 0);
    cr_expect_eq(listops_read_cache(&again, other, DATA_SPLIT_VAL, 10, &err), -1);
    cr_expect(strstr(err.msg, "stale") != NULL, "%s", err.msg);
    token_set_free(&first);
}

/* ---- LRA Image --------------------------------------------------------------- */

/* Three synthetic records in the CIFAR-10 binary format. Record 0: pixel
 * (0,0) pure red, (0,1) pure green, (0,2) pure blue, (1,0) = (10, 20, 30),
 * (31,31) white, (5,7) = (0, 0, 250): 28.5 exactly, a tie, rounds up; the
 * rest black. Record 1: every pixel (100, 50, 200). Record 2: (1, 1, 0). */
Test(sequences, lra_image_synthetic_records)
{
    char dir[64] = "/tmp/tlb-test-seq-XXXXXX";
    cr_assert_not_null(test_mkdtemp(dir));
    uint8_t rec[3][CIFAR10_RECORD];
    memset(rec, 0, sizeof rec);
    uint8_t *px = rec[0] + 1;
    const int R = 0, G = 1024, B = 2048;
    rec[0][0] = 3, rec[1][0] = 9, rec[2][0] = 0;
    px[R + 0] = 255;
    px[G + 1] = 255;
    px[B + 2] = 255;
    px[R + 32] = 10, px[G + 32] = 20, px[B + 32] = 30;
    px[R + 1023] = px[G + 1023] = px[B + 1023] = 255;
    px[B + 5 * 32 + 7] = 250;
    for (int i = 0; i < 1024; i++) {
        rec[1][1 + R + i] = 100, rec[1][1 + G + i] = 50, rec[1][1 + B + i] = 200;
        rec[2][1 + R + i] = 1, rec[2][1 + G + i] = 1;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/three.bin", dir);
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(rec, 1, sizeof rec, f), sizeof rec);
    fclose(f);

    cifar10_set set;
    tlb_error err = {0};
    cr_assert_eq(cifar10_read_records(&set, path, &err), 0, "%s", err.msg);
    const cifar10_view all = cifar10_view_all(&set);
    token_set t;
    cr_assert_eq(lra_image_from_view(&t, &all, &err), 0, "%s", err.msg);
    cr_assert_eq(t.count, 3);
    cr_expect_eq(t.max_len, 1024);
    cr_expect_eq(t.vocab, 256);
    cr_expect_eq(t.pad_id, -1);
    const uint8_t *t0 = t.tokens, *t1 = t.tokens + 1024, *t2 = t.tokens + 2048;
    cr_expect_eq(t0[0], 76);    /* 0.299 * 255 = 76.245 */
    cr_expect_eq(t0[1], 150);   /* 0.587 * 255 = 149.685 */
    cr_expect_eq(t0[2], 29);    /* 0.114 * 255 = 29.07 */
    cr_expect_eq(t0[32], 18);   /* 2.99 + 11.74 + 3.42 = 18.15: row 1, column 0 */
    cr_expect_eq(t0[1023], 255);
    cr_expect_eq(t0[5 * 32 + 7], 29); /* 28.5 rounds up */
    cr_expect_eq(t0[7 * 32 + 5], 0);  /* the transposed position is black */
    cr_expect_eq(t0[3], 0);
    cr_expect_eq(t1[0], 82);    /* 29.9 + 29.35 + 22.8 = 82.05 */
    cr_expect_eq(t1[1000], 82);
    cr_expect_eq(t2[517], 1);   /* 0.886 */
    cr_expect_eq(t.labels[0], 3);
    cr_expect_eq(t.labels[1], 9);
    cr_expect_eq(t.labels[2], 0);
    for (int i = 0; i < 3; i++) cr_expect_eq(t.lengths[i], 1024);
    token_set_free(&t);

    /* too few training records for the 45,000 / 5,000 split */
    cifar10_view v;
    cr_expect_eq(lra_image_split(&v, &set, &set, DATA_SPLIT_VAL, &err), -1);
    cr_expect(strstr(err.msg, "45000") != NULL, "%s", err.msg);
    cr_expect_eq(lra_image_split(&v, &set, &set, DATA_SPLIT_TEST, &err), 0, "%s", err.msg);
    cr_expect_eq(v.count, 3);
    cifar10_free(&set);
}

/* The real files, when `tlb data fetch` has run here: split sizes, labels
 * and tokens of the records each split should hold. */
Test(sequences, lra_image_real_data, .timeout = 120)
{
    char buf[4096];
    const char *dir = cifar10_default_dir(buf, sizeof buf);
    if (!dir || cifar10_verify_all(dir, 0, NULL) != 0)
        cr_skip_test("CIFAR-10 cache absent (run `tlb data fetch`); synthetic records cover the rest");
    cifar10_set train, test;
    tlb_error err = {0};
    cr_assert_eq(cifar10_load(&train, &test, dir, &err), 0, "%s", err.msg);
    token_set val;
    cr_assert_eq(lra_image_load(&val, dir, DATA_SPLIT_VAL, &err), 0, "%s", err.msg);
    cr_expect_eq(val.count, 5000);
    cr_expect_eq(memcmp(val.labels, train.labels + 45000, 5000), 0, "val is not records 45000..");
    static const int want[3] = {45000, 5000, 10000};
    for (int sp = 0; sp < 3; sp++) {
        cifar10_view v;
        cr_assert_eq(lra_image_split(&v, &train, &test, (data_split)sp, &err), 0, "%s", err.msg);
        cr_expect_eq(v.count, want[sp], "%s: %d records", data_split_name((data_split)sp), v.count);
        if (sp == DATA_SPLIT_TEST) cr_expect(v.pixels == test.pixels);
        else cr_expect(v.pixels == train.pixels + (size_t)(sp ? 45000 : 0) * CIFAR10_PIXELS);
    }
    /* Token j of val image i from its record's R, G, B in double. */
    int lo = 255, hi = 0;
    for (int i = 0; i < 5000; i += 499)
        for (int j = 0; j < 1024; j += 37) {
            const uint8_t *p = train.pixels + (size_t)(45000 + i) * CIFAR10_PIXELS;
            const double y = 0.299 * p[j] + 0.587 * p[1024 + j] + 0.114 * p[2048 + j];
            const int tok = val.tokens[(size_t)i * 1024 + j];
            cr_expect(fabs(tok - y) <= 0.5 + 1e-9, "val image %d token %d: %d for %.3f", i, j, tok, y);
            lo = tok < lo ? tok : lo;
            hi = tok > hi ? tok : hi;
        }
    cr_expect(lo < 20 && hi > 235, "tokens span only %d..%d", lo, hi);
    token_set_free(&val);
    cifar10_free(&train);
    cifar10_free(&test);
}
