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
#include "data/fetch.h" /* cifar10_default_dir */
#include "data/listops.h"
#include "data/loader.h"
#include "data/lra_image.h"
#include "data/source.h"
#include "train/sequences.h"
#include "model/model.h"
#include "ops/ops.h"
#include "train/adamw.h"
#include "train/best_checkpoint.h"
#include "train/checkpoint.h"
#include "train/data_config.h"
#include "train/dist.h"
#include "train/evaluate.h"
#include "train/init.h"
#include "train/init_from.h"
#include "train/lr_schedule.h"
#include "train/progress.h"
#include "train/run_files.h"
#include "train/run_lock.h"
#include "train/train_step.h"
#include "util/fs.h"
#include "util/rng.h"

#include <xxhash.h>

/* Activation memory for one micro-batch when the config leaves it to us
 * (train_choose_micro_batch). */
#define MICRO_BATCH_BUDGET ((size_t)1536 << 20)

/* Mixed precision's rows a shard (a thread) takes a micro-batch: at most this
 * many chunk tokens (samples x chunk_size), the size at which a shard's
 * products and the passes between them ran fastest per image on both
 * AVX512_BF16 machines measured (BENCHMARKS.md, "Session 19"). */
#define MIXED_SHARD_ROWS 1024

/* The rule; mixed_cap 0 leaves out mixed precision's cap (the rule of the
 * builds before it, for their checkpoints). */
static int micro_batch_rule(const tlb_model *m, int batch_size, int mixed_cap)
{
    const size_t per_sample = model_plan_bytes(m, 64) / 64 + 1;
    int mb = (int)(MICRO_BATCH_BUDGET / per_sample);
    if (mixed_cap && m->ops.bf16_dense) {
        const int per_shard = m->config.chunk_size < MIXED_SHARD_ROWS ? MIXED_SHARD_ROWS / m->config.chunk_size : 1;
        const long cap = (long)omp_get_max_threads() * per_shard;
        if (mb > cap) mb = (int)cap;
    }
    if (mb < 1) mb = 1;
    if (mb > batch_size) mb = batch_size;
    const int parts = (batch_size + mb - 1) / mb;
    return (batch_size + parts - 1) / parts;
}

int train_choose_micro_batch(const tlb_model *m, int batch_size, int requested)
{
    if (requested > 0) return requested < batch_size ? requested : batch_size;
    return micro_batch_rule(m, batch_size, 1);
}

/* This process's rows of a batch of n: [rank*n/N, (rank+1)*n/N), the rows
 * shard `rank` of N takes in model.c, so N ranks x 1 thread sum what 1
 * process x N threads does. */
static void rank_rows(int n, int *first, int *count)
{
    const int r = dist_rank(), N = dist_size();
    *first = (int)((long)n * r / N);
    *count = (int)((long)n * (r + 1) / N) - *first;
}

/* train_step's reduction in a data-parallel run: one MPI_Allreduce of the
 * flat gradient buffer, then the batch's loss and correct count. */
static int reduce_across_processes(void *ctx, float *grads, size_t n, train_step_result *r, tlb_error *err)
{
    (void)ctx;
    double sums[2] = {r->loss, (double)r->correct};
    if (dist_sum_floats(grads, n, err) != 0 || dist_sum_doubles(sums, 2, err) != 0) return -1;
    r->loss = sums[0];
    r->correct = (long)sums[1];
    return 0;
}

/* A failure on rank 0 while the others go on to the next collective: print
 * it and end every process (a single process just returns its status). */
static void abort_all(tlb_error *err)
{
    if (dist_size() == 1) return;
    fprintf(stderr, "tlb train: %s\n", err->msg);
    dist_abort(1);
}

/* The processes' local statuses (0, or an exit status) agreed on: the
 * highest. When rank 0 failed, its message stands for all (the others'
 * would repeat it: same config, same checks); otherwise the processes that
 * failed keep theirs and rank 0 says that another one failed. */
static int agree_status(int local, tlb_error *err)
{
    const int lead = dist_rank() == 0;
    int v[2] = {local, lead && local != 0};
    tlb_error e2;
    if (dist_max_ints(v, 2, &e2) != 0) {
        *err = e2;
        return 1;
    }
    if (local == 0 || (v[1] && !lead)) err->msg[0] = '\0';
    if (lead && local == 0 && v[0] != 0) tlb_fail(err, "stopped: another process failed (it says why above)");
    return v[0];
}

/* Every rank must hold rank 0's parameters, bit for bit: they all take the
 * same AdamW step on the same reduced gradient. Checked at checkpoints. */
static int check_ranks_agree(const tlb_model *m, const float *adam_m, long step, tlb_error *err)
{
    const size_t n = model_num_params(m);
    const uint64_t digest = XXH3_64bits(m->params, n * sizeof(float)) ^ XXH3_64bits(adam_m, n * sizeof(float));
    int same;
    if (dist_agree_u64(digest, &same, err) != 0) return -1;
    if (!same)
        return tlb_fail(err, "after step %ld the %d processes hold different parameters (rank %d: %016llx)",
                        step, dist_size(), dist_rank(), (unsigned long long)digest);
    return 0;
}

