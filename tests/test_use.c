/* Using a trained model: image decoding and resampling (src/data/image_io.c),
 * the evaluation metrics, the slow-state attention maps, and the `tlb eval`
 * and `tlb predict` commands on a tiny run trained here, including every
 * bad input they must refuse (exit 2, one line naming the file, nothing
 * written). Test images are written with libpng and libjpeg. */
#include <criterion/criterion.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/augment.h"
#include "data/cifar10_classes.h"
#include "data/fetch.h"
#include "data/image_io.h"
#include "model/attention_map.h"
#include "ops/ops.h"
#include "train/eval_metrics.h"
#include "train/init.h"
#include "train/trainer.h"
#include "test_helpers.h"

/* ------------------------------------------------------------------------ */
/* Writing test images */

static void write_png(const char *path, int w, int h, const uint8_t *rgb)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png && info);
    cr_assert_eq(setjmp(png_jmpbuf(png)), 0);
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++) png_write_row(png, rgb + (size_t)y * w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    fclose(fp);
}

static void write_jpeg(const char *path, int w, int h, const uint8_t *rgb)
{
    FILE *fp = fopen(path, "wb");
    cr_assert_not_null(fp);
    struct jpeg_compress_struct j;
    struct jpeg_error_mgr e;
    j.err = jpeg_std_error(&e);
    jpeg_create_compress(&j);
    jpeg_stdio_dest(&j, fp);
    j.image_width = (JDIMENSION)w, j.image_height = (JDIMENSION)h;
    j.input_components = 3, j.in_color_space = JCS_RGB;
    jpeg_set_defaults(&j);
    jpeg_set_quality(&j, 95, TRUE);
    jpeg_start_compress(&j, TRUE);
    while (j.next_scanline < j.image_height) {
        JSAMPROW row = (JSAMPROW)(rgb + (size_t)j.next_scanline * w * 3);
        jpeg_write_scanlines(&j, &row, 1);
    }
    jpeg_finish_compress(&j);
    jpeg_destroy_compress(&j);
    fclose(fp);
}

/* A smooth colourful picture, so JPEG keeps it close. */
static uint8_t *test_picture(int w, int h)
{
    uint8_t *rgb = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            p[0] = (uint8_t)(255 * x / (w > 1 ? w - 1 : 1));
            p[1] = (uint8_t)(255 * y / (h > 1 ? h - 1 : 1));
            p[2] = (uint8_t)(128 + 100 * sin(0.2 * (x + y)));
        }
    return rgb;
}

static void truncate_copy(const char *src, const char *dst, long keep)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    cr_assert(in && out);
    for (long i = 0; i < keep; i++) {
        const int c = fgetc(in);
        cr_assert_neq(c, EOF);
        fputc(c, out);
    }
    fclose(in), fclose(out);
}

/* Whether libjpeg with its default message handling (warnings only counted)
 * decodes every scanline of path: the behaviour image_read must not have. */
static jmp_buf jpeg_default_jmp;
static void jpeg_default_exit(j_common_ptr j)
{
    (void)j;
    longjmp(jpeg_default_jmp, 1);
}
static void jpeg_silent(j_common_ptr j, int level)
{
    if (level < 0) j->err->num_warnings++; /* what the default handler counts, without printing */
}

static int default_libjpeg_decodes(const char *path)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp);
    static struct jpeg_decompress_struct j;
    static struct jpeg_error_mgr e;
    static uint8_t row[64 * 3];
    j.err = jpeg_std_error(&e);
    e.error_exit = jpeg_default_exit;
    e.emit_message = jpeg_silent;
    int ok = 0;
    if (setjmp(jpeg_default_jmp) == 0) {
        jpeg_create_decompress(&j);
        jpeg_stdio_src(&j, fp);
        jpeg_read_header(&j, TRUE);
        jpeg_start_decompress(&j);
        while (j.output_scanline < j.output_height) {
            JSAMPROW r = row;
            jpeg_read_scanlines(&j, &r, 1);
        }
        jpeg_finish_decompress(&j);
        ok = e.num_warnings > 0 ? 1 : 2; /* 1: decoded, with warnings */
    }
    jpeg_destroy_decompress(&j);
    fclose(fp);
    return ok;
}

static long file_size(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (long)sb.st_size : -1;
}

/* Each test's folder, removed when its process exits (test_mkdtemp). */
static char tmp[64];
static void make_tmp(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tlb_use_XXXXXX");
    cr_assert_not_null(test_mkdtemp(tmp));
}

/* ------------------------------------------------------------------------ */
/* Decoding and resampling */

TestSuite(image_io, .init = make_tmp);

Test(image_io, png_and_jpeg_decode)
{
    char png_path[128], jpg_path[128];
    snprintf(png_path, sizeof png_path, "%s/a.png", tmp);
    snprintf(jpg_path, sizeof jpg_path, "%s/a.jpg", tmp);
    uint8_t *rgb = test_picture(37, 21);
    write_png(png_path, 37, 21, rgb);
    write_jpeg(jpg_path, 37, 21, rgb);
    image_rgb im;
    tlb_error err;
    cr_assert_eq(image_read(&im, png_path, &err), 0, "%s", err.msg);
    cr_expect(im.w == 37 && im.h == 21);
    cr_expect_eq(memcmp(im.rgb, rgb, (size_t)37 * 21 * 3), 0, "PNG is lossless");
    image_free(&im);
    cr_assert_eq(image_read(&im, jpg_path, &err), 0, "%s", err.msg);
    cr_expect(im.w == 37 && im.h == 21);
    double worst = 0;
    for (size_t i = 0; i < (size_t)37 * 21 * 3; i++) worst = fmax(worst, fabs((double)im.rgb[i] - rgb[i]));
    cr_expect_lt(worst, 40, "JPEG at quality 95 is off by %.0f", worst);
    image_free(&im);
    free(rgb);
}

