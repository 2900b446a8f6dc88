/* Token embedding: a row lookup forward, a scatter-add backward. */
#include <string.h>

#include "ops/impls.h"

static void token_embed_forward_ref(float *out, const int *ids, const float *table, int N, int V,
                                    int D)
{
    (void)V;
#pragma omp parallel for schedule(static)
    for (int n = 0; n < N; n++)
        memcpy(out + (size_t)n * D, table + (size_t)ids[n] * D, (size_t)D * sizeof(float));
}

/* One pass over the tokens in order: a row's sum is always taken in n order,
 * the contract every backend keeps (a repeated id is a write conflict, so no
 * threads here). */
static void token_embed_backward_ref(float *dtable, const float *dout, const int *ids, int N,
                                     int V, int D)
{
    (void)V;
    if (!dtable) return; /* NULL gradient = not needed (ops.h) */
    for (int n = 0; n < N; n++) {
        float *row = dtable + (size_t)ids[n] * D;
        const float *g = dout + (size_t)n * D;
        for (int d = 0; d < D; d++) row[d] += g[d];
    }
}

const token_embed_op token_embed_ref = {token_embed_forward_ref, token_embed_backward_ref, NULL, NULL};
