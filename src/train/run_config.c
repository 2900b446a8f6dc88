#include "train/run_config.h"

#include "ops/ops.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <xxhash.h>

#include "data/listops.h"
#include "data/lra_image.h"
#include <yaml.h>

/* ------------------------------------------------------------------------ */
/* The key table: one row per key, in canonical order. */

typedef enum { K_INT, K_FLOAT, K_DOUBLE, K_BOOL, K_U64, K_STR, K_ENUM } key_type;

typedef struct {
    const char *name;
    key_type type;
    size_t off;       /* of the value in run_config */
    size_t size;      /* K_STR: buffer size */
    int hashed;       /* affects results, so part of run_config_hash */
    const char *group; /* comment line written before the first key of a group */
    /* Keys added after the seed are hashed only when not at their default,
     * so configs written before them keep their run hashes (and folders). */
    int hashed_unless_default;
    const char *const *names; /* K_ENUM: the accepted words, stored as their index; K_BOOL: AUTO_WORD or NULL */
} key_def;

#define OFF(f) offsetof(run_config, f)
#define MOFF(f) (offsetof(run_config, model) + offsetof(tlb_model_config, f))
/* Words of the run's enumerated keys, in the order of their C enums (the
 * model's own are model/config.h's tlb_*_names). */
static const char *const SHUFFLE_WORDS[] = {"epoch", "once", NULL};
static const char *const LR_SCHEDULE_WORDS[] = {"constant", "cosine", NULL};
_Static_assert(SHUFFLE_ONCE == 1 && LR_COSINE == 1, "the word tables follow the enums");
/* A K_BOOL key whose names are these also takes "auto" (RUN_CONFIG_AUTO). */
static const char *const AUTO_WORD[] = {"auto", NULL};
#define NEW_KEY(key, type, off, group) {key, type, off, 0, 1, group, 1, NULL}
#define NEW_ENUM(key, off, words) {key, K_ENUM, off, 0, 1, NULL, 1, words}
static const key_def KEYS[] = {
    {"image_size", K_INT, MOFF(image_size), 0, 1, "model", 0, NULL},
    {"patch_size", K_INT, MOFF(patch_size), 0, 1, NULL, 0, NULL},
    {"embed_dim", K_INT, MOFF(embed_dim), 0, 1, NULL, 0, NULL},
    {"chunk_size", K_INT, MOFF(chunk_size), 0, 1, NULL, 0, NULL},
    {"r", K_INT, MOFF(r), 0, 1, NULL, 0, NULL},
    {"num_layers", K_INT, MOFF(num_layers), 0, 1, NULL, 0, NULL},
    {"num_heads", K_INT, MOFF(num_heads), 0, 1, NULL, 0, NULL},
    {"key_dim", K_INT, MOFF(key_dim), 0, 1, NULL, 0, NULL},
    {"ffn_mult", K_INT, MOFF(ffn_mult), 0, 1, NULL, 0, NULL},
    {"num_classes", K_INT, MOFF(num_classes), 0, 1, NULL, 0, NULL},
    {"wiring", K_ENUM, MOFF(wiring), 0, 1, NULL, 0, tlb_wiring_names},
    {"ffn_drop", K_FLOAT, MOFF(ffn_drop), 0, 1, NULL, 0, NULL},
    {"attn_drop", K_FLOAT, MOFF(attn_drop), 0, 1, NULL, 0, NULL},
    NEW_KEY("num_state_tokens", K_INT, MOFF(num_state_tokens), NULL),
    NEW_ENUM("state_init", MOFF(state_init), tlb_state_init_names),
    NEW_ENUM("readout", MOFF(readout), tlb_readout_names),
    NEW_ENUM("input", MOFF(input), tlb_input_names),
    NEW_KEY("vocab_size", K_INT, MOFF(vocab_size), NULL),
    NEW_KEY("seq_len", K_INT, MOFF(seq_len), NULL),
    NEW_ENUM("pos_emb", MOFF(pos_emb), tlb_pos_emb_names),
    NEW_KEY("head_hidden", K_INT, MOFF(head_hidden), NULL),
    NEW_KEY("embed_drop", K_FLOAT, MOFF(embed_drop), NULL),
    {"dataset", K_STR, OFF(dataset), sizeof(((run_config *)0)->dataset), 1, "data", 0, NULL},
    {"train_slice", K_INT, OFF(train_slice), 0, 1, NULL, 0, NULL},
    {"train_limit", K_INT, OFF(train_limit), 0, 1, NULL, 0, NULL},
    {"eval_limit", K_INT, OFF(eval_limit), 0, 1, NULL, 0, NULL},
    {"shuffle", K_ENUM, OFF(shuffle), 0, 1, NULL, 0, SHUFFLE_WORDS},
    {"data_dir", K_STR, OFF(data_dir), sizeof(((run_config *)0)->data_dir), 0, NULL, 0, NULL},
    NEW_KEY("mixup_alpha", K_DOUBLE, OFF(mixup_alpha), "augmentation beyond crop and flip (all off by default)"),
    NEW_KEY("cutmix_alpha", K_DOUBLE, OFF(cutmix_alpha), NULL),
    NEW_KEY("random_erase", K_DOUBLE, OFF(random_erase), NULL),
    NEW_KEY("randaugment_n", K_INT, OFF(randaugment_n), NULL),
    NEW_KEY("randaugment_m", K_INT, OFF(randaugment_m), NULL),
    {"mixed_precision", K_BOOL, OFF(mixed_precision), 0, 1, "optimisation", 0, NULL},
    /* true, false or auto: a bool with AUTO_WORD (names) */
    {"bf16_activations", K_BOOL, OFF(bf16_activations), 0, 1, NULL, 1, AUTO_WORD},
    {"batch_size", K_INT, OFF(batch_size), 0, 1, NULL, 0, NULL},
    {"micro_batch", K_INT, OFF(micro_batch), 0, 1, NULL, 0, NULL},
    {"learning_rate", K_DOUBLE, OFF(learning_rate), 0, 1, NULL, 0, NULL},
    {"weight_decay", K_DOUBLE, OFF(weight_decay), 0, 1, NULL, 0, NULL},
    NEW_KEY("adam_beta1", K_DOUBLE, OFF(adam_beta1), NULL),
    NEW_KEY("adam_beta2", K_DOUBLE, OFF(adam_beta2), NULL),
    NEW_KEY("adam_epsilon", K_DOUBLE, OFF(adam_epsilon), NULL),
    {"epochs", K_INT, OFF(epochs), 0, 1, NULL, 0, NULL},
    {"seed", K_U64, OFF(seed), 0, 1, NULL, 0, NULL},
    NEW_ENUM("lr_schedule", OFF(lr_schedule), LR_SCHEDULE_WORDS),
    NEW_KEY("warmup_epochs", K_DOUBLE, OFF(warmup_epochs), NULL),
    NEW_KEY("min_lr", K_DOUBLE, OFF(min_lr), NULL),
    NEW_KEY("label_smoothing", K_DOUBLE, OFF(label_smoothing), NULL),
    NEW_KEY("grad_clip", K_DOUBLE, OFF(grad_clip), NULL),
    {"init_from", K_STR, OFF(init_from), sizeof(((run_config *)0)->init_from), 1, NULL, 1, NULL},
    {"threads", K_INT, OFF(threads), 0, 1, "system", 0, NULL},
    /* The MPI process count orders the gradient sums like threads do. */
    NEW_KEY("world_size", K_INT, OFF(world_size), NULL),
    {"backend", K_STR, OFF(backend), sizeof(((run_config *)0)->backend), 1, NULL, 0, NULL},
    {"out_dir", K_STR, OFF(out_dir), sizeof(((run_config *)0)->out_dir), 0, "output", 0, NULL},
    {"name", K_STR, OFF(name), sizeof(((run_config *)0)->name), 0, NULL, 0, NULL},
    /* Not hashed: checkpoints at any period resume bit-exact. */
    {"checkpoint_every", K_INT, OFF(checkpoint_every), 0, 0, NULL, 1, NULL},
};
#define NKEYS ((int)(sizeof KEYS / sizeof KEYS[0]))
_Static_assert(sizeof KEYS / sizeof KEYS[0] == RUN_CONFIG_NUM_KEYS, "update RUN_CONFIG_NUM_KEYS");


