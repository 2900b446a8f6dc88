/* What the loss compares the logits with: the label's one-hot (the seed), or
 * a soft target for label smoothing and mixup/cutmix,
 *     t = (1 - e) * (lam * onehot(y) + (1 - lam) * onehot(y2)) + e / V,
 * loss -sum_k t_k log p_k, gradient p - t w.r.t. the logits. The softmax_xent
 * op (every backend) still computes p and p - onehot(y); the model adds the
 * correction onehot(y) - t and recomputes the loss from the logits, so no
 * backend needs to know about soft targets. */
#ifndef TLB_MODEL_TARGETS_H
#define TLB_MODEL_TARGETS_H

typedef struct {
    const int *y2;    /* [B] the mixed-in partner label, or NULL (no mixing) */
    const float *lam; /* [B] weight of labels[b] (y2[b] gets 1 - lam), or NULL; read only with y2 */
    float smoothing;  /* e in [0, 1); 0 = off */
} model_targets;

/* Whether sample b (an index into y2/lam) has a target other than onehot(y):
 * smoothing on, or a mixed label with lam[b] != 1. A NULL t is the one-hot. */
int targets_soft(const model_targets *t, int b);

/* Sample b's loss -sum_k t_k log softmax(logits)_k, with the log-sum-exp in
 * double like the ref backend. */
double targets_loss(const float *logits, int V, int y, const model_targets *t, int b);

/* dlogits[k] += scale * (onehot(y)_k - t_k): added to the op's
 * scale * (p - onehot(y)) it makes the gradient scale * (p - t). */
void targets_grad_correction(float *dlogits, int V, int y, const model_targets *t, int b, float scale);

#endif
