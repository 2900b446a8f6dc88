/* `tlb_bench check`: every registered backend against ref on odd shapes
 * (the timing side of the benchmark is in ops_time.c). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "ops/ops.h"

static uint64_t seed = 12345;
static float frand(void) /* uniform in [-1, 1) */
{
    seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)((seed >> 40) * (1.0 / 8388608.0) - 1.0);
}

static float *rnd(size_t n, float scale)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = frand() * scale;
    return p;
}

static float *dup(const float *a, size_t n)
{
    float *p = malloc((n ? n : 1) * sizeof(float));
    memcpy(p, a, n * sizeof(float));
    return p;
}

static int failures;
static double worst;

/* The Criterion backend tests' contract (tests/test_ops_backend.c): pass when
 * max |a - b| <= tol * max |b| + CHECK_ATOL. The absolute part matters when a
 * short sum cancels (one output of a K = 1 backward, say: a 64-term dot
 * product whose value is small beside its terms). Reported: max |a - b| /
 * max(1e-6, max |b|). */
#define CHECK_ATOL 1e-6
static void cmp(const char *what, const char *be, const float *a, const float *b, size_t n,
                double tol)
{
    double md = 0, mb = 1e-6;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* catches NaN */
        if (fabs(b[i]) > mb) mb = fabs(b[i]);
    }
    double rel = md / mb;
    if (rel > worst) worst = rel;
    if (!(md <= tol * mb + CHECK_ATOL)) {
        failures++;
        printf("FAIL %-8s %-40s rel err %.3g\n", be, what, rel);
    }
}

/* Every supported non-ref backend of op `name`, typed: name_op *impl. */
#define FOR_BACKENDS(name, impl)                                                \
    for (int be_ = 1; be_ < TLB_BACKEND_COUNT; be_++)                           \
        for (const name##_op *impl = ops_impl_##name((tlb_backend)be_);         \
             impl && backend_supported((tlb_backend)be_); impl = NULL)

#define BE backend_name((tlb_backend)be_)

static void check_dense(void)
{
    const int Ms[] = {1, 3, 37, 130};
    const int Ks[] = {1, 5, 17, 64, 256};
    const int Ns[] = {1, 5, 17, 64, 256, 10, 33};
    const dense_op *ref = ops_impl_dense(TLB_BACKEND_REF);
    for (unsigned mi = 0; mi < sizeof Ms / sizeof *Ms; mi++)
        for (unsigned ki = 0; ki < sizeof Ks / sizeof *Ks; ki++)
            for (unsigned ni = 0; ni < sizeof Ns / sizeof *Ns; ni++) {
                int M = Ms[mi], K = Ks[ki], N = Ns[ni];
                float *x = rnd((size_t)M * K, 1), *w = rnd((size_t)K * N, 1), *b = rnd(N, 1);
                float *g = rnd((size_t)M * N, 1);
                float *o0 = rnd((size_t)M * N, 1), *dx0 = rnd((size_t)M * K, 1);
                float *dw0 = rnd((size_t)K * N, 1), *db0 = rnd(N, 1);
                float *o1 = dup(o0, (size_t)M * N), *dx1 = dup(dx0, (size_t)M * K);
                float *dw1 = dup(dw0, (size_t)K * N), *db1 = dup(db0, N);
                ref->forward(o0, x, w, b, M, K, N);
                ref->backward(dx0, dw0, db0, g, x, w, M, K, N);
                char what[64];
                FOR_BACKENDS(dense, d)
                {
                    for (int withb = 0; withb < 2; withb++) {
                        memcpy(o1, o0, sizeof(float) * M * N);
                        if (!withb) {
                            float *o2 = rnd((size_t)M * N, 1);
                            ref->forward(o2, x, w, NULL, M, K, N);
                            d->forward(o1, x, w, NULL, M, K, N);
                            snprintf(what, sizeof what, "dense fwd nobias M%d K%d N%d", M, K, N);
                            cmp(what, BE, o1, o2, (size_t)M * N, 1e-5);
                            free(o2);
                        } else {
                            d->forward(o1, x, w, b, M, K, N);
                            snprintf(what, sizeof what, "dense fwd M%d K%d N%d", M, K, N);
                            cmp(what, BE, o1, o0, (size_t)M * N, 1e-5);
                        }
                    }
                    float *dx = rnd((size_t)M * K, 1), *dw = rnd((size_t)K * N, 1), *db = rnd(N, 1);
                    memcpy(dx1, dx, sizeof(float) * M * K);
                    memcpy(dw1, dw, sizeof(float) * K * N);
                    memcpy(db1, db, sizeof(float) * N);
                    ref->backward(dx1, dw1, db1, g, x, w, M, K, N);
                    d->backward(dx, dw, db, g, x, w, M, K, N);
                    snprintf(what, sizeof what, "dense dinp M%d K%d N%d", M, K, N);
                    cmp(what, BE, dx, dx1, (size_t)M * K, 1e-5);
                    snprintf(what, sizeof what, "dense dw M%d K%d N%d", M, K, N);
                    cmp(what, BE, dw, dw1, (size_t)K * N, 1e-5);
                    snprintf(what, sizeof what, "dense dbias M%d K%d N%d", M, K, N);
                    cmp(what, BE, db, db1, N, 1e-5);
                    /* NULL gradients are skipped */
                    d->backward(NULL, dw, NULL, g, x, w, M, K, N);
                    d->backward(dx, NULL, NULL, g, x, w, M, K, N);
                    free(dx), free(dw), free(db);
                }
                free(x), free(w), free(b), free(g), free(o0), free(o1), free(dx0), free(dx1);
                free(dw0), free(dw1), free(db0), free(db1);
            }
}

