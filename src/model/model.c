#include "model/model.h"

#include <stdlib.h>
#include <string.h>

#include "util/rng.h"

int model_create(tlb_model *m, const tlb_model_config *c, tlb_error *err)
{
    memset(m, 0, sizeof *m);
    if (model_config_validate(c, err) != 0) return -1;
    m->config = *c;
    model_layout_build(&m->layout, c);
    m->dims = (block_dims){c->embed_dim, c->num_heads, c->key_dim, model_ffn_dim(c)};
    const size_t n = m->layout.table.total;
    m->params = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    m->grads = aligned_alloc(64, ((n * sizeof(float)) + 63) & ~(size_t)63);
    if (!m->params || !m->grads) {
        model_destroy(m);
        return tlb_fail(err, "out of memory for %zu parameters", n);
    }
    memset(m->params, 0, n * sizeof(float));
    memset(m->grads, 0, n * sizeof(float));
    return 0;
}

void model_destroy(tlb_model *m)
{
    arena_release(&m->acts);
    free(m->steps);
    free(m->params);
    free(m->grads);
    model_layout_free(&m->layout);
    memset(m, 0, sizeof *m);
}

size_t model_num_params(const tlb_model *m) { return m->layout.table.total; }

void model_zero_grads(tlb_model *m) { memset(m->grads, 0, model_num_params(m) * sizeof(float)); }

/* Carves every activation and scratch buffer for B samples (arena protocol). */
static void carve(tlb_model *m, arena *a, int B)
{
    const tlb_model_config *c = &m->config;
    const size_t N = (size_t)model_num_patches(c), D = (size_t)c->embed_dim, C = (size_t)c->chunk_size;
    const size_t V = (size_t)c->num_classes, nchunks = (size_t)model_num_chunks(c);
    m->tok = arena_take(a, (size_t)B * N * D);
    m->tok_mean = arena_take(a, (size_t)B * N);
    m->tok_rstd = arena_take(a, (size_t)B * N);
    m->tokens = arena_take(a, (size_t)B * N * D);
    m->chunks = arena_take(a, (size_t)B * N * D);
    m->slow0 = arena_take(a, (size_t)B * C * D);
    for (size_t i = 0; i < nchunks * (size_t)m->layout.num_steps; i++)
        block_acts_plan(&m->steps[i], a, m->dims, B, (int)C, (int)C);
    m->pooled = arena_take(a, (size_t)B * D);
    m->logits = arena_take(a, (size_t)B * V);
    m->probs = arena_take(a, (size_t)B * V);
    m->losses = arena_take(a, (size_t)B);
    block_scratch_plan(&m->scratch, a, m->dims, B, (int)C, (int)C);
    m->d_stream[STREAM_FAST] = arena_take(a, (size_t)B * C * D);
    m->d_stream[STREAM_SLOW] = arena_take(a, (size_t)B * C * D);
    m->d_tmp = arena_take(a, (size_t)B * C * D);
    m->d_tokens = arena_take(a, (size_t)B * N * D);
    m->d_tok = arena_take(a, (size_t)B * N * D);
    m->d_pooled = arena_take(a, (size_t)B * D);
    m->d_logits = arena_take(a, (size_t)B * V);
}

size_t model_plan_bytes(const tlb_model *m, int B)
{
    tlb_model probe = *m;
    probe.steps = calloc((size_t)model_num_chunks(&m->config) * m->layout.num_steps,
                         sizeof *probe.steps);
    arena a = {0};
    carve(&probe, &a, B);
    free(probe.steps);
    return a.used;
}