/* A 32x32 image is copied exactly, so predict sees what eval sees. */
Test(image_io, cifar_sized_image_is_the_record)
{
    uint8_t *rgb = test_picture(32, 32), planar[CIFAR10_PIXELS];
    image_rgb im = {32, 32, rgb};
    image_to_cifar32(planar, &im);
    for (int c = 0; c < 3; c++)
        for (int i = 0; i < 1024; i++) cr_assert_eq(planar[c * 1024 + i], rgb[3 * i + c]);
    float a[48 * 48 * 3], b[48 * 48 * 3];
    image_model_input(a, &im, 48);
    augment_eval(b, planar, 48);
    cr_expect_eq(memcmp(a, b, sizeof a), 0);
    free(rgb);
}

/* Shrinking averages areas: 2x2 blocks of one value each become that value,
 * a fine checkerboard becomes its mean (bilinear sampling would alias it). */
Test(image_io, shrinking_averages_areas)
{
    enum { W = 64 };
    uint8_t rgb[W * W * 3], planar[CIFAR10_PIXELS];
    for (int y = 0; y < W; y++)
        for (int x = 0; x < W; x++) {
            uint8_t *p = rgb + ((size_t)y * W + x) * 3;
            p[0] = (uint8_t)(((x / 2) * 7 + (y / 2) * 3) % 256); /* constant per 2x2 block */
            p[1] = (x + y) % 2 ? 200 : 0;                       /* checkerboard, mean 100 */
            p[2] = 9;
        }
    image_rgb im = {W, W, rgb};
    image_to_cifar32(planar, &im);
    for (int y = 0; y < 32; y++)
        for (int x = 0; x < 32; x++) {
            cr_assert_eq(planar[y * 32 + x], (uint8_t)((x * 7 + y * 3) % 256));
            cr_assert_eq(planar[1024 + y * 32 + x], 100);
            cr_assert_eq(planar[2048 + y * 32 + x], 9);
        }
    /* Enlarging a constant image keeps it constant; a non-square one is stretched. */
    uint8_t small[5 * 3 * 3];
    memset(small, 77, sizeof small);
    image_rgb tiny = {5, 3, small};
    image_to_cifar32(planar, &tiny);
    for (int i = 0; i < CIFAR10_PIXELS; i++) cr_assert_eq(planar[i], 77);
}

Test(image_io, bad_files_are_refused_with_their_name)
{
    char png_path[128], jpg_path[128], bad[128];
    snprintf(png_path, sizeof png_path, "%s/a.png", tmp);
    snprintf(jpg_path, sizeof jpg_path, "%s/a.jpg", tmp);
    uint8_t *rgb = test_picture(64, 64);
    write_png(png_path, 64, 64, rgb);
    write_jpeg(jpg_path, 64, 64, rgb);
    free(rgb);
    image_rgb im;
    tlb_error err;
    struct {
        const char *src, *what;
        long keep;
    } cut[] = {{png_path, "PNG", file_size(png_path) / 2}, {jpg_path, "JPEG", file_size(jpg_path) / 2},
               {jpg_path, "JPEG", 200}, {png_path, "PNG", 40}};
    for (size_t i = 0; i < sizeof cut / sizeof cut[0]; i++) {
        snprintf(bad, sizeof bad, "%s/cut%zu", tmp, i);
        truncate_copy(cut[i].src, bad, cut[i].keep);
        cr_expect_eq(image_read(&im, bad, &err), -1, "%s cut to %ld bytes was accepted", cut[i].what, cut[i].keep);
        cr_expect(strstr(err.msg, bad) && strstr(err.msg, "truncated or corrupt") && strstr(err.msg, cut[i].what),
                  "%s", err.msg);
        cr_expect_null(strchr(err.msg, '\n'));
        cr_expect_null(im.rgb);
    }
    /* Negative control: libjpeg left to itself decodes the half JPEG (with a
     * warning, the rest grey), so the refusal above is image_read's policy. */
    snprintf(bad, sizeof bad, "%s/cut1", tmp);
    const int plain = default_libjpeg_decodes(bad);
    cr_expect_eq(plain, 1, "plain libjpeg on the truncated file: %d (0 error, 2 no warning)", plain);
    cr_expect_eq(default_libjpeg_decodes(jpg_path), 2, "plain libjpeg warned about the intact file");
    cr_expect_eq(image_read(&im, "tests/test_use.c", &err), -1);
    cr_expect(strstr(err.msg, "tests/test_use.c: not a PNG or JPEG"), "%s", err.msg);
    cr_expect_eq(image_read(&im, tmp, &err), -1);
    cr_expect(strstr(err.msg, "is a directory"), "%s", err.msg);
    snprintf(bad, sizeof bad, "%s/missing.png", tmp);
    cr_expect_eq(image_read(&im, bad, &err), -1);
    cr_expect(strstr(err.msg, bad) && strstr(err.msg, "cannot open"), "%s", err.msg);
}

