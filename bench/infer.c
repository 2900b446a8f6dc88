/* Inference speed: images/s of the forward pass alone (no loss, no
 * dropout, no backward) of the seed model at batch 256 on 2 threads, fp32
 * and mixed precision (bf16 dense), as `tlb eval` and `tlb predict` run it.
 * Issue 15's reference: the same model in PyTorch 1.13 on the issue's
 * machine (eval mode, inference mode) ran 865 images/s in fp32 and 1,651 in
 * bf16 autocast; the target is twice that. Rows: the training plan's
 * model_forward (all activations kept), then the inference plan
 * (model/infer.h) at tiles of 8..64 samples. bench/infer_vs_pytorch.sh
 * measures PyTorch on the machine at hand against these rows. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "model/infer.h"
#include "model/model.h"
#include "ops/ops.h"
#include "train/init.h"

#define INFER_BATCH 256
#define INFER_THREADS 2

typedef struct {
    tlb_model *m;
    model_inference *inf; /* NULL: the training plan's model_forward */
    const float *x;
    int B;
} infer_arg;

static void forward_once(void *p)
{
    infer_arg *a = p;
    if (a->inf) (void)model_inference_run(a->inf, a->x, NULL, a->B, NULL); /* B is the plan's capacity */
    else model_forward(a->m, a->x, NULL, a->B, NULL);
}

/* Multiply-adds x 2 of one image's forward (the inference plan's: without
 * the last chunk's slow update, which the seed's head does not read). */
static double forward_flops(const tlb_model *m)
{
    const tlb_model_config *c = &m->config;
    const double D = c->embed_dim, HK = (double)c->num_heads * c->key_dim, F = m->dims.F, H = c->num_heads;
    const double K = c->key_dim, P = c->patch_size, N = model_num_patches(c);
    double per_chunk = 0, last_update = 0;
    for (int s = 0; s < m->layout.num_steps; s++) {
        const cell_step *st = &m->layout.steps[s];
        const double Tq = model_stream_rows(c, st->query), Tk = model_stream_rows(c, st->kv);
        const double f = 2 * (Tq * D * HK + 2 * Tk * D * HK + Tq * HK * D + 2 * Tq * D * F) + 4 * H * Tq * Tk * K;
        per_chunk += f;
        if (s == m->layout.num_steps - 1) last_update = f;
    }
    return per_chunk * model_num_chunks(c) - last_update + 2 * N * P * P * 3 * D + 2 * D * c->num_classes;
}

/* One row: the training plan's forward (tile < 0) or the inference plan in
 * tiles of `tile` samples. */
static void measure(const bench_opts *o, FILE *csv, const char *label, tlb_model *m, const float *x, int B,
                    int tile, double target, double flops)
{
    char name[64];
    if (tile < 0) snprintf(name, sizeof name, "%s training plan", label);
    else snprintf(name, sizeof name, "%s tile %d", label, tile);
    tlb_error err;
    model_inference inf;
    if (tile >= 0 && model_inference_plan(&inf, m, B, tile, 0, &err) != 0) {
        printf("%-28s failed: %s\n", name, err.msg);
        return;
    }
    infer_arg a = {m, tile >= 0 ? &inf : NULL, x, B};
    const double s = bench_median(forward_once, &a, o->seconds);
    const double ips = B / s;
    printf("%-28s %10.4f %10.1f %10.1f %12.0f  %s\n", name, s, ips, ips * flops * 1e-9, target,
           B == INFER_BATCH ? (ips >= target ? "met" : "not met") : "(not batch 256: no verdict)");
    if (csv) fprintf(csv, "%s,%d,%d,%.5f,%.2f,%.0f\n", name, B, INFER_THREADS, s, ips, target);
    if (tile >= 0) model_inference_free(&inf);
    fflush(stdout);
}

void bench_infer(const bench_opts *o)
{
    const int B = o->batch < INFER_BATCH ? o->batch : INFER_BATCH;
    const struct {
        const char *label;
        int bf16;
        double target;
    } configs[] = {{"fp32", 0, 1730}, {"mixed (bf16 dense)", 1, 3300}};
    printf("\n## Inference (seed config, forward only, batch %d, %d threads; median of calls over %.2f s)\n\n", B,
           INFER_THREADS, o->seconds);
    printf("%-28s %10s %10s %10s %12s  %s\n", "configuration", "batch s", "img/s", "GFLOP/s", "target img/s", "");
    FILE *csv = bench_csv(o, "infer.csv", "configuration,batch,threads,batch_seconds,images_per_second,target");
    omp_set_num_threads(INFER_THREADS);
    tlb_error err;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        op_table ops;
        if (ops_table_select(&ops, NULL, &err) != 0 || (configs[i].bf16 && ops_table_set_bf16(&ops, 1) != 0)) {
            printf("%-28s not run: %s\n", configs[i].label,
                   configs[i].bf16 ? "mixed precision needs AVX512_BF16" : err.msg);
            continue;
        }
        const tlb_model_config c = model_config_seed();
        tlb_model m;
        if (model_create(&m, &c, &err) != 0 || (model_use_ops(&m, &ops), model_plan(&m, B, &err)) != 0) {
            printf("%-28s failed: %s\n", configs[i].label, err.msg);
            model_destroy(&m);
            continue;
        }
        init_keras(&m, 42);
        const size_t n = (size_t)B * c.image_size * c.image_size * 3;
        float *x = bench_rand(n, 1.0f);
        for (size_t k = 0; k < n; k++) x[k] = 0.5f + 0.5f * x[k];
        const double flops = forward_flops(&m);
        if (i == 0)
            printf("(%.1f MFLOP per image; an FMA peak of P GFLOP/s bounds fp32 at P / %.4f img/s)\n",
                   flops * 1e-6, flops * 1e-9);
        measure(o, csv, configs[i].label, &m, x, B, -1, configs[i].target, flops);
        static const int tiles[] = {8, 16, 32, 64};
        for (size_t t = 0; t < sizeof tiles / sizeof tiles[0]; t++)
            measure(o, csv, configs[i].label, &m, x, B, tiles[t], configs[i].target, flops);
        free(x);
        model_destroy(&m);
    }
    omp_set_num_threads(o->threads);
    if (csv) fclose(csv);
    printf("\n(target: twice PyTorch 1.13 on the issue's machine, 865 img/s fp32 and 1,651 bf16 autocast;\n"
           " `make bench-pytorch` measures PyTorch on this machine, alternated with these rows.\n"
           " GFLOP/s count the inference plan's work; a number from a loaded machine says little)\n");
}
