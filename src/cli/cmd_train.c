/* tlb train CONFIG [--set key=value]... [--run I | --list]
 * tlb train --resume RUN_DIR [--set key=value]... [--accept-numerics]
 * tlb report --out DIR RUN_DIR...  (a sweep's results table from finished runs)
 *
 * --list prints a sweep's runs, one "I<TAB>RUN_DIR" line each, and trains
 * nothing; --run I trains run I (0-based) of it alone: what a Slurm array
 * task or a GNU parallel job runs (experiments/sweep.sh). A sweep started
 * again skips its finished runs and resumes its interrupted ones. */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/commands.h"
#include "data/fetch.h"
#include "train/dist.h"
#include "train/init_from.h"
#include "train/resume_sets.h"
#include "train/run_files.h"
#include "train/sweep_report.h"
#include "train/trainer.h"

static volatile sig_atomic_t stop_signal = 0;
/* Signals seen. A process-directed signal may run its handler in any thread
 * (loader, OpenMP), so two can be handled at once: the atomic count, not a
 * test of stop_signal, decides which one is the second. */
static atomic_int signals_seen;
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "the signal handler needs a lock-free atomic int");

static void on_signal(int signo)
{
    if (atomic_fetch_add(&signals_seen, 1) > 0) _exit(128 + signo); /* a second signal: stop now */
    stop_signal = signo;
}

static int usage(FILE *out)
{
    fprintf(out, "usage: tlb train CONFIG [--set key=value]... [--init-from RUN_DIR] [--run I | --list]\n"
                 "       tlb train --resume RUN_DIR [--set key=value]... [--accept-numerics]\n"
                 "A resume applies only --set epochs (constant learning rate), checkpoint_every and data_dir.\n");
    return out == stdout ? 0 : 2;
}

/* An error line; a process other than rank 0 names itself. */
static void print_error(const tlb_error *err)
{
    if (!err->msg[0]) return; /* another process reports it */
    if (dist_rank() > 0) fprintf(stderr, "tlb train: rank %d: %s\n", dist_rank(), err->msg);
    else fprintf(stderr, "tlb train: %s\n", err->msg);
}

/* train_run, and when it reports CIFAR-10 missing or invalid, fetch it and
 * run again (unless TLB_NO_FETCH is set: tests, offline machines). */
static int train_run_fetching(const run_config *run, const train_options *opt, train_summary *summary,
                              tlb_error *err)
{
    int status = train_run(run, opt, summary, err);
    if (status != 1 || !summary->data_missing) return status;
    const char *no_fetch = getenv("TLB_NO_FETCH");
    if (no_fetch && strcmp(no_fetch, "0") != 0) {
        if (err->msg[0]) tlb_fail_prefix(err, "CIFAR-10 is missing or invalid and TLB_NO_FETCH is set");
        return 1;
    }
    /* Ranks sharing a machine would download into one folder at once. */
    if (dist_size() > 1) {
        if (err->msg[0])
            tlb_fail_prefix(err, "CIFAR-10 is missing or invalid; a data-parallel run does not fetch it:"
                                 " run `tlb data fetch` on every machine first");
        return 1;
    }
    fprintf(stderr, "CIFAR-10 is missing or invalid (%s): fetching it\n", err->msg);
    char data_dir[sizeof summary->data_dir];
    snprintf(data_dir, sizeof data_dir, "%s", summary->data_dir);
    if (cifar10_fetch(data_dir, err) != 0) return 1;
    return train_run(run, opt, summary, err);
}

static int train_command(int argc, char **argv);

/* Under mpirun every process runs this; each one reads the config itself. */
int cmd_train(int argc, char **argv)
{
    tlb_error err;
    if (dist_init(&argc, &argv, &err) != 0) {
        fprintf(stderr, "tlb train: %s\n", err.msg);
        return 2;
    }
    const int status = train_command(argc, argv);
    dist_finalize();
    return status;
}