static int key_index(const char *name)
{
    for (int i = 0; i < NKEYS; i++)
        if (strcmp(KEYS[i].name, name) == 0) return i;
    return -1;
}

static void *field(run_config *c, int k) { return (char *)c + KEYS[k].off; }
static const void *cfield(const run_config *c, int k) { return (const char *)c + KEYS[k].off; }

const char *run_config_key_name(int k) { return k >= 0 && k < NKEYS ? KEYS[k].name : NULL; }
int run_config_key_hashed(int k) { return k >= 0 && k < NKEYS && KEYS[k].hashed; }

/* ------------------------------------------------------------------------ */
/* Swept values: one typed slot per value, read from and written to a key's
 * field. */

static run_value get_value(const run_config *c, int k)
{
    const void *f = cfield(c, k);
    run_value v = {0};
    switch (KEYS[k].type) {
    case K_FLOAT: v.d = *(const float *)f; break;
    case K_DOUBLE: v.d = *(const double *)f; break;
    case K_U64: v.u = *(const unsigned long long *)f; break;
    case K_INT: case K_BOOL: case K_ENUM: v.i = *(const int *)f; break;
    case K_STR: break; /* never swept */
    }
    return v;
}

static void set_value(run_config *c, int k, run_value v)
{
    void *f = field(c, k);
    switch (KEYS[k].type) {
    case K_FLOAT: *(float *)f = (float)v.d; break;
    case K_DOUBLE: *(double *)f = v.d; break;
    case K_U64: *(unsigned long long *)f = v.u; break;
    case K_INT: case K_BOOL: case K_ENUM: *(int *)f = (int)v.i; break;
    case K_STR: break;
    }
}

static int same_value(int k, run_value a, run_value b)
{
    switch (KEYS[k].type) {
    case K_FLOAT: case K_DOUBLE: return a.d == b.d;
    case K_U64: return a.u == b.u;
    default: return a.i == b.i;
    }
}

/* Words, not numbers: their name suffix is "_word". */
static int is_word_key(int k)
{
    const key_type t = KEYS[k].type;
    return t == K_BOOL || t == K_ENUM;
}

/* Expansion order: r, chunk_size, num_layers first (the three sweepable keys
 * before any other was, in their order then), the others in table order. */
static int sweep_rank(int k)
{
    static const char *const first[] = {"r", "chunk_size", "num_layers"};
    for (int j = 0; j < 3; j++)
        if (strcmp(KEYS[k].name, first[j]) == 0) return j;
    return 3 + k;
}

static const run_sweep *find_sweep(const run_config *c, int k)
{
    for (int j = 0; j < c->num_sweeps; j++)
        if (c->sweeps[j].key == k) return &c->sweeps[j];
    return NULL;
}

static void remove_sweep(run_config *c, int k)
{
    for (int j = 0; j < c->num_sweeps; j++)
        if (c->sweeps[j].key == k) {
            memmove(&c->sweeps[j], &c->sweeps[j + 1], (size_t)(c->num_sweeps - j - 1) * sizeof c->sweeps[0]);
            c->num_sweeps--;
            return;
        }
}

/* Replaces key sw->key's sweep (or adds it in rank order); the caller has
 * checked there is room. */
static void put_sweep(run_config *c, const run_sweep *sw)
{
    remove_sweep(c, sw->key);
    int j = c->num_sweeps;
    while (j > 0 && sweep_rank(c->sweeps[j - 1].key) > sweep_rank(sw->key)) {
        c->sweeps[j] = c->sweeps[j - 1];
        j--;
    }
    c->sweeps[j] = *sw;
    c->num_sweeps++;
}

/* ------------------------------------------------------------------------ */
/* Error context: where a key's value came from. */

typedef struct {
    const char *path; /* may be NULL or "" */
    int line;         /* > 0: file line; 0: no line; -1: --set */
    int item;         /* > 0: the 1-based item of a list at fault */
} where;

static void where_str(where w, char *buf, size_t n)
{
    if (w.line < 0) snprintf(buf, n, "--set: ");
    else if (w.path && w.path[0] && w.line > 0) snprintf(buf, n, "%s:%d: ", w.path, w.line);
    else if (w.path && w.path[0]) snprintf(buf, n, "%s: ", w.path);
    else buf[0] = '\0';
}

/* "<where>key: problem" (or "key: item N: problem"); err->key = key */
__attribute__((format(printf, 4, 5)))
static int fail_key(tlb_error *err, where w, const char *key, const char *fmt, ...)
{
    if (!err) return -1;
    char pre[1100], msg[900], item[32] = "";
    where_str(w, pre, sizeof pre);
    if (w.item > 0) snprintf(item, sizeof item, "item %d: ", w.item);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    tlb_fail(err, "%s%s: %s%s", pre, key, item, msg);
    snprintf(err->key, sizeof err->key, "%s", key);
    return -1;
}

/* ------------------------------------------------------------------------ */
/* Defaults */

