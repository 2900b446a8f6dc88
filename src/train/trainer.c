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
#include "train/init.h"
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

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Loss and accuracy over a whole split, in micro-batches, without dropout. */
static void evaluate(tlb_model *m, loader *l, double *loss, double *acc)
{
    double sum = 0.0;
    long correct = 0, seen = 0;
    loader_start_epoch(l, 0);
    for (int b = 0; b < loader_num_batches(l); b++) {
        const loader_batch *batch = loader_next(l);
        for (int at = 0; at < batch->size; at += m->capacity) {
            const int n = batch->size - at < m->capacity ? batch->size - at : m->capacity;
            const size_t img = (size_t)m->config.image_size * m->config.image_size * 3;
            sum += model_forward(m, batch->x + at * img, batch->y + at, n, NULL);
            for (int i = 0; i < n; i++)
                correct += argmax(m->logits + (size_t)i * m->config.num_classes, m->config.num_classes) ==
                           batch->y[at + i];
        }
        seen += batch->size;
    }
    *loss = seen ? sum / seen : NAN;
    *acc = seen ? (double)correct / seen : NAN;
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
    cifar10_view train, val, test = cifar10_view_all(&s->test_set);
    if (cifar10_split(&train, &val, &s->train_set, c->train_slice, err) != 0) return -1;
    if (c->train_limit > 0 && c->train_limit < train.count) train.count = c->train_limit;
    if (c->eval_limit > 0 && c->eval_limit < val.count) val.count = c->eval_limit;
    if (c->eval_limit > 0 && c->eval_limit < test.count) test.count = c->eval_limit;
    if (train.count < c->batch_size)
        return tlb_fail(err, "batch_size: %d is larger than the %d training images", c->batch_size, train.count);
    const int S = c->model.image_size;
    /* One worker thread prepares batches ahead; evaluation batches are
     * smaller so their buffers stay small. */
    loader_config train_cfg = {.batch_size = c->batch_size, .image_size = S, .train = 1,
                               .shuffle = c->shuffle == SHUFFLE_ONCE ? LOADER_SHUFFLE_ONCE : LOADER_SHUFFLE_EPOCH,
                               .drop_last = 1, .num_threads = 1, .depth = 3, .seed = c->seed};
    loader_config eval_cfg = {.batch_size = 500, .image_size = S, .train = 0, .shuffle = LOADER_SHUFFLE_NONE,
                              .drop_last = 0, .num_threads = 1, .depth = 3, .seed = c->seed};
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

    const char *nan_env = getenv("TLB_TEST_NAN_AT_STEP");
    const train_stepper stepper = {
        .model = &s.model, .adam_m = s.adam_m, .adam_v = s.adam_v,
        .hparams = adamw_keras_defaults((float)c->learning_rate, (float)c->weight_decay),
        .micro_batch = mb, .nan_at_step = nan_env ? atol(nan_env) : 0};
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
            train_step_result r;
            if (train_step(&stepper, batch->x, batch->y, batch->size, pos.step + 1,
                           rng_key(dropout_root, (uint64_t)pos.step), (float)c->learning_rate, &r, err) != 0) {
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
        evaluate(&s.model, s.val, &row.val_loss, &row.val_acc);
        char extra[128];
        snprintf(extra, sizeof extra, "val_loss: %.4f - val_acc: %.4f", row.val_loss, row.val_acc);
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

    evaluate(&s.model, s.val, &out->val_loss, &out->val_acc);
    evaluate(&s.model, s.test, &out->test_loss, &out->test_acc);
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
