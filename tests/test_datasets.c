/* datasets: a run names its data (cifar10, lra_image, listops); the config
 * checks that the model's input stage reads what the dataset holds and
 * fills the token models' vocabulary and sequence length from it; a token
 * run trains, evaluates and is read back by `tlb eval` end to end. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/listops.h"
#include "data/lra_image.h"
#include "test_helpers.h"
#include "train/run_config.h"

static const char *cfg_with(const char *dir, const char *text)
{
    static char path[1200];
    snprintf(path, sizeof path, "%s/run.cfg", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* The run folder DIR/runs/NAME-<hash> the train command made. */
static void run_folder(const char *dir, const char *name, char *out, size_t n)
{
    char cmd[1500];
    snprintf(cmd, sizeof cmd, "ls -d %s/runs/%s-*", dir, name);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    cr_assert_not_null(fgets(out, (int)n, p), "no run folder %s/runs/%s-*", dir, name);
    pclose(p);
    out[strcspn(out, "\n")] = '\0';
}

/* `tlb train` of the config text in dir (its stderr in dir/err.txt), which
 * must succeed; the run folder it made into run_dir. */
static void train_in(const char *dir, const char *text, const char *name, char *run_dir, size_t n)
{
    const char *cfg = cfg_with(dir, text);
    char errf[1300], buf[16384];
    snprintf(errf, sizeof errf, "%s/err.txt", dir);
    const int rc = run_tlb(errf, NULL, (const char *[]){"train", cfg, NULL});
    read_text(errf, buf, sizeof buf, NULL);
    cr_assert_eq(rc, 0, "exit %d: %s", rc, buf);
    run_folder(dir, name, run_dir, n);
}

/* The one-line error of validating text, "" when it validates. */
static void validate(const char *text, char *msg, size_t n, run_config *out)
{
    char tmpl[] = "/tmp/tlb_datasets_XXXXXX";
    const char *dir = test_mkdtemp(tmpl);
    tlb_error err = {0};
    run_config c;
    int rc = run_config_load(&c, cfg_with(dir, text), &err);
    if (rc == 0) rc = run_config_validate(&c, &err);
    snprintf(msg, n, "%s", rc == 0 ? "" : err.msg);
    if (out) *out = c;
}

static void expect_refused(const char *text, const char *part)
{
    char msg[1200];
    validate(text, msg, sizeof msg, NULL);
    cr_expect(strstr(msg, part) != NULL, "for:\n%s\nexpected '%s' in: '%s'", text, part, msg);
    cr_expect(strstr(msg, "run.cfg:") != NULL, "the file and line are named: %s", msg);
}

Test(datasets, the_input_stage_reads_what_the_dataset_holds)
{
    expect_refused("dataset: mnist\n", "dataset: expected cifar10, lra_image or listops, got 'mnist'");
    expect_refused("dataset: lra_image\n", "dataset 'lra_image' holds token sequences: set input: tokens");
    expect_refused("input: tokens\n", "tokens needs a token dataset, and dataset 'cifar10' holds images");
    expect_refused("dataset: lra_image\ninput: tokens\nvocab_size: 200\n",
                   "vocab_size: 200 is smaller than dataset 'lra_image''s 256 token ids");
    expect_refused("dataset: listops\ninput: tokens\nchunk_size: 100\nseq_len: 1000\n",
                   "seq_len: 1000 is shorter than dataset 'listops''s sequences (up to 2000 tokens)");
    expect_refused("dataset: listops\ninput: tokens\nchunk_size: 100\nnum_classes: 5\n",
                   "num_classes: 5, but dataset 'listops' has 10 classes");
    /* the token keys on an image model: refused, where they were ignored (and hashed) */
    expect_refused("vocab_size: 5\n", "vocab_size: 5 applies to input: tokens only");
    expect_refused("seq_len: 64\n", "seq_len: 64 applies to input: tokens only");
    /* and the image keys on a token model (their defaults pass: a copied seed config) */
    expect_refused("dataset: lra_image\ninput: tokens\nchunk_size: 32\nimage_size: 32\n",
                   "image_size: 32 applies to input: image only");
    expect_refused("dataset: lra_image\ninput: tokens\nchunk_size: 32\npatch_size: 2\n",
                   "patch_size: 2 applies to input: image only");
    expect_refused("dataset: listops\ninput: tokens\nchunk_size: 100\ntrain_slice: 1000\n",
                   "train_slice: 1000 applies to cifar10 only; dataset 'listops' has its own validation split");
    expect_refused("dataset: lra_image\ninput: tokens\nchunk_size: 32\nmixup_alpha: 0.2\n",
                   "mixup_alpha: 0.2: augmentation applies to images only");
    expect_refused("dataset: lra_image\ninput: tokens\nchunk_size: 32\nrandaugment_n: 2\n",
                   "randaugment_n: 2: augmentation applies to images only");
    expect_refused("dataset: lra_image\ninput: tokens\nchunk_size: 32\ncutmix_alpha: 1\n", "cutmix_alpha: 1:");
    expect_refused("dataset: lra_image\ninput: tokens\nchunk_size: 32\nrandom_erase: 0.25\n", "random_erase: 0.25:");
    char msg[1200];
    validate("dataset: lra_image\ninput: tokens\nchunk_size: 32\nimage_size: 48\npatch_size: 4\n", msg, sizeof msg,
             NULL);
    cr_expect_str_eq(msg, "", "the seed's image keys spelled out are no error");
}

