/* The shared test harness itself (test_helpers.c): temporary folders made by
 * test_mkdtemp are gone when the test process that made them exits, and a
 * forked child exiting does not remove its parent's. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_helpers.h"

static int exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void touch(const char *path)
{
    FILE *fp = fopen(path, "w");
    if (fp) fclose(fp);
}

Test(harness, temp_folder_removed_when_its_process_exits)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) { /* stands for a test process: makes a folder with contents, exits */
        char dir[] = "/tmp/tlb_harness_XXXXXX", p[64];
        if (!test_mkdtemp(dir)) _exit(1);
        snprintf(p, sizeof p, "%s/sub", dir);
        mkdir(p, 0755);
        snprintf(p, sizeof p, "%s/sub/file", dir);
        touch(p);
        if (write(fds[1], dir, sizeof dir) != (ssize_t)sizeof dir) _exit(1);
        exit(0); /* runs the atexit removal */
    }
    close(fds[1]);
    char dir[64] = "";
    cr_assert_gt(read(fds[0], dir, sizeof dir - 1), 0);
    close(fds[0]);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    cr_expect(!exists(dir), "%s outlived the process that made it", dir);
}

Test(harness, forked_child_leaves_the_parents_folder)
{
    char dir[] = "/tmp/tlb_harness_XXXXXX";
    cr_assert_not_null(test_mkdtemp(dir));
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) exit(0); /* inherits the atexit handler, must not remove dir */
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_expect(exists(dir), "a forked child's exit removed its parent's %s", dir);
}
