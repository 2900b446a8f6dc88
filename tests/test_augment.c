/* Augmentation beyond the seed's crop and flip: RandAugment ops, random
 * erasing, mixup and cutmix, and the loader that applies them. All on
 * synthetic images, no dataset needed. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "data/augment.h"
#include "data/fetch.h"
#include "data/loader.h"
#include "data/mix.h"
#include "data/random_erase.h"
#include "data/randaugment.h"
#include "util/rng.h"
#include "test_helpers.h"

enum { N = 37, S = 8, IMG = S * S * 3 };
static uint8_t lab[N], pix[N * CIFAR10_PIXELS];

/* The same synthetic split the pinned hash below was computed on. */
static cifar10_view synth_split(void)
{
    for (int i = 0; i < N; i++) {
        lab[i] = (uint8_t)(i % 10);
        for (int j = 0; j < CIFAR10_PIXELS; j++) pix[i * CIFAR10_PIXELS + j] = (uint8_t)(i * 29 + j * 11 + (j >> 6));
    }
    return (cifar10_view){N, lab, pix};
}

static loader *make_loader(const cifar10_view *v, augment_options aug, int threads, uint64_t seed)
{
    loader_config cfg = {.batch_size = 8, .image_size = S, .train = 1, .shuffle = LOADER_SHUFFLE_EPOCH,
                         .drop_last = 1, .num_threads = threads, .depth = 3, .seed = seed, .aug = aug};
    loader *l;
    tlb_error err = {0};
    cr_assert_eq(loader_create(&l, v, &cfg, &err), 0, "%s", err.msg);
    return l;
}

/* XXH3 of two epochs' x, y, idx (and y2, lam when present). */
static uint64_t hash_epochs(loader *l)
{
    XXH3_state_t *st = XXH3_createState();
    XXH3_64bits_reset(st);
    for (int e = 0; e < 2; e++) {
        loader_start_epoch(l, e);
        const loader_batch *b;
        while ((b = loader_next(l))) {
            XXH3_64bits_update(st, b->x, (size_t)b->size * IMG * sizeof(float));
            XXH3_64bits_update(st, b->y, (size_t)b->size * sizeof(int));
            XXH3_64bits_update(st, b->idx, (size_t)b->size * sizeof(int));
            if (b->y2) XXH3_64bits_update(st, b->y2, (size_t)b->size * sizeof(int));
            if (b->lam) XXH3_64bits_update(st, b->lam, (size_t)b->size * sizeof(float));
        }
    }
    uint64_t h = XXH3_64bits_digest(st);
    XXH3_freeState(st);
    return h;
}

/* A smooth, varied test image in [0, 1]. */
static void test_image(float *img, int side, int seed)
{
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++)
            for (int c = 0; c < 3; c++)
                img[(y * side + x) * 3 + c] =
                    0.5f + 0.45f * sinf(0.37f * (float)x + 0.23f * (float)y * (float)(c + 1) + (float)seed);
}

static void transpose(float *out, const float *in, int side)
{
    for (int y = 0; y < side; y++)
        for (int x = 0; x < side; x++) memcpy(out + (x * side + y) * 3, in + (y * side + x) * 3, 3 * sizeof(float));
}

/* ---- defaults: the seed pipeline, bit for bit ---- */

Test(augment, defaults_leave_the_seed_pipeline_bit_identical)
{
    /* Hash of the seed pipeline's two epochs, computed with the loader as it
     * was before augmentation options existed (fa78502). */
    const uint64_t seed_pipeline = 0x0823a70fa60ec635ULL;
    cifar10_view v = synth_split();
    loader *l = make_loader(&v, (augment_options){0}, 1, 42);
    cr_expect_eq(hash_epochs(l), seed_pipeline, "default augmentation changed the seed's batches");
    loader_start_epoch(l, 0);
    const loader_batch *b = loader_next(l);
    cr_expect_null(b->y2, "no partner labels without mixing");
    cr_expect_null(b->lam);
    loader_destroy(l);
    /* Negative control: the hash does see each augmentation. randaugment_m
     * alone (n = 0) is not an augmentation and must not move it. */
    const augment_options on[] = {{.randaugment_n = 1, .randaugment_m = 9}, {.random_erase = 0.5},
                                  {.mixup_alpha = 0.2}, {.cutmix_alpha = 1.0}, {.randaugment_m = 30}};
    for (int i = 0; i < 5; i++) {
        l = make_loader(&v, on[i], 1, 42);
        if (i < 4) cr_expect_neq(hash_epochs(l), seed_pipeline, "option set %d", i);
        else cr_expect_eq(hash_epochs(l), seed_pipeline, "randaugment_m without n");
        loader_destroy(l);
    }
}

