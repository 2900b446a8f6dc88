/* tlb predict RUN_DIR IMAGE... [--top K] [--json] [--attention OUT.png] [--checkpoint FILE|best]
 * A trained model on the user's own PNG or JPEG files: the K most likely
 * classes with their probabilities, one line per image (or JSON), and
 * optionally the Keras example's picture for these images: each image
 * beside its TLB attention overlays (the max over the slow-state rows, then
 * every row). Every image is decoded and checked before anything runs or
 * is written. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/image_io.h"
#include "model/attention_map.h"
#include "train/eval_metrics.h"
#include "train/trained_run.h"
#include "util/plot.h"

/* Images per forward. */
#define PREDICT_BATCH 64

static int usage(FILE *out)
{
    fprintf(out, "usage: tlb predict RUN_DIR IMAGE... [--top K] [--json] [--attention OUT.png] [--checkpoint FILE|best]\n");
    return out == stdout ? 0 : 2;
}

/* Sorted class indices, most likely first (ties by index). */
static void rank_classes(int *order, const double *p, int n)
{
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && p[order[j]] > p[order[j - 1]]; j--) {
            const int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
}

/* Attention maps of sample b of the last run: [1 + Ns, N], the max over
 * the state rows first, then each row. The inference plan runs the last
 * chunk's state update when the maps are asked for (INFER_ATTENTION), so
 * every chunk is drawn as in the run's attention.png. */
static void attention_maps(float *maps, const model_inference *inf, int b)
{
    const int N = model_num_patches(&inf->model->config);
    model_inference_slow_attention(inf, b, maps + N, maps);
}

/* The picture: a row per image, the model's input beside its overlays
 * (max over the state rows, then each row), captioned with the file's name
 * and its most likely class. */
static int write_attention(const char *path, const trained_run *r, const char *const *files, int nfiles,
                           const float *inputs, const float *maps, const double *probs, tlb_error *err)
{
    const tlb_model_config *c = &r->config.model;
    const int V = c->num_classes, Ns = model_state_rows(&r->model), nmaps = 1 + Ns;
    char **captions = calloc((size_t)nfiles, sizeof *captions);
    const char **labels = calloc((size_t)nmaps, sizeof *labels);
    char (*label_text)[32] = calloc((size_t)nmaps, sizeof *label_text);
    int rc = captions && labels && label_text ? 0 : tlb_fail(err, "out of memory");
    for (int i = 0; rc == 0 && i < nfiles; i++) {
        if (!(captions[i] = malloc(300))) {
            rc = tlb_fail(err, "out of memory");
            break;
        }
        const double *p = probs + (size_t)i * V;
        int order[CIFAR10_NUM_CLASSES];
        rank_classes(order, p, V);
        const char *base = strrchr(files[i], '/');
        snprintf(captions[i], 300, "%s: %s %.2f", base ? base + 1 : files[i], r->classes.names[order[0]], p[order[0]]);
    }
    if (rc == 0) {
        snprintf(label_text[0], sizeof label_text[0], "max over %d rows", Ns);
        for (int k = 1; k < nmaps; k++) snprintf(label_text[k], sizeof label_text[k], "state row %d", k - 1);
        for (int k = 0; k < nmaps; k++) labels[k] = label_text[k];
        const plot_overlays o = {.images = inputs, .count = nfiles, .S = c->image_size, .maps = maps,
                                 .nmaps = nmaps, .G = model_grid(c), .map_labels = labels,
                                 .captions = (const char *const *)captions, .beside = 1};
        rc = plot_overlays_png(path, "TLB attention: the slow state's attention over the tokens (mean over heads)",
                               &o, err);
    }
    for (int i = 0; captions && i < nfiles; i++) free(captions[i]);
    free(captions), free(labels), free(label_text);
    return rc;
}