static void check_layernorm(void)
{
    const int Ms[] = {1, 3, 37};
    const int Ds[] = {1, 5, 17, 64, 256, 100};
    const layernorm_op *ref = ops_impl_layernorm(TLB_BACKEND_REF);
    for (unsigned mi = 0; mi < 3; mi++)
        for (unsigned di = 0; di < sizeof Ds / sizeof *Ds; di++) {
            int M = Ms[mi], D = Ds[di];
            size_t n = (size_t)M * D;
            float *x = rnd(n, 2), *ga = rnd(D, 1), *be = rnd(D, 1), *g = rnd(n, 1);
            for (size_t i = 0; i < n; i++) x[i] += 0.5f;
            float *o0 = rnd(n, 1), *mu0 = rnd(M, 1), *rs0 = rnd(M, 1);
            float *dx0 = rnd(n, 1), *dg0 = rnd(D, 1), *db0 = rnd(D, 1);
            float *o1 = dup(o0, n), *mu1 = dup(mu0, M), *rs1 = dup(rs0, M);
            float *dx1 = dup(dx0, n), *dg1 = dup(dg0, D), *db1 = dup(db0, D);
            ref->forward(o0, mu0, rs0, x, ga, be, M, D);
            ref->backward(dx0, dg0, db0, g, x, ga, mu0, rs0, M, D);
            char what[64];
            FOR_BACKENDS(layernorm, d)
            {
                float *dx = dup(dx1, n), *dg = dup(dg1, D), *db = dup(db1, D);
                d->forward(o1, mu1, rs1, x, ga, be, M, D);
                snprintf(what, sizeof what, "layernorm fwd M%d D%d", M, D);
                cmp(what, BE, o1, o0, n, 1e-5);
                cmp(what, BE, mu1, mu0, M, 1e-5);
                cmp(what, BE, rs1, rs0, M, 1e-5);
                d->backward(dx, dg, db, g, x, ga, mu0, rs0, M, D);
                snprintf(what, sizeof what, "layernorm bwd M%d D%d", M, D);
                cmp(what, BE, dx, dx0, n, 1e-5);
                cmp(what, BE, dg, dg0, D, 1e-5);
                cmp(what, BE, db, db0, D, 1e-5);
                d->backward(NULL, dg, NULL, g, x, ga, mu0, rs0, M, D);
                d->backward(dx, NULL, NULL, g, x, ga, mu0, rs0, M, D);
                free(dx), free(dg), free(db);
            }
            free(x), free(ga), free(be), free(g), free(o0), free(mu0), free(rs0), free(dx0);
            free(dg0), free(db0), free(o1), free(mu1), free(rs1), free(dx1), free(dg1), free(db1);
        }
}

