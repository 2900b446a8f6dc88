/* CIFAR-10's class names, for every place a class is printed. */
#ifndef TLB_DATA_CIFAR10_CLASSES_H
#define TLB_DATA_CIFAR10_CLASSES_H

#include "data/cifar10.h"

#define CIFAR10_CLASS_NAME_MAX 32

typedef struct {
    char names[CIFAR10_NUM_CLASSES][CIFAR10_CLASS_NAME_MAX];
    const char *ptr[CIFAR10_NUM_CLASSES]; /* names[i], for APIs taking const char *const *
                                             (points into this struct: load it in place, do not copy it) */
    int from_metadata;                    /* 1: read from data_dir/batches.meta.txt */
} cifar10_classes;

/* The dataset's own names: data_dir/batches.meta.txt (the official
 * archive's metadata, one name per line in label order) when present and
 * holding 10 non-empty names; otherwise the standard names compiled in
 * (the same list: the npm mirror that `tlb data fetch` may use ships no
 * metadata file). data_dir may be NULL (compiled-in names). */
void cifar10_classes_load(cifar10_classes *out, const char *data_dir);

#endif
