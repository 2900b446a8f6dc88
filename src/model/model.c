#include "model/model.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "model/walk.h"

/* The authors' fixed table (golden README, "Slow-state options"): sines in
 * the first D/2 columns, cosines in the rest, w_i = 10000^(-i / (D/2 - 1)). */
static void sinusoid_table(float *pe, int Ns, int D)
{
    const int h = D / 2;
    for (int n = 0; n < Ns; n++)
        for (int i = 0; i < h; i++) {
            const double w = exp(-log(10000.0) * i / (h - 1));
            pe[(size_t)n * D + i] = (float)sin(n * w);
            pe[(size_t)n * D + h + i] = (float)cos(n * w);
        }
}

int model_create(tlb_model *m, const tlb_model_config *c, tlb_error *err)
{
    memset(m, 0, sizeof *m);
    if (model_config_validate(c, err) != 0) return -1;
    m->config = *c;
    if (model_layout_build(&m->layout, c) != 0) {
        model_destroy(m);
        return tlb_fail(err, "out of memory building the parameter table");
    }
    m->dims = (block_dims){c->embed_dim, c->num_heads, c->key_dim, model_ffn_dim(c)};
    ops_table_automatic(&m->ops);
    const size_t n = m->layout.table.total;
    m->params = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    m->grads = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!m->params || !m->grads) {
        model_destroy(m);
        return tlb_fail(err, "out of memory for %zu parameters", n);
    }
    memset(m->params, 0, n * sizeof(float));
    memset(m->grads, 0, n * sizeof(float));
    if (c->state_init == STATE_INIT_SINUSOID) {
        const int Ns = model_num_state(c);
        m->state_pe = malloc((size_t)Ns * c->embed_dim * sizeof(float));
        if (!m->state_pe) {
            model_destroy(m);
            return tlb_fail(err, "out of memory for the state's sinusoid table");
        }
        sinusoid_table(m->state_pe, Ns, c->embed_dim);
    }
    return 0;
}

/* Frees the plan (activations, shard buffers, bf16 copies). */
static void plan_release(tlb_model *m)
{
    arena_release(&m->acts);
    free(m->steps);
    free(m->shard_grads);
    free(m->params16);
    free(m->staging);
    free(m->folded);
    m->steps = NULL, m->shard_grads = NULL, m->params16 = NULL, m->staging = NULL, m->folded = NULL;
    m->capacity = 0, m->shards = 0, m->staging_n = 0;
}

void model_use_ops(tlb_model *m, const op_table *ops)
{
    plan_release(m);
    m->ops = *ops;
}

void model_destroy(tlb_model *m)
{
    plan_release(m);
    free(m->params);
    free(m->grads);
    free(m->state_pe);
    model_layout_free(&m->layout);
    memset(m, 0, sizeof *m);
}

size_t model_num_params(const tlb_model *m) { return m->layout.table.total; }

void model_zero_grads(tlb_model *m) { memset(m->grads, 0, model_num_params(m) * sizeof(float)); }

int model_check_lengths(const tlb_model *m, const int *lengths, int B, tlb_error *err)
{
    const tlb_model_config *c = &m->config;
    if (!lengths) return 0;
    if (c->input != INPUT_TOKENS) return tlb_fail(err, "sequence lengths given for an image model");
    for (int b = 0; b < B; b++)
        if (lengths[b] < 1 || lengths[b] > c->seq_len)
            return tlb_fail(err, "sample %d: length %d is outside [1, seq_len %d]", b, lengths[b], c->seq_len);
    return 0;
}

int model_check_tokens(const tlb_model *m, const int *ids, int B, tlb_error *err)
{
    const tlb_model_config *c = &m->config;
    if (c->input != INPUT_TOKENS) return 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < c->seq_len; t++) {
            const int id = ids[(size_t)b * c->seq_len + t];
            if (id < 0 || id >= c->vocab_size)
                return tlb_fail(err, "sample %d, token %d: id %d is outside [0, vocab_size %d)", b, t, id,
                                c->vocab_size);
        }
    return 0;
}

