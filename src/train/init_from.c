#include "train/init_from.h"

#include <string.h>
#include <sys/stat.h>

#include "train/checkpoint.h"

/* Where "@HASH" (16 hex digits, at the end) starts in a resolved value, or NULL. */
static const char *hash_part(const char *v)
{
    const char *at = strrchr(v, '@');
    if (!at || strlen(at + 1) != 16 || strspn(at + 1, "0123456789abcdef") != 16) return NULL;
    return at;
}

int init_from_resolve(run_config *c, tlb_error *err)
{
    const char *v = c->init_from;
    if (!v[0] || hash_part(v)) return 0;
    char file[sizeof c->init_from - 17]; /* room for "@HASH" */
    struct stat sb;
    if (stat(v, &sb) != 0) return tlb_fail(err, "init_from: %s: no such run folder or checkpoint", v);
    const int n = S_ISDIR(sb.st_mode) ? snprintf(file, sizeof file, "%s/checkpoint.safetensors", v)
                                      : snprintf(file, sizeof file, "%s", v);
    if (n >= (int)sizeof file) return tlb_fail(err, "init_from: %.200s...: path too long", v);
    char hash[17];
    if (checkpoint_data_hash(file, hash, err) != 0) return tlb_fail_prefix(err, "init_from");
    snprintf(c->init_from, sizeof c->init_from, "%s@%s", file, hash);
    return 0;
}

int init_from_load(const char *init_from, tlb_model *m, tlb_error *err)
{
    const char *at = hash_part(init_from);
    if (!at) return tlb_fail(err, "init_from: '%.200s' is not resolved (FILE@HASH)", init_from);
    char file[1300];
    snprintf(file, sizeof file, "%.*s", (int)(at - init_from), init_from);
    if (checkpoint_load_params(file, m, at + 1, err) != 0) return tlb_fail_prefix(err, "init_from");
    return 0;
}
