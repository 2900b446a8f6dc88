/* File helpers written once: folders with their parents, durable renames
 * (fsync of the file, then of its folder), and atomic replacement of a file
 * through PATH.tmp.PID, so a crash leaves either the old file or the new. */
#ifndef TLB_FS_H
#define TLB_FS_H

#include <stddef.h>
#include <stdio.h>

#include "util/error.h"

/* The longest path these helpers accept (the rest refuse it, with a message). */
#define FS_PATH_MAX 4096

/* PATH and its parents (0755), then checks it is writable: "PATH: cannot
 * create folder: REASON" / "PATH: folder is not writable". */
int fs_mkdir_p(const char *path, tlb_error *err);

/* DIR/NAME into buf, or -1 with "DIR/NAME: path longer than N bytes" when it
 * does not fit (never a silently truncated path). */
int fs_join(char *buf, size_t n, const char *dir, const char *name, tlb_error *err);

/* fsync of a folder (its entries: a rename is durable only then); of the
 * folder holding `path`. Return 0 or -1 (errno). */
int fs_fsync_dir(const char *dir);
int fs_fsync_parent(const char *path);

/* Called between the synced temporary file and the rename (a test hook:
 * checkpoint.c kills the process there to show the old file survives). */
typedef void (*fs_before_rename_fn)(void *ctx, const char *tmp_path);

typedef struct {
    char path[FS_PATH_MAX], tmp[FS_PATH_MAX];
    int fd;
    FILE *fp; /* fs_atomic_stream's stdio view of fd, or NULL */
} fs_atomic;

/* Creates PATH.tmp.PID for writing; errors name it. */
int fs_atomic_open(fs_atomic *a, const char *path, tlb_error *err);
/* All n bytes (retrying short writes and EINTR); 0 or -1 with errno set. */
int fs_write_all(int fd, const void *data, size_t n);
/* A FILE* over the temporary file (for stdio encoders such as libpng). */
FILE *fs_atomic_stream(fs_atomic *a);
/* Flushes and fsyncs the temporary file, calls before_rename (if any),
 * renames it over PATH and fsyncs the folder. On failure the temporary is
 * removed: "PATH: write failed: REASON". */
int fs_atomic_commit(fs_atomic *a, fs_before_rename_fn before_rename, void *ctx, tlb_error *err);
/* Closes and removes the temporary file (after a failed write). */
void fs_atomic_abort(fs_atomic *a);

/* The whole of data into PATH, atomically (open, write, commit). */
int fs_write_file_atomic(const char *path, const void *data, size_t n, tlb_error *err);

#endif
