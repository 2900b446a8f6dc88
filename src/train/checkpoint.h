/* Checkpoints: one safetensors file with the parameters (by their model
 * names), the AdamW moments ("adamw.m.<name>", "adamw.v.<name>") and the
 * training position. The metadata records the config hash, the resolved
 * config text with its XXH3-64 ("config_xxh3"); the writer adds an XXH3-64
 * of the data section ("data_xxh3"). Written atomically
 * (temporary file, fsync, rename, fsync of the folder), so a crash at any
 * moment leaves the previous checkpoint intact. */
#ifndef TLB_CHECKPOINT_H
#define TLB_CHECKPOINT_H

#include <stdint.h>
#include <stdio.h>

#include "model/model.h"
#include "train/numerics.h"

/* What a resume needs to report the whole run, not its last part: the
 * current epoch's sums so far, and the run's totals. Kept in the metadata
 * ("run_tally"), not the data section: wall times differ between an
 * interrupted run and an uninterrupted one whose data is bit-identical. */
typedef struct {
    double loss_sum;        /* current epoch: summed batch losses so far */
    long correct, seen;     /* current epoch: correct predictions, images */
    double epoch_seconds;   /* current epoch: seconds so far */
    double wall_seconds;    /* the run so far, across resumes */
    double compute_seconds; /* training steps alone, across resumes */
    long images;            /* training images stepped on, across resumes */
    int first_epochs;       /* the epochs of the config that named the folder, when a resume extended it; else 0 */
} train_tally;

typedef struct {
    long step;          /* optimizer steps done (AdamW's t) */
    int epoch;          /* current epoch (0-based) */
    int batch_in_epoch; /* batches of `epoch` already done */
    train_tally tally;  /* zeros from a checkpoint written before it was recorded */
} train_position;

/* numerics (may be NULL) goes into the metadata as "backends" and
 * "precision" (train/numerics.h). */
int checkpoint_save(const char *path, const tlb_model *m, const float *adam_m, const float *adam_v,
                    const train_position *pos, uint64_t config_hash, const char *config_text,
                    const run_numerics *numerics, tlb_error *err);

/* Loads into an existing model of the same config. Refuses (with a message
 * naming the file and what is wrong) a truncated or corrupted file, a data
 * hash or config text hash mismatch, a config hash other than
 * `expected_hash`, or a missing/misshapen tensor. Files of format 1 (written
 * before config_xxh3 existed) load without the config text check. */
/* recorded (may be NULL) gets the file's "backends" and "precision", empty
 * strings for a file written before they were recorded. */
int checkpoint_load(const char *path, tlb_model *m, float *adam_m, float *adam_v,
                    train_position *pos, uint64_t expected_hash, run_numerics *recorded, tlb_error *err);

/* Fine-tuning: the parameters alone of another run's checkpoint (no
 * moments, no position), whatever its config, into m: every parameter of
 * m must be there with m's shape. The file's data hash is checked, and
 * must equal `data_xxh3` (16 hex digits) unless that is NULL. */
int checkpoint_load_params(const char *path, tlb_model *m, const char *data_xxh3, tlb_error *err);

/* The "backends" and "precision" a checkpoint recorded (empty strings when
 * it was written before they were), from a checked file, without loading it:
 * what a resume or an evaluation must compute with before its model is built. */
int checkpoint_numerics(const char *path, run_numerics *recorded, tlb_error *err);

/* The recorded data_xxh3 of a checkpoint (16 hex digits), checked against
 * its data section. */
int checkpoint_data_hash(const char *path, char out[17], tlb_error *err);

/* Removes the temporary files PATH.tmp.PID that a save killed before its
 * rename leaves behind, when PID is this process (call it before the first
 * save) or no longer exists; a file of a live other process stays. Each
 * removal gets a line on `log` (NULL: silent). Returns how many were removed. */
int checkpoint_remove_stale_tmp(const char *path, FILE *log);

#endif
