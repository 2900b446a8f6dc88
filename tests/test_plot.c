#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/plot.h"
#include "test_helpers.h"

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/tlb_test_plot_XXXXXX");
    cr_assert(test_mkdtemp(dir) != NULL); /* removed when the test ends */
}

TestSuite(plot, .init = make_dir);

typedef struct {
    int w, h, depth, color_type;
    unsigned char *px; /* RGB */
} image;

static image read_png(const char *path)
{
    image im = {0};
    FILE *fp = fopen(path, "rb");
    cr_assert(fp, "%s was not written", path);
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png_create_info_struct(png);
    cr_assert(png && info);
    if (setjmp(png_jmpbuf(png))) cr_assert_fail("%s is not a valid PNG", path);
    png_init_io(png, fp);
    png_read_info(png, info);
    im.w = (int)png_get_image_width(png, info);
    im.h = (int)png_get_image_height(png, info);
    im.depth = png_get_bit_depth(png, info);
    im.color_type = png_get_color_type(png, info);
    cr_assert_eq(im.depth, 8);
    cr_assert_eq(im.color_type, PNG_COLOR_TYPE_RGB);
    im.px = malloc((size_t)im.w * im.h * 3);
    for (int y = 0; y < im.h; y++) png_read_row(png, im.px + (size_t)y * im.w * 3, NULL);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(fp);
    return im;
}

static const unsigned char *pixel(const image *im, int x, int y)
{
    return im->px + ((size_t)y * im->w + x) * 3;
}

/* Pixels within tol of rgb in every channel. */
static long count_color(const image *im, const unsigned char rgb[3], int tol)
{
    long n = 0;
    for (int i = 0; i < im->w * im->h; i++) {
        const unsigned char *p = im->px + (size_t)i * 3;
        n += abs(p[0] - rgb[0]) <= tol && abs(p[1] - rgb[1]) <= tol && abs(p[2] - rgb[2]) <= tol;
    }
    return n;
}

static int no_leftovers(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int clean = 1;
    while ((e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) clean = 0;
    closedir(d);
    return clean;
}

Test(plot, lines_png_has_white_background_and_series_colours)
{
    double x[20], a[20], b[20];
    for (int i = 0; i < 20; i++) x[i] = i + 1, a[i] = 2.0 / (i + 1), b[i] = 1.0 + 0.1 * sin(i);
    const plot_series s[2] = {{"train", x, a, 20}, {"validation", x, b, 20}};
    char path[128];
    snprintf(path, sizeof path, "%s/loss.png", dir);
    tlb_error err = {0};
    cr_assert_eq(plot_lines_png(path, "Loss", "epoch", "cross-entropy", s, 2, &err), 0, "%s", err.msg);
    image im = read_png(path);
    cr_expect_eq(im.w, 640);
    cr_expect_eq(im.h, 420);
    const unsigned char white[3] = {255, 255, 255};
    cr_expect_eq(memcmp(pixel(&im, 0, 0), white, 3), 0, "corner is not white");
    cr_expect_eq(memcmp(pixel(&im, im.w - 1, im.h - 1), white, 3), 0, "corner is not white");
    /* Lines are 2 px wide and markers 7 px: many exact-colour pixels each. */
    cr_expect_gt(count_color(&im, plot_palette[0], 0), 200);
    cr_expect_gt(count_color(&im, plot_palette[1], 0), 200);
    cr_expect_eq(count_color(&im, plot_palette[2], 0), 0);
    cr_expect(no_leftovers(), "a temporary file was left behind");
    free(im.px);
}

Test(plot, lines_png_degenerate_inputs)
{
    tlb_error err = {0};
    char path[128];
    snprintf(path, sizeof path, "%s/d.png", dir);
    const double one_x = 3, one_y = 0.5;
    const double fx[4] = {1, 2, 3, 4}, flat[4] = {0.1, 0.1, 0.1, 0.1};
    const double nan_y[5] = {NAN, 1, NAN, 2, INFINITY}, nan_x[5] = {0, NAN, 2, 3, 4};
    const double all_nan[3] = {NAN, NAN, NAN};
    const plot_series cases[][3] = {
        {{"one", &one_x, &one_y, 1}},
        {{"flat", fx, flat, 4}},
        {{"nan", nan_x, nan_y, 5}, {NULL, NULL, flat, 4}, {"empty", NULL, NULL, 0}},
        {{"all nan", fx, all_nan, 3}},
        {{"", fx, flat, 0}},
    };
    const int ns[] = {1, 1, 3, 1, 1};
    for (int c = 0; c < 5; c++) {
        cr_expect_eq(plot_lines_png(path, "t", "x", "y", cases[c], ns[c], &err), 0, "case %d: %s", c, err.msg);
        image im = read_png(path);
        cr_expect_eq(im.w, 640);
        free(im.px);
    }
    cr_expect_eq(plot_lines_png(path, NULL, NULL, NULL, NULL, 0, &err), 0, "%s", err.msg);
    /* The single point and the flat line are still drawn in the series colour. */
    cr_assert_eq(plot_lines_png(path, "", "", "", cases[0], 1, &err), 0);
    image im = read_png(path);
    cr_expect_gt(count_color(&im, plot_palette[0], 0), 20);
    free(im.px);
    const plot_series bad = {"no y", fx, NULL, 4};
    cr_expect_eq(plot_lines_png(path, "t", "x", "y", &bad, 1, &err), -1);
    cr_expect(strstr(err.msg, path), "%s", err.msg);
}

Test(plot, unwritable_path_names_it_and_the_reason)
{
    tlb_error err = {0};
    const double y[2] = {1, 2};
    const plot_series s = {"a", NULL, y, 2};
    const char *path = "/nonexistent_tlb_dir/sub/loss.png";
    cr_expect_eq(plot_lines_png(path, "t", "x", "y", &s, 1, &err), -1);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, "No such file or directory"), "%s", err.msg);
    cr_expect_eq(strchr(err.msg, '\n'), NULL);

    const float img[4 * 4 * 3] = {0}, map[4] = {0};
    memset(&err, 0, sizeof err);
    cr_expect_eq(plot_heatmaps_png(path, "t", img, 1, 4, map, 2, NULL, &err), -1);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, "No such file or directory"), "%s", err.msg);
}

