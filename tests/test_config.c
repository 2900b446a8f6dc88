/* The experiment config parser: good files, every kind of bad input with its
 * exact one-line message, --set, sweeps, the canonical round trip and the
 * hash. Config files are written into a fresh temp dir per test. */
#include <criterion/criterion.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/run_config.h"
#include "test_helpers.h"

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/tlb_config_test_XXXXXX");
    cr_assert_not_null(test_mkdtemp(tmpdir)); /* removed when the test ends */
}

TestSuite(config, .init = make_tmpdir);

/* Writes text to tmpdir/name; returns the path (static buffer per call site is fine). */
static const char *write_cfg(const char *name, const char *text)
{
    static char path[8][512];
    static int slot;
    char *p = path[slot++ % 8];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Loads + validates text; expects failure with exactly "<path>:<rest>". */
static void expect_error(const char *text, const char *rest)
{
    const char *p = write_cfg("bad.cfg", text);
    run_config c;
    tlb_error err = {0};
    int rc = run_config_load(&c, p, &err);
    if (rc == 0) rc = run_config_validate(&c, &err);
    cr_assert_eq(rc, -1, "expected an error for:\n%s", text);
    char want[1200];
    snprintf(want, sizeof want, "%s%s", p, rest);
    cr_assert_str_eq(err.msg, want);
    cr_assert_null(strchr(err.msg, '\n'), "one line");
}

static void expect_set_error(const char *assignment, const char *want);

static run_config load_ok(const char *name, const char *text)
{
    const char *p = write_cfg(name, text);
    run_config c;
    tlb_error err = {0};
    cr_assert_eq(run_config_load(&c, p, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    return c;
}

/* ---------------------------------------------------------------- good files */

Test(config, defaults_are_the_keras_seed)
{
    run_config c;
    run_config_defaults(&c);
    tlb_error err;
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    tlb_model_config s = model_config_seed();
    cr_assert_eq(memcmp(&c.model, &s, sizeof s), 0);
    cr_assert_eq(c.mixed_precision, 1);
    cr_assert_str_eq(c.dataset, "cifar10");
    cr_assert_eq(c.train_slice, 40000);
    cr_assert_eq(c.batch_size, 2048);
    cr_assert_eq(c.learning_rate, 1e-4);
    cr_assert_eq(c.weight_decay, 1e-4);
    cr_assert_eq(c.epochs, 30);
    cr_assert_eq(c.seed, 42);
    cr_assert_eq(c.threads, 0);
    cr_assert_str_eq(c.backend, "");
    cr_assert_str_eq(c.data_dir, "");
    cr_assert_eq(c.micro_batch, 0);
    cr_assert_str_eq(c.out_dir, "runs");
    cr_assert_eq(c.shuffle, SHUFFLE_EVERY_EPOCH);
    cr_assert_eq(c.train_limit, 0);
    cr_assert_eq(c.eval_limit, 0);
    cr_assert_eq(run_config_num_runs(&c), 1);
}

Test(config, seed_file_equals_defaults)
{
    run_config c, d;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, "experiments/r2_chunk8.cfg", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    run_config_defaults(&d);
    cr_assert_eq(run_config_validate(&d, &err), 0);
    strcpy(d.name, "r2_chunk8");
    cr_assert(run_config_equal(&c, &d));
    cr_assert_eq(c.line[4], 9, "r is on line 9 of the seed file"); /* table index 4 = r */
}

Test(config, every_experiment_validates)
{
    const char *files[] = {"experiments/r2_chunk8.cfg", "experiments/tiny_smoke.cfg",
                           "experiments/sweep_r.cfg", "experiments/sweep_grid.cfg"};
    int runs[] = {1, 1, 3, 8};
    for (int i = 0; i < 4; i++) {
        run_config c;
        tlb_error err;
        cr_assert_eq(run_config_load(&c, files[i], &err), 0, "%s", err.msg);
        cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
        cr_assert_eq(run_config_num_runs(&c), runs[i], "%s", files[i]);
    }
}

Test(config, tiny_file_parses_to_expected_struct)
{
    run_config c = load_ok("tiny.cfg",
                           "# comment\n"
                           "image_size: 16   # trailing comment\n"
                           "patch_size: 4\n"
                           "embed_dim: 16\n"
                           "chunk_size: 4\n"
                           "num_layers: 2\n"
                           "wiring: paper\n"
                           "mixed_precision: false\n"
                           "learning_rate: 3e-4\n"
                           "weight_decay: 0\n"
                           "ffn_drop: 0\n"
                           "seed: 18446744073709551615\n"
                           "shuffle: once\n"
                           "backend: dense:dnnl,gelu:ref\n"
                           "data_dir: \"/tmp/my data\"\n"
                           "train_limit: 512\n");
    cr_assert_eq(c.model.image_size, 16);
    cr_assert_eq(c.model.embed_dim, 16);
    cr_assert_eq(c.model.key_dim, 16, "key_dim defaults to embed_dim");
    cr_assert_eq(c.model.chunk_size, 4);
    cr_assert_eq(c.model.num_layers, 2);
    cr_assert_eq(c.model.wiring, TLB_WIRING_PAPER);
    cr_assert_eq(c.model.ffn_drop, 0.0f);
    cr_assert_eq(c.model.attn_drop, 0.2f);
    cr_assert_eq(c.mixed_precision, 0);
    cr_assert_eq(c.learning_rate, 3e-4);
    cr_assert_eq(c.weight_decay, 0.0);
    cr_assert_eq(c.seed, 18446744073709551615ULL);
    cr_assert_eq(c.shuffle, SHUFFLE_ONCE);
    cr_assert_str_eq(c.backend, "dense:dnnl,gelu:ref");
    cr_assert_str_eq(c.data_dir, "/tmp/my data");
    cr_assert_eq(c.train_limit, 512);
    cr_assert_str_eq(c.name, "tiny", "name = basename without .cfg");
    cr_assert_eq(c.line[0], 2, "image_size on line 2");
}

Test(config, explicit_key_dim_and_empty_file)
{
    run_config c = load_ok("kd.cfg", "embed_dim: 32\nkey_dim: 8\nnum_heads: 4\n");
    cr_assert_eq(c.model.key_dim, 8);
    cr_assert_eq(c.model.num_heads, 4);
    run_config e = load_ok("empty.cfg", "# nothing but a comment\n");
    run_config d;
    run_config_defaults(&d);
    strcpy(d.name, "empty");
    tlb_error err;
    run_config_validate(&d, &err);
    cr_assert(run_config_equal(&e, &d));
}

/* key_dim's default follows the settings alone: the provenance (source,
 * line[]) is for messages only, so erasing it must change no outcome. A
 * written 0 is refused at its line; an absent key_dim is embed_dim. */
static int load_validate_without_provenance(const char *text, run_config *c, tlb_error *err)
{
    const char *p = write_cfg("kd0.cfg", text);
    if (run_config_load(c, p, err) != 0) return -1;
    memset(c->line, 0, sizeof c->line);
    c->source[0] = '\0';
    return run_config_validate(c, err);
}

Test(config, key_dim_default_ignores_provenance)
{
    run_config c;
    tlb_error err = {0};
    cr_expect_eq(load_validate_without_provenance("embed_dim: 32\nkey_dim: 0\n", &c, &err), -1,
                 "a written key_dim 0 is refused, not read as absent (key_dim %d)", c.model.key_dim);
    cr_assert_eq(load_validate_without_provenance("embed_dim: 32\n", &c, &err), 0, "%s", err.msg);
    cr_expect_eq(c.model.key_dim, 32, "absent: = embed_dim");
    cr_assert_eq(load_validate_without_provenance("image_size: 16\nembed_dim: [16, 32]\n", &c, &err), 0, "%s",
                 err.msg);
    run_config run;
    run_config_expand(&c, 1, &run);
    cr_expect_eq(run.model.key_dim, 32, "a swept embed_dim takes key_dim with it");
    /* Refused where it is written: the file's line, or --set. */
    expect_error("embed_dim: 32\nkey_dim: 0\n",
                 ":2: key_dim: 0 is not a key size (leave key_dim out for key_dim = embed_dim)");
    expect_error("key_dim: [8, 0]\n",
                 ":1: key_dim: item 2: 0 is not a key size (leave key_dim out for key_dim = embed_dim)");
    expect_error("key_dim: -4\n", ":1: key_dim: -4 is out of range [1, 8192]");
    expect_set_error("key_dim=0", "--set: key_dim: 0 is not a key size (leave key_dim out for key_dim = embed_dim)");
}

/* The key at fault travels in the error (err.key), not only in its text,
 * from model_config_validate up through run_config. */
Test(config, errors_carry_the_key)
{
    tlb_model_config m = model_config_seed();
    m.chunk_size = 7;
    tlb_error e = {0};
    cr_assert_eq(model_config_validate(&m, &e), -1);
    cr_expect_str_eq(e.key, "chunk_size");
    cr_expect_str_eq(e.msg, "chunk_size: 7 does not divide the number of patches 144 (= (48/4)^2)");

    const char *p = write_cfg("k.cfg", "\nchunk_size: 7\n");
    run_config c;
    cr_assert_eq(run_config_load(&c, p, &e), 0, "%s", e.msg);
    cr_assert_eq(run_config_validate(&c, &e), -1);
    cr_expect_str_eq(e.key, "chunk_size", "a model error keeps its key: %s", e.msg);
    cr_expect_eq(strncmp(e.msg, p, strlen(p)), 0, "%s", e.msg);
    cr_expect_str_eq(e.msg + strlen(p), ":2: chunk_size: 7 does not divide the number of patches 144 (= (48/4)^2)");

    p = write_cfg("k.cfg", "r: [1, x]\n");
    cr_assert_eq(run_config_load(&c, p, &e), -1);
    cr_expect_str_eq(e.key, "r");
    cr_expect_str_eq(e.msg + strlen(p), ":1: r: item 2: expected an integer, got 'x'");
    run_config_defaults(&c);
    cr_assert_eq(run_config_set(&c, "batch_size=-5", &e), 0, "%s", e.msg);
    cr_assert_eq(run_config_validate(&c, &e), -1);
    cr_expect_str_eq(e.key, "batch_size");

    /* A message about no key leaves none behind. */
    tlb_fail(&e, "%s: cannot read", "x.cfg");
    cr_expect_str_eq(e.key, "");
}

/* Each enum's words and CIFAR-10's class names are written once in src/
 * (model/config.c's tlb_*_names, run_config.c's run-level words,
 * data/cifar10_classes.c's names): a second copy would drift. Counted as
 * quoted literals in every .c file (tests run from the repository root). */
static const char *const ONE_TABLE_WORDS[] = {
    "keras", "paper", "zeros", "learned", "sinusoid", "last_fast", "once", "constant", "cosine",
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};
#define NUM_ONE_TABLE_WORDS (int)(sizeof ONE_TABLE_WORDS / sizeof ONE_TABLE_WORDS[0])
static int one_table_count[NUM_ONE_TABLE_WORDS];
static char one_table_files[NUM_ONE_TABLE_WORDS][512];

static int count_words(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    size_t n = strlen(path);
    if (flag != FTW_F || n < 2 || strcmp(path + n - 2, ".c") != 0) return 0;
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char text[1 << 20];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[len] = '\0';
    for (int w = 0; w < NUM_ONE_TABLE_WORDS; w++) {
        char quoted[64];
        snprintf(quoted, sizeof quoted, "\"%s\"", ONE_TABLE_WORDS[w]);
        for (const char *q = text; (q = strstr(q, quoted)); q++) {
            one_table_count[w]++;
            size_t used = strlen(one_table_files[w]);
            snprintf(one_table_files[w] + used, sizeof one_table_files[w] - used, " %s", path);
        }
    }
    return 0;
}

Test(config, enum_words_and_class_names_have_one_table)
{
    cr_assert_eq(nftw("src", count_words, 16, FTW_PHYS), 0, "cannot read src/ (run from the repository root)");
    for (int w = 0; w < NUM_ONE_TABLE_WORDS; w++)
        cr_expect_eq(one_table_count[w], 1, "\"%s\" is written %d times in src/:%s", ONE_TABLE_WORDS[w],
                     one_table_count[w], one_table_files[w]);
    /* The words config files take are the model's names. */
    for (int v = 0; tlb_state_init_names[v]; v++) {
        char set[64];
        snprintf(set, sizeof set, "state_init=%s", tlb_state_init_names[v]);
        run_config c;
        run_config_defaults(&c);
        tlb_error err;
        cr_assert_eq(run_config_set(&c, set, &err), 0, "%s", err.msg);
        cr_expect_eq((int)c.model.state_init, v);
        cr_expect_str_eq(state_init_name(c.model.state_init), tlb_state_init_names[v]);
    }
    expect_error("wiring: torch\n", ":1: wiring: expected keras or paper, got 'torch'");
    expect_error("shuffle: always\n", ":1: shuffle: expected epoch or once, got 'always'");
    /* A quoted word is a string, for wiring and shuffle too now (as for state_init). */
    expect_error("wiring: \"paper\"\n", ":1: wiring: expected keras or paper, got the string \"paper\"");
}

/* ---------------------------------------------------------------- bad files */

Test(config, unknown_key_suggests_nearest)
{
    expect_error("r: 2\n\nchunk_sise: 8\n", ":3: chunk_sise: unknown key (did you mean 'chunk_size'?)");
    expect_error("learning_rat: 0.1\n", ":1: learning_rat: unknown key (did you mean 'learning_rate'?)");
    expect_error("numlayers: 3\n", ":1: numlayers: unknown key (did you mean 'num_layers'?)");
    expect_error("colour_scheme: blue\n", ":1: colour_scheme: unknown key");
}

Test(config, wrong_types)
{
    expect_error("r: two\n", ":1: r: expected an integer, got 'two'");
    expect_error("epochs: 3\nlearning_rate: fast\n", ":2: learning_rate: expected a number, got 'fast'");
    expect_error("dataset: [cifar10, cifar10]\n",
                 ":1: dataset: a string key takes one value (only numbers and words can be swept)");
    expect_error("r: 2.5\n", ":1: r: expected an integer, got '2.5'");
    expect_error("r: \"2\"\n", ":1: r: expected an integer, got the string \"2\"");
    expect_error("r: 08\n", ":1: r: expected an integer, got '08'");
    expect_error("r: 99999999999\n", ":1: r: expected an integer, got '99999999999'");
    expect_error("mixed_precision: maybe\n", ":1: mixed_precision: expected true or false, got 'maybe'");
    expect_error("wiring: torch\n", ":1: wiring: expected keras or paper, got 'torch'");
    expect_error("shuffle: never\n", ":1: shuffle: expected epoch or once, got 'never'");
    expect_error("seed: -1\n", ":1: seed: expected a non-negative integer, got '-1'");
    expect_error("learning_rate: nan\n", ":1: learning_rate: expected a number, got 'nan'");
    expect_error("r:\n", ":1: r: expected an integer, got ''");
    expect_error("r: [1, two]\n", ":1: r: item 2: expected an integer, got 'two'");
    expect_error("r: []\n", ":1: r: empty list");
    expect_error("r: [1, 2, 1]\n", ":1: r: '1' appears twice in the list");
    expect_error("r: [[1]]\n", ":1: r: item 1: expected a value, got a list");
    expect_error("embed_dim:\n  a: 1\n", ":1: embed_dim: expected a value, got a mapping");
    expect_error("[a]: 1\n", ":1: key: expected a key name, got a list");
}

Test(config, out_of_range)
{
    expect_error("batch_size: 0\n", ":1: batch_size: 0 is out of range [1, 16777216]");
    expect_error("learning_rate: 0\n", ":1: learning_rate: must be > 0, got 0");
    expect_error("learning_rate: -0.1\n", ":1: learning_rate: must be > 0, got -0.1");
    expect_error("weight_decay: -1\n", ":1: weight_decay: must be >= 0, got -1");
    expect_error("\nffn_drop: 1.0\n", ":2: ffn_drop: 1 is out of range [0, 1)");
    expect_error("attn_drop: -0.1\n", ":1: attn_drop: -0.1 is out of range [0, 1)");
    expect_error("epochs: 0\n", ":1: epochs: 0 is out of range [1, 1048576]");
    expect_error("train_slice: 50000\n", ":1: train_slice: 50000 is out of range [1, 49999]");
    expect_error("batch_size: 64\nmicro_batch: 128\n", ":2: micro_batch: 128 is out of range [0, 64]");
    expect_error("num_heads: 0\n", ":1: num_heads: 0 is out of range [1, 1024]");
    expect_error("r: [1, 0]\n", ":1: r: 0 is out of range [1, 1048576]");
    expect_error("dataset: mnist\n", ":1: dataset: expected cifar10, lra_image or listops, got 'mnist'");
    expect_error("name: my run\n", ":1: name: 'my run' may only contain letters, digits, '.', '_' and '-'");
}

Test(config, name_leaves_room_for_the_sweep_suffix)
{
    char text[400], name[130];
    memset(name, 'n', 127);
    name[127] = '\0';
    snprintf(text, sizeof text, "name: %s\n", name);
    load_ok("long.cfg", text); /* 127 characters fit without a sweep */
    snprintf(text, sizeof text, "name: %s\nr: [1, 16]\n", name);
    expect_error(text, ":1: name: longer than 123 characters (with the sweep suffix)");
}

Test(config, null_string_is_the_default)
{
    run_config c = load_ok("nul.cfg", "backend: ~\ndata_dir:\n");
    cr_assert_str_eq(c.backend, "");
    cr_assert_str_eq(c.data_dir, "");
}

Test(config, divisibility_names_the_key_at_fault)
{
    expect_error("image_size: 48\npatch_size: 5\n", ":2: patch_size: 5 does not divide image_size 48");
    /* Issue 21: the image size given alone is the one at fault, not the default patch. */
    expect_error("image_size: 15\n", ":1: image_size: 15 is not a multiple of patch_size 4");
    expect_error("patch_size: 5\nimage_size: 42\n", ":2: image_size: 42 is not a multiple of patch_size 5");
    expect_error("epochs: 1\nchunk_size: 7\n",
                 ":2: chunk_size: 7 does not divide the number of patches 144 (= (48/4)^2)");
    expect_error("chunk_size: [8, 16, 7]\n",
                 ":1: chunk_size: 7 does not divide the number of patches 144 (= (48/4)^2)");
    /* The key at fault is a default: no line to name, only the file. */
    expect_error("image_size: 20\n", ": chunk_size: 8 does not divide the number of patches 25 (= (20/4)^2)");
}

Test(config, duplicate_key)
{
    expect_error("r: 2\nepochs: 3\nr: 4\n", ":3: r: duplicate key (first on line 1)");
}

Test(config, yaml_syntax_errors_carry_libyaml_line)
{
    expect_error("r: 2\nchunk_size: [1, 2\nepochs: 3\n",
                 ":3: yaml: did not find expected ',' or ']' while parsing a flow sequence");
    expect_error("r: 2\n  epochs: 3\n", ":2: yaml: mapping values are not allowed in this context");
    expect_error("r: 2\n---\nr: 3\n", ":3: yaml: only one document is allowed");
}

Test(config, non_mapping_document)
{
    expect_error("- r\n- 2\n", ":1: document: expected 'key: value' lines, got a list");
    expect_error("just words\n", ":1: document: expected 'key: value' lines, got a scalar");
}

Test(config, unreadable_file)
{
    char path[600];
    snprintf(path, sizeof path, "%s/missing.cfg", tmpdir);
    run_config c;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, path, &err), -1);
    char want[700];
    snprintf(want, sizeof want, "%s: cannot read: No such file or directory", path);
    cr_assert_str_eq(err.msg, want);
    cr_assert_eq(run_config_load(&c, tmpdir, &err), -1, "a directory");
    snprintf(want, sizeof want, "%s: cannot read: Is a directory", tmpdir);
    cr_assert_str_eq(err.msg, want);
}

/* ---------------------------------------------------------------- --set */

static void expect_set_error(const char *assignment, const char *want)
{
    run_config c;
    run_config_defaults(&c);
    tlb_error err = {0};
    cr_assert_eq(run_config_set(&c, assignment, &err), -1, "%s", assignment);
    cr_assert_str_eq(err.msg, want);
}

Test(config, set_overrides_after_the_file)
{
    const char *p = write_cfg("base.cfg", "r: 4\nlearning_rate: 0.001\n");
    run_config c;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, p, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "r=1", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "learning_rate=2e-4", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "backend=dense:dnnl,gelu:ref", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "data_dir=/data/c # 10", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "mixed_precision=false", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "num_layers=[2, 4]", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "embed_dim=32", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.model.r, 1);
    cr_assert_eq(c.learning_rate, 2e-4);
    cr_assert_str_eq(c.backend, "dense:dnnl,gelu:ref");
    cr_assert_str_eq(c.data_dir, "/data/c # 10");
    cr_assert_eq(c.mixed_precision, 0);
    cr_assert_eq(c.model.key_dim, 32, "key_dim follows the overridden embed_dim");
    cr_assert_eq(run_config_num_runs(&c), 2);
    cr_assert_eq(c.line[4], -1, "r came from --set");

    /* A scalar --set replaces a list from the file. */
    p = write_cfg("sw.cfg", "r: [1, 2, 4]\n");
    cr_assert_eq(run_config_load(&c, p, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_num_runs(&c), 3);
    cr_assert_eq(run_config_set(&c, "r=2", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_num_runs(&c), 1);
}

Test(config, set_errors)
{
    expect_set_error("r=two", "--set: r: expected an integer, got 'two'");
    expect_set_error("learning_rate=fast", "--set: learning_rate: expected a number, got 'fast'");
    expect_set_error("chunk_sise=4", "--set: chunk_sise: unknown key (did you mean 'chunk_size'?)");
    expect_set_error("seed=[1, 2, 1]", "--set: seed: '1' appears twice in the list");
    expect_set_error("readout=[state, last]",
                     "--set: readout: item 2: expected last_fast or state, got 'last'");
    expect_set_error("r=", "--set: r: missing value");
    expect_set_error("r", "--set: 'r': expected key=value");
    expect_set_error("=3", "--set: '=3': expected key=value");
    expect_set_error("r=[1, 2",
                     "--set: r: invalid value: did not find expected ',' or ']' while parsing a flow sequence");
    expect_set_error("wiring=torch", "--set: wiring: expected keras or paper, got 'torch'");
}

Test(config, set_errors_found_by_validation_name_set)
{
    const char *p = write_cfg("v.cfg", "chunk_size: 8\n");
    run_config c;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, p, &err), 0);
    cr_assert_eq(run_config_set(&c, "chunk_size=7", &err), 0);
    cr_assert_eq(run_config_validate(&c, &err), -1);
    cr_assert_str_eq(err.msg, "--set: chunk_size: 7 does not divide the number of patches 144 (= (48/4)^2)");
    run_config_defaults(&c);
    cr_assert_eq(run_config_set(&c, "batch_size=-5", &err), 0);
    cr_assert_eq(run_config_validate(&c, &err), -1);
    cr_assert_str_eq(err.msg, "--set: batch_size: -5 is out of range [1, 16777216]");
}

