/* The op x backend x direction table at the seed model's shapes for one
 * micro-batch: median time per call, GFLOP/s (compute ops) or GB/s
 * (memory-bound ops, bytes read + written), the percentage of the probe's
 * peak, the speedup over ref in this run, and the automatic choice's
 * distance from the fastest backend. The calls per micro-batch come from the
 * wiring's schedule, so the table also adds up to a modelled micro-batch. */
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "model/model.h"
#include "ops/ops.h"

typedef struct {
    tlb_backend be;           /* whose implementation the closures call */
    int M, K, N;              /* dense */
    int B, S, P, D, T, H;     /* others */
    size_t n;
    float rate;
    float *a, *b, *c, *d, *e, *f, *g, *h, *i, *j, *u, *v, *w, *y; /* buffers, meaning per op */
    int *labels;
} op_ctx;

/* ---- one closure per op and direction ---- */
static void dense_f(void *p)
{
    op_ctx *x = p;
    ops_impl_dense(x->be)->forward(x->a, x->b, x->c, x->d, x->M, x->K, x->N);
}
static void dense_b(void *p)
{
    op_ctx *x = p;
    ops_impl_dense(x->be)->backward(x->e, x->f, x->g, x->h, x->b, x->c, x->M, x->K, x->N);
}
static void ln_f(void *p)
{
    op_ctx *x = p;
    ops_impl_layernorm(x->be)->forward(x->a, x->b, x->c, x->d, x->e, x->f, x->M, x->D);
}
static void ln_b(void *p)
{
    op_ctx *x = p;
    ops_impl_layernorm(x->be)->backward(x->g, x->h, x->i, x->j, x->d, x->e, x->b, x->c, x->M, x->D);
}
static void gelu_f(void *p)
{
    op_ctx *x = p;
    ops_impl_gelu(x->be)->forward(x->a, x->b, x->n);
}
static void gelu_b(void *p)
{
    op_ctx *x = p;
    ops_impl_gelu(x->be)->backward(x->c, x->d, x->b, x->n);
}
static void attn_f(void *p)
{
    op_ctx *x = p;
    const dropout_ctx drop = {x->rate, 99, 0};
    ops_impl_attention(x->be)->forward(x->a, x->b, x->c, x->d, x->e, NULL, x->B, x->T, x->T, x->H, x->K, &drop);
}
static void attn_b(void *p)
{
    op_ctx *x = p;
    const dropout_ctx drop = {x->rate, 99, 0};
    ops_impl_attention(x->be)->backward(x->f, x->g, x->h, x->i, x->c, x->d, x->e, x->b, x->B, x->T, x->T,
                                              x->H, x->K, &drop);
}
static void conv_f(void *p)
{
    op_ctx *x = p;
    ops_impl_patch_conv(x->be)->forward(x->a, x->b, x->c, x->d, x->B, x->S, x->P, x->D);
}
static void conv_b(void *p) /* as the model calls it: no image gradient */
{
    op_ctx *x = p;
    ops_impl_patch_conv(x->be)->backward(NULL, x->e, x->f, x->g, x->b, x->c, x->B, x->S, x->P, x->D);
}
static void drop_f(void *p)
{
    op_ctx *x = p;
    const dropout_ctx drop = {x->rate, 77, 0};
    ops_impl_dropout(x->be)->forward(x->a, x->a, x->B, x->n, &drop);
}
static void drop_b(void *p)
{
    op_ctx *x = p;
    const dropout_ctx drop = {x->rate, 77, 0};
    ops_impl_dropout(x->be)->backward(x->b, x->c, x->B, x->n, &drop);
}
static void res_f(void *p)
{
    op_ctx *x = p;
    ops_impl_residual(x->be)->forward(x->a, x->a, x->b, x->n);
}
static void res_b(void *p) /* as the model calls it: one input gradient */
{
    op_ctx *x = p;
    ops_impl_residual(x->be)->backward(x->c, NULL, x->b, x->n);
}
static void pos_f(void *p)
{
    op_ctx *x = p;
    ops_impl_posemb(x->be)->forward(x->a, x->a, x->b, x->B, x->N, x->D);
}
static void pos_b(void *p)
{
    op_ctx *x = p;
    ops_impl_posemb(x->be)->backward(NULL, x->c, x->a, x->B, x->N, x->D);
}
static void pool_f(void *p)
{
    op_ctx *x = p;
    ops_impl_meanpool(x->be)->forward(x->a, x->b, x->B, x->T, x->D);
}
static void pool_b(void *p)
{
    op_ctx *x = p;
    ops_impl_meanpool(x->be)->backward(x->c, x->a, x->B, x->T, x->D);
}
static void xent_f(void *p)
{
    op_ctx *x = p;
    ops_impl_softmax_xent(x->be)->forward(x->a, x->b, x->c, x->labels, x->B, x->N);
}
static void xent_b(void *p)
{
    op_ctx *x = p;
    ops_impl_softmax_xent(x->be)->backward(x->d, x->b, x->labels, 1.0f / 2048, x->B, x->N);
}
/* The fused stages, called as block.c calls them (ops.h). */
static void lnp_f(void *p)
{
    op_ctx *x = p;
    ops_impl_layernorm_pair(x->be)->forward(x->a, x->b, x->c, x->d, x->e, x->f, x->g, x->h, x->i, x->M, x->D);
}
static void lnp_b(void *p)
{
    op_ctx *x = p;
    ops_impl_layernorm_pair(x->be)->backward(x->j, x->u, x->v, x->w, x->y, x->a, x->b, x->e, x->f, x->h,
                                             x->c, x->d, x->M, x->D);
}
static void ffn_f(void *p)
{
    op_ctx *x = p;
    const dropout_ctx drop = {x->rate, 77, 0};
    ops_impl_ffn(x->be)->forward(x->a, x->b, x->c, x->d, x->e, x->f, x->g, x->h, x->B, x->T, x->D, x->N, &drop);
}
static void ffn_b(void *p) /* as the model calls it: no dres (block.c copies dout first) */
{
    op_ctx *x = p;
    const dropout_ctx drop = {x->rate, 77, 0};
    ops_impl_ffn(x->be)->backward(x->i, x->j, x->u, x->v, x->w, NULL, x->y, x->c, x->d, x->f, x->b, x->B,
                                  x->T, x->D, x->N, &drop);
}

