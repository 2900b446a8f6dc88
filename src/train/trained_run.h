/* A finished (or interrupted) run folder opened for inference: its
 * config.cfg, the parameters of its checkpoint (or of another checkpoint of
 * the same config), the backend and precision the run asked for, and the
 * dataset's class names. Used by `tlb eval` and `tlb predict`. */
#ifndef TLB_TRAINED_RUN_H
#define TLB_TRAINED_RUN_H

#include "data/cifar10_classes.h"
#include "model/infer.h"
#include "model/model.h"
#include "train/checkpoint.h"
#include "train/run_config.h"

typedef struct {
    run_config config;
    tlb_model model;
    model_inference infer; /* the forward-only plan, for up to `capacity` samples a run */
    char checkpoint[1300];
    char data_dir[1024];
    train_position position; /* where the checkpoint's training stopped */
    const char *precision;   /* "bf16 dense" or "fp32", as training would run here */
    cifar10_classes classes;
} trained_run;

/* Opens run_dir (checkpoint NULL: run_dir/checkpoint.safetensors; "best":
 * run_dir/checkpoint-best.safetensors) and plans
 * inference (infer.h) for up to `capacity` samples a run, keeping what
 * `flags` asks for (INFER_STATE, INFER_ATTENTION). Every refusal is bad input (exit
 * 2) with one line naming the file: no such folder, no config.cfg, no
 * checkpoint yet, a checkpoint of another config or a damaged one. */
int trained_run_open(trained_run *r, const char *run_dir, const char *checkpoint, int capacity,
                     unsigned flags, tlb_error *err);
void trained_run_close(trained_run *r);

#endif