/* ---------------------------------------------------------------- sweeps */

Test(config, sweep_expands_in_documented_order)
{
    run_config c = load_ok("grid.cfg",
                           "image_size: 16\n"
                           "chunk_size: [2, 4]\n"
                           "r: [1, 2, 4]\n"
                           "num_layers: [1, 3]\n");
    cr_assert_eq(run_config_num_runs(&c), 12);
    const char *names[12] = {
        "grid-r1-chunk2-L1", "grid-r1-chunk2-L3", "grid-r1-chunk4-L1", "grid-r1-chunk4-L3",
        "grid-r2-chunk2-L1", "grid-r2-chunk2-L3", "grid-r2-chunk4-L1", "grid-r2-chunk4-L3",
        "grid-r4-chunk2-L1", "grid-r4-chunk2-L3", "grid-r4-chunk4-L1", "grid-r4-chunk4-L3",
    };
    const int rs[] = {1, 2, 4}, cs[] = {2, 4}, ls[] = {1, 3};
    uint64_t hashes[12];
    for (int i = 0; i < 12; i++) {
        run_config run;
        run_config_expand(&c, i, &run);
        cr_assert_str_eq(run.name, names[i]);
        cr_assert_eq(run.model.r, rs[i / 4]);
        cr_assert_eq(run.model.chunk_size, cs[(i / 2) % 2]);
        cr_assert_eq(run.model.num_layers, ls[i % 2]);
        cr_assert_eq(run_config_num_runs(&run), 1);
        tlb_error err;
        cr_assert_eq(run_config_validate(&run, &err), 0, "%s", err.msg);
        hashes[i] = run_config_hash(&run);
        for (int j = 0; j < i; j++) cr_assert_neq(hashes[i], hashes[j]);
    }
}

