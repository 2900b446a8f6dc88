/* Resuming through the `tlb` binary: a finished run is left as it is,
 * --set on a resume is applied (epochs) or refused with its reason, and a
 * sweep started again by `tlb train` finishes where it stopped. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test_helpers.h"

static char tmp[64];

static void make_tmp(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/tlb_resume_XXXXXX");
    cr_assert_not_null(test_mkdtemp(tmp));
}

TestSuite(resume, .init = make_tmp, .timeout = 240);

/* The tiny model (16x16, 8 steps of 32 images an epoch), one thread. */
static void write_config(const char *name, const char *extra)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s.cfg", tmp, name);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fprintf(fp,
            "image_size: 16\npatch_size: 4\nembed_dim: 16\nchunk_size: 4\nr: 2\nnum_layers: 1\nnum_heads: 1\n"
            "learning_rate: 0.003\neval_limit: 200\nbatch_size: 32\ntrain_limit: 256\nepochs: 1\nthreads: 1\n"
            "out_dir: %s/runs\n%s",
            tmp, extra);
    fclose(fp);
}

/* `tlb ARGS` (split at spaces), stdout and stderr into tmp/out.txt, tmp/err.txt. */
static int tlb(const char *env, const char *args)
{
    static char buf[4096];
    const char *argv[15];
    int n = 0;
    snprintf(buf, sizeof buf, "%s", args);
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
        cr_assert_lt(n, 14);
        argv[n++] = t;
    }
    argv[n] = NULL;
    char out[128], err[128];
    snprintf(out, sizeof out, "%s/out.txt", tmp);
    snprintf(err, sizeof err, "%s/err.txt", tmp);
    return run_tlb_out(out, err, env, argv);
}

static char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return NULL;
    char *buf = malloc(1 << 20);
    const size_t k = fread(buf, 1, (1 << 20) - 1, fp);
    buf[k] = '\0';
    fclose(fp);
    if (n) *n = k;
    return buf;
}

static const char *out_text(const char *name)
{
    static char *buf;
    char path[128];
    snprintf(path, sizeof path, "%s/%s", tmp, name);
    free(buf);
    buf = slurp(path, NULL);
    return buf ? buf : "";
}

/* The one run folder under tmp/runs named name-<hash>. */
static void run_dir(char *dir, size_t n, const char *name)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ls -d %s/runs/%s-* 2>/dev/null | grep -v -- -sweep- | head -1", tmp, name);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(dir, (int)n, p), "no run folder %s", name);
    dir[strcspn(dir, "\n")] = '\0';
    pclose(p);
}

/* A new run of config NAME (write_config's extra lines), trained to the
 * end; its folder into dir. */
static void train_new(const char *name, const char *extra, char *dir, size_t n)
{
    write_config(name, extra);
    char args[1600];
    snprintf(args, sizeof args, "train %s/%s.cfg", tmp, name);
    cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    run_dir(dir, n, name);
}

static double summary_number(const char *dir, const char *key)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    char *text = slurp(path, NULL);
    cr_assert_not_null(text, "%s missing", path);
    cJSON *j = cJSON_Parse(text);
    free(text);
    const cJSON *v = cJSON_GetObjectItem(j, key);
    const double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    cJSON_Delete(j);
    return d;
}

static int same_file(const char *a, const char *b_text, size_t b_len)
{
    size_t n;
    char *t = slurp(a, &n);
    const int same = t && n == b_len && memcmp(t, b_text, n) == 0;
    free(t);
    return same;
}

/* Issue 21, 2: resuming a finished run used to exit 0 after rewriting
 * summary.json with zero training loss, accuracy and images/s. */
Test(resume, finished_run_is_left_as_it_is)
{
    test_ensure_cifar10();
    char args[1600], dir[1300], path[1400], ckpt[1400];
    train_new("done", "", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/summary.json", dir);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", dir);
    size_t ns = 0, nc = 0;
    char *summary = slurp(path, &ns), *checkpoint = slurp(ckpt, &nc);
    cr_assert(summary && checkpoint);
    cr_assert_gt(summary_number(dir, "final_train_loss"), 0);

    snprintf(args, sizeof args, "train --resume %s", dir);
    cr_expect_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    cr_expect(strstr(out_text("out.txt"), "finished") && strstr(out_text("out.txt"), "nothing to do"), "%s",
              out_text("out.txt"));
    cr_expect(same_file(path, summary, ns), "summary.json was rewritten:\n%s", out_text("err.txt"));
    cr_expect(same_file(ckpt, checkpoint, nc), "the checkpoint was rewritten");
    cr_expect_gt(summary_number(dir, "final_train_loss"), 0);
    free(summary), free(checkpoint);
}

/* Issue 21, 3: --set on a resume used to be ignored. Now it is applied when
 * it keeps what was trained (epochs extends the run, recorded), refused
 * with the reason otherwise; a refusal writes nothing. */
