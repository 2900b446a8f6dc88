/* Patch convolution (kernel = stride = P, valid padding, 3 -> D channels) on
 * oneDNN's convolution primitive: img [B, S, S, 3] is NHWC, w [P*P*3, D] in
 * (kh, kw, c) row order is HWIO, out [B*N, D] is NHWC with an output grid of
 * G = S / P. When P does not divide S the right/bottom border is ignored
 * (negative right padding), as in patch_conv_ref.c.
 *
 * Backward accumulates (+=) into dimg, dw and dbias where oneDNN overwrites
 * diff_src, diff_weights and diff_bias, so those land in the shape's work
 * buffer (planned once per shape with the primitive) and are then added. */
#include "ops/dnnl_common.h"
#include "ops/impls.h"

enum { KIND_FWD, KIND_FWD_BIAS, KIND_BWD_DATA, KIND_BWD_WEIGHTS, KIND_BWD_WEIGHTS_BIAS };

TLB_DNNL_THREAD_CACHE cache;

typedef struct {
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_dims_t strides, pad_l, pad_r;
} conv_shape;

static dnnl_status_t conv_shape_init(conv_shape *c, int B, int S, int P, int D)
{
    const int G = S / P;
    const dnnl_dims_t src = {B, 3, S, S}, wei = {D, 3, P, P}, bias = {D}, dst = {B, D, G, G};
    c->strides[0] = c->strides[1] = P;
    c->pad_l[0] = c->pad_l[1] = 0;
    c->pad_r[0] = c->pad_r[1] = (dnnl_dim_t)G * P - S; /* <= 0: the unused border */
    dnnl_status_t st = dnnl_memory_desc_init_by_tag(&c->src, 4, src, dnnl_f32, dnnl_nhwc);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&c->wei, 4, wei, dnnl_f32, dnnl_hwio);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&c->bias, 1, bias, dnnl_f32, dnnl_a);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_tag(&c->dst, 4, dst, dnnl_f32, dnnl_nhwc);
    return st;
}

static void build(tlb_dnnl_entry *e, const int key[TLB_DNNL_KEY])
{
    const int kind = key[0], B = key[1], S = key[2], P = key[3], D = key[4];
    conv_shape c;
    TLB_DNNL_TRY(e, conv_shape_init(&c, B, S, P, D));
    const int fwd_bias = kind == KIND_FWD_BIAS;
    dnnl_convolution_desc_t fd;
    TLB_DNNL_TRY(e, dnnl_convolution_forward_desc_init(
        &fd, kind <= KIND_FWD_BIAS ? dnnl_forward_inference : dnnl_forward_training,
        dnnl_convolution_direct, &c.src, &c.wei,
        fwd_bias || kind == KIND_BWD_WEIGHTS_BIAS ? &c.bias : NULL, &c.dst, c.strides, c.pad_l,
        c.pad_r));
    dnnl_primitive_attr_t attr = tlb_dnnl_attr(0, 1);
    TLB_DNNL_TRY(e, attr ? dnnl_success : dnnl_out_of_memory);
    dnnl_primitive_desc_t fpd;
    dnnl_status_t st = dnnl_primitive_desc_create(&fpd, &fd, attr, tlb_dnnl_engine(), NULL);
    if (st != dnnl_success) dnnl_primitive_attr_destroy(attr);
    TLB_DNNL_TRY(e, st);
    const size_t R = (size_t)P * P * 3;
    if (kind <= KIND_FWD_BIAS) {
        const int args[] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS};
        tlb_dnnl_entry_init(e, fpd, args, fwd_bias ? 4 : 3, 0);
    } else if (kind == KIND_BWD_DATA) {
        dnnl_convolution_desc_t bd;
        dnnl_primitive_desc_t bpd;
        st = dnnl_convolution_backward_data_desc_init(&bd, dnnl_convolution_direct, &c.src, &c.wei, &c.dst,
                                                      c.strides, c.pad_l, c.pad_r);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&bpd, &bd, attr, tlb_dnnl_engine(), fpd);
        dnnl_primitive_desc_destroy(fpd);
        if (st != dnnl_success) dnnl_primitive_attr_destroy(attr);
        TLB_DNNL_TRY(e, st);
        const int args[] = {DNNL_ARG_DIFF_DST, DNNL_ARG_WEIGHTS, DNNL_ARG_DIFF_SRC};
        tlb_dnnl_entry_init(e, bpd, args, 3, (size_t)B * S * S * 3); /* work: diff_src */
    } else {
        const int with_bias = kind == KIND_BWD_WEIGHTS_BIAS;
        dnnl_convolution_desc_t bd;
        dnnl_primitive_desc_t bpd;
        st = dnnl_convolution_backward_weights_desc_init(&bd, dnnl_convolution_direct, &c.src, &c.wei,
                                                         with_bias ? &c.bias : NULL, &c.dst, c.strides,
                                                         c.pad_l, c.pad_r);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&bpd, &bd, attr, tlb_dnnl_engine(), fpd);
        dnnl_primitive_desc_destroy(fpd);
        if (st != dnnl_success) dnnl_primitive_attr_destroy(attr);
        TLB_DNNL_TRY(e, st);
        const int args[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_WEIGHTS,
                            DNNL_ARG_DIFF_BIAS};
        /* work: diff_weights[R*D], diff_bias[D] */
        tlb_dnnl_entry_init(e, bpd, args, with_bias ? 4 : 3, R * D + (size_t)D);
    }
    dnnl_primitive_attr_destroy(attr);
}