Test(config, sweep_of_one_key_names_only_that_key)
{
    run_config c;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, "experiments/sweep_r.cfg", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    const char *names[3] = {"sweep_r-r1", "sweep_r-r2", "sweep_r-r4"};
    for (int i = 0; i < 3; i++) {
        run_config run;
        run_config_expand(&c, i, &run);
        cr_assert_str_eq(run.name, names[i]);
        cr_assert_eq(run.model.chunk_size, 8);
    }
}

/* The sweep configs in experiments/ name and hash their runs as before any
 * key but r, chunk_size and num_layers could be swept (values printed by
 * the tree at fa78502, threads: 2): old sweep folders still resume. */
Test(config, experiment_sweeps_keep_their_names_and_hashes)
{
    static const struct {
        const char *name;
        uint64_t hash;
    } want_r[] = {{"sweep_r-r1", 0xd184e05e49f44123ULL},
                  {"sweep_r-r2", 0x8bc31219b2eab0d2ULL},
                  {"sweep_r-r4", 0xbd7cf431a6364137ULL}},
      want_grid[] = {{"sweep_grid-r1-chunk2-L1", 0x3e942fc380368d67ULL},
                     {"sweep_grid-r1-chunk2-L2", 0x6664957870c8e336ULL},
                     {"sweep_grid-r1-chunk4-L1", 0xd1aafdeee09eb17aULL},
                     {"sweep_grid-r1-chunk4-L2", 0xdc3068bc6a821912ULL},
                     {"sweep_grid-r2-chunk2-L1", 0xddce864aefd07b0eULL},
                     {"sweep_grid-r2-chunk2-L2", 0xaaab69fa8a6d415bULL},
                     {"sweep_grid-r2-chunk4-L1", 0xb849078d034cbf00ULL},
                     {"sweep_grid-r2-chunk4-L2", 0x8c516d872f8bf2d7ULL}};
    const char *files[2] = {"experiments/sweep_r.cfg", "experiments/sweep_grid.cfg"};
    const uint64_t parent[2] = {0xd5764e14b8f06450ULL, 0xaf7de05618d7982cULL};
    for (int f = 0; f < 2; f++) {
        run_config c;
        tlb_error err;
        cr_assert_eq(run_config_load(&c, files[f], &err), 0, "%s", err.msg);
        c.threads = 2;
        cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
        cr_assert_eq(run_config_hash(&c), parent[f], "%s: the sweep folder's hash", files[f]);
        const int n = run_config_num_runs(&c);
        cr_assert_eq(n, f ? 8 : 3);
        for (int i = 0; i < n; i++) {
            run_config run;
            run_config_expand(&c, i, &run);
            cr_assert_str_eq(run.name, f ? want_grid[i].name : want_r[i].name);
            cr_assert_eq(run_config_hash(&run), f ? want_grid[i].hash : want_r[i].hash, "%s", run.name);
        }
    }
}

