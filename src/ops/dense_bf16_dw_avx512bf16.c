/* Mixed precision's weight gradient on VDPBF16PS (dense_bf16_dw.h). */
#include "ops/dense_bf16_dw.h"

#include <immintrin.h>

#define KB 6 /* rows of dw a tile: 6 x 4 accumulators, 4 operand loads and 6 broadcasts a row pair */
#define NB 4

/* dw[kb rows, nb vectors] += over all P row pairs, in order; the last
 * vector's lanes `last`. */
static inline __attribute__((always_inline)) void dw_tile(float *dw, int ldw, const uint32_t *a, int lda,
                                                          const uint32_t *b, int ldb, int P, const int kb,
                                                          const int nb, __mmask16 last)
{
    __m512 acc[KB][NB];
    for (int r = 0; r < kb; r++)
        for (int j = 0; j < nb; j++) acc[r][j] = _mm512_setzero_ps();
    for (int p = 0; p < P; p++) {
        __m512bh bv[NB];
        for (int j = 0; j < nb; j++) /* the last vector's lanes only: a row may end inside it */
            bv[j] = (__m512bh)_mm512_maskz_loadu_epi32(j == nb - 1 ? last : 0xffff, b + (size_t)p * ldb + 16 * j);
        for (int r = 0; r < kb; r++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[(size_t)p * lda + r]);
            for (int j = 0; j < nb; j++) acc[r][j] = _mm512_dpbf16_ps(acc[r][j], av, bv[j]);
        }
    }
    for (int r = 0; r < kb; r++)
        for (int j = 0; j < nb; j++) {
            float *c = dw + (size_t)r * ldw + 16 * j;
            const __mmask16 k = j == nb - 1 ? last : 0xffff;
            _mm512_mask_storeu_ps(c, k, _mm512_add_ps(_mm512_maskz_loadu_ps(k, c), acc[r][j]));
        }
}

#define DW_TILE_KB(nb)                                                        \
    switch (kb) {                                                             \
    case 1: dw_tile(c, N, a, K, b, N, P, 1, nb, last); break;                 \
    case 2: dw_tile(c, N, a, K, b, N, P, 2, nb, last); break;                 \
    case 3: dw_tile(c, N, a, K, b, N, P, 3, nb, last); break;                 \
    case 4: dw_tile(c, N, a, K, b, N, P, 4, nb, last); break;                 \
    case 5: dw_tile(c, N, a, K, b, N, P, 5, nb, last); break;                 \
    default: dw_tile(c, N, a, K, b, N, P, KB, nb, last); break;               \
    }

void dense_bf16_dw(float *dw, const uint32_t *inp_pairs, const uint32_t *dout_pairs, int M, int K, int N)
{
    if (M <= 0 || K <= 0 || N <= 0) return;
    const int P = (M + 1) / 2;
    for (int n0 = 0; n0 < N; n0 += 16 * NB) {
        const int nc = N - n0 < 16 * NB ? N - n0 : 16 * NB, nb = (nc + 15) / 16;
        const int rest = nc - 16 * (nb - 1);
        const __mmask16 last = rest >= 16 ? 0xffff : (__mmask16)((1u << rest) - 1);
        for (int k0 = 0; k0 < K; k0 += KB) {
            const int kb = K - k0 < KB ? K - k0 : KB;
            float *c = dw + (size_t)k0 * N + n0;
            const uint32_t *a = inp_pairs + k0, *b = dout_pairs + n0;
            switch (nb) {
            case 1: DW_TILE_KB(1); break;
            case 2: DW_TILE_KB(2); break;
            case 3: DW_TILE_KB(3); break;
            default: DW_TILE_KB(NB); break;
            }
        }
    }
}
