/* Training on real CIFAR-10 (the program fetches it into its cache when
 * missing): a short run must learn, and a run stopped mid-epoch and resumed
 * must end bit-identical to one run straight through. */
#include <criterion/criterion.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/fetch.h"
#include "ops/ops.h"
#include "train/trainer.h"
#include "alloc_counter.h"
#include "test_helpers.h"


static void make_config(run_config *c, const char *text, const char *out_dir)
{
    tlb_error err;
    run_config_defaults(c);
    cr_assert_eq(run_config_parse(c, text, strlen(text), "test.cfg", &err), 0, "%s", err.msg);
    snprintf(c->out_dir, sizeof c->out_dir, "%s", out_dir);
    cr_assert_eq(run_config_validate(c, &err), 0, "%s", err.msg);
}

/* Trains config `text` into out_dir; the run must succeed. */
static train_summary train_text(const char *text, const char *out_dir)
{
    run_config c;
    make_config(&c, text, out_dir);
    train_summary s;
    tlb_error err;
    cr_assert_eq(train_run(&c, NULL, &s, &err), 0, "%s", err.msg);
    return s;
}

/* The run folder's file `name`, open for reading. */
static FILE *open_run_file(const train_summary *s, const char *name)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", s->run_dir, name);
    FILE *fp = fopen(path, "r");
    cr_assert_not_null(fp, "%s: missing", path);
    return fp;
}

static const char *tiny_model =
    "image_size: 16\npatch_size: 4\nembed_dim: 32\nchunk_size: 4\nr: 2\nnum_layers: 2\n"
    "num_heads: 2\nkey_dim: 16\nffn_drop: 0.1\nattn_drop: 0.1\nlearning_rate: 0.003\n"
    "weight_decay: 0.0001\nthreads: 2\n";

/* A one-epoch run of 128 images (64 evaluated) named `name` in a new temp
 * folder made from the template out_dir. */
static void one_epoch_config(run_config *c, char *out_dir, const char *name)
{
    test_ensure_cifar10();
    cr_assert_not_null(test_mkdtemp(out_dir));
    char text[2048];
    snprintf(text, sizeof text, "%sname: %s\ntrain_limit: 128\neval_limit: 64\nbatch_size: 64\nepochs: 1\n",
             tiny_model, name);
    make_config(c, text, out_dir);
}


Test(train, short_run_learns, .timeout = 240)
{
    test_ensure_cifar10();
    char out[] = "/tmp/tlb_train_XXXXXX";
    cr_assert_not_null(test_mkdtemp(out));
    /* TLB_TEST_SMALL (make test-sanitize, where this is ~5x slower): a third
     * of the images and half the evaluation set; the accuracy bar drops to
     * 0.15, still 5 standard deviations above chance on 1000 images. */
    const int small = getenv("TLB_TEST_SMALL") != NULL;
    const double bar = small ? 0.15 : 0.2;
    char text[2048];
    snprintf(text, sizeof text, "%sname: learn\ntrain_limit: %d\neval_limit: %d\nbatch_size: 64\nepochs: 3\n", tiny_model,
             small ? 2048 : 6144, small ? 1000 : 2000);
    const train_summary s = train_text(text, out);
    /* metrics.csv: the loss falls from the first epoch to the last. */
    char line[256];
    FILE *fp = open_run_file(&s, "metrics.csv");
    double first = -1, last = -1, loss;
    int epoch, rows = 0;
    while (fgets(line, sizeof line, fp))
        if (sscanf(line, "%d,%lf", &epoch, &loss) == 2) {
            if (first < 0) first = loss;
            last = loss;
            rows++;
        }
    fclose(fp);
    cr_expect_eq(rows, 3);
    cr_expect_lt(last, first - 0.1, "train loss went from %.4f to %.4f", first, last);
    /* Chance is 0.10; with 2000 test images, 0.2 is far outside noise. */
    cr_expect_gt(s.test_acc, bar, "test accuracy %.4f", s.test_acc);
    cr_expect_gt(s.val_acc, bar, "validation accuracy %.4f", s.val_acc);
    const char *files[] = {"config.cfg", "checkpoint.safetensors", "summary.json", "loss.png",
                           "accuracy.png", "attention.png", "augmented.png"};
    char path[1400];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", s.run_dir, files[i]);
        cr_expect_eq(access(path, R_OK), 0, "%s missing", path);
    }
}