/* ---- the table ---- */
typedef struct {
    const char *op;
    char shape[48];
    const char *dir;
    double flops, bytes; /* per call; flops > 0 marks a compute op */
    double calls;        /* per micro-batch forward + backward */
    double t[TLB_BACKEND_COUNT];
} row;

#define MAX_ROWS 64
static row rows[MAX_ROWS];
static int nrows;

static void measure(const bench_opts *o, const char *op, const char *shape, op_ctx *x,
                    void (*fwd)(void *), void (*bwd)(void *), double fl_f, double fl_b,
                    double by_f, double by_b, double calls_f, double calls_b)
{
    const int id = ops_find(op);
    row *rf = &rows[nrows++], *rb = &rows[nrows++];
    *rf = (row){op, "", "fwd", fl_f, by_f, calls_f, {0}};
    *rb = (row){op, "", "bwd", fl_b, by_b, calls_b, {0}};
    snprintf(rf->shape, sizeof rf->shape, "%s", shape);
    snprintf(rb->shape, sizeof rb->shape, "%s", shape);
    for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
        x->be = (tlb_backend)be;
        if (!ops_impl(id, x->be) || !backend_supported(x->be)) continue;
        rf->t[be] = bench_median(fwd, x, o->seconds);
        rb->t[be] = bench_median(bwd, x, o->seconds);
    }
}

static void free_ctx(op_ctx *x)
{
    float *bufs[] = {x->a, x->b, x->c, x->d, x->e, x->f, x->g, x->h, x->i, x->j, x->u, x->v, x->w, x->y};
    for (unsigned k = 0; k < sizeof bufs / sizeof *bufs; k++) free(bufs[k]);
    free(x->labels);
    memset(x, 0, sizeof *x);
}

static void time_dense(const bench_opts *o, const char *tag, int M, int K, int N, double calls)
{
    op_ctx x = {.M = M, .K = K, .N = N};
    x.a = bench_rand((size_t)M * N, 1), x.b = bench_rand((size_t)M * K, 1);
    x.c = bench_rand((size_t)K * N, 0.1f), x.d = bench_rand(N, 1);
    x.e = bench_rand((size_t)M * K, 1), x.f = bench_rand((size_t)K * N, 1);
    x.g = bench_rand(N, 1), x.h = bench_rand((size_t)M * N, 1);
    char shape[48];
    snprintf(shape, sizeof shape, "%s M%d K%d N%d", tag, M, K, N);
    const double fl = 2.0 * M * K * N;
    measure(o, "dense", shape, &x, dense_f, dense_b, fl, 2 * fl, 0, 0, calls, calls);
    free_ctx(&x);
}

