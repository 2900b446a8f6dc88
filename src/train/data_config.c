#include "train/data_config.h"

#include <stdio.h>

#include "util/plot.h"

#define SHOW_IMAGES 64
#define SHOW_COLS 8

static const char *class_name(const char *const *names, int y)
{
    return y >= 0 && y < CIFAR10_NUM_CLASSES ? names[y] : "?";
}

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

int train_plot_first_batch(const char *path, loader *l, const run_config *c, const char *const *class_names,
                           tlb_error *err)
{
    loader_start_epoch(l, 0);
    const loader_batch *b = loader_next(l);
    if (!b) return tlb_fail(err, "%s: the training loader has no batch", path);
    /* The rows from 0 this process prepared (all of them unless data parallel). */
    const int ready = b->first == 0 ? b->count : 0;
    const int n = ready < SHOW_IMAGES ? ready : SHOW_IMAGES;
    char text[SHOW_IMAGES][32];
    const char *captions[SHOW_IMAGES];
    for (int i = 0; i < n; i++) {
        /* 14 characters fit a 96 px cell: class names cut to 4 when mixed */
        if (b->lam && b->lam[i] < 1.0f)
            snprintf(text[i], sizeof text[i], "%.4s %.2f %.4s", class_name(class_names, b->y[i]), b->lam[i],
                     class_name(class_names, b->y2[i]));
        else snprintf(text[i], sizeof text[i], "%s", class_name(class_names, b->y[i]));
        captions[i] = text[i];
    }
    char title[256];
    snprintf(title, sizeof title, "%s: training batch 1 of epoch 1, images 1-%d", c->name, n);
    return plot_images_png(path, title, b->x, n, c->model.image_size, SHOW_COLS, captions, err);
}
