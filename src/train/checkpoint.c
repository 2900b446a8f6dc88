#include "train/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <libgen.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "util/safetensors.h"

/* Format 2 adds "config_xxh3", the XXH3-64 of the "config" text, and
 * requires it. Format 1 (before config_xxh3) still loads: its data is
 * covered by data_xxh3 and the config text is informational (resume reads
 * config.cfg), so nothing loaded goes unchecked. */
#define CHECKPOINT_FORMAT "tlb-c checkpoint 2"
#define CHECKPOINT_FORMAT_1 "tlb-c checkpoint 1"

/* Test hook (tests/test_hardening.c): TLB_TEST_KILL_IN_CHECKPOINT=k kills
 * the process at its k-th checkpoint save, between the synced temporary file
 * and the rename, to show a crash there leaves the previous file intact. */
static void kill_hook(void *ctx, const char *tmp_path)
{
    (void)ctx, (void)tmp_path;
    static int saves;
    const char *kill_at = getenv("TLB_TEST_KILL_IN_CHECKPOINT");
    if (kill_at && ++saves == atoi(kill_at)) raise(SIGKILL);
}

int checkpoint_save(const char *path, const tlb_model *m, const float *adam_m, const float *adam_v,
                    const train_position *pos, uint64_t config_hash, const char *config_text,
                    const run_numerics *numerics, tlb_error *err)
{
    const param_table *t = &m->layout.table;
    st_writer w;
    st_writer_init(&w);
    char name[PARAM_NAME_MAX + 16], buf[64];
    int64_t shape[PARAM_MAX_DIMS];
    int rc = 0;
    const float *groups[3] = {m->params, adam_m, adam_v};
    const char *prefixes[3] = {"", "adamw.m.", "adamw.v."};
    for (int gidx = 0; gidx < 3 && rc == 0; gidx++)
        for (int i = 0; i < t->count && rc == 0; i++) {
            const param_entry *e = &t->entries[i];
            for (int d = 0; d < e->ndim; d++) shape[d] = e->shape[d];
            snprintf(name, sizeof name, "%s%s", prefixes[gidx], e->name);
            rc = st_writer_add(&w, name, ST_F32, e->ndim, shape, groups[gidx] + e->offset);
        }
    const int64_t position[3] = {pos->step, pos->epoch, pos->batch_in_epoch};
    if (rc == 0) rc = st_writer_add(&w, "train.position", ST_I64, 1, (int64_t[]){3}, position);
    if (!config_text) config_text = "";
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)config_hash);
    if (rc == 0) rc = st_writer_meta(&w, "format", CHECKPOINT_FORMAT);
    if (rc == 0) rc = st_writer_meta(&w, "config_hash", buf);
    if (rc == 0) rc = st_writer_meta(&w, "config", config_text);
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)XXH3_64bits(config_text, strlen(config_text)));
    if (rc == 0) rc = st_writer_meta(&w, "config_xxh3", buf);
    const train_tally *t2 = &pos->tally;
    char tally[256];
    snprintf(tally, sizeof tally, "%.17g %ld %ld %.17g %.17g %.17g %ld %d", t2->loss_sum, t2->correct, t2->seen,
             t2->epoch_seconds, t2->wall_seconds, t2->compute_seconds, t2->images, t2->first_epochs);
    if (rc == 0) rc = st_writer_meta(&w, "run_tally", tally);
    if (rc == 0 && numerics) rc = st_writer_meta(&w, "backends", numerics->backends);
    if (rc == 0 && numerics) rc = st_writer_meta(&w, "precision", numerics->precision);
    if (rc == 0 && numerics && numerics->build[0]) rc = st_writer_meta(&w, "build", numerics->build);
    if (numerics && numerics->micro_batch > 0) {
        snprintf(buf, sizeof buf, "%d", numerics->micro_batch);
        if (rc == 0) rc = st_writer_meta(&w, "micro_batch", buf);
    }
    if (rc != 0) {
        st_writer_free(&w);
        return tlb_fail(err, "%s: out of memory preparing the checkpoint", path);
    }
    rc = st_writer_save(&w, path, kill_hook, NULL, err);
    st_writer_free(&w);
    return rc;
}