static void time_layernorm(const bench_opts *o, const char *tag, int M, int D, double calls)
{
    const size_t n = (size_t)M * D;
    op_ctx x = {.M = M, .D = D};
    x.a = bench_rand(n, 1), x.b = bench_rand(M, 1), x.c = bench_rand(M, 1);
    x.d = bench_rand(n, 2), x.e = bench_rand(D, 1), x.f = bench_rand(D, 1);
    x.g = bench_rand(n, 1), x.h = bench_rand(D, 1), x.i = bench_rand(D, 1), x.j = bench_rand(n, 1);
    ln_f(&(op_ctx){.be = TLB_BACKEND_REF, .a = x.a, .b = x.b, .c = x.c, .d = x.d, .e = x.e, .f = x.f,
                   .M = M, .D = D}); /* real mean/rstd for backward */
    char shape[48];
    snprintf(shape, sizeof shape, "%s M%d D%d", tag, M, D);
    measure(o, "layernorm", shape, &x, ln_f, ln_b, 0, 0, 4.0 * (2.0 * n + 2.0 * M),
            4.0 * (4.0 * n + 2.0 * M), calls, calls);
    free_ctx(&x);
}

static void time_gelu(const bench_opts *o, size_t n, double calls_f, double calls_b)
{
    op_ctx x = {.n = n};
    x.a = bench_rand(n, 1), x.b = bench_rand(n, 3), x.c = bench_rand(n, 1), x.d = bench_rand(n, 1);
    char shape[48];
    snprintf(shape, sizeof shape, "n%zu", n);
    measure(o, "gelu", shape, &x, gelu_f, gelu_b, 0, 0, 8.0 * n, 16.0 * n, calls_f, calls_b);
    free_ctx(&x);
}

static void time_attention(const bench_opts *o, int B, int T, int H, int K, float rate, double calls)
{
    const size_t n = (size_t)B * T * H * K, np = (size_t)B * H * T * T;
    op_ctx x = {.B = B, .T = T, .H = H, .K = K, .rate = rate};
    x.a = bench_rand(n, 1), x.b = bench_rand(np, 1), x.c = bench_rand(n, 1), x.d = bench_rand(n, 1);
    x.e = bench_rand(n, 1), x.f = bench_rand(n, 1), x.g = bench_rand(n, 1), x.h = bench_rand(n, 1);
    x.i = bench_rand(n, 1);
    x.be = TLB_BACKEND_REF;
    attn_f(&x); /* real probabilities for backward */
    char shape[48];
    snprintf(shape, sizeof shape, "B%d T%d H%d K%d drop%.1f", B, T, H, K, rate);
    const double fl = 4.0 * B * H * T * T * K;
    measure(o, "attention", shape, &x, attn_f, attn_b, fl, 2 * fl, 0, 0, calls, calls);
    free_ctx(&x);
}

static void time_patch_conv(const bench_opts *o, int B, int S, int P, int D)
{
    const int N = (S / P) * (S / P), R = P * P * 3;
    const size_t no = (size_t)B * N * D;
    op_ctx x = {.B = B, .S = S, .P = P, .D = D};
    x.a = bench_rand(no, 1), x.b = bench_rand((size_t)B * S * S * 3, 1);
    x.c = bench_rand((size_t)R * D, 0.1f), x.d = bench_rand(D, 1);
    x.e = bench_rand((size_t)R * D, 1), x.f = bench_rand(D, 1), x.g = bench_rand(no, 1);
    char shape[48];
    snprintf(shape, sizeof shape, "B%d S%d P%d D%d (M%d K%d N%d)", B, S, P, D, B * N, R, D);
    const double fl = 2.0 * B * N * R * D;
    measure(o, "patch_conv", shape, &x, conv_f, conv_b, fl, fl, 0, 0, 1, 1);
    free_ctx(&x);
}

/* The fused stages at the block's shapes, 0 calls: the micro-batch sums
 * above model the unfused ops; the lines after the table set each stage
 * against the ops it stands in for. */
