/* Mixed precision on this CPU: (a) oneDNN matmul in f32 against bf16
 * (bf16 sources, f32 accumulation and destination) at the model's dense
 * shapes as a batch shard runs them (1 thread, a shard's rows), forward and
 * both backward products, with the cost of converting the fp32 tensors we
 * hold into bf16 (ops/bf16.c, as dense_bf16.c does), next to our own avx512
 * f32 kernel; (b) a bandwidth-bound op on bf16 storage against fp32; then
 * what bf16 dense could save of a training step, and what it did save. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>

#include "bench.h"
#include "model/model.h"
#include "ops/bf16.h"
#include "ops/dnnl_common.h"
#include "ops/impls.h"

#define CHECK(call)                                                                        \
    do {                                                                                   \
        dnnl_status_t st_ = (call);                                                        \
        if (st_ != dnnl_success) {                                                         \
            fprintf(stderr, "tlb_bench mixed: %s failed (status %d) at %s:%d\n", #call,    \
                    (int)st_, __FILE__, __LINE__);                                         \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static dnnl_engine_t engine;
static dnnl_stream_t stream;

typedef struct {
    dnnl_primitive_t prim;
    dnnl_memory_t src, wei, dst;
    const char *impl;
} prim_run;

static dnnl_memory_t mem(const dnnl_memory_desc_t *md)
{
    dnnl_memory_t m;
    CHECK(dnnl_memory_create(&m, md, engine, DNNL_MEMORY_ALLOCATE));
    void *p;
    CHECK(dnnl_memory_get_data_handle(m, &p));
    memset(p, 0, dnnl_memory_desc_get_size(md)); /* finite inputs, pages touched */
    return m;
}

static void build(prim_run *r, const dnnl_memory_desc_t *src, const dnnl_memory_desc_t *wei,
                  const dnnl_memory_desc_t *dst, int accumulate)
{
    dnnl_primitive_attr_t attr = tlb_dnnl_attr(accumulate, 0); /* as dense_dnnl.c */
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_matmul_desc_init(&desc, src, wei, NULL, dst));
    dnnl_primitive_desc_t pd;
    CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    const char *info = NULL;
    CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info));
    r->impl = strdup(info ? info : "?");
    CHECK(dnnl_primitive_create(&r->prim, pd));
    CHECK(dnnl_primitive_desc_destroy(pd));
    CHECK(dnnl_primitive_attr_destroy(attr));
    r->src = mem(src), r->wei = mem(wei), r->dst = mem(dst);
}

static void exec(void *p)
{
    prim_run *r = p;
    dnnl_exec_arg_t args[3] = {{DNNL_ARG_SRC, r->src}, {DNNL_ARG_DST, r->dst}, {DNNL_ARG_WEIGHTS, r->wei}};
    CHECK(dnnl_primitive_execute(r->prim, stream, 3, args));
    CHECK(dnnl_stream_wait(stream));
}

static void destroy(prim_run *r)
{
    dnnl_primitive_destroy(r->prim);
    dnnl_memory_destroy(r->src);
    dnnl_memory_destroy(r->dst);
    dnnl_memory_destroy(r->wei);
    free((void *)r->impl);
}

/* The three products of a dense layer out[M,N] = inp[M,K] @ w[K,N], in data type dt. */
static double time_products(const bench_opts *o, int M, int K, int N, dnnl_data_type_t dt,
                            double t[3], const char **impl_fwd)
{
    dnnl_memory_desc_t s, w, d;
    prim_run r;
    /* forward */
    tlb_dnnl_matmul_mds(0, M, K, N, dt, &s, &w, &d);
    build(&r, &s, &w, &d, 0);
    t[0] = bench_median(exec, &r, o->seconds);
    *impl_fwd = strdup(r.impl);
    destroy(&r);
    /* dinp[M,K] += dout[M,N] @ w^T[N,K] */
    tlb_dnnl_matmul_mds(1, M, K, N, dt, &s, &w, &d);
    build(&r, &s, &w, &d, 1);
    t[1] = bench_median(exec, &r, o->seconds);
    destroy(&r);
    /* dw[K,N] += inp^T[K,M] @ dout[M,N] */
    tlb_dnnl_matmul_mds(2, M, K, N, dt, &s, &w, &d);
    build(&r, &s, &w, &d, 1);
    t[2] = bench_median(exec, &r, o->seconds);
    destroy(&r);
    return t[0] + t[1] + t[2];
}

