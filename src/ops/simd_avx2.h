/* Vector macros for the generic kernels (*_simd.h) in AVX2; include only
 * from *_avx2.c files, which are compiled for that ISA. A vmask is a lane
 * mask (all-ones lanes), as maskload, blendv and testz take it. */
#ifndef TLB_SIMD_AVX2_H
#define TLB_SIMD_AVX2_H

#include <immintrin.h>
#include <stdint.h>

#define VW 8
#define NV_MAX 2
/* VMASKMOVPS from memory ran a GEMM tile 6-11% slower than VMOVUPS with
 * every lane on (Zen 4): dense_simd.h loads whole rows plainly. */
#define VMASKED_LOAD_COSTS 1
typedef __m256 vec;
typedef __m256i vmask;
#define VZERO _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VFNMA(a, b, c) _mm256_fnmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VSUB(a, b) _mm256_sub_ps(a, b)
#define VMUL(a, b) _mm256_mul_ps(a, b)
#define VDIV(a, b) _mm256_div_ps(a, b)
#define VSTREAM(p, v) _mm256_stream_ps(p, v) /* p 32-byte aligned */
#define VSTREAM_FENCE() _mm_sfence()
#define VSQRT(a) _mm256_sqrt_ps(a)
#define VMIN(a, b) _mm256_min_ps(a, b)
#define VMAX(a, b) _mm256_max_ps(a, b)
#define VAND(a, b) _mm256_and_ps(a, b)
#define VOR(a, b) _mm256_or_ps(a, b)
#define VABS(x) _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x)
#define VROUND(x) _mm256_round_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VMLOAD(p, m) _mm256_maskload_ps(p, m)
#define VMSTORE(p, m, v) vmstore(p, m, v)
#define VMLOAD_OR(p, m, src) _mm256_blendv_ps(src, _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m))
#define VMASKZ(m, v) _mm256_and_ps(v, _mm256_castsi256_ps(m))
#define VCMPGE(a, b) _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GE_OQ))
#define VCMPGT(a, b) _mm256_castps_si256(_mm256_cmp_ps(a, b, _CMP_GT_OQ))
#define VNONE(m) _mm256_testz_ps(_mm256_castsi256_ps(m), _mm256_castsi256_ps(m))
#define VBLEND(m, a, b) _mm256_blendv_ps(a, b, _mm256_castsi256_ps(m))

/* vexp (vmath_simd.h): 2^n is built from the exponent bits, so x is clamped
 * to where 2^n stays a normal float. */
#define VEXP_LO (-87.3f)
#define VEXP_HI 88.3f
#define VSCALE2(e, n) \
    _mm256_mul_ps(e, _mm256_castsi256_ps(_mm256_slli_epi32( \
                         _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23)))

/* A masked store that is a plain store when every lane is on. AMD's CPUs
 * before Zen 4 run VMASKMOVPS to memory as microcode: 4-5.5 ns a store on
 * the AMD EPYC Zen 3 (a plain store 0.4 ns), and the kernels store whole
 * vectors through masks everywhere (a GEMM tile's last column vector, every
 * elementwise pass's tail-safe loop); one movemask and a branch that
 * predicts well cost next to nothing on any CPU. */
static inline __attribute__((always_inline)) void vmstore(float *p, __m256i m, __m256 v)
{
    if (_mm256_movemask_ps(_mm256_castsi256_ps(m)) == 0xff) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, m, v);
}

/* Mask of the first n lanes, any n (VMASK's compare already saturates). */
static inline vmask vlanes(int n) { return VMASK(n); }