int checkpoint_remove_stale_tmp(const char *path, FILE *log)
{
    char *copy_dir = strdup(path), *copy_base = strdup(path);
    if (!copy_dir || !copy_base) {
        free(copy_dir);
        free(copy_base);
        return 0;
    }
    const char *dir = dirname(copy_dir), *base = basename(copy_base);
    char prefix[512];
    snprintf(prefix, sizeof prefix, "%s.tmp.", base);
    const size_t plen = strlen(prefix);
    int removed = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, plen) != 0) continue;
        const char *digits = e->d_name + plen;
        char *end;
        errno = 0;
        const long pid = strtol(digits, &end, 10);
        if (*digits < '0' || *digits > '9' || *end || errno || pid <= 0 || pid != (long)(pid_t)pid) continue;
        /* Ours (nothing is in flight at start) or a process that is gone;
         * a live other process may be writing it. */
        const int gone = (pid_t)pid == getpid() || (kill((pid_t)pid, 0) != 0 && errno == ESRCH);
        if (!gone) continue;
        char full[4096];
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        if (unlink(full) == 0) {
            removed++;
            if (log) fprintf(log, "removed %s, left by process %ld which is gone\n", full, pid);
        }
    }
    if (d) closedir(d);
    free(copy_dir);
    free(copy_base);
    return removed;
}

static uint64_t data_section_hash(const st_file *f)
{
    return XXH3_64bits(f->bytes + f->data_start, f->size - f->data_start);
}

/* Opens path as a checkpoint whose data section matches its data_xxh3. */
static int open_checked(st_file *f, const char *path, tlb_error *err)
{
    if (st_open(f, path, err) != 0) return tlb_fail_prefix(err, "checkpoint");
    const char *format = st_meta(f, "format"), *data_hash = st_meta(f, "data_xxh3");
    char buf[32];
    snprintf(buf, sizeof buf, "%016llx", (unsigned long long)data_section_hash(f));
    int rc = 0;
    if (!format || (strcmp(format, CHECKPOINT_FORMAT) != 0 && strcmp(format, CHECKPOINT_FORMAT_1) != 0))
        rc = tlb_fail(err, "%s: not a tlb-c checkpoint (format '%s')", path, format ? format : "missing");
    else if (!data_hash || strcmp(data_hash, buf) != 0)
        rc = tlb_fail(err, "%s: corrupted: data hash %s, recorded %s", path, buf, data_hash ? data_hash : "none");
    if (rc != 0) st_close(f);
    return rc;
}

/* The numerics a checkpoint recorded ("" for fields it predates). */
static void read_numerics(const st_file *f, run_numerics *recorded)
{
    const char *b = st_meta(f, "backends"), *p = st_meta(f, "precision"), *bd = st_meta(f, "build");
    memset(recorded, 0, sizeof *recorded);
    if (b) snprintf(recorded->backends, sizeof recorded->backends, "%s", b);
    if (p) snprintf(recorded->precision, sizeof recorded->precision, "%s", p);
    if (bd) snprintf(recorded->build, sizeof recorded->build, "%s", bd);
    const char *mb = st_meta(f, "micro_batch");
    if (mb) { /* a positive int, else not recorded (the data hash covers tensors, not this) */
        char *end;
        errno = 0;
        const long v = strtol(mb, &end, 10);
        if (errno == 0 && end != mb && *end == '\0' && v > 0 && v <= INT_MAX) recorded->micro_batch = (int)v;
    }
}

int checkpoint_numerics(const char *path, run_numerics *recorded, tlb_error *err)
{
    st_file f;
    if (open_checked(&f, path, err) != 0) return -1;
    read_numerics(&f, recorded);
    st_close(&f);
    return 0;
}

int checkpoint_data_hash(const char *path, char out[17], tlb_error *err)
{
    st_file f;
    if (open_checked(&f, path, err) != 0) return -1;
    snprintf(out, 17, "%s", st_meta(&f, "data_xxh3"));
    st_close(&f);
    return 0;
}

int checkpoint_load_params(const char *path, tlb_model *m, const char *data_xxh3, tlb_error *err)
{
    st_file f;
    if (open_checked(&f, path, err) != 0) return -1;
    int rc = 0;
    if (data_xxh3 && strcmp(st_meta(&f, "data_xxh3"), data_xxh3) != 0)
        rc = tlb_fail(err, "%s: its data hash is now %s, not the %s this run was started from", path,
                      st_meta(&f, "data_xxh3"), data_xxh3);
    const param_table *t = &m->layout.table;
    for (int i = 0; i < t->count && rc == 0; i++) {
        const param_entry *e = &t->entries[i];
        const st_tensor *x = st_find(&f, e->name);
        int same = x && x->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = x->shape[d] == e->shape[d];
        if (!same)
            rc = tlb_fail(err, "%s: parameter '%s' is %s: another architecture", path, e->name,
                          x ? "of another shape" : "missing");
        else
            rc = st_read_f32(&f, e->name, m->params + e->offset, e->numel, err);
    }
    st_close(&f);
    return rc;
}

