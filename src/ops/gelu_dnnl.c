/* Exact GELU (erf form, as gelu_ref.c) on oneDNN's eltwise gelu_erf. Backward
 * accumulates (dinp += dout * gelu'(x)) where oneDNN overwrites diff_src, so
 * the product lands in the shape's work buffer (planned once per shape with
 * the primitive) and is then added. */
#include "ops/dnnl_common.h"
#include "ops/impls.h"

enum { KIND_FWD, KIND_BWD };

TLB_DNNL_THREAD_CACHE cache;

static void build(tlb_dnnl_entry *e, const int key[TLB_DNNL_KEY])
{
    const size_t n = (size_t)(unsigned)key[1] << 32 | (unsigned)key[2];
    const dnnl_dims_t dims = {(dnnl_dim_t)n}, strides = {1};
    dnnl_memory_desc_t md;
    TLB_DNNL_TRY(e, dnnl_memory_desc_init_by_strides(&md, 1, dims, dnnl_f32, strides));
    dnnl_eltwise_desc_t fd;
    TLB_DNNL_TRY(e, dnnl_eltwise_forward_desc_init(&fd, key[0] == KIND_FWD ? dnnl_forward_inference
                                                                            : dnnl_forward_training,
                                                   dnnl_eltwise_gelu_erf, &md, 0.0f, 0.0f));
    dnnl_primitive_attr_t attr = tlb_dnnl_attr(0, 1);
    TLB_DNNL_TRY(e, attr ? dnnl_success : dnnl_out_of_memory);
    dnnl_primitive_desc_t fpd;
    dnnl_status_t st = dnnl_primitive_desc_create(&fpd, &fd, attr, tlb_dnnl_engine(), NULL);
    if (st != dnnl_success) dnnl_primitive_attr_destroy(attr);
    TLB_DNNL_TRY(e, st);
    if (key[0] == KIND_FWD) {
        const int args[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
        tlb_dnnl_entry_init(e, fpd, args, 2, 0);
    } else {
        dnnl_eltwise_desc_t bd;
        dnnl_primitive_desc_t bpd;
        st = dnnl_eltwise_backward_desc_init(&bd, dnnl_eltwise_gelu_erf, &md, &md, 0.0f, 0.0f);
        if (st == dnnl_success) st = dnnl_primitive_desc_create(&bpd, &bd, attr, tlb_dnnl_engine(), fpd);
        dnnl_primitive_desc_destroy(fpd);
        if (st != dnnl_success) dnnl_primitive_attr_destroy(attr);
        TLB_DNNL_TRY(e, st);
        const int args[] = {DNNL_ARG_SRC, DNNL_ARG_DIFF_DST, DNNL_ARG_DIFF_SRC};
        tlb_dnnl_entry_init(e, bpd, args, 3, n);
    }
    dnnl_primitive_attr_destroy(attr);
}

static int gelu_prepare_dnnl(size_t n, tlb_error *err)
{
    if (n == 0) return 0;
    for (int kind = KIND_FWD; kind <= KIND_BWD; kind++) {
        const int key[TLB_DNNL_KEY] = {kind, (int)(unsigned)(n >> 32), (int)(unsigned)n};
        if (tlb_dnnl_prepare(&cache, key, build, err) != 0) return tlb_fail_prefix(err, "gelu [%zu]", n);
    }
    return 0;
}

static tlb_dnnl_entry *acquire(int kind, size_t n, tlb_dnnl_entry *transient)
{
    const int key[TLB_DNNL_KEY] = {kind, (int)(unsigned)(n >> 32), (int)(unsigned)n};
    return tlb_dnnl_acquire(&cache, key, build, transient);
}

static void gelu_forward_dnnl(float *out, const float *inp, size_t n)
{
    if (n == 0) return;
    tlb_dnnl_entry transient;
    tlb_dnnl_entry *e = acquire(KIND_FWD, n, &transient);
    tlb_dnnl_set(e, DNNL_ARG_SRC, inp);
    tlb_dnnl_set(e, DNNL_ARG_DST, out);
    tlb_dnnl_execute(e);
    tlb_dnnl_release(e, &transient);
}

static void gelu_backward_dnnl(float *dinp, const float *dout, const float *inp, size_t n)
{
    if (!dinp || n == 0) return; /* NULL gradient = not needed (ops.h) */
    tlb_dnnl_entry transient;
    tlb_dnnl_entry *e = acquire(KIND_BWD, n, &transient);
    float *work = e->work;
    tlb_dnnl_set(e, DNNL_ARG_SRC, inp);
    tlb_dnnl_set(e, DNNL_ARG_DIFF_DST, dout);
    tlb_dnnl_set(e, DNNL_ARG_DIFF_SRC, work);
    tlb_dnnl_execute(e);
#pragma omp parallel for schedule(static) if (n >= 32768)
    for (size_t i = 0; i < n; i++) dinp[i] += work[i];
    tlb_dnnl_release(e, &transient);
}

const gelu_op gelu_dnnl = {gelu_forward_dnnl, gelu_backward_dnnl, gelu_prepare_dnnl, NULL};
