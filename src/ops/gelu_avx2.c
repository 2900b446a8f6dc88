/* Exact GELU with AVX2: 8 values per step through vmath_avx2.h's erf and exp. */
#include "ops/impls.h"

#include <immintrin.h>

#include "ops/vmath_avx2.h"

#define PARALLEL_MIN 32768

static inline __m256 tail_mask(size_t n)
{
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32((int)n),
                                                  _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

static inline __m256 gelu_cdf(__m256 x)
{
    const __m256 e = erf256(_mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f)));
    return _mm256_fmadd_ps(_mm256_set1_ps(0.5f), e, _mm256_set1_ps(0.5f));
}

static inline __m256 gelu_grad(__m256 x)
{
    const __m256 pdf = _mm256_mul_ps(_mm256_set1_ps(0.3989422804014327f),
                                     exp256(_mm256_mul_ps(_mm256_set1_ps(-0.5f), _mm256_mul_ps(x, x))));
    return _mm256_fmadd_ps(x, pdf, gelu_cdf(x));
}

static void gelu_forward_avx2(float *out, const float *inp, size_t n)
{
    const long nv = (long)(n / 8);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (long i = 0; i < nv; i++) {
        const __m256 x = _mm256_loadu_ps(inp + i * 8);
        _mm256_storeu_ps(out + i * 8, _mm256_mul_ps(x, gelu_cdf(x)));
    }
    const size_t rest = n - (size_t)nv * 8;
    if (rest) {
        const __m256i m = _mm256_castps_si256(tail_mask(rest));
        const __m256 x = _mm256_maskload_ps(inp + nv * 8, m);
        _mm256_maskstore_ps(out + nv * 8, m, _mm256_mul_ps(x, gelu_cdf(x)));
    }
}

static void gelu_backward_avx2(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp) return; /* NULL gradient = not needed (ops.h) */
    const long nv = (long)(n / 8);
#pragma omp parallel for schedule(static) if (n >= PARALLEL_MIN)
    for (long i = 0; i < nv; i++) {
        const __m256 x = _mm256_loadu_ps(inp + i * 8);
        const __m256 g = _mm256_loadu_ps(dout + i * 8);
        const __m256 d = _mm256_loadu_ps(dinp + i * 8);
        _mm256_storeu_ps(dinp + i * 8, _mm256_fmadd_ps(g, gelu_grad(x), d));
    }
    const size_t rest = n - (size_t)nv * 8;
    if (rest) {
        const __m256i m = _mm256_castps_si256(tail_mask(rest));
        const __m256 x = _mm256_maskload_ps(inp + nv * 8, m);
        const __m256 g = _mm256_maskload_ps(dout + nv * 8, m);
        const __m256 d = _mm256_maskload_ps(dinp + nv * 8, m);
        _mm256_maskstore_ps(dinp + nv * 8, m, _mm256_fmadd_ps(g, gelu_grad(x), d));
    }
}

const gelu_op gelu_avx2 = {gelu_forward_avx2, gelu_backward_avx2};
