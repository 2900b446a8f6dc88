#ifndef TLB_TEST_ALLOC_COUNTER_H
#define TLB_TEST_ALLOC_COUNTER_H
/* Heap allocations made so far by code linked into the test binary. */
long alloc_count(void);
#endif
