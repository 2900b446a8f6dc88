/* Test harness for the op registry: one "case" is one op implementation on one
 * shape, with its inputs, outputs and gradient buffers allocated and filled
 * from a seed, so two implementations built with the same seed see the same
 * numbers. The same case drives the finite-difference gradient checks, the
 * backend-against-ref comparisons and the accumulation tests. */
#ifndef TLB_TESTS_OP_TESTING_H
#define TLB_TESTS_OP_TESTING_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ops/ops.h"

#define OPT_MAX_TENSORS 8
#define OPT_MAX_OWNED 16

/* A differentiable input or parameter (x, g) or an output (x only). */
typedef struct {
    const char *name;
    float *x;
    float *g; /* gradient buffer the backward accumulates into; NULL for outputs */
    size_t n;
} opt_tensor;

typedef struct op_case op_case;
struct op_case {
    char label[192]; /* "attention[avx2] B=2 Tq=3 Tk=5 H=3 K=5 rate=0.3" */
    const char *op;
    const void *impl;                 /* the op's *_op struct for this backend */
    opt_tensor in[OPT_MAX_TENSORS];   /* inputs and parameters, in backward order */
    int n_in;
    opt_tensor out[OPT_MAX_TENSORS];  /* out[0] is what the loss reads; the rest are saved */
    int n_out;
    float *cot;                       /* dL/d out[0]; also the backward's dout */
    int dim[6];
    dropout_ctx drop;
    const dropout_ctx *dropp;         /* &drop, or NULL for "no dropout at all" */
    int *labels;                      /* softmax_xent's labels; token_embed's ids; attention's kv_len */
    void (*forward)(op_case *c);
    /* Bit i of mask set: pass in[i].g, else NULL. */
    void (*backward)(op_case *c, unsigned mask);
    void *owned[OPT_MAX_OWNED];
    int n_owned;
};

#define OPT_ALL_GRADS 0xffu

/* Builds a case for op `op` (a registry name) with implementation `impl`.
 * dims, by op (unused entries ignored):
 *   dense        M K N has_bias
 *   layernorm    M D
 *   gelu         n
 *   attention    B Tq Tk H K sample0      rate: < 0 passes a NULL ctx
 *   patch_conv   B S P D has_bias
 *   posemb       B N D
 *   meanpool     B T D
 *   softmax_xent B V                      (cot = 1/B: L is the mean loss)
 *   dropout      B per_sample sample0     rate: < 0 passes a NULL ctx
 *   residual     n
 *   token_embed  N V D                    (ids [N] in labels, drawn in [0, V))
 *   relu         n                        (inputs at least 1/16 from 0)
 *   layernorm_pair M D                    (out[0] = [out1; out2], cot likewise)
 *   ffn          B T D F sample0          rate: < 0 passes a NULL ctx
 * Returns NULL for an op the harness does not know. */
op_case *opt_case(const char *op, const void *impl, const char *backend, const int dims[6],
                  float rate, uint64_t seed);
void opt_case_free(op_case *c);

/* attention: mask each sample's keys past kv_len[b] (B values, copied; the
 * case's labels), as padded sequences do. */
void opt_case_mask_keys(op_case *c, const int *kv_len);

void opt_zero_grads(op_case *c);
void opt_fill_grads(op_case *c, uint64_t seed);

/* Fills x with values on a 2^-12 grid in [-amp, amp] (so x +- small powers of
 * two are exact, which keeps finite differences free of input rounding). */
void opt_fill(float *x, size_t n, float amp, uint64_t seed);

/* Finite-difference gradient check of every input of c against its backward
 * (called once with zeroed gradients, dout = cot), L = sum(out[0] * cot) in
 * double, 4-point central differences with step h. */
typedef struct {
    double h;         /* step (a power of two keeps x +- h exact) */
    double rtol;      /* per element: |a - n| <= rtol * max|n| + atol */
    double atol;
    int max_elems;    /* per tensor: every element if n <= max_elems, else a random subset */
    int directions;   /* random whole-tensor directional derivatives per tensor */
} fd_opts;

typedef struct {
    int checked;
    int failures;
    double worst;     /* max |a - n| / tol over everything checked */
    char first[512];  /* the first failure, naming case, tensor, index and values */
} fd_report;

extern const fd_opts fd_default_opts;
void fd_check(op_case *c, const fd_opts *o, fd_report *r);

/* Compares buffers elementwise: |got - ref| <= rtol * max|ref| + atol, and
 * got finite. Returns the number of mismatches; describes the worst in msg. */
int opt_compare(const char *what, const float *ref, const float *got, size_t n, double rtol,
                double atol, char *msg, size_t cap);

/* Compares every output and every gradient of two cases of the same op and
 * shape (ref first). Returns mismatching buffers; msg names the first. A
 * pair with no values to compare counts as a mismatch. */
int opt_compare_cases(const op_case *ref, const op_case *got, double rtol, double atol, char *msg,
                      size_t cap);

/* One shape of one op, for the suites' shape tables (tests/test_ops_*.c). */
typedef struct {
    const char *op;
    int dims[6];
    float rate; /* attention / dropout: < 0 passes a NULL ctx */
} shape;

static inline const void *ref_impl(const char *op)
{
    return ops_impl(ops_find(op), TLB_BACKEND_REF);
}

static inline int same_op(const shape *s, const char *op) { return strcmp(s->op, op) == 0; }

#endif
