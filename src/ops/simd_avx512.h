/* Vector macros for the generic kernels (*_simd.h) in AVX-512; include only
 * from *_avx512.c files, which are compiled for that ISA. A vmask is a
 * __mmask16 (bit l = lane l). */
#ifndef TLB_SIMD_AVX512_H
#define TLB_SIMD_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#define VW 16
#define NV_MAX 4
typedef __m512 vec;
typedef __mmask16 vmask;
#define VZERO _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VFNMA(a, b, c) _mm512_fnmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VSUB(a, b) _mm512_sub_ps(a, b)
#define VMUL(a, b) _mm512_mul_ps(a, b)
#define VDIV(a, b) _mm512_div_ps(a, b)
#define VSTREAM(p, v) _mm512_stream_ps(p, v) /* p 64-byte aligned */
#define VSTREAM_FENCE() _mm_sfence()
#define VSQRT(a) _mm512_sqrt_ps(a)
#define VMIN(a, b) _mm512_min_ps(a, b)
#define VMAX(a, b) _mm512_max_ps(a, b)
#define VAND(a, b) _mm512_and_ps(a, b)
#define VOR(a, b) _mm512_or_ps(a, b)
#define VABS(x) _mm512_abs_ps(x)
#define VROUND(x) _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VMLOAD(p, m) _mm512_maskz_loadu_ps(m, p)
#define VMSTORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)
#define VMLOAD_OR(p, m, src) _mm512_mask_loadu_ps(src, m, p)
#define VMASKZ(m, v) _mm512_maskz_mov_ps(m, v)
#define VCMPGE(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GE_OQ)
#define VCMPGT(a, b) _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ)
#define VNONE(m) (!(m))
#define VBLEND(m, a, b) _mm512_mask_blend_ps(m, a, b)

/* vexp (vmath_simd.h): scalef takes any n; below VEXP_LO the result is 0. */
#define VEXP_LO (-103.0f)
#define VEXP_HI 88.7f
#define VSCALE2(e, n) _mm512_scalef_ps(e, n)