typedef struct {
    size_t n;
    float *src;
    uint16_t *dst;
} convert_ctx;
static void convert(void *p)
{
    const convert_ctx *c = p;
    bf16_convert(c->dst, c->src, c->n);
}

/* What dense_bf16.c pays to round an fp32 tensor of rows x cols to bf16. */
static double time_convert(const bench_opts *o, long rows, long cols)
{
    convert_ctx c = {(size_t)rows * cols, bench_rand((size_t)rows * cols, 1), NULL};
    c.dst = aligned_alloc(64, ((c.n * sizeof(uint16_t)) + 63) & ~(size_t)63);
    const double t = bench_median(convert, &c, o->seconds);
    free(c.src), free(c.dst);
    return t;
}

typedef struct {
    int M, K, N;
    float *x, *w, *b, *o, *dx, *dw, *db, *g;
    const dense_op *d;
} own_ctx;
static void own_fwd(void *p)
{
    own_ctx *c = p;
    c->d->forward(c->o, c->x, c->w, c->b, c->M, c->K, c->N);
}
static void own_bwd(void *p) /* both products, no bias gradient (as in the oneDNN rows) */
{
    own_ctx *c = p;
    c->d->backward(c->dx, c->dw, NULL, c->g, c->x, c->w, c->M, c->K, c->N);
}