/* Carves every activation and scratch buffer for B samples (arena protocol). */
static void carve(tlb_model *m, arena *a, int B)
{
    const tlb_model_config *c = &m->config;
    const size_t N = (size_t)model_num_patches(c), D = (size_t)c->embed_dim;
    const size_t V = (size_t)c->num_classes, nchunks = (size_t)model_num_chunks(c);
    const size_t Ns = (size_t)model_num_state(c), T = (size_t)model_stream_rows_max(c);
    const model_layout *l = &m->layout;
    m->tok = arena_take(a, (size_t)B * N * D);
    m->tok_mean = arena_take(a, (size_t)B * N);
    m->tok_rstd = arena_take(a, (size_t)B * N);
    m->tokens = arena_take(a, (size_t)B * N * D);
    m->chunks = arena_take(a, (size_t)B * N * D);
    m->slow0 = arena_take(a, (size_t)B * Ns * D);
    m->slow_in = c->state_init == STATE_INIT_SINUSOID ? arena_take(a, nchunks * B * Ns * D) : NULL;
    const block_keep keep = {block_keeps_normalised(&m->ops), block_keeps_att(&m->ops), block_saves_h_bf16(&m->ops),
                             0};
    for (size_t ch = 0; ch < nchunks; ch++)
        for (int s = 0; s < l->num_steps; s++)
            block_acts_plan(&m->steps[ch * l->num_steps + s], a, m->dims, B,
                            model_stream_rows(c, l->steps[s].query), model_stream_rows(c, l->steps[s].kv),
                            keep);
    m->readout_ln = m->readout_mean = m->readout_rstd = m->d_readout = NULL;
    if (c->readout == READOUT_STATE) {
        m->readout_ln = arena_take(a, (size_t)B * Ns * D);
        m->readout_mean = arena_take(a, (size_t)B * Ns);
        m->readout_rstd = arena_take(a, (size_t)B * Ns);
        m->d_readout = arena_take(a, (size_t)B * Ns * D);
    }
    m->pooled = arena_take(a, (size_t)B * D);
    const size_t Hh = (size_t)c->head_hidden;
    m->hidden_pre = Hh ? arena_take(a, (size_t)B * Hh) : NULL;
    m->hidden = Hh ? arena_take(a, (size_t)B * Hh) : NULL;
    m->d_hidden = Hh ? arena_take(a, (size_t)B * Hh) : NULL;
    m->d_hidden_pre = Hh ? arena_take(a, (size_t)B * Hh) : NULL;
    m->logits = arena_take(a, (size_t)B * V);
    m->probs = arena_take(a, (size_t)B * V);
    m->losses = arena_take(a, (size_t)B);
    block_scratch_plan(&m->scratch, a, m->dims, B, (int)T, (int)T);
    m->d_stream[STREAM_FAST] = arena_take(a, (size_t)B * T * D);
    m->d_stream[STREAM_SLOW] = arena_take(a, (size_t)B * T * D);
    m->d_tmp = arena_take(a, (size_t)B * T * D);
    m->d_tokens = arena_take(a, (size_t)B * N * D);
    m->d_tok = arena_take(a, (size_t)B * N * D);
    m->d_pooled = arena_take(a, (size_t)B * D);
    m->d_logits = arena_take(a, (size_t)B * V);
    /* Padded sequences (input: tokens): a chunk's valid tokens per sample
     * (ints in float-sized slots) and the held state gradients. */
    const int tokens = c->input == INPUT_TOKENS;
    m->kv_len = tokens ? (int *)arena_take(a, (size_t)B) : NULL;
    m->d_hold = tokens ? arena_take(a, (size_t)B * Ns * D) : NULL;
}

size_t model_plan_bytes(const tlb_model *m, int B)
{
    if (m->capacity == B) return m->acts.capacity;
    tlb_model probe = *m;
    probe.steps = calloc((size_t)model_num_chunks(&m->config) * m->layout.num_steps,
                         sizeof *probe.steps);
    if (!probe.steps) return 0; /* unknown: model_plan will report the shortage */
    arena a = {0};
    carve(&probe, &a, B);
    free(probe.steps);
    return a.used;
}

static int shard_start(int B, int shards, int s) { return (int)((long)B * s / shards); }

/* Inside a shard the ops run on one thread. Nested regions are already
 * inactive (max_active_levels 1), but oneDNN sizes its work split from
 * omp_get_max_threads(): this task's count must say 1 too. */
static void shard_single_threaded(void) { omp_set_num_threads(1); }

/* Sets up every kernel the shards of a micro-batch of B call, on the
 * thread that will call it: the same team shape and static assignment as
 * the forward and backward (oneDNN's primitives and the SIMD scratch are
 * per thread). *staging: the most bf16 staging a shard needs. */
