/* ops_mask: attention's key mask (kv_len, for padded sequences) on every
 * backend: the definition (masked keys get probability 0 and do not change
 * the output, the others a softmax of their own; no key, no output), parity
 * with ref, finite differences, and a full mask bit for bit the unmasked op. */
#include <criterion/criterion.h>

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "op_testing.h"
#include "ops/ops.h"

static void single_thread(void) { omp_set_num_threads(1); }
TestSuite(ops_mask, .init = single_thread);

/* B = 4 samples: no key, one key, part of the keys, every key. dims: B Tq Tk
 * H K sample0; Tk 5 (a masked tail), 16 (whole vectors), 20. */
static const shape mask_shapes[] = {
    {"attention", {4, 3, 5, 3, 5, 0}, -1}, {"attention", {4, 4, 16, 2, 8, 0}, -1},
    {"attention", {4, 2, 20, 1, 13, 0}, 0.3f}, {"attention", {4, 5, 5, 2, 3, 1}, 0.3f},
};
#define N_MASK_SHAPES (sizeof mask_shapes / sizeof mask_shapes[0])

static void lengths_for(int Tk, int kv[4])
{
    kv[0] = 0, kv[1] = 1, kv[2] = Tk / 2 + 1, kv[3] = Tk;
}

static op_case *masked_case(const void *impl, const char *backend, const shape *sh, uint64_t seed)
{
    op_case *c = opt_case("attention", impl, backend, sh->dims, sh->rate, seed);
    int kv[4];
    lengths_for(sh->dims[2], kv);
    opt_case_mask_keys(c, kv);
    return c;
}

static int each_backend(tlb_backend b) { return ops_impl_attention(b) && backend_supported(b); }

Test(ops_mask, masked_keys_get_nothing_and_change_nothing)
{
    for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
        if (!each_backend((tlb_backend)be)) continue;
        for (size_t s = 0; s < N_MASK_SHAPES; s++) {
            const shape *sh = &mask_shapes[s];
            const int B = sh->dims[0], Tq = sh->dims[1], Tk = sh->dims[2], H = sh->dims[3], K = sh->dims[4];
            op_case *a = masked_case(ops_impl_attention((tlb_backend)be), backend_name((tlb_backend)be), sh, 7 + s);
            op_case *z = masked_case(ops_impl_attention((tlb_backend)be), backend_name((tlb_backend)be), sh, 7 + s);
            /* z: every masked key and value replaced by garbage */
            for (int b = 0; b < B; b++)
                for (int j = a->labels[b]; j < Tk; j++)
                    for (int e = 0; e < H * K; e++) {
                        z->in[1].x[((size_t)b * Tk + j) * H * K + e] = 1e3f * (float)(e + 1);
                        z->in[2].x[((size_t)b * Tk + j) * H * K + e] = -7.0f;
                    }
            a->forward(a);
            z->forward(z);
            for (size_t i = 0; i < a->out[0].n; i++)
                cr_assert_eq(a->out[0].x[i], z->out[0].x[i], "%s: out[%zu] depends on a masked key", a->label, i);
            for (int b = 0; b < B; b++)
                for (int r = 0; r < H * Tq; r++) {
                    const float *p = a->out[1].x + ((size_t)b * H * Tq + r) * Tk;
                    double sum = 0.0;
                    for (int j = 0; j < Tk; j++) {
                        if (j >= a->labels[b]) cr_assert_eq(p[j], 0.0f, "%s: sample %d key %d masked", a->label, b, j);
                        sum += p[j];
                    }
                    cr_assert(fabs(sum - (a->labels[b] ? 1.0 : 0.0)) < 1e-5, "%s: sample %d row sum %g", a->label, b,
                              sum);
                }
            /* No key: no output. */
            for (size_t i = 0; i < (size_t)Tq * H * K; i++) cr_assert_eq(a->out[0].x[i], 0.0f);
            opt_case_free(a);
            opt_case_free(z);
        }
    }
}

/* With a sample's keys cut to its first kv_len, masking is the op on the
 * shorter key set (ref against itself, per sample). */
