/* The fp32 FMA peak: 16 independent zmm accumulators, enough to cover the
 * FMA latency on both FMA pipes. The loop is bench/probe_simd.h. */
#include "ops/simd_avx512.h"

#define PROBE_NAME probe_fma_avx512
#define PROBE_NACC 16
#define PROBE_ACCS(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11) X(12) X(13) X(14) X(15)
#include "probe_simd.h"
