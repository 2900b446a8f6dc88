#include "util/error.h"

#include <stdio.h>
#include <string.h>

/* Messages quote file contents (tensor names, config keys, values): control
 * characters there would break the one-line form, so they print as '?'. */
static void one_line(char *s)
{
    for (unsigned char *p = (unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == 0x7f) *p = '?';
}

int tlb_fail(tlb_error *err, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        one_line(err->msg);
        err->key[0] = '\0';
    }
    return -1;
}

int tlb_fail_key(tlb_error *err, const char *key, const char *fmt, ...)
{
    if (err) {
        char problem[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(problem, sizeof problem, fmt, ap);
        va_end(ap);
        tlb_fail(err, "%s: %s", key, problem);
        snprintf(err->key, sizeof err->key, "%s", key);
        one_line(err->key);
    }
    return -1;
}

int tlb_fail_prefix(tlb_error *err, const char *fmt, ...)
{
    if (err) {
        char prefix[512], old[sizeof err->msg];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(prefix, sizeof prefix, fmt, ap);
        va_end(ap);
        memcpy(old, err->msg, sizeof old);
        /* Truncation is acceptable here: the message is for a human. */
        size_t n = strlen(prefix);
        if (n > sizeof err->msg - 3) n = sizeof err->msg - 3;
        memcpy(err->msg, prefix, n);
        memcpy(err->msg + n, ": ", 2);
        size_t room = sizeof err->msg - n - 3;
        size_t m = strnlen(old, room);
        memcpy(err->msg + n + 2, old, m);
        err->msg[n + 2 + m] = '\0';
        one_line(err->msg);
    }
    return -1;
}
