/* tlb check: the golden comparison, one verdict per file. */
#include <stdio.h>

#include "cli/commands.h"
#include "train/golden.h"
#include "ops/ops.h"

int cmd_check(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: tlb check FILE.safetensors...\n");
        return 2;
    }
    tlb_error err;
    if (ops_select(NULL, &err) != 0) {
        fprintf(stderr, "tlb check: %s\n", err.msg);
        return 2;
    }
    int failed = 0;
    for (int i = 1; i < argc; i++) {
        golden_report r;
        if (golden_check(argv[i], &r, &err) != 0) {
            fprintf(stderr, "tlb check: %s\n", err.msg);
            failed = 1;
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
    return failed ? 1 : 0;
}
