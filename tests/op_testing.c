#include "op_testing.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/rng.h"

/* ---- allocation and filling ---------------------------------------------- */

static void *own(op_case *c, size_t bytes)
{
    void *p = calloc(bytes ? bytes : 1, 1);
    if (!p || c->n_owned == OPT_MAX_OWNED) abort();
    c->owned[c->n_owned++] = p;
    return p;
}

static float *own_floats(op_case *c, size_t n) { return own(c, n * sizeof(float)); }

void opt_fill(float *x, size_t n, float amp, uint64_t seed)
{
    rng_stream s = {rng_key(seed, 0x6f70745f66696c6cULL), 0};
    for (size_t i = 0; i < n; i++) {
        const float u = rng_next_uniform(&s) * 2.0f - 1.0f;
        x[i] = roundf(u * amp * 4096.0f) / 4096.0f;
    }
}

static void add_in(op_case *c, const char *name, size_t n, float amp, float offset, uint64_t seed)
{
    opt_tensor *t = &c->in[c->n_in];
    t->name = name;
    t->n = n;
    t->x = own_floats(c, n);
    t->g = own_floats(c, n);
    opt_fill(t->x, n, amp, rng_key(seed, 100 + (uint64_t)c->n_in));
    for (size_t i = 0; i < n; i++) t->x[i] += offset;
    c->n_in++;
}

static void add_out(op_case *c, const char *name, size_t n)
{
    opt_tensor *t = &c->out[c->n_out++];
    t->name = name;
    t->n = n;
    t->x = own_floats(c, n);
    t->g = NULL;
}

static void make_cot(op_case *c, uint64_t seed)
{
    c->cot = own_floats(c, c->out[0].n);
    opt_fill(c->cot, c->out[0].n, 1.0f, rng_key(seed, 99));
}

static float *G(const op_case *c, unsigned mask, int i)
{
    return i < c->n_in && (mask >> i & 1u) ? c->in[i].g : NULL;
}

static void set_drop(op_case *c, float rate, long sample0, uint64_t seed)
{
    c->drop = (dropout_ctx){rate < 0 ? 0.0f : rate, rng_key(seed, 0xd0), sample0};
    c->dropp = rate < 0 ? NULL : &c->drop;
}

static void label(op_case *c, const char *backend, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void label(op_case *c, const char *backend, const char *fmt, ...)
{
    int n = snprintf(c->label, sizeof c->label, "%s[%s] ", c->op, backend);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->label + n, sizeof c->label - (size_t)n, fmt, ap);
    va_end(ap);
}

/* ---- one builder per op ---------------------------------------------------- */

static void dense_fwd(op_case *c)
{
    const dense_op *o = c->impl;
    o->forward(c->out[0].x, c->in[0].x, c->in[1].x, c->n_in > 2 ? c->in[2].x : NULL, c->dim[0],
               c->dim[1], c->dim[2]);
}
static void dense_bwd(op_case *c, unsigned m)
{
    const dense_op *o = c->impl;
    o->backward(G(c, m, 0), G(c, m, 1), G(c, m, 2), c->cot, c->in[0].x, c->in[1].x, c->dim[0],
                c->dim[1], c->dim[2]);
}
static void build_dense(op_case *c, const int *d, uint64_t seed)
{
    const size_t M = d[0], K = d[1], N = d[2];
    add_in(c, "inp", M * K, 1.0f, 0.0f, seed);
    add_in(c, "w", K * N, 1.0f, 0.0f, seed);
    if (d[3]) add_in(c, "bias", N, 1.0f, 0.0f, seed);
    add_out(c, "out", M * N);
    c->forward = dense_fwd;
    c->backward = dense_bwd;
}

