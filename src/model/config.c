#include "model/config.h"

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

const char *wiring_name(tlb_wiring w) { return w == TLB_WIRING_PAPER ? "paper" : "keras"; }

int wiring_parse(const char *name, tlb_wiring *out)
{
    if (strcmp(name, "keras") == 0) { *out = TLB_WIRING_KERAS; return 0; }
    if (strcmp(name, "paper") == 0) { *out = TLB_WIRING_PAPER; return 0; }
    return -1;
}

static const char *const STATE_INIT_NAMES[] = {"zeros", "learned", "sinusoid"};
static const char *const READOUT_NAMES[] = {"last_fast", "state"};

const char *state_init_name(tlb_state_init s)
{
    return (unsigned)s < 3 ? STATE_INIT_NAMES[s] : "?";
}

const char *readout_name(tlb_readout r) { return (unsigned)r < 2 ? READOUT_NAMES[r] : "?"; }

int model_config_validate(const tlb_model_config *c, tlb_error *err)
{
    struct { const char *key; int value, min, max; } ranges[] = {
        {"image_size", c->image_size, 1, 4096}, {"patch_size", c->patch_size, 1, 4096},
        {"embed_dim", c->embed_dim, 1, 8192},   {"chunk_size", c->chunk_size, 1, TLB_MAX_KEYS},
        {"r", c->r, 1, 1 << 20},                {"num_layers", c->num_layers, 1, 1024},
        {"num_heads", c->num_heads, 1, 1024},   {"key_dim", c->key_dim, 1, 8192},
        {"ffn_mult", c->ffn_mult, 1, 64},       {"num_classes", c->num_classes, 2, 1 << 20},
        {"num_state_tokens", c->num_state_tokens, 0, TLB_MAX_KEYS},
    };
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (ranges[i].value < ranges[i].min || ranges[i].value > ranges[i].max)
            return tlb_fail_key(err, ranges[i].key, "%d is out of range [%d, %d]", ranges[i].value,
                                ranges[i].min, ranges[i].max);
    if (c->image_size % c->patch_size != 0)
        return tlb_fail_key(err, "patch_size", "%d does not divide image_size %d", c->patch_size,
                                c->image_size);
    int n = model_num_patches(c);
    if (n % c->chunk_size != 0)
        return tlb_fail_key(err, "chunk_size", "%d does not divide the number of patches %d (= (%d/%d)^2)",
                                c->chunk_size, n, c->image_size, c->patch_size);
    if (!(c->ffn_drop >= 0.0f && c->ffn_drop < 1.0f))
        return tlb_fail_key(err, "ffn_drop", "%g is out of range [0, 1)", c->ffn_drop);
    if (!(c->attn_drop >= 0.0f && c->attn_drop < 1.0f))
        return tlb_fail_key(err, "attn_drop", "%g is out of range [0, 1)", c->attn_drop);
    if (c->wiring != TLB_WIRING_KERAS && c->wiring != TLB_WIRING_PAPER)
        return tlb_fail_key(err, "wiring", "must be keras or paper");
    if ((unsigned)c->state_init > STATE_INIT_SINUSOID)
        return tlb_fail_key(err, "state_init", "must be zeros, learned or sinusoid");
    if ((unsigned)c->readout > READOUT_STATE) return tlb_fail_key(err, "readout", "must be last_fast or state");
    /* The sinusoid table puts sines in the first D/2 columns, cosines in the rest. */
    if (c->state_init == STATE_INIT_SINUSOID && (c->embed_dim % 2 != 0 || c->embed_dim < 4))
        return tlb_fail_key(err, "state_init", "sinusoid needs an even embed_dim >= 4, got %d", c->embed_dim);
    return 0;
}