/* ------------------------------------------------------------------------ */
/* Metrics and class names */

Test(eval_metrics, ranks_top5_and_confusion)
{
    const float x[10] = {0.1f, 3, 2, 2, -1, 0, 0, 0, 5, 1};
    cr_expect_eq(class_rank(x, 10, 8), 0);
    cr_expect_eq(class_rank(x, 10, 1), 1);
    cr_expect_eq(class_rank(x, 10, 2), 2); /* tie with 3: index order */
    cr_expect_eq(class_rank(x, 10, 3), 3);
    cr_expect_eq(class_rank(x, 10, 4), 9);
    eval_metrics e;
    tlb_error err;
    cr_assert_eq(eval_metrics_init(&e, 10, &err), 0);
    const int labels[3] = {8, 3, 4};
    float logits[30];
    for (int i = 0; i < 3; i++) memcpy(logits + 10 * i, x, sizeof x);
    const float losses[3] = {1, 2, 3};
    eval_metrics_add(&e, logits, labels, losses, 3);
    cr_expect_eq(e.top1, 1);
    cr_expect_eq(e.top5, 2);
    cr_expect_float_eq(eval_loss(&e), 2.0, 1e-12);
    cr_expect_eq(e.confusion[8 * 10 + 8], 1);
    cr_expect_eq(e.confusion[3 * 10 + 8], 1);
    cr_expect_eq(e.confusion[4 * 10 + 8], 1);
    cr_expect_float_eq(eval_class_accuracy(&e, 8), 1.0, 0);
    cr_expect_float_eq(eval_class_accuracy(&e, 3), 0.0, 0);
    cr_expect(isnan(eval_class_accuracy(&e, 0)));
    eval_metrics_free(&e);
    double p[10], sum = 0;
    class_softmax(p, x, 10);
    for (int i = 0; i < 10; i++) sum += p[i];
    cr_expect_float_eq(sum, 1.0, 1e-12);
    cr_expect_float_eq(p[8] / p[1], exp(2.0), 1e-9);
}

Test(eval_metrics, class_names_from_metadata_or_built_in, .init = make_tmp)
{
    cifar10_classes k;
    cifar10_classes_load(&k, tmp);
    cr_expect_eq(k.from_metadata, 0);
    cr_expect_str_eq(k.names[0], "airplane");
    cr_expect_str_eq(k.ptr[9], "truck");
    char path[128];
    snprintf(path, sizeof path, "%s/batches.meta.txt", tmp);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < 10; i++) fprintf(fp, "name%d\n", i);
    fprintf(fp, "\n\n");
    fclose(fp);
    cifar10_classes_load(&k, tmp);
    cr_expect_eq(k.from_metadata, 1);
    cr_expect_str_eq(k.names[3], "name3");
    fp = fopen(path, "w");
    fprintf(fp, "only\ntwo\n");
    fclose(fp);
    cifar10_classes_load(&k, tmp);
    cr_expect_eq(k.from_metadata, 0, "a metadata file of 2 names was used");
    cr_expect_str_eq(k.names[3], "cat");
}

/* ------------------------------------------------------------------------ */
/* The slow state's attention maps */

/* With the seed's zero initial state every state row is the same vector
 * (issue 10), so every row's map is identical; each row is a softmax over a
 * chunk's tokens, so its values over each chunk sum to 1; the max map is at
 * least every row's, and equal to them when the rows are identical. */
Test(attention_map, rows_of_a_collapsed_state_are_identical)
{
    tlb_error err;
    op_table ref;
    cr_assert_eq(ops_table_select(&ref, "ref", &err), 0, "%s", err.msg);
    tlb_model_config c = model_config_seed();
    c.image_size = 16, c.embed_dim = 16, c.key_dim = 8, c.num_heads = 2, c.chunk_size = 4, c.num_layers = 2;
    tlb_model m;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    model_use_ops(&m, &ref);
    init_keras(&m, 7);
    cr_assert_eq(model_plan(&m, 2, &err), 0, "%s", err.msg);
    const int Ns = model_state_rows(&m), N = model_num_patches(&c), C = c.chunk_size;
    cr_assert_eq(Ns, c.chunk_size);
    float img[2 * 16 * 16 * 3];
    for (size_t i = 0; i < sizeof img / sizeof img[0]; i++) img[i] = (float)((i * 37) % 101) / 100.0f;
    model_forward(&m, img, NULL, 2, NULL);
    float rows[16 * 64], mx[64];
    model_slow_attention(&m, 1, rows, mx);
    double spread = 0;
    for (int t = 0; t < N; t++) {
        for (int i = 1; i < Ns; i++) cr_expect_float_eq(rows[i * N + t], rows[t], 1e-6, "row %d token %d", i, t);
        double lo = 1, hi = 0;
        for (int i = 0; i < Ns; i++) lo = fmin(lo, rows[i * N + t]), hi = fmax(hi, rows[i * N + t]);
        cr_expect_geq(mx[t] + 1e-6, hi);
        cr_expect_float_eq(mx[t], rows[t], 1e-6, "identical rows: the max is any row");
        spread = fmax(spread, fabs(rows[t] - 1.0 / C));
    }
    for (int ch = 0; ch < N / C; ch++) {
        double sum = 0;
        for (int j = 0; j < C; j++) sum += rows[ch * C + j];
        cr_expect_float_eq(sum, 1.0, 1e-5, "chunk %d sums to %f", ch, sum);
    }
    cr_expect_gt(spread, 1e-4, "the maps are uniform: the test would not see a wrong index");
    model_destroy(&m);
}