Test(augment, everything_on_is_deterministic_and_independent_of_worker_count)
{
    cifar10_view v = synth_split();
    const augment_options all = {.randaugment_n = 2, .randaugment_m = 15, .random_erase = 0.5, .mixup_alpha = 0.4,
                                 .cutmix_alpha = 1.0};
    uint64_t ref = 0;
    for (int t = 0; t <= 2; t++) {
        loader *l = make_loader(&v, all, t, 42);
        uint64_t h = hash_epochs(l);
        cr_expect_eq(hash_epochs(l), h, "same loader, same epochs again");
        if (t == 0) ref = h;
        else cr_expect_eq(h, ref, "%d worker threads vs inline", t);
        loader_destroy(l);
    }
    loader *l = make_loader(&v, all, 2, 43);
    cr_expect_neq(hash_epochs(l), ref, "another seed draws otherwise");
    loader_destroy(l);

    /* Resuming at batch 2 of epoch 1 gives that batch as an uninterrupted epoch does. */
    static float want[8 * IMG];
    int want_y2[8];
    l = make_loader(&v, all, 2, 42);
    loader_start_epoch(l, 1);
    const loader_batch *b = NULL;
    for (int k = 0; k < 3; k++) b = loader_next(l);
    memcpy(want, b->x, sizeof want);
    memcpy(want_y2, b->y2, sizeof want_y2);
    loader_start_epoch_at(l, 1, 2);
    b = loader_next(l);
    cr_expect_eq(b->index, 2);
    cr_expect_eq(memcmp(b->x, want, sizeof want), 0, "resumed batch differs");
    cr_expect_eq(memcmp(b->y2, want_y2, sizeof want_y2), 0);
    loader_destroy(l);
}

Test(augment, per_image_draws_are_a_function_of_seed_epoch_index)
{
    cifar10_view v = synth_split();
    const augment_options o = {.randaugment_n = 3, .randaugment_m = 20, .random_erase = 1.0};
    float a[IMG], b[IMG], c[IMG], scratch[IMG];
    int differ_epoch = 0, differ_index = 0;
    for (int i = 0; i < N; i++) {
        const uint8_t *px = v.pixels + (size_t)i * CIFAR10_PIXELS;
        augment_train_with(a, scratch, px, S, &o, 7, 1, i);
        memset(scratch, 0x5a, sizeof scratch); /* scratch carries nothing between images */
        augment_train_with(b, scratch, px, S, &o, 7, 1, i);
        cr_assert_eq(memcmp(a, b, sizeof a), 0, "image %d", i);
        augment_train_with(c, scratch, px, S, &o, 7, 2, i);
        differ_epoch += memcmp(a, c, sizeof a) != 0;
        augment_train_with(c, scratch, px, S, &o, 7, 1, i + 1000);
        differ_index += memcmp(a, c, sizeof a) != 0;
    }
    cr_expect_eq(differ_epoch, N);
    cr_expect_eq(differ_index, N);
}

/* ---- random erasing ---- */

Test(random_erase, changes_only_a_rectangle_of_the_drawn_size)
{
    enum { SIDE = 48, TRIALS = 400 };
    static float img[SIDE * SIDE * 3], orig[SIDE * SIDE * 3];
    test_image(orig, SIDE, 3);
    int erased = 0;
    for (int t = 0; t < TRIALS; t++) {
        const uint64_t key = rng_key(99, (uint64_t)t);
        memcpy(img, orig, sizeof img);
        random_erase(img, SIDE, 1.0, key);
        erase_rect r = random_erase_draw(key, SIDE, 1.0);
        if (r.h == 0) {
            cr_assert_eq(memcmp(img, orig, sizeof img), 0, "no rectangle, no change");
            continue;
        }
        erased++;
        cr_assert(r.y >= 0 && r.x >= 0 && r.y + r.h <= SIDE && r.x + r.w <= SIDE && r.h < SIDE && r.w < SIDE,
                  "rect %d,%d %dx%d", r.y, r.x, r.h, r.w);
        /* Area and aspect as drawn, up to rounding h and w to whole pixels. */
        const double area = (double)r.h * r.w / (SIDE * SIDE), aspect = (double)r.h / r.w;
        cr_assert(area > ERASE_MIN_AREA * 0.7 && area < ERASE_MAX_AREA * 1.15, "area %.4f", area);
        cr_assert(aspect > ERASE_MIN_ASPECT * 0.75 && aspect < 1.33 / ERASE_MIN_ASPECT, "aspect %.3f", aspect);
        int changed_in = 0;
        for (int y = 0; y < SIDE; y++)
            for (int x = 0; x < SIDE; x++) {
                const int in = y >= r.y && y < r.y + r.h && x >= r.x && x < r.x + r.w;
                for (int c = 0; c < 3; c++) {
                    const float got = img[(y * SIDE + x) * 3 + c], was = orig[(y * SIDE + x) * 3 + c];
                    if (!in) cr_assert_eq(got, was, "pixel (%d,%d) outside the rectangle changed", y, x);
                    else {
                        cr_assert(got >= 0.0f && got < 1.0f);
                        changed_in += got != was;
                    }
                }
            }
        cr_assert_eq(changed_in, r.h * r.w * 3, "every erased value is a fresh draw");
    }
    cr_expect(erased > TRIALS * 0.95, "p = 1 erases (nearly) always: %d of %d", erased, TRIALS);
}

