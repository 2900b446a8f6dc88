/* tlb_bench: `make bench` runs everything; see usage() for the flags. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "ops/ops.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: tlb_bench check                    every backend against ref on odd shapes\n"
            "       tlb_bench [flags]                  probe, ops, step, mixed, infer (the `make bench` run)\n"
            "  --only LIST      comma list of probe,ops,step,mixed,infer (default: all)\n"
            "  --out DIR        CSV files (default build/bench)\n"
            "  --seconds S      time budget per op measurement (default 0.3)\n"
            "  --micro-batch N  default: the trainer's rule for batch 2048 (410)\n"
            "  --batch N        training-step batch (default 2048); also caps the inference batch (256)\n"
            "  --steps N        timed training steps per configuration (default 5)\n"
            "  --step-configs LIST  comma list of the training-step rows to run (default: all):\n"
            "                   ref,avx2,auto,h16,avx2-h16,unfused,dnnl,bf16,bf16-h16,paper,paper-bf16,lra\n"
            "                   (h16: bf16 h, fp32 products; lra: LRA Image's config)\n"
            "  --bw-mib N       MiB per bandwidth-probe buffer (default 1024)\n"
            "  --quick          tiny sizes and timings, for development\n");
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--step-child") == 0) return bench_step_child(argc, argv);
    if (argc > 1 && strcmp(argv[1], "check") == 0) return bench_check();
    bench_opts o = {.out_dir = "build/bench", .seconds = 0.3, .batch = 2048, .steps = 5,
                    .bw_bytes = (size_t)1024 << 20, .threads = omp_get_max_threads()};
    const char *only = "probe,ops,step,mixed,infer";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--quick") == 0) {
            o.seconds = 0.02, o.batch = 64, o.micro_batch = 16, o.steps = 1;
            o.bw_bytes = (size_t)32 << 20;
        } else if (v && strcmp(a, "--only") == 0) only = v, i++;
        else if (v && strcmp(a, "--out") == 0) o.out_dir = v, i++;
        else if (v && strcmp(a, "--seconds") == 0) o.seconds = atof(v), i++;
        else if (v && strcmp(a, "--micro-batch") == 0) o.micro_batch = atoi(v), i++;
        else if (v && strcmp(a, "--batch") == 0) o.batch = atoi(v), i++;
        else if (v && strcmp(a, "--steps") == 0) o.steps = atoi(v), i++;
        else if (v && strcmp(a, "--step-configs") == 0) o.step_configs = v, i++;
        else if (v && strcmp(a, "--bw-mib") == 0) o.bw_bytes = (size_t)atol(v) << 20, i++;
        else {
            usage();
            return 2;
        }
    }
    if (o.batch < 1 || o.steps < 1 || o.seconds <= 0 || o.bw_bytes < 4096) {
        usage();
        return 2;
    }
    for (const char *p = o.step_configs; p && *p;) { /* every entry must name a row */
        char key[32];
        const size_t len = strcspn(p, ",");
        snprintf(key, sizeof key, "%.*s", (int)(len < sizeof key - 1 ? len : sizeof key - 1), p);
        if (len >= sizeof key || !bench_listed(bench_step_keys, key)) {
            fprintf(stderr, "tlb_bench: --step-configs: unknown row '%.*s' (rows: %s)\n", (int)len, p,
                    bench_step_keys);
            return 2;
        }
        p += len + (p[len] == ',');
    }
    const int mb = o.micro_batch > 0 ? o.micro_batch : bench_trainer_micro_batch(o.batch);
    tlb_error err;
    op_table ops;
    if (ops_table_select(&ops, NULL, &err) != 0) {
        fprintf(stderr, "tlb_bench: %s\n", err.msg);
        return 1;
    }
    char when[64];
    const time_t now = time(NULL);
    strftime(when, sizeof when, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    printf("# tlb_bench %s, %d threads, micro-batch %d (%s), CSV in %s/\n", when, o.threads, mb,
           o.micro_batch > 0 ? "from the flags" : "the trainer's rule for the batch", o.out_dir);
    char chosen[512];
    ops_table_describe(&ops, chosen, sizeof chosen); /* "off" for a fused stage not in use */
    for (char *c = chosen; *c; c++) *c = *c == ',' ? ' ' : *c;
    printf("automatic choice: %s\n", chosen);

    bench_machine m = {0};
    bench_op_summary sum = {0};
    bench_step_summary step = {0, 0, 0};
    if (strstr(only, "probe")) bench_probe(&o, &m);
    else m = (bench_machine){.fma_isa = "none"}; /* peaks 0: "% of peak" columns say n/a */
    if (strstr(only, "ops")) bench_ops(&o, &m, mb, &sum);
    if (strstr(only, "step")) bench_steps(&o, &m, mb, &step);
    if (strstr(only, "mixed")) bench_mixed(&o, &m, mb, &sum, &step);
    if (strstr(only, "infer")) bench_infer(&o);
    return 0;
}
