/* ops_dropout: mask properties (determinism, micro-batch split, rate). */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "op_testing.h"
#include "ops/dropout_mask.h"
#include "ops/ops.h"

/* Every available dropout implementation (ref first). */
#define FOR_DROPOUT_BACKENDS(b, impl)                                                       \
    for (int b = 0; b < TLB_BACKEND_COUNT; b++)                                           \
        for (const dropout_op *impl = ops_impl_dropout((tlb_backend)b);                     \
             impl && backend_supported((tlb_backend)b); impl = NULL)

static float *ones(size_t n)
{
    float *x = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = 1.0f;
    return x;
}

Test(ops_dropout, same_ctx_same_mask_other_key_other_mask)
{
    const int B = 4;
    const size_t per = 257, n = B * per;
    float *x = ones(n), *a = malloc(n * 4), *c = malloc(n * 4);
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        dropout_ctx d = {0.3f, 12345, 7};
        impl->forward(a, x, B, per, &d);
        impl->forward(c, x, B, per, &d);
        cr_expect(memcmp(a, c, n * 4) == 0, "dropout[%s]: same ctx, different masks",
                  backend_name((tlb_backend)b));
        d.key = 12346;
        impl->forward(c, x, B, per, &d);
        cr_expect(memcmp(a, c, n * 4) != 0, "dropout[%s]: key ignored",
                  backend_name((tlb_backend)b));
        d.key = 12345;
        d.sample0 = 8;
        impl->forward(c, x, B, per, &d);
        /* sample0 shifts the samples: sample b of this call is sample b+1 of the first */
        cr_expect(memcmp(a + per, c, (n - per) * 4) == 0,
                  "dropout[%s]: mask is not a function of sample0 + b",
                  backend_name((tlb_backend)b));
        cr_expect(memcmp(a, a + per, per * 4) != 0, "dropout[%s]: samples 0 and 1 share a mask",
                  backend_name((tlb_backend)b));
        /* the mask is the one dropout_mask.h defines */
        for (int s = 0; s < B; s++) {
            const uint64_t key = dropout_sample_key(&(dropout_ctx){0.3f, 12345, 7}, s);
            for (size_t i = 0; i < per; i++)
                if (a[s * per + i] != dropout_scale_at(&(dropout_ctx){0.3f, 12345, 7}, key, i)) {
                    cr_expect(0, "dropout[%s]: sample %d elem %zu = %g, dropout_mask.h says %g",
                              backend_name((tlb_backend)b), s, i, a[s * per + i],
                              dropout_scale_at(&(dropout_ctx){0.3f, 12345, 7}, key, i));
                    break;
                }
        }
    }
    free(x);
    free(a);
    free(c);
}

/* The model's golden and micro-batch tests assume every backend draws the
 * same mask: forward and backward of every backend equal ref bit for bit, on
 * sizes with vector tails, a large sample0 and several rates. */
Test(ops_dropout, every_backend_bit_identical_to_ref)
{
    const dropout_op *ref = ops_impl_dropout(TLB_BACKEND_REF);
    static const size_t pers[] = {1, 7, 9, 15, 17, 31, 33, 100, 1001};
    static const float rates[] = {0.1f, 0.5f, 0.9f};
    static const long sample0s[] = {0, 12345678901L};
    const int B = 3;
    const size_t cap = B * 1001;
    float *x = malloc(cap * 4), *g0 = malloc(cap * 4), *yr = malloc(cap * 4), *y = malloc(cap * 4);
    float *gr = malloc(cap * 4), *g = malloc(cap * 4);
    opt_fill(x, cap, 1.0f, 21);
    opt_fill(g0, cap, 1.0f, 22);
    int compared = 0;
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        if (b == TLB_BACKEND_REF) continue;
        for (size_t p = 0; p < sizeof pers / sizeof pers[0]; p++)
            for (size_t r = 0; r < sizeof rates / sizeof rates[0]; r++)
                for (size_t s = 0; s < sizeof sample0s / sizeof sample0s[0]; s++) {
                    const size_t per = pers[p], n = B * per;
                    const dropout_ctx d = {rates[r], 0x5eed + p, sample0s[s]};
                    ref->forward(yr, x, B, per, &d);
                    impl->forward(y, x, B, per, &d);
                    memcpy(gr, g0, n * 4);
                    memcpy(g, g0, n * 4);
                    ref->backward(gr, x, B, per, &d);
                    impl->backward(g, x, B, per, &d);
                    cr_expect(memcmp(y, yr, n * 4) == 0,
                              "dropout[%s] forward differs from ref: per_sample %zu rate %g sample0 %ld",
                              backend_name((tlb_backend)b), per, rates[r], sample0s[s]);
                    cr_expect(memcmp(g, gr, n * 4) == 0,
                              "dropout[%s] backward differs from ref: per_sample %zu rate %g sample0 %ld",
                              backend_name((tlb_backend)b), per, rates[r], sample0s[s]);
                    compared++;
                }
    }
    cr_log_info("dropout: %d (backend, shape) pairs bit-compared with ref", compared);
    free(x);
    free(g0);
    free(yr);
    free(y);
    free(gr);
    free(g);
}