Test(resume, set_on_resume_is_applied_or_refused)
{
    test_ensure_cifar10();
    char args[1600], dir[1300], path[1400];
    train_new("ext", "", dir, sizeof dir);
    snprintf(path, sizeof path, "%s/config.cfg", dir);
    size_t nconf = 0;
    char *config = slurp(path, &nconf);

    struct {
        const char *set, *reason;
    } refused[] = {{"threads=2", "threads: the thread count"},
                   {"bogus=1", "bogus: unknown key"},
                   {"learning_rate=0.1", "learning_rate: would change the numbers"},
                   {"epochs=[2,3]", "give one value"},
                   {"epochs=0", "epochs"}};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        snprintf(args, sizeof args, "train --resume %s --set %s", dir, refused[i].set);
        cr_expect_eq(tlb(NULL, args), 2, "--set %s: %s", refused[i].set, out_text("err.txt"));
        cr_expect(strstr(out_text("err.txt"), refused[i].reason), "--set %s: %s", refused[i].set,
                  out_text("err.txt"));
        cr_expect(same_file(path, config, nconf), "--set %s rewrote config.cfg", refused[i].set);
    }
    /* A set that changes nothing is no change. */
    snprintf(args, sizeof args, "train --resume %s --set threads=1", dir);
    cr_expect_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    cr_expect(strstr(out_text("out.txt"), "finished"), "%s", out_text("out.txt"));

    snprintf(args, sizeof args, "train --resume %s --set epochs=2", dir);
    cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    cr_expect(strstr(out_text("err.txt"), "extending the run from 1 to 2 epochs"), "%s", out_text("err.txt"));
    cr_expect_eq(summary_number(dir, "epochs"), 2);
    cr_expect_eq(summary_number(dir, "extended_from_epochs"), 1);
    cr_expect_eq(summary_number(dir, "train_images"), 512);
    char *conf2 = slurp(path, NULL);
    cr_expect(conf2 && strstr(conf2, "\nepochs: 2\n"), "config.cfg does not record the extension");
    free(conf2);
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    char *metrics = slurp(path, NULL);
    cr_expect(metrics && strstr(metrics, "\n1,") && strstr(metrics, "\n2,"), "%s", metrics);
    free(metrics);
    /* The extended run is whole: eval reads it, a resume finds it finished. */
    snprintf(args, sizeof args, "eval %s --no-plots", dir);
    cr_expect_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    snprintf(args, sizeof args, "train --resume %s", dir);
    cr_expect_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    cr_expect(strstr(out_text("out.txt"), "finished (2 epochs"), "%s", out_text("out.txt"));
    free(config);

    /* The cosine schedule's rates depend on the epochs: no extension. */
    train_new("cos", "lr_schedule: cosine\nwarmup_epochs: 0\n", dir, sizeof dir);
    snprintf(args, sizeof args, "train --resume %s --set epochs=2", dir);
    cr_expect_eq(tlb(NULL, args), 2);
    cr_expect(strstr(out_text("err.txt"), "cosine"), "%s", out_text("err.txt"));
}

/* Issue 21, 4: `tlb train CONFIG --set seed=[...]` started again after a
 * kill in its third run used to stop at the first run ("already holds a
 * run"); now it skips the finished runs, resumes the third and reports. */
Test(resume, sweep_started_again_finishes)
{
    test_ensure_cifar10();
    write_config("sw", "checkpoint_every: 2\n");
    char args[1600], dirs[3][1300], path[4000];
    for (int i = 0; i < 2; i++) {
        snprintf(args, sizeof args, "train %s/sw.cfg --set seed=[1,2,3] --run %d", tmp, i);
        cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    }
    /* Run 2 killed inside its second checkpoint write, mid-epoch. */
    snprintf(args, sizeof args, "train %s/sw.cfg --set seed=[1,2,3] --run 2", tmp);
    cr_assert_eq(tlb("TLB_TEST_KILL_IN_CHECKPOINT=2", args), 1000 + 9, "%s", out_text("err.txt"));
    char *before[2];
    size_t nbefore[2] = {0, 0};
    for (int i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "sw-seed%d", i + 1);
        run_dir(dirs[i], sizeof dirs[i], name);
        snprintf(path, sizeof path, "%s/summary.json", dirs[i]);
        if (i < 2) cr_assert_not_null(before[i] = slurp(path, &nbefore[i]));
        else cr_assert_neq(access(path, F_OK), 0);
    }

    snprintf(args, sizeof args, "train %s/sw.cfg --set seed=[1,2,3]", tmp);
    cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    cr_expect(strstr(out_text("out.txt"), "sweep results: "), "%s", out_text("out.txt"));
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/summary.json", dirs[i]);
        cr_expect(same_file(path, before[i], nbefore[i]), "finished run %d was trained again", i);
        free(before[i]);
    }
    cr_expect_eq(summary_number(dirs[2], "epochs"), 1);
    cr_expect_eq(summary_number(dirs[2], "train_images"), 256, "the resumed run counts its whole epoch");
    const char *out = out_text("out.txt");
    const char *at = strstr(out, "sweep results: ");
    cr_assert_not_null(at);
    snprintf(path, sizeof path, "%.*s", (int)strcspn(at + 15, "\n"), at + 15);
    char *md = slurp(path, NULL);
    cr_expect(md && strstr(md, "3 runs"), "%s", md ? md : path);
    free(md);
}

