/* Every backend's implementation of every op, as the registry sees them:
 * declared from the op list (op_list.h), so a backend file's
 * `const name_op name_<backend> = {forward, backward};` is type-checked
 * against its op's signatures. */
#ifndef TLB_OPS_IMPLS_H
#define TLB_OPS_IMPLS_H

#include "ops/ops.h"

#define TLB_DECLARE_IMPLS(name, ref, avx2, avx512, dnnl) \
    TLB_WHEN(ref, extern const name##_op name##_ref;)   \
    TLB_WHEN(avx2, extern const name##_op name##_avx2;) \
    TLB_WHEN(avx512, extern const name##_op name##_avx512;) \
    TLB_WHEN(dnnl, extern const name##_op name##_dnnl;)
TLB_OP_LIST(TLB_DECLARE_IMPLS)
#undef TLB_DECLARE_IMPLS

/* The exact recomputation of each backend's LayerNorm output (ops.h,
 * layernorm_apply_fn); the layernorm_pair backends write theirs the same way. */
void layernorm_apply_ref(float *out, const float *inp, const float *mean, const float *rstd,
                         const float *gamma, const float *beta, int M, int D);
void layernorm_apply_avx2(float *out, const float *inp, const float *mean, const float *rstd,
                          const float *gamma, const float *beta, int M, int D);
void layernorm_apply_avx512(float *out, const float *inp, const float *mean, const float *rstd,
                            const float *gamma, const float *beta, int M, int D);
/* Each attention backend's forward output rebuilt from probs and v (ops.h,
 * attention_mix_fn). */
void attention_mix_ref(float *out, const float *probs, const float *v, const int *kv_len, int B, int Tq, int Tk,
                       int H, int K, const dropout_ctx *drop);
void attention_mix_avx2(float *out, const float *probs, const float *v, const int *kv_len, int B, int Tq, int Tk,
                        int H, int K, const dropout_ctx *drop);
void attention_mix_avx512(float *out, const float *probs, const float *v, const int *kv_len, int B, int Tq,
                          int Tk, int H, int K, const dropout_ctx *drop);
/* The SIMD attention backends' backward_first with att rebuilt (ops.h,
 * attention_backward_mix_fn). */
void attention_backward_mix_avx2(float *att, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                 const float *k, const float *v, const float *probs, const int *kv_len, int B,
                                 int Tq, int Tk, int H, int K, const dropout_ctx *drop);
void attention_backward_mix_avx512(float *att, float *dq, float *dk, float *dv, const float *dout, const float *q,
                                   const float *k, const float *v, const float *probs, const int *kv_len, int B,
                                   int Tq, int Tk, int H, int K, const dropout_ctx *drop);
/* The fused ffn with h saved in bf16 (ops.h, ffn_h16_op). */
extern const ffn_h16_op ffn_h16_avx2, ffn_h16_avx512;

#endif
