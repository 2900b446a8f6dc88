/* libFuzzer target: the picture reader of `tlb predict` (image_read: PNG
 * and JPEG by signature, libpng / libjpeg under our error handlers) and the
 * resampling to 32x32 of whatever it accepts. The input is written to a
 * temporary file. Every refusal must carry a one-line message and leave no
 * pixels behind; an accepted image must have a size within the limits. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/cifar10.h"
#include "data/image_io.h"

static char path[64];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!path[0]) snprintf(path, sizeof path, "/tmp/fuzz_image.%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) abort();
    if (size > 0 && fwrite(data, 1, size, f) != size) abort();
    fclose(f);
    tlb_error err = {{0}};
    image_rgb im;
    const int rc = image_read(&im, path, &err);
    if (rc != 0) {
        if (err.msg[0] == '\0' || strchr(err.msg, '\n') || im.rgb) abort();
        return 0;
    }
    if (im.w < 1 || im.h < 1 || im.w > IMAGE_MAX_SIDE || im.h > IMAGE_MAX_SIDE || !im.rgb) abort();
    /* Large accepted images are slow to resample under ASan: only small ones. */
    if ((long)im.w * im.h <= 1L << 20) {
        uint8_t planar[CIFAR10_PIXELS];
        image_to_cifar32(planar, &im);
    }
    image_free(&im);
    return 0;
}
