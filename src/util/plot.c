#include "util/plot.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/font5x7.h"
#include "util/fs.h"

/* tab10 without its grey: every colour has distinct channels. */
const unsigned char plot_palette[PLOT_NUM_COLORS][3] = {
    {31, 119, 180}, {255, 127, 14}, {44, 160, 44},  {214, 39, 40},
    {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {23, 190, 207},
};

static const unsigned char WHITE[3] = {255, 255, 255};
static const unsigned char TEXT[3] = {34, 34, 34};
static const unsigned char FRAME[3] = {80, 80, 80};
static const unsigned char GRID[3] = {228, 228, 228};
static const unsigned char MUTED[3] = {150, 150, 150};

#define MAX_SIDE 16384

/* ---- canvas: 8-bit RGB, with a clip rectangle for the data layer ---- */

typedef struct {
    int w, h;
    unsigned char *px;
    int cx0, cy0, cx1, cy1; /* clip, half-open */
} canvas;

static int canvas_init(canvas *c, int w, int h, tlb_error *err)
{
    if (w < 1 || h < 1 || w > MAX_SIDE || h > MAX_SIDE)
        return tlb_fail(err, "plot of %dx%d pixels is out of range", w, h);
    c->w = w, c->h = h;
    c->px = malloc((size_t)w * h * 3);
    if (!c->px) return tlb_fail(err, "out of memory for a %dx%d plot", w, h);
    memset(c->px, 255, (size_t)w * h * 3);
    c->cx0 = 0, c->cy0 = 0, c->cx1 = w, c->cy1 = h;
    return 0;
}

static void blend(canvas *c, int x, int y, const unsigned char col[3], double a)
{
    if (x < c->cx0 || y < c->cy0 || x >= c->cx1 || y >= c->cy1 || a <= 0) return;
    unsigned char *p = c->px + ((size_t)y * c->w + x) * 3;
    if (a >= 1) {
        memcpy(p, col, 3);
        return;
    }
    for (int k = 0; k < 3; k++) p[k] = (unsigned char)lrint(p[k] + a * (col[k] - p[k]));
}

static void fill_rect(canvas *c, int x, int y, int w, int h, const unsigned char col[3])
{
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) blend(c, i, j, col, 1);
}

static void stroke_rect(canvas *c, int x, int y, int w, int h, const unsigned char col[3])
{
    fill_rect(c, x, y, w, 1, col);
    fill_rect(c, x, y + h - 1, w, 1, col);
    fill_rect(c, x, y, 1, h, col);
    fill_rect(c, x + w - 1, y, 1, h, col);
}

/* ---- text: 6 px advance, 7 px body + 1 descender row, times scale ---- */

static int text_width(const char *s, int scale)
{
    const int n = s ? (int)strlen(s) : 0;
    return n ? (6 * n - 1) * scale : 0;
}

/* (x, y) is the top-left of the first glyph's body. Vertical text reads
 * bottom to top (a y-axis label): then (x, y) is the bottom-left. */
static void draw_text(canvas *c, int x, int y, const char *s, int scale, const unsigned char col[3], int vertical)
{
    for (int i = 0; s && s[i]; i++) {
        int ch = (unsigned char)s[i];
        if (ch < FONT5X7_FIRST || ch > FONT5X7_LAST) ch = '?';
        const unsigned char *g = font5x7[ch - FONT5X7_FIRST];
        for (int gx = 0; gx < 5; gx++)
            for (int gy = 0; gy < 8; gy++) {
                if (!(g[gx] >> gy & 1)) continue;
                const int u = (6 * i + gx) * scale, v = gy * scale;
                if (vertical)
                    fill_rect(c, x + v, y - u - scale, scale, scale, col);
                else
                    fill_rect(c, x + u, y + v, scale, scale, col);
            }
    }
}

static void draw_text_centered(canvas *c, int cx, int y, const char *s, int scale, const unsigned char col[3])
{
    draw_text(c, cx - text_width(s, scale) / 2, y, s, scale, col, 0);
}

/* Copies s into out, cut with ".." so it is at most max_w pixels wide. */
static void fit_text(char *out, size_t cap, const char *s, int scale, int max_w)
{
    snprintf(out, cap, "%s", s ? s : "");
    if (text_width(out, scale) <= max_w) return;
    int n = (int)strlen(out);
    while (n > 0 && (6 * (n + 2) - 1) * scale > max_w) n--;
    snprintf(out + n, cap - (size_t)n, "..");
}

/* ---- anti-aliased shapes: coverage into a per-layer buffer, max-combined
 * so overlapping segments of one series do not darken their joins ---- */

typedef struct {
    canvas *c;
    float *cov; /* w*h */
} layer;

static void cover(layer *l, int x, int y, double a)
{
    canvas *c = l->c;
    if (x < c->cx0 || y < c->cy0 || x >= c->cx1 || y >= c->cy1) return;
    float *p = l->cov + (size_t)y * c->w + x;
    if (a > *p) *p = (float)(a > 1 ? 1 : a);
}

static void layer_flush(layer *l, const unsigned char col[3])
{
    canvas *c = l->c;
    for (int y = c->cy0; y < c->cy1; y++)
        for (int x = c->cx0; x < c->cx1; x++) {
            float *p = l->cov + (size_t)y * c->w + x;
            if (*p > 0) blend(c, x, y, col, *p), *p = 0;
        }
}

