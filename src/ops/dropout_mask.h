/* The dropout mask shared by every backend: element `elem` of global sample
 * `sample0 + b` is kept with probability 1 - rate and then scaled by
 * 1 / (1 - rate). A pure function of its coordinates (see ops.h). */
#ifndef TLB_DROPOUT_MASK_H
#define TLB_DROPOUT_MASK_H

#include "ops/ops.h"
#include "util/rng.h"

static inline uint64_t dropout_sample_key(const dropout_ctx *d, int b)
{
    return rng_key(d->key, (uint64_t)(d->sample0 + b));
}

static inline float dropout_scale_at(const dropout_ctx *d, uint64_t sample_key, size_t elem)
{
    return rng_uniform(sample_key, elem) < d->rate ? 0.0f : 1.0f / (1.0f - d->rate);
}

static inline int dropout_active(const dropout_ctx *d) { return d && d->rate > 0.0f; }

#endif
