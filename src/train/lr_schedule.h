/* The learning rate of every optimizer step, as a pure function of the step
 * number, so a resumed run (which knows only its step count) uses exactly the
 * rate an uninterrupted one would.
 *
 * constant: `peak` at every step (the seed). cosine: with s = step + 1 (the
 * 1-based update count AdamW uses) and W = warmup_epochs * steps_per_epoch,
 * peak * s / W while s < W (linear from 0), then
 * min_lr + (peak - min_lr) * (1 + cos(pi * (s - W) / (T - W))) / 2
 * down to min_lr at the last step s = T = total_steps. */
#ifndef TLB_LR_SCHEDULE_H
#define TLB_LR_SCHEDULE_H

#include "train/run_config.h"

typedef struct {
    lr_schedule_kind kind; /* LR_CONSTANT | LR_COSINE (run_config.h) */
    double peak;           /* learning_rate */
    double min_lr;         /* cosine's last value */
    double warmup_epochs;  /* may be fractional */
    long steps_per_epoch;
    long total_steps;      /* epochs * steps_per_epoch */
} lr_schedule;

/* The rate of optimizer step `step` (0-based: the step about to be taken). */
double lr_at_step(const lr_schedule *s, long step);

#endif
