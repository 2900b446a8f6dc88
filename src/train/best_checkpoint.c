#include "train/best_checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#include "util/fs.h"

int best_checkpoint_path(char *buf, size_t n, const char *run_dir)
{
    return snprintf(buf, n, "%s/" BEST_CHECKPOINT_NAME, run_dir);
}

static int copy_file(const char *from, const char *to, tlb_error *err)
{
    FILE *fp = fopen(from, "rb");
    if (!fp) return tlb_fail(err, "%s: cannot open: %s", from, strerror(errno));
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            char *more = realloc(buf, cap = cap ? 2 * cap : 1 << 20);
            if (!more) {
                free(buf), fclose(fp);
                return tlb_fail(err, "out of memory copying %s", from);
            }
            buf = more;
        }
        const size_t k = fread(buf + n, 1, cap - n, fp);
        n += k;
        if (k == 0) break;
    }
    const int bad = ferror(fp);
    fclose(fp);
    int rc = bad ? tlb_fail(err, "%s: read failed", from) : fs_write_file_atomic(to, buf, n, err);
    free(buf);
    return rc;
}

int best_checkpoint_update(const char *run_dir, const char *ckpt, tlb_error *err)
{
    char path[1400], tmp[1500];
    if (best_checkpoint_path(path, sizeof path, run_dir) >= (int)sizeof path)
        return tlb_fail(err, "%.200s...: path too long", run_dir);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    unlink(tmp);
    if (link(ckpt, tmp) != 0) return copy_file(ckpt, path, err);
    if (rename(tmp, path) != 0) {
        const int e = errno;
        unlink(tmp);
        return tlb_fail(err, "%s: cannot rename into place: %s", path, strerror(e));
    }
    fs_fsync_dir(run_dir);
    return 0;
}

int best_checkpoint_rehash(const char *run_dir, tlb_model *m, float *adam_m, float *adam_v, uint64_t old_hash,
                           uint64_t new_hash, const char *config_text, const run_numerics *numerics, tlb_error *err)
{
    char path[1400];
    if (best_checkpoint_path(path, sizeof path, run_dir) >= (int)sizeof path)
        return tlb_fail(err, "%.200s...: path too long", run_dir);
    if (access(path, F_OK) != 0) return 0;
    const size_t n = model_num_params(m);
    float *keep = malloc(3 * n * sizeof *keep);
    if (!keep) return tlb_fail(err, "out of memory rewriting %s", path);
    memcpy(keep, m->params, n * sizeof *keep);
    memcpy(keep + n, adam_m, n * sizeof *keep);
    memcpy(keep + 2 * n, adam_v, n * sizeof *keep);
    train_position pos;
    run_numerics was;
    int rc = checkpoint_load(path, m, adam_m, adam_v, &pos, old_hash, &was, err);
    if (rc != 0) rc = checkpoint_load(path, m, adam_m, adam_v, &pos, new_hash, &was, err);
    if (rc == 0) rc = checkpoint_save(path, m, adam_m, adam_v, &pos, new_hash, config_text, numerics, err);
    memcpy(m->params, keep, n * sizeof *keep);
    memcpy(adam_m, keep + n, n * sizeof *keep);
    memcpy(adam_v, keep + 2 * n, n * sizeof *keep);
    free(keep);
    return rc;
}
