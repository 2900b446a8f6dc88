#include <criterion/criterion.h>
#include <math.h>

#include "train/adamw.h"

/* Two steps by hand in double, Keras formula (golden README section 5). */
Test(adamw, matches_the_keras_formula)
{
    const double lr = 1e-3, wd = 0.1, b1 = 0.9, b2 = 0.999, eps = 1e-7;
    float w[3] = {0.5f, -1.0f, 0.0f}, m[3] = {0}, v[3] = {0};
    const float g1[3] = {0.1f, -0.02f, 0.0f}, g2[3] = {-0.3f, 0.05f, 1e-4f};
    double W[3] = {0.5, -1.0, 0.0}, M[3] = {0}, Vv[3] = {0};
    const adamw_hparams h = {(float)lr, (float)wd, (float)b1, (float)b2, (float)eps};
    const float *gs[2] = {g1, g2};
    for (int t = 1; t <= 2; t++) {
        adamw_step(w, m, v, gs[t - 1], 3, t, &h);
        const double alpha = lr * sqrt(1 - pow(b2, t)) / (1 - pow(b1, t));
        for (int i = 0; i < 3; i++) {
            const double g = gs[t - 1][i];
            W[i] -= lr * wd * W[i];
            M[i] = b1 * M[i] + (1 - b1) * g;
            Vv[i] = b2 * Vv[i] + (1 - b2) * g * g;
            W[i] -= alpha * M[i] / (sqrt(Vv[i]) + eps);
            cr_expect_float_eq(w[i], W[i], 1e-6, "step %d, w[%d] = %.9g, expected %.9g", t, i, w[i], W[i]);
        }
    }
}

/* Weight decay is decoupled: with a zero gradient only the decay moves w. */
Test(adamw, decay_applies_to_every_variable)
{
    float w[1] = {2.0f}, m[1] = {0}, v[1] = {0}, g[1] = {0};
    const adamw_hparams h = adamw_keras_defaults(0.5f, 0.1f);
    adamw_step(w, m, v, g, 1, 1, &h);
    cr_expect_float_eq(w[0], 2.0f * (1 - 0.05f), 1e-7);
}
