/* What a run actually computes with: the backend that ran each op (the
 * automatic choice resolved; "bf16" for dense in mixed precision) and the
 * precision ("bf16 dense" or "fp32"). Recorded in summary.json and in the
 * checkpoint's metadata, not in the run hash (old run folders keep theirs);
 * a resume compares them, since another backend or precision changes the
 * numbers and so breaks the bit-exact continuation. */
#ifndef TLB_NUMERICS_H
#define TLB_NUMERICS_H

#include <stddef.h>

#include "ops/ops.h"

typedef struct {
    char backends[320]; /* "dense:avx512,layernorm:avx512,..." in op order; "" = not recorded */
    char precision[32]; /* ops_table_precision: "bf16 dense", "fp32", ...; "" = not recorded */
    char build[48];     /* the tlb build that ran (`tlb --version`, git describe); "" = not recorded */
    int micro_batch;    /* samples per micro-batch the run trained with (they order the gradient
                         * sums); 0 = not recorded */
} run_numerics;

/* The op table a run asks for: its `backend` spec (then TLB_BACKEND) and,
 * with mixed_precision, bf16 dense layers where they pay:
 *   - never without AVX512_BF16;
 *   - `recorded` (a checkpoint's precision, being resumed or evaluated; NULL
 *     or "" when none) decides where it names one: "bf16 dense..." keeps bf16,
 *     anything else fp32, so a run continues as it began;
 *   - TLB_BF16=always in the environment: bf16 wherever the CPU has it (to
 *     study bf16's numerics on a CPU where it is slow); TLB_BF16=never: fp32
 *     (a choice that no measurement can flip between two runs);
 *   - else bf16 when bf16_rate_ratio() >= BF16_PAYS_RATIO (ops/bf16_rate.h).
 * why (n bytes, may be NULL) gets one line on a choice that differs from
 * what the config asked, "" otherwise. */
int numerics_choose(op_table *ops, const char *backend, int mixed_precision, const char *recorded, char *why,
                    size_t n, tlb_error *err);

/* bf16_activations (0, 1 or RUN_CONFIG_AUTO) applied to an op table that
 * numerics_choose set: h saved in bf16 where asked for and an FFN stage can
 * (ops_table_set_bf16_h). auto asks where the dense layers run bf16, or, on
 * a resume (`recorded` a checkpoint's precision; NULL or "" when none), as
 * the run began ("... bf16 h"). Returns 1 when it was asked for and the op
 * table cannot (h stays fp32: the caller says so), else 0. */
int numerics_choose_bf16_h(op_table *ops, int bf16_activations, const char *recorded);

/* What a model on this op table computes with (build left "": the caller's). */
void numerics_of(run_numerics *n, const op_table *ops);

/* 0 when `now` computes as `was` did (or `was` recorded nothing: a checkpoint
 * from before these fields); else 1 with a short reason in why, e.g.
 * "dense ran on avx512, now dnnl" or "precision was bf16 dense, now fp32". */
int numerics_differ(const run_numerics *was, const run_numerics *now, char *why, size_t n);

#endif
