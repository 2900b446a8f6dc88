/* The dropout mask shared by every backend: element `elem` of global sample
 * `sample0 + b` is kept with probability 1 - rate and then scaled by
 * 1 / (1 - rate). A pure function of its coordinates (see ops.h). */
#ifndef TLB_DROPOUT_MASK_H
#define TLB_DROPOUT_MASK_H

#include <math.h>
#include <stddef.h>

#include "ops/ops.h"
#include "util/rng.h"

static inline uint64_t dropout_sample_key(const dropout_ctx *d, int b)
{
    return rng_key(d->key, (uint64_t)(d->sample0 + b));
}

/* lowbias32 (C. Wellons' hash-prospector): a bijective 32-bit mixer. */
static inline uint32_t dropout_hash32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return x ^ (x >> 16);
}

/* 24 random bits for element `elem` (< 2^32) of the sample keyed
 * sample_key: two keyed rounds of the 32-bit mixer. A 32-bit multiply runs
 * on every SIMD width (the splitmix64 pair per element used before took
 * four 64-bit multiplies, a dozen 32-bit ones on AVX2: the dropout op ran
 * 2.5x slower on AVX-512, 2.7x on AVX2); for a fixed key the map from elem
 * is a bijection, and a different key moves every lane. */
static inline uint32_t dropout_bits24(uint64_t sample_key, size_t elem)
{
    const uint32_t x = dropout_hash32((uint32_t)elem + (uint32_t)sample_key);
    return dropout_hash32(x ^ (uint32_t)(sample_key >> 32)) >> 8;
}

/* Dropped when bits24 * 2^-24 < rate, i.e. bits24 < ceil(rate 2^24) (the
 * product is exact): the SIMD kernels compare the integers. */
static inline uint32_t dropout_threshold(const dropout_ctx *d)
{
    return (uint32_t)ceilf(d->rate * 16777216.0f);
}

static inline float dropout_scale_at(const dropout_ctx *d, uint64_t sample_key, size_t elem)
{
    return (float)dropout_bits24(sample_key, elem) * (1.0f / 16777216.0f) < d->rate
               ? 0.0f : 1.0f / (1.0f - d->rate);
}

static inline int dropout_active(const dropout_ctx *d) { return d && d->rate > 0.0f; }

#endif
