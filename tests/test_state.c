/* The slow state's diversity measure (model/state_diversity.c) on hand-made
 * states, and on the model: the seed's zero initial state is collapsed (one
 * row repeated), a learned random one is not. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/model.h"
#include "train/init.h"
#include "util/rng.h"

Test(state_diversity, identical_rows_are_rank_one)
{
    enum { B = 2, Ns = 5, D = 7 };
    float x[B * Ns * D];
    double work[Ns * Ns];
    for (int b = 0; b < B; b++)
        for (int i = 0; i < Ns; i++)
            for (int d = 0; d < D; d++) x[(b * Ns + i) * D + d] = (float)(d - 2 + b);
    const state_diversity s = state_diversity_of(x, B, Ns, D, work);
    cr_expect_float_eq(s.cosine, 1.0, 1e-12);
    cr_expect_eq(s.rank, 1.0);
}

Test(state_diversity, orthogonal_rows_are_full_rank)
{
    enum { Ns = 4, D = 6 };
    float x[Ns * D] = {0};
    double work[Ns * Ns];
    for (int i = 0; i < Ns; i++) x[i * D + i + 1] = (float)(i + 1); /* scaled unit vectors */
    const state_diversity s = state_diversity_of(x, 1, Ns, D, work);
    cr_expect_float_eq(s.cosine, 0.0, 1e-12);
    cr_expect_eq(s.rank, Ns);
}

/* Rows in a rotated 2-d plane: rank 2, whatever the basis; a third direction
 * at 0.5% of the largest singular value is below the 1% threshold, at 5% it
 * counts. The Gram matrix is dense, so Jacobi has work to do. */
Test(state_diversity, rank_counts_singular_values_above_one_percent)
{
    enum { Ns = 6, D = 5 };
    float x[Ns * D];
    double work[Ns * Ns];
    const double a[Ns] = {1, 2, -1, 0.5, 3, -2}, b[Ns] = {0.3, -1, 2, 1, 0, 1};
    const double u[D] = {0.6, 0.8, 0, 0, 0}, v[D] = {0, 0, 0.6, 0, 0.8}, w[D] = {0, 0, 0, 1, 0};
    for (double third = 0; third <= 0.05; third += 0.025) {
        for (int i = 0; i < Ns; i++)
            for (int d = 0; d < D; d++)
                x[i * D + d] = (float)(a[i] * u[d] + b[i] * v[d] + (i == 2 ? third * 10 * w[d] : 0));
        const state_diversity s = state_diversity_of(x, 1, Ns, D, work);
        /* sigma_max is about 4.4 here; the third direction's sigma is third * 10. */
        const int want = third == 0 ? 2 : (third * 10 > 0.01 * 4.6 ? 3 : 2);
        cr_expect_eq(s.rank, want, "third direction %.3f: rank %.0f, expected %d", third * 10, s.rank, want);
        cr_expect_lt(s.cosine, 0.9);
    }
}

Test(state_diversity, averages_over_samples)
{
    enum { Ns = 2, D = 2 };
    const float x[2 * Ns * D] = {1, 0, 1, 0, /* collapsed */ 1, 0, 0, 1 /* orthogonal */};
    double work[Ns * Ns];
    const state_diversity s = state_diversity_of(x, 2, Ns, D, work);
    cr_expect_float_eq(s.cosine, 0.5, 1e-12);
    cr_expect_float_eq(s.rank, 1.5, 1e-12);
}

Test(state_diversity, one_row_is_collapsed)
{
    const float x[3] = {1, 2, 3};
    double work[1];
    const state_diversity s = state_diversity_of(x, 1, 1, 3, work);
    cr_expect_eq(s.cosine, 1.0);
    cr_expect_eq(s.rank, 1.0);
}

/* The model at its Keras initialisation on random images (no training
 * needed: the symmetry is in the equations). */
static state_diversity at_init(tlb_state_init init)
{
    tlb_model_config c = model_config_seed();
    c.image_size = 16; /* 2 chunks */
    c.state_init = init;
    const int B = 4;
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    cr_assert_eq(model_plan(&m, B, &err), 0, "%s", err.msg);
    init_keras(&m, 7);
    float *img = malloc((size_t)B * 16 * 16 * 3 * sizeof(float));
    rng_stream r = {3, 0};
    for (int i = 0; i < B * 16 * 16 * 3; i++) img[i] = rng_next_uniform(&r);
    model_forward(&m, img, NULL, B, NULL);
    const state_diversity s = model_state_diversity(&m, B, NULL);
    free(img);
    model_destroy(&m);
    return s;
}

Test(state_diversity, seed_zero_state_is_collapsed)
{
    const state_diversity s = at_init(STATE_INIT_ZEROS);
    cr_expect_geq(s.cosine, 1.0 - 1e-6, "cosine %.9f", s.cosine);
    cr_expect_eq(s.rank, 1.0, "rank %.2f", s.rank);
}

Test(state_diversity, learned_and_sinusoid_states_are_not)
{
    const tlb_state_init kinds[2] = {STATE_INIT_LEARNED, STATE_INIT_SINUSOID};
    for (int k = 0; k < 2; k++) {
        const state_diversity s = at_init(kinds[k]);
        cr_log_info("%s at init: cosine %.4f, rank %.2f", state_init_name(kinds[k]), s.cosine, s.rank);
        cr_expect_lt(s.cosine, 0.99, "%s: cosine %.4f", state_init_name(kinds[k]), s.cosine);
        cr_expect_gt(s.rank, 1.5, "%s: rank %.2f", state_init_name(kinds[k]), s.rank);
    }
}

/* The learned state starts random (a zero one would stay collapsed). */
Test(state_diversity, learned_state_init_is_random)
{
    tlb_model_config c = model_config_seed();
    c.state_init = STATE_INIT_LEARNED;
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    init_keras(&m, 1);
    const param_entry *e = param_table_find(&m.layout.table, "state.init");
    cr_assert(e);
    cr_expect_eq(e->shape[0], 8);
    double mx = 0;
    for (size_t k = 0; k < e->numel; k++) mx = fmax(mx, fabs(m.params[e->offset + k]));
    cr_expect_gt(mx, 1.0);
    cr_expect_leq(mx, sqrtf(3.0f));
    model_destroy(&m);
}