void run_config_defaults(run_config *c)
{
    memset(c, 0, sizeof *c); /* also zeroes padding and string tails */
    c->model = model_config_seed();
    c->model.key_dim = 0; /* absent: = embed_dim (resolve_key_dim) */
    c->mixed_precision = 1;
    c->bf16_activations = RUN_CONFIG_AUTO;
    strcpy(c->dataset, "cifar10");
    c->train_slice = 40000;
    c->batch_size = 2048;
    c->learning_rate = 1e-4;
    c->weight_decay = 1e-4;
    c->adam_beta1 = 0.9; /* Keras AdamW's (golden README, section 5) */
    c->adam_beta2 = 0.999;
    c->adam_epsilon = 1e-7;
    c->epochs = 30;
    c->seed = 42;
    strcpy(c->out_dir, "runs");
    strcpy(c->name, "run");
    c->shuffle = SHUFFLE_EVERY_EPOCH;
    c->randaugment_m = 9; /* RandAugment's usual magnitude; used only when randaugment_n > 0 */
    c->world_size = 1;
}

/* key_dim 0 means "absent, = embed_dim", decided here only: the parser
 * refuses a written 0 (assign_scalar), so a 0 never came from the user. */
static void resolve_key_dim(tlb_model_config *m)
{
    if (m->key_dim == 0) m->key_dim = m->embed_dim;
}

/* The datasets a run may name: what each holds and, for token sequences,
 * the vocabulary and longest sequence a model needs (data/lra_image.h,
 * data/listops.h). */
static const run_dataset DATASETS[] = {
    {"cifar10", INPUT_IMAGE, 0, 0, 50000, 10},
    {"lra_image", INPUT_TOKENS, LRA_IMAGE_VOCAB, LRA_IMAGE_LEN, LRA_IMAGE_TRAIN, 10},
    {"listops", INPUT_TOKENS, LISTOPS_VOCAB, LISTOPS_MAX_LEN, LISTOPS_TRAIN_COUNT, LISTOPS_NUM_CLASSES},
};

const run_dataset *run_config_dataset(const run_config *c)
{
    for (size_t i = 0; i < sizeof DATASETS / sizeof DATASETS[0]; i++)
        if (strcmp(DATASETS[i].name, c->dataset) == 0) return &DATASETS[i];
    return NULL;
}

void run_config_model(const run_config *c, tlb_model_config *m)
{
    *m = c->model;
    resolve_key_dim(m);
    const run_dataset *d = run_config_dataset(c);
    if (!d || m->input != INPUT_TOKENS || d->input != INPUT_TOKENS) return;
    if (m->vocab_size == 0) m->vocab_size = d->vocab;
    /* The longest sequence, padded to whole chunks. */
    if (m->seq_len == 0 && m->chunk_size > 0)
        m->seq_len = (d->max_len + m->chunk_size - 1) / m->chunk_size * m->chunk_size;
}

/* ------------------------------------------------------------------------ */
/* Typing one scalar. `quoted` scalars are strings in YAML, so they are
 * rejected where a number or boolean is expected. */

typedef struct {
    const char *text;
    int quoted;
} scalar;

static void show(char *buf, size_t n, scalar s)
{
    /* Shown values are cut short to keep the message on one short line. */
    if (s.quoted) snprintf(buf, n, "the string \"%.40s\"", s.text);
    else snprintf(buf, n, "'%.40s'", s.text);
}

static int parse_int(scalar s, int *out)
{
    if (s.quoted || !s.text[0]) return -1;
    /* YAML 1.1 reads a leading 0 as octal; refuse rather than guess. */
    const char *d = s.text + (s.text[0] == '+' || s.text[0] == '-');
    if (d[0] == '0' && d[1]) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s.text, &end, 10);
    if (*end || errno || v < -2147483647LL - 1 || v > 2147483647LL) return -1;
    *out = (int)v;
    return 0;
}

static int parse_u64(scalar s, unsigned long long *out)
{
    if (s.quoted || !s.text[0] || strchr(s.text, '-')) return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s.text, &end, 10);
    if (*end || errno) return -1;
    *out = v;
    return 0;
}

static int parse_double(scalar s, double *out)
{
    if (s.quoted || !s.text[0]) return -1;
    /* strtod also takes hex, "inf" and "nan"; a config wants plain decimals. */
    for (const char *p = s.text; *p; p++)
        if (!strchr("0123456789+-.eE", *p)) return -1;
    char *end;
    errno = 0;
    double v = strtod(s.text, &end);
    if (*end || errno == ERANGE || !isfinite(v)) return -1;
    *out = v == 0 ? 0.0 : v; /* -0 and 0 are one setting: one canonical text, one run hash */
    return 0;
}

static int parse_bool(scalar s, int *out)
{
    static const char *yes[] = {"true", "yes", "on"}, *no[] = {"false", "no", "off"};
    if (s.quoted) return -1;
    for (int i = 0; i < 3; i++) {
        if (strcasecmp(s.text, yes[i]) == 0) { *out = 1; return 0; }
        if (strcasecmp(s.text, no[i]) == 0) { *out = 0; return 0; }
    }
    return -1;
}

static int yaml_round_trips(const char *s);

/* Stores scalar s into key k of c; on failure reports at w. */
static int assign_scalar(run_config *c, int k, scalar s, where w, tlb_error *err)
{
    const char *key = KEYS[k].name;
    char got[64];
    show(got, sizeof got, s);
    switch (KEYS[k].type) {
    case K_INT: {
        int v;
        if (parse_int(s, &v)) return fail_key(err, w, key, "expected an integer, got %s", got);
        /* 0 is resolve_key_dim's "absent"; other bad sizes fail validation. */
        if (v == 0 && KEYS[k].off == MOFF(key_dim))
            return fail_key(err, w, key, "0 is not a key size (leave key_dim out for key_dim = embed_dim)");
        *(int *)field(c, k) = v;
        return 0;
    }
    case K_FLOAT:
    case K_DOUBLE: {
        double v;
        if (parse_double(s, &v)) return fail_key(err, w, key, "expected a number, got %s", got);
        if (KEYS[k].type == K_FLOAT) *(float *)field(c, k) = (float)v;
        else *(double *)field(c, k) = v;
        return 0;
    }
    case K_BOOL:
        if (KEYS[k].names && !s.quoted && strcmp(s.text, "auto") == 0) {
            *(int *)field(c, k) = RUN_CONFIG_AUTO;
            return 0;
        }
        if (parse_bool(s, (int *)field(c, k)))
            return fail_key(err, w, key, "expected true or false%s, got %s", KEYS[k].names ? " or auto" : "", got);
        return 0;
    case K_U64:
        if (parse_u64(s, (unsigned long long *)field(c, k)))
            return fail_key(err, w, key, "expected a non-negative integer, got %s", got);
        return 0;
    case K_STR: {
        /* A YAML null ("key:", "~", "null") is the empty string: the default. */
        if (!s.quoted && (strcmp(s.text, "~") == 0 || strcasecmp(s.text, "null") == 0)) s.text = "";
        size_t len = strlen(s.text);
        if (len >= KEYS[k].size)
            return fail_key(err, w, key, "longer than %zu characters", KEYS[k].size - 1);
        /* config.cfg must read back the same (--resume). */
        if (!yaml_round_trips(s.text))
            return fail_key(err, w, key, "%s is not valid UTF-8 or holds a character YAML would not read back",
                            got);
        memcpy(field(c, k), s.text, len + 1);
        return 0;
    }
    case K_ENUM: {
        const char *const *names = KEYS[k].names;
        for (int i = 0; names[i]; i++)
            if (!s.quoted && strcmp(s.text, names[i]) == 0) {
                *(int *)field(c, k) = i;
                return 0;
            }
        char expected[128];
        enum_words_text(names, expected, sizeof expected);
        return fail_key(err, w, key, "expected %s, got %s", expected, got);
    }
    }
    return fail_key(err, w, key, "internal: unknown key type");
}

