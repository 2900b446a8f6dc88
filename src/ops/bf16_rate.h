/* Whether bf16 products pay on this CPU. AVX512_BF16 alone does not say:
 * VDPBF16PS ran at twice the fp32 FMA rate on the AMD EPYC of issue 22 and
 * at half of it on an Intel Xeon (BENCHMARKS.md, sessions 5 and 6), where
 * mixed precision made a step 1.5x slower. So the rate is measured. */
#ifndef TLB_OPS_BF16_RATE_H
#define TLB_OPS_BF16_RATE_H

/* bf16 dot-product FLOP/s over fp32 FMA FLOP/s on the calling thread
 * (register-only loops, a few milliseconds, the best of five interleaved
 * tries of each); 0 where the CPU has no AVX512_BF16. */
double bf16_rate_ratio(void);

/* The ratio above which mixed precision uses bf16 products: well clear of
 * both measured kinds (0.5 and 2), so a noisy reading cannot flip it. */
#define BF16_PAYS_RATIO 1.25

#endif
