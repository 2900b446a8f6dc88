/* Softmax cross-entropy in double for the log-sum-exp: exact log-softmax,
 * no probability clipping (the golden README's loss). */
#include "ops/impls.h"

#include <math.h>

static void softmax_xent_forward_ref(float *losses, float *probs, const float *logits,
                                     const int *labels, int B, int V)
{
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * V;
        float *p = probs + (size_t)b * V;
        float mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = fmaxf(mx, l[v]);
        double sum = 0.0;
        for (int v = 0; v < V; v++) sum += exp((double)(l[v] - mx));
        const double lse = mx + log(sum);
        for (int v = 0; v < V; v++) p[v] = (float)exp(l[v] - lse);
        losses[b] = (float)(lse - l[labels[b]]);
    }
}

static void softmax_xent_backward_ref(float *dlogits, const float *probs, const int *labels,
                                      float scale, int B, int V)
{
    if (!dlogits) return; /* NULL gradient = not needed (ops.h) */
    for (int b = 0; b < B; b++)
        for (int v = 0; v < V; v++)
            dlogits[(size_t)b * V + v] +=
                (probs[(size_t)b * V + v] - (v == labels[b] ? 1.0f : 0.0f)) * scale;
}

const softmax_xent_op softmax_xent_ref = {softmax_xent_forward_ref, softmax_xent_backward_ref, NULL, NULL};