/* The run folders of the last stop_and_resume: straight through, resumed. */
static char straight_dir[1200], resumed_dir[1200];

/* Trains `extra` on the tiny model straight through (into sa) and stopped
 * after step 5 of 16 (mid-epoch 1), then resumed (into sb); returns the
 * uninterrupted run's checkpoint data (*n bytes) after checking the resumed
 * one is identical. */
static unsigned char *stop_and_resume(const char *extra, size_t *n)
{
    test_ensure_cifar10();
    char out_a[] = "/tmp/tlb_resume_a_XXXXXX", out_b[] = "/tmp/tlb_resume_b_XXXXXX";
    cr_assert_not_null(test_mkdtemp(out_a));
    cr_assert_not_null(test_mkdtemp(out_b));
    char text[2048];
    snprintf(text, sizeof text, "%sname: resume\ntrain_limit: 1024\neval_limit: 256\nbatch_size: 128\nmicro_batch: 48\nepochs: 2\n%s",
             tiny_model, extra);
    run_config a, b;
    make_config(&a, text, out_a);
    make_config(&b, text, out_b);
    train_summary sa, sb;
    tlb_error err;
    cr_assert_eq(train_run(&a, NULL, &sa, &err), 0, "%s", err.msg);
    /* Stop after step 5 of 16 (mid-epoch 1), then resume from the folder. */
    train_options stop = {.stop_after_steps = 5};
    cr_assert_eq(train_run(&b, &stop, &sb, &err), 128, "%s", err.msg);
    char dir[sizeof sb.run_dir];
    memcpy(dir, sb.run_dir, sizeof dir); /* train_run clears its summary */
    train_options resume = {.resume_dir = dir};
    run_config again;
    cr_assert_eq(train_load_run_config(&again, sb.run_dir, &err), 0, "%s", err.msg);
    cr_assert_eq(train_run(&again, &resume, &sb, &err), 0, "%s", err.msg);
    size_t na, nb;
    unsigned char *ba = test_checkpoint_data(sa.run_dir, &na), *bb = test_checkpoint_data(sb.run_dir, &nb);
    cr_assert_eq(na, nb);
    cr_expect(memcmp(ba, bb, na) == 0, "resumed parameters differ from the uninterrupted run (%s)", extra);
    cr_expect_float_eq(sa.test_acc, sb.test_acc, 0.0);
    snprintf(straight_dir, sizeof straight_dir, "%s", sa.run_dir);
    snprintf(resumed_dir, sizeof resumed_dir, "%s", sb.run_dir);
    free(bb);
    *n = na;
    return ba;
}

Test(train, stop_and_resume_is_bit_exact, .timeout = 240)
{
    size_t n;
    free(stop_and_resume("", &n));
}
/* Issue 21, 9: the epoch a resume continues used to average only the
 * batches after the resume, and summary.json's images/s and wall time
 * covered only the resumed part. Now the resumed run's metrics.csv has
 * the uninterrupted run's training loss and accuracy, and its totals count
 * every image trained on. */
