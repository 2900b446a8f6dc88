/* The forward walk (walk.h): one copy for training and inference. */
#include "model/walk.h"

#include <string.h>

#include "ops/bf16.h"
#include "util/rng.h"

dropout_ctx model_embed_dropout(const tlb_model *m, const model_dropout *drop, int b0)
{
    dropout_ctx d = {0.0f, 0, 0};
    if (!drop || !drop->training || m->config.embed_drop <= 0.0f) return d;
    /* A site apart from every (chunk, step)'s, which are small labels. */
    d.rate = m->config.embed_drop;
    d.key = rng_key(rng_key(drop->key, UINT64_MAX), 0);
    d.sample0 = drop->sample0 + b0;
    return d;
}

block_dropout model_step_dropout(const tlb_model *m, const model_dropout *drop, int chunk, int step, int b0)
{
    block_dropout bd;
    memset(&bd, 0, sizeof bd);
    if (!drop || !drop->training) return bd;
    const uint64_t site = rng_key(drop->key, (uint64_t)chunk * m->layout.num_steps + step);
    bd.attn = (dropout_ctx){m->config.attn_drop, rng_key(site, 0), drop->sample0 + b0};
    bd.ffn = (dropout_ctx){m->config.ffn_drop, rng_key(site, 1), drop->sample0 + b0};
    return bd;
}

void model_params_to_bf16(const tlb_model *m, uint16_t *params16)
{
    const size_t n = model_num_params(m), per = 4096;
    const long blocks = (long)((n + per - 1) / per);
#pragma omp parallel for schedule(static)
    for (long i = 0; i < blocks; i++) {
        const size_t at = (size_t)i * per;
        bf16_convert(params16 + at, m->params + at, n - at < per ? n - at : per);
    }
}

void model_fold_norms(const tlb_model *m, float *folded)
{
    for (int a = 0; a < m->layout.num_attn; a++) block_fold_params(folded, m->params, &m->layout.attn[a], m->dims);
}

void model_fold_norms_bf16(const tlb_model *m, uint16_t *params16, const float *folded)
{
    const size_t n = (size_t)m->dims.D * m->dims.H * m->dims.K;
    for (int a = 0; a < m->layout.num_attn; a++) {
        const attn_params *ap = &m->layout.attn[a];
        const size_t at[3] = {ap->q_kernel, ap->k_kernel, ap->v_kernel};
        for (int i = 0; i < 3; i++) bf16_convert(params16 + at[i], folded + at[i], n);
    }
}

/* 1. The input stage: the batch's tokens [n*N, D] embedded (image patches
 * through the patch convolution, or token ids through the table), the
 * position table added (every token's row, or a chunk's rows repeated per
 * chunk: the op then sees n*N/C "samples" of C tokens), the LayerNorm, and
 * embed_drop's dropout when training. */
static void input_forward(model_walk *w, const void *x, const model_dropout *drop)
{
    const tlb_model *m = w->model;
    const op_table *ops = w->kernels.ops;
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int D = c->embed_dim, N = model_num_patches(c), n = w->n, b0 = w->b0;
    const float *p = m->params;
    if (c->input == INPUT_TOKENS) {
        ops->token_embed.forward(w->tok, (const int *)x + (size_t)b0 * N, p + l->token_table, n * N, c->vocab_size, D);
    } else {
        const int S = c->image_size;
        ops->patch_conv.forward(w->tok, (const float *)x + (size_t)b0 * S * S * 3, p + l->conv_kernel,
                                p + l->conv_bias, n, S, c->patch_size, D);
    }
    const int rows = model_pos_rows(c);
    ops->posemb.forward(w->tok, w->tok, p + l->pos_emb, n * (N / rows), rows, D);
    ops->layernorm.forward(w->tokens, w->tok_mean, w->tok_rstd, w->tok, p + l->input_ln_gamma,
                           p + l->input_ln_beta, n * N, D);
    const dropout_ctx ed = model_embed_dropout(m, drop, b0);
    if (ed.rate > 0.0f) ops->dropout.forward(w->tokens, w->tokens, n, (size_t)N * D, &ed);
}

/* 3. The head: pooled [n, D], through the hidden ReLU layer when there is
 * one, to the logits. */
