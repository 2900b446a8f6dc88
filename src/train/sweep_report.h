/* Gathers finished runs (their config.cfg and summary.json) into a results
 * table and a plot, in out_dir. Used at the end of a sweep and by the sweep
 * scripts (tlb report).
 *
 * The swept axes are the result-affecting keys whose values differ between
 * the runs; `seed` is not an axis but the replicate: runs that differ only
 * in their seed form one grid point, reported as the mean and the sample
 * standard deviation (n - 1) over its seeds.
 *   results.csv  one row per grid point: the axes, n, the seeds, and mean,
 *                sd, min and max of every metric (summary.json numbers:
 *                accuracies, losses, images/s, and any state_* measure)
 *   runs.csv     one row per run, the same columns without the statistics
 *   results.md   the grid-point table, mean +- sd
 *   results.png  test accuracy against one axis (the one with the most
 *                values, numbers before words), one line per combination of
 *                the other axes, error bars = sd where there are seeds */
/* A run counts once: a folder given twice is read once, and two folders
 * with the same config (seed included) are refused. out_dir is locked like
 * a run folder (run_lock.h) while the report is written, so two reports
 * into one folder never mix their files: the second is refused. */
#ifndef TLB_SWEEP_REPORT_H
#define TLB_SWEEP_REPORT_H

#include "util/error.h"

/* 0, or -2 where the runs given cannot be reported (bad input: a folder
 * that is not a readable run, a damaged summary.json, two folders of one
 * config, too many axes; out of memory while reading them counts here
 * too), -1 where the report could not be written (out_dir in use, a write
 * failed). */
int sweep_report(const char *out_dir, char *const *run_dirs, int count, tlb_error *err);

/* The plot's data (for tests): line k has n points (x, y = mean test
 * accuracy, err = sd or 0). With words on the x axis, x is the word's index
 * (plus a small offset per line, so error bars do not overlap) and
 * xnames[0..nx-1] hold the words. */
#define SWEEP_PLOT_MAX_LINES 32
#define SWEEP_PLOT_MAX_POINTS 64
typedef struct {
    char xlabel[64];
    int categorical, nx;
    char xnames[SWEEP_PLOT_MAX_POINTS][32];
    int nlines;
    double chance;  /* 1 / num_classes: the plot's reference line */
    struct {
        char label[160];
        int n;
        int seeds_min, seeds_max; /* runs (seeds) per point, for the legend's n */
        double x[SWEEP_PLOT_MAX_POINTS], y[SWEEP_PLOT_MAX_POINTS], err[SWEEP_PLOT_MAX_POINTS];
    } lines[SWEEP_PLOT_MAX_LINES];
} sweep_plot;

/* Loads the runs and computes what results.png shows. */
int sweep_report_plot_data(char *const *run_dirs, int count, sweep_plot *plot, tlb_error *err);

#endif