/* A list expands to the same run (name and hash) as setting each value as a
 * scalar, as experiments/sweep.sh did before it passed lists. */
Test(config, sweep_run_equals_the_scalar_run)
{
    const char *p = write_cfg("sweep.cfg", "image_size: 16\npatch_size: 4\nembed_dim: 16\nname: sweep\n");
    run_config c;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, p, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "r=[1, 2]", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "chunk_size=[4, 8]", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&c, "seed=[7, 8]", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_num_runs(&c), 8);
    for (int i = 0; i < 8; i++) {
        run_config run, plain;
        run_config_expand(&c, i, &run);
        cr_assert_eq(run_config_load(&plain, p, &err), 0, "%s", err.msg);
        char set[64];
        snprintf(set, sizeof set, "r=%d", (i / 4) ? 2 : 1);
        cr_assert_eq(run_config_set(&plain, set, &err), 0);
        snprintf(set, sizeof set, "chunk_size=%d", (i / 2) % 2 ? 8 : 4);
        cr_assert_eq(run_config_set(&plain, set, &err), 0);
        snprintf(set, sizeof set, "seed=%d", i % 2 ? 8 : 7);
        cr_assert_eq(run_config_set(&plain, set, &err), 0);
        snprintf(plain.name, sizeof plain.name, "sweep-r%d-chunk%d-seed%d", (i / 4) ? 2 : 1, (i / 2) % 2 ? 8 : 4,
                 i % 2 ? 8 : 7);
        cr_assert_eq(run_config_validate(&plain, &err), 0, "%s", err.msg);
        cr_assert_str_eq(run.name, plain.name);
        cr_assert(run_config_equal(&run, &plain), "%s", run.name);
        cr_assert_eq(run_config_hash(&run), run_config_hash(&plain), "%s", run.name);
    }
}