static int prepare_shards(tlb_model *m, int B, size_t *staging, tlb_error *err)
{
    const int shards = model_shards_for(m, B);
    const block_kernels k = {&m->ops, NULL, NULL, NULL};
    if (shards <= 1) return model_walk_prepare(m, &k, B, staging, err);
    int failed = 0;
    tlb_error first = {0};
    size_t most = 0;
#pragma omp parallel for num_threads(shards) schedule(static, 1) reduction(max : most)
    for (int s = 0; s < shards; s++) {
        shard_single_threaded();
        tlb_error e;
        size_t need = 0;
        if (model_walk_prepare(m, &k, shard_start(B, shards, s + 1) - shard_start(B, shards, s), &need, &e) != 0) {
#pragma omp critical(tlb_prepare_error)
            if (!failed++) first = e;
        }
        most = need > most ? need : most;
    }
    if (failed) {
        if (err) *err = first;
        return -1;
    }
    if (most > *staging) *staging = most;
    return 0;
}

/* The capacity's kernels, then the bf16 weights and each shard's staging. */
static int prepare_kernels(tlb_model *m, tlb_error *err)
{
    size_t staging = 0;
    if (prepare_shards(m, m->capacity, &staging, err) != 0) return -1;
    if (ops_table_folds_norms(&m->ops)) {
        m->folded = aligned_alloc(64, ((model_num_params(m) * sizeof(float)) + 63) & ~(size_t)63);
        if (!m->folded) return tlb_fail(err, "out of memory for the folded LayerNorm weights");
    }
    if (!m->ops.bf16_dense) return 0;
    const size_t n = model_num_params(m);
    m->staging_n = (staging + 31) & ~(size_t)31; /* each shard's slice on 64 bytes */
    m->params16 = aligned_alloc(64, ((n * sizeof(uint16_t)) + 63) & ~(size_t)63);
    const size_t total = (size_t)(m->shards > 1 ? m->shards : 1) * m->staging_n;
    m->staging = aligned_alloc(64, ((total * sizeof(uint16_t)) + 63) & ~(size_t)63);
    if (!m->params16 || !m->staging) return tlb_fail(err, "out of memory for the bf16 weights and staging");
    return 0;
}

int model_prepare_batch(tlb_model *m, int B, tlb_error *err)
{
    if (model_check_batch(m, B, err) != 0) return -1;
    size_t staging = 0; /* a smaller batch needs no more per shard than the capacity */
    return prepare_shards(m, B, &staging, err);
}

int model_plan(tlb_model *m, int B, tlb_error *err)
{
    plan_release(m);
    if (B < 1) return tlb_fail(err, "plan for %d samples: need at least 1", B);
    m->steps = calloc((size_t)model_num_chunks(&m->config) * m->layout.num_steps, sizeof *m->steps);
    if (!m->steps) return tlb_fail(err, "out of memory");
    carve(m, &m->acts, B);
    if (arena_commit(&m->acts) != 0) {
        const double mib = (double)m->acts.used / (1 << 20);
        plan_release(m);
        return tlb_fail(err, "cannot allocate %.1f MiB of activations for a micro-batch of %d", mib, B);
    }
    carve(m, &m->acts, B);
    m->capacity = B;

    const int threads = omp_get_max_threads();
    m->shards = threads < B ? threads : B;
    if (m->shards > 1) {
        const size_t n = (size_t)(m->shards - 1) * model_num_params(m);
        m->shard_grads = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
        if (!m->shard_grads) {
            plan_release(m);
            return tlb_fail(err, "out of memory for %d gradient shards", m->shards - 1);
        }
        /* The ops run single-threaded inside a shard: no nested teams. */
        omp_set_max_active_levels(1);
    }
    if (prepare_kernels(m, err) != 0) {
        plan_release(m);
        return -1;
    }
    return 0;
}

int model_check_batch(const tlb_model *m, int B, tlb_error *err)
{
    if (B < 1) return tlb_fail(err, "a batch of %d samples: need at least 1", B);
    if (B > m->capacity)
        return tlb_fail(err, "a batch of %d samples exceeds the plan's capacity of %d%s", B, m->capacity,
                        m->capacity ? "" : " (not planned)");
    return 0;
}

int model_shards_for(const tlb_model *m, int B)
{
    if (m->shards <= 1 || B <= 1 || omp_in_parallel()) return 1;
    return m->shards < B ? m->shards : B;
}

static block_acts *step_acts(const tlb_model *m, int chunk, int step)
{
    return &m->steps[(size_t)chunk * m->layout.num_steps + step];
}

