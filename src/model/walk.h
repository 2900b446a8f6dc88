/* The forward walk of the model, written once: the input stage (patch or
 * token embedding, position table, LayerNorm), every (chunk, step) of the wiring's schedule, the readout, the
 * head and the loss, over samples [b0, b0+n) of a batch. Training (model.c)
 * and inference (infer.c) run this same walk; they differ only in where it
 * keeps what it computes:
 *  - training keeps every (chunk, step)'s activations for backpropagation
 *    through time, and each chunk's input slab;
 *  - inference reuses one block's buffers for every step and one chunk slab.
 * The walk asks its owner for the buffers of each step (`step`), and finds a
 * chunk's slab and the sinusoid's state input at base + chunk * stride. */
#ifndef TLB_MODEL_WALK_H
#define TLB_MODEL_WALK_H

#include "model/model.h"

typedef struct model_walk model_walk;
struct model_walk {
    const tlb_model *model;
    block_kernels kernels;
    int b0, n; /* the samples this walk runs */
    /* Padded sequences (input: tokens): lengths[b] valid tokens of global
     * sample b, or NULL (every sample whole). kv_len [n] is the walk's
     * scratch for a chunk's valid tokens per sample. */
    const int *lengths;
    int *kv_len;

    /* Input stage and head buffers, at the walk's first sample. */
    float *tok, *tok_mean, *tok_rstd, *tokens; /* [n*N, D], [n*N] x2, [n*N, D] */
    float *slow0;                              /* [n, Ns, D] */
    float *readout_ln, *readout_mean, *readout_rstd; /* readout: state */
    float *pooled, *logits;                    /* [n, D], [n, V] */
    float *hidden_pre, *hidden;                /* [n, Hh] the head's hidden layer before and after ReLU */
    float *losses, *probs;                     /* [n], [n, V] (with labels) */
    float *final_state;                        /* [n, Ns, D] copy of the last state, or NULL */
    block_scratch scratch;

    /* Chunk c's input tokens go to chunk_slab + c * chunk_stride ([n, C, D]);
     * with the sinusoid, state + table to state_in + c * state_stride. */
    float *chunk_slab, *state_in;
    size_t chunk_stride, state_stride;
    /* The buffers of step s of chunk c, whose inputs are stream[0] (fast)
     * and stream[1] (slow). */
    block_acts (*step)(model_walk *w, int chunk, int s, const float *const stream[2]);
    void *owner;

    /* The state before the current chunk (before the sinusoid is added):
     * set by the walk, read by `step` so that it does not write over it. */
    const float *slow_prev;

    /* Skip the last chunk's slow-state update when nothing reads it (the
     * head reads the last fast stream and no final state is asked for). */
    int skip_unread_update;
};

/* Runs the walk on the input batch x (model_forward says what it holds);
 * dropout as model_forward (NULL or !training: off). */
void model_walk_forward(model_walk *w, const void *x, const int *labels, const model_targets *targets,
                        const model_dropout *drop);

/* Plan time: every kernel a forward and backward walk over n samples calls,
 * set up on the calling thread; the bf16 staging the dense layers need goes
 * into *staging (max). */
int model_walk_prepare(const tlb_model *m, const block_kernels *k, int n, size_t *staging, tlb_error *err);

/* The dropout sites of step s of chunk c for a walk whose first sample is b0:
 * keys drawn from the step's, masks indexed by global sample (so a shard
 * draws exactly the masks the whole micro-batch would). Off without drop. */
block_dropout model_step_dropout(const tlb_model *m, const model_dropout *drop, int chunk, int step, int b0);

/* The dropout of the input stage's tokens (embed_drop) for a walk whose
 * first sample is b0: rate 0 (off) without drop, when not training, or at
 * embed_drop 0. */
dropout_ctx model_embed_dropout(const tlb_model *m, const model_dropout *drop, int b0);

/* Converts the parameters to the bf16 copy the dense layers read (mixed
 * precision): once per forward pass, before any shard runs. */
void model_params_to_bf16(const tlb_model *m, uint16_t *params16);

/* Every attention's folded q, k, v weights and biases into `folded` (laid
 * out like the parameters; block_fold_params): once per forward pass,
 * before any shard runs, where the ops fold the LayerNorms. */
void model_fold_norms(const tlb_model *m, float *folded);

/* In mixed precision: the folded q, k, v kernels rounded into their places
 * in params16 (over bf16(W), which the fold no longer reads), after
 * model_params_to_bf16 and model_fold_norms. */
void model_fold_norms_bf16(const tlb_model *m, uint16_t *params16, const float *folded);

#endif
