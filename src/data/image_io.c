#include "data/image_io.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <setjmp.h>
#include <stddef.h>
#include <stdio.h>
#include <jpeglib.h> /* after stdio.h and stddef.h, which it needs */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/augment.h"
#include "data/cifar10.h"
#include "data/png_read_errors.h"

static int size_ok(const char *path, long w, long h, tlb_error *err)
{
    if (w < 1 || h < 1 || w > IMAGE_MAX_SIDE || h > IMAGE_MAX_SIDE || w * h > IMAGE_MAX_PIXELS)
        return tlb_fail(err, "%s: %ldx%ld pixels is outside 1..%d per side and %ld in all", path, w, h,
                        IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
    return 0;
}

/* ---- PNG ---- */

typedef struct {
    png_read_errors errors; /* first: libpng's error pointer is this struct */
    png_bytep *rows;        /* freed by the caller, also after a longjmp */
} png_fail;

/* The part that can longjmp; no local of the caller is live across setjmp. */
static int png_decode(image_rgb *out, png_structp png, png_infop info, png_fail *fail, const char *path,
                      tlb_error *err)
{
    png_read_info(png, info);
    png_uint_32 w, h;
    int depth, color, interlace;
    png_get_IHDR(png, info, &w, &h, &depth, &color, &interlace, NULL, NULL);
    if (size_ok(path, (long)w, (long)h, err) != 0) return -1;
    png_set_expand(png);  /* palette, low-bit grey, tRNS -> 8-bit channels */
    png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA) png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    if (png_get_rowbytes(png, info) != (size_t)w * 3) return tlb_fail(err, "%s: unexpected PNG row layout", path);
    out->w = (int)w, out->h = (int)h;
    out->rgb = malloc((size_t)w * h * 3);
    png_bytep *rows = fail->rows = malloc((size_t)h * sizeof *rows);
    if (!out->rgb || !rows)
        return tlb_fail(err, "%s: out of memory for %ux%u pixels", path, (unsigned)w, (unsigned)h);
    for (png_uint_32 y = 0; y < h; y++) rows[y] = out->rgb + (size_t)y * w * 3;
    png_read_image(png, rows); /* a truncated file longjmps from here */
    png_read_end(png, NULL);
    return 0;
}

static int read_png(image_rgb *out, FILE *fp, const char *path, tlb_error *err)
{
    png_fail fail = {.errors = {.msg = ""}, .rows = NULL};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &fail, png_read_on_error, png_read_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    int rc;
    if (!png || !info) {
        rc = tlb_fail(err, "%s: out of memory setting up libpng", path);
    } else if (setjmp(fail.errors.jmp)) {
        rc = tlb_fail(err, "%s: truncated or corrupt PNG (libpng: %s)", path, fail.errors.msg);
    } else {
        png_init_io(png, fp);
        rc = png_decode(out, png, info, &fail, path, err);
    }
    free(fail.rows);
    png_destroy_read_struct(png ? &png : NULL, info ? &info : NULL, NULL);
    return rc;
}

/* ---- JPEG ---- */

typedef struct {
    struct jpeg_error_mgr mgr;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX];
} jpeg_fail;

static void jpeg_on_error(j_common_ptr j)
{
    jpeg_fail *f = (jpeg_fail *)j->err;
    f->mgr.format_message(j, f->msg);
    longjmp(f->jmp, 1);
}

/* Warnings (level -1) mean damaged data, e.g. a truncated file that libjpeg
 * would finish with grey: treat them as errors. Trace messages are ignored. */
static void jpeg_on_message(j_common_ptr j, int level)
{
    if (level < 0) jpeg_on_error(j);
}

static int jpeg_decode(image_rgb *out, struct jpeg_decompress_struct *j, const char *path, tlb_error *err)
{
    jpeg_read_header(j, TRUE);
    if (j->jpeg_color_space == JCS_CMYK || j->jpeg_color_space == JCS_YCCK)
        return tlb_fail(err, "%s: CMYK JPEG is not supported", path);
    j->out_color_space = JCS_RGB;
    if (size_ok(path, (long)j->image_width, (long)j->image_height, err) != 0) return -1;
    jpeg_start_decompress(j);
    const int w = (int)j->output_width, h = (int)j->output_height;
    out->w = w, out->h = h;
    out->rgb = malloc((size_t)w * h * 3);
    if (!out->rgb) return tlb_fail(err, "%s: out of memory for %dx%d pixels", path, w, h);
    while (j->output_scanline < j->output_height) {
        JSAMPROW row = out->rgb + (size_t)j->output_scanline * w * 3;
        jpeg_read_scanlines(j, &row, 1);
    }
    jpeg_finish_decompress(j);
    return 0;
}

