/* One training run: data, model, the epoch loop with micro-batched gradient
 * accumulation and AdamW, evaluation, the run folder (config, metrics.csv,
 * checkpoint, summary.json, plots), resume and graceful interruption. */
#ifndef TLB_TRAINER_H
#define TLB_TRAINER_H

#include <signal.h>

#include "model/model.h"
#include "train/numerics.h"
#include "train/run_config.h"

typedef struct {
    const char *resume_dir;            /* continue this run folder, or NULL */
    volatile sig_atomic_t *stop_signal; /* set by SIGINT/SIGTERM handlers: finish the step, checkpoint, stop */
    long stop_after_steps;             /* tests: behave as if signalled after this many steps (0 = never) */
    int accept_numerics;               /* resume even if the backends or precision differ from the checkpoint's */
    int resume_epochs_was;             /* a resume whose --set epochs changed config.cfg's: its value there, else 0 */
    const char *build;                 /* this program's build (`tlb --version`), recorded with the run; NULL: none */
} train_options;

typedef struct {
    char run_dir[1200];
    int epochs_done;
    double train_loss, train_acc, val_loss, val_acc, test_loss, test_acc;
    double state_cosine, state_rank; /* the final slow state's diversity on the validation images */
    double wall_seconds, images_per_second; /* across resumes */
    long train_images;      /* images trained on, across resumes */
    int finished;           /* a resume of a finished run: nothing was done or written */
    int extended_from;      /* the epochs the run folder was named for, when a resume extended it; else 0 */
    double peak_rss_mib;    /* the process's peak resident memory */
    size_t num_params;
    int micro_batch;
    const char *precision;  /* "bf16 dense" (mixed_precision on this CPU) or "fp32" */
    run_numerics numerics;  /* the backend each op ran on, and the precision */
    char data_dir[1024];    /* where the run looked for CIFAR-10 */
    int data_missing;       /* status 1 because CIFAR-10 is missing or invalid there: fetch and retry */
} train_summary;

/* threads: 0 (all cores) becomes the count OpenMP would use
 * (omp_get_max_threads: OMP_NUM_THREADS, else the cores available). Results
 * depend on the thread count (it is the shard count, which orders the
 * weight-gradient sums), so a new run hashes and records the resolved
 * count; train_run does this itself, cmd_train also for the sweep folder. */
void train_resolve_threads(run_config *c);

/* world_size: a new run records the number of MPI processes it runs in
 * (dist_size); a config value other than 1 must match it, and a resumed run
 * (resume_dir) must run in as many as it was trained in. Fails with a
 * message naming the mpirun command that would match. */
int train_resolve_world(run_config *c, const char *resume_dir, tlb_error *err);

/* Exit statuses: 0 done (also a resume of a finished run, which changes
 * nothing and sets summary->finished), 1 failure (message in err), 2 bad
 * input, 128 + signal when stopped by a signal after writing a checkpoint. */
int train_run(const run_config *config, const train_options *opt, train_summary *out,
              tlb_error *err);

/* The micro-batch a run uses: `requested` (the config's micro_batch) capped
 * at the batch, or when it is 0 the largest whose activations fit a 1.5 GiB
 * budget (model_plan_bytes) -- in mixed precision (m's ops run dense in
 * bf16) no more than 1024 chunk tokens a thread (omp_get_max_threads(), the
 * shard count) -- evened out so the batch splits into equal parts (the last
 * one smaller by less than the number of parts). A resume passes the
 * micro-batch its checkpoint recorded. bench/step.c uses it too, so the
 * benchmark times the trainer's split. */
int train_choose_micro_batch(const tlb_model *m, int batch_size, int requested);

/* Reads RUN_DIR/config.cfg (as written by a run) for --resume. */
int train_load_run_config(run_config *config, const char *run_dir, tlb_error *err);

#endif
