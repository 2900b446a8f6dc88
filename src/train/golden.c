#include "train/golden.h"

#include "ops/bf16.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/block.h"
#include "model/infer.h"
#include "model/model.h"
#include "train/adamw.h"
#include "util/safetensors.h"

/* The golden README's AdamW hyper-parameters for its one step. */
#define GOLDEN_LR 1e-3f
#define GOLDEN_WD 1e-4f

static double max_abs(const float *x, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)x[i]));
    return m;
}

static golden_group *group(golden_report *r, const char *name)
{
    for (int i = 0; i < r->num_groups; i++)
        if (strcmp(r->groups[i].name, name) == 0) return &r->groups[i];
    golden_group *g = &r->groups[r->num_groups++];
    memset(g, 0, sizeof *g);
    snprintf(g->name, sizeof g->name, "%s", name);
    return g;
}

/* Compares ours against the stored tensor with tolerance rel * max|ref| + abs. */
static int compare(golden_report *r, const char *grp, const st_file *f, const char *name,
                   const float *ours, size_t n, double rel, double abs_tol, tlb_error *err)
{
    float *ref = malloc(n * sizeof *ref);
    if (!ref) return tlb_fail(err, "out of memory");
    if (st_read_f32(f, name, ref, n, err) != 0) {
        free(ref);
        return -1;
    }
    const double scale = max_abs(ref, n);
    double e = 0.0;
    for (size_t i = 0; i < n; i++) {
        const double d = fabs((double)ours[i] - (double)ref[i]);
        e = isnan(d) ? INFINITY : fmax(e, d);
    }
    free(ref);
    const double tol = rel * scale + abs_tol;
    golden_group *g = group(r, grp);
    g->tensors++;
    const double ratio = tol > 0 ? e / tol : (e > 0 ? INFINITY : 0);
    if (g->tensors == 1 || ratio > g->worst_ratio) {
        g->worst_ratio = ratio;
        g->worst_err = e;
        g->worst_tol = tol;
        snprintf(g->worst_tensor, sizeof g->worst_tensor, "%s", name);
    }
    /* Relative error only where the reference is not an exactly-zero gradient. */
    if (scale > abs_tol) g->worst_rel = fmax(g->worst_rel, e / scale);
    return 0;
}

static void finish(golden_report *r)
{
    r->passed = r->num_groups > 0;
    for (int i = 0; i < r->num_groups; i++)
        if (!(r->groups[i].worst_ratio <= 1.0)) r->passed = 0;
}

/* Loads every parameter of `t` from the file, by name, checking shapes. */
static int load_params(const st_file *f, const param_table *t, float *params, tlb_error *err)
{
    for (int i = 0; i < t->count; i++) {
        const param_entry *e = &t->entries[i];
        const st_tensor *s = st_find(f, e->name);
        if (!s) return tlb_fail(err, "%s: parameter '%s' is missing", f->path, e->name);
        int same = s->ndim == e->ndim;
        for (int d = 0; same && d < e->ndim; d++) same = s->shape[d] == e->shape[d];
        if (!same) return tlb_fail(err, "%s: parameter '%s' has another shape than the config implies", f->path, e->name);
        if (st_read_f32(f, e->name, params + e->offset, e->numel, err) != 0) return -1;
    }
    return 0;
}

/* The largest max|ref| over all stored grad.<param> tensors (Gmax). */
static double grad_gmax(const st_file *f, const param_table *t)
{
    double gmax = 0.0;
    char name[128];
    for (int i = 0; i < t->count; i++) {
        snprintf(name, sizeof name, "grad.%s", t->entries[i].name);
        const st_tensor *s = st_find(f, name);
        if (!s || s->dtype != ST_F32) continue;
        for (size_t k = 0; k < s->numel; k++) {
            float v;
            memcpy(&v, (const char *)s->data + 4 * k, 4);
            gmax = fmax(gmax, fabs(v));
        }
    }
    return gmax;
}

