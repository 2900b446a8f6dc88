/* Parameter initialisation as Keras 3 does it for the seed's layers (golden
 * README, "Initialisation"): Glorot-uniform kernels with Keras's fans, zero
 * biases, LayerNorm gamma 1 / beta 0, position embedding U[-0.05, 0.05]. */
#ifndef TLB_INIT_H
#define TLB_INIT_H

#include <stdint.h>

#include "model/model.h"

/* Each tensor draws from its own stream keyed by (seed, tensor index), so
 * adding a tensor does not change the others' values. */
void init_keras(tlb_model *m, uint64_t seed);

#endif
