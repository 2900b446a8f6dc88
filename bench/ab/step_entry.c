/* One build's side of bench/ab.sh: compiled with that build's headers and
 * linked with its library into one shared object, so two builds of tlb-c
 * can run in one process (bench/ab/ab_main.c). The seed model at image 48,
 * the automatic backends, dropout on, Keras initialisation, a fixed input.
 * ab_main names the side it sets up in AB_SIDE ("ref" or "new"); AB_REF_SPEC
 * / AB_NEW_SPEC pick that side's backends (an ops spec, as TLB_BACKEND) and
 * AB_REF_BF16_H / AB_NEW_BF16_H = 1 saves the ffn's h in bf16 there (a
 * build without that knob refuses it), so one build can be timed against
 * itself with a setting changed; AB_REF_MIXED / AB_NEW_MIXED = 1 runs that
 * side in mixed precision (bf16 dense, ops_table_set_bf16; refused where the
 * CPU lacks AVX512_BF16). AB_INFER=TILE times inference instead: the
 * inference plan (model/infer.h) over the micro-batch in tiles of TILE. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model/infer.h"
#include "model/model.h"
#include "ops/ops.h"
#include "train/init.h"
#include "util/rng.h"

/* Weak: REF's headers may predate it (then it is NULL here). */
int ops_table_set_bf16_h(op_table *t, int on) __attribute__((weak));

/* AB_<SIDE>_<what>, or NULL. */
static const char *side_env(const char *what)
{
    const char *side = getenv("AB_SIDE");
    char name[64];
    snprintf(name, sizeof name, "AB_%s_%s", side && side[0] == 'r' ? "REF" : "NEW", what);
    const char *v = getenv(name);
    return v && v[0] ? v : NULL;
}

static tlb_model model;
static model_inference inference;
static int infer_tile; /* 0: training */
static op_table ops;
static float *images;
static int *labels;
static int rows;

/* 0 on success; the stage that failed otherwise. */
int ab_setup(int micro_batch)
{
    tlb_error err;
    if (ops_table_select(&ops, side_env("SPEC"), &err) != 0) return 1;
    const char *h16 = side_env("BF16_H");
    if (h16 && atoi(h16) && (!ops_table_set_bf16_h || ops_table_set_bf16_h(&ops, 1) != 0)) return 5;
    const char *mixed = side_env("MIXED");
    if (mixed && atoi(mixed) && ops_table_set_bf16(&ops, 1) != 0) return 7;
    tlb_model_config c = model_config_seed();
    c.image_size = 48;
    if (model_create(&model, &c, &err) != 0) return 2;
    model_use_ops(&model, &ops);
    if (model_plan(&model, micro_batch, &err) != 0) return 3;
    const char *tile = getenv("AB_INFER");
    infer_tile = tile && atoi(tile) > 0 ? atoi(tile) : 0;
    if (infer_tile && model_inference_plan(&inference, &model, micro_batch, infer_tile, 0, &err) != 0) return 6;
    init_keras(&model, 42);
    rows = micro_batch;
    const size_t n = (size_t)micro_batch * 48 * 48 * 3;
    images = malloc(n * sizeof(float));
    labels = malloc((size_t)micro_batch * sizeof(int));
    if (!images || !labels) return 4;
    rng_stream r = {7, 0};
    for (size_t i = 0; i < n; i++) images[i] = rng_next_uniform(&r);
    for (int b = 0; b < micro_batch; b++) labels[b] = b % 10;
    return 0;
}

/* Seconds for one micro-batch's forward and backward (or inference). */
double ab_step(void)
{
    const model_dropout d = {1, 99, 0};
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (infer_tile) {
        model_inference_run(&inference, images, NULL, rows, NULL);
    } else {
        model_forward(&model, images, labels, rows, &d);
        model_backward(&model, images, labels, rows, 1.0f / 2048, &d);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
}
