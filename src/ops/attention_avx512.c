/* Attention core with AVX-512, one (sample, head) at a time like the
 * reference: the Tq x Tk score (and dprob) dot products are formed 16 at a
 * time in the flattened [Tq*Tk] order of probs and reduced with one 16-way
 * transpose-add; softmax, dropout and the row combinations (P V, dS K, ...)
 * run over K in zmm chunks with masked tails. The dropout mask is the
 * counter-based one of dropout_mask.h, vectorized bit-exactly. */
#include "ops/impls.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "ops/dropout_mask.h"
#include "ops/vmath_avx512.h"

static inline __mmask16 lanes(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* r[l] = horizontal sum of v[l], l < 16 */
static inline __m512 reduce16(const __m512 v[16])
{
    __m512 s[8], t[4];
    for (int k = 0; k < 8; k++)
        s[k] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * k], v[2 * k + 1]),
                             _mm512_unpackhi_ps(v[2 * k], v[2 * k + 1]));
    for (int k = 0; k < 4; k++)
        t[k] = _mm512_add_ps(_mm512_shuffle_ps(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(s[2 * k], s[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    const __m512 x01 = _mm512_add_ps(_mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_f32x4(t[0], t[1], _MM_SHUFFLE(3, 1, 3, 1)));
    const __m512 x23 = _mm512_add_ps(_mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(2, 0, 2, 0)),
                                     _mm512_shuffle_f32x4(t[2], t[3], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_add_ps(_mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x01, x23, _MM_SHUFFLE(3, 1, 3, 1)));
}

/* out[i*Tk + j] = scale * <a_i, b_j> over K, rows `stride` floats apart. */
static void pair_dots(float *out, const float *a, const float *b, size_t stride, int Tq, int Tk,
                      int K, float scale)
{
    const int np = Tq * Tk;
    for (int p0 = 0; p0 < np; p0 += 16) {
        __m512 acc[16];
        const int cnt = np - p0 < 16 ? np - p0 : 16;
        for (int l = 0; l < 16; l++) {
            acc[l] = _mm512_setzero_ps();
            if (l >= cnt) continue;
            const float *x = a + (size_t)((p0 + l) / Tk) * stride;
            const float *y = b + (size_t)((p0 + l) % Tk) * stride;
            for (int c = 0; c < K; c += 16) {
                const __mmask16 m = lanes(K - c);
                acc[l] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + c),
                                         _mm512_maskz_loadu_ps(m, y + c), acc[l]);
            }
        }
        _mm512_mask_storeu_ps(out + p0, lanes(cnt),
                              _mm512_mul_ps(reduce16(acc), _mm512_set1_ps(scale)));
    }
}

/* dst[0..K) (+)= sum_r coef[r * cs] * rows[r * rs + 0..K) */
static void combine(float *dst, int accumulate, const float *coef, size_t cs, const float *rows,
                    size_t rs, int nrows, int K)
{
    for (int c0 = 0; c0 < K; c0 += 64) {
        __mmask16 m[4];
        __m512 acc[4];
        for (int v = 0; v < 4; v++) {
            m[v] = lanes(K - c0 - 16 * v);
            acc[v] = accumulate ? _mm512_maskz_loadu_ps(m[v], dst + c0 + 16 * v)
                                : _mm512_setzero_ps();
        }
        for (int r = 0; r < nrows; r++) {
            const __m512 w = _mm512_set1_ps(coef[(size_t)r * cs]);
            const float *row = rows + (size_t)r * rs + c0;
            for (int v = 0; v < 4; v++)
                acc[v] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m[v], row + 16 * v), acc[v]);
        }
        for (int v = 0; v < 4; v++) _mm512_mask_storeu_ps(dst + c0 + 16 * v, m[v], acc[v]);
    }
}

