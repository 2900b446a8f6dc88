#include "train/run_files.h"

#include "data/lra_image.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/fetch.h"
#include "model/attention_map.h"
#include "util/fs.h"
#include "util/plot.h"

static int load_rows(run_files *f, int keep_epochs, tlb_error *err)
{
    char path[1300], line[512];
    snprintf(path, sizeof path, "%s/metrics.csv", f->dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return 0;
    while (fgets(line, sizeof line, fp)) {
        run_epoch_metrics r;
        r.state_cosine = r.state_rank = r.learning_rate = NAN; /* absent from files written before these columns */
        const int got = sscanf(line, "%d,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &r.epoch, &r.train_loss,
                               &r.train_acc, &r.val_loss, &r.val_acc, &r.seconds, &r.images_per_second,
                               &r.state_cosine, &r.state_rank, &r.learning_rate);
        if (got < 7 || r.epoch > keep_epochs)
            continue; /* the header, or rows past the checkpoint being resumed */
        if (f->num_rows == f->capacity) {
            run_epoch_metrics *rows = realloc(f->rows, (size_t)(f->capacity ? 2 * f->capacity : 64) * sizeof *rows);
            if (!rows) {
                fclose(fp);
                return tlb_fail(err, "%s: out of memory reading it", path);
            }
            f->rows = rows;
            f->capacity = f->capacity ? 2 * f->capacity : 64;
        }
        f->rows[f->num_rows++] = r;
    }
    fclose(fp);
    return 0;
}

int run_files_open(run_files *f, const char *dir, const run_config *c, int keep_epochs, tlb_error *err)
{
    memset(f, 0, sizeof *f);
    snprintf(f->dir, sizeof f->dir, "%s", dir);
    f->num_classes = c->model.num_classes;
    snprintf(f->dataset, sizeof f->dataset, "%s", c->dataset);
    char data_dir[1024];
    cifar10_classes_load(&f->classes, c->data_dir[0] ? c->data_dir : cifar10_default_dir(data_dir, sizeof data_dir));
    size_t len = run_config_write_canonical(c, NULL, 0);
    f->config_text = malloc(len + 1);
    if (!f->config_text) return tlb_fail(err, "out of memory");
    run_config_write_canonical(c, f->config_text, len + 1);
    char path[1300];
    snprintf(path, sizeof path, "%s/config.cfg", dir);
    if (fs_write_file_atomic(path, f->config_text, len, err) != 0) return -1;
    return load_rows(f, keep_epochs, err);
}

static int write_metrics(const run_files *f, tlb_error *err)
{
    size_t cap = 128 + (size_t)f->num_rows * 256, len = 0;
    char *buf = malloc(cap);
    if (!buf) return tlb_fail(err, "out of memory");
    len += (size_t)snprintf(buf + len, cap - len,
                            "epoch,train_loss,train_acc,val_loss,val_acc,seconds,images_per_second,"
                            "state_cosine,state_rank,learning_rate\n");
    for (int i = 0; i < f->num_rows; i++) {
        const run_epoch_metrics *r = &f->rows[i];
        len += (size_t)snprintf(buf + len, cap - len, "%d,%.6f,%.6f,%.6f,%.6f,%.3f,%.2f,%.6f,%.3f,%.9g\n",
                                r->epoch, r->train_loss, r->train_acc, r->val_loss, r->val_acc,
                                r->seconds, r->images_per_second, r->state_cosine, r->state_rank,
                                r->learning_rate);
    }
    char path[1300];
    snprintf(path, sizeof path, "%s/metrics.csv", f->dir);
    int rc = fs_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

static int write_curves(const run_files *f, tlb_error *err)
{
    const int n = f->num_rows;
    double *x = malloc(n * sizeof *x), *y[4];
    int ok = x != NULL;
    for (int k = 0; k < 4; k++) ok &= (y[k] = malloc(n * sizeof *y[k])) != NULL;
    if (!ok) {
        free(x);
        for (int k = 0; k < 4; k++) free(y[k]);
        return tlb_fail(err, "out of memory for the curves");
    }
    for (int i = 0; i < n; i++) {
        x[i] = f->rows[i].epoch;
        y[0][i] = f->rows[i].train_loss;
        y[1][i] = f->rows[i].val_loss;
        y[2][i] = f->rows[i].train_acc;
        y[3][i] = f->rows[i].val_acc;
    }
    plot_series loss[2] = {{"train", x, y[0], n}, {"validation", x, y[1], n}};
    plot_series acc[2] = {{"train", x, y[2], n}, {"validation", x, y[3], n}};
    char path[1300];
    snprintf(path, sizeof path, "%s/loss.png", f->dir);
    int rc = plot_lines_png(path, "Loss", "epoch", "cross-entropy", loss, 2, err);
    snprintf(path, sizeof path, "%s/accuracy.png", f->dir);
    /* From 0 with chance marked, so a few points of accuracy do not look like a leap. */
    const plot_line_options o = {.y_from_zero = 1, .reference_y = f->num_classes > 0 ? 1.0 / f->num_classes : 0,
                                 .reference_label = "chance"};
    if (rc == 0) rc = plot_lines_png_opts(path, "Accuracy", "epoch", "accuracy", acc, 2, &o, err);
    free(x);
    for (int k = 0; k < 4; k++) free(y[k]);
    return rc;
}

int run_files_add_epoch(run_files *f, const run_epoch_metrics *row, tlb_error *err)
{
    if (f->num_rows == f->capacity) {
        run_epoch_metrics *rows = realloc(f->rows, (size_t)(f->capacity ? 2 * f->capacity : 64) * sizeof *rows);
        if (!rows) return tlb_fail(err, "out of memory");
        f->rows = rows;
        f->capacity = f->capacity ? 2 * f->capacity : 64;
    }
    f->rows[f->num_rows++] = *row;
    if (write_metrics(f, err) != 0) return -1;
    return write_curves(f, err);
}

/* The first (up to 4) test images, each above its overlays: the slow
 * state's attention, max over the state rows (the seed's picture), then
 * every row on its own, so a collapsed state shows identical rows. */
static int write_attention(const run_files *f, tlb_model *m, data_source *test, tlb_error *err)
{
    const tlb_model_config *c = &m->config;
    data_source_start_epoch(test, 0);
    const data_batch *batch = data_source_next(test);
    const int ready = batch->first == 0 ? batch->count : 0; /* rows from 0 this process prepared */
    int count = ready < 4 ? ready : 4;
    if (count > m->capacity) count = m->capacity;
    if (count < 1) return 0;
    /* Images: the patch grid over the picture. LRA Image: its 1,024 tokens
     * are a 32x32 grey picture, one map cell a pixel. */
    const int lra = c->input == INPUT_TOKENS && c->seq_len == LRA_IMAGE_LEN && !strcmp(f->dataset, "lra_image");
    const int G = lra ? 32 : model_grid(c), N = model_num_patches(c), S = lra ? 32 : c->image_size;
    const int Ns = model_state_rows(m), nmaps = 1 + Ns;
    model_forward_padded(m, batch->x, batch->lengths, batch->y, NULL, count, NULL);
    float *maps = malloc((size_t)count * nmaps * N * sizeof *maps);
    char (*labels)[32] = malloc((size_t)nmaps * sizeof *labels);
    const char **label_ptr = malloc((size_t)nmaps * sizeof *label_ptr);
    float *grey = lra ? malloc((size_t)count * S * S * 3 * sizeof *grey) : NULL;
    if (!maps || !labels || !label_ptr || (lra && !grey)) {
        free(maps), free(labels), free(label_ptr), free(grey);
        return tlb_fail(err, "out of memory");
    }
    for (int i = 0; lra && i < count * S * S; i++) {
        const float v = (float)((const int *)batch->x)[i] / 255.0f;
        grey[3 * i] = grey[3 * i + 1] = grey[3 * i + 2] = v;
    }
    snprintf(labels[0], sizeof labels[0], "max over %d rows", Ns);
    for (int k = 1; k < nmaps; k++) snprintf(labels[k], sizeof labels[k], "state row %d", k - 1);
    for (int k = 0; k < nmaps; k++) label_ptr[k] = labels[k];
    /* Each column names the true class and the predicted one, "cat/dog":
     * 21 characters at most for CIFAR-10's names, the width of a cell. */
    char captions_text[4][64];
    const char *captions[4];
    const int V = c->num_classes;
    for (int b = 0; b < count; b++) {
        float *mb = maps + (size_t)b * nmaps * N;
        model_slow_attention(m, b, mb + N, mb);
        const int label = batch->y[b];
        int pred = 0;
        for (int k = 1; k < V; k++)
            if (m->logits[(size_t)b * V + k] > m->logits[(size_t)b * V + pred]) pred = k;
        const int named = label >= 0 && label < CIFAR10_NUM_CLASSES && pred < CIFAR10_NUM_CLASSES;
        snprintf(captions_text[b], sizeof captions_text[b], "%s/%s", named ? f->classes.names[label] : "?",
                 named ? f->classes.names[pred] : "?");
        captions[b] = captions_text[b];
    }
    char path[1300];
    snprintf(path, sizeof path, "%s/attention.png", f->dir);
    const plot_overlays o = {.images = lra ? grey : batch->x, .count = count, .S = S, .maps = maps, .nmaps = nmaps, .G = G,
                             .map_labels = label_ptr, .captions = captions};
    int rc = plot_overlays_png(path, "TLB attention over tokens (the slow state's queries, mean over heads);"
                                     " captions: true/predicted class", &o, err);
    free(maps), free(labels), free(label_ptr), free(grey);
    return rc;
}

int run_files_finish(run_files *f, const train_summary *s, tlb_model *m, data_source *test, tlb_error *err)
{
    cJSON *j = cJSON_CreateObject();
    cJSON_AddNumberToObject(j, "epochs", s->epochs_done);
    cJSON_AddNumberToObject(j, "final_train_loss", s->train_loss);
    cJSON_AddNumberToObject(j, "final_train_accuracy", s->train_acc);
    cJSON_AddNumberToObject(j, "validation_loss", s->val_loss);
    cJSON_AddNumberToObject(j, "validation_accuracy", s->val_acc);
    cJSON_AddNumberToObject(j, "test_loss", s->test_loss);
    cJSON_AddNumberToObject(j, "test_accuracy", s->test_acc);
    cJSON_AddNumberToObject(j, "wall_seconds", s->wall_seconds);
    cJSON_AddNumberToObject(j, "train_images_per_second", s->images_per_second);
    cJSON_AddNumberToObject(j, "train_images", (double)s->train_images);
    if (s->extended_from) cJSON_AddNumberToObject(j, "extended_from_epochs", s->extended_from);
    cJSON_AddNumberToObject(j, "peak_rss_mib", s->peak_rss_mib);
    cJSON_AddNumberToObject(j, "parameters", (double)s->num_params);
    cJSON_AddNumberToObject(j, "micro_batch", s->micro_batch);
    cJSON_AddStringToObject(j, "precision", s->precision ? s->precision : "fp32");
    if (s->numerics.build[0]) cJSON_AddStringToObject(j, "build", s->numerics.build);
    cJSON *backends = cJSON_AddObjectToObject(j, "backends");
    char pair[64];
    for (const char *p = s->numerics.backends; *p;) { /* "op:backend,..." -> {"op": "backend"} */
        const size_t k = strcspn(p, ",");
        snprintf(pair, sizeof pair, "%.*s", (int)k, p);
        char *colon = strchr(pair, ':');
        if (colon) *colon = '\0', cJSON_AddStringToObject(backends, pair, colon + 1);
        p += k + (p[k] == ',');
    }
    cJSON_AddStringToObject(j, "wiring", wiring_name(m->config.wiring));
    cJSON_AddNumberToObject(j, "r", m->config.r);
    cJSON_AddNumberToObject(j, "chunk_size", m->config.chunk_size);
    cJSON_AddNumberToObject(j, "num_layers", m->config.num_layers);
    cJSON_AddNumberToObject(j, "num_state_tokens", model_num_state(&m->config));
    cJSON_AddStringToObject(j, "state_init", state_init_name(m->config.state_init));
    cJSON_AddStringToObject(j, "readout", readout_name(m->config.readout));
    /* The final state's diversity on the validation images (1 / 1 = collapsed). */
    cJSON_AddNumberToObject(j, "state_cosine", s->state_cosine);
    cJSON_AddNumberToObject(j, "state_rank", s->state_rank);
    char *text = cJSON_Print(j);
    cJSON_Delete(j);
    if (!text) return tlb_fail(err, "out of memory");
    char path[1300];
    snprintf(path, sizeof path, "%s/summary.json", f->dir);
    int rc = fs_write_file_atomic(path, text, strlen(text), err);
    free(text);
    /* The maps over a picture: image runs and LRA Image (ListOps has no picture). */
    if (rc == 0 && (test->images || !strcmp(f->dataset, "lra_image"))) rc = write_attention(f, m, test, err);
    return rc;
}

int run_files_finished_epochs(const char *dir)
{
    char path[1300];
    snprintf(path, sizeof path, "%s/summary.json", dir);
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    char buf[16384];
    const size_t k = fread(buf, 1, sizeof buf - 1, fp);
    fclose(fp);
    buf[k] = '\0';
    cJSON *j = cJSON_Parse(buf);
    const cJSON *e = cJSON_GetObjectItem(j, "epochs");
    const int epochs = cJSON_IsNumber(e) && e->valuedouble >= 0 && e->valuedouble < 1e6 ? (int)e->valuedouble : -1;
    cJSON_Delete(j);
    return epochs;
}

void run_files_close(run_files *f)
{
    free(f->config_text);
    free(f->rows);
    memset(f, 0, sizeof *f);
}
