/* A run's token dataset (sequences.h). */
#include "train/sequences.h"

#include <stdio.h>
#include <string.h>

#include "data/listops.h"
#include "data/lra_image.h"
#include "train/evaluate.h"
#include "util/fs.h"

int sequences_load(token_set sets[DATA_SPLIT_COUNT], cifar10_set *train_set, cifar10_set *test_set,
                   const run_config *c, const char *data_dir, int *missing, tlb_error *err)
{
    if (strcmp(c->dataset, "lra_image") == 0) {
        if (cifar10_load(train_set, test_set, data_dir, err) != 0) {
            *missing = 1;
            return -1;
        }
        for (int k = 0; k < DATA_SPLIT_COUNT; k++) {
            cifar10_view v;
            if (lra_image_split(&v, train_set, test_set, (data_split)k, err) != 0 ||
                lra_image_from_view(&sets[k], &v, err) != 0)
                return -1;
        }
        return 0;
    }
    if (strcmp(c->dataset, "listops") != 0) return tlb_fail(err, "dataset '%s' holds no token sequences", c->dataset);
    char dir[1300];
    if (fs_join(dir, sizeof dir, data_dir, "listops", err) != 0 || fs_mkdir_p(dir, err) != 0) return -1;
    for (int k = 0; k < DATA_SPLIT_COUNT; k++) {
        listops_origin origin;
        if (listops_load(&sets[k], dir, (data_split)k, LISTOPS_DEFAULT_SEED, &origin, err) != 0) return -1;
        if (origin.generated)
            fprintf(stderr, "ListOps %s: %d sequences generated into %s%s%s%s\n", data_split_name((data_split)k),
                    sets[k].count, dir, origin.cache_problem[0] ? " (" : "", origin.cache_problem,
                    origin.cache_problem[0] ? ")" : "");
    }
    return 0;
}

int sequence_source(data_source *out, const token_set *set, const run_config *c, const tlb_model_config *m,
                    int training, tlb_error *err)
{
    const token_loader_config train = {.batch_size = c->batch_size,
                                       .shuffle = c->shuffle == SHUFFLE_ONCE ? LOADER_SHUFFLE_ONCE : LOADER_SHUFFLE_EPOCH,
                                       .drop_last = 1, .limit = c->train_limit, .seed = c->seed, .row_len = m->seq_len};
    const token_loader_config eval = {.batch_size = EVALUATE_BATCH, .shuffle = LOADER_SHUFFLE_NONE,
                                      .limit = c->eval_limit, .row_len = m->seq_len};
    token_loader *l;
    if (token_loader_create(&l, set, training ? &train : &eval, err) != 0) return -1;
    *out = data_source_of_tokens(l);
    return 0;
}