Test(random_erase, probability_is_honoured)
{
    int hits = 0;
    const int T = 8000;
    for (int t = 0; t < T; t++) {
        cr_assert_eq(random_erase_draw(rng_key(5, (uint64_t)t), 48, 0.0).h, 0);
        hits += random_erase_draw(rng_key(5, (uint64_t)t), 48, 0.25).h > 0;
    }
    /* 0.25 x (a fitting rectangle within 10 tries, ~always): 2000 +- 4 sigma */
    cr_expect(hits > 1840 && hits < 2160, "%d of %d erased at p = 0.25", hits, T);
}

/* ---- RandAugment ---- */

Test(randaugment, every_op_with_a_magnitude_is_identity_at_0)
{
    enum { SIDE = 12 };
    float img[SIDE * SIDE * 3], orig[SIDE * SIDE * 3], scratch[SIDE * SIDE * 3];
    test_image(orig, SIDE, 1);
    for (int op = 0; op < RA_NUM_OPS; op++) {
        if (op == RA_AUTOCONTRAST || op == RA_EQUALIZE) continue; /* no magnitude */
        memcpy(img, orig, sizeof img);
        randaugment_apply_op(img, scratch, SIDE, (randaugment_op)op, 0.0f);
        cr_expect_eq(memcmp(img, orig, sizeof img), 0, "%s at magnitude 0", randaugment_op_name(op));
        /* ... and each does something at full magnitude (the check can fail). */
        randaugment_apply_op(img, scratch, SIDE, (randaugment_op)op, 1.0f);
        if (op != RA_IDENTITY)
            cr_expect_neq(memcmp(img, orig, sizeof img), 0, "%s at magnitude 30", randaugment_op_name(op));
    }
}

Test(randaugment, geometric_ops_commute_with_transposition)
{
    enum { SIDE = 13 };
    float img[SIDE * SIDE * 3], t_img[SIDE * SIDE * 3], a[SIDE * SIDE * 3], b[SIDE * SIDE * 3],
        scratch[SIDE * SIDE * 3];
    test_image(img, SIDE, 2);
    transpose(t_img, img, SIDE);
    const float levels[] = {0.3f, -0.7f, 1.0f};
    for (int k = 0; k < 3; k++) {
        const float lv = levels[k];
        /* rotate(T img, th) == T rotate(img, -th) */
        memcpy(a, t_img, sizeof a);
        randaugment_apply_op(a, scratch, SIDE, RA_ROTATE, lv);
        memcpy(b, img, sizeof b);
        randaugment_apply_op(b, scratch, SIDE, RA_ROTATE, -lv);
        transpose(scratch, b, SIDE);
        cr_expect_eq(memcmp(a, scratch, sizeof a), 0, "rotate %.1f", lv);
        /* shear_x(T img) == T shear_y(img); translate likewise */
        const randaugment_op pairs[2][2] = {{RA_SHEAR_X, RA_SHEAR_Y}, {RA_TRANSLATE_X, RA_TRANSLATE_Y}};
        for (int p = 0; p < 2; p++) {
            memcpy(a, t_img, sizeof a);
            randaugment_apply_op(a, scratch, SIDE, pairs[p][0], lv);
            memcpy(b, img, sizeof b);
            randaugment_apply_op(b, scratch, SIDE, pairs[p][1], lv);
            transpose(scratch, b, SIDE);
            cr_expect_eq(memcmp(a, scratch, sizeof a), 0, "%s %.1f", randaugment_op_name(pairs[p][0]), lv);
        }
    }
}

Test(randaugment, translate_moves_whole_pixels_and_fills_with_zero)
{
    enum { SIDE = 48 };
    static float img[SIDE * SIDE * 3], orig[SIDE * SIDE * 3], scratch[SIDE * SIDE * 3];
    test_image(orig, SIDE, 4);
    memcpy(img, orig, sizeof img);
    /* level 0.5: int(150/331 * 48 * 0.5) = 10 pixels to the right */
    randaugment_apply_op(img, scratch, SIDE, RA_TRANSLATE_X, 0.5f);
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++)
            for (int c = 0; c < 3; c++) {
                const float want = x < 10 ? 0.0f : orig[(y * SIDE + x - 10) * 3 + c];
                cr_assert_eq(img[(y * SIDE + x) * 3 + c], want, "(%d,%d,%d)", y, x, c);
            }
}

