#include "data/cifar10_classes.h"

#include <stdio.h>
#include <string.h>

/* The official archive's batches.meta.txt, in label order. */
static const char *const standard_names[CIFAR10_NUM_CLASSES] = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};

static void set_standard(cifar10_classes *out)
{
    for (int i = 0; i < CIFAR10_NUM_CLASSES; i++)
        snprintf(out->names[i], sizeof out->names[i], "%s", standard_names[i]);
    out->from_metadata = 0;
}

/* Printable ASCII only, so a damaged file cannot put control characters in
 * a message or a plot. */
static int read_meta(cifar10_classes *out, FILE *fp)
{
    char line[256];
    int n = 0;
    while (n < CIFAR10_NUM_CLASSES && fgets(line, sizeof line, fp)) {
        size_t k = strcspn(line, "\r\n");
        line[k] = '\0';
        if (k == 0) continue; /* the file ends with blank lines */
        if (k >= CIFAR10_CLASS_NAME_MAX) return -1;
        for (size_t i = 0; i < k; i++)
            if (line[i] < 0x20 || line[i] > 0x7e) return -1;
        memcpy(out->names[n++], line, k + 1);
    }
    return n == CIFAR10_NUM_CLASSES ? 0 : -1;
}

void cifar10_classes_load(cifar10_classes *out, const char *data_dir)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < CIFAR10_NUM_CLASSES; i++) out->ptr[i] = out->names[i];
    char path[1200];
    FILE *fp = NULL;
    if (data_dir && snprintf(path, sizeof path, "%s/batches.meta.txt", data_dir) < (int)sizeof path)
        fp = fopen(path, "r");
    if (fp && read_meta(out, fp) == 0) out->from_metadata = 1;
    else set_standard(out);
    if (fp) fclose(fp);
}
