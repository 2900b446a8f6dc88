#include "util/arena.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

float *arena_take(arena *a, size_t n_floats)
{
    const size_t at = a->used;
    a->used += (n_floats * sizeof(float) + 63) & ~(size_t)63;
    if (!a->base) return NULL;
    if (a->used > a->capacity) { /* the two passes disagree: a programming error */
        fprintf(stderr, "tlb: arena overflow (%zu > %zu bytes)\n", a->used, a->capacity);
        abort();
    }
    return (float *)(a->base + at);
}

int arena_commit(arena *a)
{
    a->capacity = a->used ? a->used : 64;
    a->base = aligned_alloc(64, a->capacity);
    if (!a->base) return -1;
    memset(a->base, 0, a->capacity);
    a->used = 0;
    return 0;
}

void arena_release(arena *a)
{
    free(a->base);
    memset(a, 0, sizeof *a);
}
