/* A RandAugment-style set of colour and geometric operations on one
 * channels-last float image [S, S, 3] in [0, 1] (the crop after resize,
 * crop and flip). The 14 operations, magnitude ranges and sign flips follow
 * torchvision's RandAugment (31 magnitude bins, 0..30): each image gets N
 * operations drawn uniformly with replacement, each at magnitude M/30 of its
 * range, signed operations with a random sign. Geometric operations sample
 * by nearest neighbour about the image centre and fill with 0, as
 * torchvision does by default. Two deliberate differences, so that
 * magnitude 0 leaves an image unchanged: solarize inverts v > t (not >=),
 * and posterize at 8 bits returns the floats as they are. */
#ifndef TLB_DATA_RANDAUGMENT_H
#define TLB_DATA_RANDAUGMENT_H

#include <stdint.h>

typedef enum {
    RA_IDENTITY,
    RA_SHEAR_X,     /* shear factor up to 0.3 */
    RA_SHEAR_Y,
    RA_TRANSLATE_X, /* up to 150/331 of the side, whole pixels */
    RA_TRANSLATE_Y,
    RA_ROTATE,      /* up to 30 degrees */
    RA_BRIGHTNESS,  /* factor 1 +- 0.9: blend with black */
    RA_COLOR,       /* factor 1 +- 0.9: blend with the grey image (saturation) */
    RA_CONTRAST,    /* factor 1 +- 0.9: blend with the mean grey */
    RA_SHARPNESS,   /* factor 1 +- 0.9: blend with a 3x3 smoothing (border kept) */
    RA_POSTERIZE,   /* keep 8 down to 4 bits per channel */
    RA_SOLARIZE,    /* invert values above 1 - level */
    RA_AUTOCONTRAST, /* stretch each channel to [0, 1] (no magnitude) */
    RA_EQUALIZE,    /* PIL's per-channel histogram equalisation on 8-bit values (no magnitude) */
    RA_NUM_OPS
} randaugment_op;

/* Upper bound of the magnitude scale (torchvision's 31 bins). */
#define RANDAUGMENT_MAX_MAGNITUDE 30

/* Applies one operation in place. level in [-1, 1] is the signed fraction
 * of the op's range (magnitude / 30, sign drawn for signed ops; unsigned
 * ops use |level|). scratch: [S * S * 3] floats, overwritten. */
void randaugment_apply_op(float *img, float *scratch, int S, randaugment_op op, float level);

/* The n operations and signs of one image: a pure function of key. */
void randaugment_draw(randaugment_op *ops, float *signs, int n, uint64_t key);

/* n operations at magnitude m (0..30) drawn from key, applied in order. */
void randaugment(float *img, float *scratch, int S, int n, int m, uint64_t key);

/* Name of an op ("rotate", ...), for tests and messages. */
const char *randaugment_op_name(randaugment_op op);

#endif
