/* LayerNorm on oneDNN's layer_normalization primitive (separate scale and
 * shift, eps = 1e-5, statistics saved in training mode).
 *
 * Contract (ops.h, layernorm_ref.c): mean[M] holds the row mean and rstd[M]
 * 1 / sqrt(var + eps), not the variance oneDNN keeps. Forward lets oneDNN
 * write the variance into rstd and converts it in place; backward converts
 * rstd back into the variance in a work buffer. Backward accumulates (+=)
 * into dinp, dgamma and dbeta while oneDNN overwrites diff_src, diff_scale
 * and diff_shift, so those land in the shape's work buffer first (planned
 * once per shape with the primitive) and are then added. */
#include "ops/dnnl_common.h"
#include "ops/impls.h"

#include <math.h>

#define LN_EPS 1e-5f

enum { KIND_FWD, KIND_BWD };

TLB_DNNL_THREAD_CACHE cache;

static const unsigned ln_flags = dnnl_use_scale | dnnl_use_shift;

static dnnl_status_t forward_desc(dnnl_layer_normalization_desc_t *d, dnnl_memory_desc_t *data,
                                  dnnl_memory_desc_t *stat, int M, int D)
{
    const dnnl_dims_t sdims = {M}, sstrides = {1};
    dnnl_status_t st = tlb_dnnl_md2d(data, M, D, D, 1, dnnl_f32);
    if (st == dnnl_success) st = dnnl_memory_desc_init_by_strides(stat, 1, sdims, dnnl_f32, sstrides);
    if (st == dnnl_success)
        st = dnnl_layer_normalization_forward_desc_init(d, dnnl_forward_training, data, stat, LN_EPS, ln_flags);
    return st;
}

static void build(tlb_dnnl_entry *e, const int key[TLB_DNNL_KEY])
{
    const int kind = key[0], M = key[1], D = key[2];
    dnnl_layer_normalization_desc_t fd;
    dnnl_memory_desc_t data, stat;
    TLB_DNNL_TRY(e, forward_desc(&fd, &data, &stat, M, D));
    dnnl_primitive_attr_t attr = tlb_dnnl_attr(0, 1);
    TLB_DNNL_TRY(e, attr ? dnnl_success : dnnl_out_of_memory);
    dnnl_primitive_desc_t fpd;
    dnnl_status_t st = dnnl_primitive_desc_create(&fpd, &fd, attr, tlb_dnnl_engine(), NULL);
    if (st != dnnl_success) dnnl_primitive_attr_destroy(attr);
    TLB_DNNL_TRY(e, st);
    if (kind == KIND_FWD) {
        const int args[] = {DNNL_ARG_SRC,      DNNL_ARG_DST,   DNNL_ARG_MEAN,
                            DNNL_ARG_VARIANCE, DNNL_ARG_SCALE, DNNL_ARG_SHIFT};
        tlb_dnnl_entry_init(e, fpd, args, 6, 0);
    } else {
        dnnl_layer_normalization_desc_t bd;
        dnnl_primitive_desc_t bpd;
        st = dnnl_layer_normalization_backward_desc_init(&bd, dnnl_backward, &data, &data, &stat, LN_EPS, ln_flags);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&bpd, &bd, attr, tlb_dnnl_engine(), fpd);
        dnnl_primitive_desc_destroy(fpd);
        if (st != dnnl_success) dnnl_primitive_attr_destroy(attr);
        TLB_DNNL_TRY(e, st);
        /* oneDNN 2.6 refuses to execute without the shift, which backward never
         * reads: it gets gamma (same shape) as a stand-in. */
        const int args[] = {DNNL_ARG_SRC,      DNNL_ARG_MEAN,  DNNL_ARG_VARIANCE,
                            DNNL_ARG_DIFF_DST, DNNL_ARG_SCALE, DNNL_ARG_SHIFT,
                            DNNL_ARG_DIFF_SRC, DNNL_ARG_DIFF_SCALE, DNNL_ARG_DIFF_SHIFT};
        /* work: diff_src[M*D], variance[M], diff_scale[D], diff_shift[D] */
        tlb_dnnl_entry_init(e, bpd, args, 9, (size_t)M * D + (size_t)M + 2 * (size_t)D);
    }
    dnnl_primitive_attr_destroy(attr);
}