static void head_forward(model_walk *w)
{
    const tlb_model *m = w->model;
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int D = c->embed_dim, Hh = c->head_hidden, V = c->num_classes, n = w->n;
    const float *p = m->params;
    if (Hh > 0) {
        kernels_dense_forward(&w->kernels, w->hidden_pre, w->pooled, p, l->head_hidden_kernel, l->head_hidden_bias,
                              n, D, Hh);
        w->kernels.ops->relu.forward(w->hidden, w->hidden_pre, (size_t)n * Hh);
        kernels_dense_forward(&w->kernels, w->logits, w->hidden, p, l->head_kernel, l->head_bias, n, Hh, V);
    } else {
        kernels_dense_forward(&w->kernels, w->logits, w->pooled, p, l->head_kernel, l->head_bias, n, D, V);
    }
}

/* The end of chunk ch of padded sequences: a sample whose last valid token
 * is in this chunk pools its fast stream's valid tokens (readout: last_fast);
 * one with no valid token here keeps the state it had before the chunk, the
 * sinusoid not added either (`updated`: the slow update ran). */
static void padded_chunk_end(model_walk *w, int ch, const float *const stream[2], int updated)
{
    const tlb_model *m = w->model;
    const tlb_model_config *c = &m->config;
    const int D = c->embed_dim, C = c->chunk_size, n = w->n;
    const int *len = w->lengths + w->b0;
    const size_t state_len = (size_t)model_num_state(c) * D;
    for (int b = 0; b < n; b++) {
        const int valid = w->kv_len[b];
        if (c->readout == READOUT_LAST_FAST && valid > 0 && model_last_chunk(c, len[b]) == ch)
            w->kernels.ops->meanpool.forward(w->pooled + (size_t)b * D, stream[STREAM_FAST] + (size_t)b * C * D, 1,
                                             valid, D);
        if (valid == 0 && updated)
            memcpy((float *)stream[STREAM_SLOW] + b * state_len, w->slow_prev + b * state_len,
                   state_len * sizeof(float));
    }
}

void model_walk_forward(model_walk *w, const void *x, const int *labels, const model_targets *targets,
                        const model_dropout *drop)
{
    const tlb_model *m = w->model;
    const op_table *ops = w->kernels.ops;
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int D = c->embed_dim, C = c->chunk_size;
    const int N = model_num_patches(c), nchunks = model_num_chunks(c), V = c->num_classes;
    const int Ns = model_num_state(c), n = w->n, b0 = w->b0;
    const size_t state_len = (size_t)Ns * D;
    const float *p = m->params;

    input_forward(w, x, drop);
    for (int b = 0; b < n; b++) {
        float *dst = w->slow0 + (size_t)b * state_len;
        if (c->state_init == STATE_INIT_LEARNED) memcpy(dst, p + l->state_init, state_len * sizeof(float));
        else memset(dst, 0, state_len * sizeof(float));
    }

    /* 2. The recurrent cell over the chunks. */
    const int *len = w->lengths ? w->lengths + b0 : NULL;
    const float *slow = w->slow0;
    const float *stream[2] = {NULL, NULL};
    for (int ch = 0; ch < nchunks; ch++) {
        float *chunk = w->chunk_slab + (size_t)ch * w->chunk_stride;
        for (int b = 0; b < n; b++)
            memcpy(chunk + (size_t)b * C * D, w->tokens + ((size_t)b * N + (size_t)ch * C) * D,
                   (size_t)C * D * sizeof(float));
        w->slow_prev = slow;
        if (m->state_pe) { /* sinusoid: the table is added before the chunk reads the state */
            float *in = w->state_in + (size_t)ch * w->state_stride;
            for (int b = 0; b < n; b++)
                for (size_t k = 0; k < state_len; k++)
                    in[b * state_len + k] = slow[b * state_len + k] + m->state_pe[k];
            slow = in;
        }
        /* Padded sequences: each sample's valid tokens in this chunk, the
         * keys the fast stream offers (the rest masked). */
        const int *kv_fast = NULL;
        if (len) {
            for (int b = 0; b < n; b++) w->kv_len[b] = model_chunk_tokens(c, len[b], ch);
            kv_fast = w->kv_len;
        }
        stream[STREAM_FAST] = chunk, stream[STREAM_SLOW] = slow;
        const int last = ch == nchunks - 1 && w->skip_unread_update ? l->num_steps - 1 : l->num_steps;
        for (int s = 0; s < last; s++) {
            const cell_step *st = &l->steps[s];
            const int Tq = model_stream_rows(c, st->query), Tk = model_stream_rows(c, st->kv);
            block_acts a = w->step(w, ch, s, stream);
            const block_dropout bd = model_step_dropout(m, drop, ch, s, b0);
            block_forward(&a, &w->scratch, &w->kernels, p, &l->attn[st->attn], &l->ffn[st->ffn],
                          stream[st->query], stream[st->kv], st->kv == STREAM_FAST ? kv_fast : NULL, m->dims, n,
                          Tq, Tk, &bd);
            stream[st->query] = a.out;
        }
        if (len) padded_chunk_end(w, ch, stream, last == l->num_steps);
        slow = stream[STREAM_SLOW];
    }

    /* 3. Readout (the last chunk's fast stream, which the slow update read,
     * or the final state), head and loss. Padded sequences pooled their own
     * last chunk's valid tokens as it ran (padded_chunk_end). */
    if (c->readout == READOUT_STATE) {
        ops->layernorm.forward(w->readout_ln, w->readout_mean, w->readout_rstd, slow, p + l->readout_ln_gamma,
                               p + l->readout_ln_beta, n * Ns, D);
        ops->meanpool.forward(w->pooled, w->readout_ln, n, Ns, D);
    } else if (!len) {
        ops->meanpool.forward(w->pooled, stream[STREAM_FAST], n, C, D);
    }
    head_forward(w);
    if (w->final_state) memcpy(w->final_state, slow, (size_t)n * state_len * sizeof(float));
    if (!labels) return;
    ops->softmax_xent.forward(w->losses, w->probs, w->logits, labels + b0, n, V);
    for (int i = 0; i < n; i++)
        if (targets_soft(targets, b0 + i))
            w->losses[i] = (float)targets_loss(w->logits + (size_t)i * V, V, labels[b0 + i], targets, b0 + i);
}

