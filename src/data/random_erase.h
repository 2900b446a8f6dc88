/* Random erasing (Zhong et al. 2017, as timm's RandomErasing): with
 * probability p, one rectangle of area 2%..1/3 of the image and aspect ratio
 * 0.3..3.3 (log-uniform) is replaced by per-pixel random values, uniform in
 * [0, 1) per channel: timm's "pixel" mode draws N(0, 1) in normalised space;
 * our inputs are not normalised, so the fill spans the input range instead.
 * Up to 10 tries for a rectangle that fits, then the image stays as it is. */
#ifndef TLB_DATA_RANDOM_ERASE_H
#define TLB_DATA_RANDOM_ERASE_H

#include <stdint.h>

typedef struct {
    int y, x, h, w; /* the rectangle; h == 0: nothing erased */
} erase_rect;

#define ERASE_MIN_AREA 0.02
#define ERASE_MAX_AREA (1.0 / 3.0)
#define ERASE_MIN_ASPECT 0.3

/* The rectangle of one S x S image: a pure function of (key, p). */
erase_rect random_erase_draw(uint64_t key, int S, double p);

/* Fills r in img [S, S, 3] with values drawn from key. */
void random_erase_fill(float *img, int S, erase_rect r, uint64_t key);

/* Draw and fill. */
void random_erase(float *img, int S, double p, uint64_t key);

#endif
