#include "data/token_set.h"

#include <stdlib.h>
#include <string.h>

const char *data_split_name(data_split s)
{
    static const char *const names[DATA_SPLIT_COUNT] = {"train", "val", "test"};
    return (unsigned)s < DATA_SPLIT_COUNT ? names[s] : "?";
}

int token_set_alloc(token_set *s, int count, int max_len, int vocab, int pad_id, int num_classes,
                    tlb_error *err)
{
    memset(s, 0, sizeof *s);
    if (count < 0 || max_len < 1)
        return tlb_fail(err, "token set of %d sequences of %d tokens: bad shape", count, max_len);
    const size_t n = (size_t)count;
    s->tokens = malloc(n * (size_t)max_len + 1);
    s->lengths = malloc(n * sizeof *s->lengths + 1);
    s->labels = malloc(n + 1);
    if (!s->tokens || !s->lengths || !s->labels) {
        token_set_free(s);
        return tlb_fail(err, "out of memory for %d sequences of %d tokens", count, max_len);
    }
    memset(s->tokens, pad_id < 0 ? 0 : pad_id, n * (size_t)max_len);
    s->count = count;
    s->max_len = max_len;
    s->vocab = vocab;
    s->pad_id = pad_id;
    s->num_classes = num_classes;
    return 0;
}

void token_set_free(token_set *s)
{
    free(s->tokens);
    free(s->lengths);
    free(s->labels);
    memset(s, 0, sizeof *s);
}
