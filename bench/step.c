/* The whole training step per backend choice and precision at the seed
 * config, batch 2048: train_step (train/train_step.c, the trainer's own),
 * forward + backward per micro-batch (dropout on), the guard, one AdamW update. Each configuration runs in
 * its own child process so its peak RSS (wait4's ru_maxrss) is its own. */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "model/model.h"
#include "ops/bf16.h"
#include "ops/ops.h"
#include "train/adamw.h"
#include "train/init.h"
#include "train/train_step.h"
#include "train/trainer.h"

/* The trainer's own rule (train/trainer.c), for the seed model. */
int bench_trainer_micro_batch(int batch)
{
    const tlb_model_config c = model_config_seed();
    tlb_model m;
    tlb_error err;
    if (model_create(&m, &c, &err) != 0) return 0;
    const int mb = train_choose_micro_batch(&m, batch, 0);
    model_destroy(&m);
    return mb;
}

/* Training FLOPs per image (or sequence), counted from the wiring's
 * schedule: each step runs one block, its q, o and FFN products over the
 * query stream's rows (C tokens of the chunk, or the Ns state rows), k and
 * v over the key stream's, QK^T and PV over both; backward costs twice the
 * forward of each matmul, except the patch convolution, whose input
 * gradient is never needed (forward + dW only). A token input's lookup has
 * no products. */
static double train_flops_per_image(const tlb_model_config *c, const model_layout *l, double *fwd)
{
    const double D = c->embed_dim, HK = model_hk(c), F = model_ffn_dim(c);
    double cell = 0;
    for (int s = 0; s < l->num_steps; s++) {
        const double rq = model_stream_rows(c, l->steps[s].query), rk = model_stream_rows(c, l->steps[s].kv);
        cell += 2 * rq * D * HK * 2 + 2 * rk * D * HK * 2       /* q, o; k, v */
                + 4 * c->num_heads * rq * rk * c->key_dim       /* QK^T, PV */
                + (l->steps[s].ffn >= 0 ? 2 * rq * D * F * 2 : 0); /* fc1, fc2 */
    }
    cell *= model_num_chunks(c);
    const double P = c->patch_size;
    const double conv = c->input == INPUT_TOKENS ? 0 : 2.0 * model_num_patches(c) * (P * P * 3) * D;
    const double head = c->head_hidden > 0 ? 2 * D * c->head_hidden + 2.0 * c->head_hidden * c->num_classes
                                           : 2 * D * c->num_classes;
    *fwd = cell + conv + head;
    return 3 * (cell + head) + 2 * conv;
}

/* The LRA Image row's model: experiments/lra_image_tlb.cfg (make bench runs
 * from the repository root), its batch in *batch; -1 if it cannot be read. */
#define LRA_CONFIG "experiments/lra_image_tlb.cfg"
static int lra_model(tlb_model_config *m, int *batch, tlb_error *err)
{
    run_config rc;
    if (run_config_load(&rc, LRA_CONFIG, err) != 0) return -1;
    run_config_model(&rc, m);
    *batch = rc.batch_size;
    return 0;
}

typedef struct {
    double step_s;       /* seconds per full-batch step */
    double mb_s;         /* seconds per micro-batch forward + backward */
    double base_mib;     /* resident at the child's start (binary and libraries) */
    double planned_mib;  /* params + grads + AdamW m, v + activation arena + input batch */
    double hwm_mib;      /* VmHWM at the end, seen by the child itself */
    int scaled;          /* 1: one micro-batch timed and scaled to the batch */
    char backends[400];  /* op:backend as run */
    char error[200];
} step_result;

/* A row's op table from its spec: "bf16" or "bf16,SPEC" runs mixed
 * precision over the automatic choice or SPEC; "h16" or "h16,SPEC" likewise
 * the ffn's h saved in bf16. 0, or -1 with the reason in why. */
