#include "model/params.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void param_table_init(param_table *t) { memset(t, 0, sizeof *t); }

void param_table_free(param_table *t)
{
    free(t->entries);
    free(t->init);
    free(t->fans);
    memset(t, 0, sizeof *t);
}

/* Grows the three parallel arrays to `capacity`; 0, or -1 with all of them
 * still valid (each at least the old capacity). */
static int grow(param_table *t, int capacity)
{
    param_entry *e = realloc(t->entries, (size_t)capacity * sizeof *t->entries);
    if (!e) return -1;
    t->entries = e;
    init_kind *in = realloc(t->init, (size_t)capacity * sizeof *t->init);
    if (!in) return -1;
    t->init = in;
    int(*f)[2] = realloc(t->fans, (size_t)capacity * sizeof *t->fans);
    if (!f) return -1;
    t->fans = f;
    t->capacity = capacity;
    return 0;
}

size_t param_table_add(param_table *t, const char *name, int ndim, const int *shape, init_kind init,
                       int fan_in, int fan_out)
{
    if (t->count == t->capacity && (t->out_of_memory || grow(t, t->capacity ? 2 * t->capacity : 64) != 0)) {
        t->out_of_memory = 1;
        return t->total;
    }
    param_entry *e = &t->entries[t->count];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%s", name);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        e->numel *= (size_t)shape[i];
    }
    e->offset = t->total;
    t->init[t->count] = init;
    t->fans[t->count][0] = fan_in;
    t->fans[t->count][1] = fan_out;
    t->count++;
    t->total += e->numel;
    return e->offset;
}

const param_entry *param_table_find(const param_table *t, const char *name)
{
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->entries[i].name, name) == 0) return &t->entries[i];
    return NULL;
}

static size_t add1(param_table *t, const char *prefix, const char *name, int n, init_kind init)
{
    char full[PARAM_NAME_MAX];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    return param_table_add(t, full, 1, (int[]){n}, init, 0, 0);
}

static size_t add2(param_table *t, const char *prefix, const char *name, int rows, int cols,
                   int fan_in, int fan_out)
{
    char full[PARAM_NAME_MAX];
    snprintf(full, sizeof full, "%s.%s", prefix, name);
    return param_table_add(t, full, 2, (int[]){rows, cols}, INIT_GLOROT, fan_in, fan_out);
}

attn_params param_table_add_attention(param_table *t, const char *prefix, int D, int H, int K)
{
    attn_params a;
    const int HK = H * K;
    a.ln_q_gamma = add1(t, prefix, "ln_q.gamma", D, INIT_ONES);
    a.ln_q_beta = add1(t, prefix, "ln_q.beta", D, INIT_ZEROS);
    a.ln_k_gamma = add1(t, prefix, "ln_k.gamma", D, INIT_ONES);
    a.ln_k_beta = add1(t, prefix, "ln_k.beta", D, INIT_ZEROS);
    a.ln_v_gamma = add1(t, prefix, "ln_v.gamma", D, INIT_ONES);
    a.ln_v_beta = add1(t, prefix, "ln_v.beta", D, INIT_ZEROS);
    /* Keras EinsumDense kernels [D, H, K] and [H, K, D]: its rank-3 fan rule
     * (golden README, "Initialisation") gives these fans. */
    a.q_kernel = add2(t, prefix, "q.kernel", D, HK, H * D, K * D);
    a.q_bias = add1(t, prefix, "q.bias", HK, INIT_ZEROS);
    a.k_kernel = add2(t, prefix, "k.kernel", D, HK, H * D, K * D);
    a.k_bias = add1(t, prefix, "k.bias", HK, INIT_ZEROS);
    a.v_kernel = add2(t, prefix, "v.kernel", D, HK, H * D, K * D);
    a.v_bias = add1(t, prefix, "v.bias", HK, INIT_ZEROS);
    a.o_kernel = add2(t, prefix, "o.kernel", HK, D, K * H, D * H);
    a.o_bias = add1(t, prefix, "o.bias", D, INIT_ZEROS);
    return a;
}

ffn_params param_table_add_ffn(param_table *t, const char *prefix, int D, int F)
{
    ffn_params f;
    f.ln_gamma = add1(t, prefix, "ln.gamma", D, INIT_ONES);
    f.ln_beta = add1(t, prefix, "ln.beta", D, INIT_ZEROS);
    f.fc1_kernel = add2(t, prefix, "fc1.kernel", D, F, D, F);
    f.fc1_bias = add1(t, prefix, "fc1.bias", F, INIT_ZEROS);
    f.fc2_kernel = add2(t, prefix, "fc2.kernel", F, D, F, D);
    f.fc2_bias = add1(t, prefix, "fc2.bias", D, INIT_ZEROS);
    return f;
}