Test(randaugment, rotate_keeps_the_centre_and_a_centred_disc)
{
    enum { SIDE = 33 };
    float img[SIDE * SIDE * 3], scratch[SIDE * SIDE * 3];
    const int ctr = SIDE / 2;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            const float r2 = (float)((y - ctr) * (y - ctr) + (x - ctr) * (x - ctr));
            for (int c = 0; c < 3; c++) img[(y * SIDE + x) * 3 + c] = r2 <= 100.0f ? 1.0f : 0.25f;
        }
    randaugment_apply_op(img, scratch, SIDE, RA_ROTATE, 0.8f);
    int wrong = 0;
    for (int y = 0; y < SIDE; y++)
        for (int x = 0; x < SIDE; x++) {
            const float r2 = (float)((y - ctr) * (y - ctr) + (x - ctr) * (x - ctr));
            const float v = img[(y * SIDE + x) * 3];
            if (r2 < 81.0f) wrong += v != 1.0f;                                 /* well inside the disc */
            else if (r2 > 121.0f && r2 < 15.0f * 15.0f) wrong += v != 0.25f;   /* ring outside it */
        }
    cr_expect_eq(wrong, 0);
    cr_expect_eq(img[(ctr * SIDE + ctr) * 3], 1.0f);
}

Test(randaugment, colour_ops_follow_their_definitions)
{
    enum { SIDE = 16, NV = SIDE * SIDE * 3 };
    float img[NV], orig[NV], scratch[NV];
    test_image(orig, SIDE, 5);

    memcpy(img, orig, sizeof img);
    randaugment_apply_op(img, scratch, SIDE, RA_BRIGHTNESS, 0.5f); /* factor 1.45 */
    for (int i = 0; i < NV; i++) cr_assert_float_eq(img[i], fminf(1.0f, 1.45f * orig[i]), 1e-6);

    memcpy(img, orig, sizeof img);
    randaugment_apply_op(img, scratch, SIDE, RA_SOLARIZE, 0.3f); /* invert above 0.7 */
    for (int i = 0; i < NV; i++) cr_assert_eq(img[i], orig[i] > 0.7f ? 1.0f - orig[i] : orig[i]);

    memcpy(img, orig, sizeof img);
    randaugment_apply_op(img, scratch, SIDE, RA_POSTERIZE, 1.0f); /* 4 bits */
    for (int i = 0; i < NV; i++) {
        const int byte = (int)lrintf(img[i] * 255.0f);
        cr_assert_eq(byte % 16, 0, "posterized value %d", byte);
        cr_assert(fabsf(img[i] - orig[i]) < 16.5f / 255.0f);
    }

    memcpy(img, orig, sizeof img);
    randaugment_apply_op(img, scratch, SIDE, RA_COLOR, -1.0f); /* factor 0.1: nearly grey */
    for (int p = 0; p < SIDE * SIDE; p++) {
        cr_assert(fabsf(img[p * 3] - img[p * 3 + 1]) < 0.1f && fabsf(img[p * 3 + 1] - img[p * 3 + 2]) < 0.1f);
    }

    memcpy(img, orig, sizeof img);
    randaugment_apply_op(img, scratch, SIDE, RA_AUTOCONTRAST, 0.0f);
    for (int c = 0; c < 3; c++) {
        float lo = 1, hi = 0;
        for (int p = 0; p < SIDE * SIDE; p++) lo = fminf(lo, img[p * 3 + c]), hi = fmaxf(hi, img[p * 3 + c]);
        cr_expect_float_eq(lo, 0.0f, 1e-6, "channel %d min", c);
        cr_expect_float_eq(hi, 1.0f, 1e-6, "channel %d max", c);
    }
}

Test(randaugment, equalize_is_monotone_and_spreads_a_narrow_histogram)
{
    enum { SIDE = 32, NV = SIDE * SIDE * 3 };
    float img[NV], orig[NV], scratch[NV];
    for (int i = 0; i < NV; i++) orig[i] = 0.4f + 0.2f * (float)((i * 7919) % 1000) / 1000.0f; /* [0.4, 0.6) */
    memcpy(img, orig, sizeof img);
    randaugment_apply_op(img, scratch, SIDE, RA_EQUALIZE, 0.0f);
    float lo = 1, hi = 0;
    for (int i = 0; i < NV; i++) lo = fminf(lo, img[i]), hi = fmaxf(hi, img[i]);
    cr_expect(lo < 0.05f && hi > 0.95f, "equalized range [%.3f, %.3f]", lo, hi);
    for (int i = 0; i < NV; i += 3)
        for (int j = i + 3; j < i + 60 && j < NV; j += 3)
            if (orig[i] < orig[j]) cr_assert(img[i] <= img[j], "order of %d and %d", i, j);
}

