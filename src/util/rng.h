/* Counter-based random numbers: every draw is a pure function of
 * (key, counter), so dropout masks and augmentations do not depend on the
 * thread count, the micro-batch size or the order work is done in, and a
 * resumed run draws exactly what an uninterrupted one would. */
#ifndef TLB_RNG_H
#define TLB_RNG_H

#include <stdint.h>

/* splitmix64 finaliser: a bijective 64-bit mixer with good avalanche. */
static inline uint64_t rng_mix64(uint64_t z)
{
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* Derives a child key from a parent key and a label (step, site, sample). */
static inline uint64_t rng_key(uint64_t parent, uint64_t label)
{
    return rng_mix64(parent ^ rng_mix64(label + 0x632be59bd9b4e019ULL));
}

/* The n-th 64-bit draw of stream `key`. */
static inline uint64_t rng_u64(uint64_t key, uint64_t n)
{
    return rng_mix64(key + rng_mix64(n));
}

/* Uniform float in [0, 1) with 24 random bits. */
static inline float rng_uniform(uint64_t key, uint64_t n)
{
    return (float)(rng_u64(key, n) >> 40) * (1.0f / 16777216.0f);
}

/* Sequential generator for setup work (init, shuffles) where order is fixed. */
typedef struct {
    uint64_t key;
    uint64_t counter;
} rng_stream;

static inline uint64_t rng_next_u64(rng_stream *s) { return rng_u64(s->key, s->counter++); }
static inline float rng_next_uniform(rng_stream *s) { return rng_uniform(s->key, s->counter++); }

/* Uniform integer in [0, n) without modulo bias worth caring about (n << 2^32). */
static inline uint32_t rng_next_below(rng_stream *s, uint32_t n)
{
    return (uint32_t)(((rng_next_u64(s) >> 32) * (uint64_t)n) >> 32);
}

#endif
