/* bf16_h: the fused ffn with its saved pre-activation h in bf16 (ops.h,
 * ffn_h16_op; the config's bf16_activations). Its forward is the fp32 ffn's
 * bit for bit and stores bf16_from_f32(h) (bf16.h), the rounding checked on
 * ties, NaN, infinities and denormals; its backward is the fp32 backward
 * given the widened h16, bit for bit, on odd shapes, dropout on and off,
 * 1 and 3 threads. Then where the table offers it, and a model planned with
 * it: the same loss and logits, less memory, gradients those of the rounded
 * h (close to fp32's, not equal). The SIMD backends only: on a CPU without
 * AVX-512 its AVX-512 form is skipped (and counted so). */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "op_testing.h"
#include "ops/bf16.h"
#include "ops/impls.h"
#include "ops/ops.h"
#include "test_helpers.h"
#include "util/rng.h"

static const tlb_backend simd_backends[] = {TLB_BACKEND_AVX2, TLB_BACKEND_AVX512};

static const ffn_h16_op *h16_impl(tlb_backend b) { return b == TLB_BACKEND_AVX2 ? &ffn_h16_avx2 : &ffn_h16_avx512; }

static float *copy_of(const float *x, size_t n)
{
    float *p = malloc(n * sizeof(float));
    memcpy(p, x, n * sizeof(float));
    return p;
}

static uint32_t bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return u;
}

static void expect_same_bits(const char *what, const char *label, const float *want, const float *got, size_t n)
{
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (bits(want[i]) != bits(got[i]) && bad++ == 0) first = i;
    cr_expect(bad == 0, "%s: %s: %zu of %zu differ from the fp32 ffn's, first [%zu] %.9g vs %.9g", label, what, bad,
              n, first, bad ? want[first] : 0.0, bad ? got[first] : 0.0);
}

/* h16 == bf16_from_f32(h) element by element. */
static void expect_rounded(const char *label, const float *h, const uint16_t *h16, size_t n)
{
    size_t bad = 0, first = 0;
    for (size_t i = 0; i < n; i++)
        if (h16[i] != bf16_from_f32(h[i]) && bad++ == 0) first = i;
    cr_expect(bad == 0, "%s: %zu of %zu bf16 values are not bf16_from_f32(h), first [%zu]: h %08x -> %04x, want %04x",
              label, bad, n, first, bad ? bits(h[first]) : 0u, bad ? h16[first] : 0u,
              bad ? bf16_from_f32(h[first]) : 0u);
}

/* One case: forward both ways, then backward, backward_first and the
 * dw2-only backward, each from the same starting gradients. */