static inline __m512i mix64(__m512i z)
{
    z = _mm512_add_epi64(z, _mm512_set1_epi64((long long)0x9e3779b97f4a7c15ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 30)),
                           _mm512_set1_epi64((long long)0xbf58476d1ce4e5b9ULL));
    z = _mm512_mullo_epi64(_mm512_xor_si512(z, _mm512_srli_epi64(z, 27)),
                           _mm512_set1_epi64((long long)0x94d049bb133111ebULL));
    return _mm512_xor_si512(z, _mm512_srli_epi64(z, 31));
}

/* rng_uniform(key, n0 + l) for l < 8, exactly as the scalar version */
static inline __m256 uniform8(uint64_t key, uint64_t n0)
{
    const __m512i n = _mm512_add_epi64(_mm512_set1_epi64((long long)n0),
                                       _mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7));
    const __m512i z = mix64(_mm512_add_epi64(_mm512_set1_epi64((long long)key), mix64(n)));
    return _mm256_mul_ps(_mm512_cvtepu64_ps(_mm512_srli_epi64(z, 40)),
                         _mm256_set1_ps(1.0f / 16777216.0f));
}

/* dropout_scale_at(d, key, elem0 + l) for l < 16 */
static inline __m512 keep16(const dropout_ctx *d, uint64_t key, uint64_t elem0)
{
    const __m512 u = _mm512_insertf32x8(_mm512_castps256_ps512(uniform8(key, elem0)),
                                        uniform8(key, elem0 + 8), 1);
    const __mmask16 drop = _mm512_cmp_ps_mask(u, _mm512_set1_ps(d->rate), _CMP_LT_OQ);
    return _mm512_maskz_mov_ps((__mmask16)~drop, _mm512_set1_ps(1.0f / (1.0f - d->rate)));
}

/* Per-thread scratch, grown on demand (no allocation in steady state). */
static _Thread_local float *tbuf;
static _Thread_local size_t tcap;

static float *scratch(size_t n)
{
    if (n > tcap) {
        free(tbuf);
        tbuf = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
        if (!tbuf) abort();
        tcap = n;
    }
    return tbuf;
}

static void softmax_rows(float *p, int Tq, int Tk)
{
    for (int i = 0; i < Tq; i++) {
        float *row = p + (size_t)i * Tk;
        __m512 mx = _mm512_set1_ps(-INFINITY);
        for (int j = 0; j < Tk; j += 16)
            mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, lanes(Tk - j), row + j));
        const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 s = _mm512_setzero_ps();
        for (int j = 0; j < Tk; j += 16) {
            const __mmask16 k = lanes(Tk - j);
            const __m512 e = _mm512_maskz_mov_ps(k, exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, row + j), m)));
            s = _mm512_add_ps(s, e);
            _mm512_mask_storeu_ps(row + j, k, e);
        }
        const __m512 sum = _mm512_set1_ps(_mm512_reduce_add_ps(s));
        for (int j = 0; j < Tk; j += 16) {
            const __mmask16 k = lanes(Tk - j);
            _mm512_mask_storeu_ps(row + j, k, _mm512_div_ps(_mm512_maskz_loadu_ps(k, row + j), sum));
        }
    }
}

static void attention_forward_avx512(float *out, float *probs, const float *q, const float *k,
                                     const float *v, int B, int Tq, int Tk, int H, int K,
                                     const dropout_ctx *drop)
{
    const int HK = H * K, np = Tq * Tk;
    const float scale = 1.0f / sqrtf((float)K);
    const int active = dropout_active(drop);
#pragma omp parallel for collapse(2) schedule(static) if (B * H > 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const size_t qo = (size_t)b * Tq * HK + (size_t)h * K;
            const size_t ko = (size_t)b * Tk * HK + (size_t)h * K;
            float *p = probs + ((size_t)b * H + h) * np;
            pair_dots(p, q + qo, k + ko, HK, Tq, Tk, K, scale);
            softmax_rows(p, Tq, Tk);
            const float *pd = p;
            if (active) { /* dropped-out copy of the probabilities */
                const uint64_t skey = dropout_sample_key(drop, b);
                float *buf = scratch((size_t)np);
                for (int p0 = 0; p0 < np; p0 += 16) {
                    const __mmask16 m = lanes(np - p0);
                    const __m512 keep = keep16(drop, skey, (uint64_t)h * np + p0);
                    _mm512_mask_storeu_ps(buf + p0, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + p0), keep));
                }
                pd = buf;
            }
            for (int i = 0; i < Tq; i++)
                combine(out + qo + (size_t)i * HK, 0, pd + (size_t)i * Tk, 1, v + ko, HK, Tk, K);
        }
    }
}

