/* Small PNG plots for run reports: line charts (loss/accuracy curves, sweep
 * results) and attention heat maps. Drawn in memory with an embedded 5x7
 * bitmap font and written with libpng, atomically (tmp file + rename). */
#ifndef TLB_PLOT_H
#define TLB_PLOT_H

#include "util/error.h"

/* One curve. x may be NULL (then x = 0, 1, ..., n-1); label may be NULL (no
 * legend entry). Points with a non-finite x or y are skipped; a non-finite y
 * breaks the line. Points are joined in increasing x (ties keep their order),
 * so a sweep's results need not be sorted. */
typedef struct {
    const char *label;
    const double *x, *y;
    int n;
} plot_series;

/* Words for a categorical x axis: ticks at x = 0, 1, ..., count - 1 carry
 * names[0..count-1] instead of numbers (the limits are -0.5, count - 0.5). */
typedef struct {
    const char *const *names;
    int count;
} plot_categories;

/* Series colours, in order (cycled past PLOT_NUM_COLORS); all chromatic, so
 * they never equal the greys of the frame, grid and text. */
#define PLOT_NUM_COLORS 8
extern const unsigned char plot_palette[PLOT_NUM_COLORS][3];

/* Inferno colour map at t in [0,1] (clamped), as 8-bit RGB. */
void plot_inferno(double t, unsigned char rgb[3]);

/* A 640x420 RGB chart on white: title, framed axes with nice round ticks,
 * light grid, axis labels, each series as a 2 px line with markers at its
 * points (omitted past 60 points), and a legend in the emptiest corner.
 * Empty input (nseries == 0, n == 0, all NaN) still gives framed axes with
 * "no data". Returns 0, or -1 with err naming the path and the reason. */
int plot_lines_png(const char *path, const char *title, const char *xlabel, const char *ylabel,
                   const plot_series *series, int nseries, tlb_error *err);

/* The same with error bars and, when xcats is not NULL, a categorical x
 * axis (points not joined: plot_line_options). errbars may be NULL, else errbars[k] (may be NULL) holds series k's
 * half-lengths: a capped vertical line y +- errbars[k][i] in the series'
 * colour, inside the y limits (none where the value is not > 0). */
int plot_lines_png_ex(const char *path, const char *title, const char *xlabel, const char *ylabel,
                      const plot_series *series, int nseries, const double *const *errbars,
                      const plot_categories *xcats, tlb_error *err);

/* What plot_lines_png_opts adds to a chart (zero = nothing). */
typedef struct {
    const double *const *errbars;  /* as in plot_lines_png_ex */
    /* Words on the x axis: each point is drawn with its bar, never joined
     * to the next (no order runs between words). */
    const plot_categories *xcats;
    int y_from_zero;               /* the y axis includes 0 (accuracies: no magnified differences) */
    double reference_y;            /* > 0: a dashed grey line at this y (chance accuracy), in the legend */
    const char *reference_label;   /* its legend entry, e.g. "chance" */
} plot_line_options;

int plot_lines_png_opts(const char *path, const char *title, const char *xlabel, const char *ylabel,
                        const plot_series *series, int nseries, const plot_line_options *o, tlb_error *err);

/* images: [count, S, S, 3] floats in [0,1] (clamped), channels last.
 * maps:   [count, G, G] attention scores, any range, row-major (row = y).
 * One PNG with a column per image (up to 8 per row): the caption (captions
 * may be NULL, or hold NULL entries), the image upsampled by nearest
 * neighbour to about 128 px, and below it the same image with the map
 * overlaid: bilinear upsampling, min-max normalised per image, inferno
 * colours at alpha 0.5. A colour bar (low..high) sits at the bottom. */
int plot_heatmaps_png(const char *path, const char *title, const float *images, int count, int S,
                      const float *maps, int G, const char *const *captions, tlb_error *err);

/* Several maps per image (e.g. the attention of each slow-state row and
 * their max), each drawn as its own overlay the way plot_heatmaps_png
 * draws one. */
typedef struct {
    const float *images;            /* [count, S, S, 3] */
    int count, S;
    const float *maps;              /* [count, nmaps, G, G] */
    int nmaps, G;
    const char *const *map_labels;  /* nmaps labels of the overlays (NULL: "attention") */
    const char *const *captions;    /* count captions (may be NULL) */
    int beside;                     /* 0: a column per image, the image above its overlays;
                                       1: a row per image, the image left of its overlays */
} plot_overlays;
int plot_overlays_png(const char *path, const char *title, const plot_overlays *o, tlb_error *err);

/* A confusion matrix: counts[n][n] (row = true class, column = predicted),
 * each cell shaded by its share of its row, the count printed in it; class
 * labels on both axes; row totals and per-class accuracy at the right. */
int plot_confusion_png(const char *path, const char *title, const long *counts, int n,
                       const char *const *labels, tlb_error *err);

/* images: [count, S, S, 3] floats in [0,1] (clamped), channels last.
 * One PNG: the title (if any) on top, then the images in rows of `cols`,
 * each upsampled by nearest neighbour by up = max(1, round(96 / S)) with
 * its caption (if any) above it, in the 5x7 font cut to the cell's width.
 * plot_images_size gives the picture's size: with cell = S * up,
 * k = min(count, cols) images a row and rows = ceil(count / cols),
 *   w = 32 + k * cell + (k - 1) * 8
 *   h = top + rows * (cap + cell + 8) - 8 + 16,
 * top = 40 with a title else 16, cap = 12 with any caption else 0
 * (count 0 is laid out as one empty cell reading "no images"). */
void plot_images_size(int count, int S, int cols, int titled, int captioned, int *w, int *h);
int plot_images_png(const char *path, const char *title, const float *images, int count, int S, int cols,
                    const char *const *captions, tlb_error *err);


#endif