Test(ops_dropout, microbatch_split_matches_one_call)
{
    const int B = 5, B1 = 2;
    const size_t per = 37, n = B * per;
    float *x = malloc(n * 4), *whole = malloc(n * 4), *split = malloc(n * 4);
    float *gw = calloc(n, 4), *gs = calloc(n, 4);
    opt_fill(x, n, 1.0f, 3);
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        const dropout_ctx d = {0.3f, 99, 0}, d1 = {0.3f, 99, B1};
        impl->forward(whole, x, B, per, &d);
        impl->forward(split, x, B1, per, &d);
        impl->forward(split + B1 * per, x + B1 * per, B - B1, per, &d1);
        cr_expect(memcmp(whole, split, n * 4) == 0, "dropout[%s] forward: split %d+%d differs",
                  backend_name((tlb_backend)b), B1, B - B1);
        memset(gw, 0, n * 4);
        memset(gs, 0, n * 4);
        impl->backward(gw, x, B, per, &d);
        impl->backward(gs, x, B1, per, &d);
        impl->backward(gs + B1 * per, x + B1 * per, B - B1, per, &d1);
        cr_expect(memcmp(gw, gs, n * 4) == 0, "dropout[%s] backward: split %d+%d differs",
                  backend_name((tlb_backend)b), B1, B - B1);
        /* backward applies the forward's mask: dinp = dout * mask, with dout = x */
        for (size_t i = 0; i < n; i++)
            if (gw[i] != whole[i]) {
                cr_expect(0, "dropout[%s]: backward mask differs from forward at %zu",
                          backend_name((tlb_backend)b), i);
                break;
            }
    }
    free(x);
    free(whole);
    free(split);
    free(gw);
    free(gs);
}

Test(ops_dropout, attention_microbatch_split_matches_one_call)
{
    const int B = 4, B1 = 1, Tq = 3, Tk = 5, H = 3, K = 5, HK = H * K;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const attention_op *at = ops_impl_attention((tlb_backend)b);
        if (!at || !backend_supported((tlb_backend)b)) continue;
        op_case *c = opt_case("attention", at, backend_name((tlb_backend)b),
                              (int[6]){B, Tq, Tk, H, K, 0}, 0.3f, 8);
        opt_zero_grads(c);
        c->forward(c);
        c->backward(c, OPT_ALL_GRADS);
        const size_t nq = (size_t)B * Tq * HK, nk = (size_t)B * Tk * HK;
        float *out = calloc(nq, 4), *probs = calloc(c->out[1].n, 4);
        float *dq = calloc(nq, 4), *dk = calloc(nk, 4), *dv = calloc(nk, 4);
        const dropout_ctx d[2] = {{0.3f, c->drop.key, 0}, {0.3f, c->drop.key, B1}};
        const int b0[2] = {0, B1}, nb[2] = {B1, B - B1};
        for (int part = 0; part < 2; part++) {
            const size_t oq = (size_t)b0[part] * Tq * HK, ok = (size_t)b0[part] * Tk * HK;
            const size_t op = (size_t)b0[part] * H * Tq * Tk;
            at->forward(out + oq, probs + op, c->in[0].x + oq, c->in[1].x + ok, c->in[2].x + ok,
                        NULL, nb[part], Tq, Tk, H, K, &d[part]);
            at->backward(dq + oq, dk + ok, dv + ok, c->cot + oq, c->in[0].x + oq,
                         c->in[1].x + ok, c->in[2].x + ok, probs + op, nb[part], Tq, Tk, H, K,
                         &d[part]);
        }
        cr_expect(memcmp(out, c->out[0].x, nq * 4) == 0, "%s: split %d+%d changes out", c->label,
                  B1, B - B1);
        cr_expect(memcmp(dq, c->in[0].g, nq * 4) == 0, "%s: split changes dq", c->label);
        cr_expect(memcmp(dk, c->in[1].g, nk * 4) == 0, "%s: split changes dk", c->label);
        cr_expect(memcmp(dv, c->in[2].g, nk * 4) == 0, "%s: split changes dv", c->label);
        free(out);
        free(probs);
        free(dq);
        free(dk);
        free(dv);
        opt_case_free(c);
    }
}

Test(ops_dropout, kept_fraction_and_scale)
{
    const int B = 8;
    const size_t per = 25000, n = B * per;
    float *x = ones(n), *y = malloc(n * 4);
    static const float rates[] = {0.1f, 0.3f, 0.5f};
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        for (int r = 0; r < 3; r++) {
            const dropout_ctx d = {rates[r], 2024 + r, 0};
            impl->forward(y, x, B, per, &d);
            size_t kept = 0, odd = 0;
            const float keep_val = 1.0f / (1.0f - rates[r]);
            for (size_t i = 0; i < n; i++) {
                kept += y[i] != 0.0f;
                odd += y[i] != 0.0f && y[i] != keep_val;
            }
            const double frac = (double)kept / n, want = 1.0 - rates[r];
            const double sigma = sqrt(want * (1 - want) / n);
            cr_expect(fabs(frac - want) < 5 * sigma,
                      "dropout[%s] rate %g: kept %.5f, expected %.5f +- %.5f",
                      backend_name((tlb_backend)b), rates[r], frac, want, 5 * sigma);
            cr_expect(odd == 0, "dropout[%s] rate %g: %zu kept values not scaled by 1/(1-rate)",
                      backend_name((tlb_backend)b), rates[r], odd);
        }
    }
    free(x);
    free(y);
}