/* ------------------------------------------------------------------------ */
/* tlb eval and tlb predict on a tiny trained run */

#include <cjson/cJSON.h>

#include "train/trained_run.h"


/* Trains a tiny model for 8 steps into tmp/runs; its folder goes to run_dir. */
static void train_tiny(char *run_dir, size_t n, const char *name, double lr)
{
    test_ensure_cifar10();
    char text[1024];
    snprintf(text, sizeof text,
             "image_size: 16\npatch_size: 4\nembed_dim: 16\nchunk_size: 4\nr: 2\nnum_layers: 1\nnum_heads: 1\n"
             "learning_rate: %g\neval_limit: 300\nbatch_size: 32\ntrain_limit: 256\nepochs: 1\nthreads: 1\n"
             "name: %s\nout_dir: %s/runs\n",
             lr, name, tmp);
    run_config c;
    tlb_error err;
    run_config_defaults(&c);
    cr_assert_eq(run_config_parse(&c, text, strlen(text), "tiny.cfg", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    train_summary s;
    cr_assert_eq(train_run(&c, NULL, &s, &err), 0, "%s", err.msg);
    snprintf(run_dir, n, "%s", s.run_dir);
}

/* Runs `tlb ARGS` (split at spaces: no path here has one) with stdout and
 * stderr into tmp/out.txt and tmp/err.txt. */
static int run_args(const char *args)
{
    static char buf[8192];
    const char *argv[15];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", args);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        cr_assert_lt(n, 14, "too many arguments: %s", args);
        argv[n++] = t;
    }
    argv[n] = NULL;
    char out[128], err[128];
    snprintf(out, sizeof out, "%s/out.txt", tmp);
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    return run_tlb_out(out, err, NULL, argv);
}

static char *read_all(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "%s", path);
    static char buf[1 << 16];
    const size_t k = fread(buf, 1, sizeof buf - 1, fp);
    buf[k] = '\0';
    fclose(fp);
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

static double summary_number(const char *run_dir, const char *key)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/summary.json", run_dir);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp);
    char buf[8192];
    const size_t k = fread(buf, 1, sizeof buf - 1, fp);
    buf[k] = '\0';
    fclose(fp);
    cJSON *j = cJSON_Parse(buf);
    const double v = cJSON_GetNumberValue(cJSON_GetObjectItem(j, key));
    cJSON_Delete(j);
    return v;
}

TestSuite(use, .init = make_tmp, .timeout = 180);

/* tlb eval measures what training measured on the same split (the same
 * accuracy and loss as summary.json), prints every class by name and
 * writes the confusion matrix. */
Test(use, eval_prints_classes_and_writes_the_confusion_png)
{
    char run[1300], args[1600], png[1400];
    train_tiny(run, sizeof run, "evalme", 0.003);
    snprintf(args, sizeof args, "eval %s", run);
    cr_assert_eq(run_args(args), 0, "%s", read_all("err.txt"));
    const char *out = read_all("out.txt");
    cr_expect(strstr(out, "accuracy: ") && strstr(out, "top-5 accuracy: "), "%s", out);
    const char *names[10] = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
    for (int k = 0; k < 10; k++) {
        char row[64];
        snprintf(row, sizeof row, "\n%-12s ", names[k]);
        cr_expect(strstr(out, row), "no per-class row for %s in:\n%s", names[k], out);
    }
    cr_expect(strstr(out, "confusion matrix"), "%s", out);
    cr_expect(strstr(read_all("err.txt"), "300/300 images"), "no progress on stderr: %s", read_all("err.txt"));
    snprintf(png, sizeof png, "%s/confusion-val.png", run);
    cr_expect_gt(file_size(png), 1000, "%s missing", png);

    const char *splits[2] = {"val", "test"};
    for (int s = 0; s < 2; s++) {
        snprintf(args, sizeof args, "eval %s --split %s --json", run, splits[s]);
        cr_assert_eq(run_args(args), 0, "%s", read_all("err.txt"));
        cJSON *j = cJSON_Parse(read_all("out.txt"));
        cr_assert_not_null(j, "--json output does not parse");
        char key[64];
        snprintf(key, sizeof key, "%s_accuracy", s ? "test" : "validation");
        /* Not bit for bit: training evaluated in micro-batches of 32 on one
         * thread, eval in batches of 500 sharded over the threads, and
         * oneDNN's matmul (where dense runs on dnnl) sums in an order that
         * depends on the row count. So: the loss to float
         * rounding, the accuracy within one image (a near tie may flip). */
        cr_expect_float_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "accuracy")), summary_number(run, key),
                           1.5 / 300, "%s accuracy differs from the run's summary", splits[s]);
        snprintf(key, sizeof key, "%s_loss", s ? "test" : "validation");
        cr_expect_float_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "loss")), summary_number(run, key), 1e-5,
                           "%s loss %.9f, the run's summary %.9f", splits[s],
                           cJSON_GetNumberValue(cJSON_GetObjectItem(j, "loss")), summary_number(run, key));
        cr_expect_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "images")), 300);
        const double top5 = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "top5_accuracy"));
        cr_expect(top5 >= cJSON_GetNumberValue(cJSON_GetObjectItem(j, "accuracy")) && top5 <= 1);
        cJSON *conf = cJSON_GetObjectItem(j, "confusion");
        double total = 0;
        for (int i = 0; i < 10; i++)
            for (int k = 0; k < 10; k++) total += cJSON_GetNumberValue(cJSON_GetArrayItem(cJSON_GetArrayItem(conf, i), k));
        cr_expect_eq(total, 300);
        cr_expect_str_eq(cJSON_GetStringValue(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(j, "classes"), 3), "name")), "cat");
        cJSON_Delete(j);
    }
    snprintf(png, sizeof png, "%s/confusion-test.png", run);
    cr_expect_gt(file_size(png), 1000, "%s missing", png);
}

