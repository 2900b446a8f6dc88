#include "test_helpers.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/safetensors.h"

unsigned char *test_checkpoint_data(const char *run_dir, size_t *n)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
    st_file f;
    tlb_error err;
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    *n = f.size - f.data_start;
    unsigned char *b = malloc(*n ? *n : 1);
    cr_assert_not_null(b);
    memcpy(b, f.bytes + f.data_start, *n);
    st_close(&f);
    return b;
}