/* Gradients and the AdamW step of every parameter in `t`. */
static int check_grads_and_adamw(golden_report *r, const st_file *f, const param_table *t,
                                 const float *params, const float *grads, tlb_error *err)
{
    const double gmax = grad_gmax(f, t);
    const size_t n = t->total;
    char name[128];
    for (int i = 0; i < t->count; i++) {
        const param_entry *e = &t->entries[i];
        snprintf(name, sizeof name, "grad.%s", e->name);
        if (compare(r, "grad", f, name, grads + e->offset, e->numel, 1e-4, 1e-5 * gmax, err) != 0) return -1;
    }
    snprintf(name, sizeof name, "adamw.%s", t->count ? t->entries[0].name : "");
    if (!st_find(f, name)) return 0;

    float *w = malloc(n * sizeof *w), *m = calloc(n, sizeof *m), *v = calloc(n, sizeof *v);
    float *stored = malloc(n * sizeof *stored);
    int rc = (w && m && v && stored) ? 0 : tlb_fail(err, "out of memory");
    const adamw_hparams h = adamw_keras_defaults(GOLDEN_LR, GOLDEN_WD);
    /* (a) our gradients through our AdamW: the end-to-end step. */
    if (rc == 0) {
        memcpy(w, params, n * sizeof *w);
        adamw_step(w, m, v, grads, n, 1, &h);
        for (int i = 0; i < t->count && rc == 0; i++) {
            const param_entry *e = &t->entries[i];
            snprintf(name, sizeof name, "grad.%s", e->name);
            if ((rc = st_read_f32(f, name, stored + e->offset, e->numel, err)) != 0) break;
            /* Exactly-zero gradients (README) make the t = 1 step lr*g/(|g|+eps)
             * amplify round-off: those tensors get an extra 2 lr. */
            const int zero_grad = max_abs(stored + e->offset, e->numel) <= 1e-9 * gmax;
            snprintf(name, sizeof name, "adamw.%s", e->name);
            rc = compare(r, "adamw", f, name, w + e->offset, e->numel, 1e-4,
                         0.05 * GOLDEN_LR + (zero_grad ? 2.0 * GOLDEN_LR : 0.0), err);
        }
    }
    /* (b) the stored gradients through our AdamW: the optimizer alone, tightly. */
    if (rc == 0) {
        memcpy(w, params, n * sizeof *w);
        memset(m, 0, n * sizeof *m);
        memset(v, 0, n * sizeof *v);
        adamw_step(w, m, v, stored, n, 1, &h);
        for (int i = 0; i < t->count && rc == 0; i++) {
            const param_entry *e = &t->entries[i];
            snprintf(name, sizeof name, "adamw.%s", e->name);
            rc = compare(r, "adamw_fed", f, name, w + e->offset, e->numel, 2e-6, 0.0, err);
        }
    }
    free(w);
    free(m);
    free(v);
    free(stored);
    return rc;
}

