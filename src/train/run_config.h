/* The run configuration: the model's shape plus everything else a training
 * run depends on, read from a YAML `key: value` file (experiments/NAME.cfg),
 * overridden by `--set key=value`, validated, and written back in a canonical
 * form whose hash names the run folder.
 *
 * Typical use (the CLI):
 *     run_config c;
 *     if (run_config_load(&c, path, &err)) -> print err.msg, exit 2
 *     for each --set: if (run_config_set(&c, arg, &err)) -> print, exit 2
 *     if (run_config_validate(&c, &err)) -> print, exit 2
 *     for (int i = 0; i < run_config_num_runs(&c); i++) {
 *         run_config run; run_config_expand(&c, i, &run);
 *         run_config_run_dir(&run, dir, sizeof dir);  // runs/<name>-<hash>
 *         ...
 *     }
 *
 * Error messages are one line, "file:line: key: problem" (or "--set: key:
 * problem"); nothing is printed or written by this module.
 *
 * Typing: integers are plain decimals (no leading zeros, no quotes); numbers
 * also take 1e-4 style; booleans are true/false (yes/no/on/off too); words,
 * unquoted, from their enum's table: wiring keras|paper, shuffle epoch|once,
 * state_init, readout, input image|tokens, pos_emb global|chunk, lr_schedule; strings take any YAML scalar, with a
 * null ("key:", "~") meaning "". Every key but the strings (dataset,
 * data_dir, backend, out_dir, name) and world_size also takes a list (flow [1, 2] or
 * block) of distinct values of its type, at most RUN_SWEEP_MAX: a sweep. */
#ifndef TLB_RUN_CONFIG_H
#define TLB_RUN_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "util/error.h"

typedef enum { SHUFFLE_EVERY_EPOCH, SHUFFLE_ONCE } shuffle_mode;
/* constant: learning_rate at every step (the seed); cosine: linear warmup
 * from 0 over warmup_epochs, then cosine decay to min_lr at the last step. */
typedef enum { LR_CONSTANT = 0, LR_COSINE = 1 } lr_schedule_kind;

/* One swept key: its values, typed by the key (i: integers, booleans and
 * enumerated words as their index; u: seed; d: numbers, a float key's
 * rounded to float). The scalar field holds the first value, so a config
 * stays usable without expansion. */
#define RUN_SWEEP_MAX 16    /* values per swept key */
#define RUN_SWEEP_AXES 8    /* swept keys per config */
#define RUN_SWEEP_RUNS 4096 /* runs per sweep (the product of the list lengths) */
typedef union {
    long long i;
    unsigned long long u;
    double d;
} run_value;
typedef struct {
    int key; /* index in the key table (run_config_key_name) */
    int n;
    run_value v[RUN_SWEEP_MAX];
} run_sweep;

/* The value of a bool key that also takes "auto" (bf16_activations). */
#define RUN_CONFIG_AUTO 2

/* Number of keys a config file may contain (see the table in run_config.c). */
#define RUN_CONFIG_NUM_KEYS 56

typedef struct {
    tlb_model_config model;  /* key_dim 0: absent, = embed_dim (the parser refuses a written 0) */
    int mixed_precision;     /* bool */
    int bf16_activations;    /* true, false or RUN_CONFIG_AUTO (the default): the FFN saves its
                              * pre-activation h for the backward in bf16; auto: where the dense
                              * layers run bf16 (mixed precision), else fp32 */
    char dataset[32];        /* only "cifar10" accepted */
    int train_slice;         /* 40000: first N training images train, the rest validate */
    int train_limit;         /* 0 = all; else use only the first N of the train slice */
    int eval_limit;          /* 0 = all; else evaluate only the first N val/test images */
    int batch_size;          /* 2048 */
    double learning_rate;    /* 1e-4 */
    double weight_decay;     /* 1e-4 */
    double adam_beta1;       /* 0.9: AdamW's first-moment decay */
    double adam_beta2;       /* 0.999: its second-moment decay */
    double adam_epsilon;     /* 1e-7 (Keras), added to sqrt(v) */
    int epochs;              /* 30 */
    unsigned long long seed; /* 42 */
    int threads;             /* 0 = all cores */
    int world_size;          /* MPI processes (mpirun -np); a new run records its count (train_resolve_world) */
    char backend[256];       /* "" = automatic; else an ops_table_select() spec */
    char data_dir[1024];     /* "" = default cache */
    int micro_batch;         /* 0 = automatic from a memory budget */
    char out_dir[1024];      /* "runs" */
    char name[128];          /* default: the config file's basename without .cfg */
    shuffle_mode shuffle;    /* "epoch" (default) | "once" */

    /* Training recipe beyond the seed (all off / constant by default). */
    lr_schedule_kind lr_schedule; /* constant (default) | cosine */
    double warmup_epochs;    /* linear warmup from 0 over this many epochs (may be fractional) */
    double min_lr;           /* cosine's final learning rate */
    double label_smoothing;  /* target (1 - e) one-hot + e / classes; 0 = off */
    double grad_clip;        /* clip the global L2 norm of the gradient to this; 0 = off */
    /* Fine-tuning: "" = Keras initialisation; else the checkpoint whose
     * parameters start the run, as "PATH@<its data_xxh3>" once resolved
     * (train/init_from.h), so the run's hash names the exact weights. */
    char init_from[1300];
    /* Augmentation beyond the seed's crop and flip (src/data; 0 = off). */
    double mixup_alpha;      /* mixup's Beta(alpha, alpha) */
    double cutmix_alpha;     /* cutmix's Beta(alpha, alpha) */
    double random_erase;     /* probability of erasing one random rectangle */
    int randaugment_n;       /* RandAugment: ops per image */
    int randaugment_m;       /* RandAugment: magnitude 0..30 (default 9) */
    int checkpoint_every;    /* steps between checkpoints; 0 = at each epoch's end */

    /* Sweeps: a list in the file makes a grid (run_config_expand); kept in
     * expansion order (outermost first). */
    int num_sweeps;
    run_sweep sweeps[RUN_SWEEP_AXES];

    /* Provenance, for error messages only (ignored by equal/hash/canonical):
     * the file loaded and, per key, its 1-based line there (0 = default,
     * -1 = set by --set). */
    char source[1024];
    int line[RUN_CONFIG_NUM_KEYS];
} run_config;