static void attention_backward_avx512(float *dq, float *dk, float *dv, const float *dout,
                                      const float *q, const float *k, const float *v,
                                      const float *probs, int B, int Tq, int Tk, int H, int K,
                                      const dropout_ctx *drop)
{
    const int HK = H * K, np = Tq * Tk;
    const float scale = 1.0f / sqrtf((float)K);
    const int active = dropout_active(drop);
    if (!dq && !dk && !dv) return;
#pragma omp parallel for collapse(2) schedule(static) if (B * H > 1)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const size_t qo = (size_t)b * Tq * HK + (size_t)h * K;
            const size_t ko = (size_t)b * Tk * HK + (size_t)h * K;
            const float *p = probs + ((size_t)b * H + h) * np;
            float *ds = scratch(2 * (size_t)np), *pk = ds + np;
            /* dp = dout v^T, then through dropout: dp *= keep, pk = p * keep */
            pair_dots(ds, dout + qo, v + ko, HK, Tq, Tk, K, 1.0f);
            const uint64_t skey = active ? dropout_sample_key(drop, b) : 0;
            for (int p0 = 0; p0 < np; p0 += 16) {
                const __mmask16 m = lanes(np - p0);
                __m512 keep = active ? keep16(drop, skey, (uint64_t)h * np + p0) : _mm512_set1_ps(1.0f);
                _mm512_mask_storeu_ps(ds + p0, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, ds + p0), keep));
                _mm512_mask_storeu_ps(pk + p0, m, _mm512_mul_ps(_mm512_maskz_loadu_ps(m, p + p0), keep));
            }
            /* softmax backward: ds = p (dp - <dp, p>) scale, row by row */
            for (int i = 0; i < Tq; i++) {
                float *d = ds + (size_t)i * Tk;
                const float *pr = p + (size_t)i * Tk;
                __m512 acc = _mm512_setzero_ps();
                for (int j = 0; j < Tk; j += 16) {
                    const __mmask16 m = lanes(Tk - j);
                    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, d + j), _mm512_maskz_loadu_ps(m, pr + j), acc);
                }
                const __m512 dot = _mm512_set1_ps(_mm512_reduce_add_ps(acc));
                for (int j = 0; j < Tk; j += 16) {
                    const __mmask16 m = lanes(Tk - j);
                    const __m512 x = _mm512_mul_ps(_mm512_maskz_loadu_ps(m, pr + j),
                                                   _mm512_sub_ps(_mm512_maskz_loadu_ps(m, d + j), dot));
                    _mm512_mask_storeu_ps(d + j, m, _mm512_mul_ps(x, _mm512_set1_ps(scale)));
                }
            }
            if (dv)
                for (int j = 0; j < Tk; j++)
                    combine(dv + ko + (size_t)j * HK, 1, pk + j, Tk, dout + qo, HK, Tq, K);
            if (dq)
                for (int i = 0; i < Tq; i++)
                    combine(dq + qo + (size_t)i * HK, 1, ds + (size_t)i * Tk, 1, k + ko, HK, Tk, K);
            if (dk)
                for (int j = 0; j < Tk; j++)
                    combine(dk + ko + (size_t)j * HK, 1, ds + j, Tk, q + qo, HK, Tq, K);
        }
    }
}

const attention_op attention_avx512 = {attention_forward_avx512, attention_backward_avx512};
