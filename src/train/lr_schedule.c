#include "train/lr_schedule.h"

#include <math.h>

double lr_at_step(const lr_schedule *s, long step)
{
    if (s->kind == LR_CONSTANT) return s->peak;
    const double t = (double)(step + 1);
    const double W = s->warmup_epochs * (double)s->steps_per_epoch;
    const double T = (double)s->total_steps;
    if (t < W) return s->peak * t / W;
    if (T <= W) return s->peak; /* warmup fills the run: nothing to decay */
    double p = (t - W) / (T - W);
    if (p > 1.0) p = 1.0;
    return s->min_lr + (s->peak - s->min_lr) * 0.5 * (1.0 + cos(M_PI * p));
}
