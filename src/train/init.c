#include "train/init.h"

#include <math.h>

#include "util/rng.h"

void init_keras(tlb_model *m, uint64_t seed)
{
    const param_table *t = &m->layout.table;
    for (int i = 0; i < t->count; i++) {
        const param_entry *e = &t->entries[i];
        float *w = m->params + e->offset;
        rng_stream r = {rng_key(seed, (uint64_t)i), 0};
        float limit = 0.0f;
        switch (t->init[i]) {
        case INIT_ZEROS: limit = 0.0f; break;
        case INIT_ONES: limit = 0.0f; break;
        case INIT_POS_EMB: limit = 0.05f; break;
        /* The learned initial state: unit variance, the scale of the LayerNormed
         * tokens it attends to. At +-0.05 (pos_emb's) the rows differ too
         * little next to the first updates: measured at the seed config's
         * init, mean row cosine 0.99 after the last chunk, against 0.60 here
         * (README, "The slow state"). */
        case INIT_STATE: limit = sqrtf(3.0f); break;
        case INIT_GLOROT: limit = sqrtf(6.0f / (float)(t->fans[i][0] + t->fans[i][1])); break;
        }
        for (size_t k = 0; k < e->numel; k++) {
            if (t->init[i] == INIT_ONES) w[k] = 1.0f;
            else if (limit == 0.0f) w[k] = 0.0f;
            else w[k] = (2.0f * rng_next_uniform(&r) - 1.0f) * limit;
        }
    }
}