/* Every key but the strings can be swept; the order and names are the ones
 * run_config.h documents. */
Test(config, any_key_sweeps_in_documented_order)
{
    run_config c = load_ok("study.cfg",
                           "seed: [1, 2]\n"              /* table order: late */
                           "readout: [last_fast, state]\n"
                           "state_init: [zeros, learned, sinusoid]\n"
                           "learning_rate: [0.001, 3e-4]\n"
                           "num_layers: [1, 2]\n"        /* first three keep their old rank */
                           "embed_dim: 16\nimage_size: 16\n");
    cr_assert_eq(c.num_sweeps, 5);
    cr_assert_eq(run_config_num_runs(&c), 2 * 2 * 3 * 2 * 2);
    /* num_layers (rank 2), state_init, readout, learning_rate, seed (table order). */
    const char *first[] = {"study-L1-state_init_zeros-readout_last_fast-lr0.001-seed1",
                           "study-L1-state_init_zeros-readout_last_fast-lr0.001-seed2",
                           "study-L1-state_init_zeros-readout_last_fast-lr0.0003-seed1",
                           "study-L1-state_init_zeros-readout_last_fast-lr0.0003-seed2",
                           "study-L1-state_init_zeros-readout_state-lr0.001-seed1"};
    run_config run;
    for (int i = 0; i < 5; i++) {
        run_config_expand(&c, i, &run);
        cr_assert_str_eq(run.name, first[i]);
    }
    run_config_expand(&c, 47, &run);
    cr_assert_str_eq(run.name, "study-L2-state_init_sinusoid-readout_state-lr0.0003-seed2");
    cr_assert_eq(run.model.num_layers, 2);
    cr_assert_eq(run.model.state_init, 2);
    cr_assert_eq(run.model.readout, 1);
    cr_assert_eq(run.learning_rate, 3e-4);
    cr_assert_eq(run.seed, 2);
    cr_assert_eq(run.num_sweeps, 0);
    /* All 48 distinct in name and hash, each a valid plain config. */
    char names[48][128];
    uint64_t hashes[48];
    for (int i = 0; i < 48; i++) {
        tlb_error err;
        run_config_expand(&c, i, &run);
        cr_assert_eq(run_config_validate(&run, &err), 0, "%s", err.msg);
        strcpy(names[i], run.name);
        hashes[i] = run_config_hash(&run);
        for (int j = 0; j < i; j++) {
            cr_assert_str_neq(names[i], names[j]);
            cr_assert_neq(hashes[i], hashes[j]);
        }
    }

    /* The new keys, a float, a boolean and the wiring. */
    c = load_ok("keys.cfg",
                "image_size: 16\nembed_dim: 16\nepochs: 4\n"
                "num_state_tokens: [4, 16]\nlr_schedule: [constant, cosine]\nwarmup_epochs: [0, 1.5]\n"
                "label_smoothing: [0, 0.1]\nffn_drop: [0.1, 0.2]\nmixed_precision: [true, false]\n"
                "wiring: [keras, paper]\n");
    cr_assert_eq(run_config_num_runs(&c), 128);
    run_config_expand(&c, 127, &run);
    cr_assert_str_eq(run.name, "keys-wiring_paper-ffn_drop0.2-num_state_tokens16-mixed_precision_false"
                               "-lr_schedule_cosine-warmup_epochs1.5-label_smoothing0.1");
    cr_assert_eq(run.model.ffn_drop, 0.2f);
    cr_assert_eq(run.warmup_epochs, 1.5);
    cr_assert_eq(run.model.num_state_tokens, 16);
    cr_assert_eq(run.lr_schedule, LR_COSINE);
    cr_assert_eq(run.mixed_precision, 0);
    /* No '+' in a name: 1e+20 is written 1e20. */
    c = load_ok("wd.cfg", "weight_decay: [1e20, 1e-20]\n");
    run_config_expand(&c, 0, &run);
    cr_assert_str_eq(run.name, "wd-wd1e20");
    run_config_expand(&c, 1, &run);
    cr_assert_str_eq(run.name, "wd-wd1e-20");
}

