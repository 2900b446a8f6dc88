/* The Long Range Arena's Image task from the CIFAR-10 files the program
 * already fetches: each image to 8-bit grayscale, 0.299 R + 0.587 G +
 * 0.114 B (ITU-R 601) rounded to nearest (an exact .5 rounds up), flattened
 * row by row to 1,024 tokens of a 256-id vocabulary. Splits: the first
 * 45,000 training images train, the other 5,000 validate, the test batch
 * tests. No augmentation. */
#ifndef TLB_DATA_LRA_IMAGE_H
#define TLB_DATA_LRA_IMAGE_H

#include <stdint.h>

#include "data/cifar10.h"
#include "data/token_set.h"
#include "util/error.h"

#define LRA_IMAGE_LEN 1024   /* 32 x 32 tokens */
#define LRA_IMAGE_VOCAB 256
#define LRA_IMAGE_TRAIN 45000

/* One image's tokens: pixels is a CIFAR-10 record's planar [3, 32, 32]. */
void lra_image_tokens(uint8_t *tokens, const uint8_t *pixels);

/* Fills tokens [n, 1024] and labels [n] from the n records of a view. */
void lra_image_fill(uint8_t *tokens, uint8_t *labels, const cifar10_view *records);

/* The records of a split: train and val from the 50,000 training records
 * (first 45,000 / the rest), test = the test set. */
int lra_image_split(cifar10_view *out, const cifar10_set *train, const cifar10_set *test,
                    data_split split, tlb_error *err);

/* A token set of the records of a view (every row full: pad_id -1). */
int lra_image_from_view(token_set *out, const cifar10_view *records, tlb_error *err);

/* One split from the verified CIFAR-10 files in data_dir. */
int lra_image_load(token_set *out, const char *data_dir, data_split split, tlb_error *err);

#endif
