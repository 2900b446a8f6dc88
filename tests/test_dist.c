/* Data-parallel training over MPI (src/train/dist_mpi.c): `mpirun -np 2 tlb
 * train` against single-process runs of the same config and global batch.
 *   - 2 ranks x 1 thread end with the same metrics.csv training losses as 1
 *     process x 1 thread (to 1e-5 relative: a different gradient sum order),
 *     and bit for bit the same checkpoint (parameters, AdamW moments) as 1
 *     process x 2 threads: a rank's rows are the shard's, and 2-rank
 *     MPI_Allreduce sums a + b as the shards' sum does (one micro-batch a step);
 *   - the world size is hashed and recorded; --resume with another checks it;
 *   - SIGTERM to one rank stops every rank after the same step, one checkpoint,
 *     and a 2-rank --resume ends bit for bit where an uninterrupted run does.
 * Skipped (not failed) when this build has no MPI or mpirun is missing. CI
 * runs as root: the OMPI_ALLOW_RUN_AS_ROOT variables and --oversubscribe. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/fetch.h"
#include "train/checkpoint.h"
#include "ops/ops.h"
#include "train/dist.h"
#include "train/numerics.h"
#include "train/run_config.h"
#include "train/trainer.h"
#include "test_helpers.h"


/* Skips the test unless tlb can run data parallel here. */
static void need_mpirun(void)
{
    if (strcmp(dist_backend(), "mpi") != 0) cr_skip_test("built without MPI (make MPI=0 or no OpenMPI)");
    if (system("command -v mpirun >/dev/null 2>&1") != 0) cr_skip_test("mpirun is not installed");
}

/* A tiny model; 4 steps an epoch of 32 images (one micro-batch each). */
static const char *tiny_cfg =
    "image_size: 16\npatch_size: 4\nembed_dim: 16\nchunk_size: 4\nr: 2\nnum_layers: 1\nnum_heads: 1\n"
    "ffn_drop: 0.1\nattn_drop: 0.1\nlearning_rate: 0.003\ntrain_limit: 128\neval_limit: 64\n"
    "batch_size: 32\nmixed_precision: false\n";

static void write_cfg(char *path, size_t n, const char *dir, const char *name, const char *extra)
{
    snprintf(path, n, "%s/%s.cfg", dir, name);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fprintf(fp, "%s%sname: %s\nout_dir: %s/runs\n", tiny_cfg, extra, name, dir);
    fclose(fp);
}

