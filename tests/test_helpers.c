#include "test_helpers.h"

#include <criterion/criterion.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "data/cifar10.h"
#include "data/fetch.h"
#include "util/rng.h"
#include "util/safetensors.h"

/* ---- the tlb binary as a subprocess ---------------------------------------- */

const char *tlb_bin(void)
{
    const char *b = getenv("TLB_BIN");
    return b && *b ? b : "./tlb";
}

pid_t spawn_tlb(const char *errfile, const char *env, const char *const *args)
{
    return spawn_tlb_out(NULL, errfile, env, args);
}

pid_t spawn_tlb_out(const char *outfile, const char *errfile, const char *env, const char *const *args)
{
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int out = outfile ? open(outfile, O_WRONLY | O_CREAT | O_TRUNC, 0644) : open("/dev/null", O_WRONLY);
        int e = open(errfile, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (out < 0 || e < 0) _exit(126);
        dup2(out, 1);
        dup2(e, 2);
        setenv("TLB_NO_FETCH", "1", 1);
        if (env) putenv((char *)env);
        char *argv[16];
        int k = 0;
        argv[k++] = (char *)tlb_bin();
        for (; args[k - 1] && k < 15; k++) argv[k] = (char *)args[k - 1];
        argv[k] = NULL;
        execv(argv[0], argv);
        _exit(127);
    }
    return pid;
}

int wait_status(pid_t pid)
{
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1000 + WTERMSIG(st);
}

int run_tlb(const char *errfile, const char *env, const char *const *args)
{
    return wait_status(spawn_tlb(errfile, env, args));
}

int run_tlb_out(const char *outfile, const char *errfile, const char *env, const char *const *args)
{
    return wait_status(spawn_tlb_out(outfile, errfile, env, args));
}

void read_text(const char *path, char *buf, size_t n, int *lines)
{
    FILE *fp = fopen(path, "r");
    size_t k = fp ? fread(buf, 1, n - 1, fp) : 0;
    buf[k] = '\0';
    if (fp) fclose(fp);
    if (lines) {
        *lines = 0;
        for (size_t i = 0; i < k; i++) *lines += buf[i] == '\n';
    }
}

/* ---- temporary folders ------------------------------------------------------ */

#define MAX_TMPDIRS 64
static char tmpdirs[MAX_TMPDIRS][256];
static int n_tmpdirs;
static pid_t tmpdir_owner; /* the process that made them (not a forked child) */

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

int test_rmtree(const char *path) { return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void remove_tmpdirs(void)
{
    if (getpid() != tmpdir_owner) return;
    for (int i = 0; i < n_tmpdirs; i++) test_rmtree(tmpdirs[i]);
    n_tmpdirs = 0;
}

char *test_mkdtemp(char *tmpl)
{
    if (!mkdtemp(tmpl)) return NULL;
    if (tmpdir_owner != getpid()) { /* first folder of this test process */
        tmpdir_owner = getpid();
        n_tmpdirs = 0;
        atexit(remove_tmpdirs);
    }
    if (n_tmpdirs < MAX_TMPDIRS && strlen(tmpl) < sizeof tmpdirs[0])
        strcpy(tmpdirs[n_tmpdirs++], tmpl);
    return tmpl;
}

/* ---- checkpoints ------------------------------------------------------------ */

unsigned char *test_checkpoint_data(const char *run_dir, size_t *n)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/checkpoint.safetensors", run_dir);
    st_file f;
    tlb_error err;
    cr_assert_eq(st_open(&f, path, &err), 0, "%s", err.msg);
    *n = f.size - f.data_start;
    unsigned char *b = malloc(*n ? *n : 1);
    cr_assert_not_null(b);
    memcpy(b, f.bytes + f.data_start, *n);
    st_close(&f);
    return b;
}

void test_ensure_cifar10(void)
{
    char dir[1024];
    tlb_error err;
    cifar10_default_dir(dir, sizeof dir);
    if (cifar10_verify_all(dir, 0, NULL) != 0)
        cr_assert_eq(cifar10_fetch(dir, &err), 0, "fetching CIFAR-10: %s", err.msg);
}

tlb_model_config test_small_config(tlb_wiring wiring)
{
    return (tlb_model_config){.image_size = 8, .patch_size = 2, .embed_dim = 20, .chunk_size = 4,
                              .r = 2, .num_layers = 2, .num_heads = 2, .key_dim = 6, .ffn_mult = 2,
                              .num_classes = 5, .wiring = wiring, .ffn_drop = 0.2f,
                              .attn_drop = 0.2f};
}

tlb_model_config test_small_state_config(tlb_wiring wiring, int ns, tlb_state_init init, tlb_readout ro)
{
    tlb_model_config c = test_small_config(wiring);
    c.num_state_tokens = ns;
    c.state_init = init;
    c.readout = ro;
    return c;
}

test_step test_small_step(const op_table *ops, tlb_wiring wiring, int mb, uint64_t param_seed, float amp,
                          uint64_t input_seed, model_dropout drop)
{
    const tlb_model_config c = test_small_config(wiring);
    tlb_model m;
    tlb_error err;
    cr_assert_eq(model_create(&m, &c, &err), 0, "%s", err.msg);
    model_use_ops(&m, ops);
    cr_assert_eq(model_plan(&m, mb, &err), 0, "%s", err.msg);
    rng_stream r = {param_seed, 0};
    for (size_t i = 0; i < model_num_params(&m); i++) m.params[i] = amp * (rng_next_uniform(&r) - 0.5f);
    const size_t nx = (size_t)mb * c.image_size * c.image_size * 3;
    float *x = malloc(nx * sizeof(float));
    int *labels = malloc((size_t)mb * sizeof(int));
    cr_assert(x && labels);
    rng_stream ri = {input_seed, 0};
    for (size_t i = 0; i < nx; i++) x[i] = rng_next_uniform(&ri);
    for (int b = 0; b < mb; b++) labels[b] = b % c.num_classes;
    test_step s = {0};
    model_zero_grads(&m);
    s.loss = model_forward(&m, x, labels, mb, &drop);
    model_backward(&m, x, labels, mb, 1.0f / mb, &drop);
    s.n = model_num_params(&m);
    s.plan_bytes = model_plan_bytes(&m, mb);
    s.logits = malloc((size_t)mb * c.num_classes * sizeof(float));
    s.grads = malloc(s.n * sizeof(float));
    cr_assert(s.logits && s.grads);
    memcpy(s.logits, m.logits, (size_t)mb * c.num_classes * sizeof(float));
    memcpy(s.grads, m.grads, s.n * sizeof(float));
    free(x), free(labels);
    model_destroy(&m);
    return s;
}

void test_step_free(test_step *s)
{
    free(s->logits), free(s->grads);
    s->logits = s->grads = NULL;
}
