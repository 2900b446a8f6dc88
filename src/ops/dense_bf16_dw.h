/* Mixed precision's weight gradient, dw[K,N] += inp16^T[K,M] @ dout16[M,N]
 * (bf16 operands, fp32 sums), on AVX512_BF16's VDPBF16PS: both operands
 * packed in pairs of adjacent rows (VDPBF16PS sums a pair at a time), then
 * tiles of 6 x 64 of dw held in registers over all M rows, summed in row
 * order, so a value does not depend on the tiling or the thread count.
 * oneDNN's bf16 matmul took this product through a transposed operand at
 * 65-76% of the bf16 peak inside a step (BENCHMARKS.md, session 19). */
#ifndef TLB_OPS_DENSE_BF16_DW_H
#define TLB_OPS_DENSE_BF16_DW_H

#include <stdint.h>

#include "util/error.h"

/* Plan time: the calling thread's packing scratch for M rows. */
int dense_bf16_dw_prepare(int M, int K, int N, tlb_error *err);

void dense_bf16_dw(float *dw, const uint16_t *inp16, const uint16_t *dout16, int M, int K, int N);

#endif