static void time_fused(const bench_opts *o, int B, int T, int D, int F, float rate)
{
    const int M = B * T;
    const size_t n = (size_t)M * D, nf = (size_t)M * F;
    char shape[48];
    {
        op_ctx x = {.M = M, .D = D};
        x.a = bench_rand(n, 1), x.b = bench_rand(n, 1), x.c = bench_rand(M, 1), x.d = bench_rand(M, 1);
        x.e = bench_rand(n, 2), x.f = bench_rand(D, 1), x.g = bench_rand(D, 1), x.h = bench_rand(D, 1);
        x.i = bench_rand(D, 1), x.j = bench_rand(n, 1), x.u = bench_rand(D, 1), x.v = bench_rand(D, 1);
        x.w = bench_rand(D, 1), x.y = bench_rand(D, 1);
        x.be = TLB_BACKEND_REF;
        lnp_f(&x); /* real mean/rstd for backward */
        snprintf(shape, sizeof shape, "kv M%d D%d (fused)", M, D);
        measure(o, "layernorm_pair", shape, &x, lnp_f, lnp_b, 0, 0, 4.0 * (3.0 * n + 2.0 * M),
                4.0 * (5.0 * n + 2.0 * M), 0, 0);
        free_ctx(&x);
    }
    {
        op_ctx x = {.B = B, .T = T, .D = D, .N = F, .rate = rate};
        x.a = bench_rand(n, 1), x.b = bench_rand(nf, 1), x.c = bench_rand(n, 1);
        x.d = bench_rand((size_t)D * F, 0.1f), x.e = bench_rand(F, 1), x.f = bench_rand((size_t)F * D, 0.1f);
        x.g = bench_rand(D, 1), x.h = bench_rand(n, 1), x.i = bench_rand(n, 1);
        x.j = bench_rand((size_t)D * F, 1), x.u = bench_rand(F, 1), x.v = bench_rand((size_t)F * D, 1);
        x.w = bench_rand(D, 1), x.y = bench_rand(n, 1);
        snprintf(shape, sizeof shape, "B%d T%d D%d F%d p%.1f (fused)", B, T, D, F, rate);
        const double fl = 4.0 * M * D * F;
        measure(o, "ffn", shape, &x, ffn_f, ffn_b, fl, 2 * fl, 0, 0, 0, 0);
        free_ctx(&x);
    }
}

/* Per block execution on the automatic choice: each fused stage against
 * the unfused ops' rows it replaces (plus the unfused path's memsets of its
 * intermediates, timed here). */
static double row_t(const char *op, const char *tag, const char *dir, tlb_backend be)
{
    for (int r = 0; r < nrows; r++)
        if (strcmp(rows[r].op, op) == 0 && strncmp(rows[r].shape, tag, strlen(tag)) == 0 &&
            strcmp(rows[r].dir, dir) == 0)
            return rows[r].t[be];
    return 0;
}

static void memset_f(void *p)
{
    op_ctx *x = p;
    memset(x->a, 0, x->n * sizeof(float));
}

static void fused_vs_ops(const bench_opts *o, const op_table *t, size_t ffn_zeroed)
{
    op_ctx z = {.n = ffn_zeroed};
    z.a = bench_rand(ffn_zeroed, 1);
    const double zero = bench_median(memset_f, &z, o->seconds);
    free_ctx(&z);
    const tlb_backend ln = t->backend[TLB_OP_layernorm], de = t->backend[TLB_OP_dense], ge = t->backend[TLB_OP_gelu],
                      dr = t->backend[TLB_OP_dropout], re = t->backend[TLB_OP_residual];
    const tlb_backend lp = t->backend[TLB_OP_layernorm_pair], ff = t->backend[TLB_OP_ffn];
    printf("\nfused stages vs the ops they stand in for, per block execution, automatic choice (us):\n");
    printf("  layernorm_pair[%s]%s: fwd %.1f vs 2 x layernorm[%s] %.1f; bwd %.1f vs %.1f\n", backend_name(lp),
           ops_table_fused(t, TLB_OP_layernorm_pair) ? "" : " (off)", row_t("layernorm_pair", "kv", "fwd", lp) * 1e6,
           backend_name(ln), 2e6 * row_t("layernorm", "block", "fwd", ln), row_t("layernorm_pair", "kv", "bwd", lp) * 1e6,
           2e6 * row_t("layernorm", "block", "bwd", ln));
    const double ops_f = row_t("dense", "fc1", "fwd", de) + row_t("gelu", "n", "fwd", ge) + row_t("dense", "fc2", "fwd", de) +
                         row_t("dropout", "B", "fwd", dr) + row_t("residual", "n", "fwd", re);
    const double ops_b = zero + row_t("dropout", "B", "bwd", dr) + row_t("gelu", "n", "fwd", ge) +
                         row_t("dense", "fc2", "bwd", de) + row_t("gelu", "n", "bwd", ge) + row_t("dense", "fc1", "bwd", de);
    printf("  ffn[%s]%s: fwd %.1f vs fc1 + gelu + fc2 + dropout + residual %.1f; bwd %.1f vs %.1f (with %.1f of"
           " memsets)\n",
           backend_name(ff), ops_table_fused(t, TLB_OP_ffn) ? "" : " (off)", row_t("ffn", "B", "fwd", ff) * 1e6,
           ops_f * 1e6, row_t("ffn", "B", "bwd", ff) * 1e6, ops_b * 1e6, zero * 1e6);
}

