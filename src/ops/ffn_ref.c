/* The reference ffn (ops.h): ref's dense, GELU, dropout and residual ops
 * composed exactly as the unfused block calls them, with their
 * intermediates (GELU output, masked dout, their gradients) in a per-thread
 * buffer that prepare reserves. */
#include "ops/impls.h"
#include "ops/thread_scratch.h"

#include <stdlib.h>
#include <string.h>

/* The intermediates (thread_scratch.h): g [M,F], dy [M,D], dg [M,F], dh [M,F]. */
static _Thread_local thread_scratch ffn_tls;
static size_t need(int B, int T, int D, int F) { return (size_t)B * T * ((size_t)D + 3 * (size_t)F); }
static int reserve(size_t n) { return thread_scratch_reserve(&ffn_tls, n); }
static float *scratch(size_t n) { return thread_scratch_get(&ffn_tls, n); }

static int ffn_prepare_ref(int B, int T, int D, int F, tlb_error *err)
{
    return reserve(need(B, T, D, F)) != 0 ? tlb_fail(err, "out of memory for the FFN's scratch") : 0;
}

static void ffn_forward_ref(float *out, float *h, const float *inp, const float *w1, const float *b1,
                            const float *w2, const float *b2, const float *res, int B, int T, int D,
                            int F, const dropout_ctx *drop)
{
    const int M = B * T;
    float *g = scratch(need(B, T, D, F));
    if (!h) h = g + (size_t)M * (F + D); /* not kept: the backward's dg room */
    dense_ref.forward(h, inp, w1, b1, M, D, F);
    gelu_ref.forward(g, h, (size_t)M * F);
    dense_ref.forward(out, g, w2, b2, M, F, D);
    if (drop && drop->rate > 0.0f) dropout_ref.forward(out, out, B, (size_t)T * D, drop);
    residual_ref.forward(out, out, res, (size_t)M * D);
}

static void ffn_backward_ref(float *dinp, float *dw1, float *db1, float *dw2, float *db2, float *dres,
                             const float *dout, const float *inp, const float *w1, const float *w2,
                             const float *h, int B, int T, int D, int F, const dropout_ctx *drop)
{
    const size_t M = (size_t)B * T;
    float *g = scratch(need(B, T, D, F));
    float *dy = g + M * F, *dg = dy + M * D, *dh = dg + M * F;
    if (dres) residual_ref.backward(dres, NULL, dout, M * D);
    memset(dy, 0, M * D * sizeof(float));
    dropout_ref.backward(dy, dout, B, (size_t)T * D, drop);
    gelu_ref.forward(g, h, M * F);
    const int want_dh = dinp || dw1 || db1;
    memset(dg, 0, M * F * sizeof(float));
    dense_ref.backward(want_dh ? dg : NULL, dw2, db2, dy, g, w2, (int)M, F, D);
    if (!want_dh) return;
    memset(dh, 0, M * F * sizeof(float));
    gelu_ref.backward(dh, dg, h, M * F);
    dense_ref.backward(dinp, dw1, db1, dh, inp, w1, (int)M, D, F);
}

const ffn_op ffn_ref = {ffn_forward_ref, ffn_backward_ref, ffn_prepare_ref, NULL};
