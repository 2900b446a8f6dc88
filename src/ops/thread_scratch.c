#include "ops/thread_scratch.h"

#include <pthread.h>

/* One key for every thread: its value is the thread's list of buffers, and
 * its destructor, run as the thread exits, frees them. The key is the only
 * process-wide state here, created once and never changed. (pthreads, not
 * C11's call_once: ThreadSanitizer sees pthread_once's ordering, not glibc's
 * call_once.) */
static pthread_key_t owned_buffers;
static int key_error = 1;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;

static void free_owned(void *head)
{
    for (thread_scratch *s = head, *next; s; s = next) {
        next = s->next;
        free(s->p);
        s->p = NULL, s->cap = 0, s->next = NULL;
    }
}

static void make_key(void) { key_error = pthread_key_create(&owned_buffers, free_owned); }

int thread_scratch_free_at_exit(thread_scratch *s)
{
    if (pthread_once(&key_once, make_key) != 0 || key_error != 0) return -1;
    s->next = pthread_getspecific(owned_buffers);
    return pthread_setspecific(owned_buffers, s) == 0 ? 0 : -1;
}
