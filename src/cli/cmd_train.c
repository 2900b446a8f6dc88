/* tlb train: placeholder until the training loop lands (issue 3). */
#include <stdio.h>

#include "cli/commands.h"

int cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "tlb train: not implemented yet\n");
    return 1;
}
