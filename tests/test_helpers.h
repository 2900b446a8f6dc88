/* Helpers shared by the Criterion suites: the `tlb` binary as a subprocess
 * (test_train.c, test_hardening.c), temporary folders that remove
 * themselves, and checkpoint bytes. */
#ifndef TLB_TESTS_TEST_HELPERS_H
#define TLB_TESTS_TEST_HELPERS_H

#include <stddef.h>
#include <sys/types.h>

#include "model/config.h"
#include "model/model.h"
#include "ops/ops.h"

/* ---- the tlb binary as a subprocess ---------------------------------------- */

/* The binary under test: TLB_BIN (make test-sanitize runs build-san/tlb), or ./tlb. */
const char *tlb_bin(void);

/* Starts `tlb ARGS...` (NULL-terminated, at most 14) with stdout to
 * /dev/null, stderr to errfile, TLB_NO_FETCH=1 and one extra "K=V"
 * environment entry (or NULL). */
pid_t spawn_tlb(const char *errfile, const char *env, const char *const *args);

/* Exit status, or 1000 + signal number when killed by a signal. */
int wait_status(pid_t pid);

/* spawn_tlb, then wait_status. */
int run_tlb(const char *errfile, const char *env, const char *const *args);

/* The same with stdout to outfile (NULL: /dev/null), for commands whose
 * output is the result (tlb eval, tlb predict). */
pid_t spawn_tlb_out(const char *outfile, const char *errfile, const char *env, const char *const *args);
int run_tlb_out(const char *outfile, const char *errfile, const char *env, const char *const *args);

/* The text of path (stderr of a run) into buf; *lines gets its number of
 * lines (lines may be NULL). A missing file reads as empty. */
void read_text(const char *path, char *buf, size_t n, int *lines);

/* ---- temporary folders ------------------------------------------------------ */

/* mkdtemp(tmpl), and the folder with everything in it is removed when the
 * test process that made it exits (Criterion runs each test in its own
 * process; a forked child exiting leaves it alone). NULL on failure. */
char *test_mkdtemp(char *tmpl);

/* Removes path and, if it is a folder, everything below it. 0 on success. */
int test_rmtree(const char *path);

/* ---- data ------------------------------------------------------------------- */

/* CIFAR-10 in the default cache, fetched once if missing or damaged; fails
 * the current test if it cannot be had. */
void test_ensure_cifar10(void);

/* ---- checkpoints ------------------------------------------------------------ */

/* A malloc'd copy of the data section of RUN_DIR/checkpoint.safetensors
 * (parameters, AdamW moments, position; not the JSON header), its length in
 * *n. Fails the current test if the file cannot be opened. */
unsigned char *test_checkpoint_data(const char *run_dir, size_t *n);

/* ---- small model configurations -------------------------------------------- */

/* 8x8 images, patch 2, embed 20, chunk 4, r 2, 2 layers, 2 heads of 6, 5
 * classes, dropout 0.2: odd sizes everywhere, fast (test_shards.c, test_infer.c). */
tlb_model_config test_small_config(tlb_wiring wiring);
/* The same with the slow-state options set. */
tlb_model_config test_small_state_config(tlb_wiring wiring, int ns, tlb_state_init init, tlb_readout ro);

/* One forward + backward of test_small_config(wiring) on ops over mb
 * samples: parameters uniform in [-amp/2, amp/2) from stream (param_seed,
 * 0), images uniform in [0, 1) from (input_seed, 0), labels b % 5, dropout
 * drop. Fails the current test if the model cannot be made. */
typedef struct {
    double loss;
    float *logits; /* [mb * 5], malloc'd */
    float *grads;  /* [n], malloc'd */
    size_t n, plan_bytes;
} test_step;
test_step test_small_step(const op_table *ops, tlb_wiring wiring, int mb, uint64_t param_seed, float amp,
                          uint64_t input_seed, model_dropout drop);
void test_step_free(test_step *s);

#endif
