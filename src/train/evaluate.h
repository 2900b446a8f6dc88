/* Evaluating a model over a split: the validation and test views a run
 * uses, and the loop that runs the model over them in micro-batches,
 * without dropout, into eval_metrics. The trainer's per-epoch validation
 * and `tlb eval` share both, so they measure the same images the same way. */
#ifndef TLB_EVALUATE_H
#define TLB_EVALUATE_H

#include "data/cifar10.h"
#include "data/loader.h"
#include "data/source.h"
#include "model/infer.h"
#include "model/model.h"
#include "train/eval_metrics.h"
#include "train/run_config.h"

typedef enum { EVAL_SPLIT_VAL = 0, EVAL_SPLIT_TEST = 1 } eval_split;

/* The run's view of a split: validation = the training file's records past
 * train_slice, test = the test batch; both cut to eval_limit when set. */
int evaluate_view(cifar10_view *out, const run_config *c, const cifar10_set *train_set,
                  const cifar10_set *test_set, eval_split split, tlb_error *err);

/* Images per evaluation batch: small enough to keep the loader's buffers small. */
#define EVALUATE_BATCH 500

/* The evaluation loader's settings: EVALUATE_BATCH images, resize only, split order. */
loader_config evaluate_loader_config(const run_config *c);

/* Runs the inference plan over every batch of l into e (initialised for the
 * model's classes); with div (and a plan with INFER_STATE), also the final
 * slow state's diversity averaged over the images (NaN if its Ns x Ns work
 * buffer cannot be had); after each batch calls
 * progress(arg, images done, images in all) when set. In a data-parallel
 * run only this process's rows of each batch (the caller sums e and div). */
void evaluate_run(model_inference *inf, data_source *l, eval_metrics *e, state_diversity *div,
                  void (*progress)(void *, long, long), void *arg);

#endif
