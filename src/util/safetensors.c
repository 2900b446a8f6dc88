#include "util/safetensors.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "util/fs.h"

static const char *const dtype_names[] = {"F32", "I32", "U8", "I64"};
static const size_t dtype_sizes[] = {4, 4, 1, 8};

size_t st_dtype_size(st_dtype t) { return dtype_sizes[t]; }
const char *st_dtype_name(st_dtype t) { return dtype_names[t]; }

/* The header is capped so a corrupted length cannot make us allocate wildly. */
#define ST_MAX_HEADER (64u << 20)

int st_open(st_file *f, const char *path, tlb_error *err)
{
    memset(f, 0, sizeof *f);
    FILE *fp = fopen(path, "rb");
    if (!fp) return tlb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(fp);
        return tlb_fail(err, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *bytes = malloc(size ? size : 1);
    if (!bytes) {
        fclose(fp);
        return tlb_fail(err, "%s: out of memory reading %zu bytes", path, size);
    }
    size_t got = fread(bytes, 1, size, fp);
    fclose(fp);
    if (got != size) {
        free(bytes);
        return tlb_fail(err, "%s: short read (%zu of %zu bytes)", path, got, size);
    }
    return st_parse(f, bytes, size, path, err);
}

static int parse_dtype(const char *s, st_dtype *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, dtype_names[i]) == 0) {
            *out = (st_dtype)i;
            return 0;
        }
    return -1;
}

static int parse_entry(st_file *f, const cJSON *item, st_tensor *t, size_t data_len, tlb_error *err)
{
    const char *path = f->path, *name = item->string;
    if (!cJSON_IsObject(item)) return tlb_fail(err, "%s: tensor '%s': entry is not an object", path, name);
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(item, "dtype");
    const cJSON *shape = cJSON_GetObjectItemCaseSensitive(item, "shape");
    const cJSON *offs = cJSON_GetObjectItemCaseSensitive(item, "data_offsets");
    if (!cJSON_IsString(dt) || parse_dtype(dt->valuestring, &t->dtype) != 0)
        return tlb_fail(err, "%s: tensor '%s': missing or unsupported dtype (F32, I32, U8, I64)", path, name);
    if (!cJSON_IsArray(shape) || cJSON_GetArraySize(shape) > ST_MAX_DIMS)
        return tlb_fail(err, "%s: tensor '%s': shape must be an array of at most %d sizes", path, name, ST_MAX_DIMS);
    t->ndim = cJSON_GetArraySize(shape);
    t->numel = 1;
    for (int i = 0; i < t->ndim; i++) {
        const cJSON *d = cJSON_GetArrayItem(shape, i);
        if (!cJSON_IsNumber(d) || d->valuedouble < 0 || d->valuedouble > 1e12 ||
            d->valuedouble != (double)(int64_t)d->valuedouble)
            return tlb_fail(err, "%s: tensor '%s': shape[%d] is not a non-negative integer", path, name, i);
        t->shape[i] = (int64_t)d->valuedouble;
        if (t->shape[i] && t->numel > SIZE_MAX / 16 / (size_t)t->shape[i])
            return tlb_fail(err, "%s: tensor '%s': shape too large", path, name);
        t->numel *= (size_t)t->shape[i];
    }
    if (!cJSON_IsArray(offs) || cJSON_GetArraySize(offs) != 2)
        return tlb_fail(err, "%s: tensor '%s': data_offsets must be [begin, end]", path, name);
    double b = cJSON_GetArrayItem(offs, 0)->valuedouble, e = cJSON_GetArrayItem(offs, 1)->valuedouble;
    if (!cJSON_IsNumber(cJSON_GetArrayItem(offs, 0)) || !cJSON_IsNumber(cJSON_GetArrayItem(offs, 1)) ||
        b < 0 || e < b || e > (double)data_len || b != (double)(size_t)b || e != (double)(size_t)e)
        return tlb_fail(err, "%s: tensor '%s': data_offsets [%.0f, %.0f] outside the %zu-byte data section",
                        path, name, b, e, data_len);
    size_t begin = (size_t)b, end = (size_t)e;
    if (end - begin != t->numel * dtype_sizes[t->dtype])
        return tlb_fail(err, "%s: tensor '%s': %zu bytes of data for %zu %s elements", path, name,
                        end - begin, t->numel, dtype_names[t->dtype]);
    t->data = f->bytes + f->data_start + begin;
    t->name = strdup(name);
    return t->name ? 0 : tlb_fail(err, "%s: out of memory", path);
}

