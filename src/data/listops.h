/* ListOps (Nangia & Bowman 2018) as the Long Range Arena generates it
 * (lra_benchmarks/data/listops.py): nested prefix expressions of MAX, MIN,
 * MED and SM over single digits, the label their value. Our own generator,
 * deterministic from a seed, with each split cached in the data folder and
 * checked by XXH3-64; every label is re-derived by listops_evaluate
 * (listops_eval.c), a stack parser that shares no code with the generator.
 *
 * The choices the definition leaves open (README material):
 * - Tree process (the LRA's generate_tree with max_depth 10, max_args 10):
 *   a node at depth d (root d = 1) is an operator with probability 1/4 when
 *   d < 10, else a digit; depth 10 is always a digit, so at most 9 brackets
 *   nest and a tree has at most 10 levels. An operator is uniform over the
 *   four, takes 2..10 arguments (uniform), each a node of depth d + 1; a
 *   digit is uniform over 0..9. The root is always an operator (a lone digit
 *   is 1 token, always rejected by the length rule, so this changes nothing
 *   but time).
 * - Length = tokens: one per opener, digit and closing bracket (no
 *   parentheses, unlike the LRA's text files). A tree is kept when
 *   500 <= length <= 2000 (inclusive; the LRA's script keeps 501..1999), else
 *   drawn again from the same stream; generation stops as soon as a tree
 *   passes 2000 tokens. So the length distribution is the process's own,
 *   conditioned on that range (no target distribution, no resampling).
 * - MED of an even count: the floor of the mean of the two middle values
 *   (the LRA's int(np.median(values))); SM: the sum modulo 10.
 * - Sequence i of a split is drawn from its own stream, key (seed, split,
 *   i): splits are independent, and a prefix of a split (listops_generate
 *   with a smaller count) is the same sequences. No deduplication (the LRA
 *   keeps a set): two identical trees of >= 500 tokens are not expected. */
#ifndef TLB_DATA_LISTOPS_H
#define TLB_DATA_LISTOPS_H

#include <stddef.h>
#include <stdint.h>

#include "data/token_set.h"
#include "util/error.h"

/* Token ids. 0 is padding, so a zeroed buffer is all padding. */
#define LISTOPS_PAD 0
#define LISTOPS_DIGIT0 1 /* digit v (0..9) is LISTOPS_DIGIT0 + v: ids 1..10 */
#define LISTOPS_OP_MAX 11
#define LISTOPS_OP_MIN 12
#define LISTOPS_OP_MED 13
#define LISTOPS_OP_SM 14
#define LISTOPS_CLOSE 15
#define LISTOPS_VOCAB 16
#define LISTOPS_NUM_CLASSES 10

#define LISTOPS_MIN_LEN 500
#define LISTOPS_MAX_LEN 2000   /* also the row length of a loaded split */
#define LISTOPS_MAX_DEPTH 10   /* tree levels, the root 1 and the digits included */
#define LISTOPS_MAX_ARGS 10
#define LISTOPS_TRAIN_COUNT 96000
#define LISTOPS_VAL_COUNT 2000
#define LISTOPS_TEST_COUNT 2000
#define LISTOPS_DEFAULT_SEED 20220601u

/* Sequences in a split: 96,000, 2,000, 2,000. */
int listops_split_count(data_split split);

/* One sequence, drawn from stream `key` until a tree fits the length rule:
 * its tokens into tokens[0 .. LISTOPS_MAX_LEN) (padding after *len, its
 * length). Returns
 * the value the generator computed on its tree (0..9). */
int listops_generate_one(uint8_t *tokens, int *len, uint64_t key);

/* The key of sequence i of a split (what listops_generate_one is given). */
uint64_t listops_sequence_key(uint64_t seed, data_split split, int i);

/* The first `count` sequences of a split, generated (threads: OpenMP) and
 * each label checked against listops_evaluate; a disagreement is an error
 * naming the sequence. out: max_len LISTOPS_MAX_LEN, pad LISTOPS_PAD. */
int listops_generate(token_set *out, data_split split, uint64_t seed, int count, tlb_error *err);

/* Every sequence of a set evaluated again: well formed, within the limits,
 * ids in range, padding after the length, its label equal to the value. */
int listops_check(const token_set *s, tlb_error *err);

/* The cache file of a split: DIR/listops-SPLIT-SEED.bin (seed in hex). */
int listops_cache_path(char *buf, size_t n, const char *dir, data_split split, uint64_t seed,
                       tlb_error *err);

/* Writes a whole split to its cache file (atomically; creates dir). Layout,
 * little-endian: "TLBLSTOP", u32 format version, u32 split, u64 seed, u32
 * count, u32 min_len, u32 max_len, u32 max_depth, u32 max_args, u64 total
 * tokens; labels u8[count]; lengths u16[count]; the tokens back to back;
 * then the XXH3-64 of every byte before it. */
int listops_write_cache(const token_set *s, const char *dir, data_split split, uint64_t seed,
                        tlb_error *err);

/* Reads a cache file, refusing (with the reason) a wrong size, magic,
 * version, split, seed, count or generator limits, or an XXH3 mismatch. */
int listops_read_cache(token_set *out, const char *path, data_split split, uint64_t seed,
                       tlb_error *err);

typedef struct {
    int generated;          /* 1: generated this call (and the cache written) */
    char cache_problem[512];/* why an existing cache file was refused; "" if none */
} listops_origin;

/* The whole split: from its cache in dir when that reads and checks,
 * otherwise generated (a missing, damaged or stale cache: origin says which
 * and why) and the cache (re)written. origin may be NULL. */
int listops_load(token_set *out, const char *dir, data_split split, uint64_t seed,
                 listops_origin *origin, tlb_error *err);

#endif