static int check_block(golden_report *r, const st_file *f, const op_table *ops, tlb_error *err)
{
    int D, H, K, mult, B, T;
    if (st_read_int(f, "config.embed_dim", &D, err) || st_read_int(f, "config.num_heads", &H, err) ||
        st_read_int(f, "config.key_dim", &K, err) || st_read_int(f, "config.ffn_mult", &mult, err) ||
        st_read_int(f, "config.batch_size", &B, err) || st_read_int(f, "config.tokens", &T, err))
        return -1;
    if (D < 1 || H < 1 || K < 1 || mult < 1 || B < 1 || T < 1 || T > TLB_MAX_KEYS || D > 8192 ||
        (long)H * K > 65536 || (long)B * T > 1 << 20)
        return tlb_fail(err, "%s: config.* values out of range", f->path);
    snprintf(r->kind, sizeof r->kind, "block");
    snprintf(r->summary, sizeof r->summary, "one block: D=%d H=%d K=%d ffn_mult=%d B=%d T=%d", D, H, K, mult, B, T);
    param_table t;
    param_table_init(&t);
    attn_params ap = param_table_add_attention(&t, "blk.attn", D, H, K);
    ffn_params fp = param_table_add_ffn(&t, "blk.ffn", D, mult * D);
    const block_dims dims = {D, H, K, mult * D};
    const size_t nx = (size_t)B * T * D;
    float *params = calloc(t.total, sizeof(float)), *grads = calloc(t.total, sizeof(float));
    float *xq = malloc(nx * 4), *xkv = malloc(nx * 4), *cot = malloc(nx * 4);
    float *dxq = calloc(nx, 4), *dxkv = calloc(nx, 4);
    arena a = {0};
    block_acts acts;
    block_scratch s;
    const block_keep keep = {block_keeps_normalised(ops), block_keeps_att(ops), block_saves_h_bf16(ops), 0}; /* as a plan would */
    int rc = (params && grads && xq && xkv && cot && dxq && dxkv && !t.out_of_memory) ? 0 : tlb_fail(err, "out of memory");
    if (rc == 0) rc = load_params(f, &t, params, err);
    if (rc == 0) rc = st_read_f32(f, "x_q", xq, nx, err);
    if (rc == 0) rc = st_read_f32(f, "x_kv", xkv, nx, err);
    if (rc == 0) rc = st_read_f32(f, "cot", cot, nx, err);
    if (rc == 0) {
        block_acts_plan(&acts, &a, dims, B, T, T, keep);
        block_scratch_plan(&s, &a, dims, B, T, T);
        rc = arena_commit(&a) == 0 ? 0 : tlb_fail(err, "out of memory");
    }
    /* The block's kernels set up as a plan would; in bf16 its weights converted once. */
    block_kernels k = {ops, NULL, NULL, NULL}; /* the block folds per call where it folds */
    size_t staging = 0;
    uint16_t *params16 = NULL, *stage16 = NULL;
    if (rc == 0) rc = block_prepare(&k, dims, B, T, T, &staging, err);
    if (rc == 0 && ops->bf16_dense) {
        params16 = malloc(t.total * sizeof *params16);
        stage16 = malloc((staging ? staging : 1) * sizeof *stage16);
        if (!params16 || !stage16) rc = tlb_fail(err, "out of memory");
        else bf16_convert(params16, params, t.total);
        k.params16 = params16, k.staging = stage16;
    }
    if (rc == 0) {
        block_acts_plan(&acts, &a, dims, B, T, T, keep);
        block_scratch_plan(&s, &a, dims, B, T, T);
        block_forward(&acts, &s, &k, params, &ap, &fp, xq, xkv, NULL, dims, B, T, T, NULL);
        double loss = 0.0;
        for (size_t i = 0; i < nx; i++) loss += (double)acts.out[i] * cot[i];
        float lossf = (float)loss;
        rc = compare(r, "attn_out", f, "attn_out", acts.attn_out, nx, 1e-4, 0, err);
        if (rc == 0) rc = compare(r, "y", f, "y", acts.out, nx, 1e-4, 0, err);
        if (rc == 0) rc = compare(r, "loss", f, "loss", &lossf, 1, 1e-4, 0, err);
        block_backward(dxq, dxkv, grads, cot, &acts, &k, params, &ap, &fp, &s, NULL, dims, B, T, T, NULL);
        const double gmax = grad_gmax(f, &t);
        if (rc == 0) rc = compare(r, "grad", f, "grad.x_q", dxq, nx, 1e-4, 1e-5 * gmax, err);
        if (rc == 0) rc = compare(r, "grad", f, "grad.x_kv", dxkv, nx, 1e-4, 1e-5 * gmax, err);
        if (rc == 0) rc = check_grads_and_adamw(r, f, &t, params, grads, err);
    }
    arena_release(&a);
    free(params16), free(stage16);
    free(params), free(grads), free(xq), free(xkv), free(cot), free(dxq), free(dxkv);
    param_table_free(&t);
    return rc;
}

