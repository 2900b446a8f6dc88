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

/* Writes PATH: the first (up to) 64 images of batch 0 of epoch 0 of the
 * training loader l, as the model is fed them, in an 8 x 8 grid captioned
 * with the label (mixed: "own lam partner"), named by class_names (the
 * data's, cifar10_classes_load). Restarts l's epoch; the caller starts the
 * epoch it wants afterwards. */
int train_plot_first_batch(const char *path, loader *l, const run_config *c, const char *const *class_names,
                           tlb_error *err);

#endif
