/* Softmax cross-entropy on oneDNN's softmax (the log variant, softmax_v2 with
 * dnnl_softmax_log): log-probabilities of the (B, V) logits in one primitive,
 * into the shape's work buffer; then loss = -logp[label] and probs =
 * exp(logp), which keeps the loss exact where a probability underflows (as
 * the ref's log-sum-exp does). The backward, (probs - onehot) * scale, is one
 * elementwise pass over saved probabilities (plus the label's -scale):
 * oneDNN has no primitive for the fused gradient, so it is plain C. */
#include <math.h>

#include "ops/dnnl_common.h"
#include "ops/impls.h"

TLB_DNNL_THREAD_CACHE cache;

static void build(tlb_dnnl_entry *e, const int key[TLB_DNNL_KEY])
{
    const int B = key[0], V = key[1];
    dnnl_memory_desc_t md;
    TLB_DNNL_TRY(e, tlb_dnnl_md2d(&md, B, V, V, 1, dnnl_f32));
    dnnl_softmax_v2_desc_t desc;
    TLB_DNNL_TRY(e, dnnl_softmax_v2_forward_desc_init(&desc, dnnl_forward_inference, dnnl_softmax_log,
                                                      &md, &md, 1));
    dnnl_primitive_attr_t attr = tlb_dnnl_attr(0, 1);
    TLB_DNNL_TRY(e, attr ? dnnl_success : dnnl_out_of_memory);
    dnnl_primitive_desc_t pd;
    const dnnl_status_t st = dnnl_primitive_desc_create(&pd, &desc, attr, tlb_dnnl_engine(), NULL);
    dnnl_primitive_attr_destroy(attr);
    TLB_DNNL_TRY(e, st);
    const int args[] = {DNNL_ARG_SRC, DNNL_ARG_DST};
    tlb_dnnl_entry_init(e, pd, args, 2, (size_t)B * V);
}

static int softmax_xent_prepare_dnnl(int B, int V, tlb_error *err)
{
    if (B <= 0 || V <= 0) return 0;
    const int key[TLB_DNNL_KEY] = {B, V};
    if (tlb_dnnl_prepare(&cache, key, build, err) != 0) return tlb_fail_prefix(err, "softmax_xent [%d,%d]", B, V);
    return 0;
}

static void softmax_xent_forward_dnnl(float *losses, float *probs, const float *logits,
                                      const int *labels, int B, int V)
{
    if (B <= 0 || V <= 0) return;
    const int key[TLB_DNNL_KEY] = {B, V};
    tlb_dnnl_entry transient;
    tlb_dnnl_entry *e = tlb_dnnl_acquire(&cache, key, build, &transient);
    const float *logp = e->work;
    tlb_dnnl_set(e, DNNL_ARG_SRC, logits);
    tlb_dnnl_set(e, DNNL_ARG_DST, logp);
    tlb_dnnl_execute(e);
    for (int b = 0; b < B; b++) {
        const float *lp = logp + (size_t)b * V;
        float *p = probs + (size_t)b * V;
        for (int v = 0; v < V; v++) p[v] = expf(lp[v]);
        /* oneDNN's log is accurate to about 1e-6 absolute, so a certain
         * prediction could come out as a tiny negative loss: cross-entropy
         * is >= 0 (V = 1 gives exactly 0, as in ref). */
        losses[b] = fmaxf(-lp[labels[b]], 0.0f);
    }
    tlb_dnnl_release(e, &transient);
}

static void softmax_xent_backward_dnnl(float *dlogits, const float *probs, const int *labels,
                                       float scale, int B, int V)
{
    if (!dlogits) return; /* NULL gradient = not needed (ops.h) */
    const size_t n = (size_t)B * V;
    for (size_t i = 0; i < n; i++) dlogits[i] += probs[i] * scale;
    for (int b = 0; b < B; b++) dlogits[(size_t)b * V + labels[b]] -= scale;
}

const softmax_xent_op softmax_xent_dnnl = {softmax_xent_forward_dnnl, softmax_xent_backward_dnnl,
                                          softmax_xent_prepare_dnnl, NULL};