static int read_model_config(const st_file *f, tlb_model_config *c, int *batch, tlb_error *err)
{
    memset(c, 0, sizeof *c);
    int wiring;
    struct { const char *name; int *out; } keys[] = {
        {"config.image_size", &c->image_size}, {"config.patch_size", &c->patch_size},
        {"config.embed_dim", &c->embed_dim},   {"config.chunk_size", &c->chunk_size},
        {"config.r", &c->r},                   {"config.num_layers", &c->num_layers},
        {"config.num_heads", &c->num_heads},   {"config.key_dim", &c->key_dim},
        {"config.ffn_mult", &c->ffn_mult},     {"config.num_classes", &c->num_classes},
        {"config.batch_size", batch},          {"config.wiring", &wiring},
    };
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (st_read_int(f, keys[i].name, keys[i].out, err) != 0) return -1;
    if (wiring != 0 && wiring != 1) return tlb_fail(err, "%s: config.wiring must be 0 (keras) or 1 (paper)", f->path);
    c->wiring = (tlb_wiring)wiring;
    /* The slow-state options; a file without them is a default one. */
    int state_init = 0, readout = 0;
    struct { const char *name; int *out; } options[] = {
        {"config.num_state_tokens", &c->num_state_tokens},
        {"config.state_init", &state_init},
        {"config.readout", &readout},
    };
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (st_find(f, options[i].name) && st_read_int(f, options[i].name, options[i].out, err) != 0) return -1;
    if (state_init < 0 || state_init > 2)
        return tlb_fail(err, "%s: config.state_init must be 0 (zeros), 1 (learned) or 2 (sinusoid)", f->path);
    if (readout < 0 || readout > 1)
        return tlb_fail(err, "%s: config.readout must be 0 (last_fast) or 1 (state)", f->path);
    c->state_init = (tlb_state_init)state_init;
    c->readout = (tlb_readout)readout;
    /* The sequence options; absent in files of the image model. */
    int input = 0, pos_emb = 0;
    struct { const char *name; int *out; } sequence[] = {
        {"config.input", &input},           {"config.vocab_size", &c->vocab_size},
        {"config.seq_len", &c->seq_len},    {"config.pos_emb", &pos_emb},
        {"config.head_hidden", &c->head_hidden},
    };
    for (size_t i = 0; i < sizeof sequence / sizeof sequence[0]; i++)
        if (st_find(f, sequence[i].name) && st_read_int(f, sequence[i].name, sequence[i].out, err) != 0) return -1;
    if (input < 0 || input > 1) return tlb_fail(err, "%s: config.input must be 0 (image) or 1 (tokens)", f->path);
    if (pos_emb < 0 || pos_emb > 1) return tlb_fail(err, "%s: config.pos_emb must be 0 (global) or 1 (chunk)", f->path);
    c->input = (tlb_input)input;
    c->pos_emb = (tlb_pos_emb)pos_emb;
    if (*batch < 1 || *batch > 65536) return tlb_fail(err, "%s: config.batch_size %d out of range", f->path, *batch);
    if (model_config_validate(c, err) != 0) return tlb_fail_prefix(err, "%s: config", f->path);
    return 0;
}

