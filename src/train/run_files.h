/* The run folder runs/<name>-<hash>/: config.cfg (the canonical resolved
 * config), metrics.csv (a row per epoch), checkpoint.safetensors (by the
 * trainer), summary.json, loss.png and accuracy.png, and attention.png
 * (the slow state's attention over each chunk's tokens: max over the state
 * rows and each row). Every file is
 * rewritten whole and atomically, so a crash never leaves half a file. */
#ifndef TLB_RUN_FILES_H
#define TLB_RUN_FILES_H

#include "data/cifar10_classes.h"
#include "data/loader.h"
#include "data/source.h"
#include "model/model.h"
#include "train/trainer.h"

typedef struct {
    int epoch;
    double train_loss, train_acc, val_loss, val_acc, seconds, images_per_second;
    /* The slow state's diversity on the validation images after the last
     * chunk (model/state_diversity.h); NaN in rows of older metrics.csv. */
    double state_cosine, state_rank;
    double learning_rate; /* the rate of the epoch's last step; NaN in rows of older metrics.csv */
} run_epoch_metrics;

typedef struct {
    char dir[1200];
    char *config_text;
    run_epoch_metrics *rows;
    int num_rows, capacity;
    cifar10_classes classes; /* for captions */
    int num_classes;         /* chance accuracy on the accuracy curve: 1 / num_classes */
    char dataset[32];        /* the run's dataset (what attention.png draws on) */
} run_files;

/* Writes config.cfg; keeps the first `keep_epochs` rows of an existing
 * metrics.csv (a resumed run continues its table). */
int run_files_open(run_files *f, const char *dir, const run_config *c, int keep_epochs,
                   tlb_error *err);
/* Appends a row and rewrites metrics.csv and curves.png. */
int run_files_add_epoch(run_files *f, const run_epoch_metrics *row, tlb_error *err);
/* summary.json and attention.png (from the first images of `test`). */
int run_files_finish(run_files *f, const train_summary *s, tlb_model *m, data_source *test,
                     tlb_error *err);
void run_files_close(run_files *f);

/* The "epochs" of dir/summary.json (written when a run finishes), or -1
 * when it is missing or unreadable: a run is finished when this reaches its
 * config's epochs. */
int run_files_finished_epochs(const char *dir);


#endif
