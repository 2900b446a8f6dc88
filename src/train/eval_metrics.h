/* What an evaluation measures: mean loss, top-1 and top-5 accuracy and the
 * confusion matrix (true class x predicted class), accumulated over
 * batches of logits. */
#ifndef TLB_EVAL_METRICS_H
#define TLB_EVAL_METRICS_H

#include "util/error.h"

typedef struct {
    int num_classes;
    long count;
    double loss_sum;
    long top1, top5;
    long *confusion; /* [V, V], row = true class, column = the prediction (top-1) */
} eval_metrics;

int eval_metrics_init(eval_metrics *e, int num_classes, tlb_error *err);
void eval_metrics_free(eval_metrics *e);

/* Adds n samples: logits [n, V], labels [n], per-sample losses [n] (NULL: no loss). */
void eval_metrics_add(eval_metrics *e, const float *logits, const int *labels, const float *losses, int n);

/* The rank of class `label` in x[n]: how many classes come before it,
 * largest first, ties in index order (so rank 0 is the first argmax, as the
 * trainer's accuracy counts it). label is among the top k iff rank < k. */
int class_rank(const float *x, int n, int label);
/* Index of the first largest value. */
int class_argmax(const float *x, int n);
/* probs[n] = softmax(logits[n]), in double. */
void class_softmax(double *probs, const float *logits, int n);

double eval_loss(const eval_metrics *e);
double eval_accuracy(const eval_metrics *e);
double eval_top5_accuracy(const eval_metrics *e);
/* Recall of class k: correct / images of that class (NaN when there are none). */
double eval_class_accuracy(const eval_metrics *e, int k);
long eval_class_count(const eval_metrics *e, int k);

#endif