/* tlb predict: a 32x32 PNG of a CIFAR-10 record gets exactly the
 * probabilities the model gives that record through the evaluation
 * pipeline; a larger JPEG is resampled (and says so); --attention writes
 * the picture. */
Test(use, predict_png_and_jpeg_print_classes_with_probabilities)
{
    char run[1300], args[4000], png[128], jpg[128], att[128];
    train_tiny(run, sizeof run, "predictme", 0.003);
    cifar10_set slice;
    tlb_error err;
    cr_assert_eq(cifar10_read_records(&slice, "tests/data/cifar10_batch1_r0_r1_r9999.bin", &err), 0, "%s", err.msg);
    uint8_t rgb[32 * 32 * 3];
    for (int i = 0; i < 1024; i++)
        for (int c = 0; c < 3; c++) rgb[3 * i + c] = slice.pixels[c * 1024 + i];
    snprintf(png, sizeof png, "%s/record0.png", tmp);
    write_png(png, 32, 32, rgb);
    uint8_t *photo = test_picture(120, 80);
    snprintf(jpg, sizeof jpg, "%s/photo.jpg", tmp);
    write_jpeg(jpg, 120, 80, photo);
    free(photo);
    snprintf(att, sizeof att, "%s/attention.png", tmp);

    snprintf(args, sizeof args, "predict %s %s %s --attention %s", run, png, jpg, att);
    cr_assert_eq(run_args(args), 0, "%s", read_all("err.txt"));
    const char *out = read_all("out.txt");
    cr_expect_eq(count_lines(out), 2, "one line per image:\n%s", out);
    const char *names[10] = {"airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
    char *line2 = strchr(out, '\n');
    cr_assert_not_null(line2);
    int named[2] = {0, 0};
    for (int k = 0; k < 10; k++) {
        const char *at = strstr(out, names[k]);
        if (at && at < line2) named[0] = 1;
        if (strstr(line2, names[k])) named[1] = 1;
    }
    cr_expect(named[0] && named[1], "a line without a class name:\n%s", out);
    cr_expect(strstr(out, png) == out, "the first line does not start with the file: %s", out);
    const char *errs = read_all("err.txt");
    cr_expect(strstr(errs, "photo.jpg: 120x80, resampled to 32x32"), "%s", errs);
    cr_expect_null(strstr(errs, "record0.png:"), "a 32x32 image was said to be resampled: %s", errs);
    cr_expect_gt(file_size(att), 1000, "no attention picture");

    snprintf(args, sizeof args, "predict %s %s --json --top 10", run, png);
    cr_assert_eq(run_args(args), 0, "%s", read_all("err.txt"));
    cJSON *j = cJSON_Parse(read_all("out.txt"));
    cr_assert_not_null(j);
    cJSON *probs = cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "probabilities");
    cr_assert_not_null(probs);

    /* The same record through the library: augment_eval and a forward. */
    trained_run r;
    cr_assert_eq(trained_run_open(&r, run, NULL, 1, 0, &err), 0, "%s", err.msg);
    float x[16 * 16 * 3];
    augment_eval(x, slice.pixels, 16);
    cr_assert_eq(model_inference_run(&r.infer, x, NULL, 1, NULL), 0);
    double want[10], sum = 0;
    class_softmax(want, r.infer.logits, 10);
    for (int k = 0; k < 10; k++) {
        const double got = cJSON_GetNumberValue(cJSON_GetObjectItem(probs, names[k]));
        cr_expect_float_eq(got, want[k], 1e-6, "%s: predict %.9f, the evaluation pipeline %.9f", names[k], got, want[k]);
        sum += got;
    }
    cr_expect_float_eq(sum, 1.0, 1e-9);
    cr_expect_eq(cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 0), "top")), 10);
    cJSON_Delete(j);
    trained_run_close(&r);
    cifar10_free(&slice);
}

/* Each bad input: exit 2, one line on stderr naming the file and the
 * reason, nothing written (no attention picture, no confusion matrix). */
