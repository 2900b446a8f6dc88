/* The TLB network: the input stage (patch or token embedding), the recurrent cell unrolled over the
 * chunks (fast stream + slow state), the head and the loss; forward and
 * backpropagation through time over one micro-batch.
 *
 * A model owns its op table (which backend runs each op, and the precision):
 * model_create starts from the automatic choice, model_use_ops sets another.
 * model_plan then builds the execution plan for a batch capacity: the
 * activation arena, and every kernel's resources (oneDNN primitives, SIMD
 * scratch, bf16 staging) set up on the threads that will run them, with
 * failures returned. Forward/backward never allocate, the first step
 * included. The walk itself is model/walk.h, shared with inference. */
#ifndef TLB_MODEL_H
#define TLB_MODEL_H

#include <stdint.h>

#include "model/block.h"
#include "model/config.h"
#include "model/targets.h"
#include "model/state_diversity.h"
#include "model/wiring.h"

typedef struct {
    tlb_model_config config;
    model_layout layout;
    block_dims dims;
    op_table ops;  /* the kernels this model runs on */
    float *params; /* layout.table.total floats */
    float *grads;  /* same layout */

    /* Activation plan for up to `capacity` samples. */
    int capacity;
    arena acts;
    float *tok;             /* [B*N, D] embedded + pos_emb (the input LayerNorm's input) */
    float *tok_mean, *tok_rstd;
    float *tokens;          /* [B*N, D] after the input LayerNorm */
    float *chunks;          /* [num_chunks][B, C, D] each chunk contiguous */
    float *slow0;           /* [B, Ns, D] the initial slow state (zeros or state.init) */
    float *slow_in;         /* [num_chunks][B, Ns, D] state + pe read by chunk c (sinusoid only) */
    block_acts *steps;      /* [num_chunks * num_steps] */
    float *readout_ln, *readout_mean, *readout_rstd; /* [B, Ns, D], [B*Ns] x2 (readout: state) */
    float *pooled;          /* [B, D] */
    float *hidden_pre, *hidden; /* [B, Hh] the head's hidden layer before/after ReLU (head_hidden) */
    float *logits, *probs;  /* [B, V] */
    float *losses;          /* [B] */
    /* Backward scratch. */
    block_scratch scratch;
    /* The three stream-gradient buffers trade roles (fast, slow, tmp) step
     * by step, so each holds [B, T, D] for T = max(C, Ns); a shard's window
     * starts at sample b0 * T rows whatever the role. */
    float *d_stream[2];     /* gradient of the fast [B, C, D] / slow [B, Ns, D] stream */
    float *d_tmp;
    float *d_readout;       /* [B, Ns, D] (readout: state) */
    float *d_tokens;        /* [B*N, D] */
    float *d_tok;           /* [B*N, D] */
    float *d_pooled;        /* [B, D] */
    float *d_hidden, *d_hidden_pre; /* [B, Hh] after/before the ReLU (head_hidden) */
    float *d_logits;        /* [B, V] */

    /* Batch sharding: forward and backward split the micro-batch into up
     * to `shards` contiguous sample ranges, one per OpenMP thread, each
     * running the whole unrolled cell with single-threaded ops over
     * row-offset views of the buffers above (every tensor is sample-major).
     * Shard 0 accumulates its weight gradients into `grads`, shard s > 0
     * into shard_grads[s-1], added in order afterwards. */
    int shards;
    float *shard_grads;     /* [(shards - 1) * num_params] */
    /* Mixed precision (ops.bf16_dense): the parameters in bf16, converted at
     * the start of each forward (the q, k, v kernels folded where `folded`
     * is), and each shard's activation staging. */
    uint16_t *params16;     /* [num_params] */
    uint16_t *staging;      /* [shards][staging_n] */
    size_t staging_n;
    /* Where the LayerNorms fold into the q, k, v products
     * (ops_table_folds_norms): their folded weights, laid out like params,
     * made at the start of each forward (model_fold_norms). */
    float *folded;          /* [num_params] or NULL */

    float *state_pe;        /* [Ns, D] the fixed sinusoid table (state_init: sinusoid), not a parameter */
    /* Padded sequences (input: tokens only): a chunk's valid tokens per
     * sample [B], and the state gradients a fully padded chunk holds aside
     * [B, Ns, D]. */
    int *kv_len;
    float *d_hold;
} tlb_model;

/* Dropout for one forward/backward: off when rate == 0 or !training. The key
 * is drawn per optimizer step; sample0 is the micro-batch's first global
 * sample index, so masks do not depend on the micro-batch split. */
typedef struct {
    int training;
    uint64_t key;
    long sample0;
} model_dropout;

/* A model on the automatic op choice (ops_table_automatic: fp32, no
 * TLB_BACKEND), unplanned. */
int model_create(tlb_model *m, const tlb_model_config *c, tlb_error *err);
void model_destroy(tlb_model *m);
size_t model_num_params(const tlb_model *m);