static int num_runs_with(const run_config *c, int k, int n);

/* Stores a list (a sweep) into key k; the scalar takes the first value so a
 * config stays usable without expansion. Each item is typed as the scalar
 * would be (the same messages, "item N: ..."). */
static int assign_list(run_config *c, int k, const scalar *items, int n, where w, tlb_error *err)
{
    const char *key = KEYS[k].name;
    if (KEYS[k].type == K_STR)
        return fail_key(err, w, key, "a string key takes one value (only numbers and words can be swept)");
    if (strcmp(key, "world_size") == 0) /* a property of the launch, not of a run */
        return fail_key(err, w, key, "takes one value (mpirun -np sets it)");
    if (n == 0) return fail_key(err, w, key, "empty list");
    if (n > RUN_SWEEP_MAX) return fail_key(err, w, key, "more than %d values in the list", RUN_SWEEP_MAX);
    if (!find_sweep(c, k) && c->num_sweeps >= RUN_SWEEP_AXES)
        return fail_key(err, w, key, "more than %d keys are swept", RUN_SWEEP_AXES);
    if (num_runs_with(c, k, n) > RUN_SWEEP_RUNS)
        return fail_key(err, w, key, "the sweep would have more than %d runs", RUN_SWEEP_RUNS);
    run_sweep sw = {.key = k, .n = n};
    run_config *scratch = malloc(sizeof *scratch);
    if (!scratch) return fail_key(err, w, key, "out of memory");
    *scratch = *c;
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        where wi = w;
        wi.item = i + 1;
        if (assign_scalar(scratch, k, items[i], wi, err)) {
            rc = -1;
            break;
        }
        sw.v[i] = get_value(scratch, k);
        for (int j = 0; j < i; j++)
            if (same_value(k, sw.v[j], sw.v[i])) {
                char shown[64];
                show(shown, sizeof shown, items[i]);
                rc = fail_key(err, w, key, "%s appears twice in the list", shown);
                break;
            }
    }
    free(scratch);
    if (rc) return rc;
    put_sweep(c, &sw);
    set_value(c, k, sw.v[0]);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Unknown keys: suggest the nearest name by edit distance. */

static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63) return 64;
    int d[64 + 1];
    for (int j = 0; j <= lb; j++) d[j] = j;
    for (int i = 1; i <= la; i++) {
        int diag = d[0];
        d[0] = i;
        for (int j = 1; j <= lb; j++) {
            int up = d[j];
            int best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best) best = up + 1;
            if (d[j - 1] + 1 < best) best = d[j - 1] + 1;
            d[j] = best;
            diag = up;
        }
    }
    return d[lb];
}

static int fail_unknown(tlb_error *err, where w, const char *key)
{
    int best = -1, bestd = 1 << 30;
    for (int i = 0; i < NKEYS; i++) {
        int d = edit_distance(key, KEYS[i].name);
        if (d < bestd) { bestd = d; best = i; } /* ties: first in table order */
    }
    /* Only suggest a name that is plausibly a typo of this one. */
    int len = (int)strlen(key), limit = len / 2 > 2 ? len / 2 : 2;
    char shown[80];
    snprintf(shown, sizeof shown, "%.60s", key);
    if (best >= 0 && bestd <= limit)
        return fail_key(err, w, shown, "unknown key (did you mean '%s'?)", KEYS[best].name);
    return fail_key(err, w, shown, "unknown key");
}

/* ------------------------------------------------------------------------ */
/* YAML */

static const char *node_kind(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE ? "a scalar" : n->type == YAML_SEQUENCE_NODE ? "a list" : "a mapping";
}

static scalar node_scalar(const yaml_node_t *n)
{
    return (scalar){(const char *)n->data.scalar.value, n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE};
}

/* Assigns one value node (scalar or list of scalars) to key k. */
static int assign_node(run_config *c, int k, yaml_document_t *doc, yaml_node_t *v, where w,
                       tlb_error *err)
{
    if (v->type == YAML_SCALAR_NODE) {
        if (assign_scalar(c, k, node_scalar(v), w, err)) return -1;
        remove_sweep(c, k); /* a scalar replaces a list */
        return 0;
    }
    if (v->type == YAML_SEQUENCE_NODE) {
        scalar items[RUN_SWEEP_MAX];
        int n = (int)(v->data.sequence.items.top - v->data.sequence.items.start);
        if (KEYS[k].type == K_STR)
            return fail_key(err, w, KEYS[k].name, "a string key takes one value (only numbers and words can be swept)");
        if (n > RUN_SWEEP_MAX)
            return fail_key(err, w, KEYS[k].name, "more than %d values in the list", RUN_SWEEP_MAX);
        for (int i = 0; i < n; i++) {
            yaml_node_t *it = yaml_document_get_node(doc, v->data.sequence.items.start[i]);
            if (it->type != YAML_SCALAR_NODE)
                return fail_key(err, w, KEYS[k].name, "item %d: expected a value, got %s", i + 1, node_kind(it));
            items[i] = node_scalar(it);
        }
        return assign_list(c, k, items, n, w, err);
    }
    return fail_key(err, w, KEYS[k].name, "expected a value, got a mapping");
}

/* libyaml's own message, with a 1-based line. */
static int fail_yaml(tlb_error *err, const yaml_parser_t *p, const char *source, const char *text,
                     size_t len)
{
    size_t line;
    if (p->error == YAML_READER_ERROR) { /* only an offset is known: count lines to it */
        line = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) line += text[i] == '\n';
    } else {
        line = p->problem_mark.line + 1;
    }
    const char *problem = p->problem ? p->problem : "invalid YAML";
    if (p->context)
        return tlb_fail(err, "%s:%zu: yaml: %s %s", source, line, problem, p->context);
    return tlb_fail(err, "%s:%zu: yaml: %s", source, line, problem);
}