Test(use, bad_inputs_exit_2_name_the_file_and_write_nothing)
{
    char run[1300], other[1300], args[4000], att[128], good[128], path[1400];
    train_tiny(run, sizeof run, "bad", 0.003);
    train_tiny(other, sizeof other, "other", 0.001);
    snprintf(att, sizeof att, "%s/att.png", tmp);
    snprintf(good, sizeof good, "%s/good.png", tmp);
    uint8_t *pic = test_picture(40, 40);
    write_png(good, 40, 40, pic);
    char jpg[128], cut_png[128], cut_jpg[128], text[128], empty_run[128];
    snprintf(jpg, sizeof jpg, "%s/good.jpg", tmp);
    write_jpeg(jpg, 40, 40, pic);
    free(pic);
    snprintf(cut_png, sizeof cut_png, "%s/cut.png", tmp);
    truncate_copy(good, cut_png, file_size(good) / 2);
    snprintf(cut_jpg, sizeof cut_jpg, "%s/cut.jpg", tmp);
    truncate_copy(jpg, cut_jpg, file_size(jpg) / 2);
    snprintf(text, sizeof text, "%s/notes.png", tmp);
    FILE *fp = fopen(text, "w");
    fprintf(fp, "not an image\n");
    fclose(fp);
    /* A run folder whose training never reached a checkpoint. */
    snprintf(empty_run, sizeof empty_run, "%s/fresh", tmp);
    cr_assert_eq(mkdir(empty_run, 0755), 0);
    snprintf(path, sizeof path, "%s/config.cfg", run);
    snprintf(args, sizeof args, "%s/config.cfg", empty_run);
    truncate_copy(path, args, file_size(path));

    struct {
        const char *cmd, *named, *reason;
    } cases[] = {
        {"predict %s %s", text, "not a PNG or JPEG"},
        {"predict %s %s", cut_png, "truncated or corrupt PNG"},
        {"predict %s %s", cut_jpg, "truncated or corrupt JPEG"},
        {"predict %s %s", tmp, "is a directory"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* A good image first: nothing is written even when only a later one is bad. */
        snprintf(args, sizeof args, "predict %s %s %s --attention %s", run, good, cases[i].named, att);
        cr_expect_eq(run_args(args), 2, "%s", args);
        const char *e = read_all("err.txt");
        cr_expect(strstr(e, cases[i].named) && strstr(e, cases[i].reason), "%s: %s", args, e);
        cr_expect_eq(count_lines(e), 1, "%s: not one line: %s", args, e);
        cr_expect_str_eq(read_all("out.txt"), "", "%s printed results", args);
        cr_expect_lt(file_size(att), 0, "%s wrote the attention picture", args);
    }

    /* Run folders: no checkpoint, a checkpoint of another config, no folder. */
    char nosuch[128];
    snprintf(nosuch, sizeof nosuch, "%s/nosuch", tmp);
    for (int c = 0; c < 2; c++) {
        /* c = 0: tlb eval; c = 1: tlb predict of a good image, with --attention. */
        char tail[400];
        snprintf(tail, sizeof tail, c ? " %s --attention %s" : "", good, att);
        struct {
            const char *dir, *opt, *named, *reason;
        } runs[] = {{empty_run, "", empty_run, "no checkpoint yet"},
                    {run, " --checkpoint ", other, "written for config"},
                    {nosuch, "", nosuch, "cannot open run folder"}};
        for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++) {
            char ckpt[1400] = "";
            if (*runs[i].opt) snprintf(ckpt, sizeof ckpt, "%s%s/checkpoint.safetensors", runs[i].opt, other);
            snprintf(args, sizeof args, "%s %s%s%s", c ? "predict" : "eval", runs[i].dir, ckpt, tail);
            cr_expect_eq(run_args(args), 2, "%s", args);
            const char *e = read_all("err.txt");
            cr_expect(strstr(e, runs[i].named) && strstr(e, runs[i].reason), "%s: %s", args, e);
            cr_expect_eq(count_lines(e), 1, "%s: not one line: %s", args, e);
        }
    }
    cr_expect_lt(file_size(att), 0, "an attention picture was written");
    snprintf(path, sizeof path, "%s/confusion-val.png", run);
    cr_expect_lt(file_size(path), 0, "a refused eval wrote %s", path);
    snprintf(path, sizeof path, "%s/confusion-val.png", empty_run);
    cr_expect_lt(file_size(path), 0, "a refused eval wrote %s", path);

    /* The good files themselves pass (the refusals above are the bad ones'). */
    snprintf(args, sizeof args, "predict %s %s %s", run, good, jpg);
    cr_expect_eq(run_args(args), 0, "%s", read_all("err.txt"));
}

/* Issue 21, 5: `tlb eval --json > FILE` and `tlb predict --json > FILE` on a
 * full disk used to leave an empty file and exit 0. /dev/full fails every
 * write: the commands must fail and say so. */
