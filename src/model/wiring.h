/* A wiring turns a config into (1) the parameter table, in the golden files'
 * order, and (2) the recurrent cell's schedule: the list of steps one chunk
 * runs, each "block (attention a, FFN f), query stream, key/value stream".
 * The model code only executes schedules; the two wirings differ only here. */
#ifndef TLB_WIRING_H
#define TLB_WIRING_H

#include "model/config.h"
#include "model/params.h"

typedef enum { STREAM_FAST = 0, STREAM_SLOW = 1 } stream_id;

/* Rows a sample has in a stream: the fast one C tokens, the slow state Ns. */
static inline int model_stream_rows(const tlb_model_config *c, stream_id s)
{
    return s == STREAM_SLOW ? model_num_state(c) : c->chunk_size;
}

/* The larger of the two: what buffers shared by both streams hold. */
static inline int model_stream_rows_max(const tlb_model_config *c)
{
    const int Ns = model_num_state(c);
    return Ns > c->chunk_size ? Ns : c->chunk_size;
}

typedef struct {
    int attn;        /* index into layout.attn */
    int ffn;         /* index into layout.ffn */
    stream_id query; /* the step's output replaces this stream */
    stream_id kv;
} cell_step;

typedef struct {
    param_table table;
    /* The input stage: patch.conv.* (image) or tokens.embedding (tokens),
     * then its position table and LayerNorm (patch.* or tokens.*). */
    size_t conv_kernel, conv_bias;             /* input: image */
    size_t token_table;                        /* [V, D], input: tokens */
    size_t pos_emb, input_ln_gamma, input_ln_beta;
    size_t state_init;                         /* [Ns, D], only with state_init: learned */
    size_t readout_ln_gamma, readout_ln_beta;  /* [D], only with readout: state */
    size_t head_hidden_kernel, head_hidden_bias; /* [D, Hh], [Hh], only with head_hidden > 0 */
    size_t head_kernel, head_bias;             /* [model_head_in, classes], [classes] */
    attn_params *attn;
    int num_attn;
    ffn_params *ffn;
    int num_ffn;
    cell_step *steps; /* one chunk's steps; the last one updates the slow state */
    int num_steps;
} model_layout;

/* Builds the layout of a validated config. */
/* 0, or -1 when out of memory (the layout is then only fit for _free). */
int model_layout_build(model_layout *l, const tlb_model_config *c);
void model_layout_free(model_layout *l);

#endif
