/* Hardening: damaged checkpoints are refused with a message naming what is
 * wrong; a run killed at any moment (even inside a checkpoint write) resumes
 * to the same parameters, bit for bit; SIGINT/SIGTERM stop cleanly with
 * 128 + signal; a NaN gradient stops the run and keeps the last good
 * checkpoint; bad inputs get one line and their exit status.
 *
 * The process tests run the real binary (TLB_BIN, default ./tlb) with
 * TLB_NO_FETCH=1, so a data problem is reported instead of downloaded; they
 * use tiny models on one thread (fast on a busy machine, and under ASan). */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/fetch.h"
#include "model/model.h"
#include "ops/bf16_rate.h"
#include "ops/ops.h"
#include "train/checkpoint.h"
#include "train/numerics.h"
#include "train/run_config.h"
#include "train/trainer.h"
#include "util/safetensors.h"
#include "test_helpers.h"
#include "util/fs.h"

/* ------------------------------------------------------------------------ */
/* Helpers */


/* A tiny model on one thread: 8 steps per epoch with train_limit 256. */
static const char *tiny_cfg =
    "image_size: 16\npatch_size: 4\nembed_dim: 16\nchunk_size: 4\nr: 2\nnum_layers: 1\nnum_heads: 1\n"
    "ffn_drop: 0.1\nattn_drop: 0.1\nlearning_rate: 0.003\neval_limit: 64\nbatch_size: 32\nthreads: 1\n";

static void slurp(const char *path, unsigned char **bytes, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    rewind(fp);
    *bytes = malloc(*n + 1);
    cr_assert_eq(fread(*bytes, 1, *n, fp), *n);
    (*bytes)[*n] = '\0';
    fclose(fp);
}

static void spit(const char *path, const void *bytes, size_t n)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    cr_assert_eq(fwrite(bytes, 1, n, fp), n);
    fclose(fp);
}

/* Writes dir/NAME.cfg (tiny model + extra, runs under dir/runs) into path;
 * the run folder it will use goes to run_dir. */
static void write_cfg(char *path, size_t n, char *run_dir, size_t rn, const char *dir, const char *name,
                      const char *extra)
{
    snprintf(path, n, "%s/%s.cfg", dir, name);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fprintf(fp, "%s%sname: %s\nout_dir: %s/runs\n", tiny_cfg, extra, name, dir);
    fclose(fp);
    if (run_dir) {
        run_config c;
        tlb_error err;
        cr_assert_eq(run_config_load(&c, path, &err), 0, "%s", err.msg);
        cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
        run_config_run_dir(&c, run_dir, rn);
    }
}

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* Waits (up to 120 s) for path to appear or the child to exit; returns 1 if it appeared. */
static int wait_for_file(const char *path, pid_t pid)
{
    for (int i = 0; i < 120000; i++) {
        if (file_exists(path)) return 1;
        if (waitpid(pid, NULL, WNOHANG) == pid) return 0;
        usleep(1000);
    }
    return 0;
}

/* A model of a run folder's config, for checkpoint_load. */
typedef struct {
    run_config config;
    tlb_model model;
    float *m, *v;
} loaded_run;

static void open_run(loaded_run *r, const char *run_dir)
{
    tlb_error err;
    cr_assert_eq(train_load_run_config(&r->config, run_dir, &err), 0, "%s", err.msg);
    cr_assert_eq(model_create(&r->model, &r->config.model, &err), 0, "%s", err.msg);
    size_t n = model_num_params(&r->model);
    r->m = calloc(n, sizeof(float));
    r->v = calloc(n, sizeof(float));
}

static void close_run(loaded_run *r)
{
    free(r->m);
    free(r->v);
    model_destroy(&r->model);
}

static int load_run_checkpoint(loaded_run *r, const char *run_dir, train_position *pos, tlb_error *err)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
    return checkpoint_load(path, &r->model, r->m, r->v, pos, run_config_hash(&r->config), NULL, err);
}

/* Writes run_dir's checkpoint again, its tensors and position as they are,
 * with `numerics` in the metadata (NULL: none, as before they were recorded):
 * what another build or precision would have left there. */
static void resave_checkpoint(const char *run_dir, const run_numerics *numerics)
{
    loaded_run r;
    open_run(&r, run_dir);
    train_position pos;
    tlb_error err;
    cr_assert_eq(load_run_checkpoint(&r, run_dir, &pos, &err), 0, "%s", err.msg);
    char text[8192], path[1400];
    run_config_write_canonical(&r.config, text, sizeof text);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
    cr_assert_eq(checkpoint_save(path, &r.model, r.m, r.v, &pos, run_config_hash(&r.config), text, numerics, &err), 0,
                 "%s", err.msg);
    close_run(&r);
}

static void expect_same_data(const char *dir_a, const char *dir_b)
{
    size_t na, nb;
    unsigned char *a = test_checkpoint_data(dir_a, &na), *b = test_checkpoint_data(dir_b, &nb);
    cr_assert_eq(na, nb);
    cr_expect(memcmp(a, b, na) == 0, "%s and %s end with different parameters", dir_a, dir_b);
    free(a);
    free(b);
}

/* ------------------------------------------------------------------------ */
/* Damaged checkpoints (in-process: checkpoint_save, damage, checkpoint_load) */

typedef struct {
    char dir[64], path[128];
    run_config config;
    tlb_model model;
    float *m, *v;            /* saved moments */
    float *p2, *m2, *v2;     /* where loads go */
    train_position pos;
    uint64_t hash;
    unsigned char *bytes;    /* the saved file */
    size_t size, data_start;
} saved_ckpt;

static void save_tiny_checkpoint(saved_ckpt *s)
{
    snprintf(s->dir, sizeof s->dir, "/tmp/tlb_ckpt_XXXXXX");
    cr_assert_not_null(test_mkdtemp(s->dir));
    snprintf(s->path, sizeof s->path, "%s/checkpoint.safetensors", s->dir);
    tlb_error err;
    run_config_defaults(&s->config);
    cr_assert_eq(run_config_parse(&s->config, tiny_cfg, strlen(tiny_cfg), "tiny", &err), 0, "%s", err.msg);
    /* A name whose length leaves padding after the header's JSON (tested below). */
    cr_assert_eq(run_config_set(&s->config, "name=tiny1", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&s->config, &err), 0, "%s", err.msg);
    cr_assert_eq(model_create(&s->model, &s->config.model, &err), 0, "%s", err.msg);
    size_t n = model_num_params(&s->model);
    s->m = malloc(n * sizeof(float));
    s->v = malloc(n * sizeof(float));
    s->p2 = malloc(n * sizeof(float));
    s->m2 = malloc(n * sizeof(float));
    s->v2 = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        s->model.params[i] = sinf((float)i);
        s->m[i] = cosf((float)i) * 1e-3f;
        s->v[i] = (float)(i % 97) * 1e-6f;
    }
    s->pos = (train_position){.step = 123, .epoch = 4, .batch_in_epoch = 5};
    s->hash = run_config_hash(&s->config);
    char text[8192];
    run_config_write_canonical(&s->config, text, sizeof text);
    cr_assert_eq(checkpoint_save(s->path, &s->model, s->m, s->v, &s->pos, s->hash, text, NULL, &err), 0, "%s", err.msg);
    slurp(s->path, &s->bytes, &s->size);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | s->bytes[i];
    s->data_start = 8 + (size_t)hl;
}

