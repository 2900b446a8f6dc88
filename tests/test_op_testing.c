/* The op-test harness itself (op_testing.c): a comparison of nothing fails,
 * and a real difference is found. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "op_testing.h"

Test(op_testing, comparing_nothing_fails)
{
    op_case a, b;
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    snprintf(b.label, sizeof b.label, "empty[x]");
    char msg[512] = "";
    cr_expect_neq(opt_compare_cases(&a, &b, 1e-5, 1e-6, msg, sizeof msg), 0, "an empty comparison passed");
    cr_expect(strstr(msg, "compared nothing") != NULL, "%s", msg);

    float x[3] = {1, 2, 3}, y[3] = {1, 2, 3};
    a.n_out = b.n_out = 1;
    a.out[0] = (opt_tensor){"out", x, NULL, 3};
    b.out[0] = (opt_tensor){"out", y, NULL, 3};
    cr_expect_eq(opt_compare_cases(&a, &b, 1e-5, 1e-6, msg, sizeof msg), 0, "%s", msg);
    y[2] = 3.1f;
    cr_expect_eq(opt_compare_cases(&a, &b, 1e-5, 1e-6, msg, sizeof msg), 1);
}
