/* All parameters live in one float buffer; this table names every tensor in
 * it (golden README names and Keras layouts) and records its offset, so the
 * gradients, the AdamW moments and the checkpoint use the same layout. */
#ifndef TLB_PARAMS_H
#define TLB_PARAMS_H

#include <stddef.h>

#define PARAM_NAME_MAX 64
#define PARAM_MAX_DIMS 4

typedef struct {
    char name[PARAM_NAME_MAX];
    size_t offset; /* in floats */
    size_t numel;
    int ndim;
    int shape[PARAM_MAX_DIMS];
} param_entry;

/* Offsets of one attention's tensors (prefix.ln_q.gamma, ...). */
typedef struct {
    size_t ln_q_gamma, ln_q_beta, ln_k_gamma, ln_k_beta, ln_v_gamma, ln_v_beta;
    size_t q_kernel, q_bias, k_kernel, k_bias, v_kernel, v_bias, o_kernel, o_bias;
} attn_params;

/* Offsets of one FFN's tensors (prefix.ln.gamma, ...). */
typedef struct {
    size_t ln_gamma, ln_beta, fc1_kernel, fc1_bias, fc2_kernel, fc2_bias;
} ffn_params;

/* How kernels are initialised (Keras Glorot fans need the Keras shape). */
typedef enum {
    INIT_ZEROS,
    INIT_ONES,
    INIT_POS_EMB,        /* uniform [-0.05, 0.05] */
    INIT_GLOROT,         /* fans given explicitly in the entry */
    INIT_STATE,          /* the learned initial slow state: uniform [-sqrt 3, sqrt 3], unit variance */
} init_kind;

typedef struct {
    param_entry *entries;
    int count, capacity;
    size_t total; /* floats */
    /* Per-entry init rules, parallel to entries. */
    init_kind *init;
    int (*fans)[2];
    int out_of_memory; /* an add failed to grow the table: the table is unusable */
} param_table;

void param_table_init(param_table *t);
void param_table_free(param_table *t);
/* Appends a tensor; returns its offset. When the table cannot grow it sets
 * out_of_memory and adds nothing (callers check the flag once, at the end). */
size_t param_table_add(param_table *t, const char *name, int ndim, const int *shape, init_kind init,
                       int fan_in, int fan_out);
const param_entry *param_table_find(const param_table *t, const char *name);

/* Appends an attention (query dim D, H heads of K) or FFN (D -> F -> D)
 * under `prefix`, in the golden files' order. */
attn_params param_table_add_attention(param_table *t, const char *prefix, int D, int H, int K);
ffn_params param_table_add_ffn(param_table *t, const char *prefix, int D, int F);

#endif