/* Loss and accuracy over a whole split (evaluate.c: each process runs its
 * rows of every batch), summed over the processes; with div, also the final
 * slow state's diversity averaged over the images. */
static int evaluate(model_inference *inf, data_source *l, double *loss, double *acc, state_diversity *div,
                    tlb_error *err)
{
    eval_metrics e;
    if (eval_metrics_init(&e, inf->model->config.num_classes, err) != 0) return -1;
    evaluate_run(inf, l, &e, div, NULL, NULL);
    /* The diversity is a mean over this process's images: weight it by them. */
    const double w = (double)e.count;
    double sums[5] = {w, e.loss_sum, (double)e.top1, div ? div->cosine * w : 0.0, div ? div->rank * w : 0.0};
    const int rc = dist_sum_doubles(sums, 5, err);
    e.count = (long)sums[0];
    e.loss_sum = sums[1];
    e.top1 = (long)sums[2];
    if (div && dist_size() > 1) {
        div->cosine = sums[0] > 0 ? sums[3] / sums[0] : NAN;
        div->rank = sums[0] > 0 ? sums[4] / sums[0] : NAN;
    }
    *loss = eval_loss(&e);
    *acc = eval_accuracy(&e);
    eval_metrics_free(&e);
    return rc;
}

int train_load_run_config(run_config *config, const char *run_dir, tlb_error *err)
{
    char path[1300];
    if (fs_join(path, sizeof path, run_dir, "config.cfg", err) != 0) return -1;
    if (run_config_load(config, path, err) != 0) return -1;
    return run_config_validate(config, err);
}

typedef struct {
    tlb_model model;
    model_inference infer; /* validation and test: the forward-only plan `tlb eval` uses */
    float *adam_m, *adam_v;
    cifar10_set train_set, test_set;
    token_set sequences[DATA_SPLIT_COUNT]; /* token datasets: train, val, test */
    data_source train, val, test;
    run_files files;
    run_lock lock;
} run_state;

/* The tally a checkpoint records at this point of the run (checkpoint.h). */
static train_tally tally_now(double loss_sum, long correct, long seen, double epoch_seconds, double wall_seconds,
                             double compute_seconds, long images, int first_epochs)
{
    return (train_tally){loss_sum, correct, seen, epoch_seconds, wall_seconds, compute_seconds, images, first_epochs};
}

/* The config hash the run's checkpoints were written for before this
 * resume's --set epochs, if any. */
static uint64_t hash_before_extension(const run_config *c, const train_options *opt, uint64_t hash)
{
    if (!opt->resume_epochs_was) return hash;
    run_config before = *c;
    before.epochs = opt->resume_epochs_was;
    return run_config_hash(&before);
}

/* Loads the checkpoint being resumed. When --set epochs extended the run,
 * the checkpoint was written for the config before it (or, after a crash
 * between the two renames of the extension, already for the new one). */
static int load_resumed(const char *ckpt, run_state *s, const run_config *c, const train_options *opt,
                        uint64_t hash, train_position *pos, run_numerics *was, tlb_error *err)
{
    const uint64_t first_hash = hash_before_extension(c, opt, hash);
    if (checkpoint_load(ckpt, &s->model, s->adam_m, s->adam_v, pos, first_hash, was, err) == 0) return 0;
    tlb_error second;
    if (first_hash == hash || checkpoint_load(ckpt, &s->model, s->adam_m, s->adam_v, pos, hash, was, &second) != 0)
        return -1;
    return 0;
}

/* A resume that extends the run (--set epochs) records it: the checkpoint
 * is rewritten for the new config before config.cfg is, so a crash between
 * the two leaves a folder that the same command resumes. */
static int record_extension(const char *ckpt, run_state *s, const run_config *c, const train_options *opt,
                            uint64_t hash, train_position *pos, const run_numerics *numerics, tlb_error *err)
{
    if (!opt->resume_epochs_was || opt->resume_epochs_was == c->epochs) return 0;
    if (!pos->tally.first_epochs) pos->tally.first_epochs = opt->resume_epochs_was;
    const size_t len = run_config_write_canonical(c, NULL, 0);
    char *text = malloc(len + 1);
    if (!text) return tlb_fail(err, "out of memory");
    run_config_write_canonical(c, text, len + 1);
    int rc = checkpoint_save(ckpt, &s->model, s->adam_m, s->adam_v, pos, hash, text, numerics, err);
    if (rc == 0)
        rc = best_checkpoint_rehash(opt->resume_dir, &s->model, s->adam_m, s->adam_v,
                                    hash_before_extension(c, opt, hash), hash, text, numerics, err);
    free(text);
    if (rc == 0)
        fprintf(stderr, "extending the run from %d to %d epochs (recorded in config.cfg and summary.json;"
                        " the folder keeps the name of the %d-epoch config)\n",
                opt->resume_epochs_was, c->epochs, pos->tally.first_epochs);
    return rc;
}

