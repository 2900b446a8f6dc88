/* tlb data fetch|verify [--data-dir DIR]
 * tlb data show CONFIG [--set k=v]... [--out FILE.png] [--data-dir DIR] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/cifar10.h"
#include "data/cifar10_classes.h"
#include "data/fetch.h"
#include "data/loader.h"
#include "train/data_config.h"
#include "train/run_config.h"

/* The first 64 images of training batch 0 of epoch 0, as the model is fed
 * them (the run's augmentation, mixing included), in an 8 x 8 grid. */
static int show(const char *config_path, const char **sets, int nsets, const char *out, const char *data_dir)
{
    run_config c;
    tlb_error err = {0};
    if (run_config_load(&c, config_path, &err) != 0) {
        fprintf(stderr, "tlb data show: %s\n", err.msg);
        return 2;
    }
    for (int i = 0; i < nsets; i++)
        if (run_config_set(&c, sets[i], &err) != 0) {
            fprintf(stderr, "tlb data show: %s\n", err.msg);
            return 2;
        }
    if (run_config_validate(&c, &err) != 0) {
        fprintf(stderr, "tlb data show: %s\n", err.msg);
        return 2;
    }
    char buf[4096];
    if (!data_dir) data_dir = c.data_dir[0] ? c.data_dir : cifar10_default_dir(buf, sizeof buf);
    if (!data_dir) {
        fprintf(stderr, "tlb data show: no data directory: set --data-dir, TLB_DATA_DIR or HOME\n");
        return 2;
    }
    cifar10_set train_set, test_set;
    if (cifar10_load(&train_set, &test_set, data_dir, &err) != 0) {
        fprintf(stderr, "tlb data show: %s; run `tlb data fetch`\n", err.msg);
        return 1;
    }
    int status = 1;
    cifar10_view train, val;
    loader *l = NULL;
    if (cifar10_split(&train, &val, &train_set, c.train_slice, &err) != 0) goto done;
    if (c.train_limit > 0 && c.train_limit < train.count) train.count = c.train_limit;
    loader_config lc = train_loader_config(&c);
    lc.num_threads = 0; /* batches do not depend on it */
    if (train.count < lc.batch_size) lc.batch_size = train.count;
    if (loader_create(&l, &train, &lc, &err) != 0) goto done;
    cifar10_classes classes; /* the data's own names, as every printed class */
    cifar10_classes_load(&classes, data_dir);
    if (train_plot_first_batch(out, l, &c, classes.ptr, &err) != 0) goto done;
    fprintf(stderr, "wrote %s\n", out);
    status = 0;
done:
    if (status) fprintf(stderr, "tlb data show: %s\n", err.msg);
    loader_destroy(l);
    cifar10_free(&train_set);
    cifar10_free(&test_set);
    return status;
}

static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: tlb data fetch [--data-dir DIR]   download CIFAR-10 and write the official .bin files\n"
            "       tlb data verify [--data-dir DIR]  check the six files' sizes and XXH3 hashes\n"
            "       tlb data show CONFIG [--set key=value]... [--out FILE.png] [--data-dir DIR]\n"
            "                                         8x8 grid of the first training batch of epoch 1, as\n"
            "                                         augmented for the model (default augmented.png)\n"
            "DIR defaults to $TLB_DATA_DIR, else $XDG_CACHE_HOME/tlb-c/cifar10, else ~/.cache/tlb-c/cifar10\n");
    return status;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2) return usage(stderr, 2);
    const char *action = argv[1];
    if (!strcmp(action, "-h") || !strcmp(action, "--help")) return usage(stdout, 0);
    if (!strcmp(action, "show")) {
        const char *sets[256], *config = NULL, *out = "augmented.png", *dir = NULL;
        int nsets = 0;
        for (int i = 2; i < argc; i++) {
            if (!strcmp(argv[i], "--set") && i + 1 < argc && nsets < 256) sets[nsets++] = argv[++i];
            else if (!strncmp(argv[i], "--set=", 6) && nsets < 256) sets[nsets++] = argv[i] + 6;
            else if (!strcmp(argv[i], "--out") && i + 1 < argc) out = argv[++i];
            else if (!strncmp(argv[i], "--out=", 6)) out = argv[i] + 6;
            else if (!strcmp(argv[i], "--data-dir") && i + 1 < argc) dir = argv[++i];
            else if (!strncmp(argv[i], "--data-dir=", 11)) dir = argv[i] + 11;
            else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout, 0);
            else if (argv[i][0] != '-' && !config) config = argv[i];
            else {
                fprintf(stderr, "tlb data show: unexpected argument '%s'\n", argv[i]);
                return usage(stderr, 2);
            }
        }
        if (!config) return usage(stderr, 2);
        return show(config, sets, nsets, out, dir);
    }
    if (strcmp(action, "fetch") && strcmp(action, "verify")) {
        fprintf(stderr, "tlb data: unknown action '%s'\n", action);
        return usage(stderr, 2);
    }
    const char *dir = NULL;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--data-dir") && i + 1 < argc) dir = argv[++i];
        else if (!strncmp(argv[i], "--data-dir=", 11)) dir = argv[i] + 11;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) return usage(stdout, 0);
        else {
            fprintf(stderr, "tlb data %s: unexpected argument '%s'\n", action, argv[i]);
            return usage(stderr, 2);
        }
    }
    char buf[4096];
    if (!dir && !(dir = cifar10_default_dir(buf, sizeof buf))) {
        fprintf(stderr, "tlb data: no data directory: set --data-dir, TLB_DATA_DIR or HOME\n");
        return 2;
    }
    tlb_error err = {0};
    if (!strcmp(action, "fetch")) {
        if (cifar10_fetch(dir, &err)) {
            fprintf(stderr, "tlb data fetch: %s\n", err.msg);
            return 1;
        }
        return 0;
    }
    int bad = cifar10_verify_all(dir, 1, &err);
    if (bad) {
        fprintf(stderr, "tlb data verify: %d of %d files bad in %s; run `tlb data fetch`\n", bad, CIFAR10_NUM_FILES,
                dir);
        return 1;
    }
    fprintf(stderr, "all %d CIFAR-10 files verified in %s\n", CIFAR10_NUM_FILES, dir);
    return 0;
}
