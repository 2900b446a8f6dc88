/* ReLU, VW values per step with a masked tail; written once over the vector
 * macros of simd_avx512.h / simd_avx2.h (include one of those first). Bit for
 * bit ref's: a lane is kept where inp > 0 (ordered compare, so NaN and -0
 * give +0), and backward adds +0 elsewhere, as ref does. Threaded above
 * RELU_PARALLEL_MIN values only (the head's layer is small). */
#ifndef TLB_RELU_SIMD_H
#define TLB_RELU_SIMD_H

#include <stddef.h>

#define RELU_PARALLEL_MIN 32768

static inline vec relu_vec(vec x) { return VBLEND(VCMPGT(x, VZERO), VZERO, x); }

static void relu_forward_simd(float *out, const float *inp, size_t n)
{
    const long nv = (long)(n / VW);
#pragma omp parallel for schedule(static) if (n >= RELU_PARALLEL_MIN)
    for (long i = 0; i < nv; i++) VSTORE(out + i * VW, relu_vec(VLOAD(inp + i * VW)));
    const size_t rest = n - (size_t)nv * VW;
    if (rest) {
        const vmask m = VMASK((int)rest);
        const size_t at = (size_t)nv * VW;
        VMSTORE(out + at, m, relu_vec(VMLOAD(inp + at, m)));
    }
}

static inline vec relu_grad_vec(vec d, vec x, vec g) { return VADD(d, VBLEND(VCMPGT(x, VZERO), VZERO, g)); }

static void relu_backward_simd(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
    const long nv = (long)(n / VW);
#pragma omp parallel for schedule(static) if (n >= RELU_PARALLEL_MIN)
    for (long i = 0; i < nv; i++)
        VSTORE(dinp + i * VW, relu_grad_vec(VLOAD(dinp + i * VW), VLOAD(inp + i * VW), VLOAD(dout + i * VW)));
    const size_t rest = n - (size_t)nv * VW;
    if (rest) {
        const vmask m = VMASK((int)rest);
        const size_t at = (size_t)nv * VW;
        VMSTORE(dinp + at, m, relu_grad_vec(VMLOAD(dinp + at, m), VMLOAD(inp + at, m), VMLOAD(dout + at, m)));
    }
}

#endif
