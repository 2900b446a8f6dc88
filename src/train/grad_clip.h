/* Gradient clipping by the global L2 norm of the whole gradient buffer (every
 * parameter at once, after the shards' and micro-batches' gradients are
 * summed), as torch.nn.utils.clip_grad_norm_ does. */
#ifndef TLB_GRAD_CLIP_H
#define TLB_GRAD_CLIP_H

#include <stddef.h>

/* sqrt(sum g_i^2), summed in double in index order (deterministic). */
double grad_global_norm(const float *g, size_t n);

/* Scales g by max_norm / norm when its norm exceeds max_norm (> 0; 0 = off:
 * nothing changes). Returns the norm before clipping. */
double grad_clip_global(float *g, size_t n, double max_norm);

#endif
