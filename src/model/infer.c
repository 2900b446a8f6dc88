#include "model/infer.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/walk.h"

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
        block_acts_plan(&w->acts, a, m->dims, (int)t, (int)T, (int)T,
                        (block_keep){1, 1, 0, ops_table_fused(&m->ops, TLB_OP_ffn)}); /* forward only */
        memset(&w->scratch, 0, sizeof w->scratch);
        w->scratch.g = arena_take(a, t * T * (size_t)m->dims.F);
        w->readout_ln = w->readout_mean = w->readout_rstd = NULL;
        if (c->readout == READOUT_STATE) {
            w->readout_ln = arena_take(a, t * Ns * D);
            w->readout_mean = arena_take(a, t * Ns);
            w->readout_rstd = arena_take(a, t * Ns);
        }
        w->pooled = arena_take(a, t * D);
        w->kv_len = c->input == INPUT_TOKENS ? (int *)arena_take(a, t) : NULL; /* ints in float slots */
        const size_t Hh = (size_t)c->head_hidden;
        w->hidden_pre = Hh ? arena_take(a, t * Hh) : NULL;
        w->hidden = Hh ? arena_take(a, t * Hh) : NULL;
    }
}

/* The tile shapes a thread meets at full capacity (whole tiles and the
 * remainder), set up on the calling thread. */
static int prepare_tiles(const model_inference *inf, size_t *staging, tlb_error *err)
{
    const block_kernels k = {&inf->model->ops, NULL, NULL, NULL};
    const int rest = inf->capacity % inf->tile;
    if (model_walk_prepare(inf->model, &k, inf->tile, staging, err) != 0) return -1;
    return rest ? model_walk_prepare(inf->model, &k, rest, staging, err) : 0;
}

/* Every kernel a run calls, set up on the threads that call it: each
 * thread of the tile team (one thread per tile), and the calling thread
 * with every thread (runs of a single tile); then the bf16 buffers. */
static int prepare_kernels(model_inference *inf, tlb_error *err)
{
    size_t staging = 0;
    if (prepare_tiles(inf, &staging, err) != 0) return -1;
    if (inf->threads > 1) {
        int failed = 0;
        tlb_error first = {0};
        size_t most = 0;
#pragma omp parallel num_threads(inf->threads) reduction(max : most)
        {
            omp_set_num_threads(1);
            tlb_error e;
            size_t need = 0;
            if (prepare_tiles(inf, &need, &e) != 0) {
#pragma omp critical(tlb_infer_prepare_error)
                if (!failed++) first = e;
            }
            most = need;
        }
        if (failed) {
            if (err) *err = first;
            return -1;
        }
        if (most > staging) staging = most;
    }
    if (ops_table_folds_norms(&inf->model->ops)) {
        inf->folded = aligned_alloc(64, ((model_num_params(inf->model) * sizeof(float)) + 63) & ~(size_t)63);
        if (!inf->folded) return tlb_fail(err, "out of memory for the folded LayerNorm weights");
    }
    if (!inf->model->ops.bf16_dense) return 0;
    const size_t n = model_num_params(inf->model);
    inf->staging_n = (staging + 31) & ~(size_t)31;
    inf->params16 = aligned_alloc(64, ((n * sizeof(uint16_t)) + 63) & ~(size_t)63);
    inf->staging = aligned_alloc(64, (((size_t)inf->threads * inf->staging_n * sizeof(uint16_t)) + 63) & ~(size_t)63);
    if (!inf->params16 || !inf->staging) return tlb_fail(err, "out of memory for the bf16 weights and staging");
    for (int i = 0; i < inf->threads; i++) inf->ws[i].staging = inf->staging + (size_t)i * inf->staging_n;
    return 0;
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
    for (int i = 0; i < inf->threads; i++) inf->ws[i].plan = inf;
    /* The ops run single-threaded inside a tile: no nested teams. */
    if (inf->threads > 1) omp_set_max_active_levels(1);
    if (prepare_kernels(inf, err) != 0) {
        model_inference_free(inf);
        return -1;
    }
    return 0;
}

void model_inference_free(model_inference *inf)
{
    arena_release(&inf->mem);
    free(inf->ws);
    free(inf->params16);
    free(inf->staging);
    free(inf->folded);
    memset(inf, 0, sizeof *inf);
}

/* The walk's step buffers in an inference tile: the workspace's one block,
 * its output in the buffer its query stream is not in; the slow update's
 * attention kept per chunk when asked for. */
