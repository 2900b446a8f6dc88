#include "data/listops_eval.h"

#include <string.h>

#include "data/listops.h"

#define EVAL_STACK 64 /* open operators the parser tracks; deeper is malformed */

typedef struct {
    int op;        /* LISTOPS_OP_* */
    int count;     /* arguments so far */
    int hist[10];  /* how often each digit value occurred */
} frame;

/* The value at 0-based rank r of the frame's sorted arguments. */
static int rank_value(const frame *f, int r)
{
    for (int v = 0; v < 10; v++) {
        if (r < f->hist[v]) return v;
        r -= f->hist[v];
    }
    return -1; /* unreachable: r < count */
}

static int reduce(const frame *f)
{
    switch (f->op) {
    case LISTOPS_OP_MAX: return rank_value(f, f->count - 1);
    case LISTOPS_OP_MIN: return rank_value(f, 0);
    case LISTOPS_OP_MED: /* floor of the mean of the two middle ranks (equal when count is odd) */
        return (rank_value(f, (f->count - 1) / 2) + rank_value(f, f->count / 2)) / 2;
    default: {          /* LISTOPS_OP_SM */
        int s = 0;
        for (int v = 0; v < 10; v++) s += v * f->hist[v];
        return s % 10;
    }
    }
}

static int malformed(listops_eval *o, int at)
{
    o->value = -1;
    o->at = at;
    return -1;
}

int listops_evaluate(const uint8_t *tokens, int len, listops_eval *out)
{
    listops_eval scratch, *o = out ? out : &scratch;
    memset(o, 0, sizeof *o);
    o->min_args = 1 << 30; /* 0 again below when no operator closes */
    frame stack[EVAL_STACK];
    int top = 0;      /* open operators */
    int result = -1;  /* the value of the finished top-level expression */
    for (int i = 0; i < len; i++) {
        const int t = tokens[i];
        if (result >= 0) return malformed(o, i); /* tokens after the expression */
        if (t >= LISTOPS_OP_MAX && t <= LISTOPS_OP_SM) {
            if (top == EVAL_STACK) return malformed(o, i);
            stack[top] = (frame){.op = t};
            top++;
            if (top + 1 > o->depth) o->depth = top + 1; /* its arguments sit one level lower */
            continue;
        }
        int v;
        if (t >= LISTOPS_DIGIT0 && t < LISTOPS_DIGIT0 + 10) {
            v = t - LISTOPS_DIGIT0;
        } else if (t == LISTOPS_CLOSE) {
            if (top == 0 || stack[top - 1].count == 0) return malformed(o, i);
            const frame *f = &stack[top - 1];
            if (f->count > o->max_args) o->max_args = f->count;
            if (f->count < o->min_args) o->min_args = f->count;
            v = reduce(f);
            top--;
        } else {
            return malformed(o, i); /* padding or an unknown id inside a sequence */
        }
        if (top == 0) {
            if (t != LISTOPS_CLOSE && len != 1) return malformed(o, i); /* a stray digit */
            result = v;
            if (o->depth == 0) o->depth = 1;
        } else {
            stack[top - 1].hist[v]++;
            stack[top - 1].count++;
        }
    }
    if (o->max_args == 0) o->min_args = 0;
    if (result < 0) return malformed(o, len);
    if (o->depth > LISTOPS_MAX_DEPTH) return malformed(o, len);
    o->value = result;
    return result;
}