/* Loads path into the second buffers; on success checks they equal what was saved. */
static int load_and_compare(saved_ckpt *s, const char *path, tlb_error *err)
{
    float *params = s->model.params;
    size_t n = model_num_params(&s->model);
    float *keep = malloc(n * sizeof(float));
    memcpy(keep, params, n * sizeof(float));
    memset(params, 0xff, n * sizeof(float));
    train_position pos = {.step = -1, .epoch = -1, .batch_in_epoch = -1};
    int rc = checkpoint_load(path, &s->model, s->m2, s->v2, &pos, s->hash, NULL, err);
    if (rc == 0) {
        cr_expect(memcmp(params, keep, n * sizeof(float)) == 0, "accepted with different parameters");
        cr_expect(memcmp(s->m2, s->m, n * sizeof(float)) == 0, "accepted with different moments");
        cr_expect(memcmp(s->v2, s->v, n * sizeof(float)) == 0, "accepted with different moments");
        cr_expect(pos.step == s->pos.step && pos.epoch == s->pos.epoch && pos.batch_in_epoch == s->pos.batch_in_epoch);
    } else {
        cr_expect(err->msg[0] != '\0' && !strchr(err->msg, '\n'), "refused without a one-line message");
        cr_expect(strstr(err->msg, path) != NULL, "the message does not name the file: %s", err->msg);
    }
    memcpy(params, keep, n * sizeof(float));
    free(keep);
    return rc;
}

static void free_saved(saved_ckpt *s)
{
    free(s->m), free(s->v), free(s->p2), free(s->m2), free(s->v2), free(s->bytes);
    model_destroy(&s->model);
}

/* Where a string sits in the header (first occurrence), or 0. */
static size_t header_find(const saved_ckpt *s, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 8; i + k <= s->data_start; i++)
        if (memcmp(s->bytes + i, needle, k) == 0) return i;
    return 0;
}

Test(hardening, checkpoint_byte_flips_are_refused_or_harmless, .timeout = 120)
{
    saved_ckpt s;
    save_tiny_checkpoint(&s);
    tlb_error err;
    cr_assert_eq(load_and_compare(&s, s.path, &err), 0, "the undamaged checkpoint: %s", err.msg);

    char bad[160];
    snprintf(bad, sizeof bad, "%s/flipped.safetensors", s.dir);
    unsigned char *copy = malloc(s.size);
    /* Every byte of the length, 400 offsets spread over the JSON header (it
     * is a few KB), 200 over the data; each flipped two ways. */
    int header_refused = 0, header_accepted = 0, data_refused = 0;
    const size_t data_len = s.size - s.data_start, json_len = s.data_start - 8;
    for (size_t k = 0; k < 8 + 400 + 200; k++) {
        size_t off = k < 8 ? k
                     : k < 408 ? 8 + (k - 8) * (json_len - 1) / 399
                               : s.data_start + (k - 408) * (data_len - 1) / 199;
        for (int which = 0; which < 2; which++) {
            memcpy(copy, s.bytes, s.size);
            copy[off] ^= which ? 0x80 : 0x01;
            spit(bad, copy, s.size);
            int rc = load_and_compare(&s, bad, &err);
            if (off < 8) {
                cr_expect_neq(rc, 0, "a flip in the header length (byte %zu) was accepted", off);
            } else if (off >= s.data_start) {
                cr_expect_neq(rc, 0, "a flip in the data (byte %zu) was accepted", off);
                cr_expect(strstr(err.msg, "corrupted: data hash") != NULL, "byte %zu: %s", off, err.msg);
                data_refused++;
            } else {
                if (rc == 0) header_accepted++;
                else header_refused++;
            }
        }
    }
    cr_log_info("byte flips: header %d refused, %d accepted with identical data; data %d refused",
                header_refused, header_accepted, data_refused);

    /* Which header bytes may change harmlessly: the padding after the JSON
     * (the parser reads one value and stops) and metadata keys nobody reads.
     * Those that carry meaning are refused, each with its reason; the
     * "config" text is covered by config_xxh3 (see checkpoint_config_text_is_hashed). */
    struct {
        const char *where;
        size_t delta; /* from the start of `where` */
        const char *reason;
    } cases[] = {
        {"\"format\":\"tlb-c", 11, "not a tlb-c checkpoint"},
        {"\"config_hash\":\"", 16, "written for config"},
        {"\"data_xxh3\":\"", 14, "corrupted: data hash"},
        {"\"config\":\"", 12, "corrupted: config text hash"},
        {"\"config_xxh3\":\"", 16, "corrupted: config text hash"},
        {"\"dtype\":\"F32\"", 10, "unsupported dtype"},
        {"\"shape\":[", 9, "bytes of data for"},
        {"\"data_offsets\":[0,", 18, "bytes of data for"},
        {"\"patch.conv.kernel\"", 3, "is missing"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t at = header_find(&s, cases[i].where);
        cr_assert_neq(at, 0, "no %s in the header", cases[i].where);
        memcpy(copy, s.bytes, s.size);
        copy[at + cases[i].delta] ^= 0x01;
        spit(bad, copy, s.size);
        cr_expect_neq(load_and_compare(&s, bad, &err), 0, "flip in %s accepted", cases[i].where);
        cr_expect(strstr(err.msg, cases[i].reason) != NULL, "flip in %s: %s", cases[i].where, err.msg);
    }
    size_t json_end = s.data_start;
    while (s.bytes[json_end - 1] == ' ') json_end--;
    cr_assert_lt(json_end, s.data_start, "the writer's header has no padding to test (change the config)");
    memcpy(copy, s.bytes, s.size);
    copy[json_end] = 'x';
    spit(bad, copy, s.size);
    cr_expect_eq(load_and_compare(&s, bad, &err), 0, "header padding changed: %s", err.msg);
    free(copy);
    free_saved(&s);
}

Test(hardening, truncated_checkpoint_is_refused, .timeout = 60)
{
    saved_ckpt s;
    save_tiny_checkpoint(&s);
    char bad[160];
    snprintf(bad, sizeof bad, "%s/cut.safetensors", s.dir);
    const size_t cuts[] = {0, 3, 7, 8, 9, s.data_start / 2, s.data_start - 1, s.data_start, s.data_start + 1,
                           (s.data_start + s.size) / 2, s.size - 1};
    const char *reasons[] = {"too short", "too short", "too short", "exceeds the file", "exceeds the file",
                             "exceeds the file", "exceeds the file", "outside the", "outside the", "outside the",
                             "outside the"};
    tlb_error err;
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(bad, s.bytes, cuts[i]);
        cr_expect_neq(load_and_compare(&s, bad, &err), 0, "cut at %zu of %zu accepted", cuts[i], s.size);
        cr_expect(strstr(err.msg, reasons[i]) != NULL, "cut at %zu: %s", cuts[i], err.msg);
    }
    /* Missing altogether. */
    snprintf(bad, sizeof bad, "%s/none.safetensors", s.dir);
    cr_expect_neq(load_and_compare(&s, bad, &err), 0);
    cr_expect(strstr(err.msg, "cannot open") != NULL, "%s", err.msg);
    free_saved(&s);
}

Test(hardening, checkpoint_of_another_config_is_refused)
{
    saved_ckpt s;
    save_tiny_checkpoint(&s);
    tlb_error err;
    s.hash ^= 1;
    cr_expect_neq(load_and_compare(&s, s.path, &err), 0);
    cr_expect(strstr(err.msg, "written for config") && strstr(err.msg, "this run's config is"), "%s", err.msg);
    free_saved(&s);
}

/* The "config" text in the metadata carries its own XXH3-64 (config_xxh3,
 * format 2): every byte of it flipped is refused, either by the JSON parser
 * or by the hash, with one line naming the file. A format-1 file (before
 * config_xxh3) still loads, its config text unchecked (resume reads
 * config.cfg, so nothing it loads depends on that text); a format-2 file
 * without the key is refused. */