/* Walks the root mapping: every key known, none twice, each value typed. */
static int apply_document(run_config *c, yaml_document_t *doc, const char *source, tlb_error *err)
{
    yaml_node_t *root = yaml_document_get_root_node(doc);
    if (!root) return 0; /* an empty file: all defaults */
    if (root->type != YAML_MAPPING_NODE)
        return tlb_fail(err, "%s:%zu: document: expected 'key: value' lines, got %s", source,
                        root->start_mark.line + 1, node_kind(root));
    int seen[RUN_CONFIG_NUM_KEYS] = {0};
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *kn = yaml_document_get_node(doc, p->key);
        yaml_node_t *vn = yaml_document_get_node(doc, p->value);
        where w = {source, (int)kn->start_mark.line + 1, 0};
        if (kn->type != YAML_SCALAR_NODE)
            return fail_key(err, w, "key", "expected a key name, got %s", node_kind(kn));
        const char *key = (const char *)kn->data.scalar.value;
        int k = key_index(key);
        if (k < 0) return fail_unknown(err, w, key);
        if (seen[k]) return fail_key(err, w, key, "duplicate key (first on line %d)", seen[k]);
        seen[k] = w.line;
        if (assign_node(c, k, doc, vn, w, err)) return -1;
        c->line[k] = w.line;
    }
    return 0;
}

/* Parses text as exactly one YAML document into doc (caller deletes it on 0). */
static int load_document(yaml_document_t *doc, const char *text, size_t len, const char *source,
                         tlb_error *err)
{
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p)) return tlb_fail(err, "%s: yaml: out of memory", source);
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    if (!yaml_parser_load(&p, doc)) {
        fail_yaml(err, &p, source, text, len);
        yaml_parser_delete(&p);
        return -1;
    }
    /* A second document ("---") would be silently ignored; refuse it. */
    yaml_document_t extra;
    int rc = 0;
    if (!yaml_parser_load(&p, &extra)) {
        rc = fail_yaml(err, &p, source, text, len);
    } else {
        yaml_node_t *r = yaml_document_get_root_node(&extra);
        if (r) rc = tlb_fail(err, "%s:%zu: yaml: only one document is allowed", source, r->start_mark.line + 1);
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&p);
    if (rc) yaml_document_delete(doc);
    return rc;
}

int run_config_parse(run_config *c, const char *text, size_t len, const char *source, tlb_error *err)
{
    yaml_document_t doc;
    if (load_document(&doc, text, len, source, err)) return -1;
    int rc = apply_document(c, &doc, source, err);
    yaml_document_delete(&doc);
    return rc;
}

int run_config_load(run_config *out, const char *path, tlb_error *err)
{
    run_config_defaults(out);
    snprintf(out->source, sizeof out->source, "%s", path);

    /* Default name: the basename without its extension. */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t blen = strlen(base);
    static const char *exts[] = {".cfg", ".yaml", ".yml"};
    for (int i = 0; i < 3; i++) {
        size_t el = strlen(exts[i]);
        if (blen > el && strcmp(base + blen - el, exts[i]) == 0) { blen -= el; break; }
    }
    if (blen >= sizeof out->name)
        return tlb_fail(err, "%s: name: the file name is longer than %zu characters; set a name",
                        path, sizeof out->name - 1);
    memcpy(out->name, base, blen);
    out->name[blen] = '\0';

    FILE *f = fopen(path, "rb");
    if (!f) return tlb_fail(err, "%s: cannot read: %s", path, strerror(errno));
    enum { MAX_BYTES = 1 << 20 };
    char *text = malloc(MAX_BYTES + 1);
    if (!text) { fclose(f); return tlb_fail(err, "%s: out of memory", path); }
    size_t len = fread(text, 1, MAX_BYTES + 1, f);
    int bad = ferror(f), e = errno;
    fclose(f);
    int rc;
    if (bad) rc = tlb_fail(err, "%s: cannot read: %s", path, strerror(e));
    else if (len > MAX_BYTES) rc = tlb_fail(err, "%s: cannot read: larger than 1 MiB", path);
    else rc = run_config_parse(out, text, len, path, err);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* --set key=value */

int run_config_set(run_config *c, const char *assignment, tlb_error *err)
{
    where w = {NULL, -1, 0};
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return tlb_fail(err, "--set: '%.60s': expected key=value", assignment);
    char key[64];
    size_t kl = (size_t)(eq - assignment);
    if (kl >= sizeof key) kl = sizeof key - 1; /* too long to be a key: reported as unknown */
    memcpy(key, assignment, kl);
    key[kl] = '\0';
    const char *value = eq + 1;
    int k = key_index(key);
    if (k < 0) return fail_unknown(err, w, key);

    int rc;
    if (KEYS[k].type == K_STR) {
        /* Strings verbatim: paths and backend specs need no YAML quoting. */
        rc = assign_scalar(c, k, (scalar){value, 0}, w, err);
    } else {
        /* Everything else is typed by the same YAML rules as the file. */
        yaml_document_t doc;
        tlb_error e;
        if (load_document(&doc, value, strlen(value), "--set", &e)) {
            /* Replace "--set:1: yaml: ..." with the key's context. */
            const char *problem = strstr(e.msg, "yaml: ");
            char p[512];
            snprintf(p, sizeof p, "%s", problem ? problem + 6 : "invalid value");
            return fail_key(err, w, key, "invalid value: %s", p);
        }
        yaml_node_t *v = yaml_document_get_root_node(&doc);
        if (!v || (v->type == YAML_SCALAR_NODE && !v->data.scalar.value[0] &&
                   v->data.scalar.style == YAML_PLAIN_SCALAR_STYLE))
            rc = fail_key(err, w, key, "missing value");
        else
            rc = assign_node(c, k, &doc, v, w, err);
        yaml_document_delete(&doc);
    }
    if (rc == 0) c->line[k] = -1;
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Validation */

static where key_where(const run_config *c, int k) { return (where){c->source, c->line[k], 0}; }

static int check_range(const run_config *c, const char *key, long long v, long long lo, long long hi,
                       tlb_error *err)
{
    if (v >= lo && v <= hi) return 0;
    return fail_key(err, key_where(c, key_index(key)), key, "%lld is out of range [%lld, %lld]", v, lo, hi);
}

/* A real-valued key in [lo, hi]; `hi_key` names the key hi comes from. */
static int check_number(const run_config *c, const char *key, double v, double lo, double hi,
                        const char *hi_key, tlb_error *err)
{
    if (v >= lo && v <= hi) return 0;
    where w = key_where(c, key_index(key));
    if (hi_key) return fail_key(err, w, key, "%g is out of range [%g, %s = %g]", v, lo, hi_key, hi);
    return fail_key(err, w, key, "%g is out of range [%g, %g]", v, lo, hi);
}

/* model_config_validate says "key: problem" and names the key in e.key;
 * put the key's origin in front. */
static int check_model(const run_config *c, const tlb_model_config *m, tlb_error *err)
{
    /* The patches tile the image: blame the key given last (model_config_validate
     * always names patch_size, even for an image_size: 15 under the default patch). */
    if (m->patch_size > 0 && m->image_size % m->patch_size != 0) {
        const int ik = key_index("image_size"), pk = key_index("patch_size");
        const int li = c->line[ik] < 0 ? INT_MAX : c->line[ik], lp = c->line[pk] < 0 ? INT_MAX : c->line[pk];
        if (li > lp)
            return fail_key(err, key_where(c, ik), "image_size", "%d is not a multiple of patch_size %d",
                            m->image_size, m->patch_size);
    }
    tlb_error e;
    if (model_config_validate(m, &e) == 0) return 0;
    const int k = key_index(e.key);
    char pre[1100];
    where_str(k >= 0 ? key_where(c, k) : (where){c->source, 0, 0}, pre, sizeof pre);
    tlb_fail(err, "%s%s", pre, e.msg);
    if (err) memcpy(err->key, e.key, sizeof err->key);
    return -1;
}

static int valid_name(const char *s)
{
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '.' || *s == '_' || *s == '-'))
            return 0;
    return 1;
}