const float *model_trace_fast(const tlb_model *m, int chunk)
{
    /* The input of the slow update (the last step) is the new fast stream. */
    return step_acts(m, chunk, m->layout.num_steps - 1)->x_kv;
}

const float *model_trace_slow(const tlb_model *m, int chunk)
{
    return step_acts(m, chunk, m->layout.num_steps - 1)->out;
}

/* A shard's window on a block's activations: rows from sample b0 on. The
 * recorded inputs x_q/x_kv are offset too when set (backward). */
static block_acts acts_view(const block_acts *a, block_dims d, int b0, int Tq, int Tk)
{
    const size_t q = (size_t)b0 * Tq, k = (size_t)b0 * Tk, HK = (size_t)d.H * d.K;
    block_acts v = *a;
    if (v.ln_q) /* kept (block_keeps_normalised): all four */
        v.ln_q += q * d.D, v.ln_k += k * d.D, v.ln_v += k * d.D, v.ln_f += q * d.D;
    v.ln_q_mean += q, v.ln_q_rstd += q;
    v.ln_k_mean += k, v.ln_k_rstd += k;
    v.ln_v_mean += k, v.ln_v_rstd += k;
    v.q += q * HK, v.k += k * HK, v.v += k * HK;
    v.probs += (size_t)b0 * d.H * Tq * Tk;
    if (v.att) v.att += q * HK;
    v.attn_out += q * d.D;
    v.ln_f_mean += q, v.ln_f_rstd += q;
    if (v.h) v.h += q * d.F;
    if (v.h16) v.h16 += q * d.F;
    v.out += q * d.D;
    if (v.x_q) v.x_q += q * d.D;
    if (v.x_kv) v.x_kv += k * d.D;
    return v;
}

static block_scratch scratch_view(const block_scratch *s, block_dims d, int b0, int Tq, int Tk)
{
    const size_t q = (size_t)b0 * Tq, k = (size_t)b0 * Tk, HK = (size_t)d.H * d.K;
    block_scratch v = *s;
    v.d_ln_f += q * d.D, v.d_y2 += q * d.D;
    v.d_h += q * d.F, v.d_g += q * d.F, v.g += q * d.F;
    v.d_att += q * HK, v.d_q += q * HK;
    v.d_k += k * HK, v.d_v += k * HK;
    v.d_ln_q += q * d.D;
    v.d_ln_k += k * d.D, v.d_ln_v += k * d.D;
    v.ln_q += q * d.D, v.ln_f += q * d.D;
    v.ln_k += k * d.D, v.ln_v += k * d.D;
    v.att += q * HK;
    return v;
}

/* The walk's step buffers in the training plan: (chunk, step)'s own, at the
 * shard's first sample. */
static block_acts training_step(model_walk *w, int chunk, int s, const float *const stream[2])
{
    (void)stream;
    const tlb_model *m = w->model;
    const cell_step *st = &m->layout.steps[s];
    const int Tq = model_stream_rows(&m->config, st->query), Tk = model_stream_rows(&m->config, st->kv);
    return acts_view(step_acts(m, chunk, s), m->dims, w->b0, Tq, Tk);
}

/* The walk over samples [b0, b0+n) of a micro-batch of B on the training
 * plan's buffers. */
static model_walk training_walk(tlb_model *m, int B, int b0, int n, int shard)
{
    const tlb_model_config *c = &m->config;
    const size_t N = (size_t)model_num_patches(c), D = (size_t)c->embed_dim, C = (size_t)c->chunk_size;
    const size_t V = (size_t)c->num_classes, Ns = (size_t)model_num_state(c);
    const int T = model_stream_rows_max(c);
    model_walk w;
    memset(&w, 0, sizeof w);
    w.model = m;
    w.kernels = (block_kernels){&m->ops, m->params16, m->staging ? m->staging + (size_t)shard * m->staging_n : NULL,
                                m->folded};
    w.b0 = b0, w.n = n;
    w.tok = m->tok + b0 * N * D;
    w.tok_mean = m->tok_mean + b0 * N;
    w.tok_rstd = m->tok_rstd + b0 * N;
    w.tokens = m->tokens + b0 * N * D;
    w.slow0 = m->slow0 + b0 * Ns * D;
    if (m->readout_ln) {
        w.readout_ln = m->readout_ln + b0 * Ns * D;
        w.readout_mean = m->readout_mean + b0 * Ns;
        w.readout_rstd = m->readout_rstd + b0 * Ns;
    }
    w.pooled = m->pooled + b0 * D;
    if (m->hidden) {
        w.hidden_pre = m->hidden_pre + b0 * (size_t)c->head_hidden;
        w.hidden = m->hidden + b0 * (size_t)c->head_hidden;
    }
    w.logits = m->logits + b0 * V;
    w.losses = m->losses + b0;
    w.probs = m->probs + b0 * V;
    w.scratch = scratch_view(&m->scratch, m->dims, b0, T, T);
    w.chunk_slab = m->chunks + b0 * C * D;
    w.chunk_stride = (size_t)B * C * D;
    w.state_in = m->slow_in ? m->slow_in + b0 * Ns * D : NULL;
    w.state_stride = (size_t)B * Ns * D;
    w.kv_len = m->kv_len + b0;
    w.step = training_step;
    return w;
}

