#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int fs_mkdir_p(const char *path, tlb_error *err)
{
    char buf[FS_PATH_MAX];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return tlb_fail(err, "%.200s...: path longer than %d bytes", path, FS_PATH_MAX - 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return tlb_fail(err, "%s: cannot create folder: %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return tlb_fail(err, "%s: cannot create folder: %s", buf, strerror(errno));
    if (access(buf, W_OK) != 0) return tlb_fail(err, "%s: folder is not writable", buf);
    return 0;
}

int fs_join(char *buf, size_t n, const char *dir, const char *name, tlb_error *err)
{
    if (snprintf(buf, n, "%s/%s", dir, name) < (int)n) return 0;
    return tlb_fail(err, "%.200s.../%s: path longer than %zu bytes", dir, name, n - 1);
}

int fs_fsync_dir(const char *dir)
{
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    const int rc = fsync(fd);
    close(fd);
    return rc;
}

int fs_fsync_parent(const char *path)
{
    char copy[FS_PATH_MAX];
    if (snprintf(copy, sizeof copy, "%s", path) >= (int)sizeof copy) return -1;
    return fs_fsync_dir(dirname(copy));
}

int fs_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        const ssize_t k = write(fd, p, n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) {
            errno = EIO;
            return -1;
        }
        p += k, n -= (size_t)k;
    }
    return 0;
}

int fs_atomic_open(fs_atomic *a, const char *path, tlb_error *err)
{
    a->fd = -1, a->fp = NULL;
    if (snprintf(a->path, sizeof a->path, "%s", path) >= (int)sizeof a->path ||
        snprintf(a->tmp, sizeof a->tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof a->tmp)
        return tlb_fail(err, "%.200s...: path longer than %d bytes", path, FS_PATH_MAX - 24);
    a->fd = open(a->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (a->fd < 0) return tlb_fail(err, "%s: cannot create: %s", a->tmp, strerror(errno));
    return 0;
}

FILE *fs_atomic_stream(fs_atomic *a)
{
    if (!a->fp) a->fp = fdopen(a->fd, "wb");
    return a->fp;
}

static int close_tmp(fs_atomic *a)
{
    int rc = 0;
    if (a->fp) rc = fclose(a->fp);
    else if (a->fd >= 0) rc = close(a->fd);
    a->fp = NULL, a->fd = -1;
    return rc;
}

void fs_atomic_abort(fs_atomic *a)
{
    const int e = errno;
    close_tmp(a);
    unlink(a->tmp);
    errno = e;
}

int fs_atomic_commit(fs_atomic *a, fs_before_rename_fn before_rename, void *ctx, tlb_error *err)
{
    if ((a->fp && fflush(a->fp) != 0) || fsync(a->fd) != 0) {
        const int e = errno;
        fs_atomic_abort(a);
        return tlb_fail(err, "%s: write failed: %s", a->path, strerror(e));
    }
    if (close_tmp(a) != 0) {
        const int e = errno;
        unlink(a->tmp);
        return tlb_fail(err, "%s: write failed: %s", a->path, strerror(e));
    }
    if (before_rename) before_rename(ctx, a->tmp);
    if (rename(a->tmp, a->path) != 0) {
        const int e = errno;
        unlink(a->tmp);
        return tlb_fail(err, "%s: cannot rename into place: %s", a->path, strerror(e));
    }
    fs_fsync_parent(a->path);
    return 0;
}

int fs_write_file_atomic(const char *path, const void *data, size_t n, tlb_error *err)
{
    fs_atomic a;
    if (fs_atomic_open(&a, path, err) != 0) return -1;
    if (fs_write_all(a.fd, data, n) != 0) {
        const int e = errno;
        fs_atomic_abort(&a);
        return tlb_fail(err, "%s: write failed: %s", path, strerror(e));
    }
    return fs_atomic_commit(&a, NULL, NULL, err);
}