/* Runs the model on another op table (backends, precision); drops the plan,
 * which binds kernels: plan again before running. */
void model_use_ops(tlb_model *m, const op_table *ops);

/* Plans micro-batches of up to B samples: the activation arena and every
 * kernel's set-up on the threads that run them. 0, or -1 with err (nothing
 * planned then). Re-planning frees the old plan. The shard count is fixed
 * here: OpenMP's thread count at plan time, at most B (the weight-gradient
 * summation order, and so the last bits of a result, depend on it; see
 * README "Determinism"). The bytes planned: model_plan_bytes. */
int model_plan(tlb_model *m, int B, tlb_error *err);

/* Sets up the kernels for micro-batches of B < capacity samples too (the
 * plan sets up the capacity's): the smaller last micro-batch of a step, so
 * that it allocates nothing either. 0, or -1 with err. */
int model_prepare_batch(tlb_model *m, int B, tlb_error *err);

/* -1 with a message naming both numbers when B samples do not fit the plan
 * (or B < 1); train_step and the golden check call it before a forward. */
int model_check_batch(const tlb_model *m, int B, tlb_error *err);
/* Bytes the plan for B samples would take (without allocating the arena;
 * 0 when even the small probe cannot be allocated). */
size_t model_plan_bytes(const tlb_model *m, int B);

/* Forward over B <= capacity samples of the input batch x, whose meaning the
 * config's input stage defines: float images [B, S, S, 3] (input: image) or
 * int32 token ids [B, T] in [0, vocab_size) (input: tokens; the caller checks
 * the range, model_check_tokens). Fills logits, probs,
 * losses (per sample). Returns the sum of the B losses. labels may be NULL
 * (inference: no loss). A B outside 1..capacity runs nothing and returns NaN
 * (model_check_batch says why). */
double model_forward(tlb_model *m, const void *x, const int *labels, int B,
                     const model_dropout *drop);

/* Backward of sum(losses) * loss_scale (loss_scale = 1 / full batch size for
 * the mean loss), accumulating into m->grads. Requires the forward just run. */
void model_backward(tlb_model *m, const void *x, const int *labels, int B, float loss_scale,
                    const model_dropout *drop);

/* The same with a soft target (model/targets.h: label smoothing, mixup and
 * cutmix); targets' arrays are indexed like labels. NULL targets, or
 * smoothing 0 with lam 1 (or no y2), is model_forward/model_backward bit for
 * bit. */
double model_forward_targets(tlb_model *m, const void *x, const int *labels,
                             const model_targets *targets, int B, const model_dropout *drop);
void model_backward_targets(tlb_model *m, const void *x, const int *labels,
                            const model_targets *targets, int B, float loss_scale,
                            const model_dropout *drop);

/* Padded sequences (input: tokens): samples of different lengths in one
 * batch, x [B, seq_len] with sample b's lengths[b] (1..seq_len) tokens first
 * and any ids after them (padding). Each sample's logits, loss and
 * gradients are those of its own tokens: padded keys are masked in every
 * attention that reads the fast stream, a chunk with no valid token leaves
 * the slow state as it was (sinusoid included), and the last_fast readout
 * pools the valid tokens of the sample's last chunk. lengths NULL: every
 * sample whole, model_forward_targets/model_backward_targets bit for bit.
 * The backward needs the lengths of the forward just run. */
double model_forward_padded(tlb_model *m, const void *x, const int *lengths, const int *labels,
                            const model_targets *targets, int B, const model_dropout *drop);
void model_backward_padded(tlb_model *m, const void *x, const int *lengths, const int *labels,
                           const model_targets *targets, int B, float loss_scale, const model_dropout *drop);
/* -1 with a message when a length is outside [1, seq_len] or lengths are
 * given to an image model; 0 for NULL. */
int model_check_lengths(const tlb_model *m, const int *lengths, int B, tlb_error *err);

void model_zero_grads(tlb_model *m);

/* input: tokens: -1 with a message naming the sample, position and id when
 * an id of the B x seq_len batch is outside [0, vocab_size); 0 otherwise
 * (and always for images). */
int model_check_tokens(const tlb_model *m, const int *ids, int B, tlb_error *err);

/* Shards a micro-batch of B samples runs in: min(shards, B), or 1 when
 * already inside a parallel region. Every backend is re-entrant (oneDNN's
 * streams and primitive caches are per thread). */
int model_shards_for(const tlb_model *m, int B);

/* The fast stream after chunk c's perceptual layers, [B, C, D], and the
 * slow state after chunk c's update, [B, Ns, D] (valid after a forward). */
const float *model_trace_fast(const tlb_model *m, int chunk);
const float *model_trace_slow(const tlb_model *m, int chunk);

/* The same for the final slow state of the last forward over B samples;
 * work holds Ns * Ns doubles, or is NULL to allocate it here (outside the
 * training step). */
state_diversity model_state_diversity(const tlb_model *m, int B, double *work);

#endif
