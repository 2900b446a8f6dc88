/* Forward-only inference: the logits of up to `capacity` samples without the
 * training plan. model_plan keeps every (chunk, step)'s activations for
 * backpropagation through time (about 5 MB per sample in the seed); this
 * plan keeps one block's buffers per thread, reused by every chunk and step,
 * and the streams of one tile of samples: a few MB in all.
 *
 * The batch is cut into tiles of `tile` samples from sample 0 (whatever the
 * thread count); each OpenMP thread runs whole tiles, one at a time, with
 * single-threaded ops over its own workspace. A tile runs the same ops in
 * the same order as model_forward with dropout off, so on backends whose
 * results do not depend on the row count (ref, avx2, avx512) the logits are
 * bit-identical to model_forward's; oneDNN's matmul picks its kernel by the
 * row count, so there they are equal to rounding. Work that cannot reach the
 * outputs is skipped: the last chunk's slow-state update when the head reads
 * the last fast stream (unless the final state or the attention maps are
 * asked for). The walk is the model's own (model/walk.h). */
#ifndef TLB_MODEL_INFER_H
#define TLB_MODEL_INFER_H

#include "model/model.h"

/* What a plan keeps besides the logits. */
enum {
    INFER_STATE = 1,     /* the final slow state [B, Ns, D] (for its diversity) */
    INFER_ATTENTION = 2, /* every chunk's slow-update attention, for the maps */
};

/* Samples per tile when the caller has no preference: the measured best of
 * 8/16/32/64 for the seed model on 2 threads (BENCHMARKS.md, "Inference"):
 * 64 and 32 within a few percent of each other, 16 and 8 behind. */
#define INFER_TILE_DEFAULT 64
/* The maps of INFER_ATTENTION: model_inference_slow_attention (attention_map.h). */

typedef struct model_inference model_inference;

/* One thread's buffers for a tile. */
typedef struct {
    const model_inference *plan;
    uint16_t *staging;                         /* bf16 activations (mixed precision), or NULL */
    float *tok, *tok_mean, *tok_rstd, *tokens; /* [tile*N, D], [tile*N] x2, [tile*N, D] */
    float *fast[3];                            /* chunk input, then two alternating outputs [tile, C, D] */
    float *slow[3];                            /* two alternating states, the sinusoid's input [tile, Ns, D] */
    float *probs;                              /* [tile, H, T, T] a step's attention (when not kept) */
    block_acts acts;                           /* one block's buffers, T = max(C, Ns) rows per sample */
    block_scratch scratch;                     /* only g (the GELU output) is used by a forward */
    float *readout_ln, *readout_mean, *readout_rstd; /* [tile*Ns, D], [tile*Ns] x2 (readout: state) */
    float *pooled;                             /* [tile, D] */
    float *hidden_pre, *hidden;                /* [tile, Hh] the head's hidden layer (head_hidden) */
    int *kv_len;                               /* [tile] a chunk's valid tokens (input: tokens) */
} infer_workspace;

struct model_inference {
    const tlb_model *model; /* its parameters and op table, read at every run: the plan sees updates */
    int capacity, tile, threads;
    unsigned flags;
    arena mem;
    infer_workspace *ws;  /* [threads] */
    float *logits;        /* [capacity, V] */
    float *probs;         /* [capacity, V] softmax (with labels) */
    float *losses;        /* [capacity] cross-entropy (with labels) */
    float *state;         /* [capacity, Ns, D] (INFER_STATE) */
    float *slow_probs;    /* [chunks][capacity, H, Ns, C] (INFER_ATTENTION) */
    uint16_t *params16;   /* bf16 parameters, converted at each run (mixed precision) */
    float *folded;        /* the folded LayerNorm weights, made at each run (model_fold_norms), or NULL */
    uint16_t *staging;    /* [threads][staging_n] */
    size_t staging_n;
};

/* Plans for up to `capacity` samples in tiles of `tile` (0: INFER_TILE_DEFAULT)
 * for omp_get_max_threads() threads, on the model's op table: buffers, and
 * every kernel set up on the threads that run it. 0, or -1 with err. */
int model_inference_plan(model_inference *inf, const tlb_model *m, int capacity, int tile,
                         unsigned flags, tlb_error *err);
void model_inference_free(model_inference *inf);

/* The outputs above for 1 <= B <= capacity samples of the input batch x
 * (model_forward: images [B, S, S, 3] or token ids [B, T]);
 * with labels also probs and losses. Allocates nothing; another B is refused
 * (-1 with err). */
int model_inference_run(model_inference *inf, const void *x, const int *labels, int B, tlb_error *err);

/* The same for padded sequences (model_forward_padded): lengths[b] valid
 * tokens of sample b, NULL = every sample whole. */
int model_inference_run_padded(model_inference *inf, const void *x, const int *lengths, const int *labels, int B,
                               tlb_error *err);

/* The final state's diversity over the B samples of the last run (INFER_STATE;
 * NaN without it). work: Ns * Ns doubles. */
state_diversity model_inference_state_diversity(const model_inference *inf, int B, double *work);

#endif