Test(train, resumed_epoch_counts_the_whole_epoch, .timeout = 240)
{
    size_t n;
    free(stop_and_resume("", &n));
    char line_a[512], line_b[512], path[1400];
    snprintf(path, sizeof path, "%s/metrics.csv", straight_dir);
    FILE *fa = fopen(path, "r");
    snprintf(path, sizeof path, "%s/metrics.csv", resumed_dir);
    FILE *fb = fopen(path, "r");
    cr_assert(fa && fb);
    int rows = 0;
    double seconds_b = 0;
    while (fgets(line_a, sizeof line_a, fa)) {
        cr_assert_not_null(fgets(line_b, sizeof line_b, fb));
        if (rows++ == 0) continue; /* the header */
        /* epoch, train_loss, train_acc, val_loss, val_acc: the same text */
        const char *a = line_a, *b = line_b;
        for (int col = 0; col < 5; col++) a = strchr(a, ',') + 1, b = strchr(b, ',') + 1;
        cr_expect_eq(a - line_a, b - line_b, "row %d: %s vs %s", rows - 1, line_a, line_b);
        cr_expect(strncmp(line_a, line_b, (size_t)(a - line_a)) == 0, "row %d: %s vs %s", rows - 1, line_a, line_b);
        seconds_b += atof(b);
    }
    cr_expect_eq(rows, 3);
    fclose(fa), fclose(fb);
    for (int k = 0; k < 2; k++) {
        snprintf(path, sizeof path, "%s/summary.json", k ? resumed_dir : straight_dir);
        FILE *fp = fopen(path, "r");
        cr_assert_not_null(fp);
        char buf[8192];
        buf[fread(buf, 1, sizeof buf - 1, fp)] = '\0';
        fclose(fp);
        const char *at = strstr(buf, "\"train_images\":");
        cr_assert_not_null(at, "%s has no train_images", path);
        cr_expect_eq(atol(at + 15), 2048, "%s: %s", path, at);
        at = strstr(buf, "\"wall_seconds\":");
        cr_assert_not_null(at);
        if (k) cr_expect_geq(atof(at + 15), seconds_b, "the wall time is shorter than the epochs it holds");
    }
}

/* metrics.csv's last column is the learning rate of each epoch's last
 * step: under a cosine schedule it falls to min_lr at the last step. */
Test(train, metrics_record_the_learning_rate, .timeout = 240)
{
    test_ensure_cifar10();
    char out[] = "/tmp/tlb_lr_XXXXXX";
    cr_assert_not_null(test_mkdtemp(out));
    char text[2048];
    snprintf(text, sizeof text, "%sname: lr\ntrain_limit: 128\neval_limit: 64\nbatch_size: 64\nepochs: 2\n"
             "lr_schedule: cosine\nwarmup_epochs: 0\nmin_lr: 0.0001\n", tiny_model);
    const train_summary s = train_text(text, out);
    FILE *fp = open_run_file(&s, "metrics.csv");
    char line[512];
    cr_assert_not_null(fgets(line, sizeof line, fp));
    cr_expect(strstr(line, ",learning_rate\n"), "header: %s", line);
    double lr[2] = {0, 0};
    for (int e = 0; e < 2; e++) {
        cr_assert_not_null(fgets(line, sizeof line, fp));
        lr[e] = atof(strrchr(line, ',') + 1);
    }
    fclose(fp);
    /* 2 steps an epoch, 4 in all: step 2 is half way through the cosine (cos(pi/2) = 0) */
    cr_expect_float_eq(lr[0], 0.0001 + (0.003 - 0.0001) * 0.5, 1e-12, "epoch 1: %g", lr[0]);
    cr_expect_float_eq(lr[1], 0.0001, 1e-12, "epoch 2: %g", lr[1]);
}

/* The recipe keys resume bit-exact too: a warmup-cosine schedule (8 steps
 * per epoch; the stop after step 5 falls inside the 6-step warmup), label
 * smoothing, clipping and mixup's soft targets; and together they change the
 * run (the trainer uses them). */
Test(train, recipe_stop_and_resume_is_bit_exact, .timeout = 480)
{
    const char *recipe = "lr_schedule: cosine\nwarmup_epochs: 0.75\nmin_lr: 0.00001\nlabel_smoothing: 0.1\ngrad_clip: 0.05\nmixup_alpha: 0.4\n";
    size_t n_recipe, n_seed;
    unsigned char *with = stop_and_resume(recipe, &n_recipe);
    unsigned char *seed = stop_and_resume("", &n_seed);
    cr_assert_eq(n_recipe, n_seed);
    cr_expect(memcmp(with, seed, n_seed) != 0, "the recipe keys changed nothing");
    free(with);
    free(seed);
}

