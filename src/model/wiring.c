#include "model/wiring.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Out of memory marks the table (model_layout_build then fails); the index
 * returned is then meaningless, as the whole layout is. */
static int push_attn(model_layout *l, const tlb_model_config *c, const char *prefix)
{
    attn_params *a = realloc(l->attn, (size_t)(l->num_attn + 1) * sizeof *l->attn);
    if (!a) return l->table.out_of_memory = 1, 0;
    l->attn = a;
    l->attn[l->num_attn] =
        param_table_add_attention(&l->table, prefix, c->embed_dim, c->num_heads, c->key_dim);
    return l->num_attn++;
}

static int push_ffn(model_layout *l, const tlb_model_config *c, const char *prefix)
{
    ffn_params *f = realloc(l->ffn, (size_t)(l->num_ffn + 1) * sizeof *l->ffn);
    if (!f) return l->table.out_of_memory = 1, 0;
    l->ffn = f;
    l->ffn[l->num_ffn] = param_table_add_ffn(&l->table, prefix, c->embed_dim, model_ffn_dim(c));
    return l->num_ffn++;
}

static void push_step(model_layout *l, int attn, int ffn, stream_id q, stream_id kv)
{
    cell_step *s = realloc(l->steps, (size_t)(l->num_steps + 1) * sizeof *l->steps);
    if (!s) {
        l->table.out_of_memory = 1;
        return;
    }
    l->steps = s;
    l->steps[l->num_steps++] = (cell_step){attn, ffn, q, kv};
}

/* The Keras example's graph: a module list [SA_0, CA_0?, SA_1, ...] where
 * every module self-attends and, at index i % r == 0 (an index into the
 * list, not a layer number), also cross-attends to the slow state through
 * the same FFN. */
static void build_keras(model_layout *l, const tlb_model_config *c)
{
    int modules = 0;
    for (int layer = 0; layer < c->num_layers; layer++) modules += 1 + (layer % c->r == 0);
    char prefix[PARAM_NAME_MAX];
    for (int i = 0; i < modules; i++) {
        snprintf(prefix, sizeof prefix, "pm.%d.attn_fast", i);
        int fast = push_attn(l, c, prefix);
        int slow = -1;
        if (i % c->r == 0) {
            snprintf(prefix, sizeof prefix, "pm.%d.attn_slow", i);
            slow = push_attn(l, c, prefix);
        }
        snprintf(prefix, sizeof prefix, "pm.%d.ffn", i);
        int ffn = push_ffn(l, c, prefix);
        push_step(l, fast, ffn, STREAM_FAST, STREAM_FAST);
        if (slow >= 0) push_step(l, slow, ffn, STREAM_FAST, STREAM_SLOW);
    }
}

/* Algorithm 1 of the paper: every block owns its attention and FFN. */
static void build_paper(model_layout *l, const tlb_model_config *c)
{
    char prefix[PARAM_NAME_MAX];
    for (int layer = 0; layer < c->num_layers; layer++) {
        snprintf(prefix, sizeof prefix, "pm.%d.self.attn", layer);
        int sa = push_attn(l, c, prefix);
        snprintf(prefix, sizeof prefix, "pm.%d.self.ffn", layer);
        int sf = push_ffn(l, c, prefix);
        push_step(l, sa, sf, STREAM_FAST, STREAM_FAST);
        if (layer % c->r == 0) {
            snprintf(prefix, sizeof prefix, "pm.%d.cross.attn", layer);
            int ca = push_attn(l, c, prefix);
            snprintf(prefix, sizeof prefix, "pm.%d.cross.ffn", layer);
            int cf = push_ffn(l, c, prefix);
            push_step(l, ca, cf, STREAM_FAST, STREAM_SLOW);
        }
    }
}

int model_layout_build(model_layout *l, const tlb_model_config *c)
{
    memset(l, 0, sizeof *l);
    param_table_init(&l->table);
    const int D = c->embed_dim;
    param_table *t = &l->table;
    if (c->input == INPUT_TOKENS) {
        /* Keras Embedding's default initialiser: uniform [-0.05, 0.05]. */
        l->token_table = param_table_add(t, "tokens.embedding", 2, (int[]){c->vocab_size, D}, INIT_POS_EMB, 0, 0);
    } else {
        /* Keras Conv2D kernel [P, P, 3, D]: fans 3*P*P and D*P*P. */
        const int P = c->patch_size;
        l->conv_kernel = param_table_add(t, "patch.conv.kernel", 4, (int[]){P, P, 3, D}, INIT_GLOROT,
                                         3 * P * P, D * P * P);
        l->conv_bias = param_table_add(t, "patch.conv.bias", 1, (int[]){D}, INIT_ZEROS, 0, 0);
    }
    const int tokens = c->input == INPUT_TOKENS;
    l->pos_emb = param_table_add(t, tokens ? "tokens.pos_emb" : "patch.pos_emb", 2, (int[]){model_pos_rows(c), D},
                                 INIT_POS_EMB, 0, 0);
    l->input_ln_gamma = param_table_add(t, tokens ? "tokens.ln.gamma" : "patch.ln.gamma", 1, (int[]){D}, INIT_ONES, 0, 0);
    l->input_ln_beta = param_table_add(t, tokens ? "tokens.ln.beta" : "patch.ln.beta", 1, (int[]){D}, INIT_ZEROS, 0, 0);
    /* A learned initial state must start random (train/init.c): a zero one
     * gets the same gradient in every row and stays collapsed (golden README). */
    if (c->state_init == STATE_INIT_LEARNED)
        l->state_init = param_table_add(t, "state.init", 2, (int[]){model_num_state(c), D},
                                        INIT_STATE, 0, 0);

    if (c->wiring == TLB_WIRING_KERAS) build_keras(l, c);
    else build_paper(l, c);

    /* The slow-state update: query slow, keys/values the new fast stream. */
    int tlb_attn = push_attn(l, c, "tlb.attn");
    int tlb_ffn = push_ffn(l, c, "tlb.ffn");
    push_step(l, tlb_attn, tlb_ffn, STREAM_SLOW, STREAM_FAST);

    if (c->readout == READOUT_STATE) {
        l->readout_ln_gamma = param_table_add(t, "readout.ln.gamma", 1, (int[]){D}, INIT_ONES, 0, 0);
        l->readout_ln_beta = param_table_add(t, "readout.ln.beta", 1, (int[]){D}, INIT_ZEROS, 0, 0);
    }
    const int Hin = model_head_in(c);
    if (c->head_hidden > 0) {
        l->head_hidden_kernel = param_table_add(t, "head.hidden.kernel", 2, (int[]){D, Hin}, INIT_GLOROT, D, Hin);
        l->head_hidden_bias = param_table_add(t, "head.hidden.bias", 1, (int[]){Hin}, INIT_ZEROS, 0, 0);
    }
    l->head_kernel = param_table_add(t, "head.kernel", 2, (int[]){Hin, c->num_classes}, INIT_GLOROT,
                                     Hin, c->num_classes);
    l->head_bias = param_table_add(t, "head.bias", 1, (int[]){c->num_classes}, INIT_ZEROS, 0, 0);
    return t->out_of_memory ? -1 : 0;
}

void model_layout_free(model_layout *l)
{
    param_table_free(&l->table);
    free(l->attn);
    free(l->ffn);
    free(l->steps);
    memset(l, 0, sizeof *l);
}
