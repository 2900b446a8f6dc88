/* Subcommands of the `tlb` binary; each returns the process exit status
 * (0 ok, 1 failure, 2 bad input/usage). argv[0] is the subcommand name. */
#ifndef TLB_COMMANDS_H
#define TLB_COMMANDS_H

/* This program's build: `git describe --always --dirty` at compile time (main.c). */
const char *tlb_build(void);

int cmd_check(int argc, char **argv); /* tlb check FILE.safetensors... */
int cmd_ops(int argc, char **argv);   /* tlb ops: op x backend table */
int cmd_data(int argc, char **argv);  /* tlb data fetch|verify [--data-dir DIR] | data show CONFIG */
int cmd_train(int argc, char **argv); /* tlb train CONFIG [--set k=v]... | --resume DIR */
int cmd_report(int argc, char **argv); /* tlb report --out DIR RUN_DIR... */
int cmd_eval(int argc, char **argv);   /* tlb eval RUN_DIR [--split val|test] [--checkpoint FILE] [--json] */
int cmd_predict(int argc, char **argv); /* tlb predict RUN_DIR IMAGE... [--json] [--attention OUT.png] */

#endif
