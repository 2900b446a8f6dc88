/* A run folder belongs to one process: an advisory lock (flock) on
 * DIR/.lock, holding the owner's PID. The kernel drops it when the process
 * ends, however it ends, so a killed run never leaves its folder locked. */
#ifndef TLB_RUN_LOCK_H
#define TLB_RUN_LOCK_H

#include "util/error.h"

typedef struct {
    int fd; /* -1: not held */
} run_lock;

/* 0 when held (or already held by l); 1 when another process holds it:
 * "DIR is in use by process PID"; -1 when the lock file cannot be opened. */
int run_lock_acquire(run_lock *l, const char *dir, tlb_error *err);
void run_lock_release(run_lock *l);

#endif
