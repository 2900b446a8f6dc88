/* Attention core with AVX2, structured like attention_avx512.c: score and
 * dprob dot products 8 at a time in the flattened [Tq*Tk] order with one
 * 8-way transpose-add, vector softmax, row combinations over K in ymm chunks.
 * AVX2 has no 64-bit multiply, so the dropout mask comes from the scalar
 * dropout_scale_at (identical by construction). */
#include "ops/impls.h"

#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "ops/dropout_mask.h"
#include "ops/vmath_avx2.h"

static inline __m256i lanes(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

#define LD(p, k) _mm256_maskload_ps(p, k)

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float hmax(__m256 v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* r[l] = horizontal sum of v[l], l < 8 */
static inline __m256 reduce8(const __m256 v[8])
{
    const __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
}

/* out[i*Tk + j] = scale * <a_i, b_j> over K, rows `stride` floats apart. */
static void pair_dots(float *out, const float *a, const float *b, size_t stride, int Tq, int Tk,
                      int K, float scale)
{
    const int np = Tq * Tk;
    for (int p0 = 0; p0 < np; p0 += 8) {
        __m256 acc[8];
        const int cnt = np - p0 < 8 ? np - p0 : 8;
        for (int l = 0; l < 8; l++) {
            acc[l] = _mm256_setzero_ps();
            if (l >= cnt) continue;
            const float *x = a + (size_t)((p0 + l) / Tk) * stride;
            const float *y = b + (size_t)((p0 + l) % Tk) * stride;
            for (int c = 0; c < K; c += 8) {
                const __m256i m = lanes(K - c);
                acc[l] = _mm256_fmadd_ps(LD(x + c, m), LD(y + c, m), acc[l]);
            }
        }
        _mm256_maskstore_ps(out + p0, lanes(cnt), _mm256_mul_ps(reduce8(acc), _mm256_set1_ps(scale)));
    }
}

/* dst[0..K) (+)= sum_r coef[r * cs] * rows[r * rs + 0..K) */
static void combine(float *dst, int accumulate, const float *coef, size_t cs, const float *rows,
                    size_t rs, int nrows, int K)
{
    for (int c0 = 0; c0 < K; c0 += 32) {
        __m256i m[4];
        __m256 acc[4];
        for (int v = 0; v < 4; v++) {
            m[v] = lanes(K - c0 - 8 * v);
            acc[v] = accumulate ? LD(dst + c0 + 8 * v, m[v]) : _mm256_setzero_ps();
        }
        for (int r = 0; r < nrows; r++) {
            const __m256 w = _mm256_set1_ps(coef[(size_t)r * cs]);
            const float *row = rows + (size_t)r * rs + c0;
            for (int v = 0; v < 4; v++) acc[v] = _mm256_fmadd_ps(w, LD(row + 8 * v, m[v]), acc[v]);
        }
        for (int v = 0; v < 4; v++) _mm256_maskstore_ps(dst + c0 + 8 * v, m[v], acc[v]);
    }
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
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    for (int i = 0; i < Tq; i++) {
        float *row = p + (size_t)i * Tk;
        __m256 mx = ninf;
        for (int j = 0; j < Tk; j += 8) {
            const __m256i k = lanes(Tk - j);
            mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, LD(row + j, k), _mm256_castsi256_ps(k)));
        }
        const __m256 m = _mm256_set1_ps(hmax(mx));
        __m256 s = _mm256_setzero_ps();
        for (int j = 0; j < Tk; j += 8) {
            const __m256i k = lanes(Tk - j);
            const __m256 e = _mm256_and_ps(exp256(_mm256_sub_ps(LD(row + j, k), m)), _mm256_castsi256_ps(k));
            s = _mm256_add_ps(s, e);
            _mm256_maskstore_ps(row + j, k, e);
        }
        const __m256 sum = _mm256_set1_ps(hsum(s));
        for (int j = 0; j < Tk; j += 8) {
            const __m256i k = lanes(Tk - j);
            _mm256_maskstore_ps(row + j, k, _mm256_div_ps(LD(row + j, k), sum));
        }
    }
}

static void attention_forward_avx2(float *out, float *probs, const float *q, const float *k,
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
            if (active) {
                const uint64_t skey = dropout_sample_key(drop, b);
                float *buf = scratch((size_t)np);
                for (int e = 0; e < np; e++)
                    buf[e] = p[e] * dropout_scale_at(drop, skey, (size_t)h * np + e);
                pd = buf;
            }
            for (int i = 0; i < Tq; i++)
                combine(out + qo + (size_t)i * HK, 0, pd + (size_t)i * Tk, 1, v + ko, HK, Tk, K);
        }
    }
}

static void attention_backward_avx2(float *dq, float *dk, float *dv, const float *dout,
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
            pair_dots(ds, dout + qo, v + ko, HK, Tq, Tk, K, 1.0f);
            if (active) {
                const uint64_t skey = dropout_sample_key(drop, b);
                for (int e = 0; e < np; e++) {
                    const float keep = dropout_scale_at(drop, skey, (size_t)h * np + e);
                    ds[e] *= keep;
                    pk[e] = p[e] * keep;
                }
            } else {
                for (int e = 0; e < np; e++) pk[e] = p[e];
            }
            for (int i = 0; i < Tq; i++) {
                float *d = ds + (size_t)i * Tk;
                const float *pr = p + (size_t)i * Tk;
                __m256 acc = _mm256_setzero_ps();
                for (int j = 0; j < Tk; j += 8) {
                    const __m256i m = lanes(Tk - j);
                    acc = _mm256_fmadd_ps(LD(d + j, m), LD(pr + j, m), acc);
                }
                const __m256 dot = _mm256_set1_ps(hsum(acc));
                for (int j = 0; j < Tk; j += 8) {
                    const __m256i m = lanes(Tk - j);
                    const __m256 x = _mm256_mul_ps(LD(pr + j, m), _mm256_sub_ps(LD(d + j, m), dot));
                    _mm256_maskstore_ps(d + j, m, _mm256_mul_ps(x, _mm256_set1_ps(scale)));
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

const attention_op attention_avx2 = {attention_forward_avx2, attention_backward_avx2};
