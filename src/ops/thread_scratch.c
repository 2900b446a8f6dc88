#include "ops/thread_scratch.h"

#include <threads.h>

/* One key for every thread: its value is the thread's list of buffers, and
 * its destructor, run as the thread exits, frees them. The key is the only
 * process-wide state here, created once and never changed. */
static tss_t owned_buffers;
static int key_made = thrd_error;
static once_flag key_once = ONCE_FLAG_INIT;

static void free_owned(void *head)
{
    for (thread_scratch *s = head, *next; s; s = next) {
        next = s->next;
        free(s->p);
        s->p = NULL, s->cap = 0, s->next = NULL;
    }
}

static void make_key(void) { key_made = tss_create(&owned_buffers, free_owned); }

int thread_scratch_free_at_exit(thread_scratch *s)
{
    call_once(&key_once, make_key);
    if (key_made != thrd_success) return -1;
    s->next = tss_get(owned_buffers);
    return tss_set(owned_buffers, s) == thrd_success ? 0 : -1;
}