/* A capsule of the given width from (x0,y0) to (x1,y1), continuous coords. */
static void cover_segment(layer *l, double x0, double y0, double x1, double y1, double width)
{
    const double r = width / 2, dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy;
    const int xa = (int)floor(fmin(x0, x1) - r - 1), xb = (int)ceil(fmax(x0, x1) + r + 1);
    const int ya = (int)floor(fmin(y0, y1) - r - 1), yb = (int)ceil(fmax(y0, y1) + r + 1);
    for (int y = ya; y <= yb; y++)
        for (int x = xa; x <= xb; x++) {
            const double px = x + 0.5 - x0, py = y + 0.5 - y0;
            double t = len2 > 0 ? (px * dx + py * dy) / len2 : 0;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            const double ex = px - t * dx, ey = py - t * dy;
            cover(l, x, y, r + 0.5 - sqrt(ex * ex + ey * ey));
        }
}

/* Marker shape by series: circle, square, triangle, diamond; 4x4 samples. */
static int inside_marker(int shape, double u, double v, double r)
{
    switch (shape) {
    case 0: return u * u + v * v <= r * r;
    case 1: return fabs(u) <= 0.85 * r && fabs(v) <= 0.85 * r;
    case 2: return v <= 0.8 * r && v >= -r + 2 * fabs(u) * 0.9;
    default: return fabs(u) + fabs(v) <= 1.2 * r;
    }
}

static void cover_marker(layer *l, double cx, double cy, int shape, double r)
{
    for (int y = (int)floor(cy - r - 1); y <= (int)ceil(cy + r + 1); y++)
        for (int x = (int)floor(cx - r - 1); x <= (int)ceil(cx + r + 1); x++) {
            int hits = 0;
            for (int s = 0; s < 16; s++)
                hits += inside_marker(shape, x + (s % 4 + 0.5) / 4 - cx, y + (s / 4 + 0.5) / 4 - cy, r);
            cover(l, x, y, hits / 16.0);
        }
}

/* ---- PNG output, atomic ---- */

static void on_png_error(png_structp png, png_const_charp msg)
{
    snprintf((char *)png_get_error_ptr(png), 256, "%s", msg);
    png_longjmp(png, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg;
}

/* Nothing here changes after setjmp, so a longjmp leaves no stale locals. */
static int png_encode(FILE *fp, const canvas *c, char msg[256])
{
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, msg, on_png_error, on_png_warning);
    if (!png) return snprintf(msg, 256, "out of memory"), -1;
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return snprintf(msg, 256, "out of memory"), -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        return -1;
    }
    png_init_io(png, fp);
    png_set_IHDR(png, info, (png_uint_32)c->w, (png_uint_32)c->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < c->h; y++) png_write_row(png, c->px + (size_t)y * c->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return 0;
}

static int write_png_atomic(const char *path, const canvas *c, tlb_error *err)
{
    fs_atomic a;
    if (fs_atomic_open(&a, path, err) != 0) return -1;
    FILE *fp = fs_atomic_stream(&a);
    char msg[256] = "";
    errno = 0;
    if (!fp || png_encode(fp, c, msg) != 0) {
        const int e = errno;
        fs_atomic_abort(&a);
        return tlb_fail(err, "%s: cannot write PNG: %s%s%s", path, msg, e ? ": " : "", e ? strerror(e) : "");
    }
    return fs_atomic_commit(&a, NULL, NULL, err);
}

/* ---- line charts ---- */

typedef struct {
    double lo, hi;   /* axis limits */
    double t0, step; /* first tick and spacing */
    int nticks, decimals;
} axis;

/* Limits = data range padded 4% per side; ticks at the nice multiples
 * (1, 2, 5 x 10^k) of a step giving about `target` ticks inside them, and
 * at least 1 apart when the data are whole numbers. */
static axis make_axis(double mn, double mx, int target, int integral)
{
    axis a;
    if (!(mn <= mx)) mn = 0, mx = 1; /* no finite data */
    if (mx - mn <= 1e-12 * fmax(fabs(mn), fabs(mx))) {
        const double pad = mn != 0 ? fabs(mn) * 0.1 : 1;
        mn -= pad, mx += pad;
    }
    const double range = mx - mn;
    a.lo = mn - 0.04 * range, a.hi = mx + 0.04 * range;
    const double raw = (a.hi - a.lo) / target, mag = pow(10, floor(log10(raw))), f = raw / mag;
    a.step = (f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10) * mag;
    if (integral && a.step < 1) a.step = 1; /* epochs: no "1.5" ticks */
    a.t0 = ceil(a.lo / a.step - 1e-9) * a.step;
    a.nticks = (int)floor((a.hi - a.t0) / a.step + 1e-9) + 1;
    const int d = -(int)floor(log10(a.step) + 1e-9);
    a.decimals = d < 0 ? 0 : d;
    return a;
}