static void run_state_free(run_state *s)
{
    data_source_destroy(&s->train);
    data_source_destroy(&s->val);
    data_source_destroy(&s->test);
    for (int k = 0; k < DATA_SPLIT_COUNT; k++) token_set_free(&s->sequences[k]);
    cifar10_free(&s->train_set);
    cifar10_free(&s->test_set);
    free(s->adam_m);
    free(s->adam_v);
    model_inference_free(&s->infer);
    model_destroy(&s->model);
    run_files_close(&s->files);
    run_lock_release(&s->lock);
}

/* The token loaders; every process reads whole batches (a batch is a cheap
 * copy) and runs its rows. */
static int open_sequences(run_state *s, const run_config *c, const tlb_model_config *m, tlb_error *err)
{
    const token_set *train = &s->sequences[DATA_SPLIT_TRAIN];
    const int n = c->train_limit > 0 && c->train_limit < train->count ? c->train_limit : train->count;
    if (n < c->batch_size)
        return tlb_fail(err, "batch_size: %d is larger than the %d training sequences", c->batch_size, n);
    if (sequence_source(&s->train, &s->sequences[DATA_SPLIT_TRAIN], c, m, 1, err) != 0 ||
        sequence_source(&s->val, &s->sequences[DATA_SPLIT_VAL], c, m, 0, err) != 0 ||
        sequence_source(&s->test, &s->sequences[DATA_SPLIT_TEST], c, m, 0, err) != 0)
        return -1;
    return 0;
}

/* The data, or -1 with *missing set when CIFAR-10 is missing or fails its
 * checks (the command line layer decides whether to fetch it and retry). */
static int open_data(run_state *s, const run_config *c, const tlb_model_config *m, train_summary *out,
                     tlb_error *err)
{
    char dir[sizeof out->data_dir];
    const char *data_dir = c->data_dir[0] ? c->data_dir : cifar10_default_dir(dir, sizeof dir);
    if (!data_dir)
        return tlb_fail(err, "no CIFAR-10 data directory: set data_dir, TLB_DATA_DIR, XDG_CACHE_HOME or HOME");
    if (snprintf(out->data_dir, sizeof out->data_dir, "%s", data_dir) >= (int)sizeof out->data_dir)
        return tlb_fail(err, "data_dir: longer than %zu bytes", sizeof out->data_dir - 1);
    if (m->input == INPUT_TOKENS)
        return sequences_load(s->sequences, &s->train_set, &s->test_set, c, data_dir, &out->data_missing, err) != 0
                   ? -1 : open_sequences(s, c, m, err);
    /* Loading verifies every file's size and hash. */
    if (cifar10_load(&s->train_set, &s->test_set, data_dir, err) != 0) {
        out->data_missing = 1;
        return -1;
    }
    cifar10_view train, val, test, unused;
    if (cifar10_split(&train, &unused, &s->train_set, c->train_slice, err) != 0) return -1;
    if (evaluate_view(&val, c, &s->train_set, &s->test_set, EVAL_SPLIT_VAL, err) != 0) return -1;
    if (evaluate_view(&test, c, &s->train_set, &s->test_set, EVAL_SPLIT_TEST, err) != 0) return -1;
    if (c->train_limit > 0 && c->train_limit < train.count) train.count = c->train_limit;
    if (train.count < c->batch_size)
        return tlb_fail(err, "batch_size: %d is larger than the %d training images", c->batch_size, train.count);
    /* One worker thread prepares batches ahead, with the run's augmentation. */
    loader_config train_cfg = train_loader_config(c), eval_cfg = evaluate_loader_config(c);
    /* Data parallel: each process prepares only the rows it runs. */
    train_cfg.share_index = eval_cfg.share_index = dist_rank();
    train_cfg.share_count = eval_cfg.share_count = dist_size();
    loader *l;
    if (loader_create(&l, &train, &train_cfg, err) != 0) return -1;
    s->train = data_source_of_images(l);
    if (loader_create(&l, &val, &eval_cfg, err) != 0) return -1;
    s->val = data_source_of_images(l);
    if (loader_create(&l, &test, &eval_cfg, err) != 0) return -1;
    s->test = data_source_of_images(l);
    return 0;
}

void train_resolve_threads(run_config *c)
{
    if (c->threads == 0) c->threads = omp_get_max_threads();
}