void bench_mixed(const bench_opts *o, const bench_machine *m, int mb, const bench_op_summary *sum,
                 const bench_step_summary *step)
{
    /* oneDNN refuses bf16 matmuls on a CPU without AVX512_BF16: say so and
     * let `make bench` go on to the inference section. */
    if (!ops_mixed_precision_supported()) {
        printf("\n## Mixed precision (bf16)\n\nnot run: this CPU has no AVX512_BF16\n");
        return;
    }
    CHECK(dnnl_engine_create(&engine, dnnl_cpu, 0));
    CHECK(dnnl_stream_create(&stream, engine, dnnl_stream_default_flags));
    const tlb_model_config c = model_config_seed();
    /* The model splits a micro-batch into one shard per thread, each run on
     * one thread (model.c): time the products the way a shard sees them. */
    const int threads = omp_get_max_threads(), shard = (mb + threads - 1) / threads;
    const int M = shard * c.chunk_size, D = c.embed_dim, F = model_ffn_dim(&c);
    const struct { const char *tag; int K, N; double calls; } shapes[] = {
        {"qkvo", D, D, 4}, {"fc1", D, F, 1}, {"fc2", F, D, 1}};
    const tlb_backend own = backend_supported(TLB_BACKEND_AVX512) ? TLB_BACKEND_AVX512 : TLB_BACKEND_AVX2;

    printf("\n## Mixed precision (bf16)\n\n");
    printf("(a) oneDNN %d.%d matmul as a batch shard runs it: 1 thread, M = %d (a shard of %d samples of the\n"
           "    micro-batch of %d, x chunk %d); f32 vs bf16 sources with f32 accumulation/destination;\n"
           "    cvt = bf16_convert (ops/bf16.c) of the fp32 tensor we hold, as dense_bf16.c does;\n"
           "    fwd = inp @ w, bwd = dinp += dout @ w^T and dW += inp^T @ dout; us per call (GFLOP/s)\n\n",
           (int)dnnl_version()->major, (int)dnnl_version()->minor, M, shard, mb, c.chunk_size);
    omp_set_num_threads(1);
    printf("%-5s %-8s %17s %17s %17s | %9s %9s %9s | %8s %8s\n", "shape", "K x N", "own f32 (GF/s)", "dnnl f32",
           "dnnl bf16", "cvt inp", "cvt dout", "cvt w", "bf16/f32", "+cvt");
    FILE *csv = bench_csv(o, "mixed.csv",
                          "shape,M,K,N,direction,own_f32_us,dnnl_f32_us,dnnl_bf16_us,cvt_us,"
                          "dnnl_f32_impl,dnnl_bf16_impl");
    double tot_best32 = 0, tot_bf16 = 0, tot_bf16_cvt = 0;
    for (unsigned s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        const int K = shapes[s].K, N = shapes[s].N;
        double t32[3], t16[3];
        const char *impl32, *impl16;
        time_products(o, M, K, N, dnnl_f32, t32, &impl32);
        time_products(o, M, K, N, dnnl_bf16, t16, &impl16);
        const double cvt_inp = time_convert(o, M, K), cvt_dout = time_convert(o, M, N),
                     cvt_w = time_convert(o, K, N);
        own_ctx oc = {M, K, N, bench_rand((size_t)M * K, 1), bench_rand((size_t)K * N, 0.1f),
                      bench_rand(N, 1), bench_rand((size_t)M * N, 1), bench_rand((size_t)M * K, 1),
                      bench_rand((size_t)K * N, 1), NULL, bench_rand((size_t)M * N, 1),
                      ops_impl_dense(own)};
        const double own_f = bench_median(own_fwd, &oc, o->seconds), own_bw = bench_median(own_bwd, &oc, o->seconds);
        free(oc.x), free(oc.w), free(oc.b), free(oc.o), free(oc.dx), free(oc.dw), free(oc.g);
        const double fl = 2.0 * M * K * N;
        const double f32_fb = t32[0] + t32[1] + t32[2], bf_fb = t16[0] + t16[1] + t16[2];
        const double best32 = own_f + own_bw < f32_fb ? own_f + own_bw : f32_fb;
        /* as dense_bf16.c converts, per layer and shard: inp and w in forward,
         * dout, w and inp again in backward (nothing kept between the calls) */
        const double cvt_fwd = cvt_inp + cvt_w, cvt_bwd = cvt_dout + cvt_w + cvt_inp;
        const double cvt = cvt_fwd + cvt_bwd;
        char kn[16];
        snprintf(kn, sizeof kn, "%dx%d", K, N);
        printf("%-5s %-8s fwd %7.1f (%4.0f) %7.1f (%4.0f)  %7.1f (%4.0f)  | %9.1f %9s %9.1f | %7.2fx %7.2fx\n",
               shapes[s].tag, kn, own_f * 1e6, fl / own_f * 1e-9, t32[0] * 1e6, fl / t32[0] * 1e-9,
               t16[0] * 1e6, fl / t16[0] * 1e-9, cvt_inp * 1e6, "", cvt_w * 1e6, t32[0] / t16[0],
               (own_f < t32[0] ? own_f : t32[0]) / (t16[0] + cvt_fwd));
        printf("%-5s %-8s bwd %7.1f (%4.0f) %7.1f (%4.0f)  %7.1f (%4.0f)  | %9s %9.1f %9s | %7.2fx %7.2fx\n", "",
               "", own_bw * 1e6, 2 * fl / own_bw * 1e-9, (t32[1] + t32[2]) * 1e6,
               2 * fl / (t32[1] + t32[2]) * 1e-9, (t16[1] + t16[2]) * 1e6, 2 * fl / (t16[1] + t16[2]) * 1e-9,
               "", cvt_dout * 1e6, "", (t32[1] + t32[2]) / (t16[1] + t16[2]),
               (own_bw < t32[1] + t32[2] ? own_bw : t32[1] + t32[2]) / (t16[1] + t16[2] + cvt_bwd));
        printf("%-5s %-8s     dnnl f32: %s; bf16: %s\n", "", "", impl32, impl16);
        if (csv) {
            fprintf(csv, "%s,%d,%d,%d,fwd,%.3f,%.3f,%.3f,%.3f,%s,%s\n", shapes[s].tag, M, K, N, own_f * 1e6,
                    t32[0] * 1e6, t16[0] * 1e6, cvt_fwd * 1e6, impl32, impl16);
            fprintf(csv, "%s,%d,%d,%d,bwd_data,,%.3f,%.3f,%.3f,%s,%s\n", shapes[s].tag, M, K, N,
                    t32[1] * 1e6, t16[1] * 1e6, cvt_dout * 1e6, impl32, impl16);
            fprintf(csv, "%s,%d,%d,%d,bwd_weights,,%.3f,%.3f,0,%s,%s\n", shapes[s].tag, M, K, N,
                    t32[2] * 1e6, t16[2] * 1e6, impl32, impl16);
            fprintf(csv, "%s,%d,%d,%d,bwd_both,%.3f,%.3f,%.3f,%.3f,%s,%s\n", shapes[s].tag, M, K, N,
                    own_bw * 1e6, (t32[1] + t32[2]) * 1e6, (t16[1] + t16[2]) * 1e6, cvt_bwd * 1e6,
                    impl32, impl16);
        }
        tot_best32 += shapes[s].calls * best32;
        tot_bf16 += shapes[s].calls * bf_fb;
        tot_bf16_cvt += shapes[s].calls * (bf_fb + cvt);
        free((void *)impl32), free((void *)impl16);
    }
    omp_set_num_threads(threads);
    printf("\n(the last two columns: dnnl bf16 over dnnl f32 for the products alone, and the\n"
           " best f32 (own or dnnl) over bf16 + the conversions that direction needs)\n");
    const double speed_nocvt = tot_best32 / tot_bf16, speed_cvt = tot_best32 / tot_bf16_cvt;
    printf("\none block's dense work (4 x qkvo + fc1 + fc2, fwd + bwd): best f32 %.1f us, bf16 %.1f us "
           "(x%.2f), bf16 + conversions %.1f us (x%.2f)\n",
           tot_best32 * 1e6, tot_bf16 * 1e6, speed_nocvt, tot_bf16_cvt * 1e6, speed_cvt);

    /* (b) the memory-traffic argument */
    printf("\n(b) bandwidth-bound op y = x*a + b on fp32 vs bf16 storage (fp32 math), %d threads:\n",
           o->threads);
    const size_t dram = o->bw_bytes < ((size_t)256 << 20) ? o->bw_bytes : (size_t)256 << 20;
    const size_t sizes[] = {(size_t)M * F, dram / sizeof(float)};
    const char *where[] = {"the model's GELU tensor (cache-resident)", "DRAM-sized"};
    for (int i = 0; i < 2; i++) {
        double tf, tb;
        if (mixed_bf16_stream(sizes[i], o->seconds, &tf, &tb) != 0) {
            printf("    no AVX512_BF16 on this CPU: skipped\n");
            break;
        }
        printf("    n = %9zu (%s): fp32 %8.1f us (%6.1f GB/s), bf16 %8.1f us (%6.1f GB/s), bf16 x%.2f\n",
               sizes[i], where[i], tf * 1e6, 8.0 * sizes[i] / tf * 1e-9, tb * 1e6, 4.0 * sizes[i] / tb * 1e-9,
               tf / tb);
        if (csv)
            fprintf(csv, "stream_%s,%zu,,,elementwise,,%.3f,%.3f,,,\n", i ? "dram" : "model", sizes[i],
                    tf * 1e6, tb * 1e6);
    }
    if (csv) fclose(csv);

    /* what bf16 dense would save of a step */
    if (sum && sum->mb_seconds_auto > 0) {
        const double share_model = sum->dense_seconds_auto / sum->mb_seconds_auto;
        const double parts = (double)o->batch / mb;
        const double share_step = step->step_seconds > 0 ? sum->dense_seconds_auto * parts / step->step_seconds : 0;
        if (step->mb_seconds > 0)
            printf("\nop table summed over one micro-batch's calls: %.1f ms; measured micro-batch forward +\n"
                   "backward in the automatic step: %.1f ms (the rest: memcpy/memset, chunk gathers,\n"
                   "cache effects between ops)\n",
                   sum->mb_seconds_auto * 1e3, step->mb_seconds * 1e3);
        printf("dense share of a step: %.0f%% of the summed op time (op table)", 100 * share_model);
        if (share_step > 0) printf(", %.0f%% of the measured automatic step", 100 * share_step);
        const double share = share_step > 0 ? share_step : share_model;
        printf("\nbf16 dense could save at most %.0f%% of the step without conversions (x%.2f on dense),\n"
               "%.0f%% with them (x%.2f); the element-wise ops would gain only where they stream DRAM\n",
               100 * share * (1 - 1 / speed_nocvt), speed_nocvt, 100 * share * (1 - 1 / speed_cvt), speed_cvt);
    }
    if (step && step->step_seconds > 0 && step->bf16_step_seconds > 0)
        printf("\nmeasured (training step table): mixed precision (bf16 dense, bf16 h: the trainer's) %.3f s against fp32 %.3f s\n"
               "per step: x%.2f (%.0f%% of the step saved)\n",
               step->bf16_step_seconds, step->step_seconds, step->step_seconds / step->bf16_step_seconds,
               100 * (1 - step->bf16_step_seconds / step->step_seconds));
    (void)m;
    dnnl_stream_destroy(stream);
    dnnl_engine_destroy(engine);
}