/* The slow state's diversity after each epoch, in the epoch's metrics.csv
 * row (two new columns at the end) and summary.json: the seed's zero state
 * is collapsed (cosine 1, rank 1), a learned one is not. */
static train_summary diversity_run(const char *state_init, const char *out)
{
    char text[2048];
    snprintf(text, sizeof text,
             "%sname: div_%s\nstate_init: %s\ntrain_limit: 256\neval_limit: 128\nbatch_size: 64\nepochs: 1\n",
             tiny_model, state_init, state_init);
    const train_summary s = train_text(text, out);
    char line[512];
    FILE *fp = open_run_file(&s, "metrics.csv");
    cr_assert_not_null(fgets(line, sizeof line, fp));
    cr_expect(strstr(line, ",images_per_second,state_cosine,state_rank,learning_rate\n") != NULL, "header: %s", line);
    cr_assert_not_null(fgets(line, sizeof line, fp));
    double v[8];
    int epoch;
    cr_expect_eq(sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &epoch, &v[0], &v[1], &v[2], &v[3],
                        &v[4], &v[5], &v[6], &v[7]), 9, "row: %s", line);
    cr_expect_float_eq(v[6], s.state_cosine, 1e-5, "%s: csv cosine %.6f, summary %.6f", state_init, v[6], s.state_cosine);
    cr_expect_float_eq(v[7], s.state_rank, 1e-3);
    fclose(fp);
    fp = open_run_file(&s, "summary.json");
    char json[4096];
    const size_t n = fread(json, 1, sizeof json - 1, fp);
    json[n] = 0;
    fclose(fp);
    cr_expect(strstr(json, "\"state_cosine\"") && strstr(json, "\"state_rank\""), "%s", json);
    cr_log_info("state_init %s after one epoch: state_cosine %.6f, state_rank %.2f", state_init,
                s.state_cosine, s.state_rank);
    return s;
}

Test(train, state_diversity_shows_the_collapse, .timeout = 240)
{
    test_ensure_cifar10();
    char out[] = "/tmp/tlb_div_XXXXXX";
    cr_assert_not_null(mkdtemp(out));
    const train_summary zeros = diversity_run("zeros", out);
    cr_expect_geq(zeros.state_cosine, 1.0 - 1e-6, "zeros: cosine %.9f", zeros.state_cosine);
    cr_expect_eq(zeros.state_rank, 1.0, "zeros: rank %.2f", zeros.state_rank);
    const train_summary learned = diversity_run("learned", out);
    cr_expect_lt(learned.state_cosine, 0.99, "learned: cosine %.6f", learned.state_cosine);
    cr_expect_gt(learned.state_rank, 1.5, "learned: rank %.2f", learned.state_rank);
}

/* One epoch of the tiny config plus `extra` keys, named `name`. */
static train_summary one_epoch_with(const char *extra, const char *name)
{
    test_ensure_cifar10();
    char out[] = "/tmp/tlb_keys_XXXXXX";
    cr_assert_not_null(test_mkdtemp(out));
    char text[2048];
    snprintf(text, sizeof text, "%s%sname: %s\ntrain_limit: 128\neval_limit: 64\nbatch_size: 64\nepochs: 1\n",
             tiny_model, extra, name);
    return train_text(text, out);
}

/* adam_beta1/2 and adam_epsilon reach AdamW: written at their defaults they
 * train bit for bit as when absent; another epsilon trains otherwise. */