Test(hardening, checkpoint_config_text_is_hashed, .timeout = 120)
{
    saved_ckpt s;
    save_tiny_checkpoint(&s);
    tlb_error err;
    char bad[160];
    snprintf(bad, sizeof bad, "%s/flipped.safetensors", s.dir);
    unsigned char *copy = malloc(s.size);
    const size_t at = header_find(&s, "\"config\":\""), start = at + strlen("\"config\":\"");
    cr_assert_neq(at, 0, "no config text in the header");
    size_t end = start;
    while (end < s.data_start && !(s.bytes[end] == '"' && s.bytes[end - 1] != '\\')) end++;
    cr_assert_gt(end - start, 100, "config text of %zu bytes", end - start);
    int by_hash = 0;
    for (size_t off = start; off < end; off++)
        for (int which = 0; which < 2; which++) {
            memcpy(copy, s.bytes, s.size);
            copy[off] ^= which ? 0x80 : 0x01;
            spit(bad, copy, s.size);
            cr_expect_neq(load_and_compare(&s, bad, &err), 0, "a flip in the config text (byte %zu) was accepted", off);
            by_hash += strstr(err.msg, "corrupted: config text hash") != NULL;
        }
    cr_log_info("config text flips: %zu, %d refused by config_xxh3, the rest by the JSON parser",
                2 * (end - start), by_hash);
    cr_expect_gt(by_hash, (int)(end - start), "most flips should reach the hash check");
    /* The message, in full. */
    memcpy(copy, s.bytes, s.size);
    copy[start + 2] ^= 0x01;
    spit(bad, copy, s.size);
    cr_expect_neq(load_and_compare(&s, bad, &err), 0);
    char want[300];
    snprintf(want, sizeof want, "%s: corrupted: config text hash ", bad);
    cr_expect(strncmp(err.msg, want, strlen(want)) == 0 && strstr(err.msg, ", recorded "), "%s", err.msg);

    /* Format 2 without config_xxh3 (key renamed, same length): refused. */
    const size_t key = header_find(&s, "\"config_xxh3\"");
    cr_assert_neq(key, 0);
    memcpy(copy, s.bytes, s.size);
    copy[key + 11] = 'X';
    spit(bad, copy, s.size);
    cr_expect_neq(load_and_compare(&s, bad, &err), 0, "format 2 without config_xxh3 accepted");
    cr_expect(strstr(err.msg, "config text hash") && strstr(err.msg, "recorded none"), "%s", err.msg);
    /* The same as format 1: loads, also with its config text changed. */
    const size_t fmt = header_find(&s, "\"format\":\"tlb-c checkpoint 2\"");
    cr_assert_neq(fmt, 0, "the writer's format is not 2");
    copy[fmt + strlen("\"format\":\"tlb-c checkpoint ")] = '1';
    spit(bad, copy, s.size);
    cr_expect_eq(load_and_compare(&s, bad, &err), 0, "a format-1 checkpoint: %s", err.msg);
    copy[start + 2] ^= 0x01;
    spit(bad, copy, s.size);
    cr_expect_eq(load_and_compare(&s, bad, &err), 0, "a format-1 checkpoint, config text changed: %s", err.msg);
    free(copy);
    free_saved(&s);
}

/* ------------------------------------------------------------------------ */
/* Killed runs */

/* An uninterrupted run of the same config, in its own folder. */
static void reference_run(const char *name, const char *extra, char *run_dir, size_t rn)
{
    char dir[] = "/tmp/tlb_ref_XXXXXX", cfg[1200], errf[1200];
    cr_assert_not_null(test_mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, run_dir, rn, dir, name, extra);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
    cr_assert_eq(run_tlb(errf, NULL, (const char *[]){"train", cfg, NULL}), 0);
}

Test(hardening, sigkill_inside_checkpoint_write_keeps_the_previous_one, .timeout = 180)
{
    test_ensure_cifar10();
    const char *extra = "train_limit: 256\nepochs: 3\n";
    char ref[1300];
    reference_run("killed_in_ckpt", extra, ref, sizeof ref);

    char dir[] = "/tmp/tlb_kill_ckpt_XXXXXX", cfg[1200], run_dir[1300], errf[1200], ckpt[1400];
    cr_assert_not_null(test_mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, run_dir, sizeof run_dir, dir, "killed_in_ckpt", extra);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", run_dir);
    /* The second save (end of epoch 2) dies between its synced temp file and the rename. */
    pid_t pid = spawn_tlb(errf, "TLB_TEST_KILL_IN_CHECKPOINT=2", (const char *[]){"train", cfg, NULL});
    cr_assert_eq(wait_status(pid), 1000 + SIGKILL);
    char tmp[1500];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", ckpt, (long)pid);
    cr_expect(file_exists(tmp), "no temporary file %s: the kill was not inside the write", tmp);

    /* The previous checkpoint (epoch 1) is intact and loads. */
    loaded_run r;
    open_run(&r, run_dir);
    train_position pos;
    tlb_error err;
    cr_assert_eq(load_run_checkpoint(&r, run_dir, &pos, &err), 0, "%s", err.msg);
    cr_expect_eq(pos.epoch, 1);
    cr_expect_eq(pos.step, 8);
    close_run(&r);

    cr_assert_eq(run_tlb(errf, NULL, (const char *[]){"train", "--resume", run_dir, NULL}), 0);
    expect_same_data(ref, run_dir);
    /* The resume removed the dead process's temporary file, and said so. */
    cr_expect(!file_exists(tmp), "%s is still there after the resume", tmp);
    char msg[4096], line[1600];
    read_text(errf, msg, sizeof msg, NULL);
    snprintf(line, sizeof line, "removed %s, left by process %ld which is gone\n", tmp, (long)pid);
    cr_expect(strstr(msg, line) != NULL, "stderr: %s", msg);
}

/* checkpoint_remove_stale_tmp removes exactly PATH.tmp.PID of a process that
 * is gone (or of this one) and keeps everything else. */
Test(hardening, stale_checkpoint_tmp_files_are_removed)
{
    char dir[] = "/tmp/tlb_stale_XXXXXX", path[200], f[300];
    cr_assert_not_null(test_mkdtemp(dir));
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", dir);
    pid_t dead = fork();
    cr_assert_neq(dead, -1);
    if (dead == 0) _exit(0);
    cr_assert_eq(wait_status(dead), 0);
    const long gone[] = {(long)dead, (long)getpid()};
    const char *keep[] = {"checkpoint.safetensors", "checkpoint.safetensors.tmp.", "checkpoint.safetensors.tmp.12x",
                          "checkpoint.safetensors.tmp.-5", "checkpoint.safetensors.tmp.99999999999999999999",
                          "other.safetensors.tmp.1", "metrics.csv", NULL};
    char live[64], dead_other[64];
    snprintf(live, sizeof live, "checkpoint.safetensors.tmp.%ld", (long)getppid()); /* alive: kept */
    snprintf(dead_other, sizeof dead_other, "other.safetensors.tmp.%ld", (long)dead); /* not ours: kept */
    for (int i = 0; keep[i]; i++) {
        snprintf(f, sizeof f, "%s/%s", dir, keep[i]);
        spit(f, "x", 1);
    }
    snprintf(f, sizeof f, "%s/%s", dir, live);
    spit(f, "x", 1);
    snprintf(f, sizeof f, "%s/%s", dir, dead_other);
    spit(f, "x", 1);
    for (int i = 0; i < 2; i++) {
        snprintf(f, sizeof f, "%s.tmp.%ld", path, gone[i]);
        spit(f, "x", 1);
    }
    cr_expect_eq(checkpoint_remove_stale_tmp(path, NULL), 2);
    for (int i = 0; i < 2; i++) {
        snprintf(f, sizeof f, "%s.tmp.%ld", path, gone[i]);
        cr_expect(!file_exists(f), "%s was kept", f);
    }
    for (int i = 0; keep[i]; i++) {
        snprintf(f, sizeof f, "%s/%s", dir, keep[i]);
        cr_expect(file_exists(f), "%s was removed", f);
        unlink(f);
    }
    snprintf(f, sizeof f, "%s/%s", dir, live);
    cr_expect(file_exists(f), "%s (a live process) was removed", f);
    unlink(f);
    snprintf(f, sizeof f, "%s/%s", dir, dead_other);
    cr_expect(file_exists(f), "%s was removed", f);
    unlink(f);
    cr_expect_eq(rmdir(dir), 0, "%s holds more files than the test made", dir);
}