static void h16_vs_fp32(tlb_backend be, const int dims[6], float rate, uint64_t seed)
{
    const ffn_op *f32 = ops_impl_ffn(be);
    const ffn_h16_op *f16 = h16_impl(be);
    op_case *c = opt_case("ffn", f32, backend_name(be), dims, rate, seed);
    opt_fill_grads(c, 4);
    const int B = dims[0], T = dims[1], D = dims[2], F = dims[3];
    const size_t md = (size_t)B * T * D, mf = (size_t)B * T * F;
    rng_stream cr = {seed, 1};
    for (size_t i = 0; i < md; i++) c->cot[i] = rng_next_uniform(&cr) - 0.5f;
    const float *inp = c->in[0].x, *w1 = c->in[1].x, *b1 = c->in[2].x, *w2 = c->in[3].x, *b2 = c->in[4].x,
                *res = c->in[5].x;
    float *out32 = malloc(md * sizeof(float)), *h32 = malloc(mf * sizeof(float));
    float *out16 = malloc(md * sizeof(float)), *widened = malloc(mf * sizeof(float));
    uint16_t *h16 = malloc(mf * sizeof(uint16_t) + 2);
    f32->forward(out32, h32, inp, w1, b1, w2, b2, res, B, T, D, F, c->dropp);
    f16->forward(out16, h16, inp, w1, b1, w2, b2, res, B, T, D, F, c->dropp);
    expect_same_bits("out", c->label, out32, out16, md);
    expect_rounded(c->label, h32, h16, mf);
    for (size_t i = 0; i < mf; i++) widened[i] = bf16_to_f32(h16[i]);

    for (int form = 0; form < 3; form++) { /* backward, backward_first, dw2 and db2 only */
        float *a[6], *b[6];
        for (int i = 0; i < 6; i++) a[i] = copy_of(c->in[i].g, c->in[i].n), b[i] = copy_of(c->in[i].g, c->in[i].n);
        const int all = form < 2;
        if (form == 1) {
            f32->backward_first(a[0], a[1], a[2], a[3], a[4], a[5], c->cot, inp, w1, w2, widened, B, T, D, F, c->dropp);
            f16->backward_first(b[0], b[1], b[2], b[3], b[4], b[5], c->cot, inp, w1, w2, h16, B, T, D, F, c->dropp);
        } else {
            f32->backward(all ? a[0] : NULL, all ? a[1] : NULL, all ? a[2] : NULL, a[3], a[4], a[5], c->cot, inp, w1,
                          w2, widened, B, T, D, F, c->dropp);
            f16->backward(all ? b[0] : NULL, all ? b[1] : NULL, all ? b[2] : NULL, b[3], b[4], b[5], c->cot, inp, w1,
                          w2, h16, B, T, D, F, c->dropp);
        }
        static const char *const forms[] = {"backward", "backward_first", "dw2 only"};
        for (int i = 0; i < 6; i++) {
            char what[64];
            snprintf(what, sizeof what, "%s: d%s", forms[form], c->in[i].name);
            expect_same_bits(what, c->label, a[i], b[i], c->in[i].n);
            free(a[i]), free(b[i]);
        }
    }
    free(out32), free(h32), free(out16), free(widened), free(h16);
    opt_case_free(c);
}

/* B T D F sample0, rate (< 0: NULL ctx): one value, odd sizes (M*F not a
 * vector multiple, rows not a multiple of the GEMM's 6), the model's shape. */
static const struct {
    int dims[6];
    float rate;
} shapes[] = {
    {{1, 1, 1, 1, 0}, -1},     {{2, 3, 5, 17, 1}, 0.3f}, {{3, 1, 17, 5, 0}, 0.0f},
    {{3, 7, 33, 65, 2}, 0.5f}, {{37, 8, 64, 256, 5}, 0.2f}, {{4, 5, 20, 41, 1}, -1},
};

Test(bf16_h, ffn_is_the_fp32_ffn_with_h_rounded_bit_for_bit)
{
    int cases = 0, skipped = 0;
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t == 0 ? 1 : 3);
        for (size_t b = 0; b < sizeof simd_backends / sizeof simd_backends[0]; b++) {
            if (!backend_supported(simd_backends[b])) {
                skipped++;
                continue;
            }
            for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++, cases++)
                h16_vs_fp32(simd_backends[b], shapes[s].dims, shapes[s].rate, 40 + s);
        }
    }
    cr_log_info("bf16_h: %d cases, %d backend passes skipped (this CPU lacks them)", cases, skipped);
    cr_expect_geq(cases, backend_supported(TLB_BACKEND_AVX2) ? 2 * (int)(sizeof shapes / sizeof shapes[0]) : 0);
}

/* h is b1 exactly when inp and w1 are zero (b1 + 0*0), so the bias carries
 * the rounding's edge cases into the store: ties both ways, the largest
 * finite value (rounds to infinity), NaNs (quiet and signalling), infinities,
 * denormals (to signed zero) and ordinary values. */