static int layernorm_prepare_dnnl(int M, int D, tlb_error *err)
{
    if (M <= 0 || D <= 0) return 0;
    for (int kind = KIND_FWD; kind <= KIND_BWD; kind++) {
        const int key[TLB_DNNL_KEY] = {kind, M, D};
        if (tlb_dnnl_prepare(&cache, key, build, err) != 0) return tlb_fail_prefix(err, "layernorm [%d,%d]", M, D);
    }
    return 0;
}

static void layernorm_forward_dnnl(float *out, float *mean, float *rstd, const float *inp,
                                   const float *gamma, const float *beta, int M, int D)
{
    if (M <= 0 || D <= 0) return;
    const int key[TLB_DNNL_KEY] = {KIND_FWD, M, D};
    tlb_dnnl_entry transient;
    tlb_dnnl_entry *e = tlb_dnnl_acquire(&cache, key, build, &transient);
    tlb_dnnl_set(e, DNNL_ARG_SRC, inp);
    tlb_dnnl_set(e, DNNL_ARG_DST, out);
    tlb_dnnl_set(e, DNNL_ARG_MEAN, mean);
    tlb_dnnl_set(e, DNNL_ARG_VARIANCE, rstd); /* the variance, converted below */
    tlb_dnnl_set(e, DNNL_ARG_SCALE, gamma);
    tlb_dnnl_set(e, DNNL_ARG_SHIFT, beta);
    tlb_dnnl_execute(e);
    tlb_dnnl_release(e, &transient);
    for (int m = 0; m < M; m++) rstd[m] = 1.0f / sqrtf(rstd[m] + LN_EPS);
}

static void layernorm_backward_dnnl(float *dinp, float *dgamma, float *dbeta, const float *dout,
                                    const float *inp, const float *gamma, const float *mean,
                                    const float *rstd, int M, int D)
{
    if (M <= 0 || D <= 0 || (!dinp && !dgamma && !dbeta)) return;
    const int key[TLB_DNNL_KEY] = {KIND_BWD, M, D};
    tlb_dnnl_entry transient;
    tlb_dnnl_entry *e = tlb_dnnl_acquire(&cache, key, build, &transient);
    const size_t n = (size_t)M * D;
    float *dsrc = e->work, *var = dsrc + n, *dscale = var + M, *dshift = dscale + D;
    for (int m = 0; m < M; m++) var[m] = 1.0f / (rstd[m] * rstd[m]) - LN_EPS;
    tlb_dnnl_set(e, DNNL_ARG_SRC, inp);
    tlb_dnnl_set(e, DNNL_ARG_MEAN, mean);
    tlb_dnnl_set(e, DNNL_ARG_VARIANCE, var);
    tlb_dnnl_set(e, DNNL_ARG_DIFF_DST, dout);
    tlb_dnnl_set(e, DNNL_ARG_SCALE, gamma);
    tlb_dnnl_set(e, DNNL_ARG_SHIFT, gamma); /* not read (see build) */
    tlb_dnnl_set(e, DNNL_ARG_DIFF_SRC, dsrc);
    tlb_dnnl_set(e, DNNL_ARG_DIFF_SCALE, dscale);
    tlb_dnnl_set(e, DNNL_ARG_DIFF_SHIFT, dshift);
    tlb_dnnl_execute(e);
    if (dinp) {
#pragma omp parallel for schedule(static) if (n >= 32768)
        for (size_t i = 0; i < n; i++) dinp[i] += dsrc[i];
    }
    if (dgamma)
        for (int d = 0; d < D; d++) dgamma[d] += dscale[d];
    if (dbeta)
        for (int d = 0; d < D; d++) dbeta[d] += dshift[d];
    tlb_dnnl_release(e, &transient);
}

const layernorm_op layernorm_dnnl = {layernorm_forward_dnnl, layernorm_backward_dnnl, layernorm_prepare_dnnl, NULL};
