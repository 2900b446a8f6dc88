/* The batches of one split, whatever the dataset: CIFAR-10 images through
 * the image loader (loader.h) or token sequences through the token loader
 * (token_loader.h). The trainer and the evaluation loop read only a
 * data_batch: rows of the model's input stage (float pixels [S, S, 3] or
 * int32 ids [T]), labels, and for sequences each row's length. */
#ifndef TLB_DATA_SOURCE_H
#define TLB_DATA_SOURCE_H

#include <stddef.h>
#include <stdint.h>

#include "data/loader.h"
#include "data/token_loader.h"

typedef struct {
    const void *x;          /* [B] rows of sample_bytes bytes */
    size_t sample_bytes;
    const int32_t *lengths; /* [B] tokens before the padding; NULL for images */
    const int *y, *idx;     /* [B]; -1 past `size` */
    const int *y2;          /* mixup/cutmix partner labels, or NULL */
    const float *lam;       /* their weights, or NULL */
    int size, index;        /* rows in this batch; its number in the epoch */
    int first, count;       /* the rows prepared (a data-parallel share); all `size` otherwise */
} data_batch;

/* One of the two loaders, owned. */
typedef struct {
    loader *images;
    token_loader *tokens;
    data_batch batch;
} data_source;

/* Takes ownership of an image loader (exactly one of the two non-NULL). */
data_source data_source_of_images(loader *l);
data_source data_source_of_tokens(token_loader *l);

int data_source_num_batches(const data_source *s);
int data_source_num_items(const data_source *s);
void data_source_start_epoch_at(data_source *s, int epoch, int first_batch);
static inline void data_source_start_epoch(data_source *s, int epoch) { data_source_start_epoch_at(s, epoch, 0); }
/* The next batch of the epoch, or NULL after the last; valid until the next call. */
const data_batch *data_source_next(data_source *s);
void data_source_destroy(data_source *s);

#endif