/* Each (chunk, step)'s inputs for the whole micro-batch of B, which backward
 * reads (offset per shard). Set here, before any shard runs: written inside
 * the shards, by shard 0, they raced with the other shards' copies of the
 * same struct (acts_view). */
static void record_step_inputs(tlb_model *m, int B)
{
    const tlb_model_config *c = &m->config;
    const int C = c->chunk_size, D = c->embed_dim;
    const size_t state_len = (size_t)model_num_state(c) * D;
    const float *slow = m->slow0;
    for (int ch = 0; ch < model_num_chunks(c); ch++) {
        /* sinusoid: the chunk reads state + table, kept per chunk in slow_in */
        if (m->state_pe) slow = m->slow_in + (size_t)ch * B * state_len;
        const float *stream[2] = {m->chunks + (size_t)ch * B * C * D, slow};
        for (int s = 0; s < m->layout.num_steps; s++) {
            const cell_step *st = &m->layout.steps[s];
            block_acts *full = step_acts(m, ch, s);
            full->x_q = stream[st->query];
            full->x_kv = stream[st->kv];
            stream[st->query] = full->out;
        }
        slow = stream[STREAM_SLOW];
    }
}

double model_forward_targets(tlb_model *m, const void *x, const int *labels,
                             const model_targets *targets, int B, const model_dropout *drop)
{
    return model_forward_padded(m, x, NULL, labels, targets, B, drop);
}

double model_forward_padded(tlb_model *m, const void *x, const int *lengths, const int *labels,
                            const model_targets *targets, int B, const model_dropout *drop)
{
    if (model_check_batch(m, B, NULL) != 0) return NAN;
    const int shards = model_shards_for(m, B);
    if (m->params16) model_params_to_bf16(m, m->params16);
    if (m->folded) model_fold_norms(m, m->folded);
    if (m->folded && m->params16) model_fold_norms_bf16(m, m->params16, m->folded);
    record_step_inputs(m, B);
    if (shards == 1) {
        model_walk w = training_walk(m, B, 0, B, 0);
        w.lengths = lengths;
        model_walk_forward(&w, x, labels, targets, drop);
    } else {
#pragma omp parallel for num_threads(shards) schedule(static, 1)
        for (int s = 0; s < shards; s++) {
            shard_single_threaded();
            const int b0 = shard_start(B, shards, s);
            model_walk w = training_walk(m, B, b0, shard_start(B, shards, s + 1) - b0, s);
            w.lengths = lengths;
            model_walk_forward(&w, x, labels, targets, drop);
        }
    }
    if (!labels) return 0.0;
    double sum = 0.0;
    for (int b = 0; b < B; b++) sum += m->losses[b];
    return sum;
}

double model_forward(tlb_model *m, const void *x, const int *labels, int B,
                     const model_dropout *drop)
{
    return model_forward_targets(m, x, labels, NULL, B, drop);
}

/* Padded sequences, before chunk ch's backward: a sample whose last valid
 * token is here receives its readout's gradient over its valid tokens
 * (readout: last_fast); one with no valid token here keeps the gradient of
 * its state aside (d_hold) and lets nothing through the chunk, whose update
 * it skipped (restored after the chunk, in backward_shard). */
