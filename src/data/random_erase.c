#include "data/random_erase.h"

#include <math.h>
#include <stddef.h>

#include "util/rng.h"

#define ERASE_TRIES 10
#define FILL_COUNTER (1ULL << 32) /* fill draws start past the shape draws */

erase_rect random_erase_draw(uint64_t key, int S, double p)
{
    erase_rect r = {0, 0, 0, 0};
    if (!(rng_uniform(key, 0) < p)) return r;
    const double area = (double)S * S, log_lo = log(ERASE_MIN_ASPECT), log_hi = -log_lo;
    rng_stream s = {key, 1};
    for (int t = 0; t < ERASE_TRIES; t++) {
        const double target = area * (ERASE_MIN_AREA + (ERASE_MAX_AREA - ERASE_MIN_AREA) * rng_next_uniform(&s));
        const double aspect = exp(log_lo + (log_hi - log_lo) * rng_next_uniform(&s));
        const int h = (int)lround(sqrt(target * aspect)), w = (int)lround(sqrt(target / aspect));
        if (h < 1 || w < 1 || h >= S || w >= S) continue; /* timm: strictly inside */
        r.h = h, r.w = w;
        r.y = (int)rng_next_below(&s, (uint32_t)(S - h + 1));
        r.x = (int)rng_next_below(&s, (uint32_t)(S - w + 1));
        return r;
    }
    return r;
}

void random_erase_fill(float *img, int S, erase_rect r, uint64_t key)
{
    uint64_t k = FILL_COUNTER;
    for (int y = r.y; y < r.y + r.h; y++)
        for (int x = r.x; x < r.x + r.w; x++) {
            float *o = img + ((size_t)y * S + x) * 3;
            for (int c = 0; c < 3; c++) o[c] = rng_uniform(key, k++);
        }
}

void random_erase(float *img, int S, double p, uint64_t key)
{
    erase_rect r = random_erase_draw(key, S, p);
    if (r.h > 0) random_erase_fill(img, S, r, key);
}
