#include "data/augment.h"

#include "data/cifar10.h"
#include "data/random_erase.h"
#include "data/randaugment.h"
#include "util/rng.h"

#define AUGMENT_RNG_SITE 0x617567ULL /* "aug": separates these draws from other uses of the run seed */
#define RANDAUGMENT_RNG_SITE 0x72616e64ULL /* "rand" */
#define ERASE_RNG_SITE 0x6572617365ULL     /* "erase" */

static uint64_t image_key(uint64_t seed, uint64_t site, int epoch, int64_t index)
{
    return rng_key(rng_key(rng_key(seed, site), (uint64_t)epoch), (uint64_t)index);
}

augment_params augment_draw(uint64_t seed, int epoch, int64_t index, int max_offset)
{
    uint64_t key = image_key(seed, AUGMENT_RNG_SITE, epoch, index);
    uint64_t n = (uint64_t)max_offset + 1;
    augment_params p;
    p.oy = (int)(((rng_u64(key, 0) >> 32) * n) >> 32);
    p.ox = (int)(((rng_u64(key, 1) >> 32) * n) >> 32);
    p.flip = (int)(rng_u64(key, 2) >> 63);
    return p;
}

/* One axis of TF's half-pixel bilinear resize: for output coordinate i,
 * the two source neighbours and the weight of the upper one. */
static inline void axis_weights(int *lo, int *hi, float *lerp, int i, float scale, int in_size)
{
    float in = ((float)i + 0.5f) * scale - 0.5f;
    float f = __builtin_floorf(in);
    int l = (int)f, h = (int)__builtin_ceilf(in);
    *lo = l < 0 ? 0 : l;
    *hi = h > in_size - 1 ? in_size - 1 : h;
    *lerp = in - f;
}

void augment_resize_crop(float *out, const uint8_t *pixels, int in_size, int resize, int size, augment_params p)
{
    /* float(1/255) times the byte, as Keras Rescaling computes it. */
    const float k = (float)(1.0 / 255.0);
    const float scale = (float)in_size / (float)resize;
    const int plane = in_size * in_size;
    for (int y = 0; y < size; y++) {
        int y0, y1;
        float ly;
        axis_weights(&y0, &y1, &ly, p.oy + y, scale, in_size);
        for (int x = 0; x < size; x++) {
            int x0, x1;
            float lx;
            axis_weights(&x0, &x1, &lx, p.ox + (p.flip ? size - 1 - x : x), scale, in_size);
            float *o = out + ((size_t)y * size + x) * 3;
            for (int c = 0; c < 3; c++) {
                const uint8_t *src = pixels + c * plane;
                float tl = src[y0 * in_size + x0] * k, tr = src[y0 * in_size + x1] * k;
                float bl = src[y1 * in_size + x0] * k, br = src[y1 * in_size + x1] * k;
                /* TF's compute_lerp, same operation order. */
                float top = tl + (tr - tl) * lx;
                float bottom = bl + (br - bl) * lx;
                o[c] = top + (bottom - top) * ly;
            }
        }
    }
}

void augment_train(float *out, const uint8_t *pixels, int size, uint64_t seed, int epoch, int64_t index)
{
    augment_params p = augment_draw(seed, epoch, index, AUGMENT_TRAIN_PAD);
    augment_resize_crop(out, pixels, CIFAR10_SIDE, size + AUGMENT_TRAIN_PAD, size, p);
}

void augment_train_with(float *out, float *scratch, const uint8_t *pixels, int size, const augment_options *o,
                        uint64_t seed, int epoch, int64_t index)
{
    augment_train(out, pixels, size, seed, epoch, index);
    if (o->randaugment_n > 0)
        randaugment(out, scratch, size, o->randaugment_n, o->randaugment_m,
                    image_key(seed, RANDAUGMENT_RNG_SITE, epoch, index));
    if (o->random_erase > 0) random_erase(out, size, o->random_erase, image_key(seed, ERASE_RNG_SITE, epoch, index));
}

void augment_eval(float *out, const uint8_t *pixels, int size)
{
    augment_resize_crop(out, pixels, CIFAR10_SIDE, size, size, (augment_params){0, 0, 0});
}
