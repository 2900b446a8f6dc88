/* tlb check: the golden comparison, one verdict per file. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "ops/ops.h"
#include "train/golden.h"
#include "util/safetensors.h"

/* Golden vectors are finite: a NaN or Inf anywhere is a damaged or wrong
 * file (bad input), not a mismatch of the model. */
static int all_finite(const char *path, tlb_error *err)
{
    st_file f;
    if (st_open(&f, path, err) != 0) return 0; /* golden_check reports it */
    int rc = 0;
    /* A training checkpoint is the commonest wrong file: say so. */
    const char *format = st_meta(&f, "format");
    if (format && strncmp(format, "tlb-c checkpoint", 16) == 0)
        rc = tlb_fail(err, "%s: a training checkpoint (%s), not a golden file: evaluate it with"
                           " `tlb eval RUN_DIR --checkpoint %s`", path, format, path);
    for (int t = 0; t < f.count && rc == 0; t++) {
        const st_tensor *x = &f.tensors[t];
        if (x->dtype != ST_F32) continue;
        for (size_t i = 0; i < x->numel; i++) {
            float v;
            memcpy(&v, (const char *)x->data + i * sizeof v, sizeof v);
            if (!isfinite(v)) {
                rc = tlb_fail(err, "%s: tensor '%s' holds %s at element %zu: not a golden file", path, x->name,
                              isnan(v) ? "NaN" : "Inf", i);
                break;
            }
        }
    }
    st_close(&f);
    return rc;
}

int cmd_check(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: tlb check FILE.safetensors...\n");
        return 0;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: tlb check FILE.safetensors...\n");
        return 2;
    }
    tlb_error err;
    op_table ops; /* fp32 on the automatic choice and TLB_BACKEND: the golden tolerances are fp32's */
    if (ops_table_select(&ops, NULL, &err) != 0) {
        fprintf(stderr, "tlb check: %s\n", err.msg);
        return 2;
    }
    int failed = 0, bad_input = 0;
    for (int i = 1; i < argc; i++) {
        golden_report r;
        if (all_finite(argv[i], &err) != 0) {
            fprintf(stderr, "tlb check: %s\n", err.msg);
            bad_input = 1;
            continue;
        }
        if (golden_check(argv[i], &ops, &r, &err) != 0) { /* unreadable, or not a golden file: bad input */
            fprintf(stderr, "tlb check: %s\n", err.msg);
            bad_input = 1;
            continue;
        }
        printf("%s: %s\n", argv[i], r.summary);
        printf("  %-10s %7s %12s %12s %12s  %s\n", "group", "tensors", "worst err", "tolerance",
               "err/max|ref|", "worst tensor");
        for (int g = 0; g < r.num_groups; g++) {
            const golden_group *x = &r.groups[g];
            printf("  %-10s %7d %12.3e %12.3e %12.3e  %s%s\n", x->name, x->tensors, x->worst_err,
                   x->worst_tol, x->worst_rel, x->worst_tensor, x->worst_ratio <= 1.0 ? "" : "  FAIL");
        }
        printf("  %s\n", r.passed ? "PASS" : "FAIL");
        failed |= !r.passed;
    }
    return bad_input ? 2 : failed ? 1 : 0;
}
