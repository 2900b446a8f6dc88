/* Dropout with the mask generated 8 lanes at a time (dropout_mask_avx2.h,
 * bit-identical to dropout_mask.h); same structure as dropout_avx512.c. */
#include "ops/impls.h"

#include "ops/simd_avx2.h"
#include "ops/dropout_mask_avx2.h"

static void dropout_forward_avx2(float *out, const float *inp, int B, size_t per_sample,
                                 const dropout_ctx *drop)
{
    const int active = dropout_active(drop);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const uint64_t skey = active ? dropout_sample_key(drop, b) : 0;
        const float *x = inp + (size_t)b * per_sample;
        float *y = out + (size_t)b * per_sample;
        for (size_t i = 0; i < per_sample; i += VW) {
            const vmask m = vlanes(per_sample - i < VW ? (int)(per_sample - i) : VW);
            vec v = VMLOAD(x + i, m);
            if (active) v = VMUL(v, mask_keep_x8(drop, skey, i));
            VMSTORE(y + i, m, v);
        }
    }
}

static void dropout_backward_avx2(float *dinp, const float *dout, int B, size_t per_sample,
                                  const dropout_ctx *drop)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
    const int active = dropout_active(drop);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const uint64_t skey = active ? dropout_sample_key(drop, b) : 0;
        const float *g = dout + (size_t)b * per_sample;
        float *dx = dinp + (size_t)b * per_sample;
        for (size_t i = 0; i < per_sample; i += VW) {
            const vmask m = vlanes(per_sample - i < VW ? (int)(per_sample - i) : VW);
            vec v = VMLOAD(g + i, m);
            if (active) v = VMUL(v, mask_keep_x8(drop, skey, i));
            VMSTORE(dx + i, m, VADD(VMLOAD(dx + i, m), v));
        }
    }
}

const dropout_op dropout_avx2 = {dropout_forward_avx2, dropout_backward_avx2};