int checkpoint_load(const char *path, tlb_model *m, float *adam_m, float *adam_v,
                    train_position *pos, uint64_t expected_hash, run_numerics *recorded, tlb_error *err)
{
    st_file f;
    if (st_open(&f, path, err) != 0) return tlb_fail_prefix(err, "checkpoint");
    int rc = 0;
    const char *format = st_meta(&f, "format"), *hash = st_meta(&f, "config_hash");
    const char *data_hash = st_meta(&f, "data_xxh3");
    const char *config_text = st_meta(&f, "config"), *config_xxh3 = st_meta(&f, "config_xxh3");
    char buf[32];
    const int v1 = format && strcmp(format, CHECKPOINT_FORMAT_1) == 0;
    if (!format || (!v1 && strcmp(format, CHECKPOINT_FORMAT) != 0))
        rc = tlb_fail(err, "%s: not a tlb-c checkpoint (format '%s')", path, format ? format : "missing");
    if (rc == 0) {
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)data_section_hash(&f));
        if (!data_hash || strcmp(data_hash, buf) != 0)
            rc = tlb_fail(err, "%s: corrupted: data hash %s, recorded %s", path, buf, data_hash ? data_hash : "none");
    }
    if (rc == 0 && !v1) {
        if (!config_text) config_text = "";
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)XXH3_64bits(config_text, strlen(config_text)));
        if (!config_xxh3 || strcmp(config_xxh3, buf) != 0)
            rc = tlb_fail(err, "%s: corrupted: config text hash %s, recorded %s", path, buf,
                          config_xxh3 ? config_xxh3 : "none");
    }
    if (rc == 0) {
        snprintf(buf, sizeof buf, "%016llx", (unsigned long long)expected_hash);
        if (!hash || strcmp(hash, buf) != 0)
            rc = tlb_fail(err, "%s: written for config %s, this run's config is %s", path,
                          hash ? hash : "(none)", buf);
    }
    const param_table *t = &m->layout.table;
    float *groups[3] = {m->params, adam_m, adam_v};
    const char *prefixes[3] = {"", "adamw.m.", "adamw.v."};
    char name[PARAM_NAME_MAX + 16];
    for (int g = 0; g < 3 && rc == 0; g++)
        for (int i = 0; i < t->count && rc == 0; i++) {
            snprintf(name, sizeof name, "%s%s", prefixes[g], t->entries[i].name);
            rc = st_read_f32(&f, name, groups[g] + t->entries[i].offset, t->entries[i].numel, err);
        }
    if (rc == 0) {
        const st_tensor *p = st_find(&f, "train.position");
        if (!p || p->dtype != ST_I64 || p->numel != 3) {
            rc = tlb_fail(err, "%s: train.position is missing or not 3 I64 values", path);
        } else {
            int64_t v[3];
            memcpy(v, p->data, sizeof v);
            if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[1] > 1000000 || v[2] > 100000000)
                rc = tlb_fail(err, "%s: train.position out of range", path);
            pos->step = (long)v[0];
            pos->epoch = (int)v[1];
            pos->batch_in_epoch = (int)v[2];
        }
    }
    memset(&pos->tally, 0, sizeof pos->tally);
    const char *tally = st_meta(&f, "run_tally");
    if (rc == 0 && tally) {
        train_tally *t2 = &pos->tally;
        int used = 0;
        const int got = sscanf(tally, "%lf %ld %ld %lf %lf %lf %ld %d%n", &t2->loss_sum, &t2->correct, &t2->seen,
                               &t2->epoch_seconds, &t2->wall_seconds, &t2->compute_seconds, &t2->images,
                               &t2->first_epochs, &used);
        if (got != 8 || tally[used] || !isfinite(t2->loss_sum) || !isfinite(t2->epoch_seconds) ||
            !isfinite(t2->wall_seconds) || !isfinite(t2->compute_seconds) || t2->correct < 0 || t2->seen < 0 ||
            t2->images < 0 || t2->first_epochs < 0)
            rc = tlb_fail(err, "%s: corrupted: run_tally '%.60s' is not 8 numbers", path, tally);
    }
    if (rc == 0 && recorded) read_numerics(&f, recorded);
    st_close(&f);
    return rc;
}
