/* One error record carried up to the one place that prints it (STYLE.md):
 * every failing function fills it with file/line/key or tensor context. */
#ifndef TLB_ERROR_H
#define TLB_ERROR_H

#include <stdarg.h>

typedef struct {
    char msg[1024];
} tlb_error;

/* Formats into err (if non-NULL) and returns -1, so callers can write
 * `return tlb_fail(err, "...", ...);`. */
int tlb_fail(tlb_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message with more context ("while loading X: ..."). */
int tlb_fail_prefix(tlb_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