/* Pure-green images; each map is hot in its top-left cell, zero elsewhere:
 * the plain image shows exact green, the overlay green blended at 0.5 with
 * inferno(0) (cold) and inferno(1) (the hot corner). */
Test(plot, heatmaps_png_shows_images_and_overlays)
{
    enum { C = 3, S = 8, G = 2 };
    float img[C * S * S * 3], maps[C * G * G];
    for (int i = 0; i < C * S * S; i++) img[3 * i] = 0, img[3 * i + 1] = 1, img[3 * i + 2] = 0;
    for (int i = 0; i < C * G * G; i++) maps[i] = i % (G * G) == 0 ? 5.0f : -1.0f;
    const char *caps[C] = {"cat", NULL, "automobile"};
    char path[128];
    snprintf(path, sizeof path, "%s/attention.png", dir);
    tlb_error err = {0};
    cr_assert_eq(plot_heatmaps_png(path, "TLB attention", img, C, S, maps, G, caps, &err), 0, "%s", err.msg);
    image im = read_png(path);
    cr_expect_geq(im.w, C * S * 2);
    cr_expect_geq(im.h, S * 2);
    const unsigned char white[3] = {255, 255, 255}, green[3] = {0, 255, 0};
    cr_expect_eq(memcmp(pixel(&im, 0, 0), white, 3), 0, "corner is not white");
    cr_expect_geq(count_color(&im, green, 0), (long)C * S * S * 4, "the upsampled images are missing");
    unsigned char cold[3], hot[3], mix_cold[3], mix_hot[3];
    plot_inferno(0, cold);
    plot_inferno(1, hot);
    for (int k = 0; k < 3; k++) mix_cold[k] = (cold[k] + green[k]) / 2, mix_hot[k] = (hot[k] + green[k]) / 2;
    cr_expect_gt(count_color(&im, mix_cold, 1), (long)C * S * S, "no cold overlay pixels");
    cr_expect_gt(count_color(&im, mix_hot, 1), (long)C * 4, "no hot overlay pixels");
    cr_expect(no_leftovers(), "a temporary file was left behind");
    free(im.px);
}