static void layernorm_fwd(op_case *c)
{
    const layernorm_op *o = c->impl;
    o->forward(c->out[0].x, c->out[1].x, c->out[2].x, c->in[0].x, c->in[1].x, c->in[2].x,
               c->dim[0], c->dim[1]);
}
static void layernorm_bwd(op_case *c, unsigned m)
{
    const layernorm_op *o = c->impl;
    o->backward(G(c, m, 0), G(c, m, 1), G(c, m, 2), c->cot, c->in[0].x, c->in[1].x, c->out[1].x,
                c->out[2].x, c->dim[0], c->dim[1]);
}
static void build_layernorm(op_case *c, const int *d, uint64_t seed)
{
    const size_t M = d[0], D = d[1];
    add_in(c, "inp", M * D, 2.0f, 0.5f, seed); /* off-centre rows */
    add_in(c, "gamma", D, 0.5f, 1.0f, seed);
    add_in(c, "beta", D, 1.0f, 0.0f, seed);
    add_out(c, "out", M * D);
    add_out(c, "mean", M);
    add_out(c, "rstd", M);
    c->forward = layernorm_fwd;
    c->backward = layernorm_bwd;
}

static void gelu_fwd(op_case *c)
{
    const gelu_op *o = c->impl;
    o->forward(c->out[0].x, c->in[0].x, (size_t)c->dim[0]);
}
static void gelu_bwd(op_case *c, unsigned m)
{
    const gelu_op *o = c->impl;
    o->backward(G(c, m, 0), c->cot, c->in[0].x, (size_t)c->dim[0]);
}
static void build_gelu(op_case *c, const int *d, uint64_t seed)
{
    add_in(c, "inp", (size_t)d[0], 4.0f, 0.0f, seed);
    add_out(c, "out", (size_t)d[0]);
    c->forward = gelu_fwd;
    c->backward = gelu_bwd;
}

static void attention_fwd(op_case *c)
{
    const attention_op *o = c->impl;
    const int *d = c->dim;
    o->forward(c->out[0].x, c->out[1].x, c->in[0].x, c->in[1].x, c->in[2].x, c->labels, d[0], d[1],
               d[2], d[3], d[4], c->dropp);
}
static void attention_bwd(op_case *c, unsigned m)
{
    const attention_op *o = c->impl;
    const int *d = c->dim;
    o->backward(G(c, m, 0), G(c, m, 1), G(c, m, 2), c->cot, c->in[0].x, c->in[1].x, c->in[2].x,
                c->out[1].x, d[0], d[1], d[2], d[3], d[4], c->dropp);
}
static void build_attention(op_case *c, const int *d, float rate, uint64_t seed)
{
    const size_t B = d[0], Tq = d[1], Tk = d[2], HK = (size_t)d[3] * d[4];
    add_in(c, "q", B * Tq * HK, 1.5f, 0.0f, seed);
    add_in(c, "k", B * Tk * HK, 1.5f, 0.0f, seed);
    add_in(c, "v", B * Tk * HK, 1.0f, 0.0f, seed);
    add_out(c, "out", B * Tq * HK);
    add_out(c, "probs", B * d[3] * Tq * Tk);
    set_drop(c, rate, d[5], seed);
    c->forward = attention_fwd;
    c->backward = attention_bwd;
}

static void patch_conv_fwd(op_case *c)
{
    const patch_conv_op *o = c->impl;
    const int *d = c->dim;
    o->forward(c->out[0].x, c->in[0].x, c->in[1].x, c->n_in > 2 ? c->in[2].x : NULL, d[0], d[1],
               d[2], d[3]);
}
static void patch_conv_bwd(op_case *c, unsigned m)
{
    const patch_conv_op *o = c->impl;
    const int *d = c->dim;
    o->backward(G(c, m, 0), G(c, m, 1), G(c, m, 2), c->cot, c->in[0].x, c->in[1].x, d[0], d[1],
                d[2], d[3]);
}
static void build_patch_conv(op_case *c, const int *d, uint64_t seed)
{
    const size_t B = d[0], S = d[1], P = d[2], D = d[3], G = S / P;
    add_in(c, "img", B * S * S * 3, 1.0f, 0.0f, seed);
    add_in(c, "w", P * P * 3 * D, 1.0f, 0.0f, seed);
    if (d[4]) add_in(c, "bias", D, 1.0f, 0.0f, seed);
    add_out(c, "out", B * G * G * D);
    c->forward = patch_conv_fwd;
    c->backward = patch_conv_bwd;
}