Test(randaugment, ops_are_drawn_uniformly_and_reproducibly)
{
    int count[RA_NUM_OPS] = {0}, negative = 0;
    const int T = 7000;
    for (int t = 0; t < T; t++) {
        randaugment_op ops[2], again[2];
        float signs[2], signs2[2];
        randaugment_draw(ops, signs, 2, rng_key(11, (uint64_t)t));
        randaugment_draw(again, signs2, 2, rng_key(11, (uint64_t)t));
        cr_assert(ops[0] == again[0] && ops[1] == again[1] && signs[0] == signs2[0]);
        for (int j = 0; j < 2; j++) {
            cr_assert(ops[j] >= 0 && ops[j] < RA_NUM_OPS);
            count[ops[j]]++;
            negative += signs[j] < 0;
        }
    }
    for (int op = 0; op < RA_NUM_OPS; op++) /* 1000 expected, 4 sigma ~ 122 */
        cr_expect(count[op] > 870 && count[op] < 1130, "%s drawn %d times", randaugment_op_name(op), count[op]);
    cr_expect(negative > 6700 && negative < 7300, "%d negative signs of 14000", negative);
}

/* ---- mixup and cutmix ---- */

Test(mix, beta_draws_lie_in_0_1_with_the_right_moments)
{
    const double alphas[] = {0.2, 1.0, 2.0};
    for (int a = 0; a < 3; a++) {
        double sum = 0, sq = 0;
        const int T = 20000;
        for (int t = 0; t < T; t++) {
            uint64_t counter = 0;
            const double b = mix_beta(rng_key(3, (uint64_t)t), &counter, alphas[a]);
            cr_assert(b >= 0.0 && b <= 1.0, "Beta(%g) draw %g", alphas[a], b);
            sum += b, sq += b * b;
        }
        const double mean = sum / T, var = sq / T - mean * mean, want_var = 1.0 / (4.0 * (2.0 * alphas[a] + 1.0));
        cr_expect(fabs(mean - 0.5) < 0.01, "Beta(%g) mean %.4f", alphas[a], mean);
        cr_expect(fabs(var - want_var) < 0.06 * want_var, "Beta(%g) variance %.4f, want %.4f", alphas[a], var, want_var);
    }
}

Test(mix, partners_form_a_single_cycle)
{
    int perm[64];
    for (int n = 1; n <= 64; n++) {
        mix_partners(perm, n, rng_key(8, (uint64_t)n));
        int seen[64] = {0}, i = 0;
        for (int s = 0; s < n; s++) {
            cr_assert(perm[i] >= 0 && perm[i] < n);
            cr_assert(n == 1 || perm[i] != i, "n %d: %d is its own partner", n, i);
            seen[i]++;
            i = perm[i];
        }
        cr_assert_eq(i, 0, "n %d: the walk returns to 0 after n steps", n);
        for (int s = 0; s < n; s++) cr_assert_eq(seen[s], 1, "n %d: one cycle through all", n);
    }
}

/* Batch k of epoch e with and without mixing; partner from the same key. */
typedef struct {
    float x[8 * IMG], plain[8 * IMG];
    int y[8], y2[8], perm[8];
    float lam[8];
    mix_params p;
} mixed_batch;

static void get_mixed(mixed_batch *m, const augment_options *o, int epoch, int k)
{
    cifar10_view v = synth_split();
    loader *lm = make_loader(&v, *o, 1, 42), *lp = make_loader(&v, (augment_options){0}, 1, 42);
    loader_start_epoch_at(lm, epoch, k);
    loader_start_epoch_at(lp, epoch, k);
    const loader_batch *bm = loader_next(lm), *bp = loader_next(lp);
    cr_assert_eq(bm->size, 8);
    cr_assert_not_null(bm->y2);
    cr_assert_not_null(bm->lam);
    memcpy(m->x, bm->x, sizeof m->x);
    memcpy(m->plain, bp->x, sizeof m->plain);
    memcpy(m->y, bm->y, sizeof m->y);
    memcpy(m->y2, bm->y2, sizeof m->y2);
    memcpy(m->lam, bm->lam, sizeof m->lam);
    cr_assert_eq(memcmp(bm->y, bp->y, sizeof m->y), 0, "mixing keeps the order and own labels");
    const uint64_t key = mix_key(42, epoch, k);
    mix_partners(m->perm, 8, key);
    m->p = mix_draw(key, S, o->mixup_alpha, o->cutmix_alpha);
    for (int i = 0; i < 8; i++) {
        cr_assert_eq(m->y2[i], m->y[m->perm[i]], "partner label of %d", i);
        cr_assert_eq(m->lam[i], m->p.lam);
    }
    loader_destroy(lm);
    loader_destroy(lp);
}