static int row_ops(op_table *ops, const char *spec, char *why, size_t why_n)
{
    tlb_error err;
    const int mixed = spec && strncmp(spec, "bf16", 4) == 0;
    if (mixed) spec = spec[4] == ',' ? spec + 5 : NULL;
    const int h16 = spec && strncmp(spec, "h16", 3) == 0;
    if (h16) spec = spec[3] == ',' ? spec + 4 : NULL;
    if (ops_table_select(ops, spec, &err) != 0) {
        snprintf(why, why_n, "%.190s", err.msg);
        return -1;
    }
    if (mixed && ops_table_set_bf16(ops, 1) != 0) {
        snprintf(why, why_n, "mixed precision needs AVX512_BF16");
        return -1;
    }
    if (h16 && ops_table_set_bf16_h(ops, 1) != 0) {
        snprintf(why, why_n, "bf16 h needs an FFN stage (fused AVX2/AVX-512, or mixed precision's)");
        return -1;
    }
    return 0;
}

/* The micro-batch the trainer would take for batch on the seed model with
 * this row's ops (bf16 h plans less, so it takes more samples), or
 * fallback where the row cannot run here (its child then says why). */
static int row_trainer_micro_batch(const char *spec, tlb_wiring wiring, int batch, int fallback)
{
    op_table ops;
    char why[200];
    if (row_ops(&ops, spec, why, sizeof why) != 0) return fallback;
    tlb_model_config c = model_config_seed();
    c.wiring = wiring;
    tlb_model m;
    tlb_error err;
    if (model_create(&m, &c, &err) != 0) return fallback;
    model_use_ops(&m, &ops);
    const int mb = train_choose_micro_batch(&m, batch, 0);
    model_destroy(&m);
    return mb > 0 ? mb : fallback;
}

