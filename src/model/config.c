#include "model/config.h"

#include <stdio.h>
#include <string.h>

#include "ops/ops.h"

tlb_model_config model_config_seed(void)
{
    return (tlb_model_config){
        .image_size = 48, .patch_size = 4, .embed_dim = 64, .chunk_size = 8, .r = 2,
        .num_layers = 4, .num_heads = 1, .key_dim = 64, .ffn_mult = 4, .num_classes = 10,
        .wiring = TLB_WIRING_KERAS, .ffn_drop = 0.2f, .attn_drop = 0.2f,
    };
}

const char *const tlb_wiring_names[] = {"keras", "paper", NULL};
const char *const tlb_state_init_names[] = {"zeros", "learned", "sinusoid", NULL};
const char *const tlb_readout_names[] = {"last_fast", "state", NULL};
const char *const tlb_input_names[] = {"image", "tokens", NULL};
const char *const tlb_pos_emb_names[] = {"global", "chunk", NULL};
_Static_assert(TLB_WIRING_PAPER == 1 && STATE_INIT_SINUSOID == 2 && READOUT_STATE == 1 && INPUT_TOKENS == 1 &&
                   POS_EMB_CHUNK == 1,
               "the name tables follow the enums");

static const char *table_name(const char *const *names, unsigned v)
{
    for (unsigned i = 0; names[i]; i++)
        if (i == v) return names[i];
    return "?";
}

const char *wiring_name(tlb_wiring w) { return table_name(tlb_wiring_names, (unsigned)w); }
const char *state_init_name(tlb_state_init s) { return table_name(tlb_state_init_names, (unsigned)s); }
const char *readout_name(tlb_readout r) { return table_name(tlb_readout_names, (unsigned)r); }
const char *input_name(tlb_input i) { return table_name(tlb_input_names, (unsigned)i); }
const char *pos_emb_name(tlb_pos_emb p) { return table_name(tlb_pos_emb_names, (unsigned)p); }

size_t enum_words_text(const char *const *names, char *buf, size_t n)
{
    size_t len = 0;
    if (n) buf[0] = '\0';
    for (int i = 0; names[i]; i++) {
        const char *sep = i == 0 ? "" : names[i + 1] ? ", " : " or ";
        const int m = snprintf(buf + (len < n ? len : n), len < n ? n - len : 0, "%s%s", sep, names[i]);
        if (m > 0) len += (size_t)m;
    }
    return len;
}

/* The input stage's keys: an image's size and patches, or a sequence's
 * vocabulary and length (the other input's keys are not read). */
static int validate_input(const tlb_model_config *c, tlb_error *err)
{
    if (c->input == INPUT_TOKENS) {
        if (c->vocab_size < 1 || c->vocab_size > 1 << 24)
            return tlb_fail_key(err, "vocab_size", "%d is out of range [1, %d]", c->vocab_size, 1 << 24);
        if (c->seq_len < 1 || c->seq_len > 1 << 20)
            return tlb_fail_key(err, "seq_len", "%d is out of range [1, %d]", c->seq_len, 1 << 20);
        if (c->seq_len % c->chunk_size != 0)
            return tlb_fail_key(err, "chunk_size", "%d does not divide seq_len %d", c->chunk_size, c->seq_len);
        return 0;
    }
    if (c->image_size < 1 || c->image_size > 4096)
        return tlb_fail_key(err, "image_size", "%d is out of range [1, 4096]", c->image_size);
    if (c->patch_size < 1 || c->patch_size > 4096)
        return tlb_fail_key(err, "patch_size", "%d is out of range [1, 4096]", c->patch_size);
    if (c->image_size % c->patch_size != 0)
        return tlb_fail_key(err, "patch_size", "%d does not divide image_size %d", c->patch_size,
                                c->image_size);
    int n = model_num_patches(c);
    if (n % c->chunk_size != 0)
        return tlb_fail_key(err, "chunk_size", "%d does not divide the number of patches %d (= (%d/%d)^2)",
                                c->chunk_size, n, c->image_size, c->patch_size);
    return 0;
}

int model_config_validate(const tlb_model_config *c, tlb_error *err)
{
    if ((unsigned)c->input > INPUT_TOKENS) {
        char words[64];
        enum_words_text(tlb_input_names, words, sizeof words);
        return tlb_fail_key(err, "input", "must be %s", words);
    }
    struct { const char *key; int value, min, max; } ranges[] = {
        {"embed_dim", c->embed_dim, 1, 8192},   {"chunk_size", c->chunk_size, 1, TLB_MAX_KEYS},
        {"r", c->r, 1, 1 << 20},                {"num_layers", c->num_layers, 1, 1024},
        {"num_heads", c->num_heads, 1, 1024},   {"key_dim", c->key_dim, 1, 8192},
        {"ffn_mult", c->ffn_mult, 1, 64},       {"num_classes", c->num_classes, 2, 1 << 20},
        {"num_state_tokens", c->num_state_tokens, 0, TLB_MAX_KEYS},
        {"head_hidden", c->head_hidden, 0, 1 << 16},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].value < ranges[i].min || ranges[i].value > ranges[i].max)
            return tlb_fail_key(err, ranges[i].key, "%d is out of range [%d, %d]", ranges[i].value,
                                ranges[i].min, ranges[i].max);
    if (validate_input(c, err) != 0) return -1;
    if (!(c->ffn_drop >= 0.0f && c->ffn_drop < 1.0f))
        return tlb_fail_key(err, "ffn_drop", "%g is out of range [0, 1)", c->ffn_drop);
    if (!(c->attn_drop >= 0.0f && c->attn_drop < 1.0f))
        return tlb_fail_key(err, "attn_drop", "%g is out of range [0, 1)", c->attn_drop);
    if (!(c->embed_drop >= 0.0f && c->embed_drop < 1.0f))
        return tlb_fail_key(err, "embed_drop", "%g is out of range [0, 1)", c->embed_drop);
    /* Out-of-range enums: named with their words, from the one table. */
    struct { const char *key; unsigned value, max; const char *const *names; } enums[] = {
        {"wiring", (unsigned)c->wiring, TLB_WIRING_PAPER, tlb_wiring_names},
        {"state_init", (unsigned)c->state_init, STATE_INIT_SINUSOID, tlb_state_init_names},
        {"readout", (unsigned)c->readout, READOUT_STATE, tlb_readout_names},
        {"pos_emb", (unsigned)c->pos_emb, POS_EMB_CHUNK, tlb_pos_emb_names},
    };
    for (size_t i = 0; i < sizeof enums / sizeof enums[0]; i++)
        if (enums[i].value > enums[i].max) {
            char words[128];
            enum_words_text(enums[i].names, words, sizeof words);
            return tlb_fail_key(err, enums[i].key, "must be %s", words);
        }
    /* The sinusoid table puts sines in the first D/2 columns, cosines in the rest. */
    if (c->state_init == STATE_INIT_SINUSOID && (c->embed_dim % 2 != 0 || c->embed_dim < 4))
        return tlb_fail_key(err, "state_init", "sinusoid needs an even embed_dim >= 4, got %d", c->embed_dim);
    return 0;
}