size_t model_plan(tlb_model *m, int B, tlb_error *err)
{
    arena_release(&m->acts);
    free(m->steps);
    m->capacity = 0;
    m->steps = calloc((size_t)model_num_chunks(&m->config) * m->layout.num_steps, sizeof *m->steps);
    if (!m->steps) {
        tlb_fail(err, "out of memory");
        return 0;
    }
    carve(m, &m->acts, B);
    if (arena_commit(&m->acts) != 0) {
        tlb_fail(err, "cannot allocate %.1f MiB of activations for a micro-batch of %d",
                 (double)m->acts.used / (1 << 20), B);
        return 0;
    }
    carve(m, &m->acts, B);
    m->capacity = B;
    return m->acts.capacity;
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

/* Each (chunk, step) has two dropout sites with keys drawn from the step's key. */
static block_dropout step_dropout(const tlb_model *m, const model_dropout *drop, int chunk, int step)
{
    block_dropout bd;
    memset(&bd, 0, sizeof bd);
    if (!drop || !drop->training) return bd;
    const uint64_t site = rng_key(drop->key, (uint64_t)chunk * m->layout.num_steps + step);
    bd.attn = (dropout_ctx){m->config.attn_drop, rng_key(site, 0), drop->sample0};
    bd.ffn = (dropout_ctx){m->config.ffn_drop, rng_key(site, 1), drop->sample0};
    return bd;
}

/* Copies token rows [c*C, c*C+C) of every sample into chunk c's contiguous
 * [B, C, D] slab (forward), or adds them back (backward). */
static void gather_chunks(float *chunks, const float *tokens, int B, int N, int C, int D)
{
    const int nchunks = N / C;
    for (int c = 0; c < nchunks; c++)
        for (int b = 0; b < B; b++)
            memcpy(chunks + (((size_t)c * B + b) * C) * D, tokens + ((size_t)b * N + (size_t)c * C) * D,
                   (size_t)C * D * sizeof(float));
}

double model_forward(tlb_model *m, const float *img, const int *labels, int B,
                     const model_dropout *drop)
{
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int S = c->image_size, P = c->patch_size, D = c->embed_dim, C = c->chunk_size;
    const int N = model_num_patches(c), nchunks = model_num_chunks(c), V = c->num_classes;
    const float *w = m->params;

    /* 1. Patch embedding. */
    tlb_ops.patch_conv.forward(m->tok, img, w + l->conv_kernel, w + l->conv_bias, B, S, P, D);
    tlb_ops.posemb.forward(m->tok, m->tok, w + l->pos_emb, B, N, D);
    tlb_ops.layernorm.forward(m->tokens, m->tok_mean, m->tok_rstd, m->tok, w + l->patch_ln_gamma,
                              w + l->patch_ln_beta, B * N, D);
    gather_chunks(m->chunks, m->tokens, B, N, C, D);
    memset(m->slow0, 0, (size_t)B * C * D * sizeof(float));

    /* 2. The recurrent cell over the chunks. */
    const float *slow = m->slow0;
    for (int ch = 0; ch < nchunks; ch++) {
        const float *stream[2] = {m->chunks + (size_t)ch * B * C * D, slow};
        for (int s = 0; s < l->num_steps; s++) {
            const cell_step *st = &l->steps[s];
            block_acts *a = step_acts(m, ch, s);
            block_dropout bd = step_dropout(m, drop, ch, s);
            block_forward(a, &m->scratch, w, &l->attn[st->attn], &l->ffn[st->ffn], stream[st->query],
                          stream[st->kv], m->dims, B, C, C, &bd);
            stream[st->query] = a->out;
        }
        slow = stream[STREAM_SLOW];
    }

    /* 3. Head on the last chunk's fast stream, and the loss. */
    tlb_ops.meanpool.forward(m->pooled, model_trace_fast(m, nchunks - 1), B, C, D);
    tlb_ops.dense.forward(m->logits, m->pooled, w + l->head_kernel, w + l->head_bias, B, D, V);
    if (!labels) return 0.0;
    tlb_ops.softmax_xent.forward(m->losses, m->probs, m->logits, labels, B, V);
    double sum = 0.0;
    for (int b = 0; b < B; b++) sum += m->losses[b];
    return sum;
}

void model_backward(tlb_model *m, const float *img, const int *labels, int B, float loss_scale,
                    const model_dropout *drop)
{
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int S = c->image_size, P = c->patch_size, D = c->embed_dim, C = c->chunk_size;
    const int N = model_num_patches(c), nchunks = model_num_chunks(c), V = c->num_classes;
    const float *w = m->params;
    float *g = m->grads;
    const size_t stream_bytes = (size_t)B * C * D * sizeof(float);

    /* 3. Head. */
    memset(m->d_logits, 0, (size_t)B * V * sizeof(float));
    memset(m->d_pooled, 0, (size_t)B * D * sizeof(float));
    tlb_ops.softmax_xent.backward(m->d_logits, m->probs, labels, loss_scale, B, V);
    tlb_ops.dense.backward(m->d_pooled, g + l->head_kernel, g + l->head_bias, m->d_logits, m->pooled,
                           w + l->head_kernel, B, D, V);
    memset(m->d_stream[STREAM_FAST], 0, stream_bytes);
    memset(m->d_stream[STREAM_SLOW], 0, stream_bytes);
    tlb_ops.meanpool.backward(m->d_stream[STREAM_FAST], m->d_pooled, B, C, D);

    /* 2. Backpropagation through time: chunks and steps in reverse. The last
     * chunk's slow update does not reach the loss, so it is skipped. */
    memset(m->d_tokens, 0, (size_t)B * N * D * sizeof(float));
    for (int ch = nchunks - 1; ch >= 0; ch--) {
        const int last = (ch == nchunks - 1) ? l->num_steps - 1 : l->num_steps;
        if (ch < nchunks - 1) memset(m->d_stream[STREAM_FAST], 0, stream_bytes);
        for (int s = last - 1; s >= 0; s--) {
            const cell_step *st = &l->steps[s];
            const block_acts *a = step_acts(m, ch, s);
            block_dropout bd = step_dropout(m, drop, ch, s);
            /* The step replaced stream `query`: its gradient becomes d_tmp's,
             * and the key/value stream receives its share in place. */
            memset(m->d_tmp, 0, stream_bytes);
            float *d_kv = st->kv == st->query ? m->d_tmp : m->d_stream[st->kv];
            block_backward(m->d_tmp, d_kv, g, m->d_stream[st->query], a, w, &l->attn[st->attn],
                           &l->ffn[st->ffn], &m->scratch, m->dims, B, C, C, &bd);
            float *swap = m->d_stream[st->query];
            m->d_stream[st->query] = m->d_tmp;
            m->d_tmp = swap;
        }
        /* d_stream[FAST] is now the gradient of chunk ch's input tokens. */
        const float *dchunk = m->d_stream[STREAM_FAST];
        for (int b = 0; b < B; b++) {
            float *dst = m->d_tokens + ((size_t)b * N + (size_t)ch * C) * D;
            const float *src = dchunk + (size_t)b * C * D;
            for (int i = 0; i < C * D; i++) dst[i] += src[i];
        }
    }

    /* 1. Patch embedding. */
    memset(m->d_tok, 0, (size_t)B * N * D * sizeof(float));
    tlb_ops.layernorm.backward(m->d_tok, g + l->patch_ln_gamma, g + l->patch_ln_beta, m->d_tokens,
                               m->tok, w + l->patch_ln_gamma, m->tok_mean, m->tok_rstd, B * N, D);
    tlb_ops.posemb.backward(NULL, g + l->pos_emb, m->d_tok, B, N, D);
    tlb_ops.patch_conv.backward(NULL, g + l->conv_kernel, g + l->conv_bias, m->d_tok, img,
                                w + l->conv_kernel, B, S, P, D);
}