/* Fills c with the seed configuration (the Keras example): mixed_precision
 * true, cifar10, train_slice 40000, batch_size 2048, lr 1e-4, wd 1e-4, 30
 * epochs, seed 42, image 48, patch 4, embed 64, chunk 8, r 2, 4 layers, 1
 * head, key_dim = embed_dim, ffn_mult 4, dropouts 0.2, keras wiring, shuffle
 * every epoch, out_dir "runs", name "run". */
void run_config_defaults(run_config *c);

/* Defaults, then the file at `path` (name defaults to its basename without
 * .cfg). Does not validate: apply --set overrides, then run_config_validate. */
int run_config_load(run_config *out, const char *path, tlb_error *err);

/* Applies the YAML text (len bytes) on top of c; `source` names it in
 * errors. run_config_load is defaults + this. */
int run_config_parse(run_config *c, const char *text, size_t len, const char *source,
                     tlb_error *err);

/* One "key=value" override, typed like the file (a list makes a sweep, e.g.
 * "r=[1,2]", "state_init=[zeros, learned]"); string keys take the value
 * verbatim. Errors read "--set: key: problem". */
int run_config_set(run_config *c, const char *assignment, tlb_error *err);

/* Resolves derived defaults (key_dim) and checks every range and cross-key
 * constraint, for every combination of a sweep. Errors name the line (or
 * --set) of the key at fault. */
int run_config_validate(run_config *c, tlb_error *err);

/* A dataset a run may name: cifar10 (images), lra_image and listops (token
 * sequences, vocab ids, up to max_len tokens). */
typedef struct {
    const char *name;
    tlb_input input;
    int vocab, max_len;
    int train_count, num_classes;
} run_dataset;

/* c's dataset, or NULL for an unknown name. */
const run_dataset *run_config_dataset(const run_config *c);

/* The model a run builds: c->model with key_dim resolved and, for token
 * inputs, vocab_size and seq_len 0 replaced by the dataset's (the longest
 * sequence padded to whole chunks). The config keeps the 0s ("the
 * dataset's"), so its text and hash say what was asked. */
void run_config_model(const run_config *c, tlb_model_config *m);

/* Sweep grid: product of the list lengths (1 without sweeps). Run i is a
 * plain config (no lists); i must be in [0, num_runs). The grid is ordered
 * like nested loops: the outermost loop is r, then chunk_size, then
 * num_layers (the order of the first sweepable keys, kept), then every other
 * swept key in config.cfg's order (so seed, late in it, varies faster than
 * the model keys); within a key, the values in the order listed. Each swept
 * key appends "-<tag><value>" to the name, in the same order: tags r, chunk,
 * L, lr (learning_rate), wd (weight_decay), else the key's own name; words
 * (true/false and enumerated values) follow an '_'. E.g. "-r1-chunk8-L4",
 * "-state_init_learned-readout_state-seed2", "-lr0.0003". Values are
 * distinct and have no '-' but an exponent's, so names are distinct. */
int run_config_num_runs(const run_config *c);
void run_config_expand(const run_config *c, int i, run_config *out);

/* Name of key k of the key table (k in [0, RUN_CONFIG_NUM_KEYS)), or NULL. */
const char *run_config_key_name(int k);

/* Key k's value in c as YAML text, as config.cfg writes it (a list when
 * swept); snprintf semantics. Used by reports to compare runs. */
size_t run_config_value_text(const run_config *c, int k, char *buf, size_t n);

/* Whether key k is part of run_config_hash (a result-affecting key). */
int run_config_key_hashed(int k);

/* Every key, one per line in a fixed order, fully resolved, as YAML this
 * parser reads back to an equal config. snprintf semantics: returns the
 * length needed (excluding the NUL) and truncates to n. */
size_t run_config_write_canonical(const run_config *c, char *buf, size_t n);

/* XXH3-64 of the canonical text of the keys that affect results: every key
 * except out_dir, data_dir and name (threads and micro_batch stay in: they
 * can change reduction order; a new run resolves threads: 0 to its count
 * first, train_resolve_threads). */
uint64_t run_config_hash(const run_config *c);

/* "<out_dir>/<name>-<16 hex digits of the hash>"; snprintf semantics. */
int run_config_run_dir(const run_config *c, char *buf, size_t n);

/* Whether a and b hold the same settings (provenance ignored). */
int run_config_equal(const run_config *a, const run_config *b);

#endif
