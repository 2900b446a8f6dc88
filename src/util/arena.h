/* Memory planned once: a layout function is run twice over an arena, first
 * to measure (arena_take returns NULL and only counts), then, after
 * arena_commit, to carve the one allocation into the same slices. Used for
 * activations (per config and batch size) so a training step never mallocs. */
#ifndef TLB_ARENA_H
#define TLB_ARENA_H

#include <stddef.h>

typedef struct {
    size_t used;     /* bytes taken so far in this pass */
    size_t capacity; /* bytes allocated by arena_commit */
    char *base;      /* NULL during the measuring pass */
} arena;

/* Takes n floats, 64-byte aligned; NULL while measuring. */
float *arena_take(arena *a, size_t n_floats);

/* Allocates (zeroed) what the measuring pass counted and rewinds for the
 * carving pass. Returns 0, or -1 when out of memory. */
int arena_commit(arena *a);
void arena_release(arena *a);

#endif
