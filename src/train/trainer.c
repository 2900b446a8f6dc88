#include "train/trainer.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/cifar10.h"
#include "data/fetch.h"
#include "data/loader.h"
#include "model/model.h"
#include "ops/ops.h"
#include "train/adamw.h"
#include "train/checkpoint.h"
#include "train/data_config.h"
#include "train/evaluate.h"
#include "train/init.h"
#include "train/lr_schedule.h"
#include "train/progress.h"
#include "train/run_files.h"
#include "train/train_step.h"
#include "util/rng.h"

/* Activation memory for one micro-batch when the config leaves it to us
 * (train_choose_micro_batch). */
#define MICRO_BATCH_BUDGET ((size_t)1536 << 20)

static int mkdir_p(const char *path, tlb_error *err)
{
    char buf[1200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return tlb_fail(err, "%s: cannot create folder: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return tlb_fail(err, "%s: cannot create folder: %s", buf, strerror(errno));
    if (access(buf, W_OK) != 0) return tlb_fail(err, "%s: folder is not writable", buf);
    return 0;
}

int train_choose_micro_batch(const tlb_model *m, int batch_size, int requested)
{
    if (requested > 0) return requested < batch_size ? requested : batch_size;
    const size_t per_sample = model_plan_bytes(m, 64) / 64 + 1;
    int mb = (int)(MICRO_BATCH_BUDGET / per_sample);
    if (mb < 1) mb = 1;
    if (mb > batch_size) mb = batch_size;
    const int parts = (batch_size + mb - 1) / mb;
    return (batch_size + parts - 1) / parts;
}

/* Loss and accuracy over a whole split (evaluate.c); with div, also the
 * final slow state's diversity averaged over the images. */
static int evaluate(tlb_model *m, loader *l, double *loss, double *acc, state_diversity *div,
                    tlb_error *err)
{
    eval_metrics e;
    if (eval_metrics_init(&e, m->config.num_classes, err) != 0) return -1;
    evaluate_run(m, l, &e, div, NULL, NULL);
    *loss = eval_loss(&e);
    *acc = eval_accuracy(&e);
    eval_metrics_free(&e);
    return 0;
}

int train_load_run_config(run_config *config, const char *run_dir, tlb_error *err)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/config.cfg", run_dir);
    if (run_config_load(config, path, err) != 0) return -1;
    return run_config_validate(config, err);
}

typedef struct {
    tlb_model model;
    float *adam_m, *adam_v;
    cifar10_set train_set, test_set;
    loader *train, *val, *test;
    run_files files;
} run_state;

static void run_state_free(run_state *s)
{
    loader_destroy(s->train);
    loader_destroy(s->val);
    loader_destroy(s->test);
    cifar10_free(&s->train_set);
    cifar10_free(&s->test_set);
    free(s->adam_m);
    free(s->adam_v);
    model_destroy(&s->model);
    run_files_close(&s->files);
}

static int open_data(run_state *s, const run_config *c, tlb_error *err)
{
    char dir[1024];
    const char *data_dir = c->data_dir[0] ? c->data_dir : cifar10_default_dir(dir, sizeof dir);
    /* Loading verifies every file's size and hash; fetch only when that fails. */
    if (cifar10_load(&s->train_set, &s->test_set, data_dir, err) != 0) {
        /* TLB_NO_FETCH=1: report the problem instead of downloading (tests, offline machines). */
        const char *no_fetch = getenv("TLB_NO_FETCH");
        if (no_fetch && strcmp(no_fetch, "0") != 0)
            return tlb_fail_prefix(err, "CIFAR-10 is missing or invalid and TLB_NO_FETCH is set");
        fprintf(stderr, "CIFAR-10 is missing or invalid (%s): fetching it\n", err->msg);
        if (cifar10_fetch(data_dir, err) != 0) return -1;
        if (cifar10_load(&s->train_set, &s->test_set, data_dir, err) != 0) return -1;
    }
    cifar10_view train, val, test, unused;
    if (cifar10_split(&train, &unused, &s->train_set, c->train_slice, err) != 0) return -1;
    if (evaluate_view(&val, c, &s->train_set, &s->test_set, EVAL_SPLIT_VAL, err) != 0) return -1;
    if (evaluate_view(&test, c, &s->train_set, &s->test_set, EVAL_SPLIT_TEST, err) != 0) return -1;
    if (c->train_limit > 0 && c->train_limit < train.count) train.count = c->train_limit;
    if (train.count < c->batch_size)
        return tlb_fail(err, "batch_size: %d is larger than the %d training images", c->batch_size, train.count);
    /* One worker thread prepares batches ahead, with the run's augmentation. */
    const loader_config train_cfg = train_loader_config(c);
    const loader_config eval_cfg = evaluate_loader_config(c);
    if (loader_create(&s->train, &train, &train_cfg, err) != 0) return -1;
    if (loader_create(&s->val, &val, &eval_cfg, err) != 0) return -1;
    if (loader_create(&s->test, &test, &eval_cfg, err) != 0) return -1;
    return 0;
}

void train_resolve_threads(run_config *c)
{
    if (c->threads == 0) c->threads = omp_get_max_threads();
}

int train_run(const run_config *config, const train_options *opt, train_summary *out, tlb_error *err)
{
    run_state s;
    memset(&s, 0, sizeof s);
    memset(out, 0, sizeof *out);
    const double t_start = progress_now();
    int status = 1;

    /* A new run records the thread count it uses (the shard count orders the
     * gradient sums), in its hash and config.cfg, so a resume runs with the
     * same count. A run folder from before that may hold threads: 0: it
     * resumes as it was written (all cores), its hash unchanged. */
    run_config resolved = *config;
    if (!(opt && opt->resume_dir)) train_resolve_threads(&resolved);
    const run_config *c = &resolved;
    if (c->threads > 0) omp_set_num_threads(c->threads);
    if (ops_select(c->backend, err) != 0) return 2;
    /* mixed_precision where it pays (AVX512_BF16): dense layers in bf16. */
    const int bf16 = c->mixed_precision && ops_set_mixed_precision(1) == 0;
    out->precision = bf16 ? "bf16 dense" : "fp32";

    /* The run folder: new, or the one being resumed. */
    if (opt && opt->resume_dir) snprintf(out->run_dir, sizeof out->run_dir, "%s", opt->resume_dir);
    else run_config_run_dir(c, out->run_dir, sizeof out->run_dir);
    char ckpt[1300];
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", out->run_dir);
    const int resuming = opt && opt->resume_dir;
    if (!resuming && access(ckpt, F_OK) == 0) {
        tlb_fail(err, "%s already holds a run: resume it with --resume %s, or remove it", out->run_dir, out->run_dir);
        return 2;
    }
    if (mkdir_p(out->run_dir, err) != 0) return 2;
    /* A run killed inside a checkpoint write (SIGKILL, power loss) leaves
     * checkpoint.safetensors.tmp.PID behind. */
    checkpoint_remove_stale_tmp(ckpt, stderr);

    if (model_create(&s.model, &c->model, err) != 0) return 2;
    const size_t n = model_num_params(&s.model);
    out->num_params = n;
    s.adam_m = calloc(n, sizeof(float));
    s.adam_v = calloc(n, sizeof(float));
    const int mb = train_choose_micro_batch(&s.model, c->batch_size, c->micro_batch);
    out->micro_batch = mb;
    if (!s.adam_m || !s.adam_v || model_plan(&s.model, mb, err) == 0) goto done;

    train_position pos = {0, 0, 0};
    const uint64_t hash = run_config_hash(c);
    if (resuming) {
        if (checkpoint_load(ckpt, &s.model, s.adam_m, s.adam_v, &pos, hash, err) != 0) {
            status = 2;
            goto done;
        }
    } else {
        init_keras(&s.model, c->seed);
    }
    if (run_files_open(&s.files, out->run_dir, c, resuming ? pos.epoch : 0, err) != 0) {
        status = 2;
        goto done;
    }
    if (open_data(&s, c, err) != 0) goto done;
    char grid[sizeof out->run_dir + 16];
    snprintf(grid, sizeof grid, "%s/augmented.png", out->run_dir);
    if (!resuming && train_plot_first_batch(grid, s.train, c, err) != 0) goto done; /* what the model is fed */

    fprintf(stderr, "run %s: %zu parameters, batch %d in micro-batches of %d, %d threads\n",
            out->run_dir, n, c->batch_size, mb, omp_get_max_threads());
    if (bf16)
        fprintf(stderr, "mixed precision: dense layers multiply bf16 operands with fp32 accumulation;"
                        " weights, optimizer state and every other op stay fp32\n");
    else if (c->mixed_precision)
        fprintf(stderr, "note: mixed_precision needs AVX512_BF16, which this CPU lacks;"
                        " training runs in fp32 (BENCHMARKS.md, \"Mixed precision\")\n");
    if (resuming)
        fprintf(stderr, "resuming at epoch %d, batch %d (step %ld)\n", pos.epoch + 1, pos.batch_in_epoch, pos.step);

    /* The rate of each step is a function of the step alone (a resume sees the same rates). */
    const lr_schedule lr = {c->lr_schedule, c->learning_rate, c->min_lr, c->warmup_epochs,
                            loader_num_batches(s.train), (long)c->epochs * loader_num_batches(s.train)};
    const char *nan_env = getenv("TLB_TEST_NAN_AT_STEP");
    const train_stepper stepper = {
        .model = &s.model, .adam_m = s.adam_m, .adam_v = s.adam_v,
        .hparams = adamw_keras_defaults((float)c->learning_rate, (float)c->weight_decay),
        .micro_batch = mb, .grad_clip = (float)c->grad_clip, .nan_at_step = nan_env ? atol(nan_env) : 0};
    const uint64_t dropout_root = rng_key(c->seed, 0xd7);
    long images_total = 0;
    double compute_seconds = 0.0;

    for (int epoch = pos.epoch; epoch < c->epochs; epoch++) {
        const int steps = loader_num_batches(s.train);
        progress bar;
        progress_begin(&bar, stdout, steps);
        fprintf(stdout, "Epoch %d/%d\n", epoch + 1, c->epochs);
        double loss_sum = 0.0;
        long correct = 0, seen = 0;
        const int first = epoch == pos.epoch ? pos.batch_in_epoch : 0;
        loader_start_epoch_at(s.train, epoch, first);
        const double t_epoch = progress_now();
        for (int step = first; step < steps; step++) {
            const loader_batch *batch = loader_next(s.train);
            const double t0 = progress_now();
            /* Mixup/cutmix partners (NULL when off) and label smoothing. */
            const model_targets targets = {batch->y2, batch->lam, (float)c->label_smoothing};
            train_step_result r;
            if (train_step(&stepper, batch->x, batch->y, &targets, batch->size, pos.step + 1,
                           rng_key(dropout_root, (uint64_t)pos.step), (float)lr_at_step(&lr, pos.step), &r,
                           err) != 0) {
                fputc('\n', stdout);
                if (r.nonfinite)
                    tlb_fail(err, "step %ld (epoch %d, batch %d): non-finite %s%s; the last good checkpoint is %s",
                             pos.step + 1, epoch + 1, step + 1, strcmp(r.nonfinite, "loss") ? "gradient of " : "",
                             r.nonfinite, ckpt);
                else
                    tlb_fail_prefix(err, "step %ld (epoch %d, batch %d)", pos.step + 1, epoch + 1, step + 1);
                goto done;
            }
            correct += r.correct;
            const double batch_loss = r.loss;
            pos.step++;
            compute_seconds += progress_now() - t0;
            loss_sum += batch_loss;
            seen += batch->size;
            images_total += batch->size;
            progress_update(&bar, step + 1 - first, seen, loss_sum / seen, (double)correct / seen);

            const int signalled = opt && opt->stop_signal && *opt->stop_signal;
            if (signalled || (opt && opt->stop_after_steps && pos.step >= opt->stop_after_steps)) {
                pos.epoch = epoch;
                pos.batch_in_epoch = step + 1;
                fputc('\n', stdout);
                if (checkpoint_save(ckpt, &s.model, s.adam_m, s.adam_v, &pos, hash, s.files.config_text, err) != 0)
                    goto done;
                fprintf(stderr, "stopped after step %ld; resume with: tlb train --resume %s\n", pos.step, out->run_dir);
                status = signalled ? 128 + (int)*opt->stop_signal : 128;
                goto done;
            }
        }
        run_epoch_metrics row = {.epoch = epoch + 1, .train_loss = seen ? loss_sum / seen : NAN,
                                 .train_acc = seen ? (double)correct / seen : NAN,
                                 .seconds = progress_now() - t_epoch};
        row.images_per_second = seen / row.seconds;
        state_diversity div;
        if (evaluate(&s.model, s.val, &row.val_loss, &row.val_acc, &div, err) != 0) goto done;
        row.state_cosine = div.cosine;
        row.state_rank = div.rank;
        char extra[160];
        /* The slow state's rows after the last chunk: cosine 1 and rank 1 = collapsed. */
        snprintf(extra, sizeof extra, "val_loss: %.4f - val_acc: %.4f - state_cos: %.3f - state_rank: %.2f",
                 row.val_loss, row.val_acc, row.state_cosine, row.state_rank);
        progress_end(&bar, seen, row.train_loss, row.train_acc, extra);
        pos.epoch = epoch + 1;
        pos.batch_in_epoch = 0;
        if (run_files_add_epoch(&s.files, &row, err) != 0) goto done;
        if (checkpoint_save(ckpt, &s.model, s.adam_m, s.adam_v, &pos, hash, s.files.config_text, err) != 0)
            goto done;
        out->train_loss = row.train_loss;
        out->train_acc = row.train_acc;
        out->val_loss = row.val_loss;
        out->val_acc = row.val_acc;
        out->epochs_done = epoch + 1;
    }
    if (out->epochs_done == 0 && pos.epoch >= c->epochs) out->epochs_done = pos.epoch;

    state_diversity div;
    if (evaluate(&s.model, s.val, &out->val_loss, &out->val_acc, &div, err) != 0 ||
        evaluate(&s.model, s.test, &out->test_loss, &out->test_acc, NULL, err) != 0)
        goto done;
    out->state_cosine = div.cosine;
    out->state_rank = div.rank;
    out->wall_seconds = progress_now() - t_start;
    out->images_per_second = compute_seconds > 0 ? images_total / compute_seconds : 0.0;
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) == 0) out->peak_rss_mib = (double)usage.ru_maxrss / 1024.0;
    fprintf(stdout, "test_loss: %.4f - test_acc: %.4f - val_acc: %.4f - %.0f s\n", out->test_loss,
            out->test_acc, out->val_acc, out->wall_seconds);
    if (run_files_finish(&s.files, out, &s.model, s.test, err) != 0) goto done;
    status = 0;
done:
    run_state_free(&s);
    return status;
}
