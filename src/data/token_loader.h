/* Batches of a token-sequence split (token_set.h: ListOps, LRA Image) as the
 * model's token input stage reads them: int32 ids [B, row_len], each row's
 * length (the padding after it is the set's pad id), labels. Batch k of
 * epoch e is a pure function of (set, config, e, k), like the image
 * loader's: the epoch order is loader_permutation's. No augmentation, so no
 * worker threads: widening a batch of uint8 tokens is a copy. */
#ifndef TLB_DATA_TOKEN_LOADER_H
#define TLB_DATA_TOKEN_LOADER_H

#include <stdint.h>

#include "data/loader.h" /* loader_shuffle, loader_permutation */
#include "data/token_set.h"
#include "util/error.h"

typedef struct {
    int batch_size;
    loader_shuffle shuffle;
    int drop_last; /* 1: skip the last partial batch (training) */
    int limit;     /* > 0: use only the first `limit` sequences */
    uint64_t seed;
    int row_len;   /* ids per row, >= the set's max_len (room to pad to whole chunks); 0: max_len */
} token_loader_config;

typedef struct {
    int32_t *ids;     /* [B, row_len]: the sequence, then the pad id (0 where the set has none) */
    int32_t *lengths; /* [B]: tokens before the padding; 0 past `size` */
    int *y;           /* [B] labels; -1 past `size` */
    int *idx;         /* [B] index in the set; -1 past `size` */
    int size;         /* sequences in this batch: B, or fewer for a last partial batch */
    int index;        /* batch number within the epoch */
} token_batch;

typedef struct token_loader token_loader;

/* Allocates everything once; the set must outlive the loader. */
int token_loader_create(token_loader **out, const token_set *set, const token_loader_config *cfg, tlb_error *err);
int token_loader_num_batches(const token_loader *l);
int token_loader_num_items(const token_loader *l);
int token_loader_row_len(const token_loader *l);
/* Begins `epoch` at batch first_batch (0 for a fresh epoch). */
void token_loader_start_epoch_at(token_loader *l, int epoch, int first_batch);
/* The next batch of the epoch, or NULL after the last one; valid until the next call. */
const token_batch *token_loader_next(token_loader *l);
void token_loader_destroy(token_loader *l);

#endif
