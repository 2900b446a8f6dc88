/* libFuzzer target: the CIFAR-10 readers that take a file. The first byte
 * picks the reader, the rest is written to a temporary file:
 *   0: cifar10_read_records (a file of whole records)
 *   1: cifar10_read_labels_json (the npm mirror's label array, 3 labels)
 *   2: cifar10_png_to_records (the npm mirror's 1024-wide RGB PNG, 2 rows)
 *   3: cifar10_read_checked with an expected size and hash
 * Every refusal must carry a one-line message. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/cifar10.h"
#include "data/fetch.h"

static char path[64];

static void check_message(int rc, const tlb_error *err)
{
    if (rc != 0 && (err->msg[0] == '\0' || strchr(err->msg, '\n'))) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_cifar10.%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size > 1 && fwrite(data + 1, 1, size - 1, f) != size - 1) abort();
    fclose(f);

    tlb_error err = {{0}};
    switch (data[0] % 4) {
    case 0: {
        cifar10_set s;
        int rc = cifar10_read_records(&s, path, &err);
        check_message(rc, &err);
        if (rc == 0) {
            for (int i = 0; i < s.count; i++)
                if (s.labels[i] >= CIFAR10_NUM_CLASSES) abort();
            cifar10_view v = cifar10_view_all(&s), tr, va;
            (void)v;
            check_message(cifar10_split(&tr, &va, &s, 1, &err), &err);
            check_message(cifar10_split(&tr, &va, &s, s.count + 1, &err), &err);
        }
        cifar10_free(&s);
        break;
    }
    case 1: {
        uint8_t labels[3];
        int rc = cifar10_read_labels_json(labels, 3, path, &err);
        check_message(rc, &err);
        if (rc == 0)
            for (int i = 0; i < 3; i++)
                if (labels[i] >= CIFAR10_NUM_CLASSES) abort();
        break;
    }
    case 2: {
        static uint8_t records[2 * CIFAR10_RECORD];
        const uint8_t labels[2] = {3, 7};
        check_message(cifar10_png_to_records(records, path, labels, 2, &err), &err);
        break;
    }
    default: {
        uint8_t *buf;
        size_t n;
        check_message(cifar10_read_checked(&buf, &n, path, 16, 0x1234, &err), &err);
        free(buf);
        break;
    }
    }
    return 0;
}
