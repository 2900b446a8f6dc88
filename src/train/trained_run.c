#include "train/trained_run.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/fetch.h"
#include "ops/ops.h"
#include "train/best_checkpoint.h"
#include "train/numerics.h"
#include "train/trainer.h"

int trained_run_open(trained_run *r, const char *run_dir, const char *checkpoint, int capacity,
                     unsigned flags, tlb_error *err)
{
    memset(r, 0, sizeof *r);
    struct stat sb;
    if (stat(run_dir, &sb) != 0) return tlb_fail(err, "%s: cannot open run folder: %s", run_dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return tlb_fail(err, "%s: not a run folder (not a directory)", run_dir);
    if (train_load_run_config(&r->config, run_dir, err) != 0) return -1;
    const run_config *c = &r->config;
    if (c->model.num_classes != CIFAR10_NUM_CLASSES)
        return tlb_fail(err, "%s/config.cfg: num_classes: %d, but CIFAR-10 has %d classes to name", run_dir,
                        c->model.num_classes, CIFAR10_NUM_CLASSES);

    if (checkpoint && strcmp(checkpoint, "best") == 0) {
        /* The epoch with the best validation accuracy (best_checkpoint.h). */
        if (best_checkpoint_path(r->checkpoint, sizeof r->checkpoint, run_dir) >= (int)sizeof r->checkpoint)
            return tlb_fail(err, "%s: path too long", run_dir);
        if (stat(r->checkpoint, &sb) != 0)
            return tlb_fail(err, "%s: no best checkpoint (%s is missing): the run has not finished an epoch, or"
                                 " was trained before best checkpoints were kept", run_dir, r->checkpoint);
    } else if (checkpoint) {
        if (snprintf(r->checkpoint, sizeof r->checkpoint, "%s", checkpoint) >= (int)sizeof r->checkpoint)
            return tlb_fail(err, "%s: path too long", checkpoint);
        if (stat(checkpoint, &sb) == 0 && S_ISDIR(sb.st_mode))
            return tlb_fail(err, "%s: is a directory, not a checkpoint", checkpoint);
    } else {
        if (snprintf(r->checkpoint, sizeof r->checkpoint, "%s/checkpoint.safetensors", run_dir) >=
            (int)sizeof r->checkpoint)
            return tlb_fail(err, "%s: path too long", run_dir);
        if (stat(r->checkpoint, &sb) != 0)
            return tlb_fail(err, "%s: no checkpoint yet (%s is missing): train or resume the run first, or name one with --checkpoint FILE",
                            run_dir, r->checkpoint);
    }

    /* Evaluate as the run trained (its checkpoint says whether in bf16). */
    run_numerics trained;
    if (checkpoint_numerics(r->checkpoint, &trained, err) != 0) return -1;
    op_table ops;
    if (numerics_choose(&ops, c->backend, c->mixed_precision, trained.precision, NULL, 0, err) != 0)
        return tlb_fail_prefix(err, "%s/config.cfg: backend", run_dir);
    r->precision = ops_table_precision(&ops);
    tlb_model_config m;
    run_config_model(c, &m); /* a token dataset's vocabulary and sequence length */
    if (model_create(&r->model, &m, err) != 0) return -1;
    model_use_ops(&r->model, &ops);
    const size_t n = model_num_params(&r->model);
    /* checkpoint_load reads the AdamW moments too; inference drops them. */
    float *moments = malloc(2 * n * sizeof(float));
    if (!moments) return tlb_fail(err, "out of memory for %zu parameters", n);
    const int rc = checkpoint_load(r->checkpoint, &r->model, moments, moments + n, &r->position,
                                   run_config_hash(c), NULL, err);
    free(moments);
    if (rc != 0) return -1;
    if (model_inference_plan(&r->infer, &r->model, capacity, 0, flags, err) != 0) return -1;

    if (c->data_dir[0]) snprintf(r->data_dir, sizeof r->data_dir, "%s", c->data_dir);
    else if (!cifar10_default_dir(r->data_dir, sizeof r->data_dir)) r->data_dir[0] = '\0';
    cifar10_classes_load(&r->classes, r->data_dir[0] ? r->data_dir : NULL);
    if (strcmp(c->dataset, "listops") == 0) { /* ListOps' classes are the values 0..9 */
        for (int k = 0; k < CIFAR10_NUM_CLASSES; k++) snprintf(r->classes.names[k], sizeof r->classes.names[k], "%d", k);
        r->classes.from_metadata = 0;
    }
    return 0;
}

void trained_run_close(trained_run *r)
{
    model_inference_free(&r->infer);
    model_destroy(&r->model);
    memset(r, 0, sizeof *r);
}
