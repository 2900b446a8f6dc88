/* Dropout with the counter-based mask of dropout_mask.h. */
#include "ops/impls.h"

#include "ops/dropout_mask.h"

static void dropout_forward_ref(float *out, const float *inp, int B, size_t per_sample,
                                const dropout_ctx *drop)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const uint64_t skey = dropout_active(drop) ? dropout_sample_key(drop, b) : 0;
        for (size_t i = 0; i < per_sample; i++) {
            const size_t at = (size_t)b * per_sample + i;
            out[at] = skey ? inp[at] * dropout_scale_at(drop, skey, i) : inp[at];
        }
    }
}

static void dropout_backward_ref(float *dinp, const float *dout, int B, size_t per_sample,
                                 const dropout_ctx *drop)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const uint64_t skey = dropout_active(drop) ? dropout_sample_key(drop, b) : 0;
        for (size_t i = 0; i < per_sample; i++) {
            const size_t at = (size_t)b * per_sample + i;
            dinp[at] += skey ? dout[at] * dropout_scale_at(drop, skey, i) : dout[at];
        }
    }
}

const dropout_op dropout_ref = {dropout_forward_ref, dropout_backward_ref, NULL, NULL};
