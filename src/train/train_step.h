/* One training step, the only copy of it: every micro-batch forward and
 * backward (gradients accumulated), the gradient reduction hook, the NaN/Inf
 * guard, optional clipping, the AdamW update. train_run, bench/step.c and
 * the allocation and mixed-precision tests all call it. No allocation. */
#ifndef TLB_TRAIN_STEP_H
#define TLB_TRAIN_STEP_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "train/adamw.h"
#include "util/error.h"

typedef struct {
    double loss;          /* summed over the batch's samples (divide by batch size for the mean) */
    long correct;         /* samples whose argmax logit is the label */
    double grad_norm;     /* global L2 norm before clipping (computed only when grad_clip > 0) */
    const char *nonfinite; /* on a guard failure: "loss" or the first gradient tensor's name */
} train_step_result;

/* Called once per step on the flat gradient buffer (model->grads, n floats,
 * each already scaled by 1/global_batch), after the last micro-batch's
 * backward and before the guard and clipping: where a data-parallel run
 * sums the gradients across processes (MPI_Allreduce). r holds this
 * process's loss and correct count so far; the hook sums those too, so the
 * guard and the caller see the whole batch's on every process. Returns 0,
 * or -1 with err set (the step then stops before the update). */
typedef int (*train_grad_reduce_fn)(void *ctx, float *grads, size_t n, train_step_result *r, tlb_error *err);

typedef struct {
    tlb_model *model;          /* planned for micro_batch samples */
    float *adam_m, *adam_v;    /* AdamW moments, model_num_params floats each */
    adamw_hparams hparams;     /* lr is replaced by each step's lr */
    int micro_batch;
    float grad_clip;           /* > 0: scale the gradients to this global L2 norm when above it */
    train_grad_reduce_fn reduce; /* NULL: a single process, nothing to reduce */
    void *reduce_ctx;
    long nan_at_step;          /* test hook (TLB_TEST_NAN_AT_STEP): poison the gradients at this t */
    /* Data parallel: the batch given to train_step is rows [first_row,
     * first_row + batch_size) of a global batch of global_batch samples;
     * dropout is keyed by the global row and the gradient scaled by
     * 1/global_batch. 0 and 0: the batch is the whole batch. */
    int first_row, global_batch;
} train_stepper;

/* Step t (1-based, AdamW's bias correction) over the batch x[batch_size
 * images], y[batch_size], against targets (model/targets.h: mixup/cutmix
 * partners and weights indexed like y, label smoothing; NULL = the one-hot
 * of y), in micro-batches of s->micro_batch, dropout keyed
 * by dropout_key (offset by each micro-batch's first sample), at learning
 * rate lr. Returns 0 after the update; -1 with err set and the parameters
 * untouched when the reduction fails or the loss or a gradient is not finite
 * (out->nonfinite names which; err reads "non-finite gradient of TENSOR"). */
int train_step(const train_stepper *s, const void *x, const int *y, const model_targets *targets,
               int batch_size, long t, uint64_t dropout_key, float lr, train_step_result *out,
               tlb_error *err);

/* The same over the rows of any input stage (x: batch_size samples of
 * model_input_bytes each), with each sequence's length (lengths NULL: every
 * sample whole, train_step bit for bit). */
int train_step_padded(const train_stepper *s, const void *x, const int *lengths, const int *y,
                      const model_targets *targets, int batch_size, long t, uint64_t dropout_key, float lr,
                      train_step_result *out, tlb_error *err);

#endif
