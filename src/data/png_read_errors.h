/* libpng reports a read error by calling the error callback, which must not
 * return: these longjmp back to the reader's setjmp with the message kept,
 * and drop warnings. A reader passes a png_read_errors (or a struct that
 * starts with one) as the error pointer (fetch.c, image_io.c). */
#ifndef TLB_DATA_PNG_READ_ERRORS_H
#define TLB_DATA_PNG_READ_ERRORS_H

#include <png.h>
#include <setjmp.h>
#include <stdio.h>

typedef struct {
    jmp_buf jmp;
    char msg[200];
} png_read_errors;

static inline void png_read_on_error(png_structp png, png_const_charp msg)
{
    png_read_errors *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    longjmp(e->jmp, 1);
}

static inline void png_read_on_warning(png_structp png, png_const_charp msg) { (void)png, (void)msg; }

#endif
