/* The one list of ops and the backends that implement them. Everything else
 * about the set of ops is derived from it: the op ids (tlb_op), the *_op
 * structs and the dispatch table (ops.h), the backend declarations
 * (impls.h), the registry rows (registry.c) and the tests' per-op tables.
 *
 * X(name, ref, avx2, avx512, dnnl): 1 where that backend implements the op,
 * which then defines `const name_op name_<backend>` in src/ops/name_<backend>.c.
 * The signatures name_forward_fn and name_backward_fn are declared in ops.h.
 * The order is the registry's (`tlb ops` prints it); the fused stages
 * (ops.h, ops_table_fused) come last. */
#ifndef TLB_OPS_OP_LIST_H
#define TLB_OPS_OP_LIST_H

#define TLB_OP_LIST(X)                 \
    X(dense,        1, 1, 1, 1)        \
    X(layernorm,    1, 1, 1, 1)        \
    X(gelu,         1, 1, 1, 1)        \
    X(attention,    1, 1, 1, 0)        \
    X(patch_conv,   1, 1, 1, 1)        \
    X(posemb,       1, 1, 1, 0)        \
    X(meanpool,     1, 1, 1, 0)        \
    X(softmax_xent, 1, 1, 1, 1)        \
    X(dropout,      1, 1, 1, 0)        \
    X(residual,     1, 1, 1, 0)        \
    X(token_embed,  1, 1, 1, 0)        \
    X(relu,         1, 1, 1, 0)        \
    X(layernorm_pair, 1, 1, 1, 0)      \
    X(ffn,          1, 1, 1, 0)

/* TLB_WHEN(flag, text): text if flag is 1, nothing if 0.
 * TLB_PICK(flag, expr): expr if flag is 1, NULL if 0. */
#define TLB_WHEN(flag, ...) TLB_WHEN_##flag(__VA_ARGS__)
#define TLB_WHEN_0(...)
#define TLB_WHEN_1(...) __VA_ARGS__
#define TLB_PICK(flag, expr) TLB_PICK_##flag(expr)
#define TLB_PICK_0(expr) NULL
#define TLB_PICK_1(expr) (expr)

#endif
