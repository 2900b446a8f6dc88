/* The safetensors reader refuses malformed files with a message naming the
 * problem; the writer round-trips. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/safetensors.h"

static int parse_bytes(const char *bytes, size_t n, tlb_error *err)
{
    unsigned char *copy = malloc(n ? n : 1);
    memcpy(copy, bytes, n);
    st_file f;
    int rc = st_parse(&f, copy, n, "t.safetensors", err);
    if (rc == 0) st_close(&f);
    return rc;
}

static size_t build(char *buf, const char *json, size_t data_bytes)
{
    size_t n = strlen(json);
    for (int i = 0; i < 8; i++) buf[i] = (char)((n >> (8 * i)) & 0xff);
    memcpy(buf + 8, json, n);
    memset(buf + 8 + n, 0, data_bytes);
    return 8 + n + data_bytes;
}

Test(safetensors, rejects_bad_files)
{
    char buf[4096];
    tlb_error err;
    struct { const char *json; size_t data; const char *expect; } cases[] = {
        {"not json", 0, "not a JSON object"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}", 2, "unsupported dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, "outside the"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "8 bytes of data for 3"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "non-negative"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4, "data_offsets"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t n = build(buf, cases[i].json, cases[i].data);
        cr_expect_eq(parse_bytes(buf, n, &err), -1, "case %zu accepted", i);
        cr_expect(strstr(err.msg, cases[i].expect) != NULL, "case %zu: '%s' lacks '%s'", i, err.msg, cases[i].expect);
        cr_expect(strstr(err.msg, "t.safetensors") != NULL, "case %zu: no file name in '%s'", i, err.msg);
    }
    cr_expect_eq(parse_bytes("abc", 3, &err), -1);
    /* A header length beyond the file. */
    char big[16] = {(char)0xff, (char)0xff, 0, 0, 0, 0, 0, 0};
    cr_expect_eq(parse_bytes(big, 16, &err), -1);
    cr_expect(strstr(err.msg, "exceeds the file") != NULL, "%s", err.msg);
}

Test(safetensors, writer_round_trip)
{
    float a[6] = {1, 2, 3, 4, 5, 6};
    int32_t b[1] = {7};
    st_writer w;
    st_writer_init(&w);
    cr_assert_eq(st_writer_add(&w, "a", ST_F32, 2, (int64_t[]){2, 3}, a), 0);
    cr_assert_eq(st_writer_add(&w, "b", ST_I32, 0, NULL, b), 0);
    cr_assert_eq(st_writer_meta(&w, "k", "v"), 0);
    char path[] = "/tmp/tlb_st_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    tlb_error err;
    cr_assert_eq(st_writer_save(&w, path, NULL, NULL, &err), 0, "%s", err.msg);
    st_writer_free(&w);
    st_file f;
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    float a2[6];
    int v;
    cr_assert_eq(st_read_f32(&f, "a", a2, 6, &err), 0, "%s", err.msg);
    cr_expect_arr_eq(a, a2, sizeof a);
    cr_assert_eq(st_read_int(&f, "b", &v, &err), 0);
    cr_expect_eq(v, 7);
    cr_expect_str_eq(st_meta(&f, "k"), "v");
    cr_expect_not_null(st_meta(&f, "data_xxh3"));
    cr_expect_eq(st_read_f32(&f, "b", a2, 1, &err), -1);
    cr_expect(strstr(err.msg, "is I32, expected F32") != NULL, "%s", err.msg);
    st_close(&f);
    unlink(path);
}
