/* Reading a user's picture for `tlb predict`: PNG (libpng) or JPEG
 * (libjpeg), chosen by the file's signature, not its name, decoded to 8-bit
 * RGB; and turning it into the model's input the way evaluation does. */
#ifndef TLB_DATA_IMAGE_IO_H
#define TLB_DATA_IMAGE_IO_H

#include <stdint.h>

#include "util/error.h"

#define IMAGE_MAX_SIDE 16384
#define IMAGE_MAX_PIXELS (1L << 26) /* 67 megapixels: 192 MiB of RGB */

typedef struct {
    int w, h;
    uint8_t *rgb; /* [h, w, 3] interleaved, row-major */
} image_rgb;

/* Decodes path. Grey, palette, 16-bit and alpha PNGs are converted (alpha
 * dropped, not composited); JPEG in grey, RGB or YCbCr (CMYK is refused).
 * Refuses with one line naming the file: not a regular file (a directory),
 * unreadable, neither PNG nor JPEG, truncated or corrupt (any libjpeg
 * warning, such as "premature end of data", counts as corrupt: libjpeg would
 * otherwise fill the rest with grey), or larger than IMAGE_MAX_SIDE per side
 * or IMAGE_MAX_PIXELS in all. */
int image_read(image_rgb *out, const char *path, tlb_error *err);
void image_free(image_rgb *im);

/* The CIFAR-10 record layout the evaluation pipeline starts from: planar
 * [3, 32, 32] bytes. A 32x32 image is copied exactly; another size is
 * resampled straight to 32x32 per axis (an area average when shrinking, so
 * a large photo is not aliased; bilinear with half-pixel centres when
 * enlarging), rounded to bytes. A non-square image is stretched, not
 * cropped. */
void image_to_cifar32(uint8_t *planar, const image_rgb *im);

/* The model's input [size, size, 3]: image_to_cifar32, then the evaluation
 * pipeline's resize of a CIFAR-10 record (augment_eval), so a 32x32 image
 * is seen exactly as a test image would be. */
void image_model_input(float *out, const image_rgb *im, int size);

#endif
