/* safetensors files: the golden vectors' format and our checkpoint format.
 * Layout: u64 little-endian header length n, n bytes of JSON (name ->
 * {dtype, shape, data_offsets}, plus "__metadata__" string map), then the
 * data section. The reader validates every offset, shape and dtype against
 * the file before handing out pointers. */
#ifndef TLB_SAFETENSORS_H
#define TLB_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"
#include "util/fs.h"

typedef enum { ST_F32, ST_I32, ST_U8, ST_I64 } st_dtype;

#define ST_MAX_DIMS 8

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    const void *data; /* into the file's data section; aligned copies are the caller's job */
} st_tensor;

typedef struct {
    char *path;
    unsigned char *bytes; /* the whole file */
    size_t size;
    size_t data_start;    /* 8 + header length */
    st_tensor *tensors;
    int count;
    char **meta_keys, **meta_values;
    int meta_count;
} st_file;

int st_open(st_file *f, const char *path, tlb_error *err);
/* Parses from memory (takes ownership of `bytes`, which must come from malloc). */
int st_parse(st_file *f, unsigned char *bytes, size_t size, const char *name, tlb_error *err);
void st_close(st_file *f);

const st_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key);
/* Reads a tensor that must exist with this dtype and element count into out
 * (handles unaligned data); the error names the file and the tensor. */
int st_read_f32(const st_file *f, const char *name, float *out, size_t numel, tlb_error *err);
int st_read_i32(const st_file *f, const char *name, int32_t *out, size_t numel, tlb_error *err);
/* A scalar I32 tensor (shape [] or [1]). */
int st_read_int(const st_file *f, const char *name, int *out, tlb_error *err);

/* Writer: collects tensors (pointers must stay valid until save) and
 * metadata, then writes atomically: temporary file, fsync, rename. */
typedef struct {
    struct st_wentry {
        char *name;
        st_dtype dtype;
        int ndim;
        int64_t shape[ST_MAX_DIMS];
        const void *data;
        size_t bytes;
    } *entries;
    int count, capacity;
    char **meta_keys, **meta_values;
    int meta_count;
} st_writer;

void st_writer_init(st_writer *w);
void st_writer_free(st_writer *w);
int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data);
int st_writer_meta(st_writer *w, const char *key, const char *value);
/* Metadata may reference the data section's hash: the writer adds
 * "data_xxh3" = XXH3-64 (16 hex digits) of the data section. The file is
 * replaced atomically (util/fs.h); before_rename (may be NULL) runs between
 * the synced temporary file and the rename. */
int st_writer_save(const st_writer *w, const char *path, fs_before_rename_fn before_rename, void *ctx,
                   tlb_error *err);

size_t st_dtype_size(st_dtype t);
const char *st_dtype_name(st_dtype t);

#endif