Test(mix, mixup_image_is_the_convex_combination_with_the_partner)
{
    static mixed_batch m;
    const augment_options o = {.mixup_alpha = 0.4};
    for (int k = 0; k < 4; k++) {
        get_mixed(&m, &o, 1, k);
        cr_assert_eq(m.p.kind, MIX_MIXUP);
        cr_assert(m.p.lam >= 0.0f && m.p.lam <= 1.0f, "lam %g", m.p.lam);
        for (int i = 0; i < 8; i++)
            for (int j = 0; j < IMG; j++) {
                const float want = m.p.lam * m.plain[i * IMG + j] + (1.0f - m.p.lam) * m.plain[m.perm[i] * IMG + j];
                cr_assert_eq(m.x[i * IMG + j], want, "batch %d image %d value %d", k, i, j);
            }
    }
}

Test(mix, cutmix_lam_is_the_kept_area)
{
    static mixed_batch m;
    const augment_options o = {.cutmix_alpha = 1.0};
    int partial = 0;
    for (int k = 0; k < 4; k++) {
        for (int e = 0; e < 4; e++) {
            get_mixed(&m, &o, e, k);
            cr_assert_eq(m.p.kind, MIX_CUTMIX);
            int from_partner = 0;
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    const int in = y >= m.p.y0 && y < m.p.y1 && x >= m.p.x0 && x < m.p.x1;
                    from_partner += in;
                    for (int i = 0; i < 8; i++) {
                        const int at = (y * S + x) * 3;
                        const float *src = m.plain + (in ? m.perm[i] : i) * IMG;
                        cr_assert_eq(memcmp(m.x + i * IMG + at, src + at, 3 * sizeof(float)), 0);
                    }
                }
            cr_assert_float_eq(m.lam[0], 1.0f - (float)from_partner / (S * S), 1e-6, "lam = kept fraction");
            partial += m.lam[0] > 0.0f && m.lam[0] < 1.0f;
        }
    }
    cr_expect(partial >= 8, "boxes that cut: %d of 16", partial);
}

Test(mix, both_on_picks_mixup_or_cutmix_evenly)
{
    int cut = 0;
    const int T = 4000;
    for (int t = 0; t < T; t++) {
        mix_params p = mix_draw(mix_key(1, 0, t), 48, 0.8, 1.0);
        cr_assert(p.kind == MIX_MIXUP || p.kind == MIX_CUTMIX);
        cr_assert(p.lam >= 0.0f && p.lam <= 1.0f);
        cut += p.kind == MIX_CUTMIX;
    }
    cr_expect(cut > 1870 && cut < 2130, "%d of %d batches cutmix", cut, T);
    cr_expect_eq(mix_draw(mix_key(1, 0, 0), 48, 0, 0).kind, MIX_NONE);
}

/* ---- cost ---- */

Test(augment, per_image_cost_is_small)
{
    /* The step costs ~3-5 ms per image here; one loader thread must keep up.
     * Measured under whatever load the machine has: logged, and the bound is
     * loose (a 10x slowdown would still pass; a runaway op would not). */
    enum { SIDE = 48, REPS = 2000 };
    static float out[SIDE * SIDE * 3], scratch[SIDE * SIDE * 3];
    cifar10_view v = synth_split();
    const augment_options base = {0}, full = {.randaugment_n = 2, .randaugment_m = 9, .random_erase = 0.25};
    double us[2];
    for (int pass = 0; pass < 2; pass++) {
        const augment_options *o = pass ? &full : &base;
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        for (int r = 0; r < REPS; r++)
            augment_train_with(out, scratch, v.pixels + (size_t)(r % N) * CIFAR10_PIXELS, SIDE, o, 1, 0, r);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        us[pass] = ((t1.tv_sec - t0.tv_sec) * 1e6 + (t1.tv_nsec - t0.tv_nsec) * 1e-3) / REPS;
    }
    cr_log_info("per 48x48 image: crop+flip %.1f us, + RandAugment(2, 9) + erase(0.25) %.1f us", us[0], us[1]);
#ifndef __SANITIZE_ADDRESS__ /* instrumented code is several times slower: log only */
    cr_expect(us[1] < 1000.0, "%.1f us per image", us[1]);
#endif
}

/* ---- tlb data show ---- */

static int png_size(const char *path, int *w, int *h)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return -1;
    unsigned char hd[24];
    const int ok = fread(hd, 1, 24, fp) == 24 && !memcmp(hd, "\x89PNG\r\n\x1a\n", 8) && !memcmp(hd + 12, "IHDR", 4);
    fclose(fp);
    if (!ok) return -1;
    *w = hd[16] << 24 | hd[17] << 16 | hd[18] << 8 | hd[19];
    *h = hd[20] << 24 | hd[21] << 16 | hd[22] << 8 | hd[23];
    return 0;
}

