#ifndef TLB_TEST_ALLOC_COUNTER_H
#define TLB_TEST_ALLOC_COUNTER_H
/* Heap allocations made so far by code linked into the test binary. */
long alloc_count(void);
#include <stddef.h>
/* The allocation call after `skip` more succeed returns NULL (once). */
void alloc_fail_next(long skip);
/* Every calloc of exactly `bytes` bytes returns NULL until called with 0. */
void alloc_fail_calloc_of(size_t bytes);
#endif