/* The run folder cfg lands in when `sets` (one "k=v" or NULL) is applied. */
static void run_dir_of(const char *cfg, const char *set, char *out, size_t n)
{
    run_config c;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, cfg, &err), 0, "%s", err.msg);
    if (set) cr_assert_eq(run_config_set(&c, set, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    run_config_run_dir(&c, out, n);
}

/* Containers often forbid the cross-process copies (CMA) OpenMPI's shared
 * memory transport uses by default: copy through the shared segment. */
#define MPI_ENV "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none"

/* The mpirun prefix: root allowed, more ranks than cores allowed, no pinning
 * (the machine is shared; one thread per rank). Under make test-sanitize the
 * ranks keep ASan and UBSan but not LeakSanitizer: OpenMPI leaves its
 * startup allocations in components it has unloaded by exit, which no
 * suppression can name; our own leaks are checked by the 1-process tests. */
static const char *MPIRUN = "ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" " MPI_ENV " mpirun --oversubscribe --bind-to none";

/* Runs a shell command line; its exit status, or 1000 + signal. */
static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int sh(const char *fmt, ...)
{
    char cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    const int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

/* metrics.csv's training losses, one per epoch; returns how many. */
static int train_losses(const char *run_dir, double *loss, int max)
{
    char path[1400], line[512];
    snprintf(path, sizeof path, "%s/metrics.csv", run_dir);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "%s: %s", path, strerror(errno));
    int n = 0, epoch;
    while (fgets(line, sizeof line, fp))
        if (n < max && sscanf(line, "%d,%lf", &epoch, &loss[n]) == 2) n++;
    fclose(fp);
    return n;
}

static int same_checkpoint_data(const char *a_dir, const char *b_dir)
{
    size_t na, nb;
    unsigned char *a = test_checkpoint_data(a_dir, &na), *b = test_checkpoint_data(b_dir, &nb);
    const int same = na == nb && memcmp(a, b, na) == 0;
    free(a);
    free(b);
    return same;
}

Test(dist, world_size_is_hashed_only_away_from_1)
{
    run_config c;
    run_config_defaults(&c);
    const uint64_t one = run_config_hash(&c);
    char text[8192];
    run_config_write_canonical(&c, text, sizeof text);
    cr_expect(strstr(text, "world_size: 1\n") != NULL, "config.cfg lacks world_size: %s", text);
    c.world_size = 2;
    cr_expect_neq(run_config_hash(&c), one, "world_size 2 does not change the run hash");
}

/* cfg as a 2-process, 1-thread run resolves it (its run folder follows). */
static void two_rank_config(run_config *c, const char *cfg)
{
    tlb_error err;
    cr_assert_eq(run_config_load(c, cfg, &err), 0, "%s", err.msg);
    c->threads = 1;
    c->world_size = 2;
    cr_assert_eq(run_config_validate(c, &err), 0, "%s", err.msg);
}

Test(dist, two_ranks_match_one_process, .timeout = 300)
{
    need_mpirun();
    test_ensure_cifar10();
    char dir[] = "/tmp/tlb_dist_XXXXXX", cfg[1200], one[1300], two_threads[1300], ranks[1300], log[1300];
    cr_assert_not_null(test_mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, dir, "dp", "epochs: 3\n");
    snprintf(log, sizeof log, "%s/log.txt", dir);
    run_dir_of(cfg, "threads=1", one, sizeof one);
    run_dir_of(cfg, "threads=2", two_threads, sizeof two_threads);
    run_config c;
    tlb_error err;
    two_rank_config(&c, cfg);
    run_config_run_dir(&c, ranks, sizeof ranks);

    cr_assert_eq(sh("TLB_NO_FETCH=1 %s train %s --set threads=1 >%s 2>&1", tlb_bin(), cfg, log), 0, "1 x 1");
    cr_assert_eq(sh("TLB_NO_FETCH=1 %s train %s --set threads=2 >%s 2>&1", tlb_bin(), cfg, log), 0, "1 x 2");
    const int st = sh("TLB_NO_FETCH=1 %s -np 2 %s train %s --set threads=1 >%s 2>&1", MPIRUN, tlb_bin(), cfg, log);
    char out[8192];
    read_text(log, out, sizeof out, NULL);
    cr_assert_eq(st, 0, "mpirun -np 2 exited %d: %s", st, out);
    /* Rank 0 alone prints: one "Epoch 1/3" line. */
    const char *first = strstr(out, "Epoch 1/3");
    cr_expect(first && !strstr(first + 1, "Epoch 1/3"), "not exactly one rank printed: %s", out);

    double a[8], b[8], d[8];
    const int na = train_losses(one, a, 8), nb = train_losses(two_threads, b, 8), nd = train_losses(ranks, d, 8);
    cr_assert_eq(na, 3);
    cr_assert_eq(nb, 3);
    cr_assert_eq(nd, 3, "the 2-rank run's metrics.csv has %d rows", nd);
    for (int e = 0; e < 3; e++) {
        cr_expect_leq(fabs(d[e] - a[e]), 1e-5 * fabs(a[e]), "epoch %d: 2 ranks %.6f, 1 process %.6f", e + 1, d[e], a[e]);
        cr_expect_eq(d[e], b[e], "epoch %d: 2 ranks %.6f, 1 process x 2 threads %.6f", e + 1, d[e], b[e]);
    }
    cr_expect(same_checkpoint_data(ranks, two_threads),
              "2 ranks x 1 thread and 1 process x 2 threads end with different parameters");
    /* A negative control: the 1-thread run sums in another order, and its
     * parameters differ in the last bits. */
    cr_expect(!same_checkpoint_data(ranks, one), "the checkpoint comparison cannot tell sum orders apart");

    /* The world size is part of the run: config.cfg records it, and a resume
     * with another count is refused before anything is written. */
    run_config back;
    cr_assert_eq(train_load_run_config(&back, ranks, &err), 0, "%s", err.msg);
    cr_expect_eq(back.world_size, 2);
    cr_expect_eq(sh("TLB_NO_FETCH=1 %s train --resume %s >%s 2>&1", tlb_bin(), ranks, log), 2);
    read_text(log, out, sizeof out, NULL);
    cr_expect(strstr(out, "world_size") && strstr(out, "mpirun -np 2"), "resume with 1 process: %s", out);
}

/* A config that asks for 2 processes, started as one, is refused. */
Test(dist, world_size_must_match_the_processes)
{
    char dir[] = "/tmp/tlb_dist_ws_XXXXXX", cfg[1200], log[1300], out[4096];
    cr_assert_not_null(test_mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, dir, "ws", "epochs: 1\nworld_size: 2\n");
    snprintf(log, sizeof log, "%s/log.txt", dir);
    cr_expect_eq(sh("TLB_NO_FETCH=1 %s train %s >%s 2>&1", tlb_bin(), cfg, log), 2);
    read_text(log, out, sizeof out, NULL);
    cr_expect(strstr(out, "world_size: 2") != NULL, "message: %s", out);
    char runs[1300];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    struct stat sb;
    cr_expect(stat(runs, &sb) != 0, "a run folder was written");
}

/* The ranks must compute in one precision. Rank 0 under TLB_BF16=always,
 * rank 1 without: where the CPU has AVX512_BF16 but bf16 does not pay (the
 * Intel Xeon of BENCHMARKS.md, session 7) they choose differently and the
 * run stops before training, saying so; elsewhere (no AVX512_BF16, or bf16
 * faster) both choose alike and it trains. Which one applies is this CPU's. */
Test(dist, ranks_must_agree_on_precision, .timeout = 300)
{
    need_mpirun();
    test_ensure_cifar10();
    char dir[] = "/tmp/tlb_dist_prec_XXXXXX", cfg[1200], log[1300], out[8192];
    cr_assert_not_null(test_mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, dir, "prec", "epochs: 1\nthreads: 1\n"); /* its mixed_precision is false: --set */
    snprintf(log, sizeof log, "%s/log.txt", dir);
    const int rc = sh("TLB_NO_FETCH=1 %s -np 1 -x TLB_BF16=always %s train %s --set mixed_precision=true :"
                      " -np 1 %s train %s --set mixed_precision=true >%s 2>&1",
                      MPIRUN, tlb_bin(), cfg, tlb_bin(), cfg, log);
    read_text(log, out, sizeof out, NULL);
    op_table ops;
    tlb_error err;
    char why[200];
    cr_assert_eq(numerics_choose(&ops, NULL, 1, NULL, why, sizeof why, &err), 0, "%s", err.msg);
    const int differ = ops_mixed_precision_supported() && !ops.bf16_dense;
    if (differ) {
        cr_expect_neq(rc, 0, "two precisions must not train together: %s", out);
        cr_expect(strstr(out, "the processes chose different precisions (rank 0: bf16 dense)") != NULL, "%s", out);
    } else {
        cr_expect_eq(rc, 0, "%s", out);
    }
}

/* Starts `mpirun -np 2 tlb train CFG --set threads=1` (stdout to /dev/null,
 * stderr to errfile); returns mpirun's pid. */
static pid_t spawn_mpirun(const char *errfile, const char *cfg)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int out = open("/dev/null", O_WRONLY), e = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || e < 0) _exit(126);
        dup2(out, 1);
        dup2(e, 2);
        setenv("TLB_NO_FETCH", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
        setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
        setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1); /* as in MPI_ENV */
        char asan[1024];
        const char *prev = getenv("ASAN_OPTIONS");
        snprintf(asan, sizeof asan, "%s:detect_leaks=0", prev ? prev : "");
        setenv("ASAN_OPTIONS", asan, 1); /* as in MPIRUN */
        execlp("mpirun", "mpirun", "--oversubscribe", "--bind-to", "none", "-np", "2", tlb_bin(), "train", cfg,
               "--set", "threads=1", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* mpirun on cfg, returned once `path` exists (the test fails after 120 s). */
static pid_t spawn_mpirun_until(const char *errf, const char *cfg, const char *path)
{
    const pid_t mpirun = spawn_mpirun(errf, cfg);
    struct stat sb;
    int appeared = 0;
    for (int i = 0; i < 120000 && !appeared; i++) {
        appeared = stat(path, &sb) == 0;
        if (!appeared) usleep(1000);
    }
    cr_assert(appeared, "no %s", path);
    return mpirun;
}

/* The last of mpirun's child processes (one of the two ranks), or -1. */
static pid_t a_rank_of(pid_t mpirun)
{
    char path[128], buf[256] = "";
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)mpirun, (int)mpirun);
    read_text(path, buf, sizeof buf, NULL);
    pid_t last = -1;
    for (char *p = strtok(buf, " \n"); p; p = strtok(NULL, " \n")) last = (pid_t)atoi(p);
    return last;
}

