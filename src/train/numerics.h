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
    char precision[16]; /* "bf16 dense" or "fp32"; "" = not recorded */
} run_numerics;

/* The op table a run asks for: its `backend` spec (then TLB_BACKEND) and
 * mixed precision where it pays (AVX512_BF16; elsewhere the run is fp32 and
 * says so in its precision). */
int numerics_choose(op_table *ops, const char *backend, int mixed_precision, tlb_error *err);

/* What a model on this op table computes with. */
void numerics_of(run_numerics *n, const op_table *ops);

/* 0 when `now` computes as `was` did (or `was` recorded nothing: a checkpoint
 * from before these fields); else 1 with a short reason in why, e.g.
 * "dense ran on avx512, now dnnl" or "precision was bf16 dense, now fp32". */
int numerics_differ(const run_numerics *was, const run_numerics *now, char *why, size_t n);

#endif
