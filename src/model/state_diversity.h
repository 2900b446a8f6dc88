/* How diverse a slow state's Ns rows are: with a zero initial state every
 * row stays identical (golden README, "Gradients that are exactly zero"),
 * and this is the number that shows it. */
#ifndef TLB_STATE_DIVERSITY_H
#define TLB_STATE_DIVERSITY_H

/* Averages over samples: the mean pairwise cosine similarity of the rows
 * (1 = all rows point one way; 1 when Ns = 1) and the effective rank, the
 * number of singular values above 1% of the largest. */
typedef struct {
    double cosine;
    double rank;
} state_diversity;

/* Diversity of B states laid out [B, Ns, D]; work holds Ns * Ns doubles. */
state_diversity state_diversity_of(const float *states, int B, int Ns, int D, double *work);

#endif
