/* Batches of one split for training or evaluation, prepared by a small pool
 * of worker threads into a ring of preallocated buffers while the step runs.
 * Batch k of epoch e is a pure function of (split, config, e, k): which
 * images (the epoch order) and how they are augmented (augment_draw) never
 * depend on thread timing or the number of workers. Training batches get the
 * augmentations of cfg.aug: per image on the workers (augment_train_with),
 * then mixup/cutmix across the batch (mix.h, keyed on (seed, epoch, k)). */
#ifndef TLB_DATA_LOADER_H
#define TLB_DATA_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "data/augment.h"
#include "data/cifar10.h"
#include "util/error.h"

typedef enum {
    LOADER_SHUFFLE_NONE = 0,  /* split order (evaluation) */
    LOADER_SHUFFLE_EPOCH = 1, /* a new permutation from (seed, epoch) every epoch */
    LOADER_SHUFFLE_ONCE = 2,  /* one permutation from seed, reused every epoch: with
                                 drop_last the same trailing images are dropped each
                                 epoch, as in the Keras example */
} loader_shuffle;

typedef struct {
    int batch_size;         /* B */
    int image_size;         /* S: batches are [B, S, S, 3] */
    int train;              /* 1: augment_train (resize S+4, crop, flip); 0: augment_eval */
    loader_shuffle shuffle;
    int drop_last;          /* 1: skip the last partial batch (training) */
    int limit;              /* > 0: use only the first `limit` images of the split */
    int num_threads;        /* worker threads; 0 = prepare each batch in loader_next */
    int depth;              /* ring slots (batches prepared ahead + the one in use); >= 2 */
    uint64_t seed;          /* run seed: shuffles and augmentation */
    augment_options aug;    /* training only; all zero = the seed's crop and flip */
    /* Data parallel: prepare only the images of share `share_index` of
     * `share_count` (0 or 1: every image), rows [size*i/n, size*(i+1)/n) of
     * each batch of `size`, the rows that process takes; with mixing also
     * each row's partner, unmixed, to mix it with. Labels, indices and
     * targets are filled for every row, and a shared row's pixels are the
     * ones the whole batch would have. */
    int share_index, share_count;
} loader_config;

typedef struct {
    float *x;  /* [B, S, S, 3]; rows past `size` are zeros */
    int *y;    /* [B] labels; -1 past `size` */
    int *idx;  /* [B] index of each image in the split; -1 past `size` */
    int *y2;   /* [B] mixup/cutmix partner's label (-1 past `size`); NULL when mixing is off */
    float *lam;/* [B] weight of y in the target lam onehot(y) + (1 - lam) onehot(y2); NULL likewise */
    int size;  /* images in this batch: B, or fewer for a last partial batch */
    int index; /* batch number within the epoch */
    int first, count; /* the rows of x prepared: [first, first + count); all `size` but with a share.
                         Other rows below `size` are unspecified */
} loader_batch;

typedef struct loader loader;

/* Allocates everything (ring, permutation, threads) once. The split must
 * outlive the loader. */
int loader_create(loader **out, const cifar10_view *split, const loader_config *cfg, tlb_error *err);

/* Batches per epoch: n / B with drop_last, else ceil(n / B). */
int loader_num_batches(const loader *l);

/* Images used per epoch (the split size after `limit`). */
int loader_num_images(const loader *l);

/* Floats per image of a batch: S * S * 3. */
size_t loader_sample_floats(const loader *l);

/* Begins `epoch` at batch first_batch (0 for a fresh epoch; k to resume
 * after k batches). Abandons whatever the previous epoch had in flight. */
void loader_start_epoch_at(loader *l, int epoch, int first_batch);
static inline void loader_start_epoch(loader *l, int epoch) { loader_start_epoch_at(l, epoch, 0); }

/* The next batch of the epoch, or NULL after the last one. The batch stays
 * valid until the next loader_next / loader_start_epoch / loader_destroy. */
const loader_batch *loader_next(loader *l);

void loader_destroy(loader *l);

/* The epoch's order of split indices into perm[n]: identity, or Fisher-Yates
 * with the counter RNG keyed on (seed, epoch) / seed alone. */
void loader_permutation(int *perm, int n, loader_shuffle mode, uint64_t seed, int epoch);

#endif
