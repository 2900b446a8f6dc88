#include "model/infer.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

/* Carves the plan (arena protocol: measured, then carved). */
static void carve(model_inference *inf, arena *a)
{
    const tlb_model *m = inf->model;
    const tlb_model_config *c = &m->config;
    const size_t B = (size_t)inf->capacity, t = (size_t)inf->tile;
    const size_t N = (size_t)model_num_patches(c), D = (size_t)c->embed_dim, C = (size_t)c->chunk_size;
    const size_t Ns = (size_t)model_num_state(c), V = (size_t)c->num_classes, T = (size_t)model_stream_rows_max(c);
    const size_t H = (size_t)c->num_heads, nchunks = (size_t)model_num_chunks(c);
    inf->logits = arena_take(a, B * V);
    inf->probs = arena_take(a, B * V);
    inf->losses = arena_take(a, B);
    inf->state = inf->flags & INFER_STATE ? arena_take(a, B * Ns * D) : NULL;
    inf->slow_probs = inf->flags & INFER_ATTENTION ? arena_take(a, nchunks * B * H * Ns * C) : NULL;
    for (int i = 0; i < inf->threads; i++) {
        infer_workspace *w = &inf->ws[i];
        w->tok = arena_take(a, t * N * D);
        w->tok_mean = arena_take(a, t * N);
        w->tok_rstd = arena_take(a, t * N);
        w->tokens = arena_take(a, t * N * D);
        for (int k = 0; k < 3; k++) w->fast[k] = arena_take(a, t * C * D);
        for (int k = 0; k < 3; k++) w->slow[k] = arena_take(a, t * Ns * D);
        w->probs = arena_take(a, t * H * T * T);
        block_acts_plan(&w->acts, a, m->dims, (int)t, (int)T, (int)T);
        memset(&w->scratch, 0, sizeof w->scratch);
        w->scratch.g = arena_take(a, t * T * (size_t)m->dims.F);
        w->readout_ln = w->readout_mean = w->readout_rstd = NULL;
        if (c->readout == READOUT_STATE) {
            w->readout_ln = arena_take(a, t * Ns * D);
            w->readout_mean = arena_take(a, t * Ns);
            w->readout_rstd = arena_take(a, t * Ns);
        }
        w->pooled = arena_take(a, t * D);
    }
}

int model_inference_plan(model_inference *inf, const tlb_model *m, int capacity, int tile,
                         unsigned flags, tlb_error *err)
{
    memset(inf, 0, sizeof *inf);
    if (capacity < 1) return tlb_fail(err, "inference plan: capacity %d < 1", capacity);
    inf->model = m;
    inf->capacity = capacity;
    inf->tile = tile > 0 ? tile : INFER_TILE_DEFAULT;
    if (inf->tile > capacity) inf->tile = capacity;
    const int tiles = (capacity + inf->tile - 1) / inf->tile, threads = omp_get_max_threads();
    inf->threads = threads < tiles ? threads : tiles;
    inf->flags = flags;
    inf->ws = calloc((size_t)inf->threads, sizeof *inf->ws);
    if (!inf->ws) return tlb_fail(err, "out of memory for %d inference workspaces", inf->threads);
    carve(inf, &inf->mem);
    if (arena_commit(&inf->mem) != 0) {
        const double mib = (double)inf->mem.used / (1 << 20);
        model_inference_free(inf);
        return tlb_fail(err, "cannot allocate %.1f MiB for inference on %d samples", mib, capacity);
    }
    carve(inf, &inf->mem);
    /* The ops run single-threaded inside a tile: no nested teams. */
    if (inf->threads > 1) omp_set_max_active_levels(1);
    return 0;
}

void model_inference_free(model_inference *inf)
{
    arena_release(&inf->mem);
    free(inf->ws);
    memset(inf, 0, sizeof *inf);
}

/* Samples [b0, b0+n) on one workspace: model.c's forward_shard with dropout
 * off, the per-(chunk, step) buffers replaced by w's. */