Test(config, sweep_errors_name_the_line)
{
    /* A combination out of range: the swept key's line. */
    expect_error("epochs: 3\nwarmup_epochs: [1, 5]\n", ":2: warmup_epochs: 5 is out of range [0, epochs = 3]");
    expect_error("epochs: [4, 2]\nwarmup_epochs: 3\n", ":2: warmup_epochs: 3 is out of range [0, epochs = 2]");
    expect_error("\nlearning_rate: [0.1, 0]\n", ":2: learning_rate: must be > 0, got 0");
    expect_error("state_init: [zeros, random]\n",
                 ":1: state_init: item 2: expected zeros, learned or sinusoid, got 'random'");
    expect_error("label_smoothing: [0.1, 0.10]\n", ":1: label_smoothing: '0.10' appears twice in the list");
    expect_error("seed: [1, -2]\n", ":1: seed: item 2: expected a non-negative integer, got '-2'");
    expect_error("name: [a, b]\n", ":1: name: a string key takes one value (only numbers and words can be swept)");
    expect_error("world_size: [1, 2]\n", ":1: world_size: takes one value (mpirun -np sets it)");
    expect_error("r: [1, 2]\nchunk_size: [4, 8]\nnum_layers: [1, 2]\nseed: [1, 2]\nepochs: [1, 2]\n"
                 "batch_size: [1, 2]\nthreads: [1, 2]\nffn_mult: [1, 2]\nnum_heads: [1, 2]\n",
                 ":9: num_heads: more than 8 keys are swept");
    expect_error("seed: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\n"
                 "epochs: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\n"
                 "batch_size: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]\n"
                 "threads: [1, 2]\n",
                 ":4: threads: the sweep would have more than 4096 runs");
    /* A swept embed_dim takes key_dim with it, unless key_dim is set. */
    run_config c = load_ok("e.cfg", "image_size: 16\nembed_dim: [16, 32]\n");
    run_config run;
    run_config_expand(&c, 1, &run);
    cr_assert_eq(run.model.key_dim, 32);
    c = load_ok("e.cfg", "image_size: 16\nembed_dim: [16, 32]\nkey_dim: 8\n");
    run_config_expand(&c, 1, &run);
    cr_assert_eq(run.model.key_dim, 8);
}

/* A config with several sweeps writes lists that read back to it. */
Test(config, sweep_round_trips_through_canonical_text)
{
    run_config c = load_ok("rt.cfg", "image_size: 16\nembed_dim: 16\nseed: [3, 1]\nreadout: [state, last_fast]\n"
                                     "learning_rate: [0.001, 0.0003]\nffn_drop: [0.1, 0.3]\nr: [1, 2]\n");
    char text[8192];
    run_config_write_canonical(&c, text, sizeof text);
    cr_assert(strstr(text, "seed: [3, 1]\n"), "%s", text);
    cr_assert(strstr(text, "readout: [state, last_fast]\n"), "%s", text);
    cr_assert(strstr(text, "ffn_drop: [0.1, 0.3]\n"), "%s", text);
    const char *p = write_cfg("rt2.cfg", text);
    run_config back;
    tlb_error err;
    cr_assert_eq(run_config_load(&back, p, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&back, &err), 0, "%s", err.msg);
    cr_assert(run_config_equal(&c, &back));
    cr_assert_eq(run_config_hash(&c), run_config_hash(&back));
    cr_assert_eq(run_config_num_runs(&back), 32);
    char v[64];
    run_config_value_text(&back, 4, v, sizeof v); /* table index 4 = r */
    cr_assert_str_eq(v, "[1, 2]");
    cr_assert_str_eq(run_config_key_name(4), "r");
}

/* ---------------------------------------------------------------- canonical + hash */

static void round_trip(const run_config *c)
{
    char text[16384];
    size_t len = run_config_write_canonical(c, text, sizeof text);
    cr_assert_lt(len, sizeof text);
    cr_assert_eq(len, strlen(text));
    cr_assert_eq(run_config_write_canonical(c, NULL, 0), len, "measuring gives the same length");
    const char *p = write_cfg("canonical.cfg", text);
    run_config back;
    tlb_error err;
    cr_assert_eq(run_config_load(&back, p, &err), 0, "%s\n%s", err.msg, text);
    cr_assert_eq(run_config_validate(&back, &err), 0, "%s", err.msg);
    cr_assert(run_config_equal(c, &back), "%s", text);
    /* Field by field, beyond the canonical-text comparison. */
    cr_assert_eq(memcmp(&c->model, &back.model, sizeof c->model), 0);
    cr_assert_eq(c->learning_rate, back.learning_rate);
    cr_assert_eq(c->weight_decay, back.weight_decay);
    cr_assert_eq(c->seed, back.seed);
    cr_assert_str_eq(c->name, back.name);
    cr_assert_str_eq(c->data_dir, back.data_dir);
    cr_assert_str_eq(c->backend, back.backend);
    cr_assert_eq(c->num_sweeps, back.num_sweeps);
    cr_assert_eq(memcmp(c->sweeps, back.sweeps, (size_t)c->num_sweeps * sizeof c->sweeps[0]), 0);
    char again[16384];
    run_config_write_canonical(&back, again, sizeof again);
    cr_assert_str_eq(text, again);
    cr_assert_eq(run_config_hash(c), run_config_hash(&back));
}

