/* The fp32 FMA peak without AVX-512: 12 independent ymm accumulators (with
 * a and b, 14 of the 16 ymm registers). The loop is bench/probe_simd.h. */
#include "ops/simd_avx2.h"

#define PROBE_NAME probe_fma_avx2
#define PROBE_NACC 12
#define PROBE_ACCS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#include "probe_simd.h"
