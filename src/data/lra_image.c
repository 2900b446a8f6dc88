#include "data/lra_image.h"

#include <string.h>

void lra_image_tokens(uint8_t *tokens, const uint8_t *pixels)
{
    const uint8_t *r = pixels, *g = pixels + LRA_IMAGE_LEN, *b = pixels + 2 * LRA_IMAGE_LEN;
    /* In thousandths, so rounding is exact: no float weight lands a tie on
     * the wrong side. At most 255000 + 500, well inside an int. */
    for (int i = 0; i < LRA_IMAGE_LEN; i++)
        tokens[i] = (uint8_t)((299 * r[i] + 587 * g[i] + 114 * b[i] + 500) / 1000);
}

void lra_image_fill(uint8_t *tokens, uint8_t *labels, const cifar10_view *records)
{
#pragma omp parallel for schedule(static)
    for (int i = 0; i < records->count; i++) {
        lra_image_tokens(tokens + (size_t)i * LRA_IMAGE_LEN,
                         records->pixels + (size_t)i * CIFAR10_PIXELS);
        labels[i] = records->labels[i];
    }
}

int lra_image_split(cifar10_view *out, const cifar10_set *train, const cifar10_set *test,
                    data_split split, tlb_error *err)
{
    cifar10_view tr, val;
    switch (split) {
    case DATA_SPLIT_TRAIN:
    case DATA_SPLIT_VAL:
        if (train->count <= LRA_IMAGE_TRAIN)
            return tlb_fail(err, "LRA Image: %d training records, need more than %d",
                            train->count, LRA_IMAGE_TRAIN);
        if (cifar10_split(&tr, &val, train, LRA_IMAGE_TRAIN, err)) return -1;
        *out = split == DATA_SPLIT_TRAIN ? tr : val;
        return 0;
    case DATA_SPLIT_TEST: *out = cifar10_view_all(test); return 0;
    default: return tlb_fail(err, "LRA Image: bad split %d", (int)split);
    }
}

int lra_image_from_view(token_set *out, const cifar10_view *records, tlb_error *err)
{
    if (token_set_alloc(out, records->count, LRA_IMAGE_LEN, LRA_IMAGE_VOCAB, -1,
                        CIFAR10_NUM_CLASSES, err))
        return -1;
    lra_image_fill(out->tokens, out->labels, records);
    for (int i = 0; i < out->count; i++) out->lengths[i] = LRA_IMAGE_LEN;
    return 0;
}

int lra_image_load(token_set *out, const char *data_dir, data_split split, tlb_error *err)
{
    memset(out, 0, sizeof *out);
    cifar10_set train, test;
    if (cifar10_load(&train, &test, data_dir, err)) return tlb_fail_prefix(err, "LRA Image");
    cifar10_view v;
    int rc = lra_image_split(&v, &train, &test, split, err);
    if (rc == 0) rc = lra_image_from_view(out, &v, err);
    cifar10_free(&train);
    cifar10_free(&test);
    return rc;
}
