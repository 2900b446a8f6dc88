/* Layer normalisation with AVX-512: each row in zmm chunks (masked tail),
 * rows split across threads; dgamma/dbeta reduce over rows in order. */
#include "ops/impls.h"

#include <immintrin.h>
#include <math.h>

#define LN_EPS 1e-5f
#define PARALLEL_MIN 16384

static inline __mmask16 lanes(int n)
{
    return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u);
}

static void layernorm_forward_avx512(float *out, float *mean, float *rstd, const float *inp,
                                     const float *gamma, const float *beta, int M, int D)
{
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
    for (int m = 0; m < M; m++) {
        const float *x = inp + (size_t)m * D;
        float *o = out + (size_t)m * D;
        __m512 s = _mm512_setzero_ps();
        for (int d = 0; d < D; d += 16) s = _mm512_add_ps(s, _mm512_maskz_loadu_ps(lanes(D - d), x + d));
        const float mu = _mm512_reduce_add_ps(s) / (float)D;
        const __m512 vmu = _mm512_set1_ps(mu);
        __m512 v = _mm512_setzero_ps();
        for (int d = 0; d < D; d += 16) {
            const __mmask16 k = lanes(D - d);
            const __m512 c = _mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + d), vmu);
            v = _mm512_fmadd_ps(c, c, v);
        }
        const float rs = 1.0f / sqrtf(_mm512_reduce_add_ps(v) / (float)D + LN_EPS);
        const __m512 vrs = _mm512_set1_ps(rs);
        for (int d = 0; d < D; d += 16) {
            const __mmask16 k = lanes(D - d);
            const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + d), vmu), vrs);
            _mm512_mask_storeu_ps(o + d, k, _mm512_fmadd_ps(xh, _mm512_maskz_loadu_ps(k, gamma + d),
                                                            _mm512_maskz_loadu_ps(k, beta + d)));
        }
        mean[m] = mu;
        rstd[m] = rs;
    }
}

static void layernorm_backward_avx512(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                      const float *inp, const float *gamma, const float *mean,
                                      const float *rstd, int M, int D)
{
    if (dinp) {
#pragma omp parallel for schedule(static) if ((long)M * D >= PARALLEL_MIN)
        for (int m = 0; m < M; m++) {
            const float *x = inp + (size_t)m * D, *g = dout + (size_t)m * D;
            float *dx = dinp + (size_t)m * D;
            const __m512 mu = _mm512_set1_ps(mean[m]), rs = _mm512_set1_ps(rstd[m]);
            __m512 a = _mm512_setzero_ps(), b = _mm512_setzero_ps();
            for (int d = 0; d < D; d += 16) {
                const __mmask16 k = lanes(D - d);
                const __m512 dn = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + d), _mm512_maskz_loadu_ps(k, gamma + d));
                const __m512 xh = _mm512_mul_ps(_mm512_maskz_sub_ps(k, _mm512_maskz_loadu_ps(k, x + d), mu), rs);
                a = _mm512_add_ps(a, dn);
                b = _mm512_fmadd_ps(dn, xh, b);
            }
            const __m512 mdn = _mm512_set1_ps(_mm512_reduce_add_ps(a) / (float)D);
            const __m512 mdx = _mm512_set1_ps(_mm512_reduce_add_ps(b) / (float)D);
            for (int d = 0; d < D; d += 16) {
                const __mmask16 k = lanes(D - d);
                const __m512 dn = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + d), _mm512_maskz_loadu_ps(k, gamma + d));
                const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + d), mu), rs);
                const __m512 t = _mm512_fnmadd_ps(xh, mdx, _mm512_sub_ps(dn, mdn));
                _mm512_mask_storeu_ps(dx + d, k, _mm512_fmadd_ps(t, rs, _mm512_maskz_loadu_ps(k, dx + d)));
            }
        }
    }
    if (dgamma || dbeta) {
        for (int d = 0; d < D; d += 16) {
            const __mmask16 k = lanes(D - d);
            __m512 sg = dgamma ? _mm512_maskz_loadu_ps(k, dgamma + d) : _mm512_setzero_ps();
            __m512 sb = dbeta ? _mm512_maskz_loadu_ps(k, dbeta + d) : _mm512_setzero_ps();
            for (int m = 0; m < M; m++) {
                const __m512 g = _mm512_maskz_loadu_ps(k, dout + (size_t)m * D + d);
                const __m512 xh = _mm512_mul_ps(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, inp + (size_t)m * D + d),
                                                              _mm512_set1_ps(mean[m])),
                                                _mm512_set1_ps(rstd[m]));
                sg = _mm512_fmadd_ps(g, xh, sg);
                sb = _mm512_add_ps(sb, g);
            }
            if (dgamma) _mm512_mask_storeu_ps(dgamma + d, k, sg);
            if (dbeta) _mm512_mask_storeu_ps(dbeta + d, k, sb);
        }
    }
}

const layernorm_op layernorm_avx512 = {layernorm_forward_avx512, layernorm_backward_avx512};