static void posemb_fwd(op_case *c)
{
    const posemb_op *o = c->impl;
    o->forward(c->out[0].x, c->in[0].x, c->in[1].x, c->dim[0], c->dim[1], c->dim[2]);
}
static void posemb_bwd(op_case *c, unsigned m)
{
    const posemb_op *o = c->impl;
    o->backward(G(c, m, 0), G(c, m, 1), c->cot, c->dim[0], c->dim[1], c->dim[2]);
}
static void build_posemb(op_case *c, const int *d, uint64_t seed)
{
    const size_t B = d[0], ND = (size_t)d[1] * d[2];
    add_in(c, "inp", B * ND, 1.0f, 0.0f, seed);
    add_in(c, "pos", ND, 1.0f, 0.0f, seed);
    add_out(c, "out", B * ND);
    c->forward = posemb_fwd;
    c->backward = posemb_bwd;
}

static void meanpool_fwd(op_case *c)
{
    const meanpool_op *o = c->impl;
    o->forward(c->out[0].x, c->in[0].x, c->dim[0], c->dim[1], c->dim[2]);
}
static void meanpool_bwd(op_case *c, unsigned m)
{
    const meanpool_op *o = c->impl;
    o->backward(G(c, m, 0), c->cot, c->dim[0], c->dim[1], c->dim[2]);
}
static void build_meanpool(op_case *c, const int *d, uint64_t seed)
{
    add_in(c, "inp", (size_t)d[0] * d[1] * d[2], 1.0f, 0.0f, seed);
    add_out(c, "out", (size_t)d[0] * d[2]);
    c->forward = meanpool_fwd;
    c->backward = meanpool_bwd;
}

static void softmax_xent_fwd(op_case *c)
{
    const softmax_xent_op *o = c->impl;
    o->forward(c->out[0].x, c->out[1].x, c->in[0].x, c->labels, c->dim[0], c->dim[1]);
}
static void softmax_xent_bwd(op_case *c, unsigned m)
{
    const softmax_xent_op *o = c->impl;
    o->backward(G(c, m, 0), c->out[1].x, c->labels, 1.0f / (float)c->dim[0], c->dim[0], c->dim[1]);
}
static void build_softmax_xent(op_case *c, const int *d, uint64_t seed)
{
    const int B = d[0], V = d[1];
    add_in(c, "logits", (size_t)B * V, 4.0f, 0.0f, seed);
    add_out(c, "losses", (size_t)B);
    add_out(c, "probs", (size_t)B * V);
    c->labels = own(c, (size_t)B * sizeof(int));
    rng_stream s = {rng_key(seed, 0x1abe1), 0};
    for (int b = 0; b < B; b++) c->labels[b] = (int)rng_next_below(&s, (uint32_t)V);
    c->forward = softmax_xent_fwd;
    c->backward = softmax_xent_bwd;
}

static void dropout_fwd(op_case *c)
{
    const dropout_op *o = c->impl;
    o->forward(c->out[0].x, c->in[0].x, c->dim[0], (size_t)c->dim[1], c->dropp);
}
static void dropout_bwd(op_case *c, unsigned m)
{
    const dropout_op *o = c->impl;
    o->backward(G(c, m, 0), c->cot, c->dim[0], (size_t)c->dim[1], c->dropp);
}
static void build_dropout(op_case *c, const int *d, float rate, uint64_t seed)
{
    add_in(c, "inp", (size_t)d[0] * d[1], 1.0f, 0.0f, seed);
    add_out(c, "out", (size_t)d[0] * d[1]);
    set_drop(c, rate, d[2], seed);
    c->forward = dropout_fwd;
    c->backward = dropout_bwd;
}

static void residual_fwd(op_case *c)
{
    const residual_op *o = c->impl;
    o->forward(c->out[0].x, c->in[0].x, c->in[1].x, (size_t)c->dim[0]);
}
static void residual_bwd(op_case *c, unsigned m)
{
    const residual_op *o = c->impl;
    o->backward(G(c, m, 0), G(c, m, 1), c->cot, (size_t)c->dim[0]);
}
static void build_residual(op_case *c, const int *d, uint64_t seed)
{
    add_in(c, "a", (size_t)d[0], 1.0f, 0.0f, seed);
    add_in(c, "b", (size_t)d[0], 1.0f, 0.0f, seed);
    add_out(c, "out", (size_t)d[0]);
    c->forward = residual_fwd;
    c->backward = residual_bwd;
}