int model_walk_prepare(const tlb_model *m, const block_kernels *k, int n, size_t *staging, tlb_error *err)
{
    const op_table *o = k->ops;
    const tlb_model_config *c = &m->config;
    const model_layout *l = &m->layout;
    const int D = c->embed_dim, N = model_num_patches(c), Ns = model_num_state(c), V = c->num_classes;
    const int rows = model_pos_rows(c), Hh = c->head_hidden;
    if (n < 1) return 0;
    if (c->input == INPUT_TOKENS) {
        if (o->token_embed.prepare && o->token_embed.prepare(n * N, c->vocab_size, D, err) != 0) return -1;
    } else if (o->patch_conv.prepare && o->patch_conv.prepare(n, c->image_size, c->patch_size, D, err) != 0) {
        return -1;
    }
    if (o->posemb.prepare && o->posemb.prepare(n * (N / rows), rows, D, err) != 0) return -1;
    if (o->layernorm.prepare && o->layernorm.prepare(n * N, D, err) != 0) return -1;
    if (c->embed_drop > 0.0f && o->dropout.prepare && o->dropout.prepare(n, (size_t)N * D, err) != 0) return -1;
    for (int s = 0; s < l->num_steps; s++) {
        const cell_step *st = &l->steps[s];
        if (block_prepare(k, m->dims, n, model_stream_rows(c, st->query), model_stream_rows(c, st->kv), staging,
                          err) != 0)
            return -1;
    }
    if (c->readout == READOUT_STATE && o->layernorm.prepare && o->layernorm.prepare(n * Ns, D, err) != 0) return -1;
    if (Hh > 0) {
        if (kernels_dense_prepare(k, n, D, Hh, staging, err) != 0) return -1;
        if (o->relu.prepare && o->relu.prepare((size_t)n * Hh, err) != 0) return -1;
    }
    if (kernels_dense_prepare(k, n, model_head_in(c), V, staging, err) != 0) return -1;
    if (o->softmax_xent.prepare && o->softmax_xent.prepare(n, V, err) != 0) return -1;
    /* Padded sequences pool one sample's valid tokens at a time. */
    for (int t = 1; c->input == INPUT_TOKENS && c->readout == READOUT_LAST_FAST && t <= c->chunk_size; t++)
        if (o->meanpool.prepare && o->meanpool.prepare(1, t, D, err) != 0) return -1;
    return 0;
}
