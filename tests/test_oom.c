/* Out of memory in the library: every allocation model_create and
 * model_plan make, failed one at a time, gives -1 (or 0 from model_plan)
 * with a message; none exits or aborts the process (params.c used to). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_counter.h"
#include "model/model.h"
#include "train/run_files.h"
#include "test_helpers.h"

Test(oom, model_create_and_plan_fail_cleanly)
{
    tlb_model_config c = model_config_seed();
    c.image_size = 16;
    int failures = 0, k;
    for (k = 0; k < 400; k++) {
        tlb_model m;
        tlb_error err = {0};
        alloc_fail_next(k);
        const int created = model_create(&m, &c, &err) == 0;
        const int planned = created && model_plan(&m, 4, &err) == 0;
        alloc_fail_next(-1);
        if (created) model_destroy(&m);
        if (created && planned) break; /* k is past the last allocation */
        failures++;
        cr_expect(err.msg[0] != '\0', "allocation %d failed without a message", k);
    }
    cr_expect_lt(k, 400, "model_create + model_plan made 400+ allocations?");
    cr_expect_geq(failures, 5, "only %d allocations seen failing", failures);
    cr_log_info("model_create + model_plan: %d allocations, each failure reported", failures);
}

/* The run folder's files: every allocation of opening a run (metrics.csv
 * read back) and adding an epoch (metrics.csv, curves), failed one at a
 * time, gives -1 with a message (load_rows used to abort()). */
Test(oom, run_files_fail_cleanly)
{
    char dir[] = "/tmp/tlb_oom_files_XXXXXX", path[200];
    cr_assert_not_null(test_mkdtemp(dir));
    snprintf(path, sizeof path, "%s/metrics.csv", dir);
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fprintf(fp, "epoch,train_loss,train_acc,val_loss,val_acc,seconds,images_per_second\n"
                "1,2.3,0.1,2.2,0.12,10,100\n2,2.1,0.2,2.0,0.22,10,100\n");
    fclose(fp);
    run_config c;
    run_config_defaults(&c);
    const run_epoch_metrics row = {3, 1.9, 0.3, 1.8, 0.32, 10, 100, 1.0, 1.0, 1e-3};
    int failures = 0, k;
    for (k = 0; k < 200; k++) {
        run_files f;
        tlb_error err = {0};
        alloc_fail_next(k);
        int rc = run_files_open(&f, dir, &c, 2, &err);
        if (rc == 0) rc = run_files_add_epoch(&f, &row, &err);
        alloc_fail_next(-1);
        run_files_close(&f);
        if (rc == 0) break;
        failures++;
        cr_expect(err.msg[0] != '\0', "allocation %d failed without a message", k);
    }
    cr_expect_lt(k, 200);
    cr_expect_geq(failures, 3, "only %d allocations seen failing", failures);
}
