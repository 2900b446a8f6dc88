/* Where the slow state looks: the attention probabilities of the slow-state
 * update (queries = the state's rows, keys = the chunk's tokens) read back
 * from the activations of the last forward, as token-order maps over the
 * image's patches. This is the Keras example's "TLB attention" picture, per
 * state row as well as the seed's max over rows, so a collapsed state (every
 * row identical, see issue 10) shows up as identical maps. */
#ifndef TLB_MODEL_ATTENTION_MAP_H
#define TLB_MODEL_ATTENTION_MAP_H

#include "model/infer.h"
#include "model/model.h"

/* Rows of the slow state (num_state_tokens; chunk_size in the seed). */
int model_state_rows(const tlb_model *m);

/* For sample b (< the B of the last model_forward), every chunk's slow
 * update, probabilities over that chunk's tokens, mean over heads:
 *   per_row [Ns, N]: row i is state row i's attention (N = num_patches,
 *                    token order, chunk after chunk); may be NULL;
 *   max     [N]:     max over the state rows, then mean over heads (the
 *                    seed's attention.png); may be NULL. */
void model_slow_attention(const tlb_model *m, int b, float *per_row, float *max);

/* The same maps from the last model_inference_run of a plan with
 * INFER_ATTENTION (infer.h). */
void model_inference_slow_attention(const model_inference *inf, int b, float *per_row, float *max);

#endif
