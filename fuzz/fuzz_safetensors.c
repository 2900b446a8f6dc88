/* libFuzzer target: the safetensors reader (golden files and checkpoints).
 * st_parse on arbitrary bytes; on success every tensor is read back through
 * the typed readers (which copy numel * dtype bytes out of the file, so an
 * offset the parser let through wrongly shows as an ASan report), and the
 * checkpoint's own checks (format, data hash, position) run as in
 * checkpoint_load. A refused file must carry a one-line message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    unsigned char *bytes = malloc(size ? size : 1);
    if (!bytes) return 0;
    memcpy(bytes, data, size);
    st_file f;
    tlb_error err = {{0}};
    if (st_parse(&f, bytes, size, "fuzz.safetensors", &err) != 0) { /* takes ownership either way */
        if (err.msg[0] == '\0' || strchr(err.msg, '\n')) abort();
        return 0;
    }
    for (int i = 0; i < f.count; i++) {
        const st_tensor *t = &f.tensors[i];
        if (st_find(&f, t->name) != t) abort();
        size_t bytes_needed = t->numel * st_dtype_size(t->dtype);
        void *out = malloc(bytes_needed ? bytes_needed : 1);
        if (!out) continue;
        int rc = 0;
        if (t->dtype == ST_F32) rc = st_read_f32(&f, t->name, out, t->numel, &err);
        else if (t->dtype == ST_I32) rc = st_read_i32(&f, t->name, out, t->numel, &err);
        else memcpy(out, t->data, bytes_needed);
        if (rc != 0) abort(); /* dtype and count match, so reading cannot fail */
        if (t->dtype == ST_I32 && t->numel == 1) {
            int v;
            if (st_read_int(&f, t->name, &v, &err) != 0) abort();
        }
        free(out);
    }
    /* Wrong-type and wrong-count reads are refused with a message. */
    if (f.count > 0) {
        float one;
        const st_tensor *t = &f.tensors[0];
        if (t->dtype != ST_F32 || t->numel != 1) {
            if (st_read_f32(&f, t->name, &one, 1, &err) == 0) abort();
        }
    }
    /* checkpoint_load's checks before it touches a model. */
    (void)st_meta(&f, "format");
    (void)st_meta(&f, "config_hash");
    (void)st_meta(&f, "data_xxh3");
    const st_tensor *p = st_find(&f, "train.position");
    if (p && p->dtype == ST_I64 && p->numel == 3) {
        int64_t v[3];
        memcpy(v, p->data, sizeof v);
    }
    st_close(&f);
    return 0;
}
