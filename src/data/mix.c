#include "data/mix.h"

#include <math.h>
#include <string.h>

#include "util/rng.h"

#define MIX_RNG_SITE 0x6d6978ULL      /* "mix" */
#define PARTNER_COUNTER (1ULL << 40)  /* partner draws past the lam/box draws */

uint64_t mix_key(uint64_t seed, int epoch, int batch)
{
    return rng_key(rng_key(rng_key(seed, MIX_RNG_SITE), (uint64_t)epoch), (uint64_t)batch);
}

/* Uniform in (0, 1): never 0, so logs are finite. */
static double open_uniform(uint64_t key, uint64_t *counter)
{
    return ((double)(rng_u64(key, (*counter)++) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

static double normal(uint64_t key, uint64_t *counter)
{
    const double u = open_uniform(key, counter), v = open_uniform(key, counter);
    return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

/* Gamma(a, 1): Marsaglia and Tsang (2000); a < 1 via Gamma(a + 1) U^(1/a). */
static double gamma_draw(uint64_t key, uint64_t *counter, double a)
{
    if (a < 1.0) {
        const double g = gamma_draw(key, counter, a + 1.0);
        return g * pow(open_uniform(key, counter), 1.0 / a);
    }
    const double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = normal(key, counter);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        const double u = open_uniform(key, counter);
        if (log(u) < 0.5 * x * x + d - d * v + d * log(v)) return d * v;
    }
}

double mix_beta(uint64_t key, uint64_t *counter, double a)
{
    const double x = gamma_draw(key, counter, a), y = gamma_draw(key, counter, a);
    /* Both underflow only for tiny a: either extreme is a faithful draw. */
    if (!(x + y > 0.0)) return open_uniform(key, counter) < 0.5 ? 0.0 : 1.0;
    return x / (x + y);
}

static inline int clip(int v, int S) { return v < 0 ? 0 : v > S ? S : v; }

mix_params mix_draw(uint64_t key, int S, double mixup_alpha, double cutmix_alpha)
{
    mix_params p = {MIX_NONE, 1.0f, 0, 0, 0, 0};
    if (mixup_alpha <= 0.0 && cutmix_alpha <= 0.0) return p;
    uint64_t counter = 0;
    const int cut = mixup_alpha <= 0.0 || (cutmix_alpha > 0.0 && (rng_u64(key, counter++) >> 63));
    if (!cut) {
        p.kind = MIX_MIXUP;
        p.lam = (float)mix_beta(key, &counter, mixup_alpha);
        return p;
    }
    p.kind = MIX_CUTMIX;
    const double lam = mix_beta(key, &counter, cutmix_alpha), rat = sqrt(1.0 - lam);
    const int ch = (int)(S * rat), cw = (int)(S * rat);
    rng_stream s = {key, counter};
    const int cy = (int)rng_next_below(&s, (uint32_t)S), cx = (int)rng_next_below(&s, (uint32_t)S);
    p.y0 = clip(cy - ch / 2, S), p.y1 = clip(cy + ch / 2, S);
    p.x0 = clip(cx - cw / 2, S), p.x1 = clip(cx + cw / 2, S);
    p.lam = (float)(1.0 - (double)(p.y1 - p.y0) * (p.x1 - p.x0) / ((double)S * S));
    return p;
}

void mix_partners(int *perm, int n, uint64_t key)
{
    for (int i = 0; i < n; i++) perm[i] = i;
    rng_stream s = {key, PARTNER_COUNTER};
    /* Sattolo: j < i (never i itself) yields a single cycle through all n. */
    for (int i = n - 1; i > 0; i--) {
        const int j = (int)rng_next_below(&s, (uint32_t)i);
        const int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void mix_pair(float *dst, const float *partner, int S, const mix_params *p)
{
    if (p->kind == MIX_MIXUP) {
        const float a = p->lam, b = 1.0f - p->lam;
        for (int i = 0; i < S * S * 3; i++) dst[i] = a * dst[i] + b * partner[i];
        return;
    }
    const size_t row = (size_t)(p->x1 - p->x0) * 3 * sizeof(float);
    for (int y = p->y0; y < p->y1; y++) {
        const size_t at = ((size_t)y * S + p->x0) * 3;
        memcpy(dst + at, partner + at, row);
    }
}

void mix_apply(float *x, float *tmp, const int *perm, int n, int S, const mix_params *p)
{
    if (p->kind == MIX_NONE || n < 2) return;
    const size_t img = (size_t)S * S * 3;
    /* Walk the cycle 0 -> perm[0] -> ...: each partner is still unmixed when
     * it is read, except the last one (sample 0), read from its copy. */
    memcpy(tmp, x, img * sizeof(float));
    int i = 0;
    for (int step = 0; step < n; step++) {
        const int j = perm[i];
        mix_pair(x + (size_t)i * img, j == 0 ? tmp : x + (size_t)j * img, S, p);
        i = j;
    }
}
