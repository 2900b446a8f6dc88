/* libFuzzer target: the run configuration parser.
 * The input is YAML text: parsed on top of the defaults, then every line is
 * also tried as a `--set key=value` override, then the whole is validated.
 * A config that validates must survive the canonical round trip (written,
 * parsed back, equal) and every sweep run must expand and name a folder.
 * Every rejected input must come back with a one-line message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "train/run_config.h"

static void check_message(int rc, const tlb_error *err)
{
    if (rc == 0) return;
    /* One line, non-empty. */
    if (err->msg[0] == '\0' || strchr(err->msg, '\n')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run_config c;
    tlb_error err = {{0}};
    run_config_defaults(&c);
    check_message(run_config_parse(&c, (const char *)data, size, "fuzz.cfg", &err), &err);

    /* Each line as an override (NULs end a line too: run_config_set takes a C string). */
    char line[2048];
    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n' && data[i] != '\0') continue;
        size_t n = i - start < sizeof line - 1 ? i - start : sizeof line - 1;
        memcpy(line, data + start, n);
        line[n] = '\0';
        start = i + 1;
        if (!strchr(line, '=')) continue;
        memset(&err, 0, sizeof err);
        check_message(run_config_set(&c, line, &err), &err);
    }

    memset(&err, 0, sizeof err);
    int rc = run_config_validate(&c, &err);
    check_message(rc, &err);
    if (rc != 0) return 0;

    /* Canonical form reads back to an equal config. */
    size_t need = run_config_write_canonical(&c, NULL, 0);
    char *text = malloc(need + 1);
    if (!text) return 0;
    if (run_config_write_canonical(&c, text, need + 1) != need) abort();
    run_config back;
    run_config_defaults(&back);
    memset(&err, 0, sizeof err);
    if (run_config_parse(&back, text, need, "canonical", &err) != 0) abort();
    if (run_config_validate(&back, &err) != 0) abort();
    if (!run_config_equal(&c, &back) || run_config_hash(&c) != run_config_hash(&back)) abort();
    free(text);

    char dir[4096];
    int runs = run_config_num_runs(&c);
    if (runs < 1) abort();
    for (int i = 0; i < runs; i++) {
        run_config one;
        run_config_expand(&c, i, &one);
        run_config_run_dir(&one, dir, sizeof dir);
        (void)run_config_hash(&one);
    }
    return 0;
}