Test(plot, heatmaps_png_degenerate_inputs)
{
    tlb_error err = {0};
    char path[128];
    snprintf(path, sizeof path, "%s/h.png", dir);
    float img[2 * 3 * 3 * 3], map[2];
    for (int i = 0; i < 2 * 27; i++) img[i] = i % 2 ? NAN : 7.0f; /* out of range, clamped */
    map[0] = NAN, map[1] = 3;                                     /* G = 1; flat and NaN maps */
    const char *caps[2] = {"a very long caption that cannot possibly fit", ""};
    cr_expect_eq(plot_heatmaps_png(path, NULL, img, 2, 3, map, 1, caps, &err), 0, "%s", err.msg);
    cr_expect_eq(plot_heatmaps_png(path, "no images", NULL, 0, 0, NULL, 0, NULL, &err), 0, "%s", err.msg);
    char title[400];
    memset(title, 'x', sizeof title - 1);
    title[sizeof title - 1] = '\0';
    cr_expect_eq(plot_heatmaps_png(path, title, img, 1, 3, map, 1, NULL, &err), 0, "%s", err.msg);
    image im = read_png(path);
    cr_expect_leq(im.w, 1200);
    free(im.px);
    cr_expect_eq(plot_heatmaps_png(path, "t", img, 1, 0, map, 1, NULL, &err), -1);
    cr_expect_eq(plot_heatmaps_png(path, "t", NULL, 1, 3, map, 1, NULL, &err), -1);
    cr_expect(strstr(err.msg, path), "%s", err.msg);
}

Test(plot, inferno_endpoints)
{
    unsigned char a[3], b[3];
    plot_inferno(0, a);
    plot_inferno(-1, b);
    cr_expect_eq(memcmp(a, b, 3), 0);
    plot_inferno(NAN, b);
    cr_expect_eq(memcmp(a, b, 3), 0);
    plot_inferno(1, a);
    plot_inferno(2, b);
    cr_expect_eq(memcmp(a, b, 3), 0);
    cr_expect_gt(a[0] + a[1] + a[2], 600, "inferno(1) should be bright");
}