int train_resolve_world(run_config *c, const char *resume_dir, tlb_error *err)
{
    const int N = dist_size();
    if (resume_dir && c->world_size != N) {
        char how[64] = "one process: ";
        if (c->world_size > 1) snprintf(how, sizeof how, "mpirun -np %d ", c->world_size);
        return tlb_fail(err, "%s/config.cfg: world_size: %d: the run was trained by %d process%s, this is %d;"
                             " resume it with %stlb train --resume %s",
                        resume_dir, c->world_size, c->world_size, c->world_size > 1 ? "es" : "", N, how,
                        resume_dir);
    }
    if (c->world_size != 1 && c->world_size != N)
        return tlb_fail(err, "world_size: %d, but %d process%s started; start it with mpirun -np %d,"
                             " or leave world_size at 1 (the count mpirun starts is recorded)",
                        c->world_size, N, N > 1 ? "es" : "", c->world_size);
    c->world_size = N;
    return 0;
}

int train_run(const run_config *config, const train_options *opt, train_summary *out, tlb_error *err)
{
    run_state s;
    memset(&s, 0, sizeof s);
    s.lock.fd = -1;
    memset(out, 0, sizeof *out);
    const double t_start = progress_now();
    int status = 1, h_bf16_refused = 0, h_auto = 0;
    const int rank = dist_rank(), lead = rank == 0;
    /* Rank 0 alone prints; the others' progress goes nowhere. */
    FILE *console = lead ? stdout : fopen("/dev/null", "w");
    if (!console) return tlb_fail(err, "/dev/null: %s", strerror(errno)), 1;

    /* A new run records the thread count it uses (the shard count orders the
     * gradient sums), in its hash and config.cfg, so a resume runs with the
     * same count. A run folder from before that may hold threads: 0: it
     * resumes as it was written (all cores), its hash unchanged. The MPI
     * process count is recorded the same way (world_size, hashed when not 1). */
    run_config resolved = *config;
    const int resuming = opt && opt->resume_dir;
    if (!resuming) train_resolve_threads(&resolved);
    const run_config *c = &resolved;
    tlb_error init_err;
    const int init_bad = !resuming && init_from_resolve(&resolved, &init_err) != 0;
    train_position pos = {0, 0, 0, {0}};
    char ckpt[1300];
    int mb = 0, share_first = 0, share = 0;
    op_table ops;
    size_t n = 0;
    uint64_t hash = 0;
    /* Setup: a failure on any process stops all of them (agree_status); the
     * run folder is rank 0's alone. */
    int local = 2;
    if (init_bad) {
        *err = init_err;
        goto agree;
    }
    if (train_resolve_world(&resolved, resuming ? opt->resume_dir : NULL, err) != 0) goto agree;
    if (c->threads > 0) omp_set_num_threads(c->threads);
    /* A resumed run computes as it began (mixed precision's choice is measured
     * on the CPU at hand, which may have changed): its checkpoint says how. */
    run_numerics began;
    memset(&began, 0, sizeof began);
    if (resuming) {
        char path[1300];
        tlb_error ignored;
        snprintf(path, sizeof path, "%s/checkpoint.safetensors", opt->resume_dir);
        if (access(path, F_OK) == 0 && checkpoint_numerics(path, &began, &ignored) != 0)
            memset(&began, 0, sizeof began); /* the load below reports what is wrong with it */
    }
    char precision_why[200];
    if (numerics_choose(&ops, c->backend, c->mixed_precision, began.precision, precision_why,
                        sizeof precision_why, err) != 0)
        goto agree;
    /* Where h was asked for in bf16 (auto included) and stays fp32 (no FFN
     * stage on this backend), the run says so below. */
    h_auto = c->bf16_activations == RUN_CONFIG_AUTO;
    h_bf16_refused = numerics_choose_bf16_h(&ops, c->bf16_activations, began.precision);
    out->precision = ops_table_precision(&ops);
    numerics_of(&out->numerics, &ops);
    if (opt && opt->build) snprintf(out->numerics.build, sizeof out->numerics.build, "%s", opt->build);

    /* The run folder: new, or the one being resumed. */
    if (resuming) {
        if (snprintf(out->run_dir, sizeof out->run_dir, "%s", opt->resume_dir) >= (int)sizeof out->run_dir) {
            tlb_fail(err, "%.200s...: run folder path longer than %zu bytes", opt->resume_dir, sizeof out->run_dir - 1);
            goto agree;
        }
    } else {
        run_config_run_dir(c, out->run_dir, sizeof out->run_dir); /* out_dir and name are bounded: it fits */
    }
    snprintf(ckpt, sizeof ckpt, "%s/checkpoint.safetensors", out->run_dir); /* run_dir < 1200 bytes */
    if (lead) {
        /* One process per run folder: lock it before looking at what it holds. */
        if (access(out->run_dir, F_OK) == 0 && run_lock_acquire(&s.lock, out->run_dir, err) != 0) goto agree;
        if (!resuming && access(ckpt, F_OK) == 0) {
            tlb_fail(err, "%s already holds a run: resume it with --resume %s, or remove it", out->run_dir,
                     out->run_dir);
            goto agree;
        }
        if (resuming && access(ckpt, F_OK) != 0 && errno == ENOENT) {
            tlb_fail(err, "%s has no checkpoint yet (the run stopped before its first one): start it again with"
                          " `tlb train %s/config.cfg`, or remove the folder", out->run_dir, out->run_dir);
            goto agree;
        }
    }
    /* The data before anything is written: a missing CIFAR-10 leaves no run folder. */
    local = 1;
    tlb_model_config model_cfg; /* the dataset's vocabulary and sequence length resolved */
    run_config_model(c, &model_cfg);
    if (open_data(&s, c, &model_cfg, out, err) != 0) goto agree;
    local = 2;
    if (model_create(&s.model, &model_cfg, err) != 0) goto agree;
    model_use_ops(&s.model, &ops);
    n = model_num_params(&s.model);
    out->num_params = n;
    s.adam_m = calloc(n, sizeof(float));
    s.adam_v = calloc(n, sizeof(float));
    local = 1;
    if (!s.adam_m || !s.adam_v) {
        tlb_fail(err, "out of memory for the AdamW moments (2 x %zu floats)", n);
        goto agree;
    }
    /* Each process plans for its share of the batch. */
    rank_rows(c->batch_size, &share_first, &share);
    /* A resumed run keeps the micro-batch it began with (it orders the
     * gradient sums) where the config left it to the rule, which another
     * build or CPU may resolve differently; a checkpoint of a build before
     * they were recorded (no "micro_batch") was trained under the rule
     * without mixed precision's cap. */
    int recorded_mb = 0;
    if (resuming && c->micro_batch == 0) {
        recorded_mb = began.micro_batch > 0 && began.micro_batch <= share ? began.micro_batch
                                                                            : micro_batch_rule(&s.model, share, 0);
        const int rule = train_choose_micro_batch(&s.model, share, 0);
        if (rule != recorded_mb && lead)
            fprintf(stderr, "note: micro_batch: resuming with the %d samples the run began with (this build"
                            " would take %d)\n", recorded_mb, rule);
    }
    mb = train_choose_micro_batch(&s.model, share, c->micro_batch > 0 ? c->micro_batch : recorded_mb);
    out->micro_batch = mb;
    out->numerics.micro_batch = mb;
    if (model_plan(&s.model, mb, err) != 0) goto agree;
    /* A step's last micro-batch may be smaller: its kernels set up now too. */
    if (share % mb && model_prepare_batch(&s.model, share % mb, err) != 0) goto agree;
    if (model_inference_plan(&s.infer, &s.model, EVALUATE_BATCH, 0, INFER_STATE, err) != 0) goto agree;

    hash = run_config_hash(c);
    local = 2;
    if (lead) {
        if (resuming) {
            run_numerics was;
            if (load_resumed(ckpt, &s, c, opt, hash, &pos, &was, err) != 0) goto agree;
            if (pos.epoch > c->epochs || (pos.epoch == c->epochs && pos.batch_in_epoch > 0)) {
                tlb_fail(err, "%s: epochs: %d is fewer than the %d the run has begun", out->run_dir, c->epochs,
                         pos.epoch + (pos.batch_in_epoch > 0));
                goto agree;
            }
            /* Another backend or precision changes the numbers: the resumed run
             * would not continue the interrupted one bit for bit. */
            char why[400];
            if (numerics_differ(&was, &out->numerics, why, sizeof why)) {
                if (!opt->accept_numerics) {
                    tlb_fail(err, "%s: resuming would change the numerics: %s (TLB_BACKEND or another CPU);"
                                  " pass --accept-numerics to resume anyway", out->run_dir, why);
                    goto agree;
                }
                fprintf(stderr, "note: resuming with different numerics (%s), as --accept-numerics asks\n", why);
            }
            /* Another build may have changed a kernel's arithmetic under the
             * same backend names: say so rather than refuse (rebuilds are
             * routine), since the bit-exact promise holds within one build. */
            if (was.build[0] && out->numerics.build[0] && strcmp(was.build, out->numerics.build) != 0)
                fprintf(stderr, "note: %s was checkpointed by tlb %s and resumes under tlb %s: where the two"
                                " builds' kernels differ, the rest of the run is not bit for bit what %s would"
                                " have computed\n", out->run_dir, was.build, out->numerics.build, was.build);
            /* A finished run (summary.json) stays as it is: resuming it again
             * would rewrite its summary from an evaluation alone. Checked
             * after its checkpoint, which must still load. */
            if (run_files_finished_epochs(out->run_dir) >= c->epochs) {
                err->msg[0] = '\0';
                local = 3;
                goto agree;
            }
        } else {
            init_keras(&s.model, c->seed);
            /* Fine-tuning: another run's parameters, fresh moments. */
            if (c->init_from[0]) {
                if (init_from_load(c->init_from, &s.model, err) != 0) goto agree;
                fprintf(stderr, "parameters from %s\n", c->init_from);
            }
        }
        /* The folder once everything it depends on has loaded: bad input leaves none. */
        if (fs_mkdir_p(out->run_dir, err) != 0 || run_lock_acquire(&s.lock, out->run_dir, err) != 0) goto agree;
        /* A run killed inside a checkpoint write (SIGKILL, power loss) leaves
         * checkpoint.safetensors.tmp.PID behind. */
        checkpoint_remove_stale_tmp(ckpt, stderr);
        char best_ckpt[1400];
        best_checkpoint_path(best_ckpt, sizeof best_ckpt, out->run_dir);
        checkpoint_remove_stale_tmp(best_ckpt, stderr);
        local = 1;
        if (resuming && record_extension(ckpt, &s, c, opt, hash, &pos, &out->numerics, err) != 0) goto agree;
        local = 2;
        if (run_files_open(&s.files, out->run_dir, c, resuming ? pos.epoch : 0, err) != 0) goto agree;
    }
    local = 1;
    char grid[sizeof out->run_dir + 16];
    snprintf(grid, sizeof grid, "%s/augmented.png", out->run_dir);
    if (lead && !resuming && s.train.images &&
        train_plot_first_batch(grid, s.train.images, c, s.files.classes.ptr, err) != 0)
        goto agree; /* what the model is fed */
    local = 0;
agree:
    status = agree_status(local, err);
    if (status == 3) {
        out->finished = 1;
        out->epochs_done = c->epochs;
        if (lead)
            fprintf(console, "%s: finished (%d epochs, summary.json): nothing to do; to train longer:"
                             " tlb train --resume %s --set epochs=N\n", out->run_dir, c->epochs, out->run_dir);
        status = 0;
        goto done;
    }
    if (status != 0) goto done;
    status = 1;
    /* Every rank computes in one precision: mixed precision's choice is
     * measured per process, and a cluster of mixed CPUs could differ. */
    if (dist_size() > 1) {
        int same;
        if (dist_agree_u64(XXH3_64bits(out->precision, strlen(out->precision)), &same, err) != 0) goto done;
        if (!same) {
            tlb_fail(err, "the processes chose different precisions (rank %d: %s): pin one with"
                          " TLB_BF16=always, TLB_BF16=never or mixed_precision: false", dist_rank(), out->precision);
            goto done;
        }
    }
    /* Every rank starts from rank 0's parameters, moments and position. */
    if (dist_broadcast(s.model.params, n * sizeof(float), err) != 0 ||
        dist_broadcast(s.adam_m, n * sizeof(float), err) != 0 ||
        dist_broadcast(s.adam_v, n * sizeof(float), err) != 0 || dist_broadcast(&pos, sizeof pos, err) != 0)
        goto done;

    if (lead) {
        fprintf(stderr, "run %s: %zu parameters, batch %d in micro-batches of %d, %d threads", out->run_dir, n,
                c->batch_size, mb, omp_get_max_threads());
        if (dist_size() > 1) fprintf(stderr, " in each of %d processes (%d samples each)", dist_size(), share);
        fputc('\n', stderr);
        if (ops.bf16_dense)
            fprintf(stderr, "mixed precision: dense layers multiply bf16 operands with fp32 accumulation;"
                            " weights, optimizer state and every other op stay fp32\n");
        else if (precision_why[0])
            fprintf(stderr, "note: mixed_precision: %s (BENCHMARKS.md, \"Mixed precision\")\n", precision_why);
        if (ops_table_saves_h16(&ops))
            fprintf(stderr, "bf16 activations: the FFN's pre-activation h is saved for the backward in bf16"
                            " (fp32 arithmetic; README, \"bf16 activations\")\n");
        else if (h_bf16_refused)
            fprintf(stderr, "note: bf16_activations%s: h stays fp32 here: %s\n", h_auto ? " (auto)" : "",
                    ops.bf16_dense ? "the dense layers run in bf16 without mixed precision's FFN stage (backend)"
                                   : "the ffn is not the fused AVX2 or AVX-512 stage (backend)");
        if (resuming)
            fprintf(stderr, "resuming at epoch %d, batch %d (step %ld)\n", pos.epoch + 1, pos.batch_in_epoch,
                    pos.step);
    }

    /* The rate of each step is a function of the step alone (a resume sees the same rates). */
    const lr_schedule lr = {c->lr_schedule, c->learning_rate, c->min_lr, c->warmup_epochs,
                            data_source_num_batches(&s.train), (long)c->epochs * data_source_num_batches(&s.train)};
    char world_cmd[32] = "";
    snprintf(world_cmd, sizeof world_cmd, "mpirun -np %d ", dist_size());
    const char *nan_env = getenv("TLB_TEST_NAN_AT_STEP");
    const train_stepper stepper = {
        .model = &s.model, .adam_m = s.adam_m, .adam_v = s.adam_v,
        .hparams = {(float)c->learning_rate, (float)c->weight_decay, (float)c->adam_beta1, (float)c->adam_beta2,
                    (float)c->adam_epsilon},
        .micro_batch = mb, .grad_clip = (float)c->grad_clip, .nan_at_step = nan_env ? atol(nan_env) : 0,
        .reduce = dist_size() > 1 ? reduce_across_processes : NULL,
        .first_row = share_first, .global_batch = c->batch_size};
    const uint64_t dropout_root = rng_key(c->seed, 0xd7);
    /* A resumed run counts what was done before it (checkpoint.h, train_tally). */
    const double wall_before = pos.tally.wall_seconds;
    /* The best validation accuracy so far (metrics.csv's rows), for the best checkpoint. */
    double best_val = -1.0;
    for (int i = 0; lead && i < s.files.num_rows; i++)
        if (s.files.rows[i].val_acc > best_val) best_val = s.files.rows[i].val_acc;
    long images_total = pos.tally.images;
    double compute_seconds = pos.tally.compute_seconds;
    const int first_epochs = pos.tally.first_epochs;
    out->extended_from = first_epochs;

    for (int epoch = pos.epoch; epoch < c->epochs; epoch++) {
        const int steps = data_source_num_batches(&s.train);
        progress bar;
        progress_begin(&bar, console, steps);
        if (dist_size() > 1) bar.is_tty = 0; /* mpirun may give rank 0 a pty even when its output goes to a file */
        fprintf(console, "Epoch %d/%d\n", epoch + 1, c->epochs);
        const int first = epoch == pos.epoch ? pos.batch_in_epoch : 0;
        /* A resumed epoch goes on from its sums so far. */
        double loss_sum = first ? pos.tally.loss_sum : 0.0;
        long correct = first ? pos.tally.correct : 0, seen = first ? pos.tally.seen : 0, seen_here = 0;
        const double seconds_before = first ? pos.tally.epoch_seconds : 0.0;
        data_source_start_epoch_at(&s.train, epoch, first);
        const double t_epoch = progress_now();
        for (int step = first; step < steps; step++) {
            const data_batch *batch = data_source_next(&s.train);
            const double t0 = progress_now();
            /* Mixup/cutmix partners (NULL when off) and label smoothing. */
            const model_targets targets = {batch->y2, batch->lam, (float)c->label_smoothing};
            train_step_result r;
            /* This process's rows (drop_last: every training batch is batch_size). */
            const model_targets share_targets = {batch->y2 ? batch->y2 + share_first : NULL,
                                                 batch->lam ? batch->lam + share_first : NULL,
                                                 targets.smoothing};
            if (train_step_padded(&stepper, (const char *)batch->x + (size_t)share_first * batch->sample_bytes,
                                  batch->lengths ? batch->lengths + share_first : NULL, batch->y + share_first,
                                  &share_targets, share, pos.step + 1, rng_key(dropout_root, (uint64_t)pos.step),
                           (float)lr_at_step(&lr, pos.step), &r, err) != 0) {
                fputc('\n', console);
                if (r.nonfinite)
                    tlb_fail(err, "step %ld (epoch %d, batch %d): non-finite %s%s; the last good checkpoint is %s",
                             pos.step + 1, epoch + 1, step + 1, strcmp(r.nonfinite, "loss") ? "gradient of " : "",
                             r.nonfinite, ckpt);
                else
                    tlb_fail_prefix(err, "step %ld (epoch %d, batch %d)", pos.step + 1, epoch + 1, step + 1);
                /* The guard sees the reduced loss and gradients, the same on
                 * every process: rank 0 reports it. */
                if (r.nonfinite && !lead) err->msg[0] = '\0';
                goto done;
            }
            correct += r.correct;
            const double batch_loss = r.loss;
            pos.step++;
            compute_seconds += progress_now() - t0;
            loss_sum += batch_loss;
            seen += batch->size;
            seen_here += batch->size;
            images_total += batch->size;
            progress_update(&bar, step + 1 - first, seen_here, loss_sum / seen, (double)correct / seen);
            const train_tally mid = tally_now(loss_sum, correct, seen, seconds_before + progress_now() - t_epoch,
                                              wall_before + progress_now() - t_start, compute_seconds,
                                              images_total, first_epochs);

            /* checkpoint_every: a kill loses at most that many steps. The
             * epoch's last step is saved at the epoch's end, after evaluation. */
            if (lead && c->checkpoint_every > 0 && pos.step % c->checkpoint_every == 0 && step + 1 < steps) {
                const train_position at = {pos.step, epoch, step + 1, mid};
                if (checkpoint_save(ckpt, &s.model, s.adam_m, s.adam_v, &at, hash, s.files.config_text,
                                    &out->numerics, err) != 0) {
                    fputc('\n', console);
                    abort_all(err);
                    goto done;
                }
            }
            /* A signal may reach one process only: the highest signal
             * number seen anywhere stops every process after this step. */
            int signalled = opt && opt->stop_signal ? (int)*opt->stop_signal : 0;
            if (dist_max_ints(&signalled, 1, err) != 0) goto done;
            if (signalled || (opt && opt->stop_after_steps && pos.step >= opt->stop_after_steps)) {
                pos.epoch = epoch;
                pos.batch_in_epoch = step + 1;
                pos.tally = mid;
                fputc('\n', console);
                if (check_ranks_agree(&s.model, s.adam_m, pos.step, err) != 0) goto done;
                if (lead) {
                    if (checkpoint_save(ckpt, &s.model, s.adam_m, s.adam_v, &pos, hash, s.files.config_text,
                                        &out->numerics, err) != 0)
                        goto done; /* the others stop here too */
                    fprintf(stderr, "stopped after step %ld; resume with: %stlb train --resume %s\n", pos.step,
                            dist_size() > 1 ? world_cmd : "", out->run_dir);
                }
                status = signalled ? 128 + signalled : 128;
                goto done;
            }
        }
        run_epoch_metrics row = {.epoch = epoch + 1, .train_loss = seen ? loss_sum / seen : NAN,
                                 .train_acc = seen ? (double)correct / seen : NAN,
                                 .seconds = seconds_before + progress_now() - t_epoch};
        row.images_per_second = seen / row.seconds;
        row.learning_rate = lr_at_step(&lr, pos.step - 1); /* the epoch's last step's */
        state_diversity div;
        if (evaluate(&s.infer, &s.val, &row.val_loss, &row.val_acc, &div, err) != 0) goto done;
        row.state_cosine = div.cosine;
        row.state_rank = div.rank;
        char extra[160];
        /* The slow state's rows after the last chunk: cosine 1 and rank 1 = collapsed. */
        snprintf(extra, sizeof extra, "val_loss: %.4f - val_acc: %.4f - state_cos: %.3f - state_rank: %.2f",
                 row.val_loss, row.val_acc, row.state_cosine, row.state_rank);
        progress_end(&bar, seen_here, row.train_loss, row.train_acc, extra);
        pos.epoch = epoch + 1;
        pos.batch_in_epoch = 0;
        pos.tally = tally_now(0.0, 0, 0, 0.0, wall_before + progress_now() - t_start, compute_seconds, images_total,
                              first_epochs);
        if (check_ranks_agree(&s.model, s.adam_m, pos.step, err) != 0) goto done;
        /* Rank 0 writes; if that fails the others would wait in the next
         * step's reduction, so it ends them all. */
        const int better = row.val_acc > best_val;
        if (lead && (run_files_add_epoch(&s.files, &row, err) != 0 ||
                     checkpoint_save(ckpt, &s.model, s.adam_m, s.adam_v, &pos, hash, s.files.config_text,
                                     &out->numerics, err) != 0 ||
                     (better && best_checkpoint_update(out->run_dir, ckpt, err) != 0)))
        {
            abort_all(err);
            goto done;
        }
        if (better) best_val = row.val_acc;
        out->train_loss = row.train_loss;
        out->train_acc = row.train_acc;
        out->val_loss = row.val_loss;
        out->val_acc = row.val_acc;
        out->epochs_done = epoch + 1;
    }
    if (out->epochs_done == 0 && pos.epoch >= c->epochs) {
        /* Resumed after the last epoch (a stop during the final evaluation):
         * the final training metrics are the last row's. */
        out->epochs_done = pos.epoch;
        if (lead && s.files.num_rows > 0) {
            out->train_loss = s.files.rows[s.files.num_rows - 1].train_loss;
            out->train_acc = s.files.rows[s.files.num_rows - 1].train_acc;
        }
    }

    state_diversity div;
    if (evaluate(&s.infer, &s.val, &out->val_loss, &out->val_acc, &div, err) != 0 ||
        evaluate(&s.infer, &s.test, &out->test_loss, &out->test_acc, NULL, err) != 0)
        goto done;
    out->state_cosine = div.cosine;
    out->state_rank = div.rank;
    out->wall_seconds = wall_before + progress_now() - t_start;
    out->images_per_second = compute_seconds > 0 ? images_total / compute_seconds : 0.0;
    out->train_images = images_total;
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) == 0) out->peak_rss_mib = (double)usage.ru_maxrss / 1024.0;
    fprintf(console, "test_loss: %.4f - test_acc: %.4f - val_acc: %.4f - %.0f s\n", out->test_loss,
            out->test_acc, out->val_acc, out->wall_seconds);
    if (lead && run_files_finish(&s.files, out, &s.model, &s.test, err) != 0) goto done;
    status = 0;
done:
    run_state_free(&s);
    if (console != stdout) fclose(console);
    return status;
}