static void time_small(const bench_opts *o, const tlb_model_config *c, int B, double nb)
{
    const int C = c->chunk_size, D = c->embed_dim, N = model_num_patches(c), V = c->num_classes;
    const size_t n = (size_t)B * C * D;
    char shape[48];
    {
        op_ctx x = {.B = B, .n = (size_t)C * D, .rate = c->ffn_drop};
        x.a = bench_rand(n, 1), x.b = bench_rand(n, 1), x.c = bench_rand(n, 1);
        snprintf(shape, sizeof shape, "B%d x %d p%.1f", B, C * D, c->ffn_drop);
        measure(o, "dropout", shape, &x, drop_f, drop_b, 0, 0, 8.0 * n, 12.0 * n, nb, nb);
        free_ctx(&x);
    }
    {
        op_ctx x = {.n = n};
        x.a = bench_rand(n, 1), x.b = bench_rand(n, 1), x.c = bench_rand(n, 1);
        snprintf(shape, sizeof shape, "n%zu", n);
        measure(o, "residual", shape, &x, res_f, res_b, 0, 0, 12.0 * n, 12.0 * n, 2 * nb, nb);
        free_ctx(&x);
    }
    {
        const size_t m = (size_t)B * N * D;
        op_ctx x = {.B = B, .N = N, .D = D};
        x.a = bench_rand(m, 1), x.b = bench_rand((size_t)N * D, 1), x.c = bench_rand((size_t)N * D, 1);
        snprintf(shape, sizeof shape, "B%d N%d D%d", B, N, D);
        measure(o, "posemb", shape, &x, pos_f, pos_b, 0, 0, 8.0 * m, 4.0 * m, 1, 1);
        free_ctx(&x);
    }
    {
        op_ctx x = {.B = B, .T = C, .D = D};
        x.a = bench_rand((size_t)B * D, 1), x.b = bench_rand(n, 1), x.c = bench_rand(n, 1);
        snprintf(shape, sizeof shape, "B%d T%d D%d", B, C, D);
        measure(o, "meanpool", shape, &x, pool_f, pool_b, 0, 0, 4.0 * (n + (size_t)B * D),
                4.0 * (2.0 * n + (size_t)B * D), 1, 1);
        free_ctx(&x);
    }
    {
        op_ctx x = {.B = B, .N = V};
        x.a = bench_rand(B, 1), x.b = bench_rand((size_t)B * V, 1), x.c = bench_rand((size_t)B * V, 3);
        x.d = bench_rand((size_t)B * V, 1);
        x.labels = malloc(B * sizeof(int));
        for (int k = 0; k < B; k++) x.labels[k] = k % V;
        snprintf(shape, sizeof shape, "B%d V%d", B, V);
        measure(o, "softmax_xent", shape, &x, xent_f, xent_b, 0, 0, 4.0 * (2.0 * B * V + B),
                12.0 * B * V, 1, 1);
        free_ctx(&x);
    }
}