static void padded_chunk_grads_in(tlb_model *m, int ch, const int *len, int n, const float *d_pooled,
                                  float *const d_stream[2], float *d_hold)
{
    const tlb_model_config *c = &m->config;
    const int D = c->embed_dim, C = c->chunk_size;
    const size_t state_len = (size_t)model_num_state(c) * D;
    for (int b = 0; b < n; b++) {
        const int valid = model_chunk_tokens(c, len[b], ch);
        if (c->readout == READOUT_LAST_FAST && valid > 0 && model_last_chunk(c, len[b]) == ch)
            m->ops.meanpool.backward(d_stream[STREAM_FAST] + (size_t)b * C * D, d_pooled + (size_t)b * D, 1, valid,
                                     D);
        if (valid == 0) {
            float *d_slow = d_stream[STREAM_SLOW] + b * state_len;
            memcpy(d_hold + b * state_len, d_slow, state_len * sizeof(float));
            memset(d_slow, 0, state_len * sizeof(float));
        }
    }
}

/* 1. The input stage's backward from d_tokens (the gradient of its output
 * tokens, which it may overwrite): embed_drop's dropout, the LayerNorm, the
 * position table (summed over the chunks with pos_emb: chunk), and the patch
 * convolution's weights or the token table's scatter-add. */
static void input_backward(tlb_model *m, const void *x, float *g, float *d_tokens, int b0, int n,
                           const model_dropout *drop)
{
    const op_table *ops = &m->ops;
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const float *w = m->params;
    const int D = c->embed_dim, N = model_num_patches(c), rows = model_pos_rows(c);
    const size_t tok_at = (size_t)b0 * N * D, len = (size_t)n * N * D;
    /* The LayerNorm's output gradient, then its input's: with embed_drop the
     * dropout's backward first (into d_tok), and the two buffers trade roles. */
    const float *d_ln_out = d_tokens;
    float *d_ln_in = m->d_tok + tok_at;
    const dropout_ctx ed = model_embed_dropout(m, drop, b0);
    if (ed.rate > 0.0f) {
        memset(d_ln_in, 0, len * sizeof(float));
        ops->dropout.backward(d_ln_in, d_tokens, n, (size_t)N * D, &ed);
        d_ln_out = d_ln_in;
        d_ln_in = d_tokens;
    }
    memset(d_ln_in, 0, len * sizeof(float));
    ops->layernorm.backward(d_ln_in, g + l->input_ln_gamma, g + l->input_ln_beta, d_ln_out, m->tok + tok_at,
                            w + l->input_ln_gamma, m->tok_mean + (size_t)b0 * N, m->tok_rstd + (size_t)b0 * N,
                            n * N, D);
    ops->posemb.backward(NULL, g + l->pos_emb, d_ln_in, n * (N / rows), rows, D);
    if (c->input == INPUT_TOKENS) {
        ops->token_embed.backward(g + l->token_table, d_ln_in, (const int *)x + (size_t)b0 * N, n * N,
                                  c->vocab_size, D);
    } else {
        const int S = c->image_size;
        ops->patch_conv.backward(NULL, g + l->conv_kernel, g + l->conv_bias, d_ln_in,
                                 (const float *)x + (size_t)b0 * S * S * 3, w + l->conv_kernel, n, S, c->patch_size,
                                 D);
    }
}

/* 3. The head's backward: d_pooled [n, D] from the logits' gradient, through
 * the hidden ReLU layer when there is one. */
static void head_backward(tlb_model *m, const block_kernels *k, float *g, const float *d_logits, int b0, int n)
{
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int D = c->embed_dim, Hh = c->head_hidden, V = c->num_classes;
    float *d_pooled = m->d_pooled + (size_t)b0 * D;
    const float *pooled = m->pooled + (size_t)b0 * D;
    memset(d_pooled, 0, (size_t)n * D * sizeof(float));
    if (Hh == 0) {
        kernels_dense_backward(k, d_pooled, g, d_logits, pooled, m->params, l->head_kernel, l->head_bias, n, D, V);
        return;
    }
    const size_t at = (size_t)b0 * Hh, len = (size_t)n * Hh;
    float *d_hidden = m->d_hidden + at, *d_pre = m->d_hidden_pre + at;
    memset(d_hidden, 0, len * sizeof(float));
    memset(d_pre, 0, len * sizeof(float));
    kernels_dense_backward(k, d_hidden, g, d_logits, m->hidden + at, m->params, l->head_kernel, l->head_bias, n,
                           Hh, V);
    k->ops->relu.backward(d_pre, d_hidden, m->hidden_pre + at, len);
    kernels_dense_backward(k, d_pooled, g, d_pre, pooled, m->params, l->head_hidden_kernel, l->head_hidden_bias,
                           n, D, Hh);
}

