#include "train/numerics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ops/bf16_rate.h"
#include "ops/ops.h"
#include "train/run_config.h"

int numerics_choose(op_table *ops, const char *backend, int mixed_precision, const char *recorded, char *why,
                    size_t n, tlb_error *err)
{
    if (why && n) why[0] = '\0';
    if (ops_table_select(ops, backend, err) != 0) return -1;
    const char *force = getenv("TLB_BF16");
    if (force && !force[0]) force = NULL;
    if (force && strcmp(force, "always") != 0 && strcmp(force, "never") != 0)
        return tlb_fail(err, "TLB_BF16: expected always or never (or unset), got '%.40s'", force);
    if (!mixed_precision) return 0;
    if (!ops_mixed_precision_supported()) {
        if (why) snprintf(why, n, "mixed_precision needs AVX512_BF16, which this CPU lacks: fp32");
        return 0;
    }
    if (recorded && recorded[0]) {
        const int bf16 = strncmp(recorded, "bf16 dense", 10) == 0; /* also "bf16 dense, bf16 h" */
        ops_table_set_bf16(ops, bf16);
        if (!bf16 && why) snprintf(why, n, "the checkpoint ran in %s: it continues so", recorded);
        return 0;
    }
    if (force) {
        const int bf16 = strcmp(force, "always") == 0;
        ops_table_set_bf16(ops, bf16);
        if (!bf16 && why) snprintf(why, n, "TLB_BF16=never: fp32");
        return 0;
    }
    const double ratio = bf16_rate_ratio();
    if (ratio >= BF16_PAYS_RATIO) {
        ops_table_set_bf16(ops, 1);
        return 0;
    }
    if (why)
        snprintf(why, n,
                 "bf16 products run %.2fx the fp32 rate on this CPU (measured now; bf16 needs %.2fx): fp32"
                 " (TLB_BF16=always runs bf16 anyway, TLB_BF16=never pins fp32)",
                 ratio, BF16_PAYS_RATIO);
    return 0;
}

int numerics_choose_bf16_h(op_table *ops, int bf16_activations, const char *recorded)
{
    const int want = bf16_activations != RUN_CONFIG_AUTO ? bf16_activations
                     : recorded && recorded[0]          ? strstr(recorded, "bf16 h") != NULL
                                                        : ops->bf16_dense;
    return want && ops_table_set_bf16_h(ops, 1) != 0;
}

void numerics_of(run_numerics *n, const op_table *ops)
{
    memset(n, 0, sizeof *n);
    ops_table_describe(ops, n->backends, sizeof n->backends);
    snprintf(n->precision, sizeof n->precision, "%s", ops_table_precision(ops));
}

/* The backend `op` has in a "op:backend,..." list, into out; "" if absent. */
static void backend_of(const char *list, const char *op, char *out, size_t n)
{
    out[0] = '\0';
    const size_t len = strlen(op);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
        if (strncmp(p, op, len) != 0 || p[len] != ':') continue;
        const char *v = p + len + 1, *end = strchr(v, ',');
        const size_t k = end ? (size_t)(end - v) : strlen(v);
        snprintf(out, n, "%.*s", (int)k, v);
        return;
    }
}

int numerics_differ(const run_numerics *was, const run_numerics *now, char *why, size_t n)
{
    if (was->precision[0] && strcmp(was->precision, now->precision) != 0) {
        snprintf(why, n, "precision was %s, now %s", was->precision, now->precision);
        return 1;
    }
    if (!was->backends[0] || strcmp(was->backends, now->backends) == 0) return 0;
    for (int op = 0; op < ops_count(); op++) {
        char a[32], b[32];
        backend_of(was->backends, ops_name(op), a, sizeof a);
        backend_of(now->backends, ops_name(op), b, sizeof b);
        /* An op the checkpoint does not name came later (token_embed): the
         * run never used it, so it cannot change the continuation. */
        if (a[0] && strcmp(a, b) != 0) {
            snprintf(why, n, "%s ran on %s, now %s", ops_name(op), a, b);
            return 1;
        }
    }
    return 0;
}