Test(use, stdout_write_errors_fail_the_command)
{
    char run[1300], png[128];
    train_tiny(run, sizeof run, "full", 0.003);
    snprintf(png, sizeof png, "%s/pic.png", tmp);
    uint8_t *pic = test_picture(32, 32);
    write_png(png, 32, 32, pic);
    free(pic);
    char err[128];
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    const char *evals[] = {"eval", run, "--json", "--no-plots", NULL};
    const char *evals_text[] = {"eval", run, "--no-plots", NULL};
    const char *predicts[] = {"predict", run, png, "--json", NULL};
    const char *predicts_text[] = {"predict", run, png, NULL};
    const char *const *cases[] = {evals, evals_text, predicts, predicts_text};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int status = run_tlb_out("/dev/full", err, NULL, cases[i]);
        cr_expect_eq(status, 1, "tlb %s %s: status %d", cases[i][0], cases[i][2], status);
        const char *e = read_all("err.txt");
        cr_expect(strstr(e, "writing standard output failed: No space left on device"), "tlb %s: %s", cases[i][0], e);
    }
    const char *version[] = {"--version", NULL};
    cr_expect_eq(run_tlb_out("/dev/full", err, NULL, version), 1);
}

/* Issue 21, 6: `tlb eval` on a folder where its picture cannot be written
 * used to evaluate every image and then print nothing. The result comes
 * first; the picture can go elsewhere (--out DIR) or nowhere (--no-plots). */
Test(use, eval_prints_the_result_before_its_picture)
{
    char run[1300], args[4000], path[1400];
    train_tiny(run, sizeof run, "archived", 0.003);
    /* A folder where the picture should go: renaming onto it fails, also as root. */
    snprintf(path, sizeof path, "mkdir -p %s/confusion-val.png/x", run);
    cr_assert_eq(system(path), 0);
    snprintf(args, sizeof args, "eval %s", run);
    cr_expect_eq(run_args(args), 1);
    cr_expect(strstr(read_all("out.txt"), "accuracy: "), "the result was lost: %s", read_all("out.txt"));
    const char *e = read_all("err.txt");
    cr_expect(strstr(e, "confusion-val.png") && strstr(e, "--no-plots"), "%s", e);

    snprintf(args, sizeof args, "eval %s --no-plots --json", run);
    cr_expect_eq(run_args(args), 0, "%s", read_all("err.txt"));
    cJSON *j = cJSON_Parse(read_all("out.txt"));
    cr_assert_not_null(j);
    cr_expect(cJSON_IsNull(cJSON_GetObjectItem(j, "confusion_png")));
    cJSON_Delete(j);

    snprintf(args, sizeof args, "eval %s --out %s --split test", run, tmp);
    cr_expect_eq(run_args(args), 0, "%s", read_all("err.txt"));
    snprintf(path, sizeof path, "%s/confusion-test.png", tmp);
    cr_expect_gt(file_size(path), 1000, "no %s", path);
    snprintf(path, sizeof path, "%s/confusion-test.png", run);
    cr_expect_lt(file_size(path), 0, "--out wrote into the run folder");

    snprintf(args, sizeof args, "eval %s --split", run);
    cr_expect_eq(run_args(args), 2);
    cr_expect(strstr(read_all("err.txt"), "--split: the value is missing"), "%s", read_all("err.txt"));
    cr_expect_eq(run_args("eval --help"), 0);
    cr_expect(strstr(read_all("out.txt"), "usage: tlb eval"), "%s", read_all("out.txt"));
}

/* Issue 21: `tlb check` of a run's checkpoint says what it is (it used to
 * say "tensor 'config.image_size' is missing"). */
Test(use, check_of_a_checkpoint_says_it_is_not_golden)
{
    char run[1300], args[1600];
    train_tiny(run, sizeof run, "chk", 0.003);
    snprintf(args, sizeof args, "check %s/checkpoint.safetensors", run);
    cr_expect_eq(run_args(args), 2);
    const char *e = read_all("err.txt");
    cr_expect(strstr(e, "a training checkpoint (tlb-c checkpoint 2), not a golden file"), "%s", e);
    cr_expect_eq(count_lines(e), 1, "%s", e);
}

/* A PNG as 8-bit RGB (libpng's simplified API). */
typedef struct {
    int w, h;
    uint8_t *px;
} rgb_image;

static rgb_image read_rgb_png(const char *path)
{
    png_image im;
    memset(&im, 0, sizeof im);
    im.version = PNG_IMAGE_VERSION;
    cr_assert(png_image_begin_read_from_file(&im, path), "%s: %s", path, im.message);
    im.format = PNG_FORMAT_RGB;
    rgb_image out = {(int)im.width, (int)im.height, malloc(PNG_IMAGE_SIZE(im))};
    cr_assert(png_image_finish_read(&im, NULL, out.px, 0, NULL), "%s: %s", path, im.message);
    return out;
}

static int is_white(const rgb_image *im, int x, int y)
{
    const uint8_t *p = im->px + ((size_t)y * im->w + x) * 3;
    return p[0] == 255 && p[1] == 255 && p[2] == 255;
}

/* Top-left corners of the cell x cell blocks with white above and to the
 * left and no white pixel inside: the overlay cells (the heat map never
 * blends to white), in reading order; returns how many (at most max). */
static int overlay_cells(const rgb_image *im, int cell, int (*at)[2], int max)
{
    int n = 0;
    for (int y = 1; y + cell <= im->h && n < max; y++)
        for (int x = 1; x + cell <= im->w && n < max; x++) {
            if (is_white(im, x, y) || !is_white(im, x - 1, y) || !is_white(im, x, y - 1)) continue;
            int clean = 1;
            for (int j = 0; j < cell && clean; j++)
                for (int i = 0; i < cell && clean; i++) clean = !is_white(im, x + i, y + j);
            if (clean) at[n][0] = x, at[n][1] = y, n++;
        }
    return n;
}