/* vocab_size and seq_len 0 are the dataset's: LRA Image's 256 ids and 1024
 * tokens, ListOps' 16 ids and 2000 tokens padded to whole chunks; the
 * config keeps the 0s. */
Test(datasets, token_models_take_the_datasets_sizes)
{
    char msg[1200];
    run_config c;
    tlb_model_config m;
    validate("dataset: lra_image\ninput: tokens\nchunk_size: 32\n", msg, sizeof msg, &c);
    cr_assert_str_eq(msg, "");
    run_config_model(&c, &m);
    cr_expect_eq(m.vocab_size, LRA_IMAGE_VOCAB);
    cr_expect_eq(m.seq_len, LRA_IMAGE_LEN);
    cr_expect_eq(c.model.seq_len, 0, "the config keeps 'the dataset's'");
    validate("dataset: listops\ninput: tokens\nchunk_size: 48\n", msg, sizeof msg, &c);
    cr_assert_str_eq(msg, "");
    run_config_model(&c, &m);
    cr_expect_eq(m.vocab_size, LISTOPS_VOCAB);
    cr_expect_eq(m.seq_len, 2016, "2000 tokens padded to whole chunks of 48");
    cr_expect_eq(m.seq_len % m.chunk_size, 0);
}

/* A small ListOps run trains (the sequences of a batch have different
 * lengths), evaluates, and `tlb eval` reads it back with the digit classes. */
Test(datasets, a_listops_run_trains_and_evaluates, .timeout = 240)
{
    char tmpl[] = "/tmp/tlb_listops_run_XXXXXX";
    const char *dir = test_mkdtemp(tmpl);
    char text[1024];
    snprintf(text, sizeof text,
             "dataset: listops\ninput: tokens\nchunk_size: 100\nembed_dim: 16\nkey_dim: 8\nnum_layers: 2\n"
             "ffn_mult: 1\nbatch_size: 8\ntrain_limit: 16\neval_limit: 16\nepochs: 1\nthreads: 2\n"
             "mixed_precision: false\nout_dir: %s/runs\nname: lo\n", dir);
    char run_dir[1400];
    train_in(dir, text, "lo", run_dir, sizeof run_dir);
    char errf[1300], outf[1300], buf[16384];
    snprintf(errf, sizeof errf, "%s/err.txt", dir);
    snprintf(outf, sizeof outf, "%s/out.txt", dir);
    char summary[1500];
    snprintf(summary, sizeof summary, "%s/summary.json", run_dir);
    read_text(summary, buf, sizeof buf, NULL);
    cr_expect(strstr(buf, "\"test_accuracy\"") != NULL, "%s", buf);
    cr_assert_eq(run_tlb_out(outf, errf, NULL, (const char *[]){"eval", run_dir, "--split", "test", "--no-plots", NULL}), 0);
    read_text(outf, buf, sizeof buf, NULL);
    cr_expect(strstr(buf, "confusion matrix") != NULL, "%s", buf);
    cr_expect(strstr(buf, "\n9 ") != NULL || strstr(buf, "\n9\t") != NULL, "digit class rows: %s", buf);
    cr_expect(strstr(buf, "test split, 16 sequences)") != NULL && strstr(buf, "images") == NULL,
              "a token run counts sequences, never images: %s", buf);
    read_text(errf, buf, sizeof buf, NULL);
    cr_expect(strstr(buf, "16 sequences") != NULL, "%s", buf);
}

/* An LRA Image run: its sequences are pictures, so attention.png draws the
 * slow state's maps over the 32x32 grey image, as image runs do. */
Test(datasets, an_lra_image_run_draws_its_attention, .timeout = 240)
{
    test_ensure_cifar10();
    char tmpl[] = "/tmp/tlb_lra_run_XXXXXX";
    const char *dir = test_mkdtemp(tmpl);
    char text[1024];
    snprintf(text, sizeof text,
             "dataset: lra_image\ninput: tokens\nchunk_size: 32\nembed_dim: 16\nkey_dim: 4\nnum_heads: 2\n"
             "num_layers: 1\nr: 1\nwiring: paper\nnum_state_tokens: 3\nstate_init: sinusoid\nreadout: state\n"
             "pos_emb: chunk\nhead_hidden: 8\nffn_mult: 1\nbatch_size: 8\ntrain_limit: 16\neval_limit: 16\n"
             "epochs: 1\nthreads: 2\nmixed_precision: false\nout_dir: %s/runs\nname: lra\n", dir);
    char run_dir[1400];
    train_in(dir, text, "lra", run_dir, sizeof run_dir);
    char png[1500];
    snprintf(png, sizeof png, "%s/attention.png", run_dir);
    FILE *f = fopen(png, "rb");
    cr_assert_not_null(f, "no %s", png);
    unsigned char sig[8];
    cr_expect_eq(fread(sig, 1, 8, f), 8u);
    cr_expect_eq(memcmp(sig, "\x89PNG\r\n\x1a\n", 8), 0, "not a PNG");
    fclose(f);
}
