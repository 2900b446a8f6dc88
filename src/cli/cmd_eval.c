/* tlb eval RUN_DIR [--split val|test] [--checkpoint FILE|best] [--json] [--out DIR | --no-plots]
 * A trained model on a whole split: loss, top-1 and top-5 accuracy, per
 * class accuracy and the confusion matrix (printed, and as
 * confusion-SPLIT.png in RUN_DIR or --out DIR). The images are the run's
 * own validation or test split, as training evaluated them (eval_limit
 * included). The result is printed before the picture is written, so a
 * read-only or full run folder loses only the picture. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "train/sequences.h"
#include "data/fetch.h"
#include "train/evaluate.h"
#include "train/progress.h"
#include "train/trained_run.h"
#include "util/plot.h"

static int usage(FILE *out)
{
    fprintf(out, "usage: tlb eval RUN_DIR [--split val|test] [--checkpoint FILE|best] [--json] [--out DIR | --no-plots]\n");
    return out == stdout ? 0 : 2;
}

/* CIFAR-10 from data_dir, fetched when missing unless TLB_NO_FETCH is set
 * (the command line decides about the network, not the library). */
static int load_data(cifar10_set *train, cifar10_set *test, const char *data_dir, tlb_error *err)
{
    if (cifar10_load(train, test, data_dir, err) == 0) return 0;
    const char *no_fetch = getenv("TLB_NO_FETCH");
    if (no_fetch && strcmp(no_fetch, "0") != 0)
        return tlb_fail_prefix(err, "CIFAR-10 is missing or invalid and TLB_NO_FETCH is set");
    fprintf(stderr, "CIFAR-10 is missing or invalid (%s): fetching it\n", err->msg);
    if (cifar10_fetch(data_dir, err) != 0) return -1;
    return cifar10_load(train, test, data_dir, err);
}

typedef struct {
    int tty;
    int last_decile;
    double t0;
    const char *unit; /* "images" or "sequences" */
} eval_progress;

static void on_progress(void *arg, long done, long total)
{
    eval_progress *p = arg;
    if (p->tty) {
        fprintf(stderr, "\reval: %ld/%ld %s", done, total, p->unit);
        if (done == total) fputc('\n', stderr);
        return;
    }
    const int decile = total ? (int)(10 * done / total) : 10;
    if (decile == p->last_decile) return;
    p->last_decile = decile;
    fprintf(stderr, "eval: %ld/%ld %s, %.1f s\n", done, total, p->unit, progress_now() - p->t0);
}

/* unit: what a row counts, "images" or "sequences" (a token dataset). */
static void print_text(const trained_run *r, const eval_metrics *e, const char *split, const char *unit,
                       const char *png)
{
    const int V = e->num_classes;
    printf("loss: %.4f - accuracy: %.4f - top-5 accuracy: %.4f (%s split, %ld %s)\n", eval_loss(e),
           eval_accuracy(e), eval_top5_accuracy(e), split, e->count, unit);
    printf("\n%-12s %9s %9s\n", "class", unit, "accuracy");
    for (int k = 0; k < V; k++)
        printf("%-12s %9ld %9.4f\n", r->classes.names[k], eval_class_count(e, k), eval_class_accuracy(e, k));
    printf("\nconfusion matrix (rows: true class, columns: predicted)\n%-12s", "");
    for (int j = 0; j < V; j++) printf(" %5.5s", r->classes.names[j]);
    printf("\n");
    for (int i = 0; i < V; i++) {
        printf("%-12s", r->classes.names[i]);
        for (int j = 0; j < V; j++) printf(" %5ld", e->confusion[(size_t)i * V + j]);
        printf("\n");
    }
    if (png) printf("\nconfusion matrix plot: %s\n", png);
}

