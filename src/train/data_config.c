#include "train/data_config.h"

augment_options train_augment_options(const run_config *c)
{
    return (augment_options){.randaugment_n = c->randaugment_n, .randaugment_m = c->randaugment_m,
                             .random_erase = c->random_erase, .mixup_alpha = c->mixup_alpha,
                             .cutmix_alpha = c->cutmix_alpha};
}

loader_config train_loader_config(const run_config *c)
{
    /* One worker thread prepares batches ahead of the step. */
    return (loader_config){.batch_size = c->batch_size, .image_size = c->model.image_size, .train = 1,
                           .shuffle = c->shuffle == SHUFFLE_ONCE ? LOADER_SHUFFLE_ONCE : LOADER_SHUFFLE_EPOCH,
                           .drop_last = 1, .num_threads = 1, .depth = 3, .seed = c->seed,
                           .aug = train_augment_options(c)};
}