Test(train, adam_keys_reach_the_optimizer, .timeout = 240)
{
    const train_summary plain = one_epoch_with("", "adam_plain");
    const train_summary same = one_epoch_with("adam_beta1: 0.9\nadam_beta2: 0.999\nadam_epsilon: 1e-7\n", "adam_same");
    cr_expect_eq(plain.train_loss, same.train_loss, "defaults written: %.9g vs %.9g", plain.train_loss,
                 same.train_loss);
    cr_expect_eq(plain.val_loss, same.val_loss);
    const train_summary eps = one_epoch_with("adam_epsilon: 0.01\n", "adam_eps");
    cr_expect_neq(plain.val_loss, eps.val_loss, "adam_epsilon 0.01 changed nothing");
    const train_summary beta = one_epoch_with("adam_beta2: 0.5\n", "adam_beta2");
    cr_expect_neq(plain.val_loss, beta.val_loss, "adam_beta2 0.5 changed nothing");
}

/* The image model with chunk positions, a hidden head layer and embedding
 * dropout trains through the whole program (config, init, checkpoint). */
Test(train, chunk_positions_and_hidden_head_train, .timeout = 240)
{
    const train_summary plain = one_epoch_with("", "seq_plain");
    const train_summary s = one_epoch_with("pos_emb: chunk\nhead_hidden: 16\nembed_drop: 0.1\n", "seq_opts");
    /* pos_emb [16, 32] -> [4, 32]; head [32, 10] + [10] -> [32, 16] + [16] + [16, 10] + [10] */
    cr_expect_eq(s.num_params, plain.num_params - 12 * 32 + (32 * 16 + 16 + 16 * 10) - 32 * 10, "%zu parameters",
                 s.num_params);
    cr_expect(s.train_loss > 0 && s.train_loss < 10 && s.val_loss > 0 && s.val_loss < 10, "losses %g %g",
              s.train_loss, s.val_loss);
}

