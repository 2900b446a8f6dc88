/* Checks our model against a golden safetensors file (../shared/golden
 * format): forward, every gradient, the traces and one AdamW step, with the
 * golden README's tolerances. Works for any configuration stored in the
 * file's config.* tensors, and for the single-block file (unit_block). */
#ifndef TLB_GOLDEN_H
#define TLB_GOLDEN_H

#include "ops/ops.h"
#include "util/error.h"

#define GOLDEN_MAX_GROUPS 12

typedef struct {
    char name[32];          /* logits, loss, trace, grad, adamw, adamw_fed, ... */
    int tensors;            /* how many tensors were compared */
    double worst_ratio;     /* max over tensors of err / tolerance (pass: <= 1) */
    double worst_rel;       /* max over tensors of err / max|ref| */
    char worst_tensor[96];
    double worst_err, worst_tol;
} golden_group;

typedef struct {
    char kind[16];          /* "model" or "block" */
    char summary[160];      /* configuration in one line */
    golden_group groups[GOLDEN_MAX_GROUPS];
    int num_groups;
    int passed;
} golden_report;

/* Checks the file on the kernels of `ops` (backends, precision). Returns 0
 * when the file could be checked (see report->passed for the verdict), -1
 * when it could not be read or does not fit the model (bad input to `tlb
 * check`, exit 2; out of memory, on its tiny models, counts there too). */
int golden_check(const char *path, const op_table *ops, golden_report *report, tlb_error *err);

#endif
