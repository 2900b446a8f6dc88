/* LayerNorms folded into the products they feed (block.c, fold_norms):
 *
 *     LN(x) @ W + b = z @ (diag(gamma) W) + (beta @ W + b),  z = (x - mean) * rstd,
 *
 * so the q, k and v products of an attention read one normalised z where
 * they share an input (a self-attention: one set of statistics, one z
 * written, one rebuilt, one LayerNorm backward, for three), and the
 * gradients of W, b, gamma and beta follow from those of the folded pair
 * (G = z^T dY, g = column sums of dY):
 *
 *     dW = diag(gamma) G + beta (x) g,  db = g,
 *     dgamma_i = sum_j G_ij W_ij,  dbeta_i = sum_j g_j W_ij.
 *
 * The sums run in a fixed order: the results do not depend on the threads. */
#ifndef TLB_MODEL_NORM_FOLD_H
#define TLB_MODEL_NORM_FOLD_H

#include <stddef.h>

#include "util/error.h"

/* A thread's room for the folds of one attention: the folded weights and
 * biases of q, k, v, their gradients of one call, and the unit LayerNorm's
 * gamma (ones) and beta (zeros). Reserved by norm_fold_prepare on the
 * thread that will run the block (a batch shard's), like the ops' scratch. */
typedef struct {
    float *w[3], *b[3];   /* [D, N], [N] */
    float *gw[3], *gb[3]; /* [D, N], [N]: zeroed by norm_fold_begin_backward */
    const float *ones, *zeros; /* [D] */
} norm_fold;

int norm_fold_prepare(int D, int N, tlb_error *err);

/* The calling thread's workspace for D x N products, with ones and zeros set. */
norm_fold norm_fold_workspace(int D, int N);

/* wf = diag(gamma) W, bf = beta @ W + b (W [D, N]). */
void norm_fold_weights(float *wf, float *bf, const float *gamma, const float *beta, const float *W,
                       const float *b, int D, int N);

/* The folded pair's gradients (gw, gb) into those of W, b, gamma, beta
 * (accumulated). */
void norm_fold_grads(float *dW, float *db, float *dgamma, float *dbeta, const float *gw, const float *gb,
                     const float *gamma, const float *beta, const float *W, int D, int N);

#endif
