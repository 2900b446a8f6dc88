/* The TLB model's shape: everything that fixes the parameter layout and the
 * recurrent schedule. (Run settings such as the learning rate live in
 * train/run_config.h.) */
#ifndef TLB_MODEL_CONFIG_H
#define TLB_MODEL_CONFIG_H

#include <stddef.h>

#include "util/error.h"

typedef enum { TLB_WIRING_KERAS = 0, TLB_WIRING_PAPER = 1 } tlb_wiring;

/* How the slow state starts (golden README, "Slow-state options"); the
 * values are the golden files' config.state_init codes. */
typedef enum { STATE_INIT_ZEROS = 0, STATE_INIT_LEARNED = 1, STATE_INIT_SINUSOID = 2 } tlb_state_init;
/* What the head pools: the last chunk's fast stream (the Keras example) or
 * the final slow state through a LayerNorm of its own (the authors' code). */
typedef enum { READOUT_LAST_FAST = 0, READOUT_STATE = 1 } tlb_readout;

/* The input stage (golden README, "Sequence options"): patches of an image
 * [B, S, S, 3] or int32 token ids [B, T]; the values are the golden files'
 * config.input codes. */
typedef enum { INPUT_IMAGE = 0, INPUT_TOKENS = 1 } tlb_input;
/* The position table: one row per token (global) or one per position inside
 * a chunk, added to every chunk (the authors' LRA image model). */
typedef enum { POS_EMB_GLOBAL = 0, POS_EMB_CHUNK = 1 } tlb_pos_emb;

typedef struct {
    int image_size;   /* S: input is S x S x 3 (input: image) */
    int patch_size;   /* P: conv kernel = stride */
    int embed_dim;    /* D */
    int chunk_size;   /* C: tokens per chunk */
    int r;            /* cross-attention period */
    int num_layers;   /* L */
    int num_heads;    /* H */
    int key_dim;      /* K, per head; H*K need not equal D */
    int ffn_mult;     /* FFN hidden = ffn_mult * D */
    int num_classes;
    tlb_wiring wiring;
    float ffn_drop;   /* dropout on the FFN output before its residual add */
    float attn_drop;  /* dropout on the attention probabilities */
    int num_state_tokens;      /* Ns, slow-state rows; 0 = chunk_size (the Keras tie) */
    tlb_state_init state_init; /* zeros (the seed) | learned | sinusoid */
    tlb_readout readout;       /* last_fast (the seed) | state */
    tlb_input input;           /* image (the seed) | tokens */
    int vocab_size;            /* V, token ids in [0, V) (input: tokens) */
    int seq_len;               /* T, tokens per sequence, a multiple of C (input: tokens) */
    tlb_pos_emb pos_emb;       /* global (the seed) | chunk */
    int head_hidden;           /* Hh: a ReLU layer of Hh units before the head; 0 = none (the seed) */
    float embed_drop;          /* dropout on the input stage's tokens (after its LayerNorm); 0 = off */
} tlb_model_config;

/* The seed configuration of the Keras example. */
tlb_model_config model_config_seed(void);

/* Checks ranges and divisibility; on failure names the offending key (in
 * err->msg, "key: problem", and in err->key). */
int model_config_validate(const tlb_model_config *c, tlb_error *err);

static inline int model_grid(const tlb_model_config *c) { return c->image_size / c->patch_size; }
/* Tokens per sample: the patches of an image, or the sequence length. */
static inline int model_num_patches(const tlb_model_config *c)
{
    return c->input == INPUT_TOKENS ? c->seq_len : model_grid(c) * model_grid(c);
}
static inline int model_num_chunks(const tlb_model_config *c) { return model_num_patches(c) / c->chunk_size; }
static inline int model_hk(const tlb_model_config *c) { return c->num_heads * c->key_dim; }
static inline int model_ffn_dim(const tlb_model_config *c) { return c->ffn_mult * c->embed_dim; }
/* Bytes of one sample of the input batch: an image's floats or a sequence's
 * int32 ids (x + b * model_input_bytes is sample b). */
static inline size_t model_input_bytes(const tlb_model_config *c)
{
    return c->input == INPUT_TOKENS ? (size_t)c->seq_len * sizeof(int)
                                    : (size_t)c->image_size * c->image_size * 3 * sizeof(float);
}
/* Rows of the position table: every token's, or a chunk's positions. */
static inline int model_pos_rows(const tlb_model_config *c)
{
    return c->pos_emb == POS_EMB_CHUNK ? c->chunk_size : model_num_patches(c);
}
/* Width the head's kernel reads: the hidden layer's, or the pooled D. */
static inline int model_head_in(const tlb_model_config *c)
{
    return c->head_hidden > 0 ? c->head_hidden : c->embed_dim;
}
static inline int model_num_state(const tlb_model_config *c)
{
    return c->num_state_tokens > 0 ? c->num_state_tokens : c->chunk_size;
}

/* Padded sequences: of a sequence of len tokens (1..T), the valid tokens in
 * chunk ch (0..C; the rest padding), and the chunk of its last token. */
static inline int model_chunk_tokens(const tlb_model_config *c, int len, int ch)
{
    const int v = len - ch * c->chunk_size;
    return v < 0 ? 0 : v > c->chunk_size ? c->chunk_size : v;
}
static inline int model_last_chunk(const tlb_model_config *c, int len) { return (len - 1) / c->chunk_size; }

/* Each enum's words in the order of its values, NULL-terminated: the one
 * table that config files, config.cfg, summaries and messages use. */
extern const char *const tlb_wiring_names[];
extern const char *const tlb_state_init_names[];
extern const char *const tlb_readout_names[];
extern const char *const tlb_input_names[];
extern const char *const tlb_pos_emb_names[];

/* A value's word from its table ("?" when out of range). */
const char *wiring_name(tlb_wiring w);
const char *state_init_name(tlb_state_init s);
const char *readout_name(tlb_readout r);
const char *input_name(tlb_input i);
const char *pos_emb_name(tlb_pos_emb p);

/* "a, b or c" from a NULL-terminated table, for messages; snprintf semantics. */
size_t enum_words_text(const char *const *names, char *buf, size_t n);

#endif
