#include "train/progress.h"

#include <string.h>
#include <time.h>
#include <unistd.h>

#include "util/clock.h"

double progress_now(void) { return clock_now(); }

void progress_begin(progress *p, FILE *out, int total)
{
    p->out = out;
    p->total = total;
    p->start = progress_now();
    p->is_tty = isatty(fileno(out));
    p->last_draw = 0.0;
}

static void format_time(char *buf, size_t n, double s)
{
    if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

static void draw(progress *p, int step, long images, double loss, double acc, int final,
                 const char *extra)
{
    const double elapsed = progress_now() - p->start;
    char bar[31], t_el[16], t_eta[16];
    const int width = 30, filled = p->total ? step * width / p->total : width;
    for (int i = 0; i < width; i++) bar[i] = i < filled ? '=' : '.';
    if (filled > 0 && filled < width) bar[filled - 1] = '>';
    bar[width] = '\0';
    format_time(t_el, sizeof t_el, elapsed);
    format_time(t_eta, sizeof t_eta, step ? elapsed / step * (p->total - step) : 0.0);
    fprintf(p->out, "%s%d/%d [%s] - %s%s%s - %.0f img/s - loss: %.4f - acc: %.4f%s%s",
            p->is_tty ? "\r" : "", step, p->total, bar, t_el, final ? "" : " - ETA: ",
            final ? "" : t_eta, elapsed > 0 ? (double)images / elapsed : 0.0, loss, acc,
            extra ? " - " : "", extra ? extra : "");
    if (p->is_tty) fprintf(p->out, "\033[K"); /* clear what a longer line left */
    if (final || !p->is_tty) fputc('\n', p->out);
    fflush(p->out);
}

void progress_update(progress *p, int step, long images, double loss, double acc)
{
    const double t = progress_now();
    /* Off a terminal (logs), print a line only every 10% to keep logs short. */
    if (p->is_tty) {
        if (t - p->last_draw < 0.2 && step < p->total) return;
    } else if (step != 1 && step * 10 / p->total == (step - 1) * 10 / p->total) {
        return;
    }
    p->last_draw = t;
    draw(p, step, images, loss, acc, 0, NULL);
}

void progress_end(progress *p, long images, double loss, double acc, const char *extra)
{
    draw(p, p->total, images, loss, acc, 1, extra);
}
