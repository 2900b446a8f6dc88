/* Software prefetch into L1 for tensors saved long before (from memory) that
 * a pass reads rows ahead of where the hardware prefetchers fetch: rows in
 * column parts, or streams read while little other work runs (perf on the
 * AMD EPYC of BENCHMARKS.md, sessions 15-16). A prefetch never faults. */
#ifndef TLB_OPS_PREFETCH_H
#define TLB_OPS_PREFETCH_H

#include <immintrin.h>
#include <stddef.h>
#include <stdint.h>

/* The lines holding the n floats from p, one prefetch per 64 bytes. */
static inline void prefetch_floats(const float *p, size_t n)
{
    for (size_t o = 0; o < n; o += 16) _mm_prefetch((const char *)(p + o), _MM_HINT_T0);
}

/* The same for n bf16 values (stored as uint16_t) from p. */
static inline void prefetch_bf16(const uint16_t *p, size_t n)
{
    for (size_t o = 0; o < n; o += 32) _mm_prefetch((const char *)(p + o), _MM_HINT_T0);
}

#endif