Test(hardening, sigkill_at_a_random_moment_resumes_bit_exact, .timeout = 240)
{
    test_ensure_cifar10();
    const char *extra = "train_limit: 1024\nepochs: 4\n";
    char ref[1300];
    reference_run("killed", extra, ref, sizeof ref);

    unsigned seed = (unsigned)time(NULL) ^ (unsigned)getpid();
    srand(seed);
    int delay_ms = 400;
    for (int attempt = 0; attempt < 8; attempt++, delay_ms /= 2) {
        char dir[] = "/tmp/tlb_kill_XXXXXX", cfg[1200], run_dir[1300], errf[1200], ckpt[1400];
        cr_assert_not_null(test_mkdtemp(dir));
        write_cfg(cfg, sizeof cfg, run_dir, sizeof run_dir, dir, "killed", extra);
        snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
        snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", run_dir);
        pid_t pid = spawn_tlb(errf, NULL, (const char *[]){"train", cfg, NULL});
        cr_assert(wait_for_file(ckpt, pid), "the run ended before its first checkpoint");
        int wait_us = delay_ms > 0 ? rand() % (delay_ms * 1000) : 0;
        usleep((useconds_t)wait_us);
        kill(pid, SIGKILL);
        int st = wait_status(pid);
        if (st == 0) continue; /* finished before the kill: try sooner */
        cr_assert_eq(st, 1000 + SIGKILL);
        cr_log_info("killed %d us after the first checkpoint (seed %u, attempt %d)", wait_us, seed, attempt + 1);
        cr_assert_eq(run_tlb(errf, NULL, (const char *[]){"train", "--resume", run_dir, NULL}), 0);
        expect_same_data(ref, run_dir);
        return;
    }
    cr_assert_fail("every run finished before it could be killed");
}

/* A run's folder and files: a new temp folder from `tmpl` holding NAME.cfg
 * (tiny_cfg + extra), its run folder, its stderr file and checkpoint path. */
typedef struct {
    char dir[40], cfg[1200], run_dir[1300], errf[1200], ckpt[1400];
    pid_t pid; /* start_until_first_checkpoint's process */
} test_run;

static void new_test_run(test_run *r, const char *tmpl, const char *name, const char *extra)
{
    test_ensure_cifar10();
    snprintf(r->dir, sizeof r->dir, "%s", tmpl);
    cr_assert_not_null(test_mkdtemp(r->dir));
    write_cfg(r->cfg, sizeof r->cfg, r->run_dir, sizeof r->run_dir, r->dir, name, extra);
    snprintf(r->errf, sizeof r->errf, "%s/stderr.txt", r->dir);
    snprintf(r->ckpt, sizeof r->ckpt, "%s/checkpoint.safetensors", r->run_dir);
    r->pid = -1;
}

/* A 40-epoch run, left running once its first checkpoint exists (for the
 * signal tests). */
static void start_until_first_checkpoint(test_run *r, const char *tmpl, const char *name)
{
    new_test_run(r, tmpl, name, "train_limit: 256\nepochs: 40\n");
    r->pid = spawn_tlb(r->errf, NULL, (const char *[]){"train", r->cfg, NULL});
    cr_assert(wait_for_file(r->ckpt, r->pid), "the run ended before its first checkpoint");
}

static void stop_with(int signo)
{
    test_run run;
    start_until_first_checkpoint(&run, "/tmp/tlb_sig_XXXXXX", "signalled");
    const pid_t pid = run.pid;
    const char *run_dir = run.run_dir, *errf = run.errf;
    char msg[4096];
    kill(pid, signo);
    cr_assert_eq(wait_status(pid), 128 + signo);
    read_text(errf, msg, sizeof msg, NULL);
    char expect[1500];
    snprintf(expect, sizeof expect, "resume with: tlb train --resume %s\n", run_dir);
    cr_expect(strstr(msg, expect) != NULL, "stderr: %s", msg);
    /* The checkpoint it wrote on the way out loads, and records progress. */
    loaded_run r;
    open_run(&r, run_dir);
    train_position pos;
    tlb_error err;
    cr_assert_eq(load_run_checkpoint(&r, run_dir, &pos, &err), 0, "%s", err.msg);
    cr_expect_geq(pos.step, 9, "stopped at step %ld, before the first epoch's end", pos.step);
    cr_expect_lt(pos.epoch, 40);
    close_run(&r);
}

Test(hardening, sigint_checkpoints_and_exits_130, .timeout = 180) { stop_with(SIGINT); }
Test(hardening, sigterm_checkpoints_and_exits_143, .timeout = 180) { stop_with(SIGTERM); }
/* SIGUSR1 stops the same way: mpirun forwards it to the ranks (test_dist.c). */
Test(hardening, sigusr1_checkpoints_and_exits_138, .timeout = 180) { stop_with(SIGUSR1); }

/* A second signal while the first one's clean stop is under way exits at
 * once with 128 + that signal: no stop checkpoint, no "resume with" line;
 * the last end-of-epoch checkpoint stays and loads. The two signals differ
 * (SIGINT, then SIGTERM) because two SIGINTs sent back to back may merge
 * into one pending signal; the handler treats any second signal alike. Both
 * are sent before the step in progress can end (a step plus a synced
 * checkpoint write takes milliseconds, the two kill calls microseconds).
 * Which handler runs second is up to the kernel (any thread of the process
 * may take either), so the status is 143 or 130. */
Test(hardening, second_signal_exits_at_once, .timeout = 180)
{
    test_run run;
    start_until_first_checkpoint(&run, "/tmp/tlb_sig2_XXXXXX", "signalled_twice");
    const pid_t pid = run.pid;
    const char *run_dir = run.run_dir, *errf = run.errf;
    char msg[4096];
    kill(pid, SIGINT);
    kill(pid, SIGTERM);
    const int status = wait_status(pid);
    read_text(errf, msg, sizeof msg, NULL);
    cr_assert(status == 128 + SIGTERM || status == 128 + SIGINT, "exit status %d; stderr: %s", status, msg);
    cr_expect(strstr(msg, "stopped after step") == NULL && strstr(msg, "resume with") == NULL,
              "the second signal did not stop at once; stderr: %s", msg);
    loaded_run r;
    open_run(&r, run_dir);
    train_position pos;
    tlb_error err;
    cr_assert_eq(load_run_checkpoint(&r, run_dir, &pos, &err), 0, "%s", err.msg);
    cr_expect_eq(pos.batch_in_epoch, 0, "a stop checkpoint was written (epoch %d, batch %d)", pos.epoch,
                 pos.batch_in_epoch);
    cr_expect_geq(pos.epoch, 1);
    close_run(&r);
}

Test(hardening, nan_gradient_stops_and_keeps_last_good_checkpoint, .timeout = 180)
{
    test_run run;
    new_test_run(&run, "/tmp/tlb_nan_XXXXXX", "nan", "train_limit: 256\nepochs: 3\n");
    const char *cfg = run.cfg, *run_dir = run.run_dir, *errf = run.errf;
    char msg[4096];
    /* Step 12 = epoch 2, batch 4 (8 steps an epoch); the hook poisons the
     * middle tensor's gradient and the last one's. */
    cr_assert_eq(run_tlb(errf, "TLB_TEST_NAN_AT_STEP=12", (const char *[]){"train", cfg, NULL}), 1);
    read_text(errf, msg, sizeof msg, NULL);
    loaded_run r;
    open_run(&r, run_dir);
    const param_table *t = &r.model.layout.table;
    char expect[2048];
    snprintf(expect, sizeof expect, "tlb train: step 12 (epoch 2, batch 4): non-finite gradient of %s; the last good checkpoint is %s/checkpoint.safetensors\n",
             t->entries[t->count / 2].name, run_dir);
    cr_expect(strstr(msg, expect) != NULL, "expected \"%s\" in stderr: %s", expect, msg);
    train_position pos;
    tlb_error err;
    cr_assert_eq(load_run_checkpoint(&r, run_dir, &pos, &err), 0, "%s", err.msg);
    cr_expect_eq(pos.step, 8);
    cr_expect_eq(pos.epoch, 1);
    for (size_t i = 0; i < model_num_params(&r.model); i++)
        cr_assert(isfinite(r.model.params[i]), "parameter %zu of the kept checkpoint is not finite", i);
    close_run(&r);
}

