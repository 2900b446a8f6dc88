/* AdamW with Keras semantics (golden README section 5): decoupled weight
 * decay applied first to every variable, then Adam with epsilon added to
 * sqrt(v) outside the bias correction. Master weights and moments are fp32. */
#ifndef TLB_ADAMW_H
#define TLB_ADAMW_H

#include <stddef.h>

typedef struct {
    float lr, weight_decay, beta1, beta2, eps;
} adamw_hparams;

static inline adamw_hparams adamw_keras_defaults(float lr, float weight_decay)
{
    return (adamw_hparams){lr, weight_decay, 0.9f, 0.999f, 1e-7f};
}

/* One step t (1-based) over n parameters; m and v start at zero. */
void adamw_step(float *params, float *m, float *v, const float *grads, size_t n, long t,
                const adamw_hparams *h);

#endif
