/* A run's token dataset (run_config_dataset: lra_image, listops): its splits
 * in memory and their batches. Shared by the trainer and `tlb eval`. */
#ifndef TLB_TRAIN_SEQUENCES_H
#define TLB_TRAIN_SEQUENCES_H

#include "data/cifar10.h"
#include "data/source.h"
#include "data/token_set.h"
#include "train/run_config.h"

/* Loads the three splits (train, val, test) into sets[]: LRA Image from the CIFAR-10 files in data_dir (verified; on a
 * missing or damaged file *missing is set, as the image path does, and
 * train_set/test_set hold the records while sets are made), ListOps
 * generated once into data_dir/listops and read back from its cache. */
int sequences_load(token_set sets[DATA_SPLIT_COUNT], cifar10_set *train_set, cifar10_set *test_set,
                   const run_config *c, const char *data_dir, int *missing, tlb_error *err);

/* A split's batches for the model m (rows of m->seq_len ids): training
 * (batch_size, shuffled per epoch as `shuffle` says, last partial batch
 * dropped, train_limit) or evaluation (EVALUATE_BATCH in split order,
 * eval_limit). */
int sequence_source(data_source *out, const token_set *set, const run_config *c, const tlb_model_config *m,
                    int training, tlb_error *err);

#endif