static void token_embed_fwd(op_case *c)
{
    const token_embed_op *o = c->impl;
    o->forward(c->out[0].x, c->labels, c->in[0].x, c->dim[0], c->dim[1], c->dim[2]);
}
static void token_embed_bwd(op_case *c, unsigned m)
{
    const token_embed_op *o = c->impl;
    o->backward(G(c, m, 0), c->cot, c->labels, c->dim[0], c->dim[1], c->dim[2]);
}
/* The ids (in labels) are drawn in [0, V): with N > V they repeat, with
 * N < V some rows are never used; either way the scatter-add is exercised. */
static void build_token_embed(op_case *c, const int *d, uint64_t seed)
{
    const int N = d[0], V = d[1], D = d[2];
    add_in(c, "table", (size_t)V * D, 1.0f, 0.0f, seed);
    add_out(c, "out", (size_t)N * D);
    c->labels = own(c, (size_t)N * sizeof(int));
    rng_stream s = {rng_key(seed, 0x1d5), 0};
    for (int n = 0; n < N; n++) c->labels[n] = (int)rng_next_below(&s, (uint32_t)V);
    c->forward = token_embed_fwd;
    c->backward = token_embed_bwd;
}

static void relu_fwd(op_case *c)
{
    const relu_op *o = c->impl;
    o->forward(c->out[0].x, c->in[0].x, (size_t)c->dim[0]);
}
static void relu_bwd(op_case *c, unsigned m)
{
    const relu_op *o = c->impl;
    o->backward(G(c, m, 0), c->cot, c->in[0].x, (size_t)c->dim[0]);
}
/* Inputs kept at least 1/16 from the kink, so a finite difference never
 * straddles it; signs mixed. */
static void build_relu(op_case *c, const int *d, uint64_t seed)
{
    add_in(c, "inp", (size_t)d[0], 2.0f, 0.0f, seed);
    float *x = c->in[0].x;
    for (int i = 0; i < d[0]; i++) x[i] += x[i] >= 0.0f ? 0.0625f : -0.0625f;
    add_out(c, "out", (size_t)d[0]);
    c->forward = relu_fwd;
    c->backward = relu_bwd;
}

void opt_case_mask_keys(op_case *c, const int *kv_len)
{
    const int B = c->dim[0];
    c->labels = own(c, (size_t)B * sizeof(int));
    memcpy(c->labels, kv_len, (size_t)B * sizeof(int));
}

/* Both outputs in one buffer, so the loss (and the cot) covers both. */
static void layernorm_pair_fwd(op_case *c)
{
    const layernorm_pair_op *o = c->impl;
    const size_t n = (size_t)c->dim[0] * c->dim[1];
    o->forward(c->out[0].x, c->out[0].x + n, c->out[1].x, c->out[2].x, c->in[0].x, c->in[1].x,
               c->in[2].x, c->in[3].x, c->in[4].x, c->dim[0], c->dim[1]);
}
static void layernorm_pair_bwd(op_case *c, unsigned m)
{
    const layernorm_pair_op *o = c->impl;
    const size_t n = (size_t)c->dim[0] * c->dim[1];
    o->backward(G(c, m, 0), G(c, m, 1), G(c, m, 2), G(c, m, 3), G(c, m, 4), c->cot, c->cot + n,
                c->in[0].x, c->in[1].x, c->in[3].x, c->out[1].x, c->out[2].x, c->dim[0], c->dim[1]);
}
static void build_layernorm_pair(op_case *c, const int *d, uint64_t seed)
{
    const size_t M = d[0], D = d[1];
    add_in(c, "inp", M * D, 2.0f, 0.5f, seed); /* off-centre rows */
    add_in(c, "gamma1", D, 0.5f, 1.0f, seed);
    add_in(c, "beta1", D, 1.0f, 0.0f, seed);
    add_in(c, "gamma2", D, 0.5f, -1.0f, seed);
    add_in(c, "beta2", D, 1.0f, 0.0f, seed);
    add_out(c, "out", 2 * M * D);
    add_out(c, "mean", M);
    add_out(c, "rstd", M);
    c->forward = layernorm_pair_fwd;
    c->backward = layernorm_pair_bwd;
}

