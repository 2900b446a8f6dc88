#include "train/train_step.h"

#include <math.h>
#include <string.h>

#include "train/grad_clip.h"

static int argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* The first parameter-gradient tensor holding a NaN or Inf, or NULL. */
static const char *first_nonfinite_grad(const tlb_model *m)
{
    const param_table *t = &m->layout.table;
    for (int i = 0; i < t->count; i++) {
        const float *g = m->grads + t->entries[i].offset;
        for (size_t k = 0; k < t->entries[i].numel; k++)
            if (!isfinite(g[k])) return t->entries[i].name;
    }
    return NULL;
}

/* Test hook (tests/test_hardening.c, TLB_TEST_NAN_AT_STEP=k): a NaN in the
 * middle parameter tensor's gradient and one in the last's at step k; the
 * guard must name the middle one, the first in table order. */
static void poison_grads(tlb_model *m)
{
    const param_table *t = &m->layout.table;
    m->grads[t->entries[t->count / 2].offset] = NAN;
    m->grads[t->entries[t->count - 1].offset] = NAN;
}

int train_step(const train_stepper *s, const void *x, const int *y, const model_targets *targets,
               int batch_size, long t, uint64_t dropout_key, float lr, train_step_result *out,
               tlb_error *err)
{
    return train_step_padded(s, x, NULL, y, targets, batch_size, t, dropout_key, lr, out, err);
}

int train_step_padded(const train_stepper *s, const void *x, const int *lengths, const int *y,
                      const model_targets *targets, int batch_size, long t, uint64_t dropout_key, float lr,
                      train_step_result *out, tlb_error *err)
{
    tlb_model *m = s->model;
    const size_t n = model_num_params(m);
    const size_t sample = model_input_bytes(&m->config);
    const int V = m->config.num_classes, mb = s->micro_batch;
    memset(out, 0, sizeof *out);

    const float scale = 1.0f / (float)(s->global_batch > 0 ? s->global_batch : batch_size);
    if (model_check_batch(m, mb < batch_size ? mb : batch_size, err) != 0) return -1;
    model_zero_grads(m);
    for (int at = 0; at < batch_size; at += mb) {
        const int k = batch_size - at < mb ? batch_size - at : mb;
        const model_dropout d = {1, dropout_key, s->first_row + at};
        /* The micro-batch's view of the targets. */
        model_targets mt = {0};
        if (targets) {
            mt = *targets;
            if (mt.y2) mt.y2 += at;
            if (mt.lam) mt.lam += at;
        }
        const model_targets *tk = targets ? &mt : NULL;
        const void *xk = (const char *)x + (size_t)at * sample;
        const int *lk = lengths ? lengths + at : NULL;
        out->loss += model_forward_padded(m, xk, lk, y + at, tk, k, &d);
        for (int i = 0; i < k; i++) out->correct += argmax(m->logits + (size_t)i * V, V) == y[at + i];
        model_backward_padded(m, xk, lk, y + at, tk, k, scale, &d);
    }
    if (s->reduce && s->reduce(s->reduce_ctx, m->grads, n, out, err) != 0) return -1;
    if (s->nan_at_step == t) poison_grads(m);
    /* The guard against NaN/Inf: stop before the update spoils the
     * parameters (the caller's last checkpoint stays the good one). */
    out->nonfinite = !isfinite(out->loss) ? "loss" : first_nonfinite_grad(m);
    if (out->nonfinite)
        return tlb_fail(err, "non-finite %s%s", strcmp(out->nonfinite, "loss") ? "gradient of " : "",
                        out->nonfinite);
    /* Clipping (and any rescaling of the summed gradients) goes here:
     * after the reduction and the guard, before the update. */
    if (s->grad_clip > 0) out->grad_norm = grad_clip_global(m->grads, n, s->grad_clip);
    adamw_hparams h = s->hparams;
    h.lr = lr;
    adamw_step(m->params, s->adam_m, s->adam_v, m->grads, n, t, &h);
    return 0;
}
