/* bench/ab.sh's runner: loads each build's shared object (step_entry.c
 * linked with that build's library; RTLD_LOCAL and DEEPBIND, so each keeps
 * its own symbols), then times one micro-batch of each in turn, ROUNDS times:
 * a slow spell of a shared machine hits every build alike, which timing the
 * builds one after another cannot promise (on the 2-core VMs here a step's
 * time moved 20% within minutes). Prints each build's min and median. */
#define _POSIX_C_SOURCE 200112L /* setenv */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#define MAX_BUILDS 4
#define MAX_ROUNDS 200

static int by_value(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 4 || argc - 3 > MAX_BUILDS) {
        fprintf(stderr, "usage: ab_main ROUNDS MICRO_BATCH BUILD.so... (1 to %d builds)\n", MAX_BUILDS);
        return 2;
    }
    const int rounds = atoi(argv[1]), mb = atoi(argv[2]), n = argc - 3;
    if (rounds < 1 || rounds > MAX_ROUNDS || mb < 1) {
        fprintf(stderr, "ab_main: ROUNDS must be 1..%d and MICRO_BATCH positive\n", MAX_ROUNDS);
        return 2;
    }
    double (*step[MAX_BUILDS])(void);
    int rows[MAX_BUILDS];
    static double t[MAX_BUILDS][MAX_ROUNDS];
    for (int i = 0; i < n; i++) {
        void *h = dlopen(argv[3 + i], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
        if (!h) {
            fprintf(stderr, "ab_main: %s\n", dlerror());
            return 2;
        }
        int (*setup)(int) = (int (*)(int))dlsym(h, "ab_setup");
        step[i] = (double (*)(void))dlsym(h, "ab_step");
        if (!setup || !step[i]) {
            fprintf(stderr, "ab_main: %s lacks ab_setup or ab_step\n", argv[3 + i]);
            return 2;
        }
        setenv("AB_SIDE", i == 0 ? "ref" : "new", 1); /* step_entry.c's per-side settings */
        const char *own = getenv(i == 0 ? "AB_REF_MB" : "AB_NEW_MB"); /* a side's own micro-batch */
        rows[i] = own && atoi(own) > 0 ? atoi(own) : mb;
        const int e = setup(rows[i]);
        if (e != 0) {
            fprintf(stderr, "ab_main: %s: set-up stage %d failed\n", argv[3 + i], e);
            return 1;
        }
        step[i](); /* warm-up: first touch of the arena */
    }
    for (int r = 0; r < rounds; r++)
        for (int i = 0; i < n; i++) t[i][r] = step[i]();
    /* Each round's ratio to the first build, the two steps taken back to
     * back: host noise slower than a step cancels in it. */
    static double paired[MAX_BUILDS][MAX_ROUNDS];
    for (int i = 1; i < n; i++)
        for (int r = 0; r < rounds; r++) paired[i][r] = t[i][r] / rows[i] / (t[0][r] / rows[0]);
    for (int i = 0; i < n; i++) {
        qsort(t[i], rounds, sizeof(double), by_value);
        if (i > 0) qsort(paired[i], rounds, sizeof(double), by_value);
        printf("%-40s %s %d: min %.4f s, median %.4f s (%d rounds)\n", argv[3 + i],
               getenv("AB_INFER") ? "inference, batch" : "micro-batch forward+backward,", rows[i], t[i][0], t[i][rounds / 2], rounds);
    }
    for (int i = 1; i < n; i++) /* per image, where the sides' micro-batches differ */
        printf("%s / %s%s: min %.3fx, median %.3fx; paired (per round): median %.3fx, quartiles %.3f-%.3fx\n",
               argv[3 + i], argv[3], rows[i] != rows[0] ? " (time per image)" : "",
               t[i][0] / rows[i] / (t[0][0] / rows[0]), t[i][rounds / 2] / rows[i] / (t[0][rounds / 2] / rows[0]),
               paired[i][rounds / 2], paired[i][rounds / 4], paired[i][(3 * rounds) / 4]);
    return 0;
}