Test(ops_dropout, rate_zero_is_identity)
{
    const int B = 3;
    const size_t per = 37, n = B * per;
    float *x = malloc(n * 4), *y = malloc(n * 4), *g = malloc(n * 4), *g0 = malloc(n * 4);
    opt_fill(x, n, 1.0f, 5);
    opt_fill(g0, n, 1.0f, 6);
    FOR_DROPOUT_BACKENDS(b, impl)
    {
        const dropout_ctx zero = {0.0f, 1, 0};
        for (int null_ctx = 0; null_ctx < 2; null_ctx++) {
            const dropout_ctx *d = null_ctx ? NULL : &zero;
            impl->forward(y, x, B, per, d);
            cr_expect(memcmp(x, y, n * 4) == 0, "dropout[%s] with %s is not the identity",
                      backend_name((tlb_backend)b), null_ctx ? "NULL ctx" : "rate 0");
            memcpy(g, g0, n * 4);
            impl->backward(g, x, B, per, d);
            for (size_t i = 0; i < n; i++)
                if (g[i] != g0[i] + x[i]) {
                    cr_expect(0, "dropout[%s] backward with %s: dinp[%zu] %g != %g",
                              backend_name((tlb_backend)b), null_ctx ? "NULL ctx" : "rate 0", i,
                              g[i], g0[i] + x[i]);
                    break;
                }
        }
    }
    /* attention: rate 0 and a NULL ctx are the same function */
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        const attention_op *at = ops_impl_attention((tlb_backend)b);
        if (!at || !backend_supported((tlb_backend)b)) continue;
        op_case *z = opt_case("attention", at, backend_name((tlb_backend)b),
                              (int[6]){2, 3, 5, 3, 5, 0}, 0.0f, 4);
        op_case *nul = opt_case("attention", at, backend_name((tlb_backend)b),
                                (int[6]){2, 3, 5, 3, 5, 0}, -1, 4);
        opt_zero_grads(z);
        opt_zero_grads(nul);
        z->forward(z);
        nul->forward(nul);
        z->backward(z, OPT_ALL_GRADS);
        nul->backward(nul, OPT_ALL_GRADS);
        char msg[768];
        cr_expect(opt_compare_cases(nul, z, 0, 0, msg, sizeof msg) == 0, "rate 0 vs NULL: %s",
                  msg);
        opt_case_free(z);
        opt_case_free(nul);
    }
    free(x);
    free(y);
    free(g);
    free(g0);
}

/* Keep decisions are independent where a weak mixer would tie them: the
 * next element, the element one vector (16 lanes) on, the same element of
 * the next sample, and of the next step's key (at rate 0.5 both are kept a
 * quarter of the time); and the 24 bits themselves are uniform (16 bins). */
Test(ops_dropout, keep_decisions_are_independent)
{
    const int B = 64;
    const size_t per = 4096, n = (size_t)B * per;
    const dropout_ctx d = {0.5f, 99, 0}, next_step = {0.5f, 100, 0};
    unsigned char *keep = malloc(n), *keep2 = malloc(n);
    size_t bins[16] = {0};
    for (int b = 0; b < B; b++) {
        const uint64_t k = dropout_sample_key(&d, b), k2 = dropout_sample_key(&next_step, b);
        for (size_t i = 0; i < per; i++) {
            keep[(size_t)b * per + i] = dropout_scale_at(&d, k, i) != 0.0f;
            keep2[(size_t)b * per + i] = dropout_scale_at(&next_step, k2, i) != 0.0f;
            bins[dropout_bits24(k, i) >> 20]++;
        }
    }
    const struct { const char *what; size_t lag; const unsigned char *other; } pairs[] = {
        {"next element", 1, keep}, {"16 elements on", 16, keep},
        {"next sample", per, keep}, {"next step's key", 0, keep2}};
    for (size_t p = 0; p < sizeof pairs / sizeof pairs[0]; p++) {
        size_t both = 0;
        const size_t m = n - pairs[p].lag;
        for (size_t i = 0; i < m; i++) both += keep[i] && pairs[p].other[i + pairs[p].lag];
        const double frac = (double)both / m, sigma = sqrt(0.25 * 0.75 / m);
        cr_expect(fabs(frac - 0.25) < 5 * sigma, "dropout %s: both kept %.5f, expected 0.25 +- %.5f",
                  pairs[p].what, frac, 5 * sigma);
    }
    for (int i = 0; i < 16; i++) {
        const double want = n / 16.0, sigma = sqrt(want * 15.0 / 16.0);
        cr_expect(fabs((double)bins[i] - want) < 5 * sigma, "dropout bits: bin %d holds %zu of %zu", i,
                  bins[i], n);
    }
    free(keep);
    free(keep2);
}