static void run_child(const bench_opts *o, const tlb_model_config *c, const char *spec, int mb,
                      int scaled, step_result *r)
{
    memset(r, 0, sizeof *r);
    r->base_mib = bench_vm_rss_mib();
    r->scaled = scaled;
    tlb_error err;
    op_table ops;
    if (row_ops(&ops, spec, r->error, sizeof r->error) != 0) return;
    ops_table_describe(&ops, r->backends, sizeof r->backends); /* bf16 dense, fused stages "off" */
    for (char *p = r->backends; *p; p++) *p = *p == ',' ? ' ' : *p;
    tlb_model m;
    if (model_create(&m, c, &err) != 0) {
        snprintf(r->error, sizeof r->error, "%.190s", err.msg);
        return;
    }
    model_use_ops(&m, &ops);
    if (model_plan(&m, mb, &err) != 0 || (o->batch % mb && model_prepare_batch(&m, o->batch % mb, &err) != 0)) {
        snprintf(r->error, sizeof r->error, "%.190s", err.msg);
        model_destroy(&m);
        return;
    }
    const size_t acts = model_plan_bytes(&m, mb);
    init_keras(&m, 1);
    const size_t n = model_num_params(&m), per = model_input_bytes(c) / sizeof(float);
    float *am = calloc(n, sizeof(float)), *av = calloc(n, sizeof(float));
    float *img = bench_rand((size_t)o->batch * per, 1); /* tokens: the same bytes, rewritten as ids below */
    int *labels = malloc(o->batch * sizeof(int));
    if (c->input == INPUT_TOKENS && img) { /* ids spread over the vocabulary */
        int *ids = (int *)img;
        for (size_t i = 0; i < (size_t)o->batch * per; i++) ids[i] = (int)((i * 2654435761u) % c->vocab_size);
    }
    if (!am || !av || !labels || !img) {
        snprintf(r->error, sizeof r->error, "out of memory");
        return;
    }
    for (int b = 0; b < o->batch; b++) labels[b] = b % c->num_classes;
    r->planned_mib = (4.0 * n * sizeof(float) + acts + (double)o->batch * per * sizeof(float)) / 1048576.0;
    const train_stepper stepper = {.model = &m, .adam_m = am, .adam_v = av,
                                   .hparams = adamw_keras_defaults(1e-4f, 1e-4f), .micro_batch = mb};
    train_step_result res;
    long t = 1;

    /* Warm-up: one micro-batch (first touch of the arena, oneDNN primitives,
     * per-thread scratch) and one update; for the slow ref only the first
     * touch of the arena and the update. */
    model_dropout d = {1, 1, 0};
    if (scaled) {
        memset(m.acts.base, 0, m.acts.capacity);
        model_zero_grads(&m);
        adamw_step(m.params, am, av, m.grads, n, t++, &stepper.hparams);
    } else if (train_step(&stepper, img, labels, NULL, mb, t++, 1, 1e-4f, &res, &err) != 0) {
        snprintf(r->error, sizeof r->error, "%.190s", err.msg);
        return;
    }

    if (scaled) { /* ref: the step's parts timed once (one micro-batch), scaled to the batch */
        double t0 = bench_now();
        model_zero_grads(&m);
        const double tz = bench_now() - t0;
        t0 = bench_now();
        model_forward(&m, img, labels, mb, &d);
        model_backward(&m, img, labels, mb, 1.0f / o->batch, &d);
        r->mb_s = bench_now() - t0;
        t0 = bench_now();
        adamw_step(m.params, am, av, m.grads, n, t++, &stepper.hparams);
        const double ta = bench_now() - t0;
        r->step_s = tz + r->mb_s * o->batch / mb + ta;
    } else {
        double times[16];
        const int steps = o->steps < 16 ? o->steps : 16;
        for (int s = 0; s < steps; s++) {
            const double t0 = bench_now();
            if (train_step(&stepper, img, labels, NULL, o->batch, t, (uint64_t)t, 1e-4f, &res, &err) != 0) {
                snprintf(r->error, sizeof r->error, "%.190s", err.msg);
                return;
            }
            t++;
            times[s] = bench_now() - t0;
        }
        for (int i = 1; i < steps; i++) /* insertion sort for the median */
            for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
                const double x = times[j];
                times[j] = times[j - 1], times[j - 1] = x;
            }
        r->step_s = steps % 2 ? times[steps / 2] : 0.5 * (times[steps / 2 - 1] + times[steps / 2]);
        /* One micro-batch's forward + backward on its own, best of two. */
        r->mb_s = 1e30;
        for (int i = 0; i < 2; i++) {
            const double t0 = bench_now();
            model_forward(&m, img, labels, mb, &d);
            model_backward(&m, img, labels, mb, 1.0f / o->batch, &d);
            if (bench_now() - t0 < r->mb_s) r->mb_s = bench_now() - t0;
        }
    }
    r->hwm_mib = bench_vm_hwm_mib();
    free(am), free(av), free(img), free(labels);
    model_destroy(&m);
}

/* The child's side: `tlb_bench --step-child SPEC WIRING MB SCALED BATCH STEPS FD`
 * (SPEC "-" = automatic) runs one configuration and writes a step_result to FD. */
int bench_step_child(int argc, char **argv)
{
    if (argc < 9) return 2;
    bench_opts o = {0};
    const char *spec = strcmp(argv[2], "-") ? argv[2] : NULL;
    tlb_model_config c = model_config_seed();
    c.wiring = (tlb_wiring)atoi(argv[3]);
    int lra_batch;
    tlb_error err;
    if (argc > 9 && strcmp(argv[9], "lra") == 0 && lra_model(&c, &lra_batch, &err) != 0) return 2;
    const int mb = atoi(argv[4]), scaled = atoi(argv[5]);
    o.batch = atoi(argv[6]);
    o.steps = atoi(argv[7]);
    const int fd = atoi(argv[8]);
    step_result r;
    run_child(&o, &c, spec, mb, scaled, &r);
    return write(fd, &r, sizeof r) == (ssize_t)sizeof r ? 0 : 1;
}

/* Runs one configuration in a fresh process (fork + exec of this binary, so
 * the child starts with no OpenMP pool and no memory of ours; VmHWM read in
 * the child is then its own peak). */