static void run_tile(model_inference *inf, infer_workspace *w, const float *img, const int *labels,
                     int b0, int n)
{
    const tlb_model *m = inf->model;
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int S = c->image_size, P = c->patch_size, D = c->embed_dim, C = c->chunk_size;
    const int N = model_num_patches(c), nchunks = model_num_chunks(c), V = c->num_classes;
    const int Ns = model_num_state(c), H = c->num_heads;
    const size_t state_len = (size_t)Ns * D;
    const float *p = m->params;

    /* 1. Patch embedding. */
    tlb_ops.patch_conv.forward(w->tok, img + (size_t)b0 * S * S * 3, p + l->conv_kernel, p + l->conv_bias,
                               n, S, P, D);
    tlb_ops.posemb.forward(w->tok, w->tok, p + l->pos_emb, n, N, D);
    tlb_ops.layernorm.forward(w->tokens, w->tok_mean, w->tok_rstd, w->tok, p + l->patch_ln_gamma,
                              p + l->patch_ln_beta, n * N, D);
    float *slow = w->slow[0];
    for (int b = 0; b < n; b++) {
        float *dst = slow + (size_t)b * state_len;
        if (c->state_init == STATE_INIT_LEARNED) memcpy(dst, p + l->state_init, state_len * sizeof(float));
        else memset(dst, 0, state_len * sizeof(float));
    }

    /* 2. The cell over the chunks; each step writes the buffer its query
     * stream is not in. */
    block_dropout off;
    memset(&off, 0, sizeof off);
    const int keep_state = (inf->flags & INFER_STATE) || c->readout == READOUT_STATE;
    const float *fast = NULL;
    for (int ch = 0; ch < nchunks; ch++) {
        for (int b = 0; b < n; b++)
            memcpy(w->fast[0] + (size_t)b * C * D, w->tokens + ((size_t)b * N + (size_t)ch * C) * D,
                   (size_t)C * D * sizeof(float));
        const float *read = slow;
        if (m->state_pe) { /* sinusoid: the table is added before the chunk reads the state */
            for (int b = 0; b < n; b++)
                for (size_t k = 0; k < state_len; k++)
                    w->slow[2][b * state_len + k] = slow[b * state_len + k] + m->state_pe[k];
            read = w->slow[2];
        }
        const float *stream[2] = {w->fast[0], read};
        const int last = ch == nchunks - 1 && !keep_state ? l->num_steps - 1 : l->num_steps;
        for (int s = 0; s < last; s++) {
            const cell_step *st = &l->steps[s];
            const int Tq = model_stream_rows(c, st->query), Tk = model_stream_rows(c, st->kv);
            float *out = st->query == STREAM_SLOW ? (stream[STREAM_SLOW] == w->slow[0] ? w->slow[1] : w->slow[0])
                                                  : (stream[STREAM_FAST] == w->fast[1] ? w->fast[2] : w->fast[1]);
            w->acts.out = out;
            w->acts.probs = w->probs;
            if (s == l->num_steps - 1 && inf->slow_probs)
                w->acts.probs = inf->slow_probs + ((size_t)ch * inf->capacity + b0) * H * Ns * C;
            w->acts.Tq = Tq, w->acts.Tk = Tk;
            block_forward(&w->acts, &w->scratch, p, &l->attn[st->attn], &l->ffn[st->ffn], stream[st->query],
                          stream[st->kv], m->dims, n, Tq, Tk, &off);
            stream[st->query] = out;
        }
        fast = stream[STREAM_FAST];
        slow = (float *)stream[STREAM_SLOW];
    }

    /* 3. Head, state, loss. */
    float *logits = inf->logits + (size_t)b0 * V;
    if (c->readout == READOUT_STATE) {
        tlb_ops.layernorm.forward(w->readout_ln, w->readout_mean, w->readout_rstd, slow, p + l->readout_ln_gamma,
                                  p + l->readout_ln_beta, n * Ns, D);
        tlb_ops.meanpool.forward(w->pooled, w->readout_ln, n, Ns, D);
    } else {
        tlb_ops.meanpool.forward(w->pooled, fast, n, C, D);
    }
    tlb_ops.dense.forward(logits, w->pooled, p + l->head_kernel, p + l->head_bias, n, D, V);
    if (inf->state) memcpy(inf->state + (size_t)b0 * state_len, slow, (size_t)n * state_len * sizeof(float));
    if (labels)
        tlb_ops.softmax_xent.forward(inf->losses + b0, inf->probs + (size_t)b0 * V, logits, labels + b0, n, V);
}

void model_inference_run(model_inference *inf, const float *img, const int *labels, int B)
{
    if (B > inf->capacity) B = inf->capacity;
    const int tile = inf->tile, tiles = (B + tile - 1) / tile;
    const int teams = inf->threads < tiles ? inf->threads : tiles;
    if (teams <= 1) { /* one tile at a time, the ops free to use every thread */
        for (int t = 0; t < tiles; t++) {
            const int b0 = t * tile;
            run_tile(inf, &inf->ws[0], img, labels, b0, B - b0 < tile ? B - b0 : tile);
        }
        return;
    }
    /* A tile's result does not depend on the thread that runs it. The
     * assignment is static all the same: oneDNN's primitives are cached per
     * thread and shape, so a thread must meet the same tile shapes every run
     * (no allocation after the first). */
#pragma omp parallel num_threads(teams)
    {
        /* oneDNN sizes its work split from omp_get_max_threads(): say 1. */
        omp_set_num_threads(1);
        infer_workspace *w = &inf->ws[omp_get_thread_num()];
#pragma omp for schedule(static, 1)
        for (int t = 0; t < tiles; t++) {
            const int b0 = t * tile;
            run_tile(inf, w, img, labels, b0, B - b0 < tile ? B - b0 : tile);
        }
    }
}

state_diversity model_inference_state_diversity(const model_inference *inf, int B, double *work)
{
    const tlb_model_config *c = &inf->model->config;
    if (!inf->state) return (state_diversity){NAN, NAN};
    return state_diversity_of(inf->state, B, model_num_state(c), c->embed_dim, work);
}
