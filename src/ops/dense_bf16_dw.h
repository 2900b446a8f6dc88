/* Mixed precision's weight gradient, dw[K,N] += inp^T[K,M] @ dout[M,N]
 * (bf16 operands, fp32 sums), on AVX512_BF16's VDPBF16PS: both operands in
 * row pairs (bf16.h; VDPBF16PS sums a pair at a time), written by the passes
 * that round them, then tiles of 6 x 64 of dw held in registers over all M
 * rows, summed in row order, so a value does not depend on the tiling or
 * the thread count. oneDNN's bf16 matmul took this product through a
 * transposed operand at 65-76% of the bf16 peak inside a step
 * (BENCHMARKS.md, session 19). */
#ifndef TLB_OPS_DENSE_BF16_DW_H
#define TLB_OPS_DENSE_BF16_DW_H

#include <stdint.h>

/* inp_pairs: [ceil(M/2), K] row pairs of bf16(inp); dout_pairs: [ceil(M/2),
 * N] of bf16(dout). */
void dense_bf16_dw(float *dw, const uint32_t *inp_pairs, const uint32_t *dout_pairs, int M, int K, int N);

#endif
