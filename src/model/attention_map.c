#include "model/attention_map.h"

#include <math.h>
#include <string.h>

/* The slow update is the schedule's last step (wiring.h). */
static const block_acts *slow_update(const tlb_model *m, int chunk)
{
    return &m->steps[(size_t)chunk * m->layout.num_steps + m->layout.num_steps - 1];
}

int model_state_rows(const tlb_model *m) { return model_num_state(&m->config); }

/* probs(ctx, ch): sample b's [H, Tq, Tk] probabilities of chunk ch's update. */
typedef const float *(*chunk_probs_fn)(const void *ctx, int chunk, int b);

static void maps_of(chunk_probs_fn probs, const void *ctx, const tlb_model_config *c, int b,
                    float *per_row, float *max)
{
    const int H = c->num_heads, N = model_num_patches(c), nchunks = model_num_chunks(c);
    const int Tq = model_num_state(c), Tk = c->chunk_size; /* Tk tokens per chunk */
    for (int ch = 0; ch < nchunks; ch++) {
        const float *p = probs(ctx, ch, b);
        for (int j = 0; j < Tk; j++) {
            const int token = ch * Tk + j;
            float mean_of_max = 0.0f;
            for (int h = 0; h < H; h++) {
                float mx = 0.0f;
                for (int i = 0; i < Tq; i++) mx = fmaxf(mx, p[((size_t)h * Tq + i) * Tk + j]);
                mean_of_max += mx / (float)H;
            }
            if (max) max[token] = mean_of_max;
            for (int i = 0; per_row && i < Tq; i++) {
                float mean = 0.0f;
                for (int h = 0; h < H; h++) mean += p[((size_t)h * Tq + i) * Tk + j] / (float)H;
                per_row[(size_t)i * N + token] = mean;
            }
        }
    }
}

static const float *training_probs(const void *ctx, int chunk, int b)
{
    const tlb_model *m = ctx;
    const block_acts *a = slow_update(m, chunk);
    return a->probs + (size_t)b * m->config.num_heads * a->Tq * a->Tk;
}

void model_slow_attention(const tlb_model *m, int b, float *per_row, float *max)
{
    maps_of(training_probs, m, &m->config, b, per_row, max);
}

static const float *inference_probs(const void *ctx, int chunk, int b)
{
    const model_inference *inf = ctx;
    const tlb_model_config *c = &inf->model->config;
    const size_t per_sample = (size_t)c->num_heads * model_num_state(c) * c->chunk_size;
    return inf->slow_probs + ((size_t)chunk * inf->capacity + b) * per_sample;
}

void model_inference_slow_attention(const model_inference *inf, int b, float *per_row, float *max)
{
    maps_of(inference_probs, inf, &inf->model->config, b, per_row, max);
}