static double eval_loss(const char *dir)
{
    char args[1600];
    snprintf(args, sizeof args, "eval %s --json --no-plots", dir);
    cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    cJSON *j = cJSON_Parse(out_text("out.txt"));
    cr_assert_not_null(j);
    const double loss = cJSON_GetNumberValue(cJSON_GetObjectItem(j, "loss"));
    cJSON_Delete(j);
    return loss;
}

/* Fine-tuning: --init-from RUN starts a new run from RUN's parameters
 * (here a learning rate too small to move them, so the new run evaluates
 * as RUN does), records the exact checkpoint in config.cfg and the hash;
 * another architecture is refused with nothing written. */
Test(resume, init_from_starts_a_new_run_from_another_runs_weights)
{
    test_ensure_cifar10();
    char args[1600], src[1300], ft[1300], path[1400];
    train_new("src", "", src, sizeof src);
    write_config("ft", "weight_decay: 0\n");
    snprintf(args, sizeof args, "train %s/ft.cfg --init-from %s --set learning_rate=1e-30", tmp, src);
    cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    run_dir(ft, sizeof ft, "ft");
    cr_expect_float_eq(eval_loss(ft), eval_loss(src), 1e-6, "the fine-tuned run did not start from the source");
    snprintf(path, sizeof path, "%s/config.cfg", ft);
    char *conf = slurp(path, NULL);
    cr_expect(conf && strstr(conf, "init_from: \"") && strstr(conf, "checkpoint.safetensors@"), "%s", conf);
    free(conf);

    write_config("wide", "");
    snprintf(args, sizeof args, "train %s/wide.cfg --init-from %s --set embed_dim=24", tmp, src);
    cr_expect_eq(tlb(NULL, args), 2);
    cr_expect(strstr(out_text("err.txt"), "another architecture"), "%s", out_text("err.txt"));
    snprintf(args, sizeof args, "ls -d %s/runs/wide-* >/dev/null 2>&1", tmp);
    cr_expect_neq(system(args), 0, "a refused fine-tune left a run folder");
    snprintf(args, sizeof args, "train %s/ft.cfg --init-from %s/nosuch", tmp, tmp);
    cr_expect_eq(tlb(NULL, args), 2);
    cr_expect(strstr(out_text("err.txt"), "init_from: ") && strstr(out_text("err.txt"), "nosuch"), "%s",
              out_text("err.txt"));
}

/* checkpoint-best.safetensors holds the epoch with the highest validation
 * accuracy (the first of equals); `--checkpoint best` evaluates it, also
 * after a resume extended the run (its hash is rewritten with it). */
Test(resume, best_checkpoint_follows_validation_accuracy)
{
    test_ensure_cifar10();
    write_config("best", "");
    char args[1600], dir[1300], path[1400];
    snprintf(args, sizeof args, "train %s/best.cfg --set epochs=3 --set learning_rate=0.01", tmp);
    cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    run_dir(dir, sizeof dir, "best");
    for (int extended = 0; extended < 2; extended++) {
        snprintf(path, sizeof path, "%s/metrics.csv", dir);
        FILE *fp = fopen(path, "r");
        cr_assert_not_null(fp);
        char line[512];
        int best_epoch = 0, e;
        double best = -1, v[5];
        cr_assert_not_null(fgets(line, sizeof line, fp));
        while (fgets(line, sizeof line, fp) &&
               sscanf(line, "%d,%lf,%lf,%lf,%lf", &e, &v[0], &v[1], &v[2], &v[3]) == 5)
            if (v[3] > best) best = v[3], best_epoch = e;
        fclose(fp);
        snprintf(args, sizeof args, "eval %s --checkpoint best --json --no-plots", dir);
        cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
        char want[64];
        snprintf(want, sizeof want, "checkpoint-best.safetensors (epoch %d,", best_epoch);
        cr_expect(strstr(out_text("err.txt"), want), "want %s in %s", want, out_text("err.txt"));
        cJSON *j = cJSON_Parse(out_text("out.txt"));
        cr_expect_float_eq(cJSON_GetNumberValue(cJSON_GetObjectItem(j, "accuracy")), best, 1.5 / 200);
        cJSON_Delete(j);
        snprintf(args, sizeof args, "train --resume %s --set epochs=4", dir);
        if (!extended) cr_assert_eq(tlb(NULL, args), 0, "%s", out_text("err.txt"));
    }
}
