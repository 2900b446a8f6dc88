/* Inference speed: images/s of the forward pass alone (no loss, no
 * dropout, no backward) of the seed model at batch 256 on 2 threads, fp32
 * and mixed precision (bf16 dense), as `tlb eval` and `tlb predict` run it.
 * Issue 15's reference: the same model in PyTorch 1.13 on the issue's
 * machine (eval mode, inference mode) ran 865 images/s in fp32 and 1,651 in
 * bf16 autocast; the target is twice that. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "model/model.h"
#include "ops/ops.h"
#include "train/init.h"

#define INFER_BATCH 256
#define INFER_THREADS 2

typedef struct {
    tlb_model *m;
    const float *x;
    int B;
} infer_arg;

static void forward_once(void *p)
{
    infer_arg *a = p;
    model_forward(a->m, a->x, NULL, a->B, NULL);
}

void bench_infer(const bench_opts *o)
{
    const int B = o->batch < INFER_BATCH ? o->batch : INFER_BATCH;
    const struct {
        const char *label;
        int bf16;
        double target;
    } configs[] = {{"fp32 (automatic)", 0, 1730}, {"mixed: bf16 dense", 1, 3300}};
    printf("\n## Inference (seed config, forward only, batch %d, %d threads; median of calls over %.2f s)\n\n", B,
           INFER_THREADS, o->seconds);
    printf("%-20s %10s %10s %12s  %s\n", "configuration", "batch s", "img/s", "target img/s", "");
    FILE *csv = bench_csv(o, "infer.csv", "configuration,batch,threads,batch_seconds,images_per_second,target");
    omp_set_num_threads(INFER_THREADS);
    tlb_error err;
    for (size_t i = 0; i < sizeof configs / sizeof configs[0]; i++) {
        if (ops_select(NULL, &err) != 0 || (configs[i].bf16 && ops_set_mixed_precision(1) != 0)) {
            printf("%-20s not run: %s\n", configs[i].label,
                   configs[i].bf16 ? "mixed precision needs AVX512_BF16" : err.msg);
            continue;
        }
        const tlb_model_config c = model_config_seed();
        tlb_model m;
        if (model_create(&m, &c, &err) != 0 || model_plan(&m, B, &err) == 0) {
            printf("%-20s failed: %s\n", configs[i].label, err.msg);
            model_destroy(&m);
            continue;
        }
        init_keras(&m, 42);
        float *x = bench_rand((size_t)B * c.image_size * c.image_size * 3, 1.0f);
        for (size_t k = 0; k < (size_t)B * c.image_size * c.image_size * 3; k++) x[k] = 0.5f + 0.5f * x[k];
        infer_arg a = {&m, x, B};
        const double s = bench_median(forward_once, &a, o->seconds);
        const double ips = B / s;
        printf("%-20s %10.4f %10.1f %12.0f  %s\n", configs[i].label, s, ips, configs[i].target,
               B == INFER_BATCH ? (ips >= configs[i].target ? "met" : "not met") : "(not batch 256: no verdict)");
        if (csv)
            fprintf(csv, "%s,%d,%d,%.5f,%.2f,%.0f\n", configs[i].label, B, INFER_THREADS, s, ips, configs[i].target);
        free(x);
        model_destroy(&m);
        fflush(stdout);
    }
    ops_select(NULL, &err); /* back to fp32, the automatic choice */
    omp_set_num_threads(o->threads);
    if (csv) fclose(csv);
    printf("\n(target: twice PyTorch 1.13 on the issue's machine, 865 img/s fp32 and 1,651 bf16 autocast;\n"
           " a number from a loaded machine says little)\n");
}
