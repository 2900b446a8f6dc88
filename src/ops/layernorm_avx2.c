/* Layer normalisation with AVX2: each row in ymm chunks (masked tail), rows
 * split across threads; dgamma/dbeta reduce over rows in order. */
#include "ops/impls.h"

#include <immintrin.h>
#include <math.h>

#define LN_EPS 1e-5f
#define PARALLEL_MIN 16384

static inline __m256i lanes(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline float hsum(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

#define LD(p, k) _mm256_maskload_ps(p, k)

static void layernorm_forward_avx2(float *out, float *mean, float *rstd, const float *inp,
                                   const float *gamma, const float *beta, int M, int D)
{
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D;
        float *o = out + (size_t)m * D;
        __m256 s = _mm256_setzero_ps();
        for (int d = 0; d < D; d += 8) s = _mm256_add_ps(s, LD(x + d, lanes(D - d)));
        const float mu = hsum(s) / (float)D;
        const __m256 vmu = _mm256_set1_ps(mu);
        __m256 v = _mm256_setzero_ps();
        for (int d = 0; d < D; d += 8) {
            const __m256i k = lanes(D - d);
            const __m256 c = _mm256_and_ps(_mm256_sub_ps(LD(x + d, k), vmu), _mm256_castsi256_ps(k));
            v = _mm256_fmadd_ps(c, c, v);
        }
        const float rs = 1.0f / sqrtf(hsum(v) / (float)D + LN_EPS);
        const __m256 vrs = _mm256_set1_ps(rs);
        for (int d = 0; d < D; d += 8) {
            const __m256i k = lanes(D - d);
            const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LD(x + d, k), vmu), vrs);
            _mm256_maskstore_ps(o + d, k, _mm256_fmadd_ps(xh, LD(gamma + d, k), LD(beta + d, k)));
        }
        mean[m] = mu;
        rstd[m] = rs;
    }
}

static void layernorm_backward_avx2(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                    const float *inp, const float *gamma, const float *mean,
                                    const float *rstd, int M, int D)
{
    if (dinp) {
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *g = dout + (size_t)m * D;
            float *dx = dinp + (size_t)m * D;
            const __m256 mu = _mm256_set1_ps(mean[m]), rs = _mm256_set1_ps(rstd[m]);
            __m256 a = _mm256_setzero_ps(), b = _mm256_setzero_ps();
            for (int d = 0; d < D; d += 8) {
                const __m256i k = lanes(D - d);
                const __m256 dn = _mm256_mul_ps(LD(g + d, k), LD(gamma + d, k));
                const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LD(x + d, k), mu), rs);
                a = _mm256_add_ps(a, dn);
                b = _mm256_fmadd_ps(dn, xh, b);
            }
            const __m256 mdn = _mm256_set1_ps(hsum(a) / (float)D);
            const __m256 mdx = _mm256_set1_ps(hsum(b) / (float)D);
            for (int d = 0; d < D; d += 8) {
                const __m256i k = lanes(D - d);
                const __m256 dn = _mm256_mul_ps(LD(g + d, k), LD(gamma + d, k));
                const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LD(x + d, k), mu), rs);
                const __m256 t = _mm256_fnmadd_ps(xh, mdx, _mm256_sub_ps(dn, mdn));
                _mm256_maskstore_ps(dx + d, k, _mm256_fmadd_ps(t, rs, LD(dx + d, k)));
            }
        }
    }
    if (dgamma || dbeta) {
        for (int d = 0; d < D; d += 8) {
            const __m256i k = lanes(D - d);
            __m256 sg = dgamma ? LD(dgamma + d, k) : _mm256_setzero_ps();
            __m256 sb = dbeta ? LD(dbeta + d, k) : _mm256_setzero_ps();
            for (int m = 0; m < M; m++) {
                const __m256 g = LD(dout + (size_t)m * D + d, k);
                const __m256 xh = _mm256_mul_ps(_mm256_sub_ps(LD(inp + (size_t)m * D + d, k),
                                                              _mm256_set1_ps(mean[m])),
                                                _mm256_set1_ps(rstd[m]));
                sg = _mm256_fmadd_ps(g, xh, sg);
                sb = _mm256_add_ps(sb, g);
            }
            if (dgamma) _mm256_maskstore_ps(dgamma + d, k, sg);
            if (dbeta) _mm256_maskstore_ps(dbeta + d, k, sb);
        }
    }
}

const layernorm_op layernorm_avx2 = {layernorm_forward_avx2, layernorm_backward_avx2};
