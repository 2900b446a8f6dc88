/* The Keras seed's input pipeline on one CIFAR-10 record:
 *   training:   x/255 -> bilinear resize to R = S + 4 -> random S x S crop -> random horizontal flip
 *   evaluation: x/255 -> bilinear resize to S
 * (seed: S = 48, R = 52). Resizing matches Keras Resizing(interpolation=
 * "bilinear"), i.e. TF resize with half-pixel centres and no antialias:
 * src = (dst + 0.5) * in/out - 0.5, neighbours clamped to the image.
 * Output is channels-last float [S, S, 3], the model's x[b, y, x, c]. */
#ifndef TLB_DATA_AUGMENT_H
#define TLB_DATA_AUGMENT_H

#include <stdint.h>

/* Training resize target = image_size + AUGMENT_TRAIN_PAD, so crops can
 * move by 0..AUGMENT_TRAIN_PAD pixels on each axis. */
#define AUGMENT_TRAIN_PAD 4

typedef struct {
    int oy, ox; /* crop offset in the resized image, each in [0, resize - size] */
    int flip;   /* 1: mirror left-right after the crop */
} augment_params;

/* Crop offset and flip of sample `index` (its index in the split) in
 * `epoch`: a pure function of (seed, epoch, index), so batches do not depend
 * on thread timing and a resumed run draws what an uninterrupted one would. */
augment_params augment_draw(uint64_t seed, int epoch, int64_t index, int max_offset);

/* out [size, size, 3] = the (oy, ox) crop of the bilinear resize to
 * resize x resize of pixels/255, mirrored if flip. pixels is planar
 * [3, in_size, in_size] uint8 (a CIFAR-10 record's pixels). Computes only
 * the cropped pixels, with the same arithmetic as resize-then-crop. */
void augment_resize_crop(float *out, const uint8_t *pixels, int in_size, int resize, int size,
                         augment_params p);

/* Training view of a 32x32 record: resize to size + AUGMENT_TRAIN_PAD,
 * crop and flip drawn by augment_draw. */
void augment_train(float *out, const uint8_t *pixels, int size, uint64_t seed, int epoch, int64_t index);

/* Augmentation beyond the seed's crop and flip; all zero (the default)
 * leaves augment_train's output as it is, bit for bit. */
typedef struct {
    int randaugment_n;   /* RandAugment ops per image (randaugment.h); 0 = off */
    int randaugment_m;   /* their magnitude, 0..30 */
    double random_erase; /* probability of erasing one rectangle (random_erase.h) */
    double mixup_alpha;  /* batch level, in the loader (mix.h); 0 = off */
    double cutmix_alpha;
} augment_options;

static inline int augment_mixes(const augment_options *o) { return o->mixup_alpha > 0 || o->cutmix_alpha > 0; }

/* augment_train, then RandAugment, then random erasing (timm's order), each
 * keyed on (seed, epoch, index) under its own site. scratch: [size*size*3]. */
void augment_train_with(float *out, float *scratch, const uint8_t *pixels, int size, const augment_options *o,
                        uint64_t seed, int epoch, int64_t index);

/* Evaluation view of a 32x32 record: resize to size x size. */
void augment_eval(float *out, const uint8_t *pixels, int size);

#endif
