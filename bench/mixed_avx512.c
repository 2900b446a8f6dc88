/* The memory-traffic side of bf16: the same bandwidth-bound elementwise op
 * (y = x * a + b, the apply step of a LayerNorm) over fp32 storage and over
 * bf16 storage (loaded by widening, stored with vcvtneps2bf16), computing in
 * fp32 either way. */
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>

#include "bench.h"

#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

typedef struct {
    size_t n;
    float *xf, *yf;
    uint16_t *xb, *yb;
} stream_ctx;

static void pass_f32(void *p)
{
    const stream_ctx *s = p;
    const __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(-0.5f);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < s->n; i += 16)
        _mm512_storeu_ps(s->yf + i, _mm512_fmadd_ps(_mm512_loadu_ps(s->xf + i), a, b));
}

BF16_TARGET static void pass_bf16(void *p)
{
    const stream_ctx *s = p;
    const __m512 a = _mm512_set1_ps(1.0001f), b = _mm512_set1_ps(-0.5f);
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < s->n; i += 16) {
        const __m256i raw = _mm256_loadu_si256((const __m256i *)(s->xb + i));
        const __m512 x = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(raw), 16));
        const __m256bh y = _mm512_cvtneps_pbh(_mm512_fmadd_ps(x, a, b));
        _mm256_storeu_si256((__m256i *)(s->yb + i), (__m256i)y);
    }
}

int mixed_bf16_stream(size_t n, double seconds, double *t_f32, double *t_bf16)
{
    if (!__builtin_cpu_supports("avx512bf16") || !__builtin_cpu_supports("avx512bw")) return -1;
    n = (n + 15) & ~(size_t)15;
    stream_ctx s = {n, bench_rand(n, 1), bench_rand(n, 1), NULL, NULL};
    s.xb = aligned_alloc(64, n * sizeof(uint16_t));
    s.yb = aligned_alloc(64, n * sizeof(uint16_t));
    if (!s.xb || !s.yb) return -1;
#pragma omp parallel for schedule(static) /* first touch where it is streamed */
    for (size_t i = 0; i < n; i++) {
        union { float f; uint32_t u; } v = {s.xf[i]};
        s.xb[i] = (uint16_t)(v.u >> 16), s.yb[i] = 0;
    }
    *t_f32 = bench_median(pass_f32, &s, seconds);
    *t_bf16 = bench_median(pass_bf16, &s, seconds);
    free(s.xf), free(s.yf), free(s.xb), free(s.yb);
    return 0;
}