static int measure(const bench_opts *o, const tlb_model_config *c, const char *spec, int mb,
                   int scaled, int lra, step_result *r)
{
    int fds[2];
    if (pipe(fds) != 0) return -1;
    char a_wiring[16], a_mb[16], a_scaled[16], a_batch[16], a_steps[16], a_fd[16];
    snprintf(a_wiring, sizeof a_wiring, "%d", (int)c->wiring);
    snprintf(a_mb, sizeof a_mb, "%d", mb);
    snprintf(a_scaled, sizeof a_scaled, "%d", scaled);
    snprintf(a_batch, sizeof a_batch, "%d", o->batch);
    snprintf(a_steps, sizeof a_steps, "%d", o->steps);
    snprintf(a_fd, sizeof a_fd, "%d", fds[1]);
    char *argv[] = {"tlb_bench", "--step-child", (char *)(spec ? spec : "-"), a_wiring, a_mb,
                    a_scaled, a_batch, a_steps, a_fd, lra ? "lra" : NULL, NULL};
    fflush(stdout);
    const pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        close(fds[0]);
        execv("/proc/self/exe", argv);
        _exit(127);
    }
    close(fds[1]);
    ssize_t got = 0;
    while (got < (ssize_t)sizeof *r) {
        const ssize_t k = read(fds[0], (char *)r + got, sizeof *r - got);
        if (k <= 0) break;
        got += k;
    }
    close(fds[0]);
    int status;
    if (waitpid(pid, &status, 0) != pid || got != (ssize_t)sizeof *r) return -1;
    return 0;
}

const char *const bench_step_keys = "ref,avx2,auto,h16,avx2-h16,unfused,dnnl,bf16,bf16-h16,paper,paper-bf16,lra";

