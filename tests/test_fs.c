/* util/fs.c: folders with parents, atomic replacement (no temporary left,
 * the hook runs while the old file is still in place), long paths refused. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/fs.h"
#include "test_helpers.h"

static void slurp_text(const char *path, char *buf, size_t n)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    const size_t k = fread(buf, 1, n - 1, f);
    buf[k] = '\0';
    fclose(f);
}

typedef struct {
    const char *path;
    int calls;
    char seen_old[32];
    int tmp_exists;
} hook_seen;

static void before_rename(void *ctx, const char *tmp)
{
    hook_seen *h = ctx;
    h->calls++;
    h->tmp_exists = access(tmp, F_OK) == 0;
    slurp_text(h->path, h->seen_old, sizeof h->seen_old);
}

Test(fs, mkdir_p_and_atomic_write)
{
    char dir[] = "/tmp/tlb_fs_XXXXXX", sub[200], path[300], buf[64];
    cr_assert_not_null(test_mkdtemp(dir));
    snprintf(sub, sizeof sub, "%s/a/b/c", dir);
    tlb_error err;
    cr_assert_eq(fs_mkdir_p(sub, &err), 0, "%s", err.msg);
    cr_assert_eq(fs_mkdir_p(sub, &err), 0, "an existing folder is fine: %s", err.msg);
    snprintf(path, sizeof path, "%s/f.txt", sub);
    cr_assert_eq(fs_write_file_atomic(path, "old", 3, &err), 0, "%s", err.msg);

    fs_atomic a;
    cr_assert_eq(fs_atomic_open(&a, path, &err), 0, "%s", err.msg);
    cr_assert_eq(fs_write_all(a.fd, "new", 3), 0);
    hook_seen h = {.path = path};
    cr_assert_eq(fs_atomic_commit(&a, before_rename, &h, &err), 0, "%s", err.msg);
    cr_expect_eq(h.calls, 1);
    cr_expect(h.tmp_exists, "the hook runs with the synced temporary file in place");
    cr_expect_str_eq(h.seen_old, "old", "the hook runs before the rename");
    slurp_text(path, buf, sizeof buf);
    cr_expect_str_eq(buf, "new");
    char tmp[400];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    cr_expect_neq(access(tmp, F_OK), 0, "temporary file left behind");

    /* A file where a folder should be. */
    snprintf(sub, sizeof sub, "%s/f.txt/x", dir);
    snprintf(path, sizeof path, "%s/a/b/c/f.txt/x", dir);
    cr_expect_eq(fs_mkdir_p(path, &err), -1);
    cr_expect(strstr(err.msg, "cannot create folder"), "%s", err.msg);
}

Test(fs, paths_that_do_not_fit_are_refused)
{
    char *longp = malloc(FS_PATH_MAX + 10);
    memset(longp, 'a', FS_PATH_MAX + 9);
    longp[0] = '/', longp[FS_PATH_MAX + 9] = '\0';
    tlb_error err;
    cr_expect_eq(fs_mkdir_p(longp, &err), -1);
    cr_expect(strstr(err.msg, "path longer than"), "%s", err.msg);
    longp[FS_PATH_MAX - 4] = '\0'; /* fits, but its .tmp.PID (5 + at least 1 bytes) does not */
    cr_expect_eq(fs_write_file_atomic(longp, "x", 1, &err), -1);
    cr_expect(strstr(err.msg, "path longer than"), "%s", err.msg);
    free(longp);
}