/* ------------------------------------------------------------------------ */
/* Bad inputs: one line on stderr and the documented exit status */

/* Runs `tlb ARGS` and expects status and one stderr line containing each of the fragments. */
static void expect_one_line(int status, const char *env, const char *const *args, const char *frag1,
                            const char *frag2)
{
    char errf[] = "/tmp/tlb_bad_err_XXXXXX", msg[4096];
    int fd = mkstemp(errf);
    cr_assert_geq(fd, 0);
    close(fd);
    int st = run_tlb(errf, env, args);
    int lines;
    read_text(errf, msg, sizeof msg, &lines);
    cr_expect_eq(st, status, "`tlb %s %s`: status %d, expected %d; stderr: %s", args[0], args[1] ? args[1] : "",
                 st, status, msg);
    cr_expect_eq(lines, 1, "`tlb %s %s`: %d lines on stderr: %s", args[0], args[1] ? args[1] : "", lines, msg);
    cr_expect(strstr(msg, frag1) != NULL, "\"%s\" not in: %s", frag1, msg);
    if (frag2) cr_expect(strstr(msg, frag2) != NULL, "\"%s\" not in: %s", frag2, msg);
    unlink(errf);
}

Test(hardening, bad_config_values, .timeout = 60)
{
    char dir[] = "/tmp/tlb_badcfg_XXXXXX", cfg[1200];
    cr_assert_not_null(test_mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "bad", "epochs: -1\n");
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, "bad.cfg:", "epochs:");
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "bad", "weight_decay: fast\n");
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, "weight_decay: expected a number", NULL);
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "bad", "backend: dense:nosuch\n");
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, "backend", "nosuch");
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "bad", "");
    expect_one_line(2, NULL, (const char *[]){"train", cfg, "--set", "threads=two", NULL}, "--set: threads:", NULL);
    expect_one_line(2, NULL, (const char *[]){"train", cfg, "--set", "backend=avx9", NULL}, "avx9", NULL);
    spit(cfg, "epochs: [1\n", 11);
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, "bad.cfg:", "yaml");
    char runs[1300];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    cr_expect(access(runs, F_OK) != 0, "a bad config created %s", runs);
}

/* The slow-state keys: a bad value is one file:line:key line, status 2, no run folder. */
Test(hardening, bad_slow_state_values, .timeout = 60)
{
    char dir[] = "/tmp/tlb_badstate_XXXXXX", cfg[1200];
    cr_assert_not_null(mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "bad", "state_init: random\n");
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, "bad.cfg:", "state_init: expected zeros, learned or sinusoid");
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "bad", "readout: states\n");
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, "bad.cfg:", "readout: expected last_fast or state");
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "bad", "num_state_tokens: -3\n");
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, "bad.cfg:", "num_state_tokens:");
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "bad", "");
    expect_one_line(2, NULL, (const char *[]){"train", cfg, "--set", "num_state_tokens=many", NULL},
                    "--set: num_state_tokens:", NULL);
    char runs[1300];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    cr_expect(access(runs, F_OK) != 0, "a bad config created %s", runs);
}

Test(hardening, bad_data_dir_without_fetch, .timeout = 60)
{
    char dir[] = "/tmp/tlb_baddata_XXXXXX", cfg[1200], data[1200], extra[1400], file[1300];
    cr_assert_not_null(test_mkdtemp(dir));
    snprintf(data, sizeof data, "%s/data", dir);
    cr_assert_eq(mkdir(data, 0755), 0);
    /* Empty: named, with the command that fixes it. */
    snprintf(extra, sizeof extra, "data_dir: %s\ntrain_limit: 256\nepochs: 1\n", data);
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "nodata", extra);
    expect_one_line(1, NULL, (const char *[]){"train", cfg, NULL}, "data_batch_1.bin: cannot open", "tlb data fetch");
    /* A truncated file. */
    snprintf(file, sizeof file, "%s/data_batch_1.bin", data);
    spit(file, "0123456789", 10);
    expect_one_line(1, NULL, (const char *[]){"train", cfg, NULL}, "data_batch_1.bin: size 10 bytes, expected 30730000",
                    "TLB_NO_FETCH");
}

Test(hardening, bad_checkpoints_for_resume, .timeout = 120)
{
    test_ensure_cifar10();
    expect_one_line(2, NULL, (const char *[]){"train", "--resume", "/nonexistent/run", NULL}, "config.cfg", NULL);
    test_run run;
    new_test_run(&run, "/tmp/tlb_badresume_XXXXXX", "badresume", "train_limit: 256\nepochs: 1\n");
    const char *cfg = run.cfg, *run_dir = run.run_dir, *errf = run.errf, *ckpt = run.ckpt;
    cr_assert_eq(run_tlb(errf, NULL, (const char *[]){"train", cfg, NULL}), 0);
    unsigned char *bytes;
    size_t n;
    slurp(ckpt, &bytes, &n);
    /* A flipped data byte. */
    bytes[n - 5] ^= 0x10;
    spit(ckpt, bytes, n);
    expect_one_line(2, NULL, (const char *[]){"train", "--resume", run_dir, NULL}, "corrupted: data hash", ckpt);
    /* Truncated. */
    bytes[n - 5] ^= 0x10;
    spit(ckpt, bytes, n / 2);
    expect_one_line(2, NULL, (const char *[]){"train", "--resume", run_dir, NULL}, ckpt, "outside the");
    /* Missing (a run stopped before its first checkpoint): says so, and what to do. */
    unlink(ckpt);
    expect_one_line(2, NULL, (const char *[]){"train", "--resume", run_dir, NULL}, "has no checkpoint yet",
                    "start it again with `tlb train");
    free(bytes);
}

Test(hardening, unwritable_out_dir, .timeout = 60)
{
    /* A path under a regular file cannot be created (even by root). */
    char dir[] = "/tmp/tlb_unwritable_XXXXXX", cfg[1200], file[1200], set[1300];
    cr_assert_not_null(test_mkdtemp(dir));
    snprintf(file, sizeof file, "%s/a_file", dir);
    spit(file, "x", 1);
    write_cfg(cfg, sizeof cfg, NULL, 0, dir, "unwritable", "train_limit: 256\nepochs: 1\n");
    snprintf(set, sizeof set, "out_dir=%s/runs", file);
    expect_one_line(2, NULL, (const char *[]){"train", cfg, "--set", set, NULL}, file, NULL);
}

/* ------------------------------------------------------------------------ */
/* What the fuzzers found (fuzz/), kept fixed; the UB and overflow show
 * under make test-sanitize. */

Test(hardening, fuzz_findings_stay_fixed)
{
    tlb_error err;
    /* safetensors: a second "__metadata__" map overflowed the first's arrays. */
    const char json[] = "{\"__metadata__\":{\"a\":\"b\"},\"__metadata__\":{\"c\":\"d\",\"e\":\"f\"}}";
    size_t n = strlen(json);
    unsigned char *bytes = malloc(8 + n);
    for (int i = 0; i < 8; i++) bytes[i] = (unsigned char)((uint64_t)n >> (8 * i));
    memcpy(bytes + 8, json, n);
    st_file f;
    cr_expect_neq(st_parse(&f, bytes, 8 + n, "twice.safetensors", &err), 0);
    cr_expect(strstr(err.msg, "__metadata__ appears twice") != NULL, "%s", err.msg);

    /* config: a --set string config.cfg could not read back (--resume failed). */
    run_config c;
    run_config_defaults(&c);
    cr_expect_neq(run_config_set(&c, "data_dir=/tmp/\xff", &err), 0);
    cr_expect(strstr(err.msg, "--set: data_dir:") && strstr(err.msg, "UTF-8"), "%s", err.msg);
    cr_expect_neq(run_config_set(&c, "out_dir=a\xc2\x85" "b", &err), 0, "NEL reads back as a space");
    cr_expect_eq(run_config_set(&c, "data_dir=/tmp/caf\xc3\xa9 \"x\"\\", &err), 0, "%s", err.msg);
    /* Messages quoting input stay on one line. */
    cr_expect_neq(run_config_set(&c, "epo\nchs=3", &err), 0);
    cr_expect(strchr(err.msg, '\n') == NULL, "%s", err.msg);

    /* labels JSON: 1e300 was cast to int (undefined) before the range check. */
    char path[] = "/tmp/tlb_labels_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    close(fd);
    spit(path, "[1, 1e300, 2]", 13);
    uint8_t labels[3];
    cr_expect_neq(cifar10_read_labels_json(labels, 3, path, &err), 0);
    cr_expect(strstr(err.msg, "entry 1 is not an integer label") != NULL, "%s", err.msg);
    unlink(path);
}