static int read_jpeg(image_rgb *out, FILE *fp, const char *path, tlb_error *err)
{
    struct jpeg_decompress_struct j;
    jpeg_fail fail;
    memset(&fail, 0, sizeof fail);
    j.err = jpeg_std_error(&fail.mgr);
    fail.mgr.error_exit = jpeg_on_error;
    fail.mgr.emit_message = jpeg_on_message;
    int rc;
    if (setjmp(fail.jmp)) {
        rc = tlb_fail(err, "%s: truncated or corrupt JPEG (libjpeg: %s)", path, fail.msg);
    } else {
        jpeg_create_decompress(&j);
        jpeg_stdio_src(&j, fp);
        rc = jpeg_decode(out, &j, path, err);
    }
    jpeg_destroy_decompress(&j);
    return rc;
}

/* ---- dispatch ---- */

int image_read(image_rgb *out, const char *path, tlb_error *err)
{
    memset(out, 0, sizeof *out);
    struct stat sb;
    if (stat(path, &sb) != 0) return tlb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return tlb_fail(err, "%s: is a directory, not an image", path);
    if (!S_ISREG(sb.st_mode)) return tlb_fail(err, "%s: not a regular file", path);
    FILE *fp = fopen(path, "rb");
    if (!fp) return tlb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char sig[8] = {0};
    const size_t got = fread(sig, 1, sizeof sig, fp);
    rewind(fp);
    int rc;
    if (got == 8 && png_sig_cmp(sig, 0, 8) == 0) rc = read_png(out, fp, path, err);
    else if (got >= 3 && sig[0] == 0xFF && sig[1] == 0xD8 && sig[2] == 0xFF) rc = read_jpeg(out, fp, path, err);
    else if (got == 0) rc = tlb_fail(err, "%s: empty file, not an image", path);
    else rc = tlb_fail(err, "%s: not a PNG or JPEG image (unknown signature)", path);
    fclose(fp);
    if (rc != 0) image_free(out);
    return rc;
}

void image_free(image_rgb *im)
{
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

/* ---- resampling to 32x32 ---- */

/* One axis from n source samples to m: the weights of output i over sources
 * [lo[i], lo[i] + cnt[i]). Shrinking: the source interval
 * [i*n/m, (i+1)*n/m) by overlap (an area average). Enlarging (or equal):
 * bilinear with half-pixel centres, neighbours clamped (at n == m, weight 1
 * on the same pixel, so a 32x32 image is copied exactly). */
enum { AXIS_MAX_TAPS = IMAGE_MAX_SIDE / CIFAR10_SIDE + 2 };

static int axis_taps(int n, int m, int i, int *lo, double *wt)
{
    if (n > m) {
        const double a = (double)i * n / m, b = (double)(i + 1) * n / m;
        int k = 0;
        *lo = (int)floor(a);
        for (int s = *lo; s < n && s < b; s++) {
            const double left = s > a ? s : a, right = s + 1 < b ? s + 1 : b;
            wt[k++] = (right - left) / (b - a);
        }
        return k;
    }
    const double x = (i + 0.5) * n / m - 0.5, f = floor(x), t = x - f;
    const int l = f < 0 ? 0 : (int)f, h = f + 1 > n - 1 ? n - 1 : (int)f + 1;
    *lo = l;
    if (t == 0 || l == h) {
        wt[0] = 1.0;
        return 1;
    }
    wt[0] = 1 - t, wt[1] = t;
    return 2;
}

void image_to_cifar32(uint8_t *planar, const image_rgb *im)
{
    enum { S = CIFAR10_SIDE };
    int ylo, xlo, yk, xk;
    double yw[AXIS_MAX_TAPS], xw[AXIS_MAX_TAPS];
    for (int y = 0; y < S; y++) {
        yk = axis_taps(im->h, S, y, &ylo, yw);
        for (int x = 0; x < S; x++) {
            xk = axis_taps(im->w, S, x, &xlo, xw);
            double acc[3] = {0, 0, 0};
            for (int a = 0; a < yk; a++) {
                const uint8_t *row = im->rgb + ((size_t)(ylo + a) * im->w) * 3;
                for (int b = 0; b < xk; b++) {
                    const double wgt = yw[a] * xw[b];
                    const uint8_t *p = row + (size_t)(xlo + b) * 3;
                    for (int c = 0; c < 3; c++) acc[c] += wgt * p[c];
                }
            }
            for (int c = 0; c < 3; c++) {
                const long v = lrint(acc[c]);
                planar[(size_t)c * S * S + y * S + x] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
            }
        }
    }
}

void image_model_input(float *out, const image_rgb *im, int size)
{
    uint8_t planar[CIFAR10_PIXELS];
    image_to_cifar32(planar, im);
    augment_eval(out, planar, size);
}