static void ffn_fwd(op_case *c)
{
    const ffn_op *o = c->impl;
    const int *d = c->dim;
    o->forward(c->out[0].x, c->out[1].x, c->in[0].x, c->in[1].x, c->in[2].x, c->in[3].x, c->in[4].x,
               c->in[5].x, d[0], d[1], d[2], d[3], c->dropp);
}
static void ffn_bwd(op_case *c, unsigned m)
{
    const ffn_op *o = c->impl;
    const int *d = c->dim;
    o->backward(G(c, m, 0), G(c, m, 1), G(c, m, 2), G(c, m, 3), G(c, m, 4), G(c, m, 5), c->cot,
                c->in[0].x, c->in[1].x, c->in[3].x, c->out[1].x, d[0], d[1], d[2], d[3], c->dropp);
}
static void build_ffn(op_case *c, const int *d, float rate, uint64_t seed)
{
    const size_t M = (size_t)d[0] * d[1], D = d[2], F = d[3];
    add_in(c, "inp", M * D, 1.0f, 0.0f, seed);
    add_in(c, "w1", D * F, 0.5f, 0.0f, seed);
    add_in(c, "b1", F, 0.5f, 0.0f, seed);
    add_in(c, "w2", F * D, 0.5f, 0.0f, seed);
    add_in(c, "b2", D, 0.5f, 0.0f, seed);
    add_in(c, "res", M * D, 1.0f, 0.0f, seed);
    add_out(c, "out", M * D);
    add_out(c, "h", M * F);
    set_drop(c, rate, d[4], seed);
    c->forward = ffn_fwd;
    c->backward = ffn_bwd;
}

op_case *opt_case(const char *op, const void *impl, const char *backend, const int dims[6],
                  float rate, uint64_t seed)
{
    op_case *c = calloc(1, sizeof *c);
    if (!c) abort();
    c->op = op;
    c->impl = impl;
    memcpy(c->dim, dims, sizeof c->dim);
    const int *d = dims;
    if (strcmp(op, "dense") == 0) {
        build_dense(c, d, seed);
        label(c, backend, "M=%d K=%d N=%d%s", d[0], d[1], d[2], d[3] ? "" : " bias=NULL");
    } else if (strcmp(op, "layernorm") == 0) {
        build_layernorm(c, d, seed);
        label(c, backend, "M=%d D=%d", d[0], d[1]);
    } else if (strcmp(op, "gelu") == 0) {
        build_gelu(c, d, seed);
        label(c, backend, "n=%d", d[0]);
    } else if (strcmp(op, "attention") == 0) {
        build_attention(c, d, rate, seed);
        label(c, backend, "B=%d Tq=%d Tk=%d H=%d K=%d sample0=%d rate=%g%s", d[0], d[1], d[2],
              d[3], d[4], d[5], rate < 0 ? 0.0 : rate, rate < 0 ? " (NULL ctx)" : "");
    } else if (strcmp(op, "patch_conv") == 0) {
        build_patch_conv(c, d, seed);
        label(c, backend, "B=%d S=%d P=%d D=%d%s", d[0], d[1], d[2], d[3],
              d[4] ? "" : " bias=NULL");
    } else if (strcmp(op, "posemb") == 0) {
        build_posemb(c, d, seed);
        label(c, backend, "B=%d N=%d D=%d", d[0], d[1], d[2]);
    } else if (strcmp(op, "meanpool") == 0) {
        build_meanpool(c, d, seed);
        label(c, backend, "B=%d T=%d D=%d", d[0], d[1], d[2]);
    } else if (strcmp(op, "softmax_xent") == 0) {
        build_softmax_xent(c, d, seed);
        label(c, backend, "B=%d V=%d", d[0], d[1]);
    } else if (strcmp(op, "dropout") == 0) {
        build_dropout(c, d, rate, seed);
        label(c, backend, "B=%d per_sample=%d sample0=%d rate=%g%s", d[0], d[1], d[2],
              rate < 0 ? 0.0 : rate, rate < 0 ? " (NULL ctx)" : "");
    } else if (strcmp(op, "residual") == 0) {
        build_residual(c, d, seed);
        label(c, backend, "n=%d", d[0]);
    } else if (strcmp(op, "token_embed") == 0) {
        build_token_embed(c, d, seed);
        label(c, backend, "N=%d V=%d D=%d", d[0], d[1], d[2]);
    } else if (strcmp(op, "relu") == 0) {
        build_relu(c, d, seed);
        label(c, backend, "n=%d", d[0]);
    } else if (strcmp(op, "layernorm_pair") == 0) {
        build_layernorm_pair(c, d, seed);
        label(c, backend, "M=%d D=%d", d[0], d[1]);
    } else if (strcmp(op, "ffn") == 0) {
        build_ffn(c, d, rate, seed);
        label(c, backend, "B=%d T=%d D=%d F=%d sample0=%d rate=%g%s", d[0], d[1], d[2], d[3], d[4],
              rate < 0 ? 0.0 : rate, rate < 0 ? " (NULL ctx)" : "");
    } else {
        free(c);
        return NULL;
    }
    if (strcmp(op, "softmax_xent") == 0) { /* L = mean loss; backward takes scale = 1/B */
        c->cot = own_floats(c, c->out[0].n);
        for (size_t i = 0; i < c->out[0].n; i++) c->cot[i] = 1.0f / (float)dims[0];
    } else {
        make_cot(c, seed);
    }
    return c;
}

