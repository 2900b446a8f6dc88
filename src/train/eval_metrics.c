#include "train/eval_metrics.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int eval_metrics_init(eval_metrics *e, int num_classes, tlb_error *err)
{
    memset(e, 0, sizeof *e);
    e->num_classes = num_classes;
    e->confusion = calloc((size_t)num_classes * num_classes, sizeof *e->confusion);
    if (!e->confusion) return tlb_fail(err, "out of memory for a %dx%d confusion matrix", num_classes, num_classes);
    return 0;
}

void eval_metrics_free(eval_metrics *e)
{
    free(e->confusion);
    memset(e, 0, sizeof *e);
}

int class_rank(const float *x, int n, int label)
{
    int rank = 0;
    for (int i = 0; i < n; i++) rank += x[i] > x[label] || (x[i] == x[label] && i < label);
    return rank;
}

int class_argmax(const float *x, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

void class_softmax(double *probs, const float *logits, int n)
{
    const double mx = logits[class_argmax(logits, n)];
    double sum = 0.0;
    for (int i = 0; i < n; i++) sum += probs[i] = exp((double)logits[i] - mx);
    for (int i = 0; i < n; i++) probs[i] /= sum;
}

void eval_metrics_add(eval_metrics *e, const float *logits, const int *labels, const float *losses, int n)
{
    const int V = e->num_classes;
    for (int i = 0; i < n; i++) {
        const float *x = logits + (size_t)i * V;
        const int y = labels[i], rank = class_rank(x, V, y);
        e->top1 += rank < 1;
        e->top5 += rank < 5;
        e->confusion[(size_t)y * V + class_argmax(x, V)]++;
        if (losses) e->loss_sum += losses[i];
    }
    e->count += n;
}

double eval_loss(const eval_metrics *e) { return e->count ? e->loss_sum / e->count : NAN; }
double eval_accuracy(const eval_metrics *e) { return e->count ? (double)e->top1 / e->count : NAN; }
double eval_top5_accuracy(const eval_metrics *e) { return e->count ? (double)e->top5 / e->count : NAN; }

long eval_class_count(const eval_metrics *e, int k)
{
    long n = 0;
    for (int j = 0; j < e->num_classes; j++) n += e->confusion[(size_t)k * e->num_classes + j];
    return n;
}

double eval_class_accuracy(const eval_metrics *e, int k)
{
    const long n = eval_class_count(e, k);
    return n ? (double)e->confusion[(size_t)k * e->num_classes + k] / n : NAN;
}