/* Mask of the first n lanes, any n. */
static inline vmask vlanes(int n)
{
    return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

static inline float vhsum(vec v) { return _mm512_reduce_add_ps(v); }
static inline float vhmax(vec v) { return _mm512_reduce_max_ps(v); }

/* r[l] = vhsum(v[l]) bit for bit, l < VW: the transpose-add in vhsum's own
 * pairs and order (lanes i + 8, then i + 4, i + 2, i + 1; see GCC's
 * _mm512_reduce_add_ps), so a batch of rows reduces as each row alone. */
static inline vec vhsums(const vec v[VW])
{
    __m512 z[8], u[4], w[2];
    for (int k = 0; k < 8; k++) /* rows 2k | 2k+1, 8 lanes each */
        z[k] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_f32x4(v[2 * k], v[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    for (int k = 0; k < 4; k++) /* rows 4k, 4k+1, 4k+2, 4k+3, 4 lanes each */
        u[k] = _mm512_add_ps(_mm512_shuffle_f32x4(z[2 * k], z[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(z[2 * k], z[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
    for (int k = 0; k < 2; k++) /* 128-bit group g: rows 8k + g, 8k + 4 + g, 2 lanes each */
        w[k] = _mm512_add_ps(_mm512_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                             _mm512_shuffle_ps(u[2 * k], u[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
    /* group g: rows g, 4 + g, 8 + g, 12 + g */
    const __m512 r = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(2, 0, 2, 0)),
                                   _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 1, 3, 1)));
    return _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), r);
}

/* dst[c * ldd + r] = src[r * lds + c] for a VW x VW block (unaligned rows):
 * two stages of 4 x 4 transposes inside 128-bit lanes, then the lanes. */
static inline void vtranspose_block(float *dst, size_t ldd, const float *src, size_t lds)
{
    __m512 r[16], t[16];
    for (int i = 0; i < 16; i++) r[i] = _mm512_loadu_ps(src + (size_t)i * lds);
    for (int k = 0; k < 8; k++) {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    for (int k = 0; k < 4; k++) { /* r[4k + j]: lane column j of rows 4k .. 4k + 3 */
        r[4 * k] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * k + 1] = _mm512_shuffle_ps(t[4 * k], t[4 * k + 2], _MM_SHUFFLE(3, 2, 3, 2));
        r[4 * k + 2] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(1, 0, 1, 0));
        r[4 * k + 3] = _mm512_shuffle_ps(t[4 * k + 1], t[4 * k + 3], _MM_SHUFFLE(3, 2, 3, 2));
    }
    for (int j = 0; j < 4; j++) {
        const __m512 u0 = _mm512_shuffle_f32x4(r[j], r[4 + j], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512 u1 = _mm512_shuffle_f32x4(r[j], r[4 + j], _MM_SHUFFLE(3, 2, 3, 2));
        const __m512 u2 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(1, 0, 1, 0));
        const __m512 u3 = _mm512_shuffle_f32x4(r[8 + j], r[12 + j], _MM_SHUFFLE(3, 2, 3, 2));
        _mm512_storeu_ps(dst + (size_t)j * ldd, _mm512_shuffle_f32x4(u0, u2, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_ps(dst + (size_t)(4 + j) * ldd, _mm512_shuffle_f32x4(u0, u2, _MM_SHUFFLE(3, 1, 3, 1)));
        _mm512_storeu_ps(dst + (size_t)(8 + j) * ldd, _mm512_shuffle_f32x4(u1, u3, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm512_storeu_ps(dst + (size_t)(12 + j) * ldd, _mm512_shuffle_f32x4(u1, u3, _MM_SHUFFLE(3, 1, 3, 1)));
    }
}

/* v with lanes l and l ^ s exchanged (s = 1, 2, 4, 8): segment reductions
 * (attention_simd.h, rows of fewer keys than a vector). */
static inline vec vswap_lanes(vec v, int s)
{
    switch (s) {
    case 1: return _mm512_permute_ps(v, 0xB1);
    case 2: return _mm512_permute_ps(v, 0x4E);
    case 4: return _mm512_shuffle_f32x4(v, v, 0xB1);
    default: return _mm512_shuffle_f32x4(v, v, 0x4E);
    }
}

/* r[l] = horizontal sum of v[l], l < VW (one 16-way transpose-add) */
static inline vec vsums(const vec v[VW])
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

/* bf16 storage with fp32 arithmetic (the fused ffn's h in bf16): VW values
 * rounded as bf16_from_f32 (bf16.h) rounds one, in integer lanes (the file
 * is not compiled for AVX512_BF16): nearest even, a NaN kept quiet, a
 * denormal to signed zero. */
static inline void vbf16_store(uint16_t *p, vec x)
{
    const __m512i u = _mm512_castps_si512(x), hi = _mm512_srli_epi32(u, 16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7fffffff)),
                                                  _mm512_set1_epi32(0x7f800000));
    const __mmask16 den = _mm512_testn_epi32_mask(u, _mm512_set1_epi32(0x7f800000));
    const __m512i even = _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)));
    __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, even), 16);
    r = _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)));
    r = _mm512_mask_mov_epi32(r, den, _mm512_and_si512(hi, _mm512_set1_epi32(0x8000)));
    _mm256_storeu_si256((__m256i *)p, _mm512_cvtepi32_epi16(r));
}

/* VW bf16 values widened to fp32 (exact). */
static inline vec vbf16_load(const uint16_t *p)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p)), 16));
}

/* 32-entry table lookups (vpermt2ps), for gelu_simd.h's piecewise
 * polynomials: lane l gets tab[index_l mod 32], the index in the low bits
 * of idx's lanes read as integers. */
#define VLUT32 1
static inline vec vlut32(const float *tab, vec idx)
{
    return _mm512_permutex2var_ps(_mm512_load_ps(tab), _mm512_castps_si512(idx), _mm512_load_ps(tab + 16));
}

/* |mag| with sign's sign bit, mag >= 0 (one vpternlogd: mag | (sign & -0)). */
static inline vec vcopysign(vec mag, vec sign)
{
    return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(_mm512_castps_si512(mag), _mm512_castps_si512(sign),
                                                         _mm512_set1_epi32((int)0x80000000u), 0xF8));
}

#endif