void opt_case_free(op_case *c)
{
    if (!c) return;
    for (int i = 0; i < c->n_owned; i++) free(c->owned[i]);
    free(c);
}

void opt_zero_grads(op_case *c)
{
    for (int i = 0; i < c->n_in; i++) memset(c->in[i].g, 0, c->in[i].n * sizeof(float));
}

void opt_fill_grads(op_case *c, uint64_t seed)
{
    for (int i = 0; i < c->n_in; i++) opt_fill(c->in[i].g, c->in[i].n, 1.0f, rng_key(seed, 7 + i));
}

/* ---- finite differences ---------------------------------------------------- */

const fd_opts fd_default_opts = {
    .h = 1.0 / 64, .rtol = 1e-3, .atol = 1e-5, .max_elems = 96, .directions = 2};

static double loss(op_case *c)
{
    c->forward(c);
    double L = 0.0;
    for (size_t i = 0; i < c->out[0].n; i++) L += (double)c->out[0].x[i] * c->cot[i];
    return L;
}

/* 4-point central difference of L along direction u (u == NULL: the unit
 * vector at `at`); error O(h^4), so h can be large enough to drown the
 * float32 rounding of the forward. */
static double numeric(op_case *c, opt_tensor *t, size_t at, const float *u, double h)
{
    static const double step[4] = {-2, -1, 1, 2}, weight[4] = {1, -8, 8, -1};
    float *keep = NULL;
    if (u) {
        keep = malloc(t->n * sizeof(float));
        memcpy(keep, t->x, t->n * sizeof(float));
    }
    const float x0 = u ? 0.0f : t->x[at];
    double acc = 0.0;
    for (int s = 0; s < 4; s++) {
        if (u)
            for (size_t i = 0; i < t->n; i++) t->x[i] = (float)(keep[i] + step[s] * h * u[i]);
        else
            t->x[at] = (float)(x0 + step[s] * h);
        acc += weight[s] * loss(c);
    }
    if (u) {
        memcpy(t->x, keep, t->n * sizeof(float));
        free(keep);
    } else {
        t->x[at] = x0;
    }
    c->forward(c); /* leave the saved outputs of the unperturbed inputs behind */
    return acc / (12.0 * h);
}

static void note(fd_report *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(fd_report *r, const char *fmt, ...)
{
    r->failures++;
    if (r->failures > 1) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->first, sizeof r->first, fmt, ap);
    va_end(ap);
}

