/* Helpers shared by the Criterion suites (test_train.c, test_hardening.c). */
#ifndef TLB_TESTS_TEST_HELPERS_H
#define TLB_TESTS_TEST_HELPERS_H

#include <stddef.h>

/* A malloc'd copy of the data section of RUN_DIR/checkpoint.safetensors
 * (parameters, AdamW moments, position; not the JSON header), its length in
 * *n. Fails the current test if the file cannot be opened. */
unsigned char *test_checkpoint_data(const char *run_dir, size_t *n);

#endif