/* Backward of samples [b0, b0+n), weight gradients accumulated into g. */
static void backward_shard(tlb_model *m, const void *x, const int *lengths, const int *labels,
                           const model_targets *targets, int B, int b0, int n, float loss_scale,
                           const model_dropout *drop, float *g, int shard)
{
    const op_table *ops = &m->ops;
    const block_kernels k = {ops, m->params16, m->staging ? m->staging + (size_t)shard * m->staging_n : NULL,
                             m->folded};
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int D = c->embed_dim, C = c->chunk_size;
    const int N = model_num_patches(c), nchunks = model_num_chunks(c), V = c->num_classes;
    const int Ns = model_num_state(c), T = model_stream_rows_max(c);
    const float *w = m->params;
    const size_t tok_at = (size_t)b0 * N * D, state_at = (size_t)b0 * Ns * D;
    const size_t stream_at = (size_t)b0 * T * D; /* the stream-gradient buffers' shard window */
    const size_t fast_bytes = (size_t)n * C * D * sizeof(float);
    const size_t slow_bytes = (size_t)n * Ns * D * sizeof(float);
    const int *len = lengths ? lengths + b0 : NULL;
    float *d_hold = m->d_hold + state_at;
    (void)B;

    /* 3. Head. */
    float *d_logits = m->d_logits + (size_t)b0 * V, *d_pooled = m->d_pooled + (size_t)b0 * D;
    memset(d_logits, 0, (size_t)n * V * sizeof(float));
    ops->softmax_xent.backward(d_logits, m->probs + (size_t)b0 * V, labels + b0, loss_scale, n,
                                  V);
    for (int b = b0; b < b0 + n; b++)
        if (targets_soft(targets, b))
            targets_grad_correction(m->d_logits + (size_t)b * V, V, labels[b], targets, b, loss_scale);
    head_backward(m, &k, g, d_logits, b0, n);
    /* Local copies: the shard swaps its own stream-gradient buffers. */
    float *d_stream[2] = {m->d_stream[STREAM_FAST] + stream_at, m->d_stream[STREAM_SLOW] + stream_at};
    float *d_tmp = m->d_tmp + stream_at;
    memset(d_stream[STREAM_FAST], 0, fast_bytes);
    memset(d_stream[STREAM_SLOW], 0, slow_bytes);
    if (c->readout == READOUT_STATE) {
        float *d_ro = m->d_readout + state_at;
        memset(d_ro, 0, slow_bytes);
        ops->meanpool.backward(d_ro, d_pooled, n, Ns, D);
        ops->layernorm.backward(d_stream[STREAM_SLOW], g + l->readout_ln_gamma, g + l->readout_ln_beta,
                                   d_ro, model_trace_slow(m, nchunks - 1) + state_at,
                                   w + l->readout_ln_gamma, m->readout_mean + (size_t)b0 * Ns,
                                   m->readout_rstd + (size_t)b0 * Ns, n * Ns, D);
    } else if (!len) { /* padded sequences: at each one's last chunk, below */
        ops->meanpool.backward(d_stream[STREAM_FAST], d_pooled, n, C, D);
    }

    /* 2. Backpropagation through time: chunks and steps in reverse. Reading
     * the last fast stream, the last chunk's slow update does not reach the
     * loss, so it is skipped. */
    float *d_tokens = m->d_tokens + tok_at;
    memset(d_tokens, 0, (size_t)n * N * D * sizeof(float));
    block_scratch scratch = scratch_view(&m->scratch, m->dims, b0, T, T);
    for (int ch = nchunks - 1; ch >= 0; ch--) {
        const int skip_update = ch == nchunks - 1 && c->readout == READOUT_LAST_FAST;
        const int last = skip_update ? l->num_steps - 1 : l->num_steps;
        if (ch < nchunks - 1) memset(d_stream[STREAM_FAST], 0, fast_bytes);
        if (len) padded_chunk_grads_in(m, ch, len, n, d_pooled, d_stream, d_hold);
        /* the keys the fast stream offered in the forward (walk.c), for a rebuilt att */
        int *kv_fast = NULL;
        if (len) {
            kv_fast = m->kv_len + b0;
            for (int b = 0; b < n; b++) kv_fast[b] = model_chunk_tokens(c, len[b], ch);
        }
        for (int s = last - 1; s >= 0; s--) {
            const cell_step *st = &l->steps[s];
            const int Tq = model_stream_rows(c, st->query), Tk = model_stream_rows(c, st->kv);
            const block_acts a = acts_view(step_acts(m, ch, s), m->dims, b0, Tq, Tk);
            const block_dropout bd = model_step_dropout(m, drop, ch, s, b0);
            /* The step replaced stream `query`: its gradient becomes d_tmp's,
             * and the key/value stream receives its share in place. (With
             * sinusoid, the table is a constant: the gradient of the state a
             * chunk read is the gradient of the state before it.) */
            float *d_kv = st->kv == st->query ? d_tmp : d_stream[st->kv];
            block_backward(d_tmp, d_kv, g, d_stream[st->query], &a, &k, w, &l->attn[st->attn],
                           &l->ffn[st->ffn], &scratch, st->kv == STREAM_FAST ? kv_fast : NULL, m->dims, n, Tq,
                           Tk, &bd);
            float *swap = d_stream[st->query];
            d_stream[st->query] = d_tmp;
            d_tmp = swap;
        }
        if (len) /* a sample with no valid token here passed its state through */
            for (int b = 0; b < n; b++)
                if (model_chunk_tokens(c, len[b], ch) == 0)
                    memcpy(d_stream[STREAM_SLOW] + (size_t)b * Ns * D, d_hold + (size_t)b * Ns * D,
                           (size_t)Ns * D * sizeof(float));
        /* d_stream[FAST] is now the gradient of chunk ch's input tokens. */
        const float *dchunk = d_stream[STREAM_FAST];
        for (int b = 0; b < n; b++) {
            float *dst = d_tokens + ((size_t)b * N + (size_t)ch * C) * D;
            const float *src = dchunk + (size_t)b * C * D;
            for (int i = 0; i < C * D; i++) dst[i] += src[i];
        }
    }

    /* The learned initial state is shared by the batch: its gradient is the sum. */
    if (c->state_init == STATE_INIT_LEARNED)
        for (int b = 0; b < n; b++) {
            const float *src = d_stream[STREAM_SLOW] + (size_t)b * Ns * D;
            float *dst = g + l->state_init;
            for (size_t k = 0; k < (size_t)Ns * D; k++) dst[k] += src[k];
        }

    input_backward(m, x, g, d_tokens, b0, n, drop);
}