Test(config, canonical_round_trip)
{
    run_config c;
    run_config_defaults(&c);
    tlb_error err;
    cr_assert_eq(run_config_validate(&c, &err), 0);
    round_trip(&c);

    run_config_defaults(&c);
    c.learning_rate = 1.0 / 3.0;
    c.weight_decay = 0.05;
    c.model.ffn_drop = 0.1f;
    c.model.attn_drop = 1.0f / 7.0f;
    c.model.wiring = TLB_WIRING_PAPER;
    c.seed = 12345678901234567890ULL;
    c.shuffle = SHUFFLE_ONCE;
    c.mixed_precision = 0;
    c.threads = 3;
    c.eval_limit = 100;
    strcpy(c.backend, "dense:dnnl,gelu:ref");
    strcpy(c.data_dir, "/tmp/a \"quoted\" \\ path: # not a comment\t");
    strcpy(c.out_dir, "out");
    strcpy(c.name, "weird.name-1");
    cr_assert_eq(run_config_set(&c, "r=[1, 2, 4]", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    round_trip(&c);
}

Test(config, canonical_text_is_fixed)
{
    run_config c;
    run_config_defaults(&c);
    tlb_error err;
    run_config_validate(&c, &err);
    char text[4096];
    run_config_write_canonical(&c, text, sizeof text);
    cr_assert_str_eq(text,
                     "# model\n"
                     "image_size: 48\npatch_size: 4\nembed_dim: 64\nchunk_size: 8\nr: 2\n"
                     "num_layers: 4\nnum_heads: 1\nkey_dim: 64\nffn_mult: 4\nnum_classes: 10\n"
                     "wiring: keras\nffn_drop: 0.2\nattn_drop: 0.2\n"
                     "num_state_tokens: 0\nstate_init: zeros\nreadout: last_fast\n"
                     "input: image\nvocab_size: 0\nseq_len: 0\npos_emb: global\nhead_hidden: 0\nembed_drop: 0\n"
                     "\n# data\n"
                     "dataset: \"cifar10\"\ntrain_slice: 40000\ntrain_limit: 0\neval_limit: 0\n"
                     "shuffle: epoch\ndata_dir: \"\"\n"
                     "\n# augmentation beyond crop and flip (all off by default)\n"
                     "mixup_alpha: 0\ncutmix_alpha: 0\nrandom_erase: 0\nrandaugment_n: 0\nrandaugment_m: 9\n"
                     "\n# optimisation\n"
                     "mixed_precision: true\nbf16_activations: auto\nbatch_size: 2048\nmicro_batch: 0\n"
                     "learning_rate: 0.0001\nweight_decay: 0.0001\n"
                     "adam_beta1: 0.9\nadam_beta2: 0.999\nadam_epsilon: 1e-07\nepochs: 30\nseed: 42\n"
                     "lr_schedule: constant\nwarmup_epochs: 0\nmin_lr: 0\nlabel_smoothing: 0\ngrad_clip: 0\ninit_from: \"\"\n"
                     "\n# system\n"
                     "threads: 0\nworld_size: 1\nbackend: \"\"\n"
                     "\n# output\n"
                     "out_dir: \"runs\"\nname: \"run\"\ncheckpoint_every: 0\n");
    /* Truncation follows snprintf. */
    char small[10];
    size_t len = run_config_write_canonical(&c, small, sizeof small);
    cr_assert_eq(len, strlen(text));
    cr_assert_str_eq(small, "# model\ni");
}

Test(config, hash_tracks_result_keys_only)
{
    run_config a;
    run_config_defaults(&a);
    tlb_error err;
    run_config_validate(&a, &err);
    uint64_t h = run_config_hash(&a);
    run_config b = a;
    strcpy(b.out_dir, "elsewhere");
    strcpy(b.data_dir, "/other/cache");
    strcpy(b.name, "renamed");
    b.line[3] = 17;
    strcpy(b.source, "x.cfg");
    cr_assert_eq(run_config_hash(&b), h, "out_dir, data_dir, name and provenance do not matter");

    const char *changes[] = {"learning_rate=0.0002", "r=4", "threads=2", "chunk_size=16",
                             "seed=43", "mixed_precision=false", "backend=ref", "micro_batch=256",
                             "ffn_drop=0.1", "wiring=paper", "train_limit=100", "shuffle=once",
                             "num_state_tokens=4", "state_init=learned", "readout=state",
                             "lr_schedule=cosine", "warmup_epochs=1", "min_lr=1e-6",
                             "label_smoothing=0.1", "grad_clip=1", "mixup_alpha=0.2",
                             "cutmix_alpha=1", "random_erase=0.25", "randaugment_n=2",
                             "randaugment_m=5", "bf16_activations=true", "bf16_activations=false"};
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        b = a;
        cr_assert_eq(run_config_set(&b, changes[i], &err), 0, "%s", err.msg);
        cr_assert_neq(run_config_hash(&b), h, "%s must change the hash", changes[i]);
    }
}

/* Keys added after the seed are hashed only away from their default: the
 * seed config's folder is the one earlier versions wrote (pinned here), so
 * old runs still resume and land in the same place. */
Test(config, new_keys_at_default_keep_old_hashes)
{
    run_config c;
    tlb_error err;
    cr_assert_eq(run_config_load(&c, "experiments/r2_chunk8.cfg", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    c.threads = 2;
    cr_assert_eq(run_config_hash(&c), 0x8bc31219b2eab0d2ULL, "hash of the seed config, 2 threads");
    const char *at_default[] = {"num_state_tokens=0", "state_init=zeros", "readout=last_fast",
                                "lr_schedule=constant", "warmup_epochs=0", "label_smoothing=0",
                                "randaugment_m=9", "checkpoint_every=100", "input=image",
                                "vocab_size=0", "seq_len=0", "pos_emb=global", "head_hidden=0", "embed_drop=0",
                                "adam_beta1=0.9", "adam_beta2=0.999", "adam_epsilon=1e-7",
                                "bf16_activations=auto"};
    for (size_t i = 0; i < sizeof at_default / sizeof at_default[0]; i++) {
        run_config b = c;
        cr_assert_eq(run_config_set(&b, at_default[i], &err), 0, "%s", err.msg);
        cr_assert_eq(run_config_hash(&b), 0x8bc31219b2eab0d2ULL, "%s must keep the hash", at_default[i]);
    }
}

/* Issue 21: weight_decay=-0 is weight_decay=0: one canonical text, one run
 * folder (it used to write "-0" and hash apart). */
Test(config, negative_zero_is_zero)
{
    run_config a, b;
    tlb_error err;
    run_config_defaults(&a);
    run_config_defaults(&b);
    cr_assert_eq(run_config_set(&a, "weight_decay=0", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&b, "weight_decay=-0", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_set(&b, "min_lr=-0.0", &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&a, &err), 0, "%s", err.msg);
    cr_assert_eq(run_config_validate(&b, &err), 0, "%s", err.msg);
    cr_expect_eq(run_config_hash(&a), run_config_hash(&b));
    char text[8192];
    run_config_write_canonical(&b, text, sizeof text);
    cr_expect_null(strstr(text, ": -0"), "%s", text); /* (adam_epsilon: 1e-07 holds a "-0" of its own) */
}

Test(config, new_keys_refuse_bad_values)
{
    expect_error("bf16_activations: maybe\n", ":1: bf16_activations: expected true or false or auto, got 'maybe'");
    expect_error("mixed_precision: auto\n", ":1: mixed_precision: expected true or false, got 'auto'");
    expect_error("state_init: random\n", ":1: state_init: expected zeros, learned or sinusoid, got 'random'");
    expect_error("readout: \"state\"\n", ":1: readout: expected last_fast or state, got the string \"state\"");
    expect_error("lr_schedule: linear\n", ":1: lr_schedule: expected constant or cosine, got 'linear'");
    expect_error("epochs: 3\nwarmup_epochs: 4\n", ":2: warmup_epochs: 4 is out of range [0, epochs = 3]");
    expect_error("min_lr: 0.01\n", ":1: min_lr: 0.01 is out of range [0, learning_rate = 0.0001]");
    expect_error("label_smoothing: 1\n", ":1: label_smoothing: 1 is out of range [0, 0.999]");
    expect_error("grad_clip: -1\n", ":1: grad_clip: -1 is out of range [0, 1e+30]");
    expect_error("random_erase: 1.5\n", ":1: random_erase: 1.5 is out of range [0, 1]");
    expect_error("randaugment_n: 17\n", ":1: randaugment_n: 17 is out of range [0, 16]");
    expect_error("num_state_tokens: -1\n", ":1: num_state_tokens: -1 is out of range [0, 1024]");
    expect_error("embed_dim: 5\nkey_dim: 4\nstate_init: sinusoid\n",
                 ":3: state_init: sinusoid needs an even embed_dim >= 4, got 5");
}

/* The sequence and Adam keys (issue 20). */
Test(config, sequence_and_adam_keys_refuse_bad_values)
{
    expect_error("input: text\n", ":1: input: expected image or tokens, got 'text'");
    expect_error("pos_emb: local\n", ":1: pos_emb: expected global or chunk, got 'local'");
    expect_error("head_hidden: -1\n", ":1: head_hidden: -1 is out of range [0, 65536]");
    expect_error("embed_drop: 1\n", ":1: embed_drop: 1 is out of range [0, 1)");
    expect_error("vocab_size: -3\n", ":1: vocab_size: -3 is out of range [0, 16777216]");
    expect_error("seq_len: -1\n", ":1: seq_len: -1 is out of range [0, 1048576]");
    expect_error("adam_beta1: 1\n", ":1: adam_beta1: 1 is out of range [0, 0.999999]");
    expect_error("adam_beta2: -0.1\n", ":1: adam_beta2: -0.1 is out of range [0, 0.999999]");
    expect_error("adam_epsilon: 0\n", ":1: adam_epsilon: must be in (0, 1], got 0");
    /* (vocab_size and seq_len 0 are the dataset's: test_datasets.c) */
    expect_error("dataset: listops\ninput: tokens\nchunk_size: 8\nseq_len: 2004\n",
                 ":3: chunk_size: 8 does not divide seq_len 2004");
    /* A valid token model, but CIFAR-10 holds images. */
    expect_error("input: tokens\nvocab_size: 5\nseq_len: 64\n",
                 ":1: input: tokens needs a token dataset, and dataset 'cifar10' holds images");
}

/* Away from their defaults the new keys are read, validated and hashed. */
Test(config, sequence_and_adam_keys_change_the_hash)
{
    run_config c;
    tlb_error err;
    run_config_defaults(&c);
    cr_assert_eq(run_config_validate(&c, &err), 0, "%s", err.msg);
    const uint64_t h = run_config_hash(&c);
    const char *set[] = {"pos_emb=chunk", "head_hidden=32", "embed_drop=0.3", "adam_beta1=0.8", "adam_beta2=0.98", "adam_epsilon=1e-9"};
    for (size_t i = 0; i < sizeof set / sizeof set[0]; i++) {
        run_config b = c;
        cr_assert_eq(run_config_set(&b, set[i], &err), 0, "%s", err.msg);
        cr_assert_eq(run_config_validate(&b, &err), 0, "%s: %s", set[i], err.msg);
        cr_expect_neq(run_config_hash(&b), h, "%s left the hash", set[i]);
    }
    run_config b = c;
    cr_assert_eq(run_config_set(&b, "head_hidden=32", &err), 0, "%s", err.msg);
    cr_assert_eq(b.model.head_hidden, 32);
    cr_assert_eq(run_config_set(&b, "adam_beta2=0.98", &err), 0, "%s", err.msg);
    cr_assert_eq(b.adam_beta2, 0.98);
}

Test(config, run_dir)
{
    run_config c;
    run_config_defaults(&c);
    tlb_error err;
    run_config_validate(&c, &err);
    char dir[1200], want[1200];
    run_config_run_dir(&c, dir, sizeof dir);
    snprintf(want, sizeof want, "runs/run-%016llx", (unsigned long long)run_config_hash(&c));
    cr_assert_str_eq(dir, want);
}