/* A new run refuses a folder that already holds a checkpoint. */
Test(train, refuses_to_overwrite_a_run, .timeout = 120)
{
    char out[] = "/tmp/tlb_twice_XXXXXX";
    run_config c;
    one_epoch_config(&c, out, "twice");
    train_summary s;
    tlb_error err;
    cr_assert_eq(train_run(&c, NULL, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(train_run(&c, NULL, &s, &err), 2);
    cr_expect(strstr(err.msg, "--resume") != NULL, "%s", err.msg);
}

/* threads: 0 (all cores) is resolved before the run is hashed: the run
 * folder's hash and its config.cfg hold the count the run used (results
 * depend on it: it is the shard count), and a resume reads that count back. */
Test(train, threads_0_is_hashed_and_recorded_resolved, .timeout = 120)
{
    char out[] = "/tmp/tlb_threads0_XXXXXX";
    run_config c;
    one_epoch_config(&c, out, "threads0");
    c.threads = 0;
    omp_set_num_threads(2); /* what threads: 0 resolves to in this process */
    run_config resolved = c, unresolved = c;
    resolved.threads = 2;
    char want[1300], other[1300];
    run_config_run_dir(&resolved, want, sizeof want);
    run_config_run_dir(&unresolved, other, sizeof other);
    cr_assert_str_neq(want, other);
    train_summary s;
    tlb_error err;
    cr_assert_eq(train_run(&c, NULL, &s, &err), 0, "%s", err.msg);
    cr_expect_str_eq(s.run_dir, want);
    run_config back;
    cr_assert_eq(train_load_run_config(&back, s.run_dir, &err), 0, "%s", err.msg);
    cr_expect_eq(back.threads, 2, "config.cfg records threads: %d", back.threads);
    cr_expect_eq(run_config_hash(&back), run_config_hash(&resolved));
}

/* `tlb ARGS...` through the shared harness (test_helpers.h); stderr goes to
 * a file in this test's own temp folder, for read_err. */
static char err_path[1400];

static int cli(const char *const *args)
{
    if (!err_path[0]) {
        static char dir[] = "/tmp/tlb_cli_err_XXXXXX";
        cr_assert_not_null(test_mkdtemp(dir));
        snprintf(err_path, sizeof err_path, "%s/stderr.txt", dir);
    }
    return run_tlb(err_path, NULL, args);
}

static void read_err(char *buf, size_t n) { read_text(err_path, buf, n, NULL); }

/* Bad input: one line naming file, line and key; exit 2; nothing written. */
Test(cli, bad_config_exits_2_and_writes_nothing)
{
    char dir[] = "/tmp/tlb_cli_XXXXXX";
    cr_assert_not_null(test_mkdtemp(dir));
    char cfg[1200], msg[2048];
    snprintf(cfg, sizeof cfg, "%s/bad.cfg", dir);
    FILE *fp = fopen(cfg, "w");
    fprintf(fp, "embed_dim: 64\nchunk_sise: 8\nout_dir: %s/runs\n", dir);
    fclose(fp);
    cr_expect_eq(cli((const char *[]){"train", cfg, NULL}), 2);
    read_err(msg, sizeof msg);
    cr_expect(strstr(msg, "bad.cfg:2: chunk_sise: unknown key") != NULL, "message: %s", msg);
    cr_expect(strstr(msg, "chunk_size") != NULL, "no suggestion in: %s", msg);
    char runs[1300];
    snprintf(runs, sizeof runs, "%s/runs", dir);
    struct stat sb;
    cr_expect_neq(stat(runs, &sb), 0, "a run folder was created for a bad config");

    fp = fopen(cfg, "w");
    fprintf(fp, "out_dir: %s/runs\n", dir);
    fclose(fp);
    cr_expect_eq(cli((const char *[]){"train", cfg, "--set", "backend=avx9", NULL}), 2);
    read_err(msg, sizeof msg);
    cr_expect(strstr(msg, "backend") && strstr(msg, "avx9"), "message: %s", msg);
    cr_expect_neq(stat(runs, &sb), 0);

    /* The sequence keys: a bad word at its line, and token inputs on an image dataset. */
    fp = fopen(cfg, "w");
    fprintf(fp, "out_dir: %s/runs\npos_emb: chunky\n", dir);
    fclose(fp);
    cr_expect_eq(cli((const char *[]){"train", cfg, NULL}), 2);
    read_err(msg, sizeof msg);
    cr_expect(strstr(msg, "bad.cfg:2: pos_emb: expected global or chunk") != NULL, "message: %s", msg);
    cr_expect_neq(stat(runs, &sb), 0);
    fp = fopen(cfg, "w");
    fprintf(fp, "out_dir: %s/runs\ninput: tokens\nvocab_size: 5\nseq_len: 64\n", dir);
    fclose(fp);
    cr_expect_eq(cli((const char *[]){"train", cfg, "--set", "adam_epsilon=-1", NULL}), 2);
    read_err(msg, sizeof msg);
    cr_expect(strstr(msg, "adam_epsilon: must be in (0, 1]") != NULL, "message: %s", msg);
    cr_expect_eq(cli((const char *[]){"train", cfg, NULL}), 2);
    read_err(msg, sizeof msg);
    cr_expect(strstr(msg, "bad.cfg:2: input: tokens needs a token dataset") != NULL, "message: %s", msg);
    cr_expect_neq(stat(runs, &sb), 0);

    cr_expect_eq(cli((const char *[]){"train", "/nonexistent/x.cfg", NULL}), 2);
    cr_expect_eq(cli((const char *[]){"frobnicate", NULL}), 2);
}

Test(cli, check_passes_golden_and_fails_garbage)
{
    cr_expect_eq(cli((const char *[]){"check", "tests/data/tiny_paper.safetensors", NULL}), 0);
    /* not a safetensors file: bad input, as a NaN-holding one is */
    cr_expect_eq(cli((const char *[]){"check", "tests/test_train.c", NULL}), 2);
}

/* Out of memory for the AdamW moments: status 1 with a message (it was left
 * unset). The test binary's allocator fails exactly that calloc. */
Test(train, adam_moments_out_of_memory_is_reported, .timeout = 120)
{
    char out[] = "/tmp/tlb_oom_XXXXXX";
    run_config c;
    one_epoch_config(&c, out, "oom");
    tlb_model m;
    tlb_error err = {0};
    cr_assert_eq(model_create(&m, &c.model, &err), 0, "%s", err.msg);
    const size_t n = model_num_params(&m);
    model_destroy(&m);
    train_summary s;
    alloc_fail_calloc_of(n * sizeof(float));
    const int status = train_run(&c, NULL, &s, &err);
    alloc_fail_calloc_of(0);
    cr_expect_eq(status, 1);
    cr_expect(strstr(err.msg, "out of memory for the AdamW moments") != NULL, "message: '%s'", err.msg);
}

/* bf16_activations: auto (the default) saves the FFN's h in bf16 exactly
 * where the dense layers run bf16 (mixed precision); true and false pin it.
 * Which precision runs depends on the CPU: TLB_BF16=always makes mixed
 * precision run wherever the CPU has AVX512_BF16, so each CPU checks its own
 * expectation; without AVX512_BF16 mixed_precision: true runs fp32. */
Test(train, bf16_activations_auto_follows_mixed_precision, .timeout = 240)
{
    test_ensure_cifar10();
    setenv("TLB_BF16", "always", 1);
    const int bf16 = ops_mixed_precision_supported();
    static const char *const h_words[] = {"auto", "true", "false"};
    for (int mixed = 0; mixed <= 1; mixed++)
        for (int w = 0; w < 3; w++) {
            char out[] = "/tmp/tlb_h16_XXXXXX", text[2048];
            cr_assert_not_null(test_mkdtemp(out));
            snprintf(text, sizeof text,
                     "%sname: h16\ntrain_limit: 64\neval_limit: 32\nbatch_size: 32\nepochs: 1\n"
                     "mixed_precision: %s\nbf16_activations: %s\n",
                     tiny_model, mixed ? "true" : "false", h_words[w]);
            const train_summary s = train_text(text, out);
            const int dense16 = mixed && bf16, h16 = w == 1 || (w == 0 && dense16);
            char want[40];
            snprintf(want, sizeof want, "%s%s", dense16 ? "bf16 dense" : "fp32", h16 ? ", bf16 h" : "");
            cr_expect_str_eq(s.precision, want, "mixed_precision %d, bf16_activations %s", mixed, h_words[w]);
        }
}

/* The trainer's micro-batch rule for the seed at batch 2048: the 1.5 GiB
 * budget (410 on the automatic fp32 plan of the machines measured), and in
 * mixed precision no more than 1024 chunk tokens a thread: 2 threads x 128
 * samples = 256, 1 thread 128. Only the op table's bf16 flag is read (the
 * plan is sized, nothing runs), so this holds on every CPU. */
Test(train, mixed_precision_caps_the_micro_batch_per_thread)
{
    const tlb_model_config c = model_config_seed();
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    op_table ops;
    cr_assert_eq(ops_table_select(&ops, NULL, &err), 0, "%s", err.msg);
    const int threads = omp_get_max_threads();
    omp_set_num_threads(2);
    model_use_ops(&m, &ops);
    const int fp32 = train_choose_micro_batch(&m, 2048, 0);
    cr_expect_gt(fp32, 256, "fp32's budget rule: %d", fp32);
    ops.bf16_dense = 1;
    model_use_ops(&m, &ops);
    cr_expect_eq(train_choose_micro_batch(&m, 2048, 0), 256);
    cr_expect_eq(train_choose_micro_batch(&m, 2048, 300), 300, "a config's micro_batch is taken as it is");
    cr_expect_eq(train_choose_micro_batch(&m, 200, 0), 200, "a batch below the cap is one micro-batch");
    omp_set_num_threads(1);
    cr_expect_eq(train_choose_micro_batch(&m, 2048, 0), 128);
    omp_set_num_threads(threads);
    model_destroy(&m);
}