void fd_check(op_case *c, const fd_opts *o, fd_report *r)
{
    memset(r, 0, sizeof *r);
    opt_zero_grads(c);
    c->forward(c);
    c->backward(c, OPT_ALL_GRADS);
    rng_stream pick = {rng_key(0xfd, (uint64_t)c->n_in), 0};
    for (int ti = 0; ti < c->n_in; ti++) {
        opt_tensor *t = &c->in[ti];
        const size_t count = t->n <= (size_t)o->max_elems ? t->n : (size_t)o->max_elems;
        size_t *idx = malloc(count * sizeof *idx);
        double *num = malloc(count * sizeof *num);
        size_t amax = 0; /* always check the largest analytic entry */
        for (size_t i = 1; i < t->n; i++)
            if (fabsf(t->g[i]) > fabsf(t->g[amax])) amax = i;
        double scale = 0.0;
        for (size_t j = 0; j < count; j++) {
            idx[j] = count == t->n ? j : j == 0 ? amax : rng_next_below(&pick, (uint32_t)t->n);
            num[j] = numeric(c, t, idx[j], NULL, o->h);
            scale = fmax(scale, fabs(num[j]));
        }
        const double tol = o->rtol * scale + o->atol;
        for (size_t j = 0; j < count; j++) {
            const double a = t->g[idx[j]], err = fabs(a - num[j]);
            r->checked++;
            r->worst = fmax(r->worst, err / tol);
            if (!(err <= tol))
                note(r, "%s: d%s[%zu] analytic %.7g numeric %.7g (|diff| %.3g > tol %.3g)",
                     c->label, t->name, idx[j], a, num[j], err, tol);
        }
        free(idx);
        free(num);

        float *u = malloc(t->n * sizeof(float));
        for (int k = 0; k < o->directions; k++) {
            opt_fill(u, t->n, 1.0f, rng_key(0xd1, (uint64_t)(ti * 16 + k)));
            for (size_t i = 0; i < t->n; i++) u[i] = roundf(u[i] * 8.0f) / 8.0f;
            double a = 0.0, mag = 0.0;
            for (size_t i = 0; i < t->n; i++) {
                a += (double)t->g[i] * u[i];
                mag += fabs((double)t->g[i] * u[i]);
            }
            const double n = numeric(c, t, 0, u, o->h), err = fabs(a - n);
            const double dtol = o->rtol * fmax(mag, fabs(n)) + o->atol;
            r->checked++;
            r->worst = fmax(r->worst, err / dtol);
            if (!(err <= dtol))
                note(r, "%s: d%s along random direction %d: analytic %.7g numeric %.7g "
                        "(|diff| %.3g > tol %.3g)",
                     c->label, t->name, k, a, n, err, dtol);
        }
        free(u);
    }
}

/* ---- comparisons ----------------------------------------------------------- */

int opt_compare(const char *what, const float *ref, const float *got, size_t n, double rtol,
                double atol, char *msg, size_t cap)
{
    double scale = 0.0;
    for (size_t i = 0; i < n; i++) scale = fmax(scale, fabs(ref[i]));
    const double tol = rtol * scale + atol;
    int bad = 0;
    size_t worst = 0;
    double worst_err = -1.0;
    for (size_t i = 0; i < n; i++) {
        const double err = isfinite(got[i]) ? fabs((double)got[i] - ref[i]) : INFINITY;
        if (!(err <= tol)) bad++;
        if (err > worst_err) {
            worst_err = err;
            worst = i;
        }
    }
    if (bad && msg)
        snprintf(msg, cap, "%s: %d of %zu differ, worst [%zu] ref %.8g got %.8g (|diff| %.3g > tol %.3g)",
                 what, bad, n, worst, ref[worst], got[worst], worst_err, tol);
    return bad;
}

int opt_compare_cases(const op_case *ref, const op_case *got, double rtol, double atol, char *msg,
                      size_t cap)
{
    char what[256];
    int bad = 0;
    size_t compared = 0;
    for (int i = 0; i < ref->n_out; i++) {
        snprintf(what, sizeof what, "%s vs ref: output %s", got->label, ref->out[i].name);
        if (opt_compare(what, ref->out[i].x, got->out[i].x, ref->out[i].n, rtol, atol,
                        bad ? NULL : msg, cap))
            bad++;
        compared += ref->out[i].n;
    }
    for (int i = 0; i < ref->n_in; i++) {
        if (!ref->in[i].g || !got->in[i].g) continue;
        snprintf(what, sizeof what, "%s vs ref: gradient d%s", got->label, ref->in[i].name);
        if (opt_compare(what, ref->in[i].g, got->in[i].g, ref->in[i].n, rtol, atol,
                        bad ? NULL : msg, cap))
            bad++;
        compared += ref->in[i].n;
    }
    /* A comparison of nothing must not pass. */
    if (compared == 0 && !bad) {
        snprintf(msg, cap, "%s vs ref: compared nothing (no output or gradient values)", got->label);
        bad = 1;
    }
    return bad;
}