static inline float vhsum(vec v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static inline float vhmax(vec v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* r[l] = vhsum(v[l]) bit for bit, l < VW: the transpose-add in vhsum's own
 * pairs and order (lanes i + 4, then i + 2, i + 1), so a batch of rows
 * reduces as each row alone. */
static inline vec vhsums(const vec v[VW])
{
    __m256 z[4], u[2];
    for (int k = 0; k < 4; k++) /* rows 2k | 2k+1, 4 lanes each */
        z[k] = _mm256_add_ps(_mm256_permute2f128_ps(v[2 * k], v[2 * k + 1], 0x20),
                             _mm256_permute2f128_ps(v[2 * k], v[2 * k + 1], 0x31));
    for (int k = 0; k < 2; k++) /* half h: rows 4k + h, 4k + 2 + h, 2 lanes each */
        u[k] = _mm256_add_ps(_mm256_shuffle_ps(z[2 * k], z[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm256_shuffle_ps(z[2 * k], z[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* half h: rows h, 2 + h, 4 + h, 6 + h */
    const __m256 r = _mm256_add_ps(_mm256_shuffle_ps(u[0], u[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm256_shuffle_ps(u[0], u[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm256_permutevar8x32_ps(r, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

/* dst[c * ldd + r] = src[r * lds + c] for a VW x VW block (unaligned rows):
 * 4 x 4 transposes inside 128-bit lanes, then the lanes. */
static inline void vtranspose_block(float *dst, size_t ldd, const float *src, size_t lds)
{
    __m256 r[8], t[8];
    for (int i = 0; i < 8; i++) r[i] = _mm256_loadu_ps(src + (size_t)i * lds);
    for (int k = 0; k < 4; k++) {
        t[2 * k] = _mm256_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm256_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 2; k++) { /* r[4k + j]: lane column j of rows 4k .. 4k + 3 */
        r[4 * k] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * k + 1] = _mm256_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * k + 2] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * k + 3] = _mm256_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        _mm256_storeu_ps(dst + (size_t)j * ldd, _mm256_permute2f128_ps(r[j], r[4 + j], 0x20));
        _mm256_storeu_ps(dst + (size_t)(4 + j) * ldd, _mm256_permute2f128_ps(r[j], r[4 + j], 0x31));
    }
}

/* v with lanes l and l ^ s exchanged (s = 1, 2, 4): segment reductions
 * (attention_simd.h, rows of fewer keys than a vector). */
static inline vec vswap_lanes(vec v, int s)
{
    switch (s) {
    case 1: return _mm256_permute_ps(v, 0xB1);
    case 2: return _mm256_permute_ps(v, 0x4E);
    default: return _mm256_permute2f128_ps(v, v, 1);
    }
}

/* r[l] = horizontal sum of v[l], l < VW (one 8-way transpose-add) */
static inline vec vsums(const vec v[VW])
{
    const __m256 t0 = _mm256_hadd_ps(_mm256_hadd_ps(v[0], v[1]), _mm256_hadd_ps(v[2], v[3]));
    const __m256 t1 = _mm256_hadd_ps(_mm256_hadd_ps(v[4], v[5]), _mm256_hadd_ps(v[6], v[7]));
    return _mm256_add_ps(_mm256_permute2f128_ps(t0, t1, 0x20), _mm256_permute2f128_ps(t0, t1, 0x31));
}

/* bf16 storage with fp32 arithmetic (the fused ffn's h in bf16): VW values
 * rounded as bf16_from_f32 (bf16.h) rounds one, in integer lanes (AVX2 has
 * no bf16 conversion): nearest even, a NaN kept quiet, a denormal to signed
 * zero. */
static inline void vbf16_store(uint16_t *p, vec x)
{
    const __m256i u = _mm256_castps_si256(x), hi = _mm256_srli_epi32(u, 16);
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    const __m256i den = _mm256_cmpeq_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7f800000)), _mm256_setzero_si256());
    const __m256i even = _mm256_add_epi32(_mm256_set1_epi32(0x7fff), _mm256_and_si256(hi, _mm256_set1_epi32(1)));
    __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, even), 16);
    r = _mm256_blendv_epi8(r, _mm256_or_si256(hi, _mm256_set1_epi32(0x40)), nan);
    r = _mm256_blendv_epi8(r, _mm256_and_si256(hi, _mm256_set1_epi32(0x8000)), den);
    r = _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08); /* 8 halves into the low 128 bits */
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(r));
}

/* VW bf16 values widened to fp32 (exact). */
static inline vec vbf16_load(const uint16_t *p)
{
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

#endif