Test(show, data_show_writes_the_grid_and_refuses_bad_input, .timeout = 120)
{
    char dir[] = "/tmp/tlb_show_XXXXXX";
    cr_assert_not_null(test_mkdtemp(dir));
    char out[128], errf[128], msg[1024];
    snprintf(out, sizeof out, "%s/grid.png", dir);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);

    /* Bad input: exit 2, one line naming the key, nothing written. */
    const char *bad[] = {"data", "show", "experiments/tiny_smoke.cfg", "--set", "randaugment_n=99", "--out", out, NULL};
    cr_expect_eq(run_tlb(errf, NULL, bad), 2);
    int lines = 0;
    read_text(errf, msg, sizeof msg, &lines);
    cr_expect_not_null(strstr(msg, "randaugment_n"), "%s", msg);
    cr_expect_eq(lines, 1, "%s", msg);
    cr_expect_neq(access(out, F_OK), 0, "nothing written on bad input");

    char buf[4096];
    const char *data = cifar10_default_dir(buf, sizeof buf);
    if (!data || cifar10_verify_all(data, 0, NULL) != 0) cr_skip_test("CIFAR-10 is not in the cache");
    /* tiny_smoke: 16 px images, batch 64 -> an 8 x 8 grid of 96 px cells. */
    const char *good[] = {"data", "show", "experiments/tiny_smoke.cfg", "--set", "randaugment_n=2",
                          "--set", "random_erase=0.5", "--set", "mixup_alpha=0.2", "--set", "cutmix_alpha=1",
                          "--out", out, NULL};
    cr_assert_eq(run_tlb(errf, NULL, good), 0);
    int w = 0, h = 0;
    cr_assert_eq(png_size(out, &w, &h), 0, "%s is not a PNG", out);
    cr_expect_eq(w, 32 + 8 * 96 + 7 * 8);
    cr_expect_eq(h, 40 + 8 * (12 + 96 + 8) - 8 + 16);
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *fp = fopen(path, "rb");
    cr_assert_not_null(fp, "%s", path);
    fseek(fp, 0, SEEK_END);
    *n = (size_t)ftell(fp);
    rewind(fp);
    unsigned char *b = malloc(*n ? *n : 1);
    cr_assert_eq(fread(b, 1, *n, fp), *n);
    fclose(fp);
    return b;
}

/* The grid's captions are the data's class names (batches.meta.txt when the
 * data dir has one), as everywhere a class is printed; the picture once
 * used a copy of the standard names of its own. */
Test(show, data_show_captions_use_the_data_class_names, .timeout = 120)
{
    char buf[4096];
    const char *real = cifar10_default_dir(buf, sizeof buf);
    if (!real || cifar10_verify_all(real, 0, NULL) != 0) cr_skip_test("CIFAR-10 is not in the cache");
    char dir[] = "/tmp/tlb_show_names_XXXXXX";
    cr_assert_not_null(test_mkdtemp(dir));
    char named[128], path[1200], from[4200], out[2][128], errf[128];
    snprintf(named, sizeof named, "%s/data", dir);
    cr_assert_eq(mkdir(named, 0755), 0);
    for (int k = 0; k < CIFAR10_NUM_FILES; k++) {
        snprintf(from, sizeof from, "%s/%s", real, cifar10_files[k].name);
        snprintf(path, sizeof path, "%s/%s", named, cifar10_files[k].name);
        cr_assert_eq(symlink(from, path), 0, "%s", path);
    }
    snprintf(path, sizeof path, "%s/batches.meta.txt", named);
    FILE *meta = fopen(path, "w");
    cr_assert_not_null(meta);
    for (int c = 0; c < 10; c++) fprintf(meta, "class-%c\n", 'A' + c);
    fclose(meta);
    snprintf(errf, sizeof errf, "%s/stderr.txt", dir);
    const char *dirs[2] = {real, named};
    for (int i = 0; i < 2; i++) {
        snprintf(out[i], sizeof out[i], "%s/grid%d.png", dir, i);
        const char *args[] = {"data", "show", "experiments/tiny_smoke.cfg", "--data-dir", dirs[i], "--out", out[i], NULL};
        cr_assert_eq(run_tlb(errf, NULL, args), 0, "data show --data-dir %s", dirs[i]);
    }
    size_t n0, n1;
    unsigned char *a = slurp(out[0], &n0), *b = slurp(out[1], &n1);
    cr_expect(n0 != n1 || memcmp(a, b, n0) != 0,
              "the same images captioned from batches.meta.txt must differ from the standard names");
    free(a);
    free(b);
}

