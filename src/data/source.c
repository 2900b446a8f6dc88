/* A split's batches over either loader (source.h). */
#include "data/source.h"

#include <string.h>

data_source data_source_of_images(loader *l) { return (data_source){.images = l}; }
data_source data_source_of_tokens(token_loader *l) { return (data_source){.tokens = l}; }

int data_source_num_batches(const data_source *s)
{
    return s->images ? loader_num_batches(s->images) : token_loader_num_batches(s->tokens);
}

int data_source_num_items(const data_source *s)
{
    return s->images ? loader_num_images(s->images) : token_loader_num_items(s->tokens);
}

void data_source_start_epoch_at(data_source *s, int epoch, int first_batch)
{
    if (s->images) loader_start_epoch_at(s->images, epoch, first_batch);
    else token_loader_start_epoch_at(s->tokens, epoch, first_batch);
}

const data_batch *data_source_next(data_source *s)
{
    data_batch *d = &s->batch;
    if (s->images) {
        const loader_batch *b = loader_next(s->images);
        if (!b) return NULL;
        *d = (data_batch){b->x, 0, NULL, b->y, b->idx, b->y2, b->lam, b->size, b->index, b->first, b->count};
        d->sample_bytes = loader_sample_floats(s->images) * sizeof(float);
        return d;
    }
    const token_batch *b = token_loader_next(s->tokens);
    if (!b) return NULL;
    *d = (data_batch){b->ids, (size_t)token_loader_row_len(s->tokens) * sizeof(int32_t), b->lengths, b->y, b->idx,
                      NULL, NULL, b->size, b->index, 0, b->size};
    return d;
}

void data_source_destroy(data_source *s)
{
    loader_destroy(s->images);
    token_loader_destroy(s->tokens);
    memset(s, 0, sizeof *s);
}
