/* Mixed precision's weight gradient on VDPBF16PS (dense_bf16_dw.h). */
#include "ops/dense_bf16_dw.h"

#include <immintrin.h>

#include "ops/thread_scratch.h"

static _Thread_local thread_scratch pairs_scratch;

/* uint32 pairs (floats' size) the packed operands of M rows take. */
static size_t pairs_need(int M, int K, int N) { return (size_t)((M + 1) / 2) * ((size_t)K + (size_t)N); }

int dense_bf16_dw_prepare(int M, int K, int N, tlb_error *err)
{
    if (M <= 0 || K <= 0 || N <= 0) return 0;
    if (thread_scratch_reserve(&pairs_scratch, pairs_need(M, K, N)) != 0)
        return tlb_fail(err, "out of memory for the row pairs of a [%d,%d]x[%d,%d] weight gradient", K, M, M, N);
    return 0;
}

/* dst[p][c] = src[2p][c] | src[2p + 1][c] << 16 over the C columns of M rows
 * (a zero row after an odd last one): VDPBF16PS's operand, the pair of
 * adjacent rows it sums. */
static void pack_row_pairs(uint32_t *dst, const uint16_t *src, int M, int C)
{
    const __m512i interleave = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7,
                                                22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
    for (int p = 0; p < (M + 1) / 2; p++) {
        const uint16_t *r0 = src + (size_t)(2 * p) * C;
        const int second = 2 * p + 1 < M;
        uint32_t *d = dst + (size_t)p * C;
        for (int c = 0; c < C; c += 16) {
            const __mmask16 k = C - c >= 16 ? 0xffff : (__mmask16)((1u << (C - c)) - 1);
            const __m256i x0 = _mm256_maskz_loadu_epi16(k, r0 + c);
            const __m256i x1 = second ? _mm256_maskz_loadu_epi16(k, r0 + C + c) : _mm256_setzero_si256();
            const __m512i x = _mm512_inserti64x4(_mm512_castsi256_si512(x0), x1, 1);
            _mm512_mask_storeu_epi32(d + c, k, _mm512_permutexvar_epi16(interleave, x));
        }
    }
}

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

void dense_bf16_dw(float *dw, const uint16_t *inp16, const uint16_t *dout16, int M, int K, int N)
{
    if (M <= 0 || K <= 0 || N <= 0) return;
    const int P = (M + 1) / 2;
    uint32_t *pairs = (uint32_t *)thread_scratch_get(&pairs_scratch, pairs_need(M, K, N));
    uint32_t *ap = pairs, *bp = pairs + (size_t)P * K;
    pack_row_pairs(ap, inp16, M, K);
    pack_row_pairs(bp, dout16, M, N);
    for (int n0 = 0; n0 < N; n0 += 16 * NB) {
        const int nc = N - n0 < 16 * NB ? N - n0 : 16 * NB, nb = (nc + 15) / 16;
        const int rest = nc - 16 * (nb - 1);
        const __mmask16 last = rest >= 16 ? 0xffff : (__mmask16)((1u << rest) - 1);
        for (int k0 = 0; k0 < K; k0 += KB) {
            const int kb = K - k0 < KB ? K - k0 : KB;
            float *c = dw + (size_t)k0 * N + n0;
            const uint32_t *a = ap + k0, *b = bp + n0;
            switch (nb) {
            case 1: DW_TILE_KB(1); break;
            case 2: DW_TILE_KB(2); break;
            case 3: DW_TILE_KB(3); break;
            default: DW_TILE_KB(NB); break;
            }
        }
    }
}