/* ------------------------------------------------------------------------ */
/* The run's numerics: summary.json and the checkpoint name the backend each
 * op ran on and the precision; a resume that would compute differently (here
 * TLB_BACKEND=ref) is refused unless --accept-numerics; a checkpoint from
 * before these fields still resumes. */

Test(hardening, resume_with_other_numerics_is_refused, .timeout = 180)
{
    test_run run;
    new_test_run(&run, "/tmp/tlb_numerics_XXXXXX", "numerics", "train_limit: 64\nepochs: 1\n");
    const char *cfg = run.cfg, *run_dir = run.run_dir, *errf = run.errf;
    char path[1400];
    cr_assert_eq(run_tlb(errf, NULL, (const char *[]){"train", cfg, NULL}), 0);

    /* What ran, chosen as tlb does: the automatic backends and the config's
     * mixed_precision (on by default), so the precision is this CPU's:
     * "bf16 dense" with AVX512_BF16, "fp32" without. */
    tlb_error err;
    op_table ops;
    cr_assert_eq(numerics_choose(&ops, NULL, 1, NULL, NULL, 0, &err), 0, "%s", err.msg);
    const int bf16 = ops.bf16_dense;
    if (bf16) cr_assert_eq(ops_table_set_bf16_h(&ops, 1), 0); /* bf16_activations: auto */
    cr_expect(!bf16 || ops_mixed_precision_supported(), "mixed precision where the CPU has AVX512_BF16 only");
    run_numerics now;
    numerics_of(&now, &ops);
    unsigned char *json;
    size_t n;
    snprintf(path, sizeof path, "%s/summary.json", run_dir);
    slurp(path, &json, &n);
    char want[160];
    snprintf(want, sizeof want, "\"dense\":\t\"%s\"", bf16 ? "bf16" : backend_name(ops.backend[TLB_OP_dense]));
    cr_expect(strstr((char *)json, want) != NULL, "%s not in summary.json: %s", want, json);
    snprintf(want, sizeof want, "\"precision\":\t\"%s\"", now.precision);
    cr_expect(strstr((char *)json, want) != NULL, "%s not in summary.json: %s", want, json);
    free(json);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
    st_file f;
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    cr_expect_str_eq(st_meta(&f, "backends"), now.backends);
    cr_expect_str_eq(st_meta(&f, "precision"), now.precision);
    /* and the build that wrote it, as `tlb --version` names it */
    char version[200], build[48];
    snprintf(path, sizeof path, "%s/version.txt", run.dir);
    cr_assert_eq(run_tlb_out(path, errf, NULL, (const char *[]){"--version", NULL}), 0);
    read_text(path, version, sizeof version, NULL);
    cr_assert_eq(sscanf(version, "tlb %47s", build), 1, "%s", version);
    cr_expect_str_eq(st_meta(&f, "build"), build);
    st_close(&f);
    snprintf(path, sizeof path, "%s/summary.json", run_dir);
    slurp(path, &json, &n);
    snprintf(want, sizeof want, "\"build\":\t\"%s\"", build);
    cr_expect(strstr((char *)json, want) != NULL, "%s not in summary.json: %s", want, json);
    free(json);
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);

    /* Under TLB_BACKEND=ref the first op on another backend is dense in fp32;
     * in bf16 dense stays bf16, but ref has no FFN stage to save h in bf16:
     * the precision differs first. */
    if (bf16)
        snprintf(want, sizeof want, "resuming would change the numerics: precision was %s, now bf16 dense",
                 now.precision);
    else
        snprintf(want, sizeof want, "resuming would change the numerics: dense ran on");
    expect_one_line(2, "TLB_BACKEND=ref", (const char *[]){"train", "--resume", run_dir, NULL}, want,
                    "pass --accept-numerics");
    cr_expect_eq(run_tlb(errf, "TLB_BACKEND=ref", (const char *[]){"train", "--resume", run_dir, "--accept-numerics", NULL}),
                 0);
    char msg[4096];
    read_text(errf, msg, sizeof msg, NULL);
    cr_expect(strstr(msg, "note: resuming with different numerics") != NULL, "%s", msg);
    cr_expect_eq(run_tlb(errf, NULL, (const char *[]){"train", cfg, "--accept-numerics", NULL}), 2,
                 "--accept-numerics is for --resume only");

    /* Written in the other precision (bf16 where this CPU runs fp32, fp32
     * where it runs bf16), resumed here: a CPU with AVX512_BF16 continues in
     * the recorded precision (numerics_choose), one without cannot run bf16
     * and refuses; then a checkpoint written before the fields existed:
     * resumes, unchecked. */
    run_numerics other = now;
    const char *other_precision = bf16 ? "fp32" : "bf16 dense, bf16 h"; /* bf16_activations: auto */
    snprintf(other.precision, sizeof other.precision, "%s", other_precision);
    if (ops_mixed_precision_supported()) { /* what a run in the other precision records */
        op_table other_ops = ops;
        cr_assert_eq(ops_table_set_bf16(&other_ops, !bf16), 0);
        cr_assert_eq(ops_table_set_bf16_h(&other_ops, !bf16), 0);
        numerics_of(&other, &other_ops);
        cr_assert_str_eq(other.precision, other_precision);
    }
    snprintf(other.build, sizeof other.build, "v0-elsewhere");
    resave_checkpoint(run_dir, &other);
    if (!ops_mixed_precision_supported()) {
        /* auto keeps the recorded bf16 h, here in fp32 (the fused FFN's) */
        op_table resumed = ops;
        cr_assert_eq(ops_table_set_bf16_h(&resumed, 1), 0);
        snprintf(want, sizeof want, "numerics: precision was %s, now %s (", other_precision,
                 ops_table_precision(&resumed));
        expect_one_line(2, NULL, (const char *[]){"train", "--resume", run_dir, NULL}, want, "pass --accept-numerics");
    } else {
        const int rc = run_tlb(errf, NULL, (const char *[]){"train", "--resume", run_dir, "--set", "epochs=2", NULL});
        read_text(errf, msg, sizeof msg, NULL);
        cr_assert_eq(rc, 0, "%s", msg);
        snprintf(want, sizeof want, "was checkpointed by tlb v0-elsewhere and resumes under tlb %s:", build);
        cr_expect(strstr(msg, want) != NULL, "another build's checkpoint resumes with a note: %s", msg);
        snprintf(path, sizeof path, "%s/summary.json", run_dir);
        slurp(path, &json, &n);
        snprintf(want, sizeof want, "\"precision\":\t\"%s\"", other_precision);
        cr_expect(strstr((char *)json, want) != NULL, "the resumed run must keep %s: %s", other_precision, json);
        free(json);
        snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
    }
    resave_checkpoint(run_dir, NULL); /* after the resume above, epochs is 2 in the run's config */
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    cr_expect_null(st_meta(&f, "backends"));
    st_close(&f);
    cr_expect_eq(run_tlb(errf, "TLB_BACKEND=ref", (const char *[]){"train", "--resume", run_dir, NULL}), 0);
}

/* The micro-batch orders the gradient sums, so a run records it in its
 * checkpoint, and a resume whose config leaves micro_batch to the rule (0)
 * trains on with the recorded one, with a note when this build's rule would
 * take another (a later build, or mixed precision's cap, may). */
