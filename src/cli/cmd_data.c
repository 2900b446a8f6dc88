/* tlb data fetch|verify [--data-dir DIR] */
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "data/cifar10.h"
#include "data/fetch.h"

static int usage(FILE *out, int status)
{
    fprintf(out,
            "usage: tlb data fetch [--data-dir DIR]   download CIFAR-10 and write the official .bin files\n"
            "       tlb data verify [--data-dir DIR]  check the six files' sizes and XXH3 hashes\n"
            "DIR defaults to $TLB_DATA_DIR, else $XDG_CACHE_HOME/tlb-c/cifar10, else ~/.cache/tlb-c/cifar10\n");
    return status;
}

int cmd_data(int argc, char **argv)
{
    if (argc < 2) return usage(stderr, 2);
    const char *action = argv[1];
    if (!strcmp(action, "-h") || !strcmp(action, "--help")) return usage(stdout, 0);
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
    tlb_error err = {{0}};
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