static void tick_label(char *out, size_t cap, const axis *a, int i)
{
    double v = a->t0 + i * a->step;
    if (fabs(v) < a->step * 1e-6) v = 0; /* no "-0.0" */
    if (fabs(v) >= 1e7 || a->decimals > 6)
        snprintf(out, cap, "%.3g", v);
    else
        snprintf(out, cap, "%.*f", a->decimals, v);
}

typedef struct {
    double x, y;
    int i;
} point;

static int cmp_point(const void *pa, const void *pb)
{
    const point *a = pa, *b = pb;
    if (a->x != b->x) return a->x < b->x ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

/* The finite-x points of s in increasing x; returns the count (points with
 * a non-finite y are kept so they break the line). */
static int sorted_points(const plot_series *s, point *out)
{
    int m = 0;
    for (int i = 0; i < s->n; i++) {
        const double x = s->x ? s->x[i] : i;
        if (isfinite(x)) out[m++] = (point){x, s->y[i], i};
    }
    qsort(out, (size_t)m, sizeof *out, cmp_point);
    return m;
}

/* Number of series-coloured pixels in a rectangle: what a legend there hides. */
static long ink_in(const canvas *c, int x, int y, int w, int h)
{
    long n = 0;
    for (int j = y; j < y + h; j++)
        for (int i = x; i < x + w; i++) {
            const unsigned char *p = c->px + ((size_t)j * c->w + i) * 3;
            n += p[0] != p[1] || p[1] != p[2];
        }
    return n;
}

enum { W = 640, H = 420, MARKER_MAX_POINTS = 60 };

int plot_lines_png(const char *path, const char *title, const char *xlabel, const char *ylabel,
                   const plot_series *series, int nseries, tlb_error *err)
{
    return plot_lines_png_ex(path, title, xlabel, ylabel, series, nseries, NULL, NULL, err);
}

/* Error bar half-length at point i of series k, or 0. */
static double bar_of(const double *const *errbars, int k, int i)
{
    const double *e = errbars ? errbars[k] : NULL;
    return e && e[i] > 0 && isfinite(e[i]) ? e[i] : 0;
}

int plot_lines_png_ex(const char *path, const char *title, const char *xlabel, const char *ylabel,
                      const plot_series *series, int nseries, const double *const *errbars,
                      const plot_categories *xcats, tlb_error *err)
{
    const plot_line_options o = {.errbars = errbars, .xcats = xcats};
    return plot_lines_png_opts(path, title, xlabel, ylabel, series, nseries, &o, err);
}

int plot_lines_png_opts(const char *path, const char *title, const char *xlabel, const char *ylabel,
                        const plot_series *series, int nseries, const plot_line_options *o, tlb_error *err)
{
    const double *const *errbars = o->errbars;
    const plot_categories *xcats = o->xcats;
    const double ref = o->reference_y > 0 && isfinite(o->reference_y) ? o->reference_y : 0;
    if (xcats && (xcats->count < 1 || !xcats->names)) xcats = NULL;
    if (nseries < 0 || (nseries > 0 && !series)) return tlb_fail(err, "%s: bad series list (%d series)", path, nseries);
    int maxn = 0;
    for (int k = 0; k < nseries; k++) {
        if (series[k].n > 0 && !series[k].y) return tlb_fail(err, "%s: series %d has no y values", path, k);
        if (series[k].n > maxn) maxn = series[k].n;
    }

    double xmn = INFINITY, xmx = -INFINITY, ymn = INFINITY, ymx = -INFINITY;
    int xint = 1, yint = 1;
    for (int k = 0; k < nseries; k++)
        for (int i = 0; i < series[k].n; i++) {
            const double x = series[k].x ? series[k].x[i] : i, y = series[k].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            const double e = bar_of(errbars, k, i);
            xmn = fmin(xmn, x), xmx = fmax(xmx, x), ymn = fmin(ymn, y - e), ymx = fmax(ymx, y + e);
            xint &= x == floor(x), yint &= y == floor(y);
        }
    const int have_data = xmn <= xmx;
    if (have_data && o->y_from_zero) ymn = fmin(ymn, 0.0), yint = 0;
    if (have_data && ref > 0) ymn = fmin(ymn, ref), ymx = fmax(ymx, ref);
    axis ax = make_axis(xmn, xmx, 7, xint);
    const axis ay = make_axis(ymn, ymx, 6, yint);
    if (xcats) ax = (axis){-0.5, xcats->count - 0.5, 0, 1, xcats->count, 0};

    /* Layout: tick labels and axis labels at scale 1, the title at 2. */
    char lab[64];
    int ytick_w = 0;
    for (int i = 0; i < ay.nticks; i++) {
        tick_label(lab, sizeof lab, &ay, i);
        if (text_width(lab, 1) > ytick_w) ytick_w = text_width(lab, 1);
    }
    const int has_title = title && *title, has_xl = xlabel && *xlabel, has_yl = ylabel && *ylabel;
    const int left = 12 + (has_yl ? 8 + 10 : 0) + ytick_w + 4 + 5;
    const int top = has_title ? 42 : 18, right = 22;
    const int bottom = 5 + 4 + 8 + (has_xl ? 10 + 8 : 0) + 12;
    const int pw = W - left - right, ph = H - top - bottom;

    canvas c;
    if (canvas_init(&c, W, H, err) != 0) return tlb_fail_prefix(err, "%s", path);
    layer l = {&c, calloc((size_t)W * H, sizeof(float))};
    point *pts = malloc((size_t)(maxn > 0 ? maxn : 1) * sizeof *pts);
    if (!l.cov || !pts) {
        free(c.px), free(l.cov), free(pts);
        return tlb_fail(err, "%s: out of memory", path);
    }

    /* Grid, then data clipped to the plot area, then frame and ticks. */
    const double sx = pw / (ax.hi - ax.lo), sy = ph / (ay.hi - ay.lo);
    for (int i = 0; i < ax.nticks; i++) {
        const int x = left + (int)floor((ax.t0 + i * ax.step - ax.lo) * sx);
        fill_rect(&c, x, top, 1, ph, GRID);
    }
    for (int i = 0; i < ay.nticks; i++) {
        const int y = top + ph - 1 - (int)floor((ay.t0 + i * ay.step - ay.lo) * sy);
        fill_rect(&c, left, y, pw, 1, GRID);
    }
    c.cx0 = left + 1, c.cy0 = top + 1, c.cx1 = left + pw - 1, c.cy1 = top + ph - 1;
    if (have_data && ref > 0) { /* dashed, under the data */
        const double ry = top + ph - (ref - ay.lo) * sy;
        for (double x = left + 2; x < left + pw - 2; x += 10) cover_segment(&l, x, ry, fmin(x + 5, left + pw - 2), ry, 1.5);
        layer_flush(&l, MUTED);
    }
    for (int k = 0; k < nseries; k++) {
        const int m = sorted_points(&series[k], pts);
        int pen = 0;
        double px0 = 0, py0 = 0;
        for (int j = 0; j < m; j++) {
            if (!isfinite(pts[j].y)) {
                pen = 0;
                continue;
            }
            const double px = left + (pts[j].x - ax.lo) * sx, py = top + ph - (pts[j].y - ay.lo) * sy;
            if (pen && !xcats) cover_segment(&l, px0, py0, px, py, 2.0);
            const double e = bar_of(errbars, k, pts[j].i) * sy;
            if (e > 0) {
                cover_segment(&l, px, py - e, px, py + e, 1.5);
                cover_segment(&l, px - 4, py - e, px + 4, py - e, 1.5);
                cover_segment(&l, px - 4, py + e, px + 4, py + e, 1.5);
            }
            if (m <= MARKER_MAX_POINTS) cover_marker(&l, px, py, k % 4, 3.5);
            pen = 1, px0 = px, py0 = py;
        }
        layer_flush(&l, plot_palette[k % PLOT_NUM_COLORS]);
    }
    c.cx0 = 0, c.cy0 = 0, c.cx1 = W, c.cy1 = H;
    if (!have_data) draw_text_centered(&c, left + pw / 2, top + ph / 2 - 4, "no data", 1, MUTED);

    stroke_rect(&c, left, top, pw, ph, FRAME);
    for (int i = 0; i < ax.nticks; i++) {
        const int x = left + (int)floor((ax.t0 + i * ax.step - ax.lo) * sx);
        fill_rect(&c, x, top + ph, 1, 5, FRAME);
        if (xcats) fit_text(lab, sizeof lab, xcats->names[i], 1, pw / xcats->count - 4);
        else tick_label(lab, sizeof lab, &ax, i);
        draw_text_centered(&c, x + 1, top + ph + 5 + 4, lab, 1, TEXT);
    }
    for (int i = 0; i < ay.nticks; i++) {
        const int y = top + ph - 1 - (int)floor((ay.t0 + i * ay.step - ay.lo) * sy);
        fill_rect(&c, left - 5, y, 5, 1, FRAME);
        tick_label(lab, sizeof lab, &ay, i);
        draw_text(&c, left - 5 - 4 - text_width(lab, 1), y - 3, lab, 1, TEXT, 0);
    }
    char buf[256];
    if (has_title) {
        const int scale = text_width(title, 2) <= W - 20 ? 2 : 1;
        fit_text(buf, sizeof buf, title, scale, W - 20);
        /* Centred over the plot area, or over the picture if it is too wide. */
        const int tw = text_width(buf, scale), cx = left + pw / 2 + tw / 2 <= W - 10 ? left + pw / 2 : W / 2;
        draw_text_centered(&c, cx, 14 + (2 - scale) * 4, buf, scale, TEXT);
    }
    if (has_xl) {
        fit_text(buf, sizeof buf, xlabel, 1, pw);
        draw_text_centered(&c, left + pw / 2, H - 12 - 8, buf, 1, TEXT);
    }
    if (has_yl) {
        fit_text(buf, sizeof buf, ylabel, 1, ph);
        draw_text(&c, 12, top + ph / 2 + text_width(buf, 1) / 2, buf, 1, TEXT, 1);
    }

    /* Legend: a framed box in whichever inside corner hides the least data. */
    int entries = 0, label_w = 0;
    const int ref_entry = have_data && ref > 0 && o->reference_label && *o->reference_label;
    for (int k = 0; k < nseries; k++)
        if (series[k].label && *series[k].label) {
            entries++;
            fit_text(buf, sizeof buf, series[k].label, 1, pw / 2);
            if (text_width(buf, 1) > label_w) label_w = text_width(buf, 1);
        }
    if (entries > 0 && ref_entry) {
        entries++;
        if (text_width(o->reference_label, 1) > label_w) label_w = text_width(o->reference_label, 1);
    }
    if (entries > 0) {
        const int bw = 8 + 24 + 6 + label_w + 8, bh = 6 + 13 * entries + 3;
        const int xs[2] = {left + pw - 8 - bw, left + 8}, ys[2] = {top + 8, top + ph - 8 - bh};
        int bx = xs[0], by = ys[0];
        long best = -1;
        for (int corner = 0; corner < 4; corner++) { /* TR, BR, TL, BL: first wins ties */
            const int x = xs[corner / 2], y = ys[corner % 2];
            const long ink = ink_in(&c, x, y, bw, bh);
            if (best < 0 || ink < best) best = ink, bx = x, by = y;
        }
        fill_rect(&c, bx, by, bw, bh, WHITE);
        stroke_rect(&c, bx, by, bw, bh, (const unsigned char[3]){200, 200, 200});
        int row = 0;
        for (int k = 0; k < nseries; k++) {
            if (!series[k].label || !*series[k].label) continue;
            const double cy = by + 6 + 13 * row + 3.5;
            if (!xcats) cover_segment(&l, bx + 8, cy, bx + 8 + 24, cy, 2.0);
            cover_marker(&l, bx + 8 + 12, cy, k % 4, 3.5);
            layer_flush(&l, plot_palette[k % PLOT_NUM_COLORS]);
            fit_text(buf, sizeof buf, series[k].label, 1, pw / 2);
            draw_text(&c, bx + 8 + 24 + 6, by + 6 + 13 * row, buf, 1, TEXT, 0);
            row++;
        }
        if (ref_entry) {
            const double cy = by + 6 + 13 * row + 3.5;
            cover_segment(&l, bx + 8, cy, bx + 8 + 9, cy, 1.5);
            cover_segment(&l, bx + 8 + 15, cy, bx + 8 + 24, cy, 1.5);
            layer_flush(&l, MUTED);
            fit_text(buf, sizeof buf, o->reference_label, 1, pw / 2);
            draw_text(&c, bx + 8 + 24 + 6, by + 6 + 13 * row, buf, 1, TEXT, 0);
        }
    }

    const int rc = write_png_atomic(path, &c, err);
    free(c.px), free(l.cov), free(pts);
    return rc;
}

/* ---- attention heat maps ---- */

void plot_inferno(double t, unsigned char rgb[3])
{
    static const unsigned char stops[11][3] = {
        {0, 0, 4},      {22, 11, 57},  {66, 10, 104}, {106, 23, 110}, {147, 38, 103},  {188, 55, 84},
        {221, 81, 58}, {243, 120, 25}, {252, 165, 10}, {246, 215, 70}, {252, 255, 164},
    };
    if (!(t > 0)) t = 0; /* NaN too */
    if (t > 1) t = 1;
    const double u = t * 10;
    const int i = u >= 10 ? 9 : (int)u;
    const double f = u - i;
    for (int k = 0; k < 3; k++) rgb[k] = (unsigned char)lrint(stops[i][k] + f * (stops[i + 1][k] - stops[i][k]));
}

static unsigned char to_byte(float v)
{
    if (!(v > 0)) return 0;
    if (v >= 1) return 255;
    return (unsigned char)lrintf(v * 255);
}

enum { MAX_COLS = 8, CELL_TARGET = 128, GAP = 12, MARGIN = 16, MAX_W = 1200 };

/* Draws image b's overlay of map m (or the plain image, m == NULL) at (x, y). */
static void draw_overlay_cell(canvas *c, int x0, int y0, const float *img, int S, int up, int cell,
                              const float *norm, int G)
{
    for (int y = 0; y < cell; y++) {
        /* Pixel-centre mapping (align_corners = false), edges clamped. */
        const double v = (y + 0.5) * G / cell - 0.5;
        const int v0 = v < 0 ? 0 : (int)v, v1 = v0 + 1 < G ? v0 + 1 : G - 1;
        const double fv = v < 0 ? 0 : v - v0;
        for (int x = 0; x < cell; x++) {
            const float *p = img + ((size_t)(y / up) * S + x / up) * 3;
            const unsigned char rgb[3] = {to_byte(p[0]), to_byte(p[1]), to_byte(p[2])};
            fill_rect(c, x0 + x, y0 + y, 1, 1, rgb);
            if (!norm) continue;
            const double u = (x + 0.5) * G / cell - 0.5;
            const int u0 = u < 0 ? 0 : (int)u, u1 = u0 + 1 < G ? u0 + 1 : G - 1;
            const double fu = u < 0 ? 0 : u - u0;
            const double t = (1 - fv) * ((1 - fu) * norm[v0 * G + u0] + fu * norm[v0 * G + u1]) +
                             fv * ((1 - fu) * norm[v1 * G + u0] + fu * norm[v1 * G + u1]);
            unsigned char heat[3];
            plot_inferno(t, heat);
            blend(c, x0 + x, y0 + y, heat, 0.5);
        }
    }
}

int plot_overlays_png(const char *path, const char *title, const plot_overlays *o, tlb_error *err)
{
    int count = o->count, S = o->S, G = o->G;
    const int nmaps = o->nmaps;
    if (count < 0) return tlb_fail(err, "%s: negative image count %d", path, count);
    if (count > 0 && (S < 1 || S > 4096 || G < 1 || G > 4096))
        return tlb_fail(err, "%s: image size %d / map size %d out of range 1..4096", path, S, G);
    if (count > 0 && (nmaps < 1 || nmaps > 256))
        return tlb_fail(err, "%s: %d maps per image, expected 1..256", path, nmaps);
    if (count > 0 && (!o->images || !o->maps)) return tlb_fail(err, "%s: no image or map data", path);
    if (count > 4096) return tlb_fail(err, "%s: %d images is too many for one picture", path, count);

    if (count == 0) S = 1, G = 1; /* only the title and "no images" */
    const int up = S >= CELL_TARGET ? 1 : (CELL_TARGET + S / 2) / S, cell = S * up;
    const int slots = 1 + (count > 0 ? nmaps : 1); /* the plain image, then each overlay */
    /* Stacked: a column per image (up to MAX_COLS, then wrap), captions on
     * top, slot labels on the left. Beside: a row per image, slot labels on
     * top, captions on the left. */
    const int beside = o->beside;
    const int cols = beside ? 1 : count < 1 ? 1 : count < MAX_COLS ? count : MAX_COLS;
    const int rows = count < 1 ? 0 : beside ? count : (count + cols - 1) / cols;

    const char *slot_label[257];
    slot_label[0] = "image";
    for (int k = 1; k < slots; k++)
        slot_label[k] = o->map_labels && o->map_labels[k - 1] ? o->map_labels[k - 1] : "attention";
    int cap_scale = 2, any_caption = 0, caption_w = 0, slot_w = 0;
    for (int b = 0; o->captions && b < count; b++)
        if (o->captions[b] && *o->captions[b]) {
            any_caption = 1;
            if (text_width(o->captions[b], 2) > cell) cap_scale = 1;
        }
    for (int b = 0; o->captions && b < count; b++)
        if (o->captions[b] && text_width(o->captions[b], 1) > caption_w) caption_w = text_width(o->captions[b], 1);
    for (int k = 0; k < slots; k++)
        if (text_width(slot_label[k], 1) > slot_w) slot_w = text_width(slot_label[k], 1);
    if (beside) cap_scale = 1;
    int label_w = (beside ? (caption_w < 240 ? caption_w : 240) : slot_w) + 12;
    if (label_w < text_width("attention", 1) + 12) label_w = text_width("attention", 1) + 12;
    const int cap_h = beside ? 14 : any_caption ? 8 * cap_scale + 6 : 0;
    const int block_h = beside ? cell + 6 : cap_h + slots * (cell + 6) + 12;
    const int grid_w = beside ? slots * cell + (slots - 1) * GAP : cols * cell + (cols - 1) * GAP;

    const int has_title = title && *title;
    int title_scale = 2, w = MARGIN + label_w + grid_w + MARGIN;
    const char *bar_text = "attention, min-max per map:";
    const int bar_len = 160, bar_row_w = text_width(bar_text, 1) + 8 + 24 + 4 + bar_len + 4 + 24;
    if (w < bar_row_w + 2 * MARGIN) w = bar_row_w + 2 * MARGIN;
    /* Widen for the title up to MAX_W; past that, a smaller font, then a cut. */
    if (has_title && text_width(title, 2) > w - 2 * MARGIN) {
        if (text_width(title, 2) + 2 * MARGIN <= MAX_W)
            w = text_width(title, 2) + 2 * MARGIN;
        else {
            title_scale = 1;
            if (text_width(title, 1) > w - 2 * MARGIN) w = text_width(title, 1) + 2 * MARGIN;
            if (w > MAX_W) w = MAX_W;
        }
    }
    if (w < MARGIN + label_w + grid_w + MARGIN) w = MARGIN + label_w + grid_w + MARGIN;
    const int top = (has_title ? 12 + 8 * title_scale + 12 : MARGIN) + (beside && count > 0 ? cap_h : 0);
    const int h = top + (rows > 0 ? rows * block_h : 40) + 26;

    canvas c;
    if (canvas_init(&c, w, h, err) != 0) return tlb_fail_prefix(err, "%s", path);
    float *norm = malloc((size_t)(G > 0 ? G : 1) * (G > 0 ? G : 1) * sizeof *norm);
    if (!norm) {
        free(c.px);
        return tlb_fail(err, "%s: out of memory", path);
    }

    char buf[512];
    if (has_title) {
        fit_text(buf, sizeof buf, title, title_scale, w - 2 * MARGIN);
        draw_text_centered(&c, w / 2, 12, buf, title_scale, TEXT);
    }
    /* Labels and grid are centred together; x0 is the grid's left. */
    const int x0 = (w - label_w - grid_w) / 2 + label_w;
    if (count == 0) draw_text_centered(&c, w / 2, top + 16, "no images", 1, MUTED);
    if (beside && count > 0)
        for (int k = 0; k < slots; k++) {
            fit_text(buf, sizeof buf, slot_label[k], 1, cell);
            draw_text_centered(&c, x0 + k * (cell + GAP) + cell / 2, top - cap_h, buf, 1, MUTED);
        }

    for (int b = 0; b < count; b++) {
        const int r = b / cols, col = b % cols;
        const int bx = x0 + col * (cell + GAP), by = top + r * block_h;
        const char *caption = o->captions && o->captions[b] && *o->captions[b] ? o->captions[b] : NULL;
        if (beside && caption) {
            fit_text(buf, sizeof buf, caption, 1, label_w - 12);
            draw_text(&c, x0 - 12 - text_width(buf, 1), by + cell / 2 - 4, buf, 1, TEXT, 0);
        } else if (caption) {
            fit_text(buf, sizeof buf, caption, cap_scale, cell);
            draw_text_centered(&c, bx + cell / 2, by, buf, cap_scale, TEXT);
        }
        const float *img = o->images + (size_t)b * S * S * 3;
        for (int k = 0; k < slots; k++) {
            const int cx = beside ? bx + k * (cell + GAP) : bx;
            const int cy = beside ? by : by + cap_h + k * (cell + 6);
            if (!beside && col == 0)
                draw_text(&c, x0 - 12 - text_width(slot_label[k], 1), cy + cell / 2 - 4, slot_label[k], 1, MUTED, 0);
            if (k == 0) {
                draw_overlay_cell(&c, cx, cy, img, S, up, cell, NULL, G);
                continue;
            }
            /* Normalise the map first: bilinear interpolation commutes with it. */
            const float *m = o->maps + ((size_t)b * nmaps + (k - 1)) * G * G;
            float mn = INFINITY, mx = -INFINITY;
            for (int i = 0; i < G * G; i++)
                if (isfinite(m[i])) mn = fminf(mn, m[i]), mx = fmaxf(mx, m[i]);
            for (int i = 0; i < G * G; i++)
                norm[i] = isfinite(m[i]) && mx > mn ? (m[i] - mn) / (mx - mn) : 0.0f;
            draw_overlay_cell(&c, cx, cy, img, S, up, cell, norm, G);
        }
    }

    /* Colour bar: "attention, min-max per map: low [====] high". */
    const int bar_y = h - 22, tx = (w - bar_row_w) / 2;
    draw_text(&c, tx, bar_y, bar_text, 1, MUTED, 0);
    const int lx = tx + text_width(bar_text, 1) + 8;
    draw_text(&c, lx, bar_y, "low", 1, MUTED, 0);
    const int bar_x = lx + 24 + 4;
    for (int i = 0; i < bar_len; i++) {
        unsigned char col[3];
        plot_inferno((double)i / (bar_len - 1), col);
        fill_rect(&c, bar_x + i, bar_y - 1, 1, 9, col);
    }
    draw_text(&c, bar_x + bar_len + 4, bar_y, "high", 1, MUTED, 0);

    const int rc = write_png_atomic(path, &c, err);
    free(c.px), free(norm);
    return rc;
}

int plot_heatmaps_png(const char *path, const char *title, const float *images, int count, int S,
                      const float *maps, int G, const char *const *captions, tlb_error *err)
{
    const plot_overlays o = {.images = images, .count = count, .S = S, .maps = maps, .nmaps = 1, .G = G,
                             .captions = captions};
    return plot_overlays_png(path, title, &o, err);
}

/* ---- confusion matrix ---- */

int plot_confusion_png(const char *path, const char *title, const long *counts, int n,
                       const char *const *labels, tlb_error *err)
{
    if (n < 1 || n > 256 || !counts) return tlb_fail(err, "%s: confusion matrix of %d classes", path, n);
    enum { CELL = 40 };
    int label_w = 0;
    for (int i = 0; i < n; i++)
        if (labels && labels[i] && text_width(labels[i], 1) > label_w) label_w = text_width(labels[i], 1);
    if (label_w < text_width("99", 1)) label_w = text_width("99", 1);
    const int has_title = title && *title;
    const int top = (has_title ? 12 + 16 + 12 : MARGIN) + 12 + label_w + 8; /* "predicted", vertical labels */
    const int left = MARGIN + 12 + label_w + 8;                               /* "true", row labels */
    const int acc_w = text_width("100.0%", 1) + 16;
    int w = left + n * CELL + 8 + acc_w + MARGIN;
    if (has_title && text_width(title, 2) + 2 * MARGIN > w) w = text_width(title, 2) + 2 * MARGIN;
    const int h = top + n * CELL + MARGIN;
    canvas c;
    if (canvas_init(&c, w, h, err) != 0) return tlb_fail_prefix(err, "%s", path);
    char buf[64];
    if (has_title) {
        char t[512];
        fit_text(t, sizeof t, title, 2, w - 2 * MARGIN);
        draw_text_centered(&c, w / 2, 12, t, 2, TEXT);
    }
    draw_text_centered(&c, left + n * CELL / 2, top - label_w - 8 - 12, "predicted", 1, MUTED);
    draw_text(&c, MARGIN, top + n * CELL / 2 + text_width("true", 1) / 2, "true", 1, MUTED, 1);
    draw_text(&c, left + n * CELL + 8, top - 12, "recall", 1, MUTED, 0);
    for (int i = 0; i < n; i++) {
        const char *name = labels && labels[i] ? labels[i] : NULL;
        if (!name) snprintf(buf, sizeof buf, "%d", i), name = buf;
        draw_text(&c, left - 8 - text_width(name, 1), top + i * CELL + CELL / 2 - 4, name, 1, TEXT, 0);
        draw_text(&c, left + i * CELL + CELL / 2 - 4, top - 8, name, 1, TEXT, 1);
    }
    for (int i = 0; i < n; i++) {
        long total = 0;
        for (int j = 0; j < n; j++) total += counts[(size_t)i * n + j];
        for (int j = 0; j < n; j++) {
            const long k = counts[(size_t)i * n + j];
            const double share = total > 0 ? (double)k / total : 0.0;
            const int x = left + j * CELL, y = top + i * CELL;
            fill_rect(&c, x, y, CELL, CELL, WHITE);
            for (int yy = y; yy < y + CELL; yy++)
                for (int xx = x; xx < x + CELL; xx++) blend(&c, xx, yy, plot_palette[0], share);
            stroke_rect(&c, x, y, CELL + 1, CELL + 1, GRID);
            snprintf(buf, sizeof buf, "%ld", k);
            draw_text_centered(&c, x + CELL / 2, y + CELL / 2 - 4, buf, 1, share > 0.5 ? WHITE : TEXT);
        }
        if (total > 0) snprintf(buf, sizeof buf, "%.1f%%", 100.0 * counts[(size_t)i * n + i] / total);
        else snprintf(buf, sizeof buf, "-");
        draw_text(&c, left + n * CELL + 8, top + i * CELL + CELL / 2 - 4, buf, 1, TEXT, 0);
    }
    stroke_rect(&c, left, top, n * CELL + 1, n * CELL + 1, FRAME);
    const int rc = write_png_atomic(path, &c, err);
    free(c.px);
    return rc;
}

enum { GRID_MARGIN = 16, GRID_GAP = 8, GRID_CELL = 96 };

static int grid_up(int S) { return S >= GRID_CELL ? 1 : (GRID_CELL + S / 2) / S; }

void plot_images_size(int count, int S, int cols, int titled, int captioned, int *w, int *h)
{
    if (cols < 1) cols = 1;
    if (count < 1) count = 1; /* room for "no images" */
    const int cell = S * grid_up(S), rows = (count + cols - 1) / cols;
    const int shown = count < cols ? count : cols;
    *w = 2 * GRID_MARGIN + shown * cell + (shown - 1) * GRID_GAP;
    *h = (titled ? 40 : GRID_MARGIN) + rows * ((captioned ? 12 : 0) + cell + GRID_GAP) - GRID_GAP + GRID_MARGIN;
}

int plot_images_png(const char *path, const char *title, const float *images, int count, int S, int cols,
                    const char *const *captions, tlb_error *err)
{
    if (count < 0 || count > 4096) return tlb_fail(err, "%s: image count %d out of range 0..4096", path, count);
    if (S < 1 || S > 4096) return tlb_fail(err, "%s: image size %d out of range 1..4096", path, S);
    if (count > 0 && !images) return tlb_fail(err, "%s: no image data", path);
    if (cols < 1) cols = 1;
    int any_caption = 0;
    for (int b = 0; captions && b < count; b++) any_caption |= captions[b] && *captions[b];
    const int has_title = title && *title;
    int w, h;
    plot_images_size(count, S, cols, has_title, any_caption, &w, &h);
    canvas c;
    if (canvas_init(&c, w, h, err) != 0) return tlb_fail_prefix(err, "%s", path);
    char buf[512];
    if (has_title) {
        /* The grid sets the width; a long title shrinks, then is cut. */
        const int scale = text_width(title, 2) <= w - 2 * GRID_MARGIN ? 2 : 1;
        fit_text(buf, sizeof buf, title, scale, w - 2 * GRID_MARGIN);
        draw_text_centered(&c, w / 2, 12, buf, scale, TEXT);
    }
    const int top = has_title ? 40 : GRID_MARGIN, up = grid_up(S), cell = S * up;
    const int cap_h = any_caption ? 12 : 0;
    if (count == 0) draw_text_centered(&c, w / 2, top + cell / 2 - 4, "no images", 1, MUTED);
    for (int b = 0; b < count; b++) {
        const int bx = GRID_MARGIN + (b % cols) * (cell + GRID_GAP);
        const int by = top + (b / cols) * (cap_h + cell + GRID_GAP);
        if (captions && captions[b] && *captions[b]) {
            fit_text(buf, sizeof buf, captions[b], 1, cell);
            draw_text_centered(&c, bx + cell / 2, by + 2, buf, 1, TEXT);
        }
        const float *img = images + (size_t)b * S * S * 3;
        for (int y = 0; y < cell; y++)
            for (int x = 0; x < cell; x++) {
                const float *p = img + ((size_t)(y / up) * S + x / up) * 3;
                const unsigned char rgb[3] = {to_byte(p[0]), to_byte(p[1]), to_byte(p[2])};
                fill_rect(&c, bx + x, by + cap_h + y, 1, 1, rgb);
            }
    }
    const int rc = write_png_atomic(path, &c, err);
    free(c.px);
    return rc;
}