void bench_ops(const bench_opts *o, const bench_machine *m, int mb, bench_op_summary *sum)
{
    tlb_error err;
    op_table automatic; /* the automatic choice (and TLB_BACKEND), for the markers */
    ops_table_select(&automatic, NULL, &err);
    const tlb_model_config c = model_config_seed();
    model_layout l;
    model_layout_build(&l, &c);
    const int C = c.chunk_size, D = c.embed_dim, F = model_ffn_dim(&c), HK = model_hk(&c);
    const double nb = (double)model_num_chunks(&c) * l.num_steps; /* block executions */
    const int rq = mb * C;
    nrows = 0;

    printf("\n## Ops (micro-batch %d of the seed config, %d threads; %d block executions per "
           "micro-batch = %d chunks x %d steps)\n\n",
           mb, o->threads, (int)nb, model_num_chunks(&c), l.num_steps);
    fflush(stdout);
    time_dense(o, "qkvo", rq, D, HK, 4 * nb);
    time_dense(o, "fc1", rq, D, F, nb);
    time_dense(o, "fc2", rq, F, D, nb);
    time_dense(o, "head", mb, D, c.num_classes, 1);
    time_patch_conv(o, mb, c.image_size, c.patch_size, D);
    time_layernorm(o, "block", rq, D, 4 * nb);
    time_layernorm(o, "patch", mb * model_num_patches(&c), D, 1);
    time_gelu(o, (size_t)rq * F, 2 * nb, nb); /* forward is recomputed in backward */
    time_attention(o, mb, C, c.num_heads, c.key_dim, c.attn_drop, nb);
    /* LRA Image's (experiments/lra_image_tlb.cfg: micro-batch 86, chunk 32,
     * 8 heads of key_dim 8): not the seed's micro-batch, so 0 calls in its sums */
    time_attention(o, 86, 32, 8, 8, 0.2f, 0);
    time_small(o, &c, mb, nb);
    time_fused(o, mb, C, D, F, c.ffn_drop);

    FILE *csv = bench_csv(o, "ops.csv",
                          "op,shape,direction,backend,us_per_call,gflops,gbytes_per_s,pct_peak,"
                          "speedup_vs_ref,auto,calls_per_microbatch");
    printf("%-14s %-34s %-4s %-7s %10s %9s %7s %8s %s\n", "op", "shape", "dir", "backend",
           "us/call", "rate", "%peak", "vs ref", "auto");
    double mb_auto = 0, dense_auto = 0, mb_best = 0;
    int slower_than_ref = 0, auto_off = 0;
    char notes[4096] = "";
    for (int r = 0; r < nrows; r++) {
        const row *w = &rows[r];
        const int id = ops_find(w->op);
        const tlb_backend chosen = automatic.backend[id];
        int fastest = -1;
        for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
            if (w->t[be] <= 0) continue;
            if (fastest < 0 || w->t[be] < w->t[fastest]) fastest = be;
            const int compute = w->flops > 0;
            const double rate = compute ? w->flops / w->t[be] * 1e-9 : w->bytes / w->t[be] * 1e-9;
            const double peak = compute ? m->fma_all : m->bw_triad; /* 0: no probe run */
            const double pct = peak > 0 ? 100.0 * rate / peak : 0;
            const double vs = w->t[0] > 0 ? w->t[0] / w->t[be] : 0;
            char pct_s[16] = "    n/a";
            if (peak > 0) snprintf(pct_s, sizeof pct_s, "%6.1f%%", pct);
            printf("%-14s %-34s %-4s %-7s %10.1f %6.1f %-2s %s %7.2fx %s\n", w->op, w->shape,
                   w->dir, backend_name((tlb_backend)be), w->t[be] * 1e6, rate,
                   compute ? "GF" : "GB", pct_s, vs, be == (int)chosen ? "*" : "");
            if (csv)
                fprintf(csv, "%s,%s,%s,%s,%.3f,%.3f,%.3f,%.2f,%.3f,%d,%.0f\n", w->op, w->shape, w->dir,
                        backend_name((tlb_backend)be), w->t[be] * 1e6, compute ? rate : 0,
                        compute ? 0 : rate, pct, vs, be == (int)chosen, w->calls);
            if (be != TLB_BACKEND_REF && vs < 1.0) {
                slower_than_ref++;
                snprintf(notes + strlen(notes), sizeof notes - strlen(notes),
                         "  %s %s %s: %s is slower than ref (x%.2f)\n", w->op, w->shape, w->dir,
                         backend_name((tlb_backend)be), vs);
            }
        }
        if (fastest < 0) continue;
        const double ta = w->t[chosen];
        if (ta > 1.10 * w->t[fastest]) {
            auto_off++;
            snprintf(notes + strlen(notes), sizeof notes - strlen(notes),
                     "  %s %s %s: auto (%s) is %.0f%% slower than %s\n", w->op, w->shape, w->dir,
                     backend_name(chosen), 100.0 * (ta / w->t[fastest] - 1), backend_name((tlb_backend)fastest));
        }
        mb_auto += ta * w->calls;
        mb_best += w->t[fastest] * w->calls;
        if (strcmp(w->op, "dense") == 0) dense_auto += ta * w->calls;
    }
    if (csv) fclose(csv);
    if (m->fma_all > 0)
        printf("\n(* = the automatic choice; rate in GFLOP/s (GF) against the %.0f GFLOP/s FMA peak, or\n"
               " GB/s (GB) of bytes read + written against the %.1f GB/s triad bandwidth -- these\n"
               " working sets mostly sit in L2/L3, so memory-bound ops can exceed 100%%)\n",
               m->fma_all, m->bw_triad);
    else
        printf("\n(* = the automatic choice; rate in GFLOP/s (GF) or GB/s (GB) of bytes read + written;\n"
               " %%peak n/a: the probe did not run in this invocation)\n");
    printf("\noptimized backends slower than ref: %d; automatic choice more than 10%% off the fastest: %d\n%s",
           slower_than_ref, auto_off, notes);
    /* The registry chooses one backend per op (both directions, every shape),
     * so the choice that matters is the op's total over a micro-batch. */
    printf("\nper op, summed over its shapes and directions x calls per micro-batch (ms):\n");
    FILE *tot = bench_csv(o, "ops_total.csv", "op,backend,ms_per_microbatch,auto,pct_over_fastest");
    for (int r = 0; r < nrows; r++) {
        int seen = 0;
        for (int q = 0; q < r; q++) seen |= strcmp(rows[q].op, rows[r].op) == 0;
        if (seen || rows[r].calls == 0) continue; /* a fused stage: see fused_vs_ops */
        double total[TLB_BACKEND_COUNT] = {0};
        int complete[TLB_BACKEND_COUNT];
        for (int be = 0; be < TLB_BACKEND_COUNT; be++) complete[be] = 1;
        for (int q = r; q < nrows; q++) {
            if (strcmp(rows[q].op, rows[r].op)) continue;
            for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
                if (rows[q].t[be] <= 0) complete[be] = 0;
                total[be] += rows[q].t[be] * rows[q].calls;
            }
        }
        const tlb_backend chosen = automatic.backend[ops_find(rows[r].op)];
        int fastest = -1;
        for (int be = 0; be < TLB_BACKEND_COUNT; be++)
            if (complete[be] && (fastest < 0 || total[be] < total[fastest])) fastest = be;
        printf("  %-14s", rows[r].op);
        for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
            if (!complete[be]) continue;
            printf("  %s %.2f%s", backend_name((tlb_backend)be), total[be] * 1e3, be == (int)chosen ? "*" : "");
            if (tot)
                fprintf(tot, "%s,%s,%.4f,%d,%.1f\n", rows[r].op, backend_name((tlb_backend)be), total[be] * 1e3,
                        be == (int)chosen, 100.0 * (total[be] / total[fastest] - 1));
        }
        const double off = 100.0 * (total[chosen] / total[fastest] - 1);
        if (off <= 0.5) printf("   -> auto is the fastest\n");
        else printf("   -> auto %.0f%% slower than %s: %s\n", off, backend_name((tlb_backend)fastest),
                    off <= 10 ? "within 10%" : "MORE than 10% off");
    }
    if (tot) fclose(tot);
    printf("\nsum of op time for one micro-batch forward+backward (calls x median, auto choice): "
           "%.1f ms (fastest backend per op: %.1f ms), of which dense %.1f ms (%.0f%%)\n",
           mb_auto * 1e3, mb_best * 1e3, dense_auto * 1e3, 100.0 * dense_auto / mb_auto);
    fused_vs_ops(o, &automatic, (size_t)rq * (D + 2 * F));
    sum->mb_seconds_auto = mb_auto;
    sum->dense_seconds_auto = dense_auto;
    model_layout_free(&l);
}