/* SIGTERM to one rank: every rank stops after the same step (the stop flag
 * is reduced each step), rank 0 writes the one checkpoint, and a 2-rank
 * --resume ends bit for bit where an uninterrupted 2-rank run does. */
Test(dist, signal_to_one_rank_stops_all_and_resumes_bit_exact, .timeout = 300)
{
    need_mpirun();
    test_ensure_cifar10();
    char dir[] = "/tmp/tlb_dist_sig_XXXXXX", ref_dir[] = "/tmp/tlb_dist_ref_XXXXXX";
    char cfg[1200], ref_cfg[1200], errf[1300], ckpt[1500], msg[8192];
    cr_assert_not_null(test_mkdtemp(dir));
    cr_assert_not_null(test_mkdtemp(ref_dir));
    write_cfg(cfg, sizeof cfg, dir, "sig", "epochs: 12\n");
    write_cfg(ref_cfg, sizeof ref_cfg, ref_dir, "sig", "epochs: 12\n");
    run_config c;
    two_rank_config(&c, cfg);
    char run_dir[1300], ref_run[1300];
    run_config_run_dir(&c, run_dir, sizeof run_dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", run_dir);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);

    const pid_t mpirun = spawn_mpirun_until(errf, cfg, ckpt);
    const pid_t rank = a_rank_of(mpirun);
    cr_assert_gt(rank, 0, "no rank process under mpirun %d", (int)mpirun);
    kill(rank, SIGTERM);
    int st;
    cr_assert_eq(waitpid(mpirun, &st, 0), mpirun);
    read_text(errf, msg, sizeof msg, NULL);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGTERM, "mpirun status %d; stderr: %s", st, msg);
    const char *stop = strstr(msg, "stopped after step");
    cr_assert_not_null(stop, "no stop message: %s", msg);
    cr_expect_null(strstr(stop + 1, "stopped after step"), "more than one process reported the stop: %s", msg);
    char expect[1500];
    snprintf(expect, sizeof expect, "resume with: mpirun -np 2 tlb train --resume %s\n", run_dir);
    cr_expect(strstr(msg, expect) != NULL, "stderr: %s", msg);

    const int resumed = sh("TLB_NO_FETCH=1 %s -np 2 %s train --resume %s >/dev/null 2>%s", MPIRUN, tlb_bin(),
                           run_dir, errf);
    read_text(errf, msg, sizeof msg, NULL);
    cr_assert_eq(resumed, 0, "resume: %s", msg);
    cr_assert_eq(sh("TLB_NO_FETCH=1 %s -np 2 %s train %s --set threads=1 >/dev/null 2>%s", MPIRUN, tlb_bin(),
                    ref_cfg, errf), 0, "the uninterrupted run failed");
    snprintf(ref_run, sizeof ref_run, "%s/runs/%s", ref_dir, strrchr(run_dir, '/') + 1);
    cr_expect(same_checkpoint_data(run_dir, ref_run), "the resumed 2-rank run ended elsewhere than an uninterrupted one");
}