int cmd_predict(int argc, char **argv)
{
    const char *run_dir = NULL, *attention_png = NULL, *checkpoint = NULL;
    const char **files = calloc((size_t)argc, sizeof *files);
    int nfiles = 0, json = 0, top = 3;
    if (!files) return 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0) json = 1;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            free(files);
            return usage(stdout);
        }
        else if (strcmp(argv[i], "--attention") == 0 && i + 1 < argc) attention_png = argv[++i];
        else if (strcmp(argv[i], "--checkpoint") == 0 && i + 1 < argc) checkpoint = argv[++i];
        else if (strcmp(argv[i], "--top") == 0 && i + 1 < argc) {
            char *end;
            top = (int)strtol(argv[++i], &end, 10);
            if (*end || top < 1 || top > CIFAR10_NUM_CLASSES) {
                fprintf(stderr, "tlb predict: --top: '%s' is not a number of classes in 1..%d\n", argv[i],
                        CIFAR10_NUM_CLASSES);
                free(files);
                return 2;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "tlb predict: unknown option '%s'\n", argv[i]);
            free(files);
            return usage(stderr);
        } else if (!run_dir) run_dir = argv[i];
        else files[nfiles++] = argv[i];
    }
    if (!run_dir || nfiles == 0) {
        free(files);
        return usage(stderr);
    }

    tlb_error err;
    trained_run r;
    const int mb = nfiles < PREDICT_BATCH ? nfiles : PREDICT_BATCH;
    if (trained_run_open(&r, run_dir, checkpoint, mb, attention_png ? INFER_ATTENTION : 0, &err) != 0) {
        fprintf(stderr, "tlb predict: %s\n", err.msg);
        trained_run_close(&r);
        free(files);
        return 2;
    }
    const tlb_model_config *c = &r.config.model;
    const int S = c->image_size, V = c->num_classes, N = model_num_patches(c);
    const int nmaps = 1 + model_state_rows(&r.model);
    const size_t img_floats = (size_t)S * S * 3;

    /* Decode everything first: a bad file stops the command before any output. */
    float *inputs = malloc((size_t)nfiles * img_floats * sizeof *inputs);
    float *maps = attention_png ? malloc((size_t)nfiles * nmaps * N * sizeof *maps) : NULL;
    double *probs = malloc((size_t)nfiles * V * sizeof *probs);
    int status = 2;
    if (!inputs || !probs || (attention_png && !maps)) {
        fprintf(stderr, "tlb predict: out of memory for %d images\n", nfiles);
        status = 1;
        goto done;
    }
    int *sizes = calloc((size_t)nfiles * 2, sizeof *sizes);
    if (!sizes) {
        fprintf(stderr, "tlb predict: out of memory for %d images\n", nfiles);
        status = 1;
        goto done;
    }
    for (int i = 0; i < nfiles; i++) {
        image_rgb im;
        if (image_read(&im, files[i], &err) != 0) {
            fprintf(stderr, "tlb predict: %s\n", err.msg);
            free(sizes);
            goto done;
        }
        sizes[2 * i] = im.w, sizes[2 * i + 1] = im.h;
        image_model_input(inputs + (size_t)i * img_floats, &im, S);
        image_free(&im);
    }
    for (int i = 0; i < nfiles; i++) {
        const int w = sizes[2 * i], h = sizes[2 * i + 1];
        if (w != CIFAR10_SIDE || h != CIFAR10_SIDE)
            fprintf(stderr,
                    "%s: %dx%d, resampled to %dx%d (area average where it shrinks, bilinear where it grows%s),"
                    " then resized to %dx%d as evaluation does\n",
                    files[i], w, h, CIFAR10_SIDE, CIFAR10_SIDE, w != h ? "; stretched: not square" : "", S, S);
    }
    free(sizes);

    const int cap = r.infer.capacity;
    for (int at = 0; at < nfiles; at += cap) {
        const int n = nfiles - at < cap ? nfiles - at : cap;
        (void)model_inference_run(&r.infer, inputs + (size_t)at * img_floats, NULL, n, NULL); /* n <= cap */
        for (int b = 0; b < n; b++) {
            class_softmax(probs + (size_t)(at + b) * V, r.infer.logits + (size_t)b * V, V);
            if (maps) attention_maps(maps + (size_t)(at + b) * nmaps * N, &r.infer, b);
        }
    }

    if (attention_png && write_attention(attention_png, &r, files, nfiles, inputs, maps, probs, &err) != 0) {
        fprintf(stderr, "tlb predict: %s\n", err.msg);
        status = 1;
        goto done;
    }

    cJSON *all = json ? cJSON_CreateArray() : NULL;
    for (int i = 0; i < nfiles; i++) {
        const double *p = probs + (size_t)i * V;
        int order[CIFAR10_NUM_CLASSES];
        rank_classes(order, p, V);
        if (json) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddStringToObject(o, "file", files[i]);
            cJSON *t = cJSON_AddArrayToObject(o, "top");
            for (int k = 0; k < top; k++) {
                cJSON *e = cJSON_CreateObject();
                cJSON_AddStringToObject(e, "class", r.classes.names[order[k]]);
                cJSON_AddNumberToObject(e, "index", order[k]);
                cJSON_AddNumberToObject(e, "probability", p[order[k]]);
                cJSON_AddItemToArray(t, e);
            }
            cJSON *pr = cJSON_AddObjectToObject(o, "probabilities");
            for (int k = 0; k < V; k++) cJSON_AddNumberToObject(pr, r.classes.names[k], p[k]);
            cJSON_AddItemToArray(all, o);
        } else {
            printf("%s:", files[i]);
            for (int k = 0; k < top; k++) printf("%s %s %.4f", k ? "," : "", r.classes.names[order[k]], p[order[k]]);
            printf("\n");
        }
    }
    if (json) {
        char *text = cJSON_Print(all);
        cJSON_Delete(all);
        if (!text) {
            fprintf(stderr, "tlb predict: out of memory for the JSON output\n");
            status = 1;
            goto done;
        }
        printf("%s\n", text);
        free(text);
    }
    if (attention_png) fprintf(stderr, "attention: %s\n", attention_png);
    status = 0;
done:
    free(inputs), free(maps), free(probs), free(files);
    trained_run_close(&r);
    return status;
}