static int check_model(golden_report *r, const st_file *f, const op_table *ops, tlb_error *err)
{
    tlb_model_config c;
    int B;
    if (read_model_config(f, &c, &B, err) != 0) return -1;
    snprintf(r->kind, sizeof r->kind, "model");
    char input[64];
    if (c.input == INPUT_TOKENS) snprintf(input, sizeof input, "tokens T=%d V=%d", c.seq_len, c.vocab_size);
    else snprintf(input, sizeof input, "S=%d P=%d", c.image_size, c.patch_size);
    int len = snprintf(r->summary, sizeof r->summary, "%s %s D=%d C=%d r=%d L=%d H=%d K=%d B=%d",
                       wiring_name(c.wiring), input, c.embed_dim, c.chunk_size, c.r, c.num_layers, c.num_heads,
                       c.key_dim, B);
    if (len > 0 && (size_t)len < sizeof r->summary &&
        (c.num_state_tokens != 0 || c.state_init != STATE_INIT_ZEROS || c.readout != READOUT_LAST_FAST))
        len += snprintf(r->summary + len, sizeof r->summary - (size_t)len, " Ns=%d state_init=%s readout=%s",
                        model_num_state(&c), state_init_name(c.state_init), readout_name(c.readout));
    if (len > 0 && (size_t)len < sizeof r->summary && (c.pos_emb != POS_EMB_GLOBAL || c.head_hidden > 0))
        snprintf(r->summary + len, sizeof r->summary - (size_t)len, " pos_emb=%s head_hidden=%d",
                 pos_emb_name(c.pos_emb), c.head_hidden);
    tlb_model m;
    char name_last[64];
    if (model_create(&m, &c, err) != 0) return -1;
    model_use_ops(&m, ops);
    const int S = c.image_size, V = c.num_classes, C = c.chunk_size, D = c.embed_dim;
    const int Ns = model_num_state(&c);
    const int tokens = c.input == INPUT_TOKENS;
    /* The input batch: float images, or int32 token ids (range-checked). */
    const size_t nx = tokens ? (size_t)B * c.seq_len : (size_t)B * S * S * 3;
    void *img = malloc(nx * 4);
    int *labels = malloc((size_t)B * sizeof *labels);
    int rc = (img && labels) ? 0 : tlb_fail(err, "out of memory");
    if (rc == 0) rc = load_params(f, &m.layout.table, m.params, err);
    if (rc == 0) rc = tokens ? st_read_i32(f, "x", img, nx, err) : st_read_f32(f, "x", img, nx, err);
    if (rc == 0 && model_check_tokens(&m, img, B, err) != 0) rc = tlb_fail_prefix(err, "%s: x", f->path);
    if (rc == 0) rc = st_read_i32(f, "labels", labels, (size_t)B, err);
    for (int b = 0; rc == 0 && b < B; b++)
        if (labels[b] < 0 || labels[b] >= V) rc = tlb_fail(err, "%s: labels[%d] = %d is not a class", f->path, b, labels[b]);
    if (rc == 0) rc = model_plan(&m, B, err);
    if (rc == 0) {
        const float loss = (float)(model_forward(&m, img, labels, B, NULL) / B);
        rc = compare(r, "logits", f, "logits", m.logits, (size_t)B * V, 1e-4, 0, err);
        if (rc == 0) rc = compare(r, "loss", f, "loss", &loss, 1, 1e-4, 0, err);
        char name[64];
        for (int ch = 0; rc == 0 && ch < model_num_chunks(&c); ch++) {
            snprintf(name, sizeof name, "trace.fast.%d", ch);
            rc = compare(r, "trace", f, name, model_trace_fast(&m, ch), (size_t)B * C * D, 1e-4, 0, err);
            snprintf(name, sizeof name, "trace.slow.%d", ch);
            if (rc == 0) rc = compare(r, "trace", f, name, model_trace_slow(&m, ch), (size_t)B * Ns * D, 1e-4, 0, err);
        }
    }
    if (rc == 0) { /* the forward-only plan, in tiles of one sample so a tile boundary is crossed */
        model_inference inf;
        rc = model_inference_plan(&inf, &m, B, 1, INFER_STATE, err);
        if (rc == 0) {
            rc = model_inference_run(&inf, img, labels, B, err);
            if (rc == 0) rc = compare(r, "inference", f, "logits", inf.logits, (size_t)B * V, 1e-4, 0, err);
            snprintf(name_last, sizeof name_last, "trace.slow.%d", model_num_chunks(&c) - 1);
            if (rc == 0) rc = compare(r, "inference", f, name_last, inf.state, (size_t)B * Ns * D, 1e-4, 0, err);
            model_inference_free(&inf);
        }
    }
    if (rc == 0) {
        model_zero_grads(&m);
        model_backward(&m, img, labels, B, 1.0f / (float)B, NULL);
        rc = check_grads_and_adamw(r, f, &m.layout.table, m.params, m.grads, err);
    }
    free(img);
    free(labels);
    model_destroy(&m);
    return rc;
}

int golden_check(const char *path, const op_table *ops, golden_report *report, tlb_error *err)
{
    memset(report, 0, sizeof *report);
    st_file f;
    if (st_open(&f, path, err) != 0) return -1;
    int rc = st_find(&f, "config.tokens") ? check_block(report, &f, ops, err) : check_model(report, &f, ops, err);
    st_close(&f);
    if (rc == 0) finish(report);
    return rc;
}
