/* A split of a token-sequence dataset in memory (ListOps, LRA Image): the
 * sequences padded to one row length, their lengths and labels. Tokens are
 * uint8 (every vocabulary here fits: 16 and 256 ids); the loader widens a
 * batch to the int32 ids the token_embed op takes. */
#ifndef TLB_DATA_TOKEN_SET_H
#define TLB_DATA_TOKEN_SET_H

#include <stdint.h>

#include "util/error.h"

typedef enum { DATA_SPLIT_TRAIN, DATA_SPLIT_VAL, DATA_SPLIT_TEST, DATA_SPLIT_COUNT } data_split;

/* "train", "val", "test" ("?" out of range). */
const char *data_split_name(data_split s);

typedef struct {
    int count;        /* sequences */
    int max_len;      /* row stride of tokens */
    int vocab;        /* ids are in [0, vocab) */
    int pad_id;       /* fills each row past its length; -1: every row is full */
    int num_classes;
    uint8_t *tokens;  /* [count, max_len] */
    int32_t *lengths; /* [count], in [1, max_len] */
    uint8_t *labels;  /* [count], in [0, num_classes) */
} token_set;

/* Allocates the three arrays, tokens filled with pad_id (0 when -1), and
 * sets every field; on failure s is left empty. */
int token_set_alloc(token_set *s, int count, int max_len, int vocab, int pad_id, int num_classes,
                    tlb_error *err);
void token_set_free(token_set *s);

#endif