/* SIGUSR1 to mpirun itself: mpirun forwards it to every rank (SIGINT and
 * SIGTERM it follows with SIGKILL within a second), and the run stops with
 * a checkpoint, status 128 + SIGUSR1. */
Test(dist, sigusr1_to_mpirun_stops_with_a_checkpoint, .timeout = 300)
{
    need_mpirun();
    test_ensure_cifar10();
    char dir[] = "/tmp/tlb_dist_usr1_XXXXXX", cfg[1200], errf[1300], ckpt[1500], msg[8192];
    cr_assert_not_null(test_mkdtemp(dir));
    write_cfg(cfg, sizeof cfg, dir, "usr1", "epochs: 40\n");
    run_config c;
    tlb_error err;
    two_rank_config(&c, cfg);
    char run_dir[1300];
    run_config_run_dir(&c, run_dir, sizeof run_dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", run_dir);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
    const pid_t mpirun = spawn_mpirun_until(errf, cfg, ckpt);
    kill(mpirun, SIGUSR1);
    int st;
    cr_assert_eq(waitpid(mpirun, &st, 0), mpirun);
    read_text(errf, msg, sizeof msg, NULL);
    cr_expect(WIFEXITED(st) && WEXITSTATUS(st) == 128 + SIGUSR1, "mpirun status %d; stderr: %s", st, msg);
    cr_expect(strstr(msg, "stopped after step") != NULL, "stderr: %s", msg);
    train_position pos = {.step = 0};
    tlb_model m;
    cr_assert_eq(model_create(&m, &c.model, &err), 0, "%s", err.msg);
    const size_t n = model_num_params(&m);
    float *am = calloc(n, sizeof(float)), *av = calloc(n, sizeof(float));
    cr_assert_eq(checkpoint_load(ckpt, &m, am, av, &pos, run_config_hash(&c), NULL, &err), 0, "%s", err.msg);
    cr_expect(pos.epoch < 40 && pos.batch_in_epoch > 0, "no stop checkpoint (epoch %d, batch %d)", pos.epoch,
              pos.batch_in_epoch);
    free(am);
    free(av);
    model_destroy(&m);
}
