/* tlb ops: which backends exist for each op, which this CPU can run, and
 * which one is chosen (after TLB_BACKEND). */
#include <stdio.h>

#include "cli/commands.h"
#include "ops/bf16_rate.h"
#include "ops/ops.h"

int cmd_ops(int argc, char **argv)
{
    tlb_error err;
    const char *spec = argc > 1 ? argv[1] : NULL;
    op_table ops;
    if (ops_table_select(&ops, spec, &err) != 0) {
        fprintf(stderr, "tlb ops: %s\n", err.msg);
        return 2;
    }
    printf("%-16s", "op");
    for (int b = 0; b < TLB_BACKEND_COUNT; b++)
        printf("%-10s", backend_name((tlb_backend)b));
    printf("chosen\n");
    for (int op = 0; op < ops_count(); op++) {
        printf("%-16s", ops_name(op));
        for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
            const char *mark = !ops_impl(op, (tlb_backend)b) ? "-"
                               : backend_supported((tlb_backend)b) ? "yes" : "no-cpu";
            printf("%-10s", mark);
        }
        const int stage = op == TLB_OP_layernorm_pair || op == TLB_OP_ffn;
        printf("%s\n", stage && !ops_table_fused(&ops, op) ? "off (unfused ops run)"
                                                          : backend_name(ops.backend[op]));
    }
    printf("\nyes: implemented and runnable here; no-cpu: implemented, this CPU lacks the ISA;"
           " -: not implemented.\nOverride with TLB_BACKEND=ref or TLB_BACKEND=dense:dnnl,gelu:ref"
           " (or the config key `backend`).\n"
           "layernorm_pair and ffn are fused stages: they run in place of the ops they fuse\n"
           "unless one of those is put on another backend, or (ffn) dense's automatic choice is\n"
           "another backend and ffn is not named (ops.h, ops_table_fused); ffn:off and\n"
           "layernorm_pair:off turn them off.\n");
    printf("\nmixed_precision: true runs dense in bf16 (oneDNN, fp32 accumulation) in place of the\n"
           "chosen dense where bf16 products pay: ");
    if (!ops_mixed_precision_supported()) {
        printf("not on this CPU (no AVX512_BF16): runs fp32\n");
        return 0;
    }
    const double ratio = bf16_rate_ratio();
    printf("VDPBF16PS runs %.2fx the fp32 FMA rate here (measured now),\n"
           "so it %s (bf16 needs %.2fx; TLB_BF16=always runs bf16 anyway, TLB_BF16=never\n"
           "pins fp32; a resumed run "
           "keeps the precision it began with)\n",
           ratio, ratio >= BF16_PAYS_RATIO ? "runs bf16" : "runs fp32", BF16_PAYS_RATIO);
    return 0;
}