static void check_gelu(void)
{
    const gelu_op *ref = ops_impl_gelu(TLB_BACKEND_REF);
    const size_t ns[] = {1, 3, 17, 37, 1000, 4099};
    for (unsigned i = 0; i < sizeof ns / sizeof *ns; i++) {
        size_t n = ns[i];
        float *x = rnd(n, 6), *g = rnd(n, 1), *o0 = rnd(n, 1), *dx0 = rnd(n, 1);
        float *o1 = dup(o0, n), *dx1 = dup(dx0, n);
        ref->forward(o0, x, n);
        ref->backward(dx0, g, x, n);
        char what[64];
        FOR_BACKENDS(gelu, d)
        {
            float *dx = dup(dx1, n);
            d->forward(o1, x, n);
            snprintf(what, sizeof what, "gelu fwd n%zu", n);
            cmp(what, BE, o1, o0, n, 1e-6);
            d->backward(dx, g, x, n);
            snprintf(what, sizeof what, "gelu bwd n%zu", n);
            cmp(what, BE, dx, dx0, n, 1e-6);
            free(dx);
        }
        free(x), free(g), free(o0), free(dx0), free(o1), free(dx1);
    }
    /* dense grid in [-10, 10], absolute error of the forward and derivative */
    size_t n = 2000001;
    float *x = malloc(n * sizeof(float)), *o0 = malloc(n * sizeof(float));
    float *one = malloc(n * sizeof(float)), *d0 = calloc(n, sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = -10.0f + 20.0f * (float)i / (float)(n - 1), one[i] = 1;
    ref->forward(o0, x, n);
    ref->backward(d0, one, x, n);
    FOR_BACKENDS(gelu, d)
    {
        float *o1 = malloc(n * sizeof(float)), *d1 = calloc(n, sizeof(float));
        d->forward(o1, x, n);
        d->backward(d1, one, x, n);
        double mf = 0, mdv = 0;
        for (size_t i = 0; i < n; i++) {
            double e = fabs((double)o1[i] - o0[i]) / fmax(1.0, fabs(x[i]));
            if (!(e <= mf)) mf = e;
            e = fabs((double)d1[i] - d0[i]);
            if (!(e <= mdv)) mdv = e;
        }
        printf("gelu %-7s grid [-10,10]: max err fwd/max(1,|x|) %.3g, bwd %.3g\n", BE, mf, mdv);
        if (!(mf < 1e-6) || !(mdv < 1e-6)) failures++;
        free(o1), free(d1);
    }
    free(x), free(o0), free(one), free(d0);
}

static void check_attention(void)
{
    const attention_op *ref = ops_impl_attention(TLB_BACKEND_REF);
    const int shapes[][5] = {/* B Tq Tk H K */
                             {1, 1, 1, 1, 1},  {3, 8, 8, 1, 64}, {2, 3, 5, 2, 17},
                             {5, 8, 16, 4, 16}, {2, 7, 33, 1, 64}, {3, 8, 8, 2, 5},
                             {1, 2, 300, 1, 20}};
    for (unsigned s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int dr = 0; dr < 2; dr++) {
            int B = shapes[s][0], Tq = shapes[s][1], Tk = shapes[s][2], H = shapes[s][3],
                K = shapes[s][4];
            dropout_ctx drop = {dr ? 0.3f : 0.0f, 0xabcdef12345ULL, 17};
            size_t nq = (size_t)B * Tq * H * K, nk = (size_t)B * Tk * H * K,
                   np = (size_t)B * H * Tq * Tk;
            float *q = rnd(nq, 2), *k = rnd(nk, 2), *v = rnd(nk, 1), *g = rnd(nq, 1);
            float *o0 = rnd(nq, 1), *p0 = rnd(np, 1), *dq0 = rnd(nq, 1), *dk0 = rnd(nk, 1),
                  *dv0 = rnd(nk, 1);
            float *o1 = dup(o0, nq), *p1 = dup(p0, np), *dq1 = dup(dq0, nq),
                  *dk1 = dup(dk0, nk), *dv1 = dup(dv0, nk);
            ref->forward(o0, p0, q, k, v, NULL, B, Tq, Tk, H, K, &drop);
            ref->backward(dq0, dk0, dv0, g, q, k, v, p0, B, Tq, Tk, H, K, &drop);
            char what[80];
            FOR_BACKENDS(attention, d)
            {
                float *dq = dup(dq1, nq), *dk = dup(dk1, nk), *dv = dup(dv1, nk);
                d->forward(o1, p1, q, k, v, NULL, B, Tq, Tk, H, K, &drop);
                snprintf(what, sizeof what, "attention fwd B%d Tq%d Tk%d H%d K%d drop%d", B, Tq,
                         Tk, H, K, dr);
                cmp(what, BE, o1, o0, nq, 1e-5);
                cmp(what, BE, p1, p0, np, 1e-5);
                d->backward(dq, dk, dv, g, q, k, v, p0, B, Tq, Tk, H, K, &drop);
                snprintf(what, sizeof what, "attention bwd B%d Tq%d Tk%d H%d K%d drop%d", B, Tq,
                         Tk, H, K, dr);
                cmp(what, BE, dq, dq0, nq, 1e-5);
                cmp(what, BE, dk, dk0, nk, 1e-5);
                cmp(what, BE, dv, dv0, nk, 1e-5);
                d->backward(dq, NULL, NULL, g, q, k, v, p0, B, Tq, Tk, H, K, &drop);
                d->backward(NULL, NULL, dv, g, q, k, v, p0, B, Tq, Tk, H, K, NULL);
                free(dq), free(dk), free(dv);
            }
            free(q), free(k), free(v), free(g), free(o0), free(p0), free(dq0), free(dk0);
            free(dv0), free(o1), free(p1), free(dq1), free(dk1), free(dv1);
        }
}

static void check_patch_conv(void)
{
    const patch_conv_op *ref = ops_impl_patch_conv(TLB_BACKEND_REF);
    const int shapes[][4] = {{1, 4, 4, 1}, {2, 12, 4, 64}, {3, 10, 5, 17}, {2, 8, 2, 33}};
    for (unsigned s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int B = shapes[s][0], S = shapes[s][1], P = shapes[s][2], D = shapes[s][3];
        int N = (S / P) * (S / P), R = P * P * 3;
        size_t ni = (size_t)B * S * S * 3, no = (size_t)B * N * D;
        float *img = rnd(ni, 1), *w = rnd((size_t)R * D, 1), *b = rnd(D, 1), *g = rnd(no, 1);
        float *o0 = rnd(no, 1), *di0 = rnd(ni, 1), *dw0 = rnd((size_t)R * D, 1), *db0 = rnd(D, 1);
        float *o1 = dup(o0, no), *di1 = dup(di0, ni), *dw1 = dup(dw0, (size_t)R * D),
              *db1 = dup(db0, D);
        ref->forward(o0, img, w, b, B, S, P, D);
        ref->backward(di0, dw0, db0, g, img, w, B, S, P, D);
        char what[64];
        FOR_BACKENDS(patch_conv, d)
        {
            float *di = dup(di1, ni), *dw = dup(dw1, (size_t)R * D), *db = dup(db1, D);
            d->forward(o1, img, w, b, B, S, P, D);
            snprintf(what, sizeof what, "patch_conv fwd B%d S%d P%d D%d", B, S, P, D);
            cmp(what, BE, o1, o0, no, 1e-5);
            d->backward(di, dw, db, g, img, w, B, S, P, D);
            snprintf(what, sizeof what, "patch_conv bwd B%d S%d P%d D%d", B, S, P, D);
            cmp(what, BE, di, di0, ni, 1e-5);
            cmp(what, BE, dw, dw0, (size_t)R * D, 1e-5);
            cmp(what, BE, db, db0, D, 1e-5);
            free(di), free(dw), free(db);
        }
        free(img), free(w), free(b), free(g), free(o0), free(di0), free(dw0), free(db0);
        free(o1), free(di1), free(dw1), free(db1);
    }
}

int bench_check(void)
{
    check_dense();
    check_layernorm();
    check_gelu();
    check_attention();
    check_patch_conv();
    printf("check: %d failures, worst rel err %.3g\n", failures, worst);
    return failures != 0;
}