/* The model's calls: forward with bias, backward of weights and bias (the
 * image needs no gradient). */
static int patch_conv_prepare_dnnl(int B, int S, int P, int D, tlb_error *err)
{
    if (B <= 0 || D <= 0 || P <= 0 || S < P) return 0;
    const int kinds[] = {KIND_FWD_BIAS, KIND_BWD_WEIGHTS_BIAS};
    for (int i = 0; i < 2; i++) {
        const int key[TLB_DNNL_KEY] = {kinds[i], B, S, P, D};
        if (tlb_dnnl_prepare(&cache, key, build, err) != 0)
            return tlb_fail_prefix(err, "patch_conv B %d S %d P %d D %d", B, S, P, D);
    }
    return 0;
}

static void patch_conv_forward_dnnl(float *out, const float *img, const float *w,
                                    const float *bias, int B, int S, int P, int D)
{
    if (B <= 0 || D <= 0 || P <= 0 || S < P) return;
    const int key[TLB_DNNL_KEY] = {bias ? KIND_FWD_BIAS : KIND_FWD, B, S, P, D};
    tlb_dnnl_entry transient;
    tlb_dnnl_entry *e = tlb_dnnl_acquire(&cache, key, build, &transient);
    tlb_dnnl_set(e, DNNL_ARG_SRC, img);
    tlb_dnnl_set(e, DNNL_ARG_WEIGHTS, w);
    tlb_dnnl_set(e, DNNL_ARG_DST, out);
    if (bias) tlb_dnnl_set(e, DNNL_ARG_BIAS, bias);
    tlb_dnnl_execute(e);
    tlb_dnnl_release(e, &transient);
}

static void patch_conv_backward_dnnl(float *dimg, float *dw, float *dbias, const float *dout,
                                     const float *img, const float *w, int B, int S, int P, int D)
{
    if (B <= 0 || D <= 0 || P <= 0 || S < P) return;
    tlb_dnnl_entry transient;
    if (dimg) {
        const int key[TLB_DNNL_KEY] = {KIND_BWD_DATA, B, S, P, D};
        tlb_dnnl_entry *e = tlb_dnnl_acquire(&cache, key, build, &transient);
        tlb_dnnl_set(e, DNNL_ARG_DIFF_DST, dout);
        tlb_dnnl_set(e, DNNL_ARG_WEIGHTS, w);
        tlb_dnnl_set(e, DNNL_ARG_DIFF_SRC, e->work);
        tlb_dnnl_execute(e);
        const size_t n = e->work_n;
        const float *g = e->work;
#pragma omp parallel for schedule(static) if (n >= 32768)
        for (size_t i = 0; i < n; i++) dimg[i] += g[i];
        tlb_dnnl_release(e, &transient);
    }
    if (dw || dbias) {
        const int key[TLB_DNNL_KEY] = {dbias ? KIND_BWD_WEIGHTS_BIAS : KIND_BWD_WEIGHTS, B, S, P, D};
        tlb_dnnl_entry *e = tlb_dnnl_acquire(&cache, key, build, &transient);
        const size_t nw = (size_t)P * P * 3 * D;
        float *gw = e->work, *gb = gw + nw;
        tlb_dnnl_set(e, DNNL_ARG_SRC, img);
        tlb_dnnl_set(e, DNNL_ARG_DIFF_DST, dout);
        tlb_dnnl_set(e, DNNL_ARG_DIFF_WEIGHTS, gw);
        if (dbias) tlb_dnnl_set(e, DNNL_ARG_DIFF_BIAS, gb);
        tlb_dnnl_execute(e);
        if (dw)
            for (size_t i = 0; i < nw; i++) dw[i] += gw[i];
        if (dbias)
            for (int d = 0; d < D; d++) dbias[d] += gb[d];
        tlb_dnnl_release(e, &transient);
    }
}

const patch_conv_op patch_conv_dnnl = {patch_conv_forward_dnnl, patch_conv_backward_dnnl,
                                      patch_conv_prepare_dnnl, NULL};
