/* Gathers the summary.json of finished runs into one results table
 * (results.csv, results.md) and a plot of test accuracy against each swept
 * value (results.png), in out_dir. Used at the end of a sweep and by the
 * sweep scripts (tlb report). */
#ifndef TLB_SWEEP_REPORT_H
#define TLB_SWEEP_REPORT_H

#include "util/error.h"

int sweep_report(const char *out_dir, char *const *run_dirs, int count, tlb_error *err);

#endif