/* The largest channel difference between two cells. */
static int cell_diff(const rgb_image *a, const int *pa, const rgb_image *b, const int *pb, int cell)
{
    int worst = 0;
    for (int j = 0; j < cell; j++)
        for (int i = 0; i < cell * 3; i++) {
            const int d = abs(a->px[((size_t)(pa[1] + j) * a->w + pa[0]) * 3 + i] -
                              b->px[((size_t)(pb[1] + j) * b->w + pb[0]) * 3 + i]);
            if (d > worst) worst = d;
        }
    return worst;
}

/* Issue 21, 1: `tlb predict --attention` of the run's first test image draws
 * the maps of the run's own attention.png, under both readouts. With
 * last_fast the inference plan skips the last chunk's state update, and
 * predict used to draw that chunk's attention as zeros (and, each map
 * scaled min-max, the others differently). */
Test(use, predict_attention_matches_the_runs_attention_png)
{
    const char *readouts[2] = {"last_fast", "state"};
    for (int ro = 0; ro < 2; ro++) {
        test_ensure_cifar10();
        char text[1024], name[32];
        snprintf(name, sizeof name, "att_%s", readouts[ro]);
        snprintf(text, sizeof text,
                 "image_size: 16\npatch_size: 4\nembed_dim: 16\nchunk_size: 4\nr: 2\nnum_layers: 1\nnum_heads: 1\n"
                 "learning_rate: 0.003\neval_limit: 300\nbatch_size: 32\ntrain_limit: 256\nepochs: 1\nthreads: 1\n"
                 "readout: %s\nname: %s\nout_dir: %s/runs\n",
                 readouts[ro], name, tmp);
        run_config c;
        tlb_error err;
        run_config_defaults(&c);
        cr_assert_eq(run_config_parse(&c, text, strlen(text), "att.cfg", &err), 0, "%s", err.msg);
        cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
        train_summary s;
        cr_assert_eq(train_run(&c, NULL, &s, &err), 0, "%s", err.msg);

        /* The first test image, the run's attention.png's first column, as a 32x32 PNG. */
        char dir[1024], path[1400], png[128], att[128], args[4000];
        snprintf(path, sizeof path, "%s/test_batch.bin", cifar10_default_dir(dir, sizeof dir));
        FILE *fp = fopen(path, "rb");
        cr_assert_not_null(fp, "%s", path);
        uint8_t rec[3073], rgb[32 * 32 * 3];
        cr_assert_eq(fread(rec, 1, sizeof rec, fp), sizeof rec);
        fclose(fp);
        for (int i = 0; i < 1024; i++)
            for (int k = 0; k < 3; k++) rgb[3 * i + k] = rec[1 + k * 1024 + i];
        snprintf(png, sizeof png, "%s/first.png", tmp);
        write_png(png, 32, 32, rgb);
        snprintf(att, sizeof att, "%s/att_%s.png", tmp, readouts[ro]);
        snprintf(args, sizeof args, "predict %s %s --attention %s", s.run_dir, png, att);
        cr_assert_eq(run_args(args), 0, "%s", read_all("err.txt"));

        snprintf(path, sizeof path, "%s/attention.png", s.run_dir);
        rgb_image run = read_rgb_png(path), pred = read_rgb_png(att);
        const int cell = 128; /* 16 px images upsampled 8x */
        int run_cells[64][2], pred_cells[16][2];
        const int nrun = overlay_cells(&run, cell, run_cells, 64), npred = overlay_cells(&pred, cell, pred_cells, 16);
        cr_assert_geq(npred, 5, "%s: %d overlay cells in predict's picture", readouts[ro], npred);
        /* Predict's maps (max over rows, then 4 rows; maybe the image first) each match one of the run's. */
        for (int k = npred - 5; k < npred; k++) {
            int best = 256;
            for (int q = 0; q < nrun; q++) {
                const int d = cell_diff(&pred, pred_cells[k], &run, run_cells[q], cell);
                if (d < best) best = d;
            }
            cr_expect_leq(best, 3, "%s: predict's map %d differs from every map of attention.png (by %d at best)",
                          readouts[ro], k - (npred - 5), best);
        }
        free(run.px), free(pred.px);
    }
}

/* Issue 21: `tlb COMMAND --help` prints the usage on stdout and exits 0
 * (train and eval said "unknown option"); `tlb --version` exists. */
Test(use, every_command_has_help)
{
    const char *cmds[] = {"train", "eval", "predict", "report", "check", "data"};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        char args[64];
        snprintf(args, sizeof args, "%s --help", cmds[i]);
        cr_expect_eq(run_args(args), 0, "%s: %s", args, read_all("err.txt"));
        cr_expect(strstr(read_all("out.txt"), "usage: tlb "), "%s: %s", args, read_all("out.txt"));
    }
    cr_expect_eq(run_args("--version"), 0);
    cr_expect(strncmp(read_all("out.txt"), "tlb ", 4) == 0, "%s", read_all("out.txt"));
    cr_expect_eq(run_args("train --resume"), 2);
    cr_expect(strstr(read_all("err.txt"), "--resume: the value is missing"), "%s", read_all("err.txt"));
}
