/* One micro-batch's forward and backward of the seed model, repeated, for
 * a profiler to sample (bench/profile/profile.sh): the trainer's own
 * model_forward / model_backward on synthetic images, fp32 with the
 * automatic backends (or mixed precision: argv[3] = 1 as the trainer runs
 * it, the FFN's h saved in bf16; 2 with h in fp32), dropout on.
 *   step_profile [MICRO_BATCH [REPEATS [BF16]]]   (410, 6, 0) */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "model/model.h"
#include "ops/ops.h"
#include "train/init.h"

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv)
{
    const int mb = argc > 1 ? atoi(argv[1]) : 410, reps = argc > 2 ? atoi(argv[2]) : 6;
    const int bf16 = argc > 3 ? atoi(argv[3]) : 0;
    const tlb_model_config c = model_config_seed();
    const size_t per = model_input_bytes(&c) / sizeof(float);
    float *images = malloc((size_t)mb * per * sizeof(float));
    int *labels = malloc((size_t)mb * sizeof(int));
    if (mb <= 0 || !images || !labels) return 2;
    for (size_t i = 0; i < (size_t)mb * per; i++) images[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (int b = 0; b < mb; b++) labels[b] = b % c.num_classes;
    tlb_model m;
    op_table t;
    tlb_error err;
    if (model_create(&m, &c, &err) != 0 || ops_table_select(&t, NULL, &err) != 0) {
        fprintf(stderr, "step_profile: %s\n", err.msg);
        return 1;
    }
    if (bf16 && (ops_table_set_bf16(&t, 1) != 0 || ops_table_set_bf16_h(&t, bf16 == 1) != 0)) {
        fprintf(stderr, "step_profile: no bf16 products on this CPU\n");
        return 1;
    }
    model_use_ops(&m, &t);
    if (model_plan(&m, mb, &err) != 0) {
        fprintf(stderr, "step_profile: %s\n", err.msg);
        return 1;
    }
    init_keras(&m, 1);
    for (int r = 0; r < reps; r++) {
        model_zero_grads(&m);
        const model_dropout d = {1, (uint64_t)r, 0};
        const double t0 = now();
        model_forward(&m, images, labels, mb, &d);
        const double t1 = now();
        model_backward(&m, images, labels, mb, 1.0f / 2048, &d);
        printf("micro-batch %d: forward %.3f s, backward %.3f s\n", mb, t1 - t0, now() - t1);
    }
    model_destroy(&m);
    free(images), free(labels);
    return 0;
}
