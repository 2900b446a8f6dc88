/* token_loader: batches of a token set as the token input stage reads them.
 * A small set made here (lengths 1..max, a pad id), so every check knows
 * the answer. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "data/token_loader.h"

enum { COUNT = 23, MAXLEN = 9, PAD = 15 };

static void small_set(token_set *s)
{
    tlb_error err;
    cr_assert_eq(token_set_alloc(s, COUNT, MAXLEN, 16, PAD, 10, &err), 0, "%s", err.msg);
    for (int i = 0; i < COUNT; i++) {
        s->lengths[i] = 1 + i % MAXLEN;
        s->labels[i] = (uint8_t)(i % 10);
        for (int t = 0; t < s->lengths[i]; t++) s->tokens[(size_t)i * MAXLEN + t] = (uint8_t)((i + t) % 15);
    }
}

/* Each row is its sequence widened to int32, then the pad id to row_len. */
static void expect_rows(const token_set *s, const token_batch *b, int row)
{
    for (int r = 0; r < b->size; r++) {
        const int i = b->idx[r];
        cr_assert(i >= 0 && i < COUNT);
        cr_expect_eq(b->y[r], s->labels[i]);
        cr_expect_eq(b->lengths[r], s->lengths[i]);
        for (int t = 0; t < row; t++) {
            const int want = t < s->lengths[i] ? s->tokens[(size_t)i * MAXLEN + t] : PAD;
            cr_expect_eq(b->ids[(size_t)r * row + t], want, "row %d token %d", r, t);
        }
    }
}

Test(token_loader, every_sequence_once_per_epoch_padded)
{
    token_set s;
    small_set(&s);
    token_loader *l;
    tlb_error err;
    const token_loader_config cfg = {.batch_size = 5, .shuffle = LOADER_SHUFFLE_EPOCH, .seed = 7, .row_len = 12};
    cr_assert_eq(token_loader_create(&l, &s, &cfg, &err), 0, "%s", err.msg);
    cr_expect_eq(token_loader_num_batches(l), 5, "23 in batches of 5, last partial kept");
    int seen[COUNT] = {0};
    const token_batch *b;
    int batches = 0;
    while ((b = token_loader_next(l))) {
        expect_rows(&s, b, 12);
        for (int r = 0; r < b->size; r++) seen[b->idx[r]]++;
        for (int r = b->size; r < 5; r++) cr_expect_eq(b->idx[r], -1);
        batches++;
    }
    cr_expect_eq(batches, 5);
    for (int i = 0; i < COUNT; i++) cr_expect_eq(seen[i], 1, "sequence %d seen %d times", i, seen[i]);
    token_loader_destroy(l);
    token_set_free(&s);
}

/* Batch k of epoch e is the same whether reached from the epoch's start or
 * resumed at k; another epoch is another order; drop_last drops. */
Test(token_loader, deterministic_and_resumable)
{
    token_set s;
    small_set(&s);
    token_loader *a, *b;
    tlb_error err;
    const token_loader_config cfg = {.batch_size = 4, .shuffle = LOADER_SHUFFLE_EPOCH, .seed = 3, .drop_last = 1};
    cr_assert_eq(token_loader_create(&a, &s, &cfg, &err), 0, "%s", err.msg);
    cr_assert_eq(token_loader_create(&b, &s, &cfg, &err), 0, "%s", err.msg);
    cr_expect_eq(token_loader_num_batches(a), 5);
    token_loader_start_epoch_at(a, 2, 0);
    for (int k = 0; k < 3; k++) token_loader_next(a);
    const token_batch *x = token_loader_next(a);
    int first[4];
    memcpy(first, x->idx, sizeof first);
    token_loader_start_epoch_at(b, 2, 3);
    const token_batch *y = token_loader_next(b);
    cr_expect_eq(memcmp(first, y->idx, sizeof first), 0, "resumed batch differs");
    token_loader_start_epoch_at(b, 3, 3);
    y = token_loader_next(b);
    cr_expect_neq(memcmp(first, y->idx, sizeof first), 0, "epoch 3 repeats epoch 2's order");
    token_loader_destroy(a);
    token_loader_destroy(b);
    token_set_free(&s);
}

Test(token_loader, rows_shorter_than_the_set_are_refused)
{
    token_set s;
    small_set(&s);
    token_loader *l;
    tlb_error err;
    const token_loader_config cfg = {.batch_size = 4, .row_len = MAXLEN - 1};
    cr_expect_eq(token_loader_create(&l, &s, &cfg, &err), -1);
    cr_expect(strstr(err.msg, "cannot hold"), "%s", err.msg);
    token_set_free(&s);
}

/* data_source: either loader behind one batch type. Images: a synthetic
 * view of 10 records; rows of S*S*3 floats, no lengths, the loader's labels
 * and rows. Tokens: the token loader's ids, lengths and labels. */
#include "data/source.h"

Test(token_loader, data_source_over_either_loader)
{
    static uint8_t labels[10], pixels[10 * 3 * 32 * 32];
    for (int i = 0; i < 10; i++) labels[i] = (uint8_t)(9 - i);
    for (size_t i = 0; i < sizeof pixels; i++) pixels[i] = (uint8_t)(i * 7);
    const cifar10_view v = {10, labels, pixels};
    const loader_config icfg = {.batch_size = 4, .image_size = 8, .depth = 2, .seed = 1};
    loader *il;
    tlb_error err;
    cr_assert_eq(loader_create(&il, &v, &icfg, &err), 0, "%s", err.msg);
    data_source images = data_source_of_images(il);
    cr_expect_eq(data_source_num_batches(&images), 3);
    cr_expect_eq(data_source_num_items(&images), 10);
    data_source_start_epoch(&images, 0);
    const data_batch *b = data_source_next(&images);
    cr_assert_not_null(b);
    cr_expect_eq(b->sample_bytes, 8 * 8 * 3 * sizeof(float));
    cr_expect_null(b->lengths);
    cr_expect_eq(b->size, 4);
    for (int r = 0; r < 4; r++) cr_expect_eq(b->y[r], 9 - b->idx[r]);
    data_source_destroy(&images);

    token_set s;
    small_set(&s);
    token_loader *tl;
    const token_loader_config tcfg = {.batch_size = 6, .row_len = 10};
    cr_assert_eq(token_loader_create(&tl, &s, &tcfg, &err), 0, "%s", err.msg);
    data_source tokens = data_source_of_tokens(tl);
    cr_expect_eq(data_source_num_batches(&tokens), 4);
    data_source_start_epoch(&tokens, 0);
    b = data_source_next(&tokens);
    cr_assert_not_null(b);
    cr_expect_eq(b->sample_bytes, 10 * sizeof(int32_t));
    cr_assert_not_null(b->lengths);
    for (int r = 0; r < b->size; r++) {
        cr_expect_eq(b->lengths[r], s.lengths[b->idx[r]]);
        cr_expect_eq(((const int32_t *)b->x)[r * 10], s.tokens[(size_t)b->idx[r] * MAXLEN]);
    }
    int n = 1;
    while (data_source_next(&tokens)) n++;
    cr_expect_eq(n, 4);
    data_source_destroy(&tokens);
    token_set_free(&s);
}