static int parse_meta(st_file *f, const cJSON *meta, tlb_error *err)
{
    /* JSON allows a repeated key; a second map would overflow the first's arrays. */
    if (f->meta_keys) return tlb_fail(err, "%s: __metadata__ appears twice", f->path);
    if (!cJSON_IsObject(meta)) return tlb_fail(err, "%s: __metadata__ is not an object", f->path);
    int n = cJSON_GetArraySize(meta);
    f->meta_keys = calloc((size_t)n + 1, sizeof *f->meta_keys);
    f->meta_values = calloc((size_t)n + 1, sizeof *f->meta_values);
    if (!f->meta_keys || !f->meta_values) return tlb_fail(err, "%s: out of memory", f->path);
    const cJSON *it;
    cJSON_ArrayForEach(it, meta)
    {
        if (!cJSON_IsString(it))
            return tlb_fail(err, "%s: __metadata__ value '%s' is not a string", f->path, it->string);
        f->meta_keys[f->meta_count] = strdup(it->string);
        f->meta_values[f->meta_count] = strdup(it->valuestring);
        f->meta_count++;
    }
    return 0;
}

int st_parse(st_file *f, unsigned char *bytes, size_t size, const char *name, tlb_error *err)
{
    memset(f, 0, sizeof *f);
    f->bytes = bytes;
    f->size = size;
    f->path = strdup(name);
    if (size < 8) {
        st_close(f);
        return tlb_fail(err, "%s: %zu bytes is too short for a safetensors file", name, size);
    }
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | bytes[i];
    if (n > ST_MAX_HEADER || n > size - 8) {
        st_close(f);
        return tlb_fail(err, "%s: header length %llu exceeds the file (%zu bytes)", name,
                        (unsigned long long)n, size);
    }
    f->data_start = 8 + (size_t)n;
    cJSON *root = cJSON_ParseWithLength((const char *)bytes + 8, (size_t)n);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        st_close(f);
        return tlb_fail(err, "%s: header is not a JSON object", name);
    }
    int n_items = cJSON_GetArraySize(root);
    f->tensors = calloc((size_t)n_items + 1, sizeof *f->tensors);
    int rc = f->tensors ? 0 : tlb_fail(err, "%s: out of memory", name);
    const cJSON *it;
    cJSON_ArrayForEach(it, root)
    {
        if (rc != 0) break;
        if (strcmp(it->string, "__metadata__") == 0) rc = parse_meta(f, it, err);
        else if (st_find(f, it->string)) rc = tlb_fail(err, "%s: tensor '%s' appears twice", name, it->string);
        else if ((rc = parse_entry(f, it, &f->tensors[f->count], size - f->data_start, err)) == 0) f->count++;
    }
    cJSON_Delete(root);
    if (rc != 0) st_close(f);
    return rc;
}

void st_close(st_file *f)
{
    for (int i = 0; i < f->count; i++) free(f->tensors[i].name);
    for (int i = 0; i < f->meta_count; i++) {
        free(f->meta_keys[i]);
        free(f->meta_values[i]);
    }
    free(f->tensors);
    free(f->meta_keys);
    free(f->meta_values);
    free(f->bytes);
    free(f->path);
    memset(f, 0, sizeof *f);
}

