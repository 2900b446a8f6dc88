#include "train/evaluate.h"

#include <math.h>
#include <stdlib.h>

#include "train/dist.h"

int evaluate_view(cifar10_view *out, const run_config *c, const cifar10_set *train_set,
                  const cifar10_set *test_set, eval_split split, tlb_error *err)
{
    if (split == EVAL_SPLIT_TEST) {
        *out = cifar10_view_all(test_set);
    } else {
        cifar10_view train;
        if (cifar10_split(&train, out, train_set, c->train_slice, err) != 0) return -1;
    }
    if (c->eval_limit > 0 && c->eval_limit < out->count) out->count = c->eval_limit;
    return 0;
}

loader_config evaluate_loader_config(const run_config *c)
{
    /* One worker prepares batches ahead. */
    return (loader_config){.batch_size = EVALUATE_BATCH, .image_size = c->model.image_size, .train = 0,
                           .shuffle = LOADER_SHUFFLE_NONE, .drop_last = 0, .num_threads = 1, .depth = 3,
                           .seed = c->seed};
}

void evaluate_run(model_inference *inf, data_source *l, eval_metrics *e, state_diversity *div,
                  void (*progress)(void *, long, long), void *arg)
{
    const tlb_model *m = inf->model;
    const long total = data_source_num_items(l);
    const int Ns = model_num_state(&m->config);
    double *work = div && inf->state ? malloc((size_t)Ns * Ns * sizeof *work) : NULL;
    double cos_sum = 0.0, rank_sum = 0.0;
    long seen = 0;
    data_source_start_epoch(l, 0);
    /* Data parallel (mpirun): this process's rows of each batch, [rank*n/N,
     * (rank+1)*n/N); the caller sums the metrics. Alone: every row. */
    const int r = dist_rank(), N = dist_size();
    for (int b = 0; b < data_source_num_batches(l); b++) {
        const data_batch *batch = data_source_next(l);
        const int lo = (int)((long)batch->size * r / N), hi = (int)((long)batch->size * (r + 1) / N);
        for (int at = lo; at < hi; at += inf->capacity) {
            const int n = hi - at < inf->capacity ? hi - at : inf->capacity;
            const void *x = (const char *)batch->x + (size_t)at * batch->sample_bytes;
            (void)model_inference_run_padded(inf, x, batch->lengths ? batch->lengths + at : NULL, batch->y + at, n,
                                             NULL); /* 1 <= n <= capacity, lengths checked by the loader's set */
            eval_metrics_add(e, inf->logits, batch->y + at, inf->losses, n);
            if (work) {
                const state_diversity d = model_inference_state_diversity(inf, n, work);
                cos_sum += d.cosine * n;
                rank_sum += d.rank * n;
                seen += n;
            }
        }
        if (progress) progress(arg, e->count, total);
    }
    if (div) {
        div->cosine = work && seen ? cos_sum / seen : NAN;
        div->rank = work && seen ? rank_sum / seen : NAN;
    }
    free(work);
}
