#include "train/numerics.h"

#include <stdio.h>
#include <string.h>

#include "ops/ops.h"

void numerics_current(run_numerics *n)
{
    memset(n, 0, sizeof *n);
    const int bf16 = ops_mixed_precision();
    size_t at = 0;
    for (int op = 0; op < ops_count() && at < sizeof n->backends; op++) {
        const char *b = bf16 && strcmp(ops_name(op), "dense") == 0 ? "bf16" : backend_name(ops_chosen(op));
        at += (size_t)snprintf(n->backends + at, sizeof n->backends - at, "%s%s:%s", op ? "," : "",
                               ops_name(op), b);
    }
    snprintf(n->precision, sizeof n->precision, "%s", bf16 ? "bf16 dense" : "fp32");
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
        if (strcmp(a, b) != 0) {
            snprintf(why, n, "%s ran on %s, now %s", ops_name(op), a[0] ? a : "(not recorded)", b);
            return 1;
        }
    }
    snprintf(why, n, "backends were %s, now %s", was->backends, now->backends);
    return 1;
}