Test(bf16_h, rounding_of_the_edge_cases)
{
    static const uint32_t special[] = {
        0x3f808000u, 0x3f818000u, 0xbf808000u, 0x3f80ffffu, 0x3f807fffu, 0x7f7fffffu, 0xff7fffffu, 0x7f7f7fffu,
        0x7fc00001u, 0x7f800001u, 0xffc12345u, 0x7f800000u, 0xff800000u, 0x00000001u, 0x807fffffu, 0x00800000u,
        0x3eaaaaabu, 0xc0490fdbu, 0x00000000u, 0x42f6e979u, 0x33800000u,
    };
    const int F = (int)(sizeof special / sizeof special[0]), D = 3, B = 2, T = 3, M = B * T;
    float *inp = calloc((size_t)M * D, sizeof(float)), *w1 = calloc((size_t)D * F, sizeof(float));
    float *b1 = malloc((size_t)F * sizeof(float)), *w2 = calloc((size_t)F * D, sizeof(float));
    float *b2 = calloc(D, sizeof(float)), *res = calloc((size_t)M * D, sizeof(float));
    float *out = malloc((size_t)M * D * sizeof(float)), *h = malloc((size_t)M * F * sizeof(float));
    uint16_t *h16 = malloc((size_t)M * F * sizeof(uint16_t));
    memcpy(b1, special, sizeof special);
    int cases = 0;
    for (size_t b = 0; b < sizeof simd_backends / sizeof simd_backends[0]; b++) {
        if (!backend_supported(simd_backends[b])) continue;
        ops_impl_ffn(simd_backends[b])->forward(out, h, inp, w1, b1, w2, b2, res, B, T, D, F, NULL);
        h16_impl(simd_backends[b])->forward(out, h16, inp, w1, b1, w2, b2, res, B, T, D, F, NULL);
        int passed = 0; /* the product hands the bias through (NaNs stay NaN, the rest bit for bit) */
        for (int j = 0; j < F; j++)
            passed += isnan(b1[j]) ? isnan(h[j]) : bits(h[j]) == special[j] || special[j] == 0x00000001u ||
                                                        special[j] == 0x807fffffu;
        cr_expect_eq(passed, F, "%s: h is not the bias: the edge cases did not reach the store",
                     backend_name(simd_backends[b]));
        expect_rounded(backend_name(simd_backends[b]), h, h16, (size_t)M * F);
        /* and the values themselves, not only agreement with bf16_from_f32 */
        cr_expect_eq(h16[0], 0x3f80); /* tie to even, down */
        cr_expect_eq(h16[1], 0x3f82); /* tie to even, up */
        cr_expect_eq(h16[5], 0x7f80); /* the largest float rounds to infinity */
        cr_expect_eq(h16[9] & 0x7fc0, 0x7fc0); /* a signalling NaN comes out quiet */
        cr_expect_eq(h16[13], 0x0000); /* a denormal is zero */
        cr_expect_eq(h16[14], 0x8000); /* with its sign */
        cases++;
    }
    cr_expect_geq(cases, backend_supported(TLB_BACKEND_AVX2));
    free(inp), free(w1), free(b1), free(w2), free(b2), free(res), free(out), free(h), free(h16);
}

static op_table table(const char *spec)
{
    op_table t;
    tlb_error err;
    unsetenv("TLB_BACKEND");
    cr_assert_eq(ops_table_select(&t, spec, &err), 0, "%s: %s", spec ? spec : "automatic", err.msg);
    return t;
}

