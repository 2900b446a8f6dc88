#include "train/sweep_report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/run_files.h"
#include "util/fs.h"
#include "util/plot.h"

typedef struct {
    const char *dir;
    double r, chunk, layers, val_acc, test_acc, test_loss, seconds, ips, params, epochs;
    char wiring[16];
} sweep_row;

static double num(const cJSON *j, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
    return cJSON_IsNumber(v) ? v->valuedouble : NAN;
}

static int read_summary(sweep_row *row, const char *dir, tlb_error *err)
{
    char path[1300];
    if (fs_join(path, sizeof path, dir, "summary.json", err) != 0) return -1;
    FILE *fp = fopen(path, "rb");
    if (!fp) return tlb_fail(err, "%s: missing (did the run finish?)", path);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    cJSON *j = cJSON_Parse(buf);
    if (!j) return tlb_fail(err, "%s: not valid JSON", path);
    row->dir = dir;
    row->r = num(j, "r");
    row->chunk = num(j, "chunk_size");
    row->layers = num(j, "num_layers");
    row->val_acc = num(j, "validation_accuracy");
    row->test_acc = num(j, "test_accuracy");
    row->test_loss = num(j, "test_loss");
    row->seconds = num(j, "wall_seconds");
    row->ips = num(j, "train_images_per_second");
    row->params = num(j, "parameters");
    row->epochs = num(j, "epochs");
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(j, "wiring");
    snprintf(row->wiring, sizeof row->wiring, "%s", cJSON_IsString(w) ? w->valuestring : "?");
    cJSON_Delete(j);
    return 0;
}

static int cmp_rows(const void *a, const void *b)
{
    const sweep_row *x = a, *y = b;
    if (x->r != y->r) return x->r < y->r ? -1 : 1;
    if (x->chunk != y->chunk) return x->chunk < y->chunk ? -1 : 1;
    return x->layers < y->layers ? -1 : x->layers > y->layers;
}

int sweep_report(const char *out_dir, char *const *run_dirs, int count, tlb_error *err)
{
    sweep_row *rows = calloc((size_t)count + 1, sizeof *rows);
    if (!rows) return tlb_fail(err, "out of memory");
    for (int i = 0; i < count; i++)
        if (read_summary(&rows[i], run_dirs[i], err) != 0) {
            free(rows);
            return -1;
        }
    qsort(rows, (size_t)count, sizeof *rows, cmp_rows);
    size_t cap = 512 + (size_t)count * 512, lc = 0, lm = 0;
    char *csv = malloc(cap), *md = malloc(cap);
    lc += (size_t)snprintf(csv + lc, cap - lc,
                           "wiring,r,chunk_size,num_layers,epochs,parameters,val_acc,test_acc,test_loss,wall_seconds,images_per_second,run_dir\n");
    lm += (size_t)snprintf(md + lm, cap - lm,
                           "| wiring | r | chunk_size | num_layers | epochs | parameters | val acc | test acc | test loss | wall s | img/s |\n"
                           "|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < count; i++) {
        const sweep_row *r = &rows[i];
        lc += (size_t)snprintf(csv + lc, cap - lc, "%s,%g,%g,%g,%g,%.0f,%.4f,%.4f,%.4f,%.1f,%.1f,%s\n", r->wiring,
                               r->r, r->chunk, r->layers, r->epochs, r->params, r->val_acc, r->test_acc,
                               r->test_loss, r->seconds, r->ips, r->dir);
        lm += (size_t)snprintf(md + lm, cap - lm, "| %s | %g | %g | %g | %g | %.0f | %.4f | %.4f | %.4f | %.0f | %.0f |\n",
                               r->wiring, r->r, r->chunk, r->layers, r->epochs, r->params, r->val_acc,
                               r->test_acc, r->test_loss, r->seconds, r->ips);
    }
    char path[1300];
    int rc = fs_join(path, sizeof path, out_dir, "results.csv", err);
    if (rc == 0) rc = fs_write_file_atomic(path, csv, lc, err);
    if (rc == 0) rc = fs_join(path, sizeof path, out_dir, "results.md", err);
    if (rc == 0) rc = fs_write_file_atomic(path, md, lm, err);

    /* One series per swept axis: test accuracy against the axis's value. */
    double *x[3], *y[3];
    plot_series series[3];
    int ns = 0;
    const char *labels[3] = {"r", "chunk_size", "num_layers"};
    for (int axis = 0; axis < 3; axis++) {
        x[axis] = malloc((size_t)count * sizeof(double));
        y[axis] = malloc((size_t)count * sizeof(double));
        if (!x[axis] || !y[axis]) {
            if (rc == 0) rc = tlb_fail(err, "out of memory for the results plot");
            continue;
        }
        int distinct = 0;
        for (int i = 0; i < count; i++) {
            const double v = axis == 0 ? rows[i].r : axis == 1 ? rows[i].chunk : rows[i].layers;
            x[axis][i] = v;
            y[axis][i] = rows[i].test_acc;
            if (i > 0 && v != x[axis][0]) distinct = 1;
        }
        if (distinct) series[ns++] = (plot_series){labels[axis], x[axis], y[axis], count};
    }
    if (rc == 0) rc = fs_join(path, sizeof path, out_dir, "results.png", err);
    if (rc == 0 && ns > 0) rc = plot_lines_png(path, "Test accuracy against the swept value", "value", "test accuracy", series, ns, err);
    for (int axis = 0; axis < 3; axis++) free(x[axis]), free(y[axis]);
    free(csv);
    free(md);
    free(rows);
    return rc;
}