static size_t name_suffix(int k, run_value v, char *buf, size_t n);

/* Longest name suffix run_config_expand appends for c's sweeps. */
static size_t sweep_suffix_len(const run_config *c)
{
    size_t total = 0;
    for (int j = 0; j < c->num_sweeps; j++) {
        size_t longest = 0;
        for (int i = 0; i < c->sweeps[j].n; i++) {
            char b[80];
            size_t l = name_suffix(c->sweeps[j].key, c->sweeps[j].v[i], b, sizeof b);
            if (l > longest) longest = l;
        }
        total += longest;
    }
    return total;
}

/* One plain config (or a sweep's first values, with room for its suffix). */
static int validate_one(const run_config *c, tlb_error *err)
{
    const run_dataset *data = run_config_dataset(c);
    if (!data)
        return fail_key(err, key_where(c, key_index("dataset")), "dataset",
                        "expected cifar10, lra_image or listops, got '%.40s'", c->dataset);
    /* CIFAR-10 has 50000 training images; the validation part must not be empty. */
    if (check_range(c, "train_slice", c->train_slice, 1, 49999, err)) return -1;
    if (data->input == INPUT_IMAGE && check_range(c, "train_limit", c->train_limit, 0, c->train_slice, err)) return -1;
    if (data->input == INPUT_TOKENS && check_range(c, "train_limit", c->train_limit, 0, data->train_count, err))
        return -1;
    if (check_range(c, "eval_limit", c->eval_limit, 0, 1 << 30, err)) return -1;
    if (check_range(c, "batch_size", c->batch_size, 1, 1 << 24, err)) return -1;
    if (check_range(c, "micro_batch", c->micro_batch, 0, c->batch_size, err)) return -1;
    if (!(c->learning_rate > 0))
        return fail_key(err, key_where(c, key_index("learning_rate")), "learning_rate",
                        "must be > 0, got %g", c->learning_rate);
    if (!(c->weight_decay >= 0))
        return fail_key(err, key_where(c, key_index("weight_decay")), "weight_decay",
                        "must be >= 0, got %g", c->weight_decay);
    /* 0 = unset (the dataset's, for token inputs); the model checks the rest. */
    if (check_range(c, "vocab_size", c->model.vocab_size, 0, 1 << 24, err)) return -1;
    if (check_range(c, "seq_len", c->model.seq_len, 0, 1 << 20, err)) return -1;
    /* Adam's moment decays in [0, 1): 1 would never forget, and its bias
     * correction divides by 1 - beta^t. */
    if (check_number(c, "adam_beta1", c->adam_beta1, 0, 0.999999, NULL, err)) return -1;
    if (check_number(c, "adam_beta2", c->adam_beta2, 0, 0.999999, NULL, err)) return -1;
    if (!(c->adam_epsilon > 0 && c->adam_epsilon <= 1))
        return fail_key(err, key_where(c, key_index("adam_epsilon")), "adam_epsilon",
                        "must be in (0, 1], got %g", c->adam_epsilon);
    if (check_range(c, "epochs", c->epochs, 1, 1 << 20, err)) return -1;
    if (check_number(c, "warmup_epochs", c->warmup_epochs, 0, c->epochs, "epochs", err)) return -1;
    if (check_number(c, "min_lr", c->min_lr, 0, c->learning_rate, "learning_rate", err)) return -1;
    if (check_number(c, "label_smoothing", c->label_smoothing, 0, 0.999, NULL, err)) return -1;
    if (check_number(c, "grad_clip", c->grad_clip, 0, 1e30, NULL, err)) return -1;
    if (check_number(c, "mixup_alpha", c->mixup_alpha, 0, 1e3, NULL, err)) return -1;
    if (check_number(c, "cutmix_alpha", c->cutmix_alpha, 0, 1e3, NULL, err)) return -1;
    if (check_number(c, "random_erase", c->random_erase, 0, 1, NULL, err)) return -1;
    if (check_range(c, "randaugment_n", c->randaugment_n, 0, 16, err)) return -1;
    if (check_range(c, "randaugment_m", c->randaugment_m, 0, 30, err)) return -1;
    if (check_range(c, "checkpoint_every", c->checkpoint_every, 0, 1 << 30, err)) return -1;
    if (check_range(c, "threads", c->threads, 0, 4096, err)) return -1;
    if (check_range(c, "world_size", c->world_size, 1, 1 << 20, err)) return -1;
    if (!c->name[0])
        return fail_key(err, key_where(c, key_index("name")), "name", "must not be empty");
    if (!valid_name(c->name))
        return fail_key(err, key_where(c, key_index("name")), "name",
                        "'%.40s' may only contain letters, digits, '.', '_' and '-'", c->name);
    /* Room for the sweep suffix, so expanded names stay distinct. */
    size_t room = sizeof c->name - 1 - sweep_suffix_len(c);
    if (strlen(c->name) > room)
        return fail_key(err, key_where(c, key_index("name")), "name",
                        "longer than %zu characters%s", room, room + 1 < sizeof c->name ? " (with the sweep suffix)" : "");
    if (!c->out_dir[0])
        return fail_key(err, key_where(c, key_index("out_dir")), "out_dir", "must not be empty");
    tlb_error spec_err;
    if (ops_spec_check(c->backend, &spec_err) != 0)
        return fail_key(err, key_where(c, key_index("backend")), "backend", "%s", spec_err.msg);

    tlb_model_config m;
    run_config_model(c, &m); /* a swept embed_dim leaves key_dim unresolved in c */
    /* The input stage reads what the dataset holds. */
    if (m.input == INPUT_TOKENS && data->input == INPUT_IMAGE)
        return fail_key(err, key_where(c, key_index("input")), "input",
                        "tokens needs a token dataset, and dataset '%.40s' holds images", c->dataset);
    if (m.input == INPUT_IMAGE && data->input == INPUT_TOKENS)
        return fail_key(err, key_where(c, key_index("input")), "input",
                        "dataset '%.40s' holds token sequences: set input: tokens", c->dataset);
    /* A key the image model ignores would still make another run folder
     * (and a report axis) for the same computation: refused, not ignored. */
    if (m.input == INPUT_IMAGE && c->model.vocab_size != 0)
        return fail_key(err, key_where(c, key_index("vocab_size")), "vocab_size",
                        "%d applies to input: tokens only; an image model has no vocabulary (leave it 0)",
                        c->model.vocab_size);
    if (m.input == INPUT_IMAGE && c->model.seq_len != 0)
        return fail_key(err, key_where(c, key_index("seq_len")), "seq_len",
                        "%d applies to input: tokens only; an image's sequence is its (image_size / patch_size)^2"
                        " patches (leave it 0)",
                        c->model.seq_len);
    if (m.input == INPUT_TOKENS) { /* keys a token model ignores (the token loaders split and augment nothing) */
        run_config d;
        run_config_defaults(&d);
        if (c->model.image_size != d.model.image_size)
            return fail_key(err, key_where(c, key_index("image_size")), "image_size",
                            "%d applies to input: image only; a token model reads seq_len tokens (leave it out)",
                            c->model.image_size);
        if (c->model.patch_size != d.model.patch_size)
            return fail_key(err, key_where(c, key_index("patch_size")), "patch_size",
                            "%d applies to input: image only; a token model reads seq_len tokens (leave it out)",
                            c->model.patch_size);
        if (c->train_slice != d.train_slice)
            return fail_key(err, key_where(c, key_index("train_slice")), "train_slice",
                            "%d applies to cifar10 only; dataset '%.40s' has its own validation split (leave it out)",
                            c->train_slice, c->dataset);
        const struct {
            const char *key;
            double value;
        } augment[] = {{"mixup_alpha", c->mixup_alpha},
                       {"cutmix_alpha", c->cutmix_alpha},
                       {"random_erase", c->random_erase},
                       {"randaugment_n", c->randaugment_n}};
        for (size_t i = 0; i < sizeof augment / sizeof augment[0]; i++)
            if (augment[i].value != 0)
                return fail_key(err, key_where(c, key_index(augment[i].key)), augment[i].key,
                                "%g: augmentation applies to images only; the token loaders do not augment",
                                augment[i].value);
    }
    if (data->input == INPUT_TOKENS) {
        if (m.vocab_size < data->vocab)
            return fail_key(err, key_where(c, key_index("vocab_size")), "vocab_size",
                            "%d is smaller than dataset '%s''s %d token ids", m.vocab_size, data->name, data->vocab);
        if (m.seq_len < data->max_len)
            return fail_key(err, key_where(c, key_index("seq_len")), "seq_len",
                            "%d is shorter than dataset '%s''s sequences (up to %d tokens)", m.seq_len, data->name,
                            data->max_len);
        if (m.num_classes != data->num_classes)
            return fail_key(err, key_where(c, key_index("num_classes")), "num_classes",
                            "%d, but dataset '%s' has %d classes", m.num_classes, data->name, data->num_classes);
    }
    if (check_model(c, &m, err)) return -1;
    return 0;
}

