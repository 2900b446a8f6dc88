#include "train/adamw.h"

#include <math.h>

void adamw_step(float *params, float *m, float *v, const float *grads, size_t n, long t,
                const adamw_hparams *h)
{
    /* Bias corrections folded into the step size, in double as Keras does
     * them once per step on scalars. */
    const double alpha = h->lr * sqrt(1.0 - pow(h->beta2, (double)t)) / (1.0 - pow(h->beta1, (double)t));
    const float a = (float)alpha, decay = h->lr * h->weight_decay;
    const float b1 = h->beta1, b2 = h->beta2, eps = h->eps;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        const float g = grads[i];
        float w = params[i];
        w -= decay * w;
        const float mi = b1 * m[i] + (1.0f - b1) * g;
        const float vi = b2 * v[i] + (1.0f - b2) * g * g;
        m[i] = mi;
        v[i] = vi;
        params[i] = w - a * mi / (sqrtf(vi) + eps);
    }
}
