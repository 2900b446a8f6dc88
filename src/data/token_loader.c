/* Batches of a token-sequence split (token_loader.h). */
#include "data/token_loader.h"

#include <stdlib.h>
#include <string.h>

struct token_loader {
    const token_set *set;
    token_loader_config cfg;
    int n, batches, next;
    int *perm; /* [n] this epoch's order */
    token_batch batch;
};

int token_loader_create(token_loader **out, const token_set *set, const token_loader_config *cfg, tlb_error *err)
{
    *out = NULL;
    if (cfg->batch_size < 1) return tlb_fail(err, "token loader: batch size %d < 1", cfg->batch_size);
    const int row = cfg->row_len > 0 ? cfg->row_len : set->max_len;
    if (row < set->max_len)
        return tlb_fail(err, "token loader: rows of %d ids cannot hold sequences of up to %d", row, set->max_len);
    const int n = cfg->limit > 0 && cfg->limit < set->count ? cfg->limit : set->count;
    if (n < 1) return tlb_fail(err, "token loader: the split is empty");
    token_loader *l = calloc(1, sizeof *l);
    const size_t B = (size_t)cfg->batch_size;
    if (l) {
        l->perm = malloc((size_t)n * sizeof *l->perm);
        l->batch.ids = malloc(B * row * sizeof *l->batch.ids);
        l->batch.lengths = malloc(B * sizeof *l->batch.lengths);
        l->batch.y = malloc(B * sizeof *l->batch.y);
        l->batch.idx = malloc(B * sizeof *l->batch.idx);
    }
    if (!l || !l->perm || !l->batch.ids || !l->batch.lengths || !l->batch.y || !l->batch.idx) {
        token_loader_destroy(l);
        return tlb_fail(err, "token loader: out of memory for a batch of %d x %d ids", cfg->batch_size, row);
    }
    l->set = set;
    l->cfg = *cfg;
    l->cfg.row_len = row;
    l->n = n;
    l->batches = cfg->drop_last ? n / cfg->batch_size : (n + cfg->batch_size - 1) / cfg->batch_size;
    token_loader_start_epoch_at(l, 0, 0);
    *out = l;
    return 0;
}

int token_loader_num_batches(const token_loader *l) { return l->batches; }
int token_loader_num_items(const token_loader *l) { return l->n; }
int token_loader_row_len(const token_loader *l) { return l->cfg.row_len; }

void token_loader_start_epoch_at(token_loader *l, int epoch, int first_batch)
{
    loader_permutation(l->perm, l->n, l->cfg.shuffle, l->cfg.seed, epoch);
    l->next = first_batch;
}

const token_batch *token_loader_next(token_loader *l)
{
    if (l->next >= l->batches) return NULL;
    const int B = l->cfg.batch_size, row = l->cfg.row_len, k = l->next++;
    const int at = k * B, size = l->n - at < B ? l->n - at : B;
    const token_set *s = l->set;
    const int32_t pad = s->pad_id >= 0 ? s->pad_id : 0;
    token_batch *b = &l->batch;
    for (int r = 0; r < B; r++) {
        int32_t *dst = b->ids + (size_t)r * row;
        int len = 0;
        if (r < size) {
            const int i = l->perm[at + r];
            const uint8_t *src = s->tokens + (size_t)i * s->max_len;
            len = s->lengths[i];
            for (int t = 0; t < len; t++) dst[t] = src[t];
            b->y[r] = s->labels[i], b->idx[r] = i;
        } else {
            b->y[r] = -1, b->idx[r] = -1;
        }
        for (int t = len; t < row; t++) dst[t] = pad;
        b->lengths[r] = len;
    }
    b->size = size, b->index = k;
    return b;
}

void token_loader_destroy(token_loader *l)
{
    if (!l) return;
    free(l->perm);
    free(l->batch.ids), free(l->batch.lengths), free(l->batch.y), free(l->batch.idx);
    free(l);
}