static int train_command(int argc, char **argv)
{
    const char *config_path = NULL, *resume = NULL, *only = NULL, *init_from = NULL;
    const char *sets[256];
    int nsets = 0, accept_numerics = 0, list = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--set") == 0 && i + 1 < argc && nsets < 256) sets[nsets++] = argv[++i];
        else if (strncmp(argv[i], "--set=", 6) == 0 && nsets < 256) sets[nsets++] = argv[i] + 6;
        else if (strcmp(argv[i], "--resume") == 0 && i + 1 < argc) resume = argv[++i];
        else if (strcmp(argv[i], "--init-from") == 0 && i + 1 < argc) init_from = argv[++i];
        else if (strcmp(argv[i], "--accept-numerics") == 0) accept_numerics = 1;
        else if (strcmp(argv[i], "--run") == 0 && i + 1 < argc) only = argv[++i];
        else if (strcmp(argv[i], "--list") == 0) list = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return usage(stdout);
        else if (strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "--resume") == 0 || strcmp(argv[i], "--run") == 0 ||
                 strcmp(argv[i], "--init-from") == 0) {
            fprintf(stderr, "tlb train: %s: the value is missing\n", argv[i]);
            return usage(stderr);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "tlb train: unknown option '%s'\n", argv[i]);
            return usage(stderr);
        } else if (!config_path) config_path = argv[i];
        else return usage(stderr);
    }
    if (!config_path == !resume || (accept_numerics && !resume) || ((only || list) && resume) || (only && list) ||
        (init_from && resume))
        return usage(stderr);
    /* --init-from RUN is init_from=RUN, after the other sets. */
    char init_set[1400];
    if (init_from) {
        if (snprintf(init_set, sizeof init_set, "init_from=%s", init_from) >= (int)sizeof init_set || nsets == 256) {
            fprintf(stderr, "tlb train: --init-from: path too long\n");
            return 2;
        }
        sets[nsets++] = init_set;
    }

    tlb_error err;
    run_config config;
    int epochs_was = 0;
    if (resume) {
        if (train_load_run_config(&config, resume, &err) != 0) {
            if (dist_rank() == 0) fprintf(stderr, "tlb train: %s\n", err.msg);
            return 2;
        }
        /* Applied when it keeps what was trained, else refused: never ignored. */
        if (resume_apply_sets(&config, sets, nsets, &epochs_was, &err) != 0) {
            if (dist_rank() == 0) fprintf(stderr, "tlb train: %s: %s\n", resume, err.msg);
            return 2;
        }
    } else {
        if (run_config_load(&config, config_path, &err) != 0) {
            if (dist_rank() == 0) fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
        for (int i = 0; i < nsets; i++)
            if (run_config_set(&config, sets[i], &err) != 0) {
                if (dist_rank() == 0) fprintf(stderr, "%s\n", err.msg);
                return 2;
            }
        if (run_config_validate(&config, &err) != 0) {
            if (dist_rank() == 0) fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
        train_resolve_threads(&config); /* the sweep folder's hash as the runs' */
        if (init_from_resolve(&config, &err) != 0) {
            if (dist_rank() == 0) fprintf(stderr, "tlb train: %s\n", err.msg);
            return 2;
        }
        if (train_resolve_world(&config, NULL, &err) != 0) {
            if (dist_rank() == 0) fprintf(stderr, "%s\n", err.msg);
            return 2;
        }
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* mpirun forwards SIGUSR1 to every rank without killing them (it follows
     * SIGINT/SIGTERM with SIGKILL after odls_base_sigkill_timeout, 1 s), and
     * Slurm sends it ahead of a time limit with --signal=USR1@SECONDS. */
    sigaction(SIGUSR1, &sa, NULL);

    const int runs = run_config_num_runs(&config);
    if (list) {
        for (int i = 0; i < runs && dist_rank() == 0; i++) {
            run_config run;
            char dir[1400];
            run_config_expand(&config, i, &run);
            run_config_run_dir(&run, dir, sizeof dir);
            printf("%d\t%s\n", i, dir);
        }
        return 0;
    }
    int first = 0, last = runs - 1;
    if (only) {
        char *end;
        errno = 0;
        const long i = strtol(only, &end, 10);
        if (errno || *end || end == only || i < 0 || i >= runs) {
            if (dist_rank() == 0) fprintf(stderr, "tlb train: --run: '%.40s' is not a run index in [0, %d]\n", only, runs - 1);
            return 2;
        }
        first = last = (int)i;
    }
    char **dirs = calloc((size_t)runs, sizeof *dirs);
    if (!dirs) {
        fprintf(stderr, "tlb train: out of memory for %d runs\n", runs);
        return 1;
    }
    int status = 0;
    for (int i = first; i <= last && status == 0; i++) {
        run_config run;
        run_config_expand(&config, i, &run);
        /* A sweep started again goes on where it stopped: a run folder with a
         * checkpoint is resumed (train_run says when it is finished). */
        char dir[1400], ckpt[1500];
        const char *resume_dir = resume;
        if (runs > 1) {
            run_config_run_dir(&run, dir, sizeof dir);
            snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", dir);
            if (access(ckpt, F_OK) == 0) resume_dir = dir;
            if (dist_rank() == 0)
                printf("== sweep run %d/%d: %s%s\n", i + 1, runs, run.name, resume_dir ? " (resuming)" : "");
        }
        train_options opt = {resume_dir, &stop_signal, 0, accept_numerics, epochs_was, tlb_build()};
        train_summary summary;
        status = train_run_fetching(&run, &opt, &summary, &err);
        if (status == 1 || status == 2) print_error(&err);
        if (!(dirs[i] = strdup(summary.run_dir)) && status == 0) {
            fprintf(stderr, "tlb train: out of memory\n");
            status = 1;
        }
    }
    if (status == 0 && runs > 1 && !only && dist_rank() == 0) {
        char out[1400];
        char hash[32];
        snprintf(hash, sizeof hash, "%016llx", (unsigned long long)run_config_hash(&config));
        snprintf(out, sizeof out, "%s/%s-sweep-%s", config.out_dir, config.name, hash);
        if (mkdir(out, 0755) != 0 && errno != EEXIST) {
            fprintf(stderr, "tlb train: %s: %s\n", out, strerror(errno));
            status = 1;
        } else if (sweep_report(out, dirs, runs, &err) != 0) {
            fprintf(stderr, "tlb train: %s\n", err.msg);
            status = 1;
        } else {
            printf("sweep results: %s/results.md\n", out);
        }
    }
    for (int i = 0; i < runs; i++) free(dirs[i]);
    free(dirs);
    return status;
}

int cmd_report(int argc, char **argv)
{
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("usage: tlb report --out DIR RUN_DIR...\n");
        return 0;
    }
    if (argc < 4 || strcmp(argv[1], "--out") != 0) {
        fprintf(stderr, "usage: tlb report --out DIR RUN_DIR...\n");
        return 2;
    }
    tlb_error err;
    if (mkdir(argv[2], 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "tlb report: %s: %s\n", argv[2], strerror(errno));
        return 2;
    }
    const int rc = sweep_report(argv[2], argv + 3, argc - 3, &err);
    if (rc != 0) {
        fprintf(stderr, "tlb report: %s\n", err.msg);
        return rc == -2 ? 2 : 1;
    }
    printf("%s/results.csv, runs.csv, results.md, results.png\n", argv[2]);
    return 0;
}
