/* The FFN of mixed precision as one stage: out = res + dropout(gelu(inp @ w1
 * + b1) @ w2 + b2) with bf16 products on oneDNN (dense_bf16.h's; the weight
 * gradients on dense_bf16_dw.h), and the elementwise work folded into the
 * passes that round the products' operands to bf16:
 *   forward:  h = bf16(inp) @ w1 + b1 (saved in fp32, or in bf16 by the next
 *             pass); one pass g16 = bf16(gelu(h)), fc2's operand (no fp32
 *             gelu(h)); out = g16 @ w2 + b2; one pass out = res + keep * out;
 *   backward: one pass over dout: dres = dout, dy = keep * dout into bf16
 *             (and its row pairs, bf16.h), db2 += its column sums; dg = dy16
 *             @ w2^T (written, no zeroing pass); one pass over dg and h: dh16
 *             = bf16(dg gelu'(h)) (and its pairs), the pairs of bf16(gelu(h))
 *             for dw2, db1 += dh's column sums; then dw2, dinp (written) and
 *             dw1 (x rounded straight into pairs) from those operands.
 * Each value is the unfused mixed-precision ops' (the avx512 gelu, dropout
 * and residual, dense_bf16.h, the same products): the same numbers,
 * with a column sum's rows added in order (a thread owns whole columns), so
 * the result does not depend on the thread count either. AVX512_BF16 only
 * (mixed precision runs nowhere else); M, D, F > 0. */
#ifndef TLB_OPS_FFN_BF16_H
#define TLB_OPS_FFN_BF16_H

#include <stddef.h>
#include <stdint.h>

#include "ops/ops.h"
#include "util/error.h"

/* bf16 values of staging one call over M rows needs (forward or backward). */
size_t ffn_bf16_staging(int M, int D, int F);

/* Plan time: the calling thread's oneDNN primitives for M rows. */
int ffn_bf16_prepare(int M, int D, int F, tlb_error *err);

/* out[M,D] and h[M,F] (M = B T rows, T per sample for the dropout mask);
 * w1_16[D,F], w2_16[F,D] the bf16 weights. Where h16 is not NULL it gets
 * bf16(h) (bf16.h's rounding), the copy the backward then reads (h is then
 * the caller's scratch); the forward's numbers do not change. */
void ffn_bf16_forward(float *out, float *h, uint16_t *h16, const float *inp, const uint16_t *w1_16,
                      const float *b1, const uint16_t *w2_16, const float *b2, const float *res, int B, int T, int D,
                      int F, const dropout_ctx *drop, uint16_t *staging);

/* dinp and dres written (their first writer), dw1, db1, dw2, db2
 * accumulated; dg[M,F] is fp32 workspace; h from h16 (widened) where h16
 * is not NULL, else from h. */
void ffn_bf16_backward_first(float *dinp, float *dw1, float *db1, float *dw2, float *db2, float *dres,
                             const float *dout, const float *inp, const uint16_t *w1_16, const uint16_t *w2_16,
                             const float *h, const uint16_t *h16, float *dg, int B, int T, int D, int F,
                             const dropout_ctx *drop, uint16_t *staging);

#endif
