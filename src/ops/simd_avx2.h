/* Vector macros for the generic kernels (dense_simd.h) in AVX2; include
 * only from *_avx2.c files, which are compiled for that ISA. */
#ifndef TLB_SIMD_AVX2_H
#define TLB_SIMD_AVX2_H

#include <immintrin.h>

#define VW 8
#define NV_MAX 2
typedef __m256 vec;
typedef __m256i vmask;
#define VZERO _mm256_setzero_ps()
#define VSET1(x) _mm256_set1_ps(x)
#define VLOAD(p) _mm256_loadu_ps(p)
#define VSTORE(p, v) _mm256_storeu_ps(p, v)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
#define VMASK(n) _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
#define VMLOAD(p, m) _mm256_maskload_ps(p, m)
#define VMSTORE(p, m, v) _mm256_maskstore_ps(p, m, v)

#endif
