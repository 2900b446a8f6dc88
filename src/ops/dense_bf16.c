/* Dense layer for mixed precision: oneDNN matmul with bf16 operands and f32
 * accumulation and outputs (ops_set_mixed_precision). The model keeps every
 * tensor in fp32 (master weights, activations, gradients, AdamW state); each
 * product rounds its two operands to bf16 on the way in, which is all the
 * precision it gives up. On a CPU with AVX512_BF16 the bf16 products run about
 * twice as fast as fp32 at this model's shapes (BENCHMARKS.md, "Mixed
 * precision"). Bias gradients are column sums of the fp32 dout, exact. */
#include <stdio.h>
#include <stdlib.h>

#include "ops/bf16.h"
#include "ops/dnnl_common.h"
#include "ops/impls.h"

enum { KIND_FWD, KIND_FWD_BIAS, KIND_BWD_DATA, KIND_BWD_WEIGHTS };

TLB_DNNL_THREAD_CACHE cache = TLB_DNNL_CACHE_INIT;

/* The bf16 copies of a call's operands: per thread, grown to the largest
 * shape seen, so steps after the first allocate nothing. */
static _Thread_local struct {
    uint16_t *data;
    size_t capacity;
} staging;

static size_t round64(size_t n) { return (n + 31) & ~(size_t)31; } /* 64 bytes of bf16 */

static uint16_t *staging_for(size_t n)
{
    if (n > staging.capacity) {
        free(staging.data);
        staging.data = aligned_alloc(64, n * sizeof(uint16_t));
        if (!staging.data) {
            fprintf(stderr, "dense bf16: out of memory (%zu bf16 values)\n", n);
            abort();
        }
        staging.capacity = n;
    }
    return staging.data;
}

static void build(tlb_dnnl_entry *e, const int key[TLB_DNNL_KEY])
{
    const int kind = key[0], M = key[1], K = key[2], N = key[3];
    dnnl_memory_desc_t src, wei, bias, dst;
    const int product = kind == KIND_BWD_DATA ? 1 : kind == KIND_BWD_WEIGHTS ? 2 : 0;
    tlb_dnnl_matmul_mds(product, M, K, N, dnnl_bf16, &src, &wei, &dst);
    tlb_dnnl_md2d(&bias, 1, N, N, 1, dnnl_f32);
    dnnl_primitive_attr_t attr = tlb_dnnl_attr(product != 0, 1);
    dnnl_matmul_desc_t desc;
    TLB_DNNL_CHECK(dnnl_matmul_desc_init(&desc, &src, &wei, kind == KIND_FWD_BIAS ? &bias : NULL, &dst));
    dnnl_primitive_desc_t pd;
    TLB_DNNL_CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, tlb_dnnl_engine(), NULL));
    TLB_DNNL_CHECK(dnnl_primitive_attr_destroy(attr));
    const int args[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    tlb_dnnl_entry_init(e, pd, args, kind == KIND_FWD_BIAS ? 4 : 3, 0);
}

static void run(int kind, int M, int K, int N, const uint16_t *src, const uint16_t *wei,
                const float *bias, float *dst)
{
    const int key[TLB_DNNL_KEY] = {kind, M, K, N};
    tlb_dnnl_entry transient;
    tlb_dnnl_entry *e = tlb_dnnl_acquire(&cache, key, build, &transient);
    tlb_dnnl_set(e, DNNL_ARG_SRC, src);
    tlb_dnnl_set(e, DNNL_ARG_WEIGHTS, wei);
    tlb_dnnl_set(e, DNNL_ARG_DST, dst);
    if (kind == KIND_FWD_BIAS) tlb_dnnl_set(e, DNNL_ARG_BIAS, bias);
    tlb_dnnl_execute(e);
    tlb_dnnl_release(e, &transient);
}

static void dense_forward_bf16(float *out, const float *inp, const float *w, const float *bias,
                               int M, int K, int N)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* oneDNN rejects empty reductions: out is just the bias */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) out[(size_t)m * N + n] = bias ? bias[n] : 0.0f;
        return;
    }
    const size_t mk = (size_t)M * K, kn = (size_t)K * N;
    uint16_t *inp16 = staging_for(round64(mk) + kn), *w16 = inp16 + round64(mk);
    bf16_convert(inp16, inp, mk);
    bf16_convert(w16, w, kn);
    run(bias ? KIND_FWD_BIAS : KIND_FWD, M, K, N, inp16, w16, bias, out);
}

static void dense_backward_bf16(float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int M, int K, int N)
{
    if (M <= 0 || N <= 0) return;
    if ((dinp || dw) && K > 0) {
        const size_t mk = (size_t)M * K, kn = (size_t)K * N, mn = (size_t)M * N;
        uint16_t *dout16 = staging_for(round64(mn) + round64(mk) + kn);
        uint16_t *inp16 = dout16 + round64(mn), *w16 = inp16 + round64(mk);
        bf16_convert(dout16, dout, mn);
        if (dinp) {
            bf16_convert(w16, w, kn);
            run(KIND_BWD_DATA, M, K, N, dout16, w16, NULL, dinp);
        }
        if (dw) {
            bf16_convert(inp16, inp, mk);
            run(KIND_BWD_WEIGHTS, M, K, N, inp16, dout16, NULL, dw);
        }
    }
    if (dbias) {
        for (int m = 0; m < M; m++) {
            const float *g = dout + (size_t)m * N;
            for (int n = 0; n < N; n++) dbias[n] += g[n];
        }
    }
}

const dense_op dense_bf16 = {dense_forward_bf16, dense_backward_bf16};
