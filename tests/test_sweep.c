/* experiments/sweep.sh on a tiny grid (tiny_smoke, 128 images, 1 epoch):
 * the local path, GNU parallel, and the Slurm job-array script run task by
 * task with SLURM_ARRAY_TASK_ID set, as a scheduler would. All three must
 * train the same runs (same folders, same accuracies). tests/slurm_local.sh
 * runs the array on a real single-node Slurm where one can start. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "test_helpers.h"

static char tmpdir[256];

/* A fresh folder per test, removed when the test's process exits. */
static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tlb_sweep_test_XXXXXX");
    cr_assert_not_null(test_mkdtemp(tmpdir));
}

TestSuite(sweep, .init = make_tmpdir);

/* Runs a bash command (from the repository root); its exit status. */
__attribute__((format(printf, 1, 2)))
static int sh(const char *fmt, ...)
{
    char cmd[4096], full[4600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    snprintf(full, sizeof full, "bash -c '%s'", cmd);
    const int st = system(full);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

/* 2 r x 2 seeds; extra selects the path. */
static int sweep(const char *out, const char *extra)
{
    return sh("TLB_BIN=%s TLB_NO_FETCH=1 experiments/sweep.sh --config experiments/tiny_smoke.cfg"
              " --r \"1 2\" --seeds \"1 2\" --epochs 1 --train-limit 128 --eval-limit 64 --threads 1"
              " --out %s/%s %s >%s/%s.out 2>&1",
              tlb_bin(), tmpdir, out, extra, tmpdir, out);
}

/* The accuracy columns of two results.csv files agree (not wall time, images/s). */
static int same_results(const char *a, const char *b)
{
    return sh("cmp <(cut -d, -f1-12 %s/%s/results.csv) <(cut -d, -f1-12 %s/%s/results.csv)", tmpdir, a, tmpdir, b);
}

Test(sweep, local_then_again_skips_finished_runs, .timeout = 180)
{
    cr_assert_eq(sweep("local", "--jobs 2"), 0, "see %s/local.out", tmpdir);
    cr_assert_eq(sh("grep -q \"4 runs, 2 grid points; swept: r. Values are mean\" %s/local/results.md", tmpdir), 0);
    cr_assert_eq(sh("test $(ls %s/local/runs | wc -l) = 4 && ls %s/local/runs | grep -q \"^sweep-r2-seed1-\"", tmpdir,
                    tmpdir), 0);
    cr_assert_eq(sh("test -s %s/local/results.png && test -s %s/local/runs.csv", tmpdir, tmpdir), 0);
    /* Run again: nothing retrained, the same report. */
    cr_assert_eq(sh("cp %s/local/results.csv %s/first.csv", tmpdir, tmpdir), 0);
    cr_assert_eq(sweep("local", ""), 0);
    cr_assert_eq(sh("test $(grep -c \"finished already\" %s/local.out) = 4", tmpdir), 0, "all four skipped");
    cr_assert_eq(sh("cmp %s/first.csv %s/local/results.csv", tmpdir, tmpdir), 0);
    /* A bad axis value: the config's message, exit 2, no run. */
    cr_assert_eq(sh("TLB_BIN=%s experiments/sweep.sh --config experiments/tiny_smoke.cfg --axis readout \"state last\""
                    " --out %s/bad 2>%s/bad.err", tlb_bin(), tmpdir, tmpdir), 2);
    cr_assert_eq(sh("grep -q \"^--set: readout: item 2: expected last_fast or state, got .last.$\" %s/bad.err", tmpdir), 0);
    cr_assert_neq(sh("test -d %s/bad/runs", tmpdir), 0, "nothing written");
}

Test(sweep, gnu_parallel_trains_the_same_runs, .timeout = 180)
{
    cr_assert_eq(sh("command -v parallel >/dev/null"), 0, "GNU parallel is missing: scripts/install-deps.sh installs it");
    cr_assert_eq(sweep("local", ""), 0, "see %s/local.out", tmpdir);
    cr_assert_eq(sweep("par", "--parallel --jobs 2"), 0, "see %s/par.out", tmpdir);
    cr_assert_eq(sh("test $(tail -n +2 %s/par/logs/parallel.joblog | awk \"\\$7 == 0\" | wc -l) = 4", tmpdir), 0,
                 "four parallel jobs with exit 0");
    cr_assert_eq(same_results("local", "par"), 0);
    cr_assert_eq(sh("cmp <(ls %s/local/runs) <(ls %s/par/runs)", tmpdir, tmpdir), 0, "same run folders (names, hashes)");
}

/* The array script, run as Slurm would run it: one task per index, then the
 * report script of the dependent job. */
Test(sweep, slurm_array_script_runs_task_by_task, .timeout = 180)
{
    cr_assert_eq(sweep("local", ""), 0, "see %s/local.out", tmpdir);
    char extra[400];
    snprintf(extra, sizeof extra, "--slurm %s/sweep.sbatch --slurm-opt --time=10", tmpdir);
    cr_assert_eq(sweep("slurm", extra), 0, "see %s/slurm.out", tmpdir);
    cr_assert_eq(sh("grep -qx \"#SBATCH --array=0-3\" %s/sweep.sbatch && grep -qx \"#SBATCH --cpus-per-task=1\" %s/sweep.sbatch"
                    " && grep -qx \"#SBATCH --time=10\" %s/sweep.sbatch", tmpdir, tmpdir, tmpdir), 0);
    cr_assert_eq(sh("grep -q \"^exec bash .*/report.sh\" %s/sweep.sbatch.report", tmpdir), 0);
    cr_assert_neq(sh("test -e %s/slurm/results.csv", tmpdir), 0, "--slurm only writes the scripts");
    /* Without an index the task refuses to guess. */
    cr_assert_neq(sh("bash %s/sweep.sbatch 2>/dev/null", tmpdir), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(sh("SLURM_ARRAY_TASK_ID=%d bash %s/sweep.sbatch >>%s/tasks.out", i, tmpdir, tmpdir), 0, "task %d", i);
    cr_assert_eq(sh("bash %s/sweep.sbatch.report >/dev/null", tmpdir), 0);
    cr_assert_eq(same_results("local", "slurm"), 0);
    cr_assert_eq(sh("cmp <(ls %s/local/runs) <(ls %s/slurm/runs)", tmpdir, tmpdir), 0, "same run folders (names, hashes)");
}

/* The same array on a real single-node Slurm (tests/slurm_local.sh starts
 * munged, slurmctld and slurmd in a temp dir on the loopback), the report
 * as a job depending on it (afterok). */
Test(sweep, real_slurm_runs_the_array_then_the_report, .timeout = 240)
{
    cr_assert_eq(sweep("local", ""), 0, "see %s/local.out", tmpdir);
    const int rc = sh("TLB_BIN=%s TLB_NO_FETCH=1 tests/slurm_local.sh %s/real -- --config experiments/tiny_smoke.cfg"
                      " --r \"1 2\" --seeds \"1 2\" --epochs 1 --train-limit 128 --eval-limit 64 --threads 1"
                      " >%s/real.out 2>&1",
                      tlb_bin(), tmpdir, tmpdir);
    if (rc == 77) {
        sh("cat %s/real.out >&2", tmpdir);
        cr_skip_test("Slurm cannot run here (see above; README, \"Sweeps\")");
    }
    cr_assert_eq(rc, 0, "see %s/real.out", tmpdir);
    cr_assert_eq(sh("ls %s/real/logs/slurm-*_3.out >/dev/null && ls %s/real/logs/slurm-report-*.out >/dev/null", tmpdir,
                    tmpdir), 0, "four array tasks and the report job ran under Slurm");
    cr_assert_eq(same_results("local", "real"), 0);
    cr_assert_eq(sh("cmp <(ls %s/local/runs) <(ls %s/real/runs)", tmpdir, tmpdir), 0);
}
