/* --set on `tlb train --resume`: a resume continues the run as it was
 * trained, so it applies only keys that do not change the numbers of what
 * was done (epochs, to extend or shorten a constant-rate run; the unhashed
 * checkpoint_every and data_dir) and refuses every other change with the
 * reason. A set that changes nothing is accepted. */
#ifndef TLB_RESUME_SETS_H
#define TLB_RESUME_SETS_H

#include "train/run_config.h"

/* Applies sets[0..n) to c (a run folder's config.cfg, validated) and
 * validates the result. *epochs_was gets c's epochs before, when a set
 * changed them, else 0. Errors read "--set: key: problem". */
int resume_apply_sets(run_config *c, const char *const *sets, int n, int *epochs_was, tlb_error *err);

#endif
