/* Dense layer for mixed precision: oneDNN matmul with bf16 operands and f32
 * accumulation and outputs (ops_set_mixed_precision). The model keeps every
 * tensor in fp32 (master weights, activations, gradients, AdamW state); each
 * product rounds its two operands to bf16 on the way in, which is all the
 * precision it gives up. On a CPU with AVX512_BF16 the bf16 products run about
 * twice as fast as fp32 at this model's shapes (BENCHMARKS.md, "Mixed
 * precision"). Bias gradients are fp32 column sums of the fp32 dout. */
#include <stdio.h>
#include <stdlib.h>

#include "ops/bf16.h"
#include "ops/dnnl_common.h"
#include "ops/impls.h"

/* The bf16 copies of a call's operands: per thread, grown to the largest
 * shape seen, so steps after the first allocate nothing. */
static _Thread_local struct {
    uint16_t *data;
    size_t capacity;
} staging;

static size_t round_to_64_bytes(size_t n) { return (n + 31) & ~(size_t)31; } /* 64 bytes of bf16 */

static uint16_t *staging_for(size_t n)
{
    if (n > staging.capacity) {
        free(staging.data);
        staging.data = aligned_alloc(64, round_to_64_bytes(n) * sizeof(uint16_t)); /* size: a multiple of 64 */
        if (!staging.data) {
            fprintf(stderr, "dense bf16: out of memory (%zu bf16 values)\n", n);
            abort();
        }
        staging.capacity = n;
    }
    return staging.data;
}

static void dense_forward_bf16(float *out, const float *inp, const float *w, const float *bias,
                               int M, int K, int N)
{
    if (M <= 0 || N <= 0 || K <= 0) { /* empty shapes: the f32 path's handling */
        dense_dnnl.forward(out, inp, w, bias, M, K, N);
        return;
    }
    const size_t mk = (size_t)M * K, kn = (size_t)K * N;
    uint16_t *inp16 = staging_for(round_to_64_bytes(mk) + kn), *w16 = inp16 + round_to_64_bytes(mk);
    bf16_convert(inp16, inp, mk);
    bf16_convert(w16, w, kn);
    tlb_dnnl_dense_product(bias ? TLB_DENSE_FWD_BIAS : TLB_DENSE_FWD, M, K, N, dnnl_bf16, inp16, w16, bias,
                           out);
}

static void dense_backward_bf16(float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int M, int K, int N)
{
    if (M <= 0 || N <= 0) return;
    if ((dinp || dw) && K > 0) {
        const size_t mk = (size_t)M * K, kn = (size_t)K * N, mn = (size_t)M * N;
        uint16_t *dout16 = staging_for(round_to_64_bytes(mn) + round_to_64_bytes(mk) + kn);
        uint16_t *inp16 = dout16 + round_to_64_bytes(mn), *w16 = inp16 + round_to_64_bytes(mk);
        bf16_convert(dout16, dout, mn);
        if (dinp) {
            bf16_convert(w16, w, kn);
            tlb_dnnl_dense_product(TLB_DENSE_BWD_DATA, M, K, N, dnnl_bf16, dout16, w16, NULL, dinp);
        }
        if (dw) {
            bf16_convert(inp16, inp, mk);
            tlb_dnnl_dense_product(TLB_DENSE_BWD_WEIGHTS, M, K, N, dnnl_bf16, inp16, dout16, NULL, dw);
        }
    }
    if (dbias) dense_dnnl.backward(NULL, NULL, dbias, dout, inp, w, M, K, N); /* fp32 column sums */
}

const dense_op dense_bf16 = {dense_forward_bf16, dense_backward_bf16};
