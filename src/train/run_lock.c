#include "train/run_lock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "util/fs.h"

int run_lock_acquire(run_lock *l, const char *dir, tlb_error *err)
{
    if (l->fd >= 0) return 0;
    char path[FS_PATH_MAX];
    if (fs_join(path, sizeof path, dir, ".lock", err) != 0) return -1;
    const int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) return tlb_fail(err, "%s: cannot open: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        const int e = errno;
        char pid[32] = "";
        const ssize_t k = pread(fd, pid, sizeof pid - 1, 0);
        close(fd);
        if (e != EWOULDBLOCK) return tlb_fail(err, "%s: cannot lock: %s", path, strerror(e));
        pid[k > 0 ? k : 0] = '\0';
        pid[strcspn(pid, "\n")] = '\0';
        tlb_fail(err, "%s is in use by process %s", dir, pid[0] ? pid : "(starting)");
        return 1;
    }
    char pid[32];
    const int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        const int e = errno;
        close(fd);
        return tlb_fail(err, "%s: cannot write: %s", path, strerror(e));
    }
    l->fd = fd;
    return 0;
}

void run_lock_release(run_lock *l)
{
    if (l->fd >= 0) close(l->fd);
    l->fd = -1;
}
