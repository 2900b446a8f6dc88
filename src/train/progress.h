/* A Keras-style progress line: "12/19 [=======>......] - 45s - ETA: 26s -
 * 550 img/s - loss: 2.1043 - acc: 0.2150", redrawn in place on a terminal
 * and kept as one line per epoch. */
#ifndef TLB_PROGRESS_H
#define TLB_PROGRESS_H

#include <stdio.h>

typedef struct {
    FILE *out;
    int total;          /* steps in the epoch */
    double start;       /* seconds, monotonic */
    int is_tty;         /* redraw in place only on a terminal */
    double last_draw;
} progress;

double progress_now(void);
void progress_begin(progress *p, FILE *out, int total);
/* step = steps done so far (1..total); images = images processed so far. */
void progress_update(progress *p, int step, long images, double loss, double acc);
/* Ends the line with the epoch's extra fields (e.g. validation metrics). */
void progress_end(progress *p, long images, double loss, double acc, const char *extra);

#endif
