/* fp32 -> bf16 conversion for the mixed-precision dense layer (dense_bf16.c):
 * round to nearest, ties to even, denormal inputs to signed zero, NaN kept a
 * (quiet) NaN: exactly what VCVTNEPS2BF16 does, so both paths agree bit for bit.
 * bf16 values are stored as uint16_t (the top half of the fp32 bits). */
#ifndef TLB_OPS_BF16_H
#define TLB_OPS_BF16_H

#include <stddef.h>
#include <stdint.h>

/* Whether this CPU converts and multiplies bf16 natively (AVX512_BF16): the
 * condition for mixed precision to pay here (BENCHMARKS.md). */
int bf16_native(void);

/* One value, in plain C: the reference the vector path is tested against. */
uint16_t bf16_from_f32(float x);
float bf16_to_f32(uint16_t h);

/* dst[i] = bf16(src[i]) for n values: vectorized with AVX512_BF16 when the
 * CPU has it, the scalar rule otherwise. */
void bf16_convert(uint16_t *dst, const float *src, size_t n);

/* Row pairs: the operand of VDPBF16PS for a product summed over rows (the
 * weight gradient, dense_bf16_dw.h), which sums two adjacent rows a step:
 * pairs[p][j] = bf16(row 2p)[j] | bf16(row 2p + 1)[j] << 16, an odd last row
 * paired with zero. The passes below write them while they round, so no
 * pass packs them from a rounded tensor. bf16_pairs_len: the uint16 values
 * they take (rounded up to 64 bytes); bf16_pack_pairs: the layout's
 * definition in plain C, from rounded rows. */
size_t bf16_pairs_len(size_t rows, size_t cols);
void bf16_pack_pairs(uint32_t *pairs, const uint16_t *src16, size_t rows, size_t cols);

/* bf16(src) over rows x cols into dst (row-major) and pairs (row pairs),
 * each where not NULL; where colsum is not NULL, colsum[j] += src[r][j] for
 * every row in order (fp32: the column sums of a bias gradient, in the pass
 * that reads src anyway). */
void bf16_convert_sums(uint16_t *dst, uint32_t *pairs, float *colsum, const float *src, size_t rows, size_t cols);

/* bf16((x[r][j] - mean[r]) * rstd[r]) over rows x cols into dst and pairs
 * (as bf16_convert_sums): a unit LayerNorm's output (gamma 1, beta 0)
 * rebuilt from its statistics and rounded in one pass, the same bits as
 * layernorm_apply with unit gamma and zero beta followed by bf16_convert,
 * without the fp32 tensor between. */
void bf16_convert_normalised(uint16_t *dst, uint32_t *pairs, const float *x, const float *mean, const float *rstd,
                             size_t rows, size_t cols);

#endif
