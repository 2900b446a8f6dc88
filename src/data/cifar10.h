/* CIFAR-10 in the official binary format (cifar-10-batches-bin): the raw
 * uint8 records kept in memory, checked against recorded sizes and XXH3-64
 * hashes, and the train / validation / test split of the Keras example. */
#ifndef TLB_DATA_CIFAR10_H
#define TLB_DATA_CIFAR10_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define CIFAR10_SIDE 32
#define CIFAR10_PIXELS 3072                 /* 3 planes (R, G, B) of 32x32 */
#define CIFAR10_RECORD 3073                 /* label byte + pixels */
#define CIFAR10_PER_FILE 10000
#define CIFAR10_FILE_BYTES 30730000L        /* 10,000 records */
#define CIFAR10_NUM_FILES 6                 /* data_batch_1..5, test_batch */
#define CIFAR10_NUM_CLASSES 10
#define CIFAR10_TRAIN_SLICE 40000           /* Keras seed: first 40k train, last 10k val */

/* The six official files, in order, with their recorded XXH3-64 hashes. */
typedef struct {
    const char *name;
    uint64_t xxh3;
} cifar10_file;
extern const cifar10_file cifar10_files[CIFAR10_NUM_FILES];

/* Owns its records. pixels is [count, 3, 32, 32], planar as in the file. */
typedef struct {
    int count;
    uint8_t *labels;
    uint8_t *pixels;
} cifar10_set;

/* A non-owning run of consecutive records of a set (a split). */
typedef struct {
    int count;
    const uint8_t *labels;
    const uint8_t *pixels;
} cifar10_view;

/* Loads data_dir/data_batch_1..5.bin (50,000 records) into train and
 * data_dir/test_batch.bin into test, checking every file's size and XXH3.
 * On failure both sets are left empty and err names the file (a NULL
 * data_dir, i.e. no default dir resolved, is refused with a message). */
int cifar10_load(cifar10_set *train, cifar10_set *test, const char *data_dir, tlb_error *err);

/* Checks one file's size and XXH3 against cifar10_files[file_index]
 * without keeping it. */
int cifar10_verify_file(const char *data_dir, int file_index, tlb_error *err);

/* Reads any file of whole CIFAR-10 records (e.g. a vendored slice) with only
 * structural checks: size a positive multiple of 3073, labels 0..9. */
int cifar10_read_records(cifar10_set *out, const char *path, tlb_error *err);

/* Reads path into a new malloc'd buffer (*size bytes, size may be NULL),
 * requiring exactly expect_bytes if > 0 and that hash if expect_xxh3 != 0.
 * Messages say expected vs got. */
int cifar10_read_checked(uint8_t **out, size_t *size, const char *path, long expect_bytes, uint64_t expect_xxh3,
                         tlb_error *err);

void cifar10_free(cifar10_set *s);

/* All records of a set as a view. */
cifar10_view cifar10_view_all(const cifar10_set *s);

/* Keras split: train = first train_slice records, val = the rest.
 * train_slice must be in [1, count]; val may be empty when it equals count. */
int cifar10_split(cifar10_view *train, cifar10_view *val, const cifar10_set *full_train, int train_slice,
                  tlb_error *err);

#endif
