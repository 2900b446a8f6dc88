/* Mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) within a batch, as
 * timm's Mixup in its default "batch" mode: one lam ~ Beta(alpha, alpha) per
 * batch; with both on, mixup or cutmix with probability 1/2 each. Sample i
 * is mixed with its partner perm[i], where perm is a random n-cycle
 * (Sattolo's shuffle), so no sample is its own partner. The target is then
 * lam * onehot(y[i]) + (1 - lam) * onehot(y[perm[i]]).
 *   mixup:  x[i] = lam x[i] + (1 - lam) x[perm[i]]
 *   cutmix: x[i] takes the box from x[perm[i]]; the box is timm's rand_bbox
 *           (side sqrt(1 - lam) of the image's, centre uniform, clipped) and
 *           lam becomes the exact fraction of x[i]'s pixels kept.
 * Everything is a pure function of (seed, epoch, batch index). */
#ifndef TLB_DATA_MIX_H
#define TLB_DATA_MIX_H

#include <stdint.h>

typedef enum { MIX_NONE = 0, MIX_MIXUP = 1, MIX_CUTMIX = 2 } mix_kind;

typedef struct {
    mix_kind kind;
    float lam;            /* weight of each sample's own label */
    int y0, x0, y1, x1;   /* cutmix box, half-open [y0, y1) x [x0, x1) */
} mix_params;

/* Key of batch k of epoch e under the run seed. */
uint64_t mix_key(uint64_t seed, int epoch, int batch);

/* The batch's kind, lam and box for S x S images; MIX_NONE (lam 1) when
 * both alphas are 0. */
mix_params mix_draw(uint64_t key, int S, double mixup_alpha, double cutmix_alpha);

/* perm[n]: a uniformly random n-cycle drawn from key (identity for n = 1). */
void mix_partners(int *perm, int n, uint64_t key);

/* One image: dst (its own pixels) mixed with its partner's unmixed pixels
 * (no alias). mix_apply does this for every sample. */
void mix_pair(float *dst, const float *partner, int S, const mix_params *p);

/* Mixes x [n, S, S, 3] in place following one n-cycle perm. tmp: [S*S*3]. */
void mix_apply(float *x, float *tmp, const int *perm, int n, int S, const mix_params *p);

/* One draw of Beta(a, a), a > 0, from the stream (Marsaglia-Tsang gammas). */
double mix_beta(uint64_t key, uint64_t *counter, double a);

#endif