void model_backward_padded(tlb_model *m, const void *x, const int *lengths, const int *labels,
                           const model_targets *targets, int B, float loss_scale, const model_dropout *drop)
{
    if (model_check_batch(m, B, NULL) != 0) return;
    const int shards = model_shards_for(m, B);
    if (shards == 1) {
        backward_shard(m, x, lengths, labels, targets, B, 0, B, loss_scale, drop, m->grads, 0);
        return;
    }
    const size_t np = model_num_params(m);
#pragma omp parallel for num_threads(shards) schedule(static, 1)
    for (int s = 0; s < shards; s++) {
        shard_single_threaded();
        float *g = m->grads;
        if (s > 0) {
            g = m->shard_grads + (size_t)(s - 1) * np;
            memset(g, 0, np * sizeof(float));
        }
        const int b0 = shard_start(B, shards, s);
        backward_shard(m, x, lengths, labels, targets, B, b0, shard_start(B, shards, s + 1) - b0, loss_scale,
                       drop, g, s);
    }
    /* Shards' weight gradients in shard order: deterministic for a shard count. */
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < np; i++) {
        float sum = m->grads[i];
        for (int s = 1; s < shards; s++) sum += m->shard_grads[(size_t)(s - 1) * np + i];
        m->grads[i] = sum;
    }
}

void model_backward_targets(tlb_model *m, const void *x, const int *labels, const model_targets *targets, int B,
                            float loss_scale, const model_dropout *drop)
{
    model_backward_padded(m, x, NULL, labels, targets, B, loss_scale, drop);
}

void model_backward(tlb_model *m, const void *x, const int *labels, int B, float loss_scale,
                    const model_dropout *drop)
{
    model_backward_targets(m, x, labels, NULL, B, loss_scale, drop);
}

state_diversity model_state_diversity(const tlb_model *m, int B, double *work)
{
    const tlb_model_config *c = &m->config;
    const int Ns = model_num_state(c);
    double *own = work ? NULL : malloc((size_t)Ns * Ns * sizeof *own);
    if (!work && !own) return (state_diversity){NAN, NAN};
    const state_diversity d = state_diversity_of(model_trace_slow(m, model_num_chunks(c) - 1), B, Ns,
                                                 c->embed_dim, work ? work : own);
    free(own);
    return d;
}
