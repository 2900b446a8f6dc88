#include "model/attention_map.h"

#include <math.h>
#include <string.h>

/* The slow update is the schedule's last step (wiring.h). */
static const block_acts *slow_update(const tlb_model *m, int chunk)
{
    return &m->steps[(size_t)chunk * m->layout.num_steps + m->layout.num_steps - 1];
}

int model_state_rows(const tlb_model *m) { return slow_update(m, 0)->Tq; }

void model_slow_attention(const tlb_model *m, int b, float *per_row, float *max)
{
    const int H = m->config.num_heads, N = model_num_patches(&m->config);
    const int nchunks = model_num_chunks(&m->config);
    for (int ch = 0; ch < nchunks; ch++) {
        const block_acts *a = slow_update(m, ch);
        const int Tq = a->Tq, Tk = a->Tk; /* Tk tokens per chunk */
        const float *p = a->probs + (size_t)b * H * Tq * Tk; /* [H, Tq, Tk] */
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
