/* tlb: one binary, one subcommand per job. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"

static const struct {
    const char *name;
    int (*run)(int, char **);
    const char *help;
} commands[] = {
    {"train", cmd_train, "train CONFIG [--set key=value]... [--run I | --list] | train --resume RUN_DIR"},
    {"report", cmd_report, "report --out DIR RUN_DIR...  results table and plot of finished runs"},
    {"eval", cmd_eval, "eval RUN_DIR [--split val|test] [--checkpoint FILE] [--json]   a trained model on a split"},
    {"predict", cmd_predict, "predict RUN_DIR IMAGE... [--top K] [--json] [--attention OUT.png]   classify PNG/JPEG files"},
    {"check", cmd_check, "check FILE.safetensors...   compare the model with golden vectors"},
    {"ops", cmd_ops, "ops                          the op x backend table of this CPU"},
    {"data", cmd_data, "data fetch|verify [--data-dir DIR]   get and verify CIFAR-10\n"
                       "  tlb data show CONFIG [--set k=v]... [--out FILE.png]  grid of augmented training images"},
};

static int usage(FILE *out)
{
    fprintf(out, "usage: tlb COMMAND [ARGS]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  tlb %s\n", commands[i].help);
    return out == stderr ? 2 : 0;
}

/* A result that could not be written (a full disk, > /dev/full) is a
 * failure, not a success with an empty file. */
static int check_stdout(const char *command, int status)
{
    errno = 0;
    const int failed = fflush(stdout) != 0 || ferror(stdout);
    if (!failed || status != 0) return status; /* a failed command has said why */
    fprintf(stderr, "tlb %s: writing standard output failed: %s\n", command,
            errno ? strerror(errno) : "an earlier write failed");
    return status ? status : 1;
}

#ifndef TLB_VERSION
#define TLB_VERSION "unknown"
#endif

const char *tlb_build(void) { return TLB_VERSION; }

int main(int argc, char **argv)
{
    /* A file-size limit (ulimit -f) then fails the write with EFBIG, which
     * every writer reports, as it does a full disk, instead of killing us. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) return usage(stderr);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "help") == 0)
        return check_stdout("help", usage(stdout));
    if (strcmp(argv[1], "--version") == 0 || strcmp(argv[1], "version") == 0) {
        printf("tlb %s\n", TLB_VERSION);
        return check_stdout("--version", 0);
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return check_stdout(commands[i].name, commands[i].run(argc - 1, argv + 1));
    fprintf(stderr, "tlb: unknown command '%s'\n", argv[1]);
    return usage(stderr);
}
