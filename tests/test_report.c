/* tlb report on synthetic runs: folders holding only a config.cfg and a
 * summary.json with chosen numbers, so the table's means and spreads and
 * the plot's lines are known exactly. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <fcntl.h>

#include "test_helpers.h"
#include "train/run_config.h"
#include "train/sweep_report.h"

static char tmpdir[256];

/* A fresh folder per test, removed when the test's process exits. */
static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tlb_report_test_XXXXXX");
    cr_assert_not_null(test_mkdtemp(tmpdir));
}

TestSuite(report, .init = make_tmpdir);

static char *dirs[64];
static int ndirs;

/* A finished run of the tiny config with `sets` applied ("k=v;k=v") and
 * these results; extra is appended to summary.json's members. */
static void fake_run(const char *sets, double val_acc, double test_acc, const char *extra)
{
    run_config c;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, "experiments/tiny_smoke.cfg", &err), 0, "%s", err.msg);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", sets);
    for (char *s = strtok(buf, ";"); s; s = strtok(NULL, ";"))
        cr_assert_eq(run_config_set(&c, s, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    char *dir = malloc(512);
    snprintf(dir, 512, "%s/run%02d", tmpdir, ndirs);
    dirs[ndirs++] = dir;
    char path[600];
    snprintf(path, sizeof path, "mkdir -p '%s'", dir);
    cr_assert_eq(system(path), 0);
    char text[8192];
    run_config_write_canonical(&c, text, sizeof text);
    snprintf(path, sizeof path, "%s/config.cfg", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/summary.json", dir);
    f = fopen(path, "w");
    fprintf(f, "{\"epochs\": 1, \"validation_accuracy\": %.17g, \"test_accuracy\": %.17g, \"test_loss\": 2.0,"
               " \"validation_loss\": 2.5, \"wall_seconds\": 3, \"train_images_per_second\": 100,"
               " \"parameters\": 1234%s%s}\n",
            val_acc, test_acc, extra ? ", " : "", extra ? extra : "");
    fclose(f);
}

static void free_runs(void)
{
    for (int i = 0; i < ndirs; i++) free(dirs[i]);
    ndirs = 0;
}

static char *slurp(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* The 2x2 grid a new user sweeps (r x chunk_size), given in a shuffled
 * order: one line per chunk_size against r, not one zig-zag per axis. */
Test(report, grid_gives_one_line_per_value_of_the_other_axis)
{
    fake_run("r=2;chunk_size=8", 0.4, 0.40, NULL);
    fake_run("r=1;chunk_size=4", 0.1, 0.10, NULL);
    fake_run("r=2;chunk_size=4", 0.3, 0.30, NULL);
    fake_run("r=1;chunk_size=8", 0.2, 0.20, NULL);
    sweep_plot *p = malloc(sizeof *p);
    tlb_error err;
    cr_assert_eq(sweep_report_plot_data(dirs, ndirs, p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(p->xlabel, "r");
    cr_assert_eq(p->categorical, 0);
    cr_assert_eq(p->nlines, 2);
    cr_assert_str_eq(p->lines[0].label, "chunk_size=4");
    cr_assert_str_eq(p->lines[1].label, "chunk_size=8");
    for (int l = 0; l < 2; l++) {
        cr_assert_eq(p->lines[l].n, 2);
        cr_assert_eq(p->lines[l].x[0], 1);
        cr_assert_eq(p->lines[l].x[1], 2);
        cr_assert_eq(p->lines[l].err[0], 0, "one seed: no error bar");
    }
    cr_assert_float_eq(p->lines[0].y[0], 0.10, 1e-12);
    cr_assert_float_eq(p->lines[0].y[1], 0.30, 1e-12);
    cr_assert_float_eq(p->lines[1].y[0], 0.20, 1e-12);
    cr_assert_float_eq(p->lines[1].y[1], 0.40, 1e-12);

    cr_assert_eq(sweep_report(tmpdir, dirs, ndirs, &err), 0, "%s", err.msg);
    const char *md = slurp("results.md");
    cr_assert(strstr(md, "4 runs, 4 grid points; swept: r, chunk_size.\n"), "%s", md);
    cr_assert(strstr(md, "| r | chunk_size | seeds | val acc | test acc |"), "%s", md);
    cr_assert(strstr(md, "| 1 | 8 | 42 | 0.2000 | 0.2000 |"), "%s", md);
    const char *csv = slurp("results.csv");
    cr_assert(strstr(csv, "\n1,4,1,42,0.1000,,0.1000,0.1000,0.1000,,0.1000,0.1000,"), "%s", csv);
    slurp("results.png");
    free(p);
    free_runs();
}

/* Two seeds per cell: mean and sample sd in the table, error bars in the
 * plot; words (state_init, readout) on a categorical axis in their order of
 * appearance; state_* numbers from summary.json become columns. */
Test(report, seeds_give_mean_and_spread)
{
    const char *inits[3] = {"zeros", "learned", "sinusoid"}, *readouts[2] = {"last_fast", "state"};
    for (int i = 0; i < 3; i++)
        for (int o = 0; o < 2; o++)
            for (int s = 0; s < 2; s++) {
                char sets[128], extra[64];
                snprintf(sets, sizeof sets, "state_init=%s;readout=%s;seed=%d", inits[i], readouts[o], s + 1);
                snprintf(extra, sizeof extra, "\"state_effective_rank\": %d", i + 1 + s);
                /* mean 0.1 * (1 + i + o), seeds +-0.01 */
                fake_run(sets, 0.5, 0.1 * (1 + i + o) + (s ? 0.01 : -0.01), extra);
            }
    sweep_plot *p = malloc(sizeof *p);
    tlb_error err;
    cr_assert_eq(sweep_report_plot_data(dirs, ndirs, p, &err), 0, "%s", err.msg);
    cr_assert_str_eq(p->xlabel, "state_init", "three values beat two");
    cr_assert_eq(p->categorical, 1);
    cr_assert_eq(p->nx, 3);
    cr_assert_str_eq(p->xnames[0], "zeros");
    cr_assert_str_eq(p->xnames[1], "learned");
    cr_assert_str_eq(p->xnames[2], "sinusoid");
    cr_assert_eq(p->nlines, 2);
    cr_assert_str_eq(p->lines[0].label, "readout=last_fast");
    cr_assert_eq(p->lines[0].seeds_min, 2, "the legend's n");
    cr_assert_eq(p->lines[0].seeds_max, 2);
    cr_assert_float_eq(p->chance, 0.1, 1e-12);
    cr_assert_str_eq(p->lines[1].label, "readout=state");
    const double sd = 0.01 * sqrt(2.0);
    for (int l = 0; l < 2; l++) {
        cr_assert_eq(p->lines[l].n, 3);
        for (int k = 0; k < 3; k++) {
            cr_assert_float_eq(p->lines[l].y[k], 0.1 * (1 + k + l), 1e-12);
            cr_assert_float_eq(p->lines[l].err[k], sd, 1e-12);
            /* beside the category, not on it, so the bars do not overlap */
            cr_assert_float_eq(p->lines[l].x[k], k + (l ? 0.01 : -0.01), 1e-12);
        }
    }
    cr_assert_eq(sweep_report(tmpdir, dirs, ndirs, &err), 0, "%s", err.msg);
    const char *md = slurp("results.md");
    cr_assert(strstr(md, "12 runs, 6 grid points; swept: state_init, readout. Values are mean ± sample standard"), "%s", md);
    cr_assert(strstr(md, "| state_effective_rank |"), "%s", md);
    cr_assert(strstr(md, "| learned | state | 1, 2 | 0.5000 ± 0.0000 | 0.3000 ± 0.0141 | 2.0000 ± 0.0000 | 2.5000 ± 0.7071 |"),
              "%s", md);
    const char *csv = slurp("results.csv");
    cr_assert(strstr(csv, "\nsinusoid,last_fast,2,1 2,"), "%s", csv);
    cr_assert(strstr(csv, "state_effective_rank_mean,state_effective_rank_sd"), "%s", csv);
    const char *runs = slurp("runs.csv");
    cr_assert(strstr(runs, "state_init,readout,seed,val_acc,test_acc"), "%s", runs);
    free(p);
    free_runs();
}

Test(report, bad_runs_are_named)
{
    tlb_error err;
    char *missing[1] = {"/nonexistent/run"};
    cr_assert_eq(sweep_report(tmpdir, missing, 1, &err), -2, "bad input");
    cr_assert_str_eq(err.msg, "/nonexistent/run/config.cfg: cannot read: No such file or directory");
    fake_run("seed=1", 0.1, 0.1, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/summary.json", dirs[0]);
    FILE *f = fopen(path, "w");
    fputs("{not json", f);
    fclose(f);
    cr_assert_eq(sweep_report(tmpdir, dirs, ndirs, &err), -2, "bad input");
    char want[700];
    snprintf(want, sizeof want, "%s: not valid JSON", path);
    cr_assert_str_eq(err.msg, want);
    free_runs();
}

/* Issue 21, 7: a run named twice (here also by a second path) used to count
 * as two seeds (42, 42, sd 0); it counts once. A copy of a run in another
 * folder (the same config, seed included) is refused, naming both. */
Test(report, a_run_counts_once)
{
    fake_run("seed=1", 0.1, 0.1, NULL);
    fake_run("seed=2", 0.3, 0.3, NULL);
    char again[600]; /* dirs[0] by another spelling */
    snprintf(again, sizeof again, "%s/./run00", tmpdir);
    char *given[3] = {dirs[0], dirs[1], again};
    tlb_error err;
    cr_assert_eq(sweep_report(tmpdir, given, 3, &err), 0, "%s", err.msg);
    const char *md = slurp("results.md");
    cr_expect(strstr(md, "2 runs, 1 grid point"), "%s", md);
    cr_expect(strstr(md, "| 1, 2 |"), "%s", md);

    fake_run("seed=1", 0.2, 0.2, NULL); /* run02: run00's config in another folder */
    cr_assert_eq(sweep_report(tmpdir, dirs, ndirs, &err), -2, "bad input");
    cr_expect(strstr(err.msg, dirs[0]) && strstr(err.msg, dirs[2]) && strstr(err.msg, "the same config"), "%s",
              err.msg);
    free_runs();
}

/* Issue 21, 8: two reports into one folder used to both write, leaving
 * results.md from one and results.csv from the other. The folder is
 * locked like a run folder: while another process holds it, a report is
 * refused and writes nothing. */
Test(report, output_folder_is_locked)
{
    fake_run("seed=1", 0.1, 0.1, NULL);
    char out[600], lock[700];
    snprintf(out, sizeof out, "%s/out", tmpdir);
    cr_assert_eq(mkdir(out, 0755), 0);
    snprintf(lock, sizeof lock, "%s/.lock", out);
    /* flock excludes another open of the file, as another process's would be. */
    const int fd = open(lock, O_RDWR | O_CREAT, 0644);
    cr_assert_geq(fd, 0);
    cr_assert_eq(flock(fd, LOCK_EX | LOCK_NB), 0);
    tlb_error err;
    cr_expect_eq(sweep_report(out, dirs, ndirs, &err), -1, "in use: not the runs' fault");
    cr_expect(strstr(err.msg, "is in use by process"), "%s", err.msg);
    char path[700];
    snprintf(path, sizeof path, "%s/results.md", out);
    cr_expect_neq(access(path, F_OK), 0, "a locked folder got results.md");
    close(fd);
    cr_expect_eq(sweep_report(out, dirs, ndirs, &err), 0, "%s", err.msg);
    free_runs();
}