void bench_steps(const bench_opts *o, const bench_machine *m, int mb, bench_step_summary *out)
{
    /* key: the name --step-configs selects it by. A spec starting with
     * "bf16" runs mixed precision: its row is a share of the bf16 peak; one
     * starting with "h16" saves the ffn's h in bf16 (fp32 products): of the
     * fp32 peak, as the others (AVX2's for the avx2 rows). "bf16,h16" is
     * what the trainer runs in mixed precision (bf16_activations: auto). */
    const struct {
        const char *key, *label, *spec;
        tlb_wiring wiring;
        int scaled, lra; /* lra: the model, batch and micro-batch of LRA_CONFIG, not the seed's */
    } configs[] = {
        {"ref", "ref (all ops)", "ref", TLB_WIRING_KERAS, 1, 0},
        {"avx2", "avx2", "avx2", TLB_WIRING_KERAS, 0, 0},
        {"auto", "automatic", NULL, TLB_WIRING_KERAS, 0, 0},
        {"h16", "automatic, bf16 h", "h16", TLB_WIRING_KERAS, 0, 0},
        {"avx2-h16", "avx2, bf16 h", "h16,avx2", TLB_WIRING_KERAS, 0, 0},
        {"unfused", "automatic, unfused", "layernorm_pair:off,ffn:off", TLB_WIRING_KERAS, 0, 0},
        {"dnnl", "dnnl dense", "dense:dnnl", TLB_WIRING_KERAS, 0, 0},
        {"bf16", "mixed, h fp32", "bf16", TLB_WIRING_KERAS, 0, 0},
        {"bf16-h16", "mixed, bf16 h (default)", "bf16,h16", TLB_WIRING_KERAS, 0, 0},
        {"paper", "paper wiring, automatic", NULL, TLB_WIRING_PAPER, 0, 0},
        {"paper-bf16", "paper wiring, mixed", "bf16,h16", TLB_WIRING_PAPER, 0, 0},
        {"lra", "LRA Image, automatic", NULL, TLB_WIRING_PAPER, 0, 1},
    };
    const int nconf = sizeof configs / sizeof *configs;
    printf("\n## Training step (seed config, batch %d in micro-batches of %d unless a row says otherwise, fp32 unless "
           "bf16, %d threads; median of %d steps after a one-micro-batch warm-up)\n\n",
           o->batch, mb, o->threads, o->steps);
    for (int w = 0; w < 2; w++) {
        tlb_model_config c = model_config_seed();
        c.wiring = (tlb_wiring)w;
        model_layout l;
        model_layout_build(&l, &c);
        double fwd;
        const double train = train_flops_per_image(&c, &l, &fwd);
        printf("%s wiring: %d steps per chunk x %d chunks; FLOPs per image: forward %.4f G, "
               "training %.4f G (forward + 2x backward, patch conv forward + dW only)\n",
               wiring_name(c.wiring), l.num_steps, model_num_chunks(&c), fwd * 1e-9, train * 1e-9);
        model_layout_free(&l);
    }
    /* each row against the peak of the precision it ran in ("of") */
    char bf16_peak[64] = "not available (no AVX512_BF16)";
    if (m->bf16_all > 0) snprintf(bf16_peak, sizeof bf16_peak, "%.1f GFLOP/s", m->bf16_all);
    if (m->fma_all > 0)
        printf("%%peak: effective GFLOP/s over the probe's peak of the row's precision: fp32 FMA %.1f GFLOP/s "
               "(the avx2 row: AVX2's FMA, %.1f GFLOP/s, where measured), bf16 VDPBF16PS %s\n", m->fma_all,
               m->fma_avx2_all > 0 ? m->fma_avx2_all : m->fma_all, bf16_peak);
    else
        printf("%%peak: n/a (the probe did not run in this invocation)\n");
    printf("\n%-24s %9s %9s %9s %7s %-4s %9s %9s %9s %9s\n", "configuration", "step s", "img/s",
           "eff GF/s", "%peak", "of", "mb f+b s", "peak RSS", "planned", "base");
    FILE *csv = bench_csv(o, "step.csv",
                          "configuration,wiring,batch,micro_batch,step_seconds,images_per_second,"
                          "gflop_per_image,effective_gflops,precision,peak_gflops,pct_peak,peak_rss_mib,"
                          "planned_mib,base_rss_mib,scaled_from_one_microbatch,microbatch_seconds,backends");
    for (int i = 0; i < nconf; i++) {
        if (o->step_configs && !bench_listed(o->step_configs, configs[i].key)) continue;
        const int bf16 = configs[i].spec && strncmp(configs[i].spec, "bf16", 4) == 0;
        if (bf16 && !bf16_native()) {
            printf("%-24s not run: this CPU has no AVX512_BF16 (bf16 peak not available)\n", configs[i].label);
            continue;
        }
        tlb_model_config c = model_config_seed();
        c.wiring = configs[i].wiring;
        bench_opts row_o = *o; /* the LRA row runs its config's batch and the trainer's micro-batch for it */
        /* each row at the trainer's micro-batch for its ops and wiring (bf16 h
         * plans less, the paper wiring more), unless --micro-batch fixed one */
        int row_mb = o->micro_batch > 0 ? mb : row_trainer_micro_batch(configs[i].spec, c.wiring, o->batch, mb);
        if (configs[i].lra) {
            tlb_error err;
            tlb_model lm;
            if (lra_model(&c, &row_o.batch, &err) != 0 || model_create(&lm, &c, &err) != 0) {
                printf("%-24s not run: %s\n", configs[i].label, err.msg);
                continue;
            }
            if (o->batch < row_o.batch) row_o.batch = o->batch; /* --quick, --batch: never larger */
            row_mb = train_choose_micro_batch(&lm, row_o.batch, 0);
            model_destroy(&lm);
        }
        model_layout l;
        model_layout_build(&l, &c);
        double fwd;
        const double fl = train_flops_per_image(&c, &l, &fwd);
        model_layout_free(&l);
        if (configs[i].lra)
            printf("%-24s %s: batch %d in micro-batches of %d, %d tokens; FLOPs per sequence: forward %.4f G,"
                   " training %.4f G\n", configs[i].label, LRA_CONFIG, row_o.batch, row_mb, c.seq_len, fwd * 1e-9,
                   fl * 1e-9);
        else if (row_mb != mb)
            printf("%-24s micro-batches of %d (the trainer's rule for this row's plan)\n", configs[i].label, row_mb);
        step_result r;
        memset(&r, 0, sizeof r);
        if (measure(&row_o, &c, configs[i].spec, row_mb, configs[i].scaled, configs[i].lra, &r) != 0 || r.error[0]) {
            printf("%-24s failed: %s\n", configs[i].label, r.error[0] ? r.error : "child process");
            continue;
        }
        const double ips = row_o.batch / r.step_s, gf = fl * ips * 1e-9, rss = r.hwm_mib;
        /* the peak of the precision the step ran in (the avx2 row: of AVX2's FMA where the CPU has
         * AVX-512 too); 0: not measured */
        const int avx2_row = configs[i].spec && strstr(configs[i].spec, "avx2") && m->fma_avx2_all > 0;
        const double peak = bf16 ? m->bf16_all : avx2_row ? m->fma_avx2_all : m->fma_all;
        const double pct = peak > 0 ? 100 * gf / peak : 0;
        const char *of = bf16 ? "bf16" : avx2_row ? "avx2" : "fp32";
        char pct_s[16] = "    n/a";
        if (peak > 0) snprintf(pct_s, sizeof pct_s, "%6.1f%%", pct);
        printf("%-24s %9.3f %9.1f %9.1f %s %-4s %9.3f %5.0f MiB %5.0f MiB %4.0f MiB%s\n", configs[i].label,
               r.step_s, ips, gf, pct_s, of, r.mb_s, rss, r.planned_mib, r.base_mib,
               r.scaled ? "  (one micro-batch timed, scaled)" : "");
        printf("%-24s   ops: %s\n", "", r.backends);
        if (csv) {
            char peak_s[32] = "", pct_c[32] = "";
            if (peak > 0) {
                snprintf(peak_s, sizeof peak_s, "%.2f", peak);
                snprintf(pct_c, sizeof pct_c, "%.2f", pct);
            }
            /* the label quoted: "automatic, bf16 h" holds a comma */
            fprintf(csv, "\"%s\",%s,%d,%d,%.4f,%.2f,%.4f,%.2f,%s,%s,%s,%.1f,%.1f,%.1f,%d,%.4f,%s\n", configs[i].label,
                    wiring_name(c.wiring), row_o.batch, row_mb, r.step_s, ips, fl * 1e-9, gf, bf16 ? "bf16" : "fp32",
                    peak_s, pct_c, rss, r.planned_mib, r.base_mib, r.scaled, r.mb_s, r.backends);
        }
        /* issue 22's targets: >= 60% of the peak of the step's precision (aim 67% in bf16) */
        if (c.wiring == TLB_WIRING_KERAS && (bf16 || avx2_row || !configs[i].spec) && peak > 0)
            printf("%-24s   target (issue 22): >= 60%% of the %s peak: %s%s\n", "", of,
                   pct >= 60 ? "met" : "NOT met", bf16 ? (pct >= 67 ? "; aim 67%: met" : "; aim 67%: not met") : "");
        if (configs[i].spec && strcmp(configs[i].spec, "bf16,h16") == 0 && c.wiring == TLB_WIRING_KERAS)
            out->bf16_step_seconds = r.step_s; /* the trainer's mixed precision */
        if (!configs[i].spec && c.wiring == TLB_WIRING_KERAS) {
            out->step_seconds = r.step_s, out->mb_seconds = r.mb_s;
            printf("%-24s   targets (issue): >= 150 GFLOP/s effective (>= 340 img/s): %s; aim 200: %s;"
                   " peak RSS <= 2 GiB: %s\n", "", gf >= 150 ? "met" : "NOT met",
                   gf >= 200 ? "met" : "not met", rss <= 2048 ? "met" : "NOT met");
        }
        fflush(stdout);
    }
    if (csv) fclose(csv);
    printf("\n(peak RSS = VmHWM of a fresh process per configuration: parameters, gradients,\n"
           " AdamW m and v, the activation arena, the input batch (%d fp32 images; LRA: its int32 ids), oneDNN's\n"
           " primitives and scratch, plus 'base' = the process at start (binary, libraries);\n"
           " 'planned' = what the step allocates; the trainer also holds the dataset)\n",
           o->batch);
}
