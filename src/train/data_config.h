/* The training loader's configuration of a run: one place, shared by the
 * trainer and `tlb data show`, so the picture shows what training is fed. */
#ifndef TLB_TRAIN_DATA_CONFIG_H
#define TLB_TRAIN_DATA_CONFIG_H

#include "data/loader.h"
#include "train/run_config.h"

/* The augmentation keys of c (all zero at their defaults). */
augment_options train_augment_options(const run_config *c);

/* Batches of c->batch_size, shuffled as c->shuffle says, drop_last, the
 * augmentation of train_augment_options, one worker thread, depth 3. */
loader_config train_loader_config(const run_config *c);

#endif
