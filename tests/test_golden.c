/* The whole model against the independent float64 reference (tests/data is a
 * copy of ../shared/golden). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "train/golden.h"
#include "ops/ops.h"

/* The automatic fp32 choice (and TLB_BACKEND), as `tlb check` runs. */
static op_table default_ops(void)
{
    op_table ops;
    tlb_error err;
    cr_assert_eq(ops_table_select(&ops, NULL, &err), 0, "%s", err.msg);
    return ops;
}

static void expect_pass_on(const char *path, const op_table *ops)
{
    tlb_error err = {0};
    golden_report r;
    cr_assert_eq(golden_check(path, ops, &r, &err), 0, "%s: %s", path, err.msg);
    for (int g = 0; g < r.num_groups; g++) {
        const golden_group *x = &r.groups[g];
        cr_expect_leq(x->worst_ratio, 1.0, "%s: group %s: %s err %.3e > tol %.3e", path, x->name,
                      x->worst_tensor, x->worst_err, x->worst_tol);
        /* The README's calibration: a faithful fp32 implementation lands near
         * 1e-6; 2e-5 leaves room for summation order yet flags semantics. */
        if (strcmp(x->name, "adamw") != 0)
            cr_expect_leq(x->worst_rel, 2e-5, "%s: group %s relative error %.3e", path, x->name, x->worst_rel);
    }
    cr_assert(r.passed, "%s failed", path);
}

static void expect_pass(const char *path)
{
    const op_table ops = default_ops();
    expect_pass_on(path, &ops);
}

Test(golden, tiny_keras) { expect_pass("tests/data/tiny_keras.safetensors"); }
Test(golden, tiny_paper) { expect_pass("tests/data/tiny_paper.safetensors"); }
Test(golden, seed_keras) { expect_pass("tests/data/seed_keras.safetensors"); }
Test(golden, unit_block) { expect_pass("tests/data/unit_block.safetensors"); }
/* The slow-state options (golden README, "Slow-state options"). */
Test(golden, state_learned_keras) { expect_pass("tests/data/state_learned_keras.safetensors"); }
Test(golden, state_sinusoid_paper) { expect_pass("tests/data/state_sinusoid_paper.safetensors"); }
Test(golden, state_zeros_readout_keras) { expect_pass("tests/data/state_zeros_readout_keras.safetensors"); }
/* The sequence options (golden README, "Sequence options"). */
Test(golden, tokens_keras) { expect_pass("tests/data/tokens_keras.safetensors"); }
Test(golden, tokens_lra_paper) { expect_pass("tests/data/tokens_lra_paper.safetensors"); }
Test(golden, image_chunkpos_head_keras) { expect_pass("tests/data/image_chunkpos_head_keras.safetensors"); }

/* Every backend the CPU supports must pass the golden vectors too. */
Test(golden, every_backend)
{
    tlb_error err;
    for (int b = 0; b < TLB_BACKEND_COUNT; b++) {
        if (!backend_supported((tlb_backend)b)) continue;
        op_table ops;
        cr_assert_eq(ops_table_select(&ops, backend_name((tlb_backend)b), &err), 0, "%s", err.msg);
        expect_pass_on("tests/data/tiny_keras.safetensors", &ops);
        expect_pass_on("tests/data/tiny_paper.safetensors", &ops);
        expect_pass_on("tests/data/unit_block.safetensors", &ops);
        expect_pass_on("tests/data/state_learned_keras.safetensors", &ops);
        expect_pass_on("tests/data/state_sinusoid_paper.safetensors", &ops);
        expect_pass_on("tests/data/state_zeros_readout_keras.safetensors", &ops);
        expect_pass_on("tests/data/tokens_keras.safetensors", &ops);
        expect_pass_on("tests/data/tokens_lra_paper.safetensors", &ops);
        expect_pass_on("tests/data/image_chunkpos_head_keras.safetensors", &ops);
    }
}

/* A copy of `src` at `path` (a mkstemp template) whose tensor `name` has its
 * first 4 data bytes changed by edit(bytes, arg). */
static void copy_edited(const char *src, const char *name, void (*edit)(unsigned char *, const void *),
                        const void *arg, char *path)
{
    FILE *in = fopen(src, "rb");
    cr_assert(in);
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n);
    cr_assert_eq(fread(buf, 1, (size_t)n, in), (size_t)n);
    fclose(in);
    unsigned long long hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | buf[i];
    char *hdr = strndup((char *)buf + 8, hl);
    char quoted[80];
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    char *at = strstr(hdr, quoted);
    cr_assert(at, "%s not in %s", name, src);
    at = strstr(at, "data_offsets");
    unsigned long long begin;
    cr_assert_eq(sscanf(strchr(at, '[') + 1, "%llu", &begin), 1);
    edit(buf + 8 + hl + begin, arg);
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    FILE *out = fdopen(fd, "wb");
    fwrite(buf, 1, (size_t)n, out);
    fclose(out);
    free(hdr);
    free(buf);
}

