/* The run's best checkpoint, RUN_DIR/checkpoint-best.safetensors: the
 * state after the epoch with the highest validation accuracy so far,
 * written (atomically, like the last one) whenever an epoch beats it.
 * `tlb eval` and `tlb predict` take it with --checkpoint best. */
#ifndef TLB_BEST_CHECKPOINT_H
#define TLB_BEST_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "train/checkpoint.h"

#define BEST_CHECKPOINT_NAME "checkpoint-best.safetensors"

/* RUN_DIR/checkpoint-best.safetensors; snprintf semantics. */
int best_checkpoint_path(char *buf, size_t n, const char *run_dir);

/* Makes the checkpoint just written at `ckpt` the best one: a hard link
 * (the next save replaces ckpt by a rename, so the link keeps this one),
 * renamed into place; a copy where the file system has no hard links. */
int best_checkpoint_update(const char *run_dir, const char *ckpt, tlb_error *err);

/* A resume that extends the run rewrites the best checkpoint for the new
 * config hash too (eval checks a checkpoint's hash against config.cfg).
 * It is read with either hash (a crash may have come between the two
 * rewrites); m's parameters and the moments are kept. Nothing to do
 * without a best checkpoint. */
int best_checkpoint_rehash(const char *run_dir, tlb_model *m, float *adam_m, float *adam_v, uint64_t old_hash,
                           uint64_t new_hash, const char *config_text, const run_numerics *numerics, tlb_error *err);

#endif
