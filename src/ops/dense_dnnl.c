/* Dense layer on oneDNN matmul. Primitives (and their memory objects and a
 * user-owned scratchpad) are created once per (kind, M, K, N, source type)
 * and kept in a small per-thread cache (dnnl_common.h); a call only swaps
 * data handles and executes. Gradients accumulate through the sum post-op
 * (dst = 1 * dst + product). The products also serve the bf16 dense of
 * mixed precision (dense_bf16.c), with bf16 sources. */
#include "ops/dnnl_common.h"
#include "ops/impls.h"

TLB_DNNL_THREAD_CACHE cache;

/* Row-major operands and transposes are plain strided views: bwd-data reads
 * w[K,N] as w^T[N,K]; bwd-weights reads inp[M,K] as inp^T[K,M]. */
dnnl_status_t tlb_dnnl_matmul_mds(int product, int M, int K, int N, dnnl_data_type_t dt,
                                  dnnl_memory_desc_t *src, dnnl_memory_desc_t *wei, dnnl_memory_desc_t *dst)
{
    dnnl_status_t st;
    switch (product) {
    case 0:
        if ((st = tlb_dnnl_md2d(src, M, K, K, 1, dt)) != dnnl_success) return st;
        if ((st = tlb_dnnl_md2d(wei, K, N, N, 1, dt)) != dnnl_success) return st;
        return tlb_dnnl_md2d(dst, M, N, N, 1, dnnl_f32);
    case 1: /* dinp[M,K] += dout[M,N] @ w^T[N,K] */
        if ((st = tlb_dnnl_md2d(src, M, N, N, 1, dt)) != dnnl_success) return st;
        if ((st = tlb_dnnl_md2d(wei, N, K, 1, N, dt)) != dnnl_success) return st;
        return tlb_dnnl_md2d(dst, M, K, K, 1, dnnl_f32);
    default: /* dw[K,N] += inp^T[K,M] @ dout[M,N] */
        if ((st = tlb_dnnl_md2d(src, K, M, 1, K, dt)) != dnnl_success) return st;
        if ((st = tlb_dnnl_md2d(wei, M, N, N, 1, dt)) != dnnl_success) return st;
        return tlb_dnnl_md2d(dst, K, N, N, 1, dnnl_f32);
    }
}

static void build(tlb_dnnl_entry *e, const int key[TLB_DNNL_KEY])
{
    const int kind = key[0], M = key[1], K = key[2], N = key[3];
    const dnnl_data_type_t dt = (dnnl_data_type_t)key[4];
    dnnl_memory_desc_t src, wei, bias, dst;
    const int product = kind == TLB_DENSE_BWD_DATA || kind == TLB_DENSE_BWD_DATA_SET ? 1
                        : kind == TLB_DENSE_BWD_WEIGHTS                          ? 2
                                                                                 : 0;
    TLB_DNNL_TRY(e, tlb_dnnl_matmul_mds(product, M, K, N, dt, &src, &wei, &dst));
    TLB_DNNL_TRY(e, tlb_dnnl_md2d(&bias, 1, N, N, 1, dnnl_f32));
    dnnl_matmul_desc_t desc;
    TLB_DNNL_TRY(e, dnnl_matmul_desc_init(&desc, &src, &wei, kind == TLB_DENSE_FWD_BIAS ? &bias : NULL, &dst));
    dnnl_primitive_attr_t attr = tlb_dnnl_attr(product != 0 && kind != TLB_DENSE_BWD_DATA_SET, 1);
    TLB_DNNL_TRY(e, attr ? dnnl_success : dnnl_out_of_memory);
    dnnl_primitive_desc_t pd;
    const dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, tlb_dnnl_engine(), NULL);
    dnnl_primitive_attr_destroy(attr);
    TLB_DNNL_TRY(e, st);
    const int args[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
    tlb_dnnl_entry_init(e, pd, args, kind == TLB_DENSE_FWD_BIAS ? 4 : 3, 0);
}

void tlb_dnnl_dense_product(int kind, int M, int K, int N, dnnl_data_type_t dt, const void *src,
                            const void *wei, const float *bias, float *dst)
{
    const int key[TLB_DNNL_KEY] = {kind, M, K, N, (int)dt};
    tlb_dnnl_entry transient;
    tlb_dnnl_entry *e = tlb_dnnl_acquire(&cache, key, build, &transient);
    tlb_dnnl_set(e, DNNL_ARG_SRC, src);
    tlb_dnnl_set(e, DNNL_ARG_WEIGHTS, wei);
    tlb_dnnl_set(e, DNNL_ARG_DST, dst);
    if (kind == TLB_DENSE_FWD_BIAS) tlb_dnnl_set(e, DNNL_ARG_BIAS, bias);
    tlb_dnnl_execute(e);
    tlb_dnnl_release(e, &transient);
}

int tlb_dnnl_dense_prepare(int M, int K, int N, dnnl_data_type_t dt, tlb_error *err)
{
    if (M <= 0 || N <= 0 || K <= 0) return 0; /* handled without oneDNN */
    for (int kind = TLB_DENSE_FWD_BIAS; kind <= TLB_DENSE_BWD_WEIGHTS; kind++)
        if (tlb_dnnl_dense_prepare_kind(kind, M, K, N, dt, err) != 0) return -1;
    return 0;
}

int tlb_dnnl_dense_prepare_kind(int kind, int M, int K, int N, dnnl_data_type_t dt, tlb_error *err)
{
    if (M <= 0 || N <= 0 || K <= 0) return 0;
    const int key[TLB_DNNL_KEY] = {kind, M, K, N, (int)dt};
    if (tlb_dnnl_prepare(&cache, key, build, err) != 0)
        return tlb_fail_prefix(err, "dense [%d,%d]x[%d,%d]", M, K, K, N);
    return 0;
}

static int dense_prepare_dnnl(int M, int K, int N, tlb_error *err)
{
    return tlb_dnnl_dense_prepare(M, K, N, dnnl_f32, err);
}

static void dense_forward_dnnl(float *out, const float *inp, const float *w, const float *bias,
                               int M, int K, int N)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* oneDNN rejects empty reductions: out is just the bias */
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) out[(size_t)m * N + n] = bias ? bias[n] : 0.0f;
        return;
    }
    tlb_dnnl_dense_product(bias ? TLB_DENSE_FWD_BIAS : TLB_DENSE_FWD, M, K, N, dnnl_f32, inp, w, bias, out);
}

static void dense_backward_dnnl(float *dinp, float *dw, float *dbias, const float *dout,
                                const float *inp, const float *w, int M, int K, int N)
{
    if (M <= 0 || N <= 0) return;
    if (dinp && K > 0) tlb_dnnl_dense_product(TLB_DENSE_BWD_DATA, M, K, N, dnnl_f32, dout, w, NULL, dinp);
    if (dw && K > 0) tlb_dnnl_dense_product(TLB_DENSE_BWD_WEIGHTS, M, K, N, dnnl_f32, inp, dout, NULL, dw);
    if (dbias) {
        for (int m = 0; m < M; m++) {
            const float *g = dout + (size_t)m * N;
            for (int n = 0; n < N; n++) dbias[n] += g[n];
        }
    }
}

const dense_op dense_dnnl = {dense_forward_dnnl, dense_backward_dnnl, dense_prepare_dnnl, NULL};