Test(ops_mask, masked_equals_the_shorter_key_set)
{
    const shape *sh = &mask_shapes[0];
    const int Tq = sh->dims[1], Tk = sh->dims[2], H = sh->dims[3], K = sh->dims[4], HK = H * K;
    op_case *a = masked_case(ref_impl("attention"), "ref", sh, 3);
    a->forward(a);
    for (int b = 1; b < 4; b++) {
        const int nk = a->labels[b];
        const int dims[6] = {1, Tq, nk, H, K, 0};
        op_case *s = opt_case("attention", ref_impl("attention"), "ref", dims, -1, 3);
        memcpy(s->in[0].x, a->in[0].x + (size_t)b * Tq * HK, (size_t)Tq * HK * sizeof(float));
        memcpy(s->in[1].x, a->in[1].x + (size_t)b * Tk * HK, (size_t)nk * HK * sizeof(float));
        memcpy(s->in[2].x, a->in[2].x + (size_t)b * Tk * HK, (size_t)nk * HK * sizeof(float));
        s->forward(s);
        for (size_t i = 0; i < (size_t)Tq * HK; i++)
            cr_assert_eq(s->out[0].x[i], a->out[0].x[(size_t)b * Tq * HK + i], "sample %d out[%zu]", b, i);
        opt_case_free(s);
    }
    opt_case_free(a);
}

Test(ops_mask, every_backend_matches_ref)
{
    for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
        if (be == TLB_BACKEND_REF || !each_backend((tlb_backend)be)) continue;
        for (size_t s = 0; s < N_MASK_SHAPES; s++) {
            op_case *r = masked_case(ref_impl("attention"), "ref", &mask_shapes[s], 11 + s);
            op_case *c = masked_case(ops_impl_attention((tlb_backend)be), backend_name((tlb_backend)be),
                                     &mask_shapes[s], 11 + s);
            opt_fill_grads(r, 3);
            opt_fill_grads(c, 3);
            r->forward(r);
            c->forward(c);
            r->backward(r, OPT_ALL_GRADS);
            c->backward(c, OPT_ALL_GRADS);
            char msg[768];
            if (opt_compare_cases(r, c, 1e-5, 1e-6, msg, sizeof msg)) cr_expect(0, "%s", msg);
            opt_case_free(r);
            opt_case_free(c);
        }
    }
}

Test(ops_mask, finite_differences_every_backend)
{
    for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
        if (!each_backend((tlb_backend)be)) continue;
        for (size_t s = 0; s < N_MASK_SHAPES; s++) {
            op_case *c = masked_case(ops_impl_attention((tlb_backend)be), backend_name((tlb_backend)be),
                                     &mask_shapes[s], 1000 + s);
            fd_report r;
            fd_check(c, &fd_default_opts, &r);
            cr_expect(r.checked > 0, "%s: nothing checked", c->label);
            cr_expect(r.failures == 0, "%d of %d FD checks failed; first: %s", r.failures, r.checked, r.first);
            opt_case_free(c);
        }
    }
}

/* kv_len = Tk everywhere is the unmasked op, bit for bit (the image model's
 * path passes NULL). */
Test(ops_mask, full_mask_is_the_unmasked_op)
{
    for (int be = 0; be < TLB_BACKEND_COUNT; be++) {
        if (!each_backend((tlb_backend)be)) continue;
        for (size_t s = 0; s < N_MASK_SHAPES; s++) {
            const shape *sh = &mask_shapes[s];
            op_case *u = opt_case("attention", ops_impl_attention((tlb_backend)be), backend_name((tlb_backend)be),
                                  sh->dims, sh->rate, 5);
            op_case *f = opt_case("attention", ops_impl_attention((tlb_backend)be), backend_name((tlb_backend)be),
                                  sh->dims, sh->rate, 5);
            const int full[4] = {sh->dims[2], sh->dims[2], sh->dims[2], sh->dims[2]};
            opt_case_mask_keys(f, full);
            opt_zero_grads(u);
            opt_zero_grads(f);
            u->forward(u);
            f->forward(f);
            u->backward(u, OPT_ALL_GRADS);
            f->backward(f, OPT_ALL_GRADS);
            char msg[768];
            if (opt_compare_cases(u, f, 0, 0, msg, sizeof msg)) cr_expect(0, "%s", msg);
            opt_case_free(u);
            opt_case_free(f);
        }
    }
}