static void set_i32(unsigned char *p, const void *value) { memcpy(p, value, 4); } /* little-endian, as the files */

static void skew_f32(unsigned char *p, const void *unused)
{
    (void)unused;
    float v;
    memcpy(&v, p, 4);
    v = v * 1.01f + 0.01f;
    memcpy(p, &v, 4);
}

/* A copy of `src` with the first 4 data bytes of tensor `name` set to the
 * I32 `value`, at `path` (a mkstemp template). */
static void copy_with_i32(const char *src, const char *name, int value, char *path)
{
    copy_edited(src, name, set_i32, &value, path);
}

/* The checker must be able to fail: skew a stored logit and expect FAIL. */
Test(golden, detects_a_wrong_logit)
{
    char path[] = "/tmp/tlb_golden_XXXXXX";
    copy_edited("tests/data/tiny_keras.safetensors", "logits", skew_f32, NULL, path);
    const op_table ops = default_ops();
    golden_report r;
    tlb_error err;
    cr_assert_eq(golden_check(path, &ops, &r, &err), 0, "%s", err.msg);
    cr_expect_not(r.passed, "a logit off by 1%% was not detected");
    unlink(path);
}

/* The slow-state scalars are read and checked: an unknown code is refused
 * with the file and tensor named; a valid but wrong one (the learned file
 * read as zeros) fails the comparison, so the options are not ignored. */
Test(golden, slow_state_scalars_are_read)
{
    const char *src = "tests/data/state_learned_keras.safetensors";
    const struct { const char *name; int value; const char *msg; } bad[] = {
        {"config.state_init", 3, "config.state_init must be"},
        {"config.readout", -1, "config.readout must be"},
        {"config.num_state_tokens", -2, "num_state_tokens"},
    };
    const op_table ops = default_ops();
    golden_report r;
    tlb_error err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[] = "/tmp/tlb_golden_state_XXXXXX";
        copy_with_i32(src, bad[i].name, bad[i].value, path);
        cr_expect_neq(golden_check(path, &ops, &r, &err), 0, "%s = %d accepted", bad[i].name, bad[i].value);
        cr_expect(strstr(err.msg, path) && strstr(err.msg, bad[i].msg), "message: %s", err.msg);
        unlink(path);
    }
    char path[] = "/tmp/tlb_golden_state_XXXXXX";
    copy_with_i32(src, "config.state_init", 0, path);
    cr_assert_eq(golden_check(path, &ops, &r, &err), 0, "%s", err.msg);
    cr_expect_not(r.passed, "the learned file passed as state_init zeros");
    unlink(path);
    char path2[] = "/tmp/tlb_golden_state_XXXXXX";
    copy_with_i32(src, "config.readout", 0, path2);
    cr_assert_eq(golden_check(path2, &ops, &r, &err), 0, "%s", err.msg);
    cr_expect_not(r.passed, "the state-readout file passed as readout last_fast");
    unlink(path2);
}

/* The sequence scalars are read and checked: unknown codes and a token id
 * outside the vocabulary are refused with the file named; a head_hidden or
 * pos_emb the parameters do not match is a shape error, not a silent pass. */
Test(golden, sequence_scalars_are_read)
{
    const struct { const char *src, *name; int value; const char *msg; } bad[] = {
        {"tests/data/tokens_keras.safetensors", "config.input", 2, "config.input must be"},
        {"tests/data/tokens_keras.safetensors", "config.pos_emb", 2, "config.pos_emb must be"},
        {"tests/data/tokens_keras.safetensors", "config.vocab_size", 0, "vocab_size"},
        {"tests/data/tokens_keras.safetensors", "x", 11, "outside [0, vocab_size 11)"},
        {"tests/data/tokens_lra_paper.safetensors", "x", -1, "outside [0, vocab_size 7)"},
        {"tests/data/tokens_lra_paper.safetensors", "config.head_hidden", 0, "another shape"},
        {"tests/data/image_chunkpos_head_keras.safetensors", "config.pos_emb", 0, "another shape"},
        {"tests/data/image_chunkpos_head_keras.safetensors", "config.input", 1, "vocab_size"},
    };
    const op_table ops = default_ops();
    golden_report r;
    tlb_error err;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char path[] = "/tmp/tlb_golden_seq_XXXXXX";
        copy_with_i32(bad[i].src, bad[i].name, bad[i].value, path);
        cr_expect_neq(golden_check(path, &ops, &r, &err), 0, "%s = %d accepted", bad[i].name, bad[i].value);
        cr_expect(strstr(err.msg, path) && strstr(err.msg, bad[i].msg), "%s = %d: message: %s", bad[i].name,
                  bad[i].value, err.msg);
        unlink(path);
    }
}
