/* Counts heap allocations made by our code: the test binary is linked with
 * -Wl,--wrap=malloc (and calloc, realloc, aligned_alloc, posix_memalign), so
 * every call from an object in the link lands here first. Shared libraries
 * (oneDNN, libc itself) are not counted. Tests can also make one of them
 * fail, to check the out-of-memory paths. */
#include <stdatomic.h>
#include <stddef.h>

#include "alloc_counter.h"

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
void *__real_aligned_alloc(size_t a, size_t n);
int __real_posix_memalign(void **p, size_t a, size_t n);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_aligned_alloc(size_t a, size_t n);
int __wrap_posix_memalign(void **p, size_t a, size_t n);

static atomic_long allocations;
static atomic_long fail_in = -1;      /* calls until one fails; -1: none */
static atomic_size_t fail_calloc_bytes; /* calloc of exactly this many bytes fails; 0: none */

long alloc_count(void) { return atomic_load(&allocations); }
void alloc_fail_next(long skip) { atomic_store(&fail_in, skip); }
void alloc_fail_calloc_of(size_t bytes) { atomic_store(&fail_calloc_bytes, bytes); }

/* Counts the call; 1 if this one is the injected failure. */
static int count_and_fail(void)
{
    atomic_fetch_add(&allocations, 1);
    if (atomic_load(&fail_in) < 0) return 0;
    return atomic_fetch_sub(&fail_in, 1) == 0;
}

void *__wrap_malloc(size_t n)
{
    return count_and_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    const size_t bytes = atomic_load(&fail_calloc_bytes);
    if (count_and_fail() || (bytes && k * n == bytes)) return NULL;
    return __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return count_and_fail() ? NULL : __real_realloc(p, n);
}

void *__wrap_aligned_alloc(size_t a, size_t n)
{
    return count_and_fail() ? NULL : __real_aligned_alloc(a, n);
}

int __wrap_posix_memalign(void **p, size_t a, size_t n)
{
    return count_and_fail() ? 12 /* ENOMEM */ : __real_posix_memalign(p, a, n);
}