/* Data parallel (loader_config.share_*): share i of n prepares exactly the
 * rows [size*i/n, size*(i+1)/n) the whole batch has there, bit for bit,
 * with every augmentation and mixing on (partners outside the share are
 * prepared unmixed to mix with), and in evaluation with a partial last
 * batch; labels and targets are filled for every row. */
static void share_matches_whole(augment_options aug, int train, int shares)
{
    loader_config cfg = {.batch_size = 8, .image_size = S, .train = train,
                         .shuffle = train ? LOADER_SHUFFLE_EPOCH : LOADER_SHUFFLE_NONE, .drop_last = train,
                         .num_threads = 1, .depth = 3, .seed = 42, .aug = aug};
    cifar10_view v = synth_split();
    loader *whole, *part;
    tlb_error err = {0};
    cr_assert_eq(loader_create(&whole, &v, &cfg, &err), 0, "%s", err.msg);
    long rows_compared = 0;
    for (int i = 0; i < shares; i++) {
        cfg.share_index = i, cfg.share_count = shares;
        cr_assert_eq(loader_create(&part, &v, &cfg, &err), 0, "%s", err.msg);
        for (int e = 0; e < 2; e++) {
            loader_start_epoch(whole, e);
            loader_start_epoch(part, e);
            const loader_batch *a, *b;
            while ((a = loader_next(whole)) && (b = loader_next(part))) {
                const int lo = (int)((long)a->size * i / shares), hi = (int)((long)a->size * (i + 1) / shares);
                cr_assert_eq(b->first, lo);
                cr_assert_eq(b->count, hi - lo);
                cr_assert_eq(a->first, 0);
                cr_assert_eq(a->count, a->size);
                cr_assert_eq(memcmp(a->y, b->y, sizeof(int) * a->size), 0);
                cr_assert_eq(memcmp(a->idx, b->idx, sizeof(int) * a->size), 0);
                if (a->y2) {
                    cr_assert_eq(memcmp(a->y2, b->y2, sizeof(int) * a->size), 0);
                    cr_assert_eq(memcmp(a->lam, b->lam, sizeof(float) * a->size), 0);
                }
                cr_assert_eq(memcmp(a->x + (size_t)lo * IMG, b->x + (size_t)lo * IMG, sizeof(float) * IMG * (hi - lo)), 0,
                             "share %d of %d, epoch %d batch %d: pixels differ", i, shares, e, a->index);
                rows_compared += hi - lo;
            }
        }
        loader_destroy(part);
    }
    cr_expect_gt(rows_compared, 0);
    loader_destroy(whole);
}

Test(augment, loader_share_prepares_exactly_its_rows)
{
    const augment_options none = {0}, all = {.randaugment_n = 2, .randaugment_m = 15, .random_erase = 0.5,
                                             .mixup_alpha = 0.4, .cutmix_alpha = 1.0};
    share_matches_whole(none, 1, 3);
    share_matches_whole(all, 1, 3);
    share_matches_whole((augment_options){.mixup_alpha = 0.4}, 1, 2);
    share_matches_whole((augment_options){.cutmix_alpha = 1.0}, 1, 5);
    share_matches_whole(none, 0, 3); /* evaluation: 37 images, the last batch of 5 */
}

/* The comparison above can fail: mixing a share's rows with the partner's
 * *mixed* pixels (what reading them from the batch would give) differs. */
Test(augment, loader_share_negative_control)
{
    cifar10_view v = synth_split();
    const augment_options mixup = {.mixup_alpha = 0.4};
    loader_config cfg = {.batch_size = 8, .image_size = S, .train = 1, .shuffle = LOADER_SHUFFLE_EPOCH,
                         .drop_last = 1, .num_threads = 0, .depth = 2, .seed = 42, .aug = mixup};
    loader *l;
    tlb_error err = {0};
    cr_assert_eq(loader_create(&l, &v, &cfg, &err), 0, "%s", err.msg);
    loader_start_epoch(l, 0);
    const loader_batch *b = loader_next(l);
    static float wrong[IMG];
    int partner[8];
    const uint64_t key = mix_key(42, 0, 0);
    const mix_params mp = mix_draw(key, S, 0.4, 0.0);
    mix_partners(partner, 8, key);
    /* own row 1 unmixed, mixed with the partner's already-mixed row */
    augment_train_with(wrong, (float[IMG]){0}, pix + (size_t)b->idx[1] * CIFAR10_PIXELS, S, &mixup, 42, 0, b->idx[1]);
    mix_pair(wrong, b->x + (size_t)partner[1] * IMG, S, &mp);
    cr_expect_neq(memcmp(wrong, b->x + IMG, sizeof wrong), 0);
    loader_destroy(l);
}