const st_tensor *st_find(const st_file *f, const char *name)
{
    for (int i = 0; i < f->count; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key)
{
    for (int i = 0; i < f->meta_count; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

static int read_typed(const st_file *f, const char *name, st_dtype dtype, void *out, size_t numel,
                      tlb_error *err)
{
    const st_tensor *t = st_find(f, name);
    if (!t) return tlb_fail(err, "%s: tensor '%s' is missing", f->path, name);
    if (t->dtype != dtype)
        return tlb_fail(err, "%s: tensor '%s' is %s, expected %s", f->path, name, dtype_names[t->dtype],
                        dtype_names[dtype]);
    if (t->numel != numel)
        return tlb_fail(err, "%s: tensor '%s' has %zu elements, expected %zu", f->path, name, t->numel, numel);
    memcpy(out, t->data, numel * dtype_sizes[dtype]); /* data may be unaligned */
    return 0;
}

int st_read_f32(const st_file *f, const char *name, float *out, size_t numel, tlb_error *err)
{
    return read_typed(f, name, ST_F32, out, numel, err);
}

int st_read_i32(const st_file *f, const char *name, int32_t *out, size_t numel, tlb_error *err)
{
    return read_typed(f, name, ST_I32, out, numel, err);
}

int st_read_int(const st_file *f, const char *name, int *out, tlb_error *err)
{
    int32_t v = 0; /* read_typed fills it; -fPIC builds warn otherwise */
    if (read_typed(f, name, ST_I32, &v, 1, err) != 0) return -1;
    *out = v;
    return 0;
}

void st_writer_init(st_writer *w) { memset(w, 0, sizeof *w); }

void st_writer_free(st_writer *w)
{
    for (int i = 0; i < w->count; i++) free(w->entries[i].name);
    for (int i = 0; i < w->meta_count; i++) {
        free(w->meta_keys[i]);
        free(w->meta_values[i]);
    }
    free(w->entries);
    free(w->meta_keys);
    free(w->meta_values);
    memset(w, 0, sizeof *w);
}

int st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                  const void *data)
{
    if (ndim < 0 || ndim > ST_MAX_DIMS) return -1;
    if (w->count == w->capacity) {
        int cap = w->capacity ? 2 * w->capacity : 64;
        void *p = realloc(w->entries, (size_t)cap * sizeof *w->entries);
        if (!p) return -1;
        w->entries = p;
        w->capacity = cap;
    }
    struct st_wentry *e = &w->entries[w->count];
    memset(e, 0, sizeof *e);
    e->name = strdup(name);
    if (!e->name) return -1;
    e->dtype = dtype;
    e->ndim = ndim;
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        numel *= (size_t)shape[i];
    }
    e->data = data;
    e->bytes = numel * dtype_sizes[dtype];
    w->count++;
    return 0;
}

int st_writer_meta(st_writer *w, const char *key, const char *value)
{
    char **k = realloc(w->meta_keys, (size_t)(w->meta_count + 1) * sizeof *k);
    if (!k) return -1;
    w->meta_keys = k;
    char **v = realloc(w->meta_values, (size_t)(w->meta_count + 1) * sizeof *v);
    if (!v) return -1;
    w->meta_values = v;
    w->meta_keys[w->meta_count] = strdup(key);
    w->meta_values[w->meta_count] = strdup(value);
    w->meta_count++;
    return 0;
}

static uint64_t data_hash(const st_writer *w)
{
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    for (int i = 0; i < w->count; i++) XXH3_64bits_update(st, w->entries[i].data, w->entries[i].bytes);
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

int st_writer_save(const st_writer *w, const char *path, fs_before_rename_fn before_rename, void *ctx,
                   tlb_error *err)
{
    cJSON *root = cJSON_CreateObject(), *meta = cJSON_CreateObject();
    char hash[32];
    snprintf(hash, sizeof hash, "%016llx", (unsigned long long)data_hash(w));
    for (int i = 0; i < w->meta_count; i++) cJSON_AddStringToObject(meta, w->meta_keys[i], w->meta_values[i]);
    cJSON_AddStringToObject(meta, "data_xxh3", hash);
    cJSON_AddItemToObject(root, "__metadata__", meta);
    size_t offset = 0;
    for (int i = 0; i < w->count; i++) {
        const struct st_wentry *e = &w->entries[i];
        cJSON *t = cJSON_CreateObject(), *shape = cJSON_CreateArray(), *offs = cJSON_CreateArray();
        cJSON_AddStringToObject(t, "dtype", dtype_names[e->dtype]);
        for (int d = 0; d < e->ndim; d++) cJSON_AddItemToArray(shape, cJSON_CreateNumber((double)e->shape[d]));
        cJSON_AddItemToObject(t, "shape", shape);
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)offset));
        cJSON_AddItemToArray(offs, cJSON_CreateNumber((double)(offset + e->bytes)));
        cJSON_AddItemToObject(t, "data_offsets", offs);
        cJSON_AddItemToObject(root, e->name, t);
        offset += e->bytes;
    }
    char *json = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!json) return tlb_fail(err, "%s: out of memory building the header", path);
    size_t n = strlen(json), padded = (n + 7) & ~(size_t)7;

    fs_atomic f;
    if (fs_atomic_open(&f, path, err) != 0) {
        free(json);
        return -1;
    }
    unsigned char len[8];
    for (int i = 0; i < 8; i++) len[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    int rc = fs_write_all(f.fd, len, 8);
    if (rc == 0) rc = fs_write_all(f.fd, json, n);
    for (size_t i = n; i < padded && rc == 0; i++) rc = fs_write_all(f.fd, " ", 1);
    for (int i = 0; i < w->count && rc == 0; i++) rc = fs_write_all(f.fd, w->entries[i].data, w->entries[i].bytes);
    free(json);
    if (rc != 0) {
        const int e = errno;
        fs_atomic_abort(&f);
        return tlb_fail(err, "%s: write failed: %s", path, strerror(e));
    }
    return fs_atomic_commit(&f, before_rename, ctx, err);
}