Test(hardening, resume_keeps_the_recorded_micro_batch, .timeout = 180)
{
    test_run run;
    new_test_run(&run, "/tmp/tlb_microbatch_XXXXXX", "microbatch", "train_limit: 64\nepochs: 1\n");
    const char *run_dir = run.run_dir, *errf = run.errf;
    cr_assert_eq(run_tlb(errf, NULL, (const char *[]){"train", run.cfg, NULL}), 0);
    tlb_error err;
    run_numerics was;
    cr_assert_eq(checkpoint_numerics(run.ckpt, &was, &err), 0, "%s", err.msg);
    cr_expect_eq(was.micro_batch, 32, "the rule takes the whole batch of 32 here; recorded %d", was.micro_batch);

    /* as if an earlier build had trained it in micro-batches of 16 */
    was.micro_batch = 16;
    resave_checkpoint(run_dir, &was);
    const int rc = run_tlb(errf, NULL, (const char *[]){"train", "--resume", run_dir, "--set", "epochs=2", NULL});
    char msg[4096];
    read_text(errf, msg, sizeof msg, NULL);
    cr_assert_eq(rc, 0, "%s", msg);
    cr_expect(strstr(msg, "note: micro_batch: resuming with the 16 samples the run began with (this build would take"
                          " 32)") != NULL, "%s", msg);
    char path[1400];
    snprintf(path, sizeof path, "%s/summary.json", run_dir);
    unsigned char *json;
    size_t n;
    slurp(path, &json, &n);
    cr_expect(strstr((char *)json, "\"micro_batch\":\t16") != NULL, "%s", json);
    free(json);
    cr_assert_eq(checkpoint_numerics(run.ckpt, &was, &err), 0, "%s", err.msg);
    cr_expect_eq(was.micro_batch, 16);
}

/* mixed_precision runs bf16 products where they pay: never without
 * AVX512_BF16; a checkpoint's recorded precision wins (a run continues as it
 * began); TLB_BF16=always forces bf16 where the CPU has it, never fp32; else the
 * measured rate decides. Which branch applies depends on the CPU: each
 * checks what this CPU must give. */
Test(hardening, mixed_precision_where_it_pays)
{
    tlb_error err;
    op_table ops;
    char why[200];
    const int has = ops_mixed_precision_supported();
    const double ratio = bf16_rate_ratio();
    cr_expect(has ? ratio > 0.1 && ratio < 10.0 : ratio == 0.0, "bf16/fp32 rate %.3f", ratio);

    cr_assert_eq(numerics_choose(&ops, NULL, 0, "bf16 dense", why, sizeof why, &err), 0, "%s", err.msg);
    cr_expect(!ops.bf16_dense && !why[0], "mixed_precision: false is fp32 whatever was recorded");
    cr_assert_eq(numerics_choose(&ops, NULL, 1, "bf16 dense", why, sizeof why, &err), 0, "%s", err.msg);
    cr_expect_eq(ops.bf16_dense, has, "a bf16 checkpoint continues in bf16 where the CPU can");
    cr_assert_eq(numerics_choose(&ops, NULL, 1, "fp32", why, sizeof why, &err), 0, "%s", err.msg);
    cr_expect(!ops.bf16_dense, "an fp32 checkpoint continues in fp32");
    cr_expect(strstr(why, has ? "the checkpoint ran in fp32" : "lacks") != NULL, "%s", why);

    /* Nothing recorded: the measured rate (read again here: both readings
     * must fall on the same side, BF16_PAYS_RATIO being far from either
     * measured kind). */
    cr_assert_eq(numerics_choose(&ops, NULL, 1, NULL, why, sizeof why, &err), 0, "%s", err.msg);
    cr_expect_eq(ops.bf16_dense, has && ratio >= BF16_PAYS_RATIO, "rate %.2f, why: %s", ratio, why);
    cr_expect_eq(why[0] != '\0', !ops.bf16_dense, "a reason exactly when the config's bf16 is not run: %s", why);
    cr_assert_eq(setenv("TLB_BF16", "always", 1), 0);
    cr_assert_eq(numerics_choose(&ops, NULL, 1, "", why, sizeof why, &err), 0, "%s", err.msg);
    cr_expect_eq(ops.bf16_dense, has, "TLB_BF16=always: bf16 wherever the CPU has it");
    cr_assert_eq(setenv("TLB_BF16", "never", 1), 0);
    cr_assert_eq(numerics_choose(&ops, NULL, 1, "", why, sizeof why, &err), 0, "%s", err.msg);
    cr_expect(!ops.bf16_dense, "TLB_BF16=never: fp32 on every CPU");
    cr_expect(strstr(why, has ? "TLB_BF16=never" : "lacks") != NULL, "%s", why);
    cr_assert_eq(setenv("TLB_BF16", "alwyas", 1), 0); /* a misspelling is an error, not a silent fp32 */
    cr_expect_eq(numerics_choose(&ops, NULL, 1, NULL, why, sizeof why, &err), -1);
    cr_expect(strstr(err.msg, "TLB_BF16: expected always or never (or unset), got 'alwyas'") != NULL, "%s",
              err.msg);
    unsetenv("TLB_BF16");
}

/* numerics_choose_bf16_h, the rule the trainer applies: explicit true and
 * false as said; auto as the dense layers run, or on a resume as the
 * checkpoint's precision says; 1 back exactly when h was asked for in bf16
 * and the op table has no FFN stage for it. CPU-independent but for the
 * bf16 table, checked where the CPU has AVX512_BF16. */