Test(bf16_h, offered_only_where_the_fused_simd_ffn_runs)
{
    op_table t = table("ref");
    cr_expect_eq(ops_table_set_bf16_h(&t, 1), -1, "ref keeps h in fp32");
    cr_expect_null(ops_ffn_h16(&t));
    cr_expect_str_eq(ops_table_precision(&t), "fp32");
    t = table("dnnl");
    cr_expect_eq(ops_table_set_bf16_h(&t, 1), -1, "oneDNN has no fused ffn");
    for (size_t b = 0; b < sizeof simd_backends / sizeof simd_backends[0]; b++) {
        if (!backend_supported(simd_backends[b])) continue;
        t = table(backend_name(simd_backends[b]));
        cr_expect_null(ops_ffn_h16(&t), "not asked for: fp32");
        cr_assert_eq(ops_table_set_bf16_h(&t, 1), 0, "%s", backend_name(simd_backends[b]));
        cr_expect_eq(ops_ffn_h16(&t), h16_impl(simd_backends[b]));
        cr_expect_str_eq(ops_table_precision(&t), "fp32, bf16 h");
        cr_expect_eq(ops_table_set_bf16_h(&t, 0), 0);
        cr_expect_null(ops_ffn_h16(&t));
        char off[64];
        snprintf(off, sizeof off, "%s,ffn:off", backend_name(simd_backends[b]));
        t = table(off);
        cr_expect_eq(ops_table_set_bf16_h(&t, 1), -1, "%s: the unfused ffn keeps h in fp32", off);
    }
    if (ops_mixed_precision_supported() && backend_supported(TLB_BACKEND_AVX512)) {
        t = table(NULL); /* bf16 dense turned on after: mixed precision's FFN stage keeps h16 */
        cr_assert_eq(ops_table_set_bf16_h(&t, 1), 0);
        cr_assert_eq(ops_table_set_bf16(&t, 1), 0);
        cr_expect_null(ops_ffn_h16(&t), "the fp32 ffn steps aside");
        cr_expect(ops_table_saves_h16(&t));
        cr_expect_str_eq(ops_table_precision(&t), "bf16 dense, bf16 h");
        t = table("gelu:ref"); /* mixed precision without its stage: h stays fp32 */
        cr_assert_eq(ops_table_set_bf16(&t, 1), 0);
        cr_expect_eq(ops_table_set_bf16_h(&t, 1), -1);
        cr_expect_str_eq(ops_table_precision(&t), "bf16 dense");
    }
}

#define MB 7

static test_step model_run(const char *spec, int h_bf16)
{
    op_table ops = table(spec);
    if (h_bf16) cr_assert_eq(ops_table_set_bf16_h(&ops, 1), 0);
    return test_small_step(&ops, TLB_WIRING_KERAS, MB, 23, 0.4f, 3, (model_dropout){1, 0x5eed, 7});
}

/* A model planned with bf16 h: its forward is fp32's bit for bit (the loss,
 * the logits), its plan smaller, and its gradients those of h rounded to
 * bf16: not fp32's (else nothing was rounded), within a relative L2 distance
 * that bf16's rounding bounds. Each h carries a relative error of at most
 * 2^-9, which reaches a gradient through gelu'(h) and the products of the
 * backward: a few 2^-9 at most in the aggregate; 2^-6 leaves room for
 * cancellation in the small model's sums and still fails an h that was
 * rounded coarser than bf16 (or a wrong h altogether). */
Test(bf16_h, model_gradients_are_those_of_the_rounded_h)
{
    int runs = 0;
    for (size_t b = 0; b < sizeof simd_backends / sizeof simd_backends[0]; b++) {
        if (!backend_supported(simd_backends[b])) continue;
        const char *spec = backend_name(simd_backends[b]);
        test_step f32 = model_run(spec, 0), f16 = model_run(spec, 1);
        cr_expect_eq(f32.loss, f16.loss, "%s: the forward changed: loss %.9g vs %.9g", spec, f32.loss, f16.loss);
        cr_expect_eq(memcmp(f32.logits, f16.logits, sizeof(float) * MB * 5), 0, "%s: the logits changed", spec);
        cr_expect_lt(f16.plan_bytes, f32.plan_bytes, "%s: bf16 h saved no memory", spec);
        double d2 = 0, n2 = 0;
        size_t differ = 0;
        for (size_t i = 0; i < f32.n; i++) {
            const double d = (double)f16.grads[i] - f32.grads[i];
            d2 += d * d, n2 += (double)f32.grads[i] * f32.grads[i];
            differ += f16.grads[i] != f32.grads[i];
        }
        const double rel = sqrt(d2 / n2);
        cr_log_info("%s: bf16 h: %zu of %zu gradients differ, relative L2 distance %.3g (2^-9 = %.3g)", spec, differ,
                    f32.n, rel, ldexp(1, -9));
        cr_expect_gt(differ, 0, "%s: no gradient changed: h was not rounded", spec);
        cr_expect_lt(rel, ldexp(1, -6), "%s: gradients %.3g from fp32's, more than bf16's rounding explains", spec,
                     rel);
        test_step_free(&f32), test_step_free(&f16);
        runs++;
    }
    cr_expect_geq(runs, backend_supported(TLB_BACKEND_AVX2));
}
