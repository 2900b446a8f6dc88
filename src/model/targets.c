#include "model/targets.h"

#include <math.h>

int targets_soft(const model_targets *t, int b)
{
    if (!t) return 0;
    return t->smoothing != 0.0f || (t->y2 && t->lam && t->lam[b] != 1.0f);
}

/* t_k for class k of V, label y. */
static double target_weight(int k, int V, int y, const model_targets *t, int b)
{
    const double e = t->smoothing;
    double mix = k == y ? 1.0 : 0.0;
    if (t->y2 && t->lam) {
        const double lam = t->lam[b];
        mix = lam * (k == y) + (1.0 - lam) * (k == t->y2[b]);
    }
    return (1.0 - e) * mix + e / V;
}

double targets_loss(const float *logits, int V, int y, const model_targets *t, int b)
{
    float mx = -INFINITY;
    for (int k = 0; k < V; k++) mx = fmaxf(mx, logits[k]);
    double sum = 0.0;
    for (int k = 0; k < V; k++) sum += exp((double)(logits[k] - mx));
    const double lse = mx + log(sum);
    double loss = 0.0;
    for (int k = 0; k < V; k++) loss += target_weight(k, V, y, t, b) * (lse - logits[k]);
    return loss;
}

void targets_grad_correction(float *dlogits, int V, int y, const model_targets *t, int b, float scale)
{
    for (int k = 0; k < V; k++)
        dlogits[k] += scale * (float)((k == y ? 1.0 : 0.0) - target_weight(k, V, y, t, b));
}
