/* The ListOps evaluator: an explicit-stack parser of a token sequence,
 * written apart from the generator (listops.c) so that a label is checked
 * by a second derivation, not by the code that made it. MED counts digits
 * in a histogram here, where the generator sorts. */
#ifndef TLB_DATA_LISTOPS_EVAL_H
#define TLB_DATA_LISTOPS_EVAL_H

#include <stdint.h>

typedef struct {
    int value;     /* 0..9, or -1 when the sequence is malformed */
    int depth;     /* tree levels (a digit inside k brackets is level k + 1) */
    int max_args;  /* most arguments of one operator */
    int min_args;  /* fewest arguments of one operator */
    int at;        /* malformed: index of the offending token (len: it ended early) */
} listops_eval;

/* Evaluates tokens[0 .. len). Malformed: an id out of range or padding,
 * a digit or bracket outside any operator (other than a lone digit), an
 * operator closed with no argument, more than LISTOPS_MAX_DEPTH levels,
 * or unclosed operators. Returns value (or -1). */
int listops_evaluate(const uint8_t *tokens, int len, listops_eval *out);

#endif
