/* Vector macros for the generic kernels (dense_simd.h) in AVX512; include
 * only from *_avx512.c files, which are compiled for that ISA. */
#ifndef TLB_SIMD_AVX512_H
#define TLB_SIMD_AVX512_H

#include <immintrin.h>

#define VW 16
#define NV_MAX 4
typedef __m512 vec;
typedef __mmask16 vmask;
#define VZERO _mm512_setzero_ps()
#define VSET1(x) _mm512_set1_ps(x)
#define VLOAD(p) _mm512_loadu_ps(p)
#define VSTORE(p, v) _mm512_storeu_ps(p, v)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
#define VMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VMLOAD(p, m) _mm512_maskz_loadu_ps(m, p)
#define VMSTORE(p, m, v) _mm512_mask_storeu_ps(p, m, v)

#endif