Test(hardening, bf16_h_rule)
{
    tlb_error err;
    unsetenv("TLB_BACKEND");
    op_table t, off;
    cr_assert_eq(ops_table_select(&t, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(ops_table_select(&off, "ffn:off", &err), 0, "%s", err.msg);
    const struct {
        int setting;
        const char *recorded;
        int h16, refused, h16_off, refused_off;
    } cases[] = {
        {0, NULL, 0, 0, 0, 0},
        {1, NULL, 1, 0, 0, 1},
        {RUN_CONFIG_AUTO, NULL, 0, 0, 0, 0},          /* fp32 dense: auto is fp32 h */
        {RUN_CONFIG_AUTO, "", 0, 0, 0, 0},
        {RUN_CONFIG_AUTO, "fp32", 0, 0, 0, 0},
        {RUN_CONFIG_AUTO, "fp32, bf16 h", 1, 0, 0, 1},       /* a resume keeps what it recorded */
        {RUN_CONFIG_AUTO, "bf16 dense, bf16 h", 1, 0, 0, 1},
        {RUN_CONFIG_AUTO, "bf16 dense", 0, 0, 0, 0},
        {0, "fp32, bf16 h", 0, 0, 0, 0},                     /* explicit wins */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        op_table a = t, b = off;
        const int r = numerics_choose_bf16_h(&a, cases[i].setting, cases[i].recorded);
        const int r_off = numerics_choose_bf16_h(&b, cases[i].setting, cases[i].recorded);
        cr_expect_eq(ops_table_saves_h16(&a), cases[i].h16, "case %zu: h16", i);
        cr_expect_eq(r, cases[i].refused, "case %zu: refused", i);
        cr_expect_eq(ops_table_saves_h16(&b), cases[i].h16_off, "case %zu, ffn:off: h16", i);
        cr_expect_eq(r_off, cases[i].refused_off, "case %zu, ffn:off: refused", i);
    }
    if (!ops_mixed_precision_supported()) return;
    /* bf16 dense: auto saves h in bf16 on the mixed-precision FFN stage, and
     * is refused (h fp32, said) without it. */
    op_table m = t, m_off = off;
    cr_assert_eq(ops_table_set_bf16(&m, 1), 0);
    cr_assert_eq(ops_table_set_bf16(&m_off, 1), 0);
    cr_expect_eq(numerics_choose_bf16_h(&m, RUN_CONFIG_AUTO, NULL), 0);
    cr_expect(ops_table_saves_h16(&m), "mixed precision: auto saves h in bf16");
    cr_expect_eq(numerics_choose_bf16_h(&m_off, RUN_CONFIG_AUTO, NULL), 1);
    cr_expect(!ops_table_saves_h16(&m_off));
}

/* bf16_activations: auto follows mixed precision; where mixed precision runs
 * on a backend without its FFN stage ("ffn:off"), h stays fp32 and the run
 * says so (it did so only for an explicit true). On a CPU without
 * AVX512_BF16 the run is fp32, where auto means h in fp32: no note. */
Test(hardening, bf16_activations_auto_names_an_fp32_h, .timeout = 120)
{
    test_run run;
    new_test_run(&run, "/tmp/tlb_autoh_XXXXXX", "autoh",
                 "train_limit: 64\nepochs: 1\nmixed_precision: true\nbackend: \"ffn:off\"\n");
    const int rc = run_tlb(run.errf, "TLB_BF16=always", (const char *[]){"train", run.cfg, NULL});
    char msg[4096];
    read_text(run.errf, msg, sizeof msg, NULL);
    cr_assert_eq(rc, 0, "%s", msg);
    const char *note = strstr(msg, "note: bf16_activations (auto): h stays fp32 here: the dense layers run in bf16"
                                   " without mixed precision's FFN stage (backend)");
    if (ops_mixed_precision_supported())
        cr_expect_not_null(note, "mixed precision without its FFN stage: %s", msg);
    else
        cr_expect_null(strstr(msg, "bf16_activations"), "fp32 here: auto asks for nothing: %s", msg);
}

/* A path that does not fit a buffer is refused with a message, never
 * silently cut to a different path. */
Test(hardening, paths_too_long_are_refused, .timeout = 60)
{
    char longdir[1500];
    memset(longdir, 'a', sizeof longdir - 1);
    longdir[0] = '/';
    longdir[sizeof longdir - 1] = '\0';
    expect_one_line(2, NULL, (const char *[]){"train", "--resume", longdir, NULL}, "path longer than", NULL);
    /* tlb report joins run folders into FS_PATH_MAX buffers: longer than that. */
    char longer[FS_PATH_MAX + 100];
    memset(longer, 'a', sizeof longer - 1);
    longer[0] = '/';
    longer[sizeof longer - 1] = '\0';
    expect_one_line(2, NULL, (const char *[]){"report", "--out", "/tmp", longer, NULL}, "path longer than", NULL);
}

/* ------------------------------------------------------------------------ */
/* Faults found by trying them */

/* A run folder belongs to one process: a second `tlb train` of the same
 * config and a `--resume` of the running folder are refused, naming the
 * owner; the lock dies with its process. */
Test(hardening, run_folder_belongs_to_one_process, .timeout = 180)
{
    test_run run;
    new_test_run(&run, "/tmp/tlb_lock_XXXXXX", "locked", "train_limit: 256\nepochs: 400\n");
    const char *cfg = run.cfg, *run_dir = run.run_dir, *errf = run.errf, *ckpt = run.ckpt;
    pid_t pid = spawn_tlb(errf, NULL, (const char *[]){"train", cfg, NULL});
    cr_assert(wait_for_file(ckpt, pid), "the run ended before its first checkpoint");
    char want[1500];
    snprintf(want, sizeof want, "%s is in use by process %ld", run_dir, (long)pid);
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, want, NULL);
    expect_one_line(2, NULL, (const char *[]){"train", "--resume", run_dir, NULL}, want, NULL);
    cr_expect_eq(waitpid(pid, NULL, WNOHANG), 0, "the first run stopped");
    kill(pid, SIGKILL);
    cr_expect_eq(wait_status(pid), 1000 + SIGKILL);
    /* Unlocked now: the folder's contents decide again. */
    expect_one_line(2, NULL, (const char *[]){"train", cfg, NULL}, "already holds a run", NULL);
}

/* checkpoint_every: 3 saves mid-epoch; a kill inside the second save loses
 * steps 4-6 only. A resume under a file-size limit too small for a
 * checkpoint ends like a full disk (exit 1, a line, the step-3 checkpoint
 * intact, no temporary left), and the final resume ends bit-identical to an
 * uninterrupted run. */
Test(hardening, checkpoint_every_and_file_size_limit, .timeout = 240)
{
    test_ensure_cifar10();
    const char *extra = "train_limit: 256\nepochs: 2\ncheckpoint_every: 3\n";
    char ref[1300];
    reference_run("every3", extra, ref, sizeof ref);
    char dir[] = "/tmp/tlb_every_XXXXXX", cfg[1200], run_dir[1300], errf[1200], ckpt[1400], msg[4096];
    cr_assert_not_null(test_mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, run_dir, sizeof run_dir, dir, "every3", extra);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", run_dir);
    cr_assert_eq(run_tlb(errf, "TLB_TEST_KILL_IN_CHECKPOINT=2", (const char *[]){"train", cfg, NULL}), 1000 + SIGKILL);
    loaded_run r;
    open_run(&r, run_dir);
    train_position pos;
    tlb_error err;
    cr_assert_eq(load_run_checkpoint(&r, run_dir, &pos, &err), 0, "%s", err.msg);
    cr_expect(pos.step == 3 && pos.epoch == 0 && pos.batch_in_epoch == 3, "checkpoint at step %ld (epoch %d, batch %d)",
              pos.step, pos.epoch, pos.batch_in_epoch);

    /* RLIMIT_FSIZE below a checkpoint's size (about 200 KB), above the other files'. */
    struct rlimit old, small = {96 << 10, 96 << 10};
    cr_assert_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small.rlim_max = old.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    const int st = run_tlb(errf, NULL, (const char *[]){"train", "--resume", run_dir, NULL});
    cr_assert_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    read_text(errf, msg, sizeof msg, NULL);
    cr_expect_eq(st, 1, "status %d under a file-size limit (1000 + %d = killed by SIGXFSZ); stderr: %s", st, SIGXFSZ, msg);
    cr_expect(strstr(msg, "checkpoint.safetensors: write failed: File too large") != NULL, "stderr: %s", msg);
    cr_assert_eq(load_run_checkpoint(&r, run_dir, &pos, &err), 0, "%s", err.msg);
    cr_expect_eq(pos.step, 3, "the last good checkpoint was replaced");
    close_run(&r);
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "ls %s | grep -q tmp", run_dir);
    cr_expect_neq(system(cmd), 0, "a temporary file was left in %s", run_dir);

    cr_assert_eq(run_tlb(errf, NULL, (const char *[]){"train", "--resume", run_dir, NULL}), 0);
    expect_same_data(ref, run_dir);
}

/* tlb check of a file whose tensors hold NaN or Inf: bad input (exit 2),
 * naming the tensor, not a model mismatch. */
Test(hardening, check_refuses_nonfinite_golden_files, .timeout = 60)
{
    char dir[] = "/tmp/tlb_nanfile_XXXXXX", path[200];
    cr_assert_not_null(test_mkdtemp(dir));
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    float x[4] = {1, 2, 3, 4};
    x[2] = NAN;
    st_writer w;
    st_writer_init(&w);
    cr_assert_eq(st_writer_add(&w, "config.embed_dim", ST_F32, 1, (int64_t[]){4}, x), 0);
    tlb_error err;
    cr_assert_eq(st_writer_save(&w, path, NULL, NULL, &err), 0, "%s", err.msg);
    expect_one_line(2, NULL, (const char *[]){"check", path, NULL}, "tensor 'config.embed_dim' holds NaN at element 2",
                    NULL);
    x[2] = 3, x[3] = -INFINITY;
    st_writer_free(&w);
    st_writer_init(&w);
    cr_assert_eq(st_writer_add(&w, "logits", ST_F32, 1, (int64_t[]){4}, x), 0);
    cr_assert_eq(st_writer_save(&w, path, NULL, NULL, &err), 0, "%s", err.msg);
    st_writer_free(&w);
    expect_one_line(2, NULL, (const char *[]){"check", "tests/data/tiny_keras.safetensors", path, NULL},
                    "tensor 'logits' holds Inf at element 3", NULL);
}