/* The counts are keyed by unit ("images" or "sequences"). */
static int print_json(const trained_run *r, const eval_metrics *e, const char *split, const char *unit,
                      const char *png)
{
    const int V = e->num_classes;
    cJSON *j = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "checkpoint", r->checkpoint);
    cJSON_AddStringToObject(j, "split", split);
    cJSON_AddNumberToObject(j, unit, (double)e->count);
    cJSON_AddStringToObject(j, "precision", r->precision);
    cJSON_AddNumberToObject(j, "loss", eval_loss(e));
    cJSON_AddNumberToObject(j, "accuracy", eval_accuracy(e));
    cJSON_AddNumberToObject(j, "top5_accuracy", eval_top5_accuracy(e));
    cJSON_AddStringToObject(j, "class_names", r->classes.from_metadata ? "batches.meta.txt" : "built-in");
    cJSON *classes = cJSON_AddArrayToObject(j, "classes");
    cJSON *matrix = cJSON_AddArrayToObject(j, "confusion");
    for (int k = 0; k < V; k++) {
        cJSON *row = cJSON_CreateObject();
        cJSON_AddStringToObject(row, "name", r->classes.names[k]);
        cJSON_AddNumberToObject(row, unit, (double)eval_class_count(e, k));
        cJSON_AddNumberToObject(row, "accuracy", eval_class_accuracy(e, k));
        cJSON_AddItemToArray(classes, row);
        cJSON *counts = cJSON_CreateArray();
        for (int c = 0; c < V; c++) cJSON_AddItemToArray(counts, cJSON_CreateNumber((double)e->confusion[(size_t)k * V + c]));
        cJSON_AddItemToArray(matrix, counts);
    }
    if (png) cJSON_AddStringToObject(j, "confusion_png", png);
    else cJSON_AddNullToObject(j, "confusion_png");
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return -1;
    printf("%s\n", text);
    free(text);
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    const char *run_dir = NULL, *checkpoint = NULL, *split_name = "val", *out_dir = NULL;
    int json = 0, plots = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--split") == 0 && i + 1 < argc) split_name = argv[++i];
        else if (strcmp(argv[i], "--checkpoint") == 0 && i + 1 < argc) checkpoint = argv[++i];
        else if (strcmp(argv[i], "--out") == 0 && i + 1 < argc) out_dir = argv[++i];
        else if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--no-plots") == 0) plots = 0;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return usage(stdout);
        else if (strcmp(argv[i], "--split") == 0 || strcmp(argv[i], "--checkpoint") == 0 ||
                 strcmp(argv[i], "--out") == 0) {
            fprintf(stderr, "tlb eval: %s: the value is missing\n", argv[i]);
            return usage(stderr);
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "tlb eval: unknown option '%s'\n", argv[i]);
            return usage(stderr);
        } else if (!run_dir) run_dir = argv[i];
        else return usage(stderr);
    }
    if (!run_dir || (out_dir && !plots)) return usage(stderr);
    eval_split split;
    if (strcmp(split_name, "val") == 0) split = EVAL_SPLIT_VAL;
    else if (strcmp(split_name, "test") == 0) split = EVAL_SPLIT_TEST;
    else {
        fprintf(stderr, "tlb eval: --split: '%s' is not val or test\n", split_name);
        return 2;
    }

    tlb_error err;
    err.msg[0] = '\0';
    trained_run r;
    /* The model takes an evaluation batch in one run. */
    if (trained_run_open(&r, run_dir, checkpoint, EVALUATE_BATCH, 0, &err) != 0) {
        fprintf(stderr, "tlb eval: %s\n", err.msg);
        trained_run_close(&r);
        return 2;
    }
    cifar10_set train_set = {0}, test_set = {0};
    token_set sequences[DATA_SPLIT_COUNT] = {{0}};
    data_source source = {0};
    eval_metrics e = {0};
    int status = 1, count = 0;
    const char *unit = "images";
    if (r.model.config.input == INPUT_TOKENS) { /* a token dataset (train/sequences.h) */
        int missing = 0;
        if (sequences_load(sequences, &train_set, &test_set, &r.config, r.data_dir, &missing, &err) != 0) goto done;
        const token_set *set = &sequences[split == EVAL_SPLIT_VAL ? DATA_SPLIT_VAL : DATA_SPLIT_TEST];
        if (sequence_source(&source, set, &r.config, &r.model.config, 0, &err) != 0) goto done;
        count = data_source_num_items(&source), unit = "sequences";
    } else {
        cifar10_view view;
        if (load_data(&train_set, &test_set, r.data_dir, &err) != 0) goto done;
        if (evaluate_view(&view, &r.config, &train_set, &test_set, split, &err) != 0) {
            status = 2;
            goto done;
        }
        const loader_config cfg = evaluate_loader_config(&r.config);
        loader *l;
        if (loader_create(&l, &view, &cfg, &err) != 0) goto done;
        source = data_source_of_images(l);
        count = view.count;
    }
    if (eval_metrics_init(&e, r.model.config.num_classes, &err) != 0) goto done;
    fprintf(stderr, "eval: %s (epoch %d, step %ld), %s split, %d %s, %s, class names %s\n", r.checkpoint,
            r.position.epoch, r.position.step, split_name, count, unit, r.precision,
            r.classes.from_metadata ? "from batches.meta.txt" : "built in (no batches.meta.txt in the data folder)");
    eval_progress p = {isatty(2), -1, progress_now(), unit};
    evaluate_run(&r.infer, &source, &e, NULL, on_progress, &p);

    char png[2100], title[128];
    snprintf(png, sizeof png, "%s/confusion-%s.png", out_dir ? out_dir : run_dir, split_name);
    /* The result first: a picture that cannot be written loses only itself. */
    if (json) {
        if (print_json(&r, &e, split_name, unit, plots ? png : NULL) != 0) {
            tlb_fail(&err, "out of memory");
            goto done;
        }
    } else {
        print_text(&r, &e, split_name, unit, plots ? png : NULL);
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        tlb_fail(&err, "writing standard output failed: %s", strerror(errno));
        goto done;
    }
    snprintf(title, sizeof title, "Confusion matrix, %s split (%ld %s, accuracy %.4f)", split_name, e.count, unit,
             eval_accuracy(&e));
    if (plots && plot_confusion_png(png, title, e.confusion, e.num_classes, r.classes.ptr, &err) != 0) {
        char why[sizeof err.msg];
        snprintf(why, sizeof why, "%s", err.msg);
        tlb_fail(&err, "%.900s (the result is above; --out DIR writes the picture elsewhere, --no-plots skips it)",
                 why);
        goto done;
    }
    status = 0;
done:
    if (status != 0 && err.msg[0]) fprintf(stderr, "tlb eval: %s\n", err.msg);
    eval_metrics_free(&e);
    data_source_destroy(&source);
    for (int k = 0; k < DATA_SPLIT_COUNT; k++) token_set_free(&sequences[k]);
    cifar10_free(&train_set);
    cifar10_free(&test_set);
    trained_run_close(&r);
    return status;
}