/* Error bars in the series' colour; a categorical axis draws its words. */
Test(plot, lines_png_error_bars_and_categories)
{
    const double x[3] = {0, 1, 2}, y[3] = {0.3, 0.5, 0.4}, e[3] = {0.05, 0, 0.1};
    const plot_series s[1] = {{"acc", x, y, 3}};
    const double *bars[1] = {e};
    const char *const words[3] = {"zeros", "learned", "sinusoid"};
    const plot_categories cats = {words, 3};
    char plain[128], barred[128], cat[128];
    snprintf(plain, sizeof plain, "%s/plain.png", dir);
    snprintf(barred, sizeof barred, "%s/bars.png", dir);
    snprintf(cat, sizeof cat, "%s/cat.png", dir);
    tlb_error err = {0};
    cr_assert_eq(plot_lines_png_ex(plain, "t", "x", "y", s, 1, NULL, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(plot_lines_png_ex(barred, "t", "x", "y", s, 1, bars, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(plot_lines_png_ex(cat, "t", "x", "y", s, 1, bars, &cats, &err), 0, "%s", err.msg);
    image a = read_png(plain), b = read_png(barred), c = read_png(cat);
    const long na = count_color(&a, plot_palette[0], 0), nb = count_color(&b, plot_palette[0], 0);
    /* Two bars, each spanning a good part of the (wider) y range, with caps. */
    cr_expect_gt(nb, na + 100, "bars add ink: %ld vs %ld", nb, na);
    /* The words are text: the categorical x axis has more dark text pixels than numbers 0, 1, 2. */
    const unsigned char text[3] = {34, 34, 34};
    cr_expect_gt(count_color(&c, text, 0), count_color(&b, text, 0) + 50);
    free(a.px), free(b.px), free(c.px);
}

/* Issue 21: words on the x axis have no order, so their points are not
 * joined (markers and bars only); an accuracy chart can start at 0 and
 * mark chance with a dashed grey line. */
Test(plot, categories_unjoined_and_chance_marked)
{
    const double x[3] = {0, 1, 2}, y[3] = {0.3, 0.5, 0.4};
    const plot_series s[1] = {{"acc", x, y, 3}};
    const char *const words[3] = {"zeros", "learned", "sinusoid"};
    const plot_categories cats = {words, 3};
    char joined[128], apart[128], chance[128];
    snprintf(joined, sizeof joined, "%s/joined.png", dir);
    snprintf(apart, sizeof apart, "%s/apart.png", dir);
    snprintf(chance, sizeof chance, "%s/chance.png", dir);
    tlb_error err = {0};
    const plot_line_options numeric = {0}, categorical = {.xcats = &cats},
                            marked = {.xcats = &cats, .y_from_zero = 1, .reference_y = 0.1, .reference_label = "chance"};
    cr_assert_eq(plot_lines_png_opts(joined, "t", "x", "y", s, 1, &numeric, &err), 0, "%s", err.msg);
    cr_assert_eq(plot_lines_png_opts(apart, "t", "x", "y", s, 1, &categorical, &err), 0, "%s", err.msg);
    cr_assert_eq(plot_lines_png_opts(chance, "t", "x", "y", s, 1, &marked, &err), 0, "%s", err.msg);
    image a = read_png(joined), b = read_png(apart), c = read_png(chance);
    const long na = count_color(&a, plot_palette[0], 0), nb = count_color(&b, plot_palette[0], 0);
    cr_expect_gt(na, nb + 300, "lines joined the categories: %ld vs %ld pixels", na, nb);
    const unsigned char muted[3] = {150, 150, 150};
    cr_expect_gt(count_color(&c, muted, 0), count_color(&b, muted, 0) + 200, "no chance line");
    free(a.px), free(b.px), free(c.px);
}

/* Several maps per image: stacked (a column per image, the image above its
 * overlays) and beside (a row per image); each map is normalised on its
 * own, so a map hot in one corner shows hot pixels wherever it is drawn. */
Test(plot, overlays_png_stacked_and_beside)
{
    enum { C = 2, S = 8, G = 2, M = 3 };
    float img[C * S * S * 3], maps[C * M * G * G];
    for (int i = 0; i < C * S * S; i++) img[3 * i] = 0, img[3 * i + 1] = 1, img[3 * i + 2] = 0;
    for (int i = 0; i < C * M * G * G; i++) maps[i] = i % (G * G) == (i / (G * G)) % (G * G) ? 1.0f : 0.0f;
    const char *labels[M] = {"max", "row 0", "row 1"}, *caps[C] = {"cat: 0.9", "dog"};
    char path[128];
    snprintf(path, sizeof path, "%s/overlays.png", dir);
    tlb_error err = {0};
    const unsigned char green[3] = {0, 255, 0};
    unsigned char hot[3], mix_hot[3];
    plot_inferno(1, hot);
    for (int k = 0; k < 3; k++) mix_hot[k] = (hot[k] + green[k]) / 2;
    for (int beside = 0; beside < 2; beside++) {
        const plot_overlays o = {.images = img, .count = C, .S = S, .maps = maps, .nmaps = M, .G = G,
                                 .map_labels = labels, .captions = caps, .beside = beside};
        cr_assert_eq(plot_overlays_png(path, "t", &o, &err), 0, "%s", err.msg);
        image im = read_png(path);
        const int cell = S * 16; /* 8 px images are upsampled to 128 */
        if (beside) {
            cr_expect_geq(im.w, (1 + M) * cell);
            cr_expect_lt(im.h, (1 + M) * cell);
        } else {
            cr_expect_geq(im.h, (1 + M) * cell);
            cr_expect_geq(im.w, C * cell);
        }
        /* Every overlay has a hot quarter; the plain images stay green. */
        cr_expect_geq(count_color(&im, mix_hot, 1), (long)C * M * cell * cell / 20, "beside %d", beside);
        cr_expect_geq(count_color(&im, green, 0), (long)C * cell * cell, "beside %d", beside);
        free(im.px);
    }
    const plot_overlays none = {.images = img, .count = C, .S = S, .maps = maps, .nmaps = 0, .G = G};
    cr_expect_eq(plot_overlays_png(path, "t", &none, &err), -1);
    cr_expect(strstr(err.msg, path) && strstr(err.msg, "maps per image"), "%s", err.msg);
    cr_expect(no_leftovers(), "a temporary file was left behind");
}

/* A perfect 3-class matrix: the diagonal cells are the full series colour,
 * the others white; row shares, not counts, set the shade. */
Test(plot, confusion_png_shades_by_row_share)
{
    const long counts[9] = {50, 0, 0, 0, 7, 0, 0, 0, 1000};
    const char *names[3] = {"cat", "dog", "automobile"};
    char path[128];
    snprintf(path, sizeof path, "%s/confusion.png", dir);
    tlb_error err = {0};
    cr_assert_eq(plot_confusion_png(path, "Confusion", counts, 3, names, &err), 0, "%s", err.msg);
    image im = read_png(path);
    /* Three 40x40 cells (less their grid lines and digits) in the full colour. */
    cr_expect_geq(count_color(&im, plot_palette[0], 0), 3L * 36 * 30);
    cr_expect_lt(count_color(&im, plot_palette[0], 0), 4L * 40 * 40);
    free(im.px);
    const long half[4] = {1, 1, 0, 2};
    cr_assert_eq(plot_confusion_png(path, NULL, half, 2, NULL, &err), 0, "%s", err.msg);
    im = read_png(path);
    cr_expect_geq(count_color(&im, plot_palette[0], 0), 36L * 30, "the 2/2 cell");
    unsigned char mid[3];
    for (int k = 0; k < 3; k++) mid[k] = (unsigned char)lrint(255 + 0.5 * (plot_palette[0][k] - 255));
    cr_expect_geq(count_color(&im, mid, 1), 2L * 36 * 30, "the two 1/2 cells");
    free(im.px);
    cr_expect_eq(plot_confusion_png(path, "t", counts, 0, names, &err), -1);
    cr_expect(no_leftovers(), "a temporary file was left behind");
}

/* 64 images of 48 px in rows of 8 (the `tlb data show` grid): the size the
 * header states, and each image's top-left pixel where the layout puts it. */
Test(plot, images_png_grid_size_and_placement)
{
    enum { C = 64, S = 48 };
    static float img[C * S * S * 3];
    const char *caps[C];
    for (int b = 0; b < C; b++) {
        caps[b] = b % 2 ? "cat 0.62 dog" : NULL;
        for (int i = 0; i < S * S; i++) img[(b * S * S + i) * 3] = (float)b / 63.0f, img[(b * S * S + i) * 3 + 2] = 1.0f;
    }
    char path[128];
    snprintf(path, sizeof path, "%s/augmented.png", dir);
    tlb_error err = {0};
    cr_assert_eq(plot_images_png(path, "augmented", img, C, S, 8, caps, &err), 0, "%s", err.msg);
    image im = read_png(path);
    /* cell = 48 * 2 = 96: w = 32 + 8 * 96 + 7 * 8, h = 40 + 8 * (12 + 96 + 8) - 8 + 16 */
    cr_expect_eq(im.w, 856);
    cr_expect_eq(im.h, 976);
    int w, h;
    plot_images_size(C, S, 8, 1, 1, &w, &h);
    cr_expect(w == im.w && h == im.h, "plot_images_size says %dx%d", w, h);
    for (int b = 0; b < C; b++) {
        const int x = 16 + (b % 8) * 104, y = 40 + (b / 8) * 116 + 12;
        const unsigned char want[3] = {(unsigned char)lrintf((float)b / 63.0f * 255.0f), 0, 255};
        cr_expect_eq(memcmp(pixel(&im, x, y), want, 3), 0, "image %d's first pixel", b);
        cr_expect_eq(memcmp(pixel(&im, x + 95, y + 95), want, 3), 0, "image %d's last pixel", b);
        cr_expect_eq(pixel(&im, x + 96, y)[1], 255, "gap right of image %d is white", b);
    }
    free(im.px);
    /* No caption, no title, fewer images than a row. */
    cr_assert_eq(plot_images_png(path, NULL, img, 3, S, 8, NULL, &err), 0, "%s", err.msg);
    im = read_png(path);
    cr_expect_eq(im.w, 32 + 3 * 96 + 2 * 8);
    cr_expect_eq(im.h, 16 + 96 + 16);
    free(im.px);
    cr_expect(no_leftovers(), "a temporary file was left behind");
}
