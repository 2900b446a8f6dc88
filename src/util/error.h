/* One error record carried up to the one place that prints it (STYLE.md):
 * every failing function fills it with file/line/key or tensor context. */
#ifndef TLB_ERROR_H
#define TLB_ERROR_H

#include <stdarg.h>

typedef struct {
    char msg[1024];
    char key[64]; /* the config key at fault ("" if none), so callers need not parse msg */
} tlb_error;

/* Formats into err (if non-NULL), clears key, and returns -1, so callers
 * can write `return tlb_fail(err, "...", ...);`. */
int tlb_fail(tlb_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The same, for a problem with config key `key`: msg "key: problem", and
 * key recorded (cut to fit). */
int tlb_fail_key(tlb_error *err, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Prefixes an existing message with more context ("while loading X: ..."); keeps key. */
int tlb_fail_prefix(tlb_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
