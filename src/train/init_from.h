/* Fine-tuning: a new run whose parameters start from another run's
 * checkpoint (config key init_from, `tlb train CONFIG --init-from RUN`).
 * The value is resolved to "FILE@<data_xxh3 of FILE>" before the run is
 * hashed, so the run's identity names the exact weights it started from,
 * and a later change to that checkpoint is refused rather than used. The
 * AdamW moments and the position start at zero, as in a new run. */
#ifndef TLB_INIT_FROM_H
#define TLB_INIT_FROM_H

#include "model/model.h"
#include "train/run_config.h"

/* c->init_from: a run folder (its checkpoint.safetensors) or a checkpoint
 * file becomes "FILE@HASH"; a resolved value or "" is left as it is.
 * Errors read "init_from: PATH: problem". */
int init_from_resolve(run_config *c, tlb_error *err);

/* The parameters of a resolved init_from into m (same architecture). */
int init_from_load(const char *init_from, tlb_model *m, tlb_error *err);

#endif
