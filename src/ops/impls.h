/* Every backend's implementation of every op, as the registry sees them.
 * A backend that lacks an op simply has no symbol here for it (and a NULL in
 * the registry table in registry.c). */
#ifndef TLB_OPS_IMPLS_H
#define TLB_OPS_IMPLS_H

#include "ops/ops.h"

extern const dense_op dense_ref;
extern const layernorm_op layernorm_ref;
extern const gelu_op gelu_ref;
extern const attention_op attention_ref;
extern const patch_conv_op patch_conv_ref;
extern const posemb_op posemb_ref;
extern const meanpool_op meanpool_ref;
extern const softmax_xent_op softmax_xent_ref;
extern const softmax_xent_op softmax_xent_dnnl;
extern const dropout_op dropout_ref;
extern const dropout_op dropout_avx512;
extern const dropout_op dropout_avx2;
extern const residual_op residual_ref;

extern const dense_op dense_dnnl;
extern const dense_op dense_bf16; /* mixed precision: bf16 operands, f32 accumulation */
extern const layernorm_op layernorm_dnnl;
extern const gelu_op gelu_dnnl;
extern const patch_conv_op patch_conv_dnnl;
extern const dense_op dense_avx512;
extern const dense_op dense_avx2;
extern const gelu_op gelu_avx512;
extern const gelu_op gelu_avx2;
extern const layernorm_op layernorm_avx512;
extern const layernorm_op layernorm_avx2;
extern const attention_op attention_avx512;
extern const attention_op attention_avx2;
extern const patch_conv_op patch_conv_avx512;
extern const patch_conv_op patch_conv_avx2;
extern const posemb_op posemb_avx512;
extern const posemb_op posemb_avx2;
extern const meanpool_op meanpool_avx512;
extern const meanpool_op meanpool_avx2;
extern const softmax_xent_op softmax_xent_avx512;
extern const softmax_xent_op softmax_xent_avx2;
extern const residual_op residual_avx512;
extern const residual_op residual_avx2;

#endif
