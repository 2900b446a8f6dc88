/* The dense layer of mixed precision: oneDNN matmul with bf16 operands, fp32
 * accumulation and fp32 outputs, for the forward and dinp; the weight
 * gradient on our own VDPBF16PS kernel (dense_bf16_dw.h). The model keeps
 * every tensor in fp32 (master weights, activations, gradients, AdamW
 * state) and hands this layer its weights already in bf16 (converted once
 * per forward pass of the whole model, not per call); the activations are
 * rounded into the caller's staging buffer on the way in (the weight
 * gradient's operands straight into row pairs). Bias gradients are fp32 column sums of the
 * fp32 dout. On a CPU with AVX512_BF16 the bf16 products ran about twice as
 * fast as fp32 at this model's shapes on the AMD machine of BENCHMARKS.md. */
#ifndef TLB_OPS_DENSE_BF16_H
#define TLB_OPS_DENSE_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

/* bf16 values of staging one call of shape [M,K] x [K,N] needs (forward or
 * backward). */
size_t dense_bf16_staging(int M, int K, int N);

/* Plan time: the calling thread's oneDNN primitives for the shape. */
int dense_bf16_prepare(int M, int K, int N, tlb_error *err);

/* out[M,N] = bf16(inp) @ w16 + bias (bias may be NULL). */
void dense_bf16_forward(float *out, const float *inp, const uint16_t *w16, const float *bias, int M, int K,
                        int N, uint16_t *staging);
/* The same product on inp16 = bf16(inp) the caller rounded (once, for
 * several products that read it). */
void dense_bf16_forward_rounded(float *out, const uint16_t *inp16, const uint16_t *w16, const float *bias, int M,
                                int K, int N);
/* dinp += bf16(dout) @ w16^T; dw += bf16(inp)^T @ bf16(dout); dbias += column
 * sums of dout (fp32, summed in the pass that rounds dout). NULL gradients
 * are skipped. */
void dense_bf16_backward(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                         const uint16_t *w16, int M, int K, int N, uint16_t *staging);
/* The same with dinp written, not accumulated (its first writer: no zeroing
 * pass before it). */
void dense_bf16_backward_first(float *dinp, float *dw, float *dbias, const float *dout, const float *inp,
                               const uint16_t *w16, int M, int K, int N, uint16_t *staging);
/* The backward on bf16(inp)'s row pairs (bf16.h) the caller wrote (once,
 * for several products that read it; needed where dw is not NULL);
 * dout_staging holds dense_bf16_dout_staging(M, N) values of scratch (not
 * overlapping inp_pairs); first: dinp written, not accumulated. The same
 * bits as dense_bf16_backward(_first) on inp. */
void dense_bf16_backward_paired(float *dinp, float *dw, float *dbias, const float *dout, const uint32_t *inp_pairs,
                                const uint16_t *w16, int M, int K, int N, uint16_t *dout_staging, int first);
size_t dense_bf16_dout_staging(int M, int N);

#endif
