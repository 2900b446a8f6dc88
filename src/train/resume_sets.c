#include "train/resume_sets.h"

#include <string.h>

static int key_index(const char *set, char *key, size_t n)
{
    size_t k = strcspn(set, "=");
    while (k > 0 && set[k - 1] == ' ') k--;
    while (k > 0 && *set == ' ') set++, k--;
    if (k >= n) k = n - 1;
    memcpy(key, set, k);
    key[k] = '\0';
    for (int i = 0; run_config_key_name(i); i++)
        if (strcmp(run_config_key_name(i), key) == 0) return i;
    return -1;
}

int resume_apply_sets(run_config *c, const char *const *sets, int n, int *epochs_was, tlb_error *err)
{
    *epochs_was = 0;
    const int epochs = c->epochs, threads = c->threads;
    for (int i = 0; i < n; i++) {
        run_config next = *c;
        if (run_config_set(&next, sets[i], err) != 0) return -1;
        if (run_config_equal(&next, c)) continue;
        char key[64];
        const int k = key_index(sets[i], key, sizeof key);
        if (run_config_num_runs(&next) > 1)
            return tlb_fail(err, "--set: %s: a resume continues one run: give one value, not a list", key);
        if (strcmp(key, "epochs") == 0) {
            /* The cosine schedule spreads over all the steps: the steps
             * already done would have had other rates. */
            if (c->lr_schedule == LR_COSINE)
                return tlb_fail(err, "--set: epochs: lr_schedule is cosine, whose rates depend on the number of"
                                     " epochs, so the run would not continue what was trained; start a new run"
                                     " with --init-from RUN_DIR");
        } else if (strcmp(key, "threads") == 0) {
            return tlb_fail(err, "--set: threads: the thread count orders the gradient sums, so it is part of the"
                                 " run; a resume runs with the recorded %d", threads);
        } else if (strcmp(key, "out_dir") == 0 || strcmp(key, "name") == 0) {
            return tlb_fail(err, "--set: %s: names the folder of a new run; a resume trains in its own folder", key);
        } else if (k < 0 || run_config_key_hashed(k)) {
            return tlb_fail(err, "--set: %s: would change the numbers of the run being continued (a resume applies"
                                 " epochs, checkpoint_every and data_dir); start a new run with --init-from RUN_DIR",
                            key);
        }
        *c = next;
    }
    if (run_config_validate(c, err) != 0) return -1;
    if (c->epochs != epochs) *epochs_was = epochs;
    return 0;
}