int run_config_validate(run_config *c, tlb_error *err)
{
    /* key_dim follows embed_dim; a swept embed_dim resolves it per run. */
    if (!find_sweep(c, key_index("embed_dim"))) resolve_key_dim(&c->model);
    if (validate_one(c, err)) return -1;
    /* Every combination of a sweep must be valid (ranges that depend on
     * other keys, the model's shape). */
    const int n = c->num_sweeps ? run_config_num_runs(c) : 0;
    run_config *run = n ? malloc(sizeof *run) : NULL;
    if (n && !run) return tlb_fail(err, "out of memory");
    int rc = 0;
    for (int i = 0; i < n && rc == 0; i++) {
        run_config_expand(c, i, run);
        rc = validate_one(run, err);
    }
    free(run);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* Sweeps */

/* Runs of c's grid if key k's list had n values. */
static int num_runs_with(const run_config *c, int k, int n)
{
    long long runs = n;
    for (int j = 0; j < c->num_sweeps; j++)
        if (c->sweeps[j].key != k) runs *= c->sweeps[j].n;
    return runs > RUN_SWEEP_RUNS ? RUN_SWEEP_RUNS + 1 : (int)runs;
}

int run_config_num_runs(const run_config *c) { return num_runs_with(c, -1, 1); }

void run_config_expand(const run_config *c, int i, run_config *out)
{
    *out = *c;
    int idx[RUN_SWEEP_AXES];
    /* The last sweep (highest rank) varies fastest. */
    for (int j = c->num_sweeps - 1; j >= 0; j--) {
        idx[j] = i % c->sweeps[j].n;
        i /= c->sweeps[j].n;
    }
    size_t len = strlen(out->name);
    for (int j = 0; j < c->num_sweeps; j++) {
        const run_value v = c->sweeps[j].v[idx[j]];
        set_value(out, c->sweeps[j].key, v);
        len += name_suffix(c->sweeps[j].key, v, out->name + len, sizeof out->name - len);
        if (len >= sizeof out->name) len = sizeof out->name - 1;
    }
    out->num_sweeps = 0;
    resolve_key_dim(&out->model);
}

/* ------------------------------------------------------------------------ */
/* Canonical text and hash */

typedef struct {
    char *buf;
    size_t n, len;
} out_buf;

__attribute__((format(printf, 2, 3)))
static void put(out_buf *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(o->len < o->n ? o->buf + o->len : NULL, o->len < o->n ? o->n - o->len : 0, fmt, ap);
    va_end(ap);
    if (m > 0) o->len += (size_t)m;
}

/* Shortest decimal that reads back to the same value. */
static void put_double(out_buf *o, double v, int as_float)
{
    char b[40];
    for (int p = 1; p <= 17; p++) {
        snprintf(b, sizeof b, "%.*g", p, v);
        double r = strtod(b, NULL);
        if (as_float ? (float)r == (float)v : r == v) break;
    }
    put(o, "%s", b);
}

/* Double-quoted YAML string, so any path or spec reads back unchanged. */
static void put_string(out_buf *o, const char *s)
{
    put(o, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') put(o, "\\%c", *p);
        else if (*p < 0x20 || *p == 0x7f) put(o, "\\x%02x", *p);
        else put(o, "%c", *p);
    }
    put(o, "\"");
}

/* Whether s, written by put_string, reads back as s: a --set value is raw
 * bytes (maybe invalid UTF-8), and YAML folds some characters (NEL, U+2028)
 * into spaces. */
static int yaml_round_trips(const char *s)
{
    size_t n = 4 * strlen(s) + 3; /* every byte as \xNN, two quotes, NUL */
    char *q = malloc(n);
    if (!q) return 0;
    out_buf o = {q, n, 0};
    put_string(&o, s);
    yaml_document_t doc;
    int ok = 0;
    if (load_document(&doc, q, o.len, "string", NULL) == 0) {
        yaml_node_t *v = yaml_document_get_root_node(&doc);
        ok = v && v->type == YAML_SCALAR_NODE && strcmp((const char *)v->data.scalar.value, s) == 0;
        yaml_document_delete(&doc);
    }
    free(q);
    return ok;
}

/* One value of key k (c: for key_dim's default, written resolved). */
static void put_scalar(out_buf *o, const run_config *c, int k, run_value v)
{
    switch (KEYS[k].type) {
    case K_INT: {
        long long x = v.i;
        if (c && KEYS[k].off == MOFF(key_dim)) { /* written resolved */
            tlb_model_config m = c->model;
            m.key_dim = (int)x;
            resolve_key_dim(&m);
            x = m.key_dim;
        }
        put(o, "%lld", x);
        break;
    }
    case K_FLOAT: put_double(o, v.d, 1); break;
    case K_DOUBLE: put_double(o, v.d, 0); break;
    case K_BOOL: put(o, "%s", v.i == RUN_CONFIG_AUTO && KEYS[k].names ? "auto" : v.i ? "true" : "false"); break;
    case K_U64: put(o, "%llu", v.u); break;
    case K_ENUM: put(o, "%s", KEYS[k].names[v.i]); break;
    case K_STR: put_string(o, (const char *)cfield(c, k)); break;
    }
}

/* The scalar, or "[a, b, ...]" when swept. */
static void put_value(out_buf *o, const run_config *c, int k)
{
    const run_sweep *s = find_sweep(c, k);
    if (!s) {
        put_scalar(o, c, k, get_value(c, k));
        return;
    }
    put(o, "[");
    for (int i = 0; i < s->n; i++) {
        if (i) put(o, ", ");
        put_scalar(o, c, k, s->v[i]);
    }
    put(o, "]");
}

size_t run_config_value_text(const run_config *c, int k, char *buf, size_t n)
{
    out_buf o = {buf, n, 0};
    if (n) buf[0] = '\0';
    if (k >= 0 && k < NKEYS) put_value(&o, c, k);
    return o.len;
}

/* "-<tag><value>" for run names: short tags for the most swept keys, words
 * after an '_'; no '+' (not a name character; "1e20" reads as "1e+20"). */
static size_t name_suffix(int k, run_value v, char *buf, size_t n)
{
    static const char *const tags[][2] = {{"r", "r"}, {"chunk_size", "chunk"}, {"num_layers", "L"},
                                          {"learning_rate", "lr"}, {"weight_decay", "wd"}};
    const char *tag = KEYS[k].name;
    for (size_t j = 0; j < sizeof tags / sizeof tags[0]; j++)
        if (strcmp(tag, tags[j][0]) == 0) tag = tags[j][1];
    char text[64];
    out_buf o = {text, sizeof text, 0};
    text[0] = '\0';
    put(&o, "-%s%s", tag, is_word_key(k) ? "_" : "");
    put_scalar(&o, NULL, k, v);
    size_t len = 0;
    for (const char *p = text; *p && len + 1 < n; p++)
        if (*p != '+') buf[len++] = *p;
    if (n) buf[len] = '\0';
    return len;
}

/* Whether key k of c holds its default value (compared as canonical text). */
static int at_default(const run_config *c, int k)
{
    static run_config defaults;
    static int ready;
    if (!ready) { run_config_defaults(&defaults); ready = 1; }
    char a[256], b[256];
    out_buf oa = {a, sizeof a, 0}, ob = {b, sizeof b, 0};
    put_value(&oa, c, k);
    put_value(&ob, &defaults, k);
    return oa.len == ob.len && oa.len < sizeof a && memcmp(a, b, oa.len) == 0;
}

static size_t write_keys(const run_config *c, char *buf, size_t n, int hashed_only)
{
    out_buf o = {buf, n, 0};
    if (n) buf[0] = '\0';
    for (int k = 0; k < NKEYS; k++) {
        if (hashed_only && !KEYS[k].hashed) continue;
        if (hashed_only && KEYS[k].hashed_unless_default && at_default(c, k)) continue;
        if (KEYS[k].group && !hashed_only) put(&o, "%s# %s\n", k ? "\n" : "", KEYS[k].group);
        put(&o, "%s: ", KEYS[k].name);
        put_value(&o, c, k);
        put(&o, "\n");
    }
    return o.len;
}

size_t run_config_write_canonical(const run_config *c, char *buf, size_t n)
{
    return write_keys(c, buf, n, 0);
}

uint64_t run_config_hash(const run_config *c)
{
    char small[4096];
    size_t len = write_keys(c, small, sizeof small, 1);
    if (len < sizeof small) return XXH3_64bits(small, len);
    char *big = malloc(len + 1);
    if (!big) abort(); /* a few KiB; nothing sensible to do without them */
    write_keys(c, big, len + 1, 1);
    uint64_t h = XXH3_64bits(big, len);
    free(big);
    return h;
}

int run_config_run_dir(const run_config *c, char *buf, size_t n)
{
    return snprintf(buf, n, "%s/%s-%016llx", c->out_dir, c->name, (unsigned long long)run_config_hash(c));
}

/* ------------------------------------------------------------------------ */

int run_config_equal(const run_config *a, const run_config *b)
{
    /* The canonical text covers every setting exactly (shortest round-trip
     * decimals, escaped strings), so equal texts mean equal settings. */
    size_t la = run_config_write_canonical(a, NULL, 0);
    size_t lb = run_config_write_canonical(b, NULL, 0);
    if (la != lb) return 0;
    char *ta = malloc(la + 1), *tb = malloc(lb + 1);
    if (!ta || !tb) abort();
    run_config_write_canonical(a, ta, la + 1);
    run_config_write_canonical(b, tb, lb + 1);
    int same = memcmp(ta, tb, la) == 0;
    free(ta);
    free(tb);
    return same;
}
