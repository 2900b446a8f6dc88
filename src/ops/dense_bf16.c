/* Mixed precision's dense layer (dense_bf16.h) on oneDNN's bf16 matmul. */
#include "ops/dense_bf16.h"

#include <string.h>

#include "ops/bf16.h"
#include "ops/dense_bf16_dw.h"
#include "ops/dnnl_common.h"

/* Each operand starts on a 64-byte boundary of the staging buffer. */
static size_t round_to_64_bytes(size_t n) { return (n + 31) & ~(size_t)31; }

/* A backward's staging: dout16 [M,N] for oneDNN's dinp product, then the
 * row pairs of dout and of inp for the weight gradient (bf16.h). The
 * forward's inp16 [M,K] fits in it. */
size_t dense_bf16_dout_staging(int M, int N)
{
    if (M <= 0 || N <= 0) return 0;
    return round_to_64_bytes((size_t)M * N) + bf16_pairs_len((size_t)M, (size_t)N);
}

size_t dense_bf16_staging(int M, int K, int N)
{
    if (M <= 0 || K <= 0 || N <= 0) return 0;
    return dense_bf16_dout_staging(M, N) + bf16_pairs_len((size_t)M, (size_t)K);
}

int dense_bf16_prepare(int M, int K, int N, tlb_error *err)
{
    /* oneDNN's forward and input gradients; the weight gradient is ours */
    static const int kinds[] = {TLB_DENSE_FWD_BIAS, TLB_DENSE_BWD_DATA, TLB_DENSE_BWD_DATA_SET};
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (tlb_dnnl_dense_prepare_kind(kinds[i], M, K, N, dnnl_bf16, err) != 0) return -1;
    return 0;
}

static void bias_rows(float *out, const float *bias, int M, int N)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) out[(size_t)m * N + n] = bias ? bias[n] : 0.0f;
}

void dense_bf16_forward_rounded(float *out, const uint16_t *inp16, const uint16_t *w16, const float *bias, int M,
                                int K, int N)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* oneDNN rejects empty reductions: out is just the bias */
        bias_rows(out, bias, M, N);
        return;
    }
    tlb_dnnl_dense_product(bias ? TLB_DENSE_FWD_BIAS : TLB_DENSE_FWD, M, K, N, dnnl_bf16, inp16, w16, bias, out);
}

void dense_bf16_forward(float *out, const float *inp, const uint16_t *w16, const float *bias, int M, int K,
                        int N, uint16_t *staging)
{
    if (M > 0 && K > 0 && N > 0) bf16_convert(staging, inp, (size_t)M * K);
    dense_bf16_forward_rounded(out, staging, w16, bias, M, K, N);
}

/* add 0: dinp written (its first writer), not accumulated. inp_pairs:
 * bf16(inp)'s row pairs already written by the caller, or NULL (then
 * rounded from inp into inp_pairs_staging). dout_staging: dense_bf16_dout_staging(M, N)
 * values. */
static void backward_into(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                          const uint32_t *inp_pairs, const uint16_t *w16, int M, int K, int N, uint16_t *dout_staging,
                          uint32_t *inp_pairs_staging, int add)
{
    if (M <= 0 || N <= 0) return;
    if ((!dinp && !dw) || K <= 0) { /* no product: the bias sums alone */
        if (dbias)
            for (int m = 0; m < M; m++)
                for (int n = 0; n < N; n++) dbias[n] += dout[(size_t)m * N + n];
        return;
    }
    uint16_t *dout16 = dout_staging;
    uint32_t *dout_pairs = (uint32_t *)(dout_staging + round_to_64_bytes((size_t)M * N));
    bf16_convert_sums(dinp ? dout16 : NULL, dw ? dout_pairs : NULL, dbias, dout, (size_t)M, (size_t)N);
    if (dinp)
        tlb_dnnl_dense_product(add ? TLB_DENSE_BWD_DATA : TLB_DENSE_BWD_DATA_SET, M, K, N, dnnl_bf16, dout16, w16,
                               NULL, dinp);
    if (dw) {
        if (!inp_pairs) {
            bf16_convert_sums(NULL, inp_pairs_staging, NULL, inp, (size_t)M, (size_t)K);
            inp_pairs = inp_pairs_staging;
        }
        dense_bf16_dw(dw, inp_pairs, dout_pairs, M, K, N);
    }
}

static void backward_staged(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                            const uint16_t *w16, int M, int K, int N, uint16_t *staging, int add)
{
    backward_into(dinp, dw, dbias, dout, inp, NULL, w16, M, K, N, staging,
                  (uint32_t *)(staging + dense_bf16_dout_staging(M, N)), add);
}

void dense_bf16_backward_paired(float *dinp, float *dw, float *dbias, const float *dout, const uint32_t *inp_pairs,
                                const uint16_t *w16, int M, int K, int N, uint16_t *dout_staging, int first)
{
    if (first && dinp && M > 0 && K > 0 && N <= 0) memset(dinp, 0, (size_t)M * K * sizeof(float));
    backward_into(dinp, dw, dbias, dout, NULL, inp_pairs, w16, M, K, N, dout_staging, NULL, !first);
}

void dense_bf16_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const uint16_t *w16, int M, int K, int N, uint16_t *staging)
{
    backward_staged(dinp, dw, dbias, dout, inp, w16, M, K, N, staging, 1);
}

void dense_bf16_backward_first(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const uint16_t *w16, int M, int K, int N, uint16_t *staging)
{
    if (dinp && M > 0 && K > 0 && N <= 0) memset(dinp, 0, (size_t)M * K * sizeof(float)); /* no product reaches it */
    backward_staged(dinp, dw, dbias, dout, inp, w16, M, K, N, staging, 0);
}