static block_acts tile_step(model_walk *w, int chunk, int s, const float *const stream[2])
{
    infer_workspace *ws = w->owner;
    const model_inference *inf = ws->plan;
    const tlb_model_config *c = &w->model->config;
    const cell_step *st = &w->model->layout.steps[s];
    block_acts a = ws->acts;
    /* The new state goes where neither the state read (with the sinusoid,
     * state + table in slow[2]) nor the one before the chunk is: a padded
     * sample may keep the latter. */
    const float *keep = stream[STREAM_SLOW] == ws->slow[2] ? w->slow_prev : stream[STREAM_SLOW];
    a.out = st->query == STREAM_SLOW ? (keep == ws->slow[0] ? ws->slow[1] : ws->slow[0])
                                     : (stream[STREAM_FAST] == ws->fast[1] ? ws->fast[2] : ws->fast[1]);
    a.probs = ws->probs;
    if (s == w->model->layout.num_steps - 1 && inf->slow_probs)
        a.probs = inf->slow_probs +
                  ((size_t)chunk * inf->capacity + w->b0) * c->num_heads * model_num_state(c) * c->chunk_size;
    a.Tq = model_stream_rows(c, st->query), a.Tk = model_stream_rows(c, st->kv);
    return a;
}

/* Samples [b0, b0+n) on one workspace: the model's walk with dropout off. */
static void run_tile(model_inference *inf, infer_workspace *ws, const void *x, const int *lengths, const int *labels,
                     int b0, int n)
{
    const tlb_model *m = inf->model;
    const tlb_model_config *c = &m->config;
    const size_t V = (size_t)c->num_classes, state_len = (size_t)model_num_state(c) * c->embed_dim;
    model_walk w;
    memset(&w, 0, sizeof w);
    w.model = m;
    w.kernels = (block_kernels){&m->ops, inf->params16, ws->staging, inf->folded};
    w.b0 = b0, w.n = n;
    w.lengths = lengths, w.kv_len = ws->kv_len;
    w.tok = ws->tok, w.tok_mean = ws->tok_mean, w.tok_rstd = ws->tok_rstd, w.tokens = ws->tokens;
    w.slow0 = ws->slow[0];
    w.readout_ln = ws->readout_ln, w.readout_mean = ws->readout_mean, w.readout_rstd = ws->readout_rstd;
    w.pooled = ws->pooled;
    w.hidden_pre = ws->hidden_pre, w.hidden = ws->hidden;
    w.logits = inf->logits + (size_t)b0 * V;
    w.losses = inf->losses + b0;
    w.probs = inf->probs + (size_t)b0 * V;
    w.final_state = inf->state ? inf->state + (size_t)b0 * state_len : NULL;
    w.scratch = ws->scratch;
    w.chunk_slab = ws->fast[0], w.chunk_stride = 0;
    w.state_in = ws->slow[2], w.state_stride = 0;
    w.step = tile_step;
    w.owner = ws;
    /* The last update only feeds the state and its attention maps. */
    w.skip_unread_update = !(inf->flags & (INFER_STATE | INFER_ATTENTION)) && c->readout != READOUT_STATE;
    model_walk_forward(&w, x, labels, NULL, NULL);
}

int model_inference_run(model_inference *inf, const void *x, const int *labels, int B, tlb_error *err)
{
    return model_inference_run_padded(inf, x, NULL, labels, B, err);
}

int model_inference_run_padded(model_inference *inf, const void *x, const int *lengths, const int *labels, int B,
                               tlb_error *err)
{
    if (B < 1 || B > inf->capacity)
        return tlb_fail(err, "inference on %d samples: the plan holds 1 to %d", B, inf->capacity);
    if (inf->params16) model_params_to_bf16(inf->model, inf->params16);
    if (inf->folded) model_fold_norms(inf->model, inf->folded);
    if (inf->folded && inf->params16) model_fold_norms_bf16(inf->model, inf->params16, inf->folded);
    const int tile = inf->tile, tiles = (B + tile - 1) / tile;
    const int teams = inf->threads < tiles ? inf->threads : tiles;
    if (teams <= 1) { /* one tile at a time, the ops free to use every thread */
        for (int t = 0; t < tiles; t++) {
            const int b0 = t * tile;
            run_tile(inf, &inf->ws[0], x, lengths, labels, b0, B - b0 < tile ? B - b0 : tile);
        }
        return 0;
    }
    /* A tile's result does not depend on the thread that runs it. The
     * assignment is static all the same: the kernels' resources are set up
     * per thread at plan time, so a thread must meet the same tile shapes
     * every run. */
#pragma omp parallel num_threads(teams)
    {
        /* oneDNN sizes its work split from omp_get_max_threads(): say 1. */
        omp_set_num_threads(1);
        infer_workspace *ws = &inf->ws[omp_get_thread_num()];
#pragma omp for schedule(static, 1)
        for (int t = 0; t < tiles; t++) {
            const int b0 = t * tile;
            run_tile(inf, ws, x, lengths, labels, b0, B - b0 < tile ? B - b0 : tile);
        }
    }
    return 0;
}

state_diversity model_inference_state_diversity(const model_inference *inf, int B, double *work)
{
    const tlb_model_config *c = &inf->model->config;
    if (!inf->state) return (state_diversity){NAN, NAN};
    return state_diversity_of(inf->state, B, model_num_state(c), c->embed_dim, work);
}
