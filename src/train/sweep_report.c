#include "train/sweep_report.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "train/run_config.h"
#include "train/run_files.h"
#include "train/run_lock.h"
#include "util/fs.h"
#include "util/plot.h"

/* The metrics of a run, from summary.json: a fixed list, then any numeric
 * state_* entry (the slow-state diversity measures), in the first run's
 * order. NaN where a run lacks one. */
#define MAX_METRICS 16
enum { M_VAL_ACC, M_TEST_ACC, M_TEST_LOSS, M_VAL_LOSS, M_IPS, M_WALL, M_PARAMS, M_EPOCHS, NUM_FIXED };
static const char *const FIXED_KEYS[NUM_FIXED] = {"validation_accuracy", "test_accuracy", "test_loss",
                                                   "validation_loss", "train_images_per_second",
                                                   "wall_seconds", "parameters", "epochs"};
static const char *const FIXED_COLS[NUM_FIXED] = {"val_acc", "test_acc", "test_loss", "val_loss",
                                                   "images_per_second", "wall_seconds", "parameters", "epochs"};

#define MAX_AXES 8
#define MAX_VALUES 64
#define VALUE_LEN 64

typedef struct {
    const char *dir;
    char seed[32];
    double m[MAX_METRICS];
    char text[MAX_AXES][VALUE_LEN]; /* the axes' values */
    int at[MAX_AXES];               /* index of the value in its axis */
} report_run;

typedef struct {
    int key, numeric, n;
    char values[MAX_VALUES][VALUE_LEN]; /* numbers ascending, words in order of appearance */
} report_axis;

typedef struct {
    int nruns, naxes, nmetrics;
    report_run *runs;
    report_axis axes[MAX_AXES];
    char metric_key[MAX_METRICS][48];
    int *order; /* runs sorted by grid point, then seed */
    int ngroups;
    int *group_start; /* ngroups + 1 offsets into order */
    int num_classes;  /* the first run's: chance accuracy is 1 / num_classes */
} report;

static int read_text(const char *path, char **out, tlb_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) return tlb_fail(err, "%s: missing (did the run finish?)", path);
    enum { MAX_BYTES = 1 << 20 };
    char *buf = malloc(MAX_BYTES + 1);
    if (!buf) {
        fclose(fp);
        return tlb_fail(err, "out of memory");
    }
    size_t n = fread(buf, 1, MAX_BYTES, fp);
    fclose(fp);
    buf[n] = '\0';
    *out = buf;
    return 0;
}

static int is_number(const char *s, double *v)
{
    char *end;
    *v = strtod(s, &end);
    return *s && !*end;
}

static int cmp_value(const void *a, const void *b)
{
    double x, y;
    is_number(a, &x), is_number(b, &y);
    return (x > y) - (x < y);
}

static int key_rank(int k)
{
    const char *name = run_config_key_name(k);
    if (strcmp(name, "r") == 0) return 0;
    if (strcmp(name, "chunk_size") == 0) return 1;
    if (strcmp(name, "num_layers") == 0) return 2;
    return 3 + k;
}

static report *report_g; /* qsort context */
static int cmp_runs(const void *pa, const void *pb)
{
    const report_run *a = &report_g->runs[*(const int *)pa], *b = &report_g->runs[*(const int *)pb];
    for (int j = 0; j < report_g->naxes; j++)
        if (a->at[j] != b->at[j]) return a->at[j] - b->at[j];
    double x, y;
    if (is_number(a->seed, &x) && is_number(b->seed, &y) && x != y) return (x > y) - (x < y);
    return *(const int *)pa - *(const int *)pb;
}

static void report_free(report *r)
{
    free(r->runs);
    free(r->order);
    free(r->group_start);
    memset(r, 0, sizeof *r);
}

static int load_run(report *r, int i, const char *dir, run_config *cfg, tlb_error *err)
{
    char path[1300]; /* a run folder's path is at most out_dir (1023) + name (127) + hash */
    if (fs_join(path, sizeof path, dir, "config.cfg", err) != 0) return -1;
    if (run_config_load(cfg, path, err) != 0) return -1;
    if (fs_join(path, sizeof path, dir, "summary.json", err) != 0) return -1;
    char *text = NULL;
    if (read_text(path, &text, err) != 0) return -1;
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) return tlb_fail(err, "%s: not valid JSON", path);
    report_run *run = &r->runs[i];
    run->dir = dir;
    if (i == 0) { /* the metric columns */
        r->nmetrics = NUM_FIXED;
        for (int m = 0; m < NUM_FIXED; m++) snprintf(r->metric_key[m], sizeof r->metric_key[m], "%s", FIXED_KEYS[m]);
        for (const cJSON *e = j->child; e; e = e->next)
            if (cJSON_IsNumber(e) && e->string && strncmp(e->string, "state_", 6) == 0 && r->nmetrics < MAX_METRICS)
                snprintf(r->metric_key[r->nmetrics++], sizeof r->metric_key[0], "%s", e->string);
    }
    for (int m = 0; m < r->nmetrics; m++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, r->metric_key[m]);
        run->m[m] = cJSON_IsNumber(v) ? v->valuedouble : NAN;
    }
    cJSON_Delete(j);
    return 0;
}

/* A run counts once: a folder named twice (by any path) is dropped from
 * dirs (compacted in place, *count reduced). */
static void drop_repeated_folders(const char **dirs, int *count)
{
    struct stat *id = malloc((size_t)*count * sizeof *id);
    int n = 0;
    for (int i = 0; i < *count; i++) {
        int repeated = 0;
        struct stat sb;
        const int known = id && stat(dirs[i], &sb) == 0; /* else load_run names what is wrong */
        for (int k = 0; k < n && known && !repeated; k++)
            repeated = id[k].st_ino && id[k].st_dev == sb.st_dev && id[k].st_ino == sb.st_ino;
        if (repeated) continue;
        if (id) id[n] = known ? sb : (struct stat){0};
        dirs[n++] = dirs[i];
    }
    free(id);
    *count = n;
}

/* Two folders holding the same config (seed included) would count one
 * replicate twice: refused, naming both. */
static int refuse_repeated_configs(const report *r, const run_config *cfg, int count, tlb_error *err)
{
    uint64_t *h = malloc((size_t)count * sizeof *h);
    if (!h) return tlb_fail(err, "out of memory");
    for (int i = 0; i < count; i++) h[i] = run_config_hash(&cfg[i]);
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++)
        for (int k = 0; k < i && rc == 0; k++)
            if (h[i] == h[k])
                rc = tlb_fail(err, "%s and %s hold the same config (seed %s, hash %016llx): one run would count as"
                                   " two seeds; give one of them", r->runs[k].dir, r->runs[i].dir, r->runs[i].seed,
                              (unsigned long long)h[i]);
    free(h);
    return rc;
}

/* Loads every run, finds the axes, sorts the runs into grid points. */
static int report_load(report *r, char *const *given, int count, tlb_error *err)
{
    memset(r, 0, sizeof *r);
    if (count < 1) return tlb_fail(err, "no runs to report");
    const char **dirs = malloc((size_t)count * sizeof *dirs);
    if (!dirs) return tlb_fail(err, "out of memory");
    memcpy(dirs, given, (size_t)count * sizeof *dirs);
    drop_repeated_folders(dirs, &count);
    r->nruns = count;
    r->runs = calloc((size_t)count, sizeof *r->runs);
    run_config *cfg = malloc((size_t)count * sizeof *cfg);
    r->order = malloc((size_t)count * sizeof *r->order);
    r->group_start = malloc(((size_t)count + 1) * sizeof *r->group_start);
    if (!r->runs || !cfg || !r->order || !r->group_start) {
        free(cfg);
        free(dirs);
        report_free(r);
        return tlb_fail(err, "out of memory");
    }
    int rc = 0;
    for (int i = 0; i < count && rc == 0; i++) rc = load_run(r, i, dirs[i], &cfg[i], err);
    free(dirs); /* the runs keep the caller's strings */

    /* Axes: result keys (not seed) whose value differs somewhere, in sweep order. */
    int keys[RUN_CONFIG_NUM_KEYS], nk = 0;
    for (int k = 0; k < RUN_CONFIG_NUM_KEYS && rc == 0; k++) {
        if (!run_config_key_hashed(k) || strcmp(run_config_key_name(k), "seed") == 0) continue;
        char a[VALUE_LEN], b[VALUE_LEN];
        run_config_value_text(&cfg[0], k, a, sizeof a);
        for (int i = 1; i < count; i++) {
            run_config_value_text(&cfg[i], k, b, sizeof b);
            if (strcmp(a, b) != 0) {
                keys[nk++] = k;
                break;
            }
        }
    }
    for (int x = 1; x < nk; x++) /* insertion sort by rank */
        for (int y = x; y > 0 && key_rank(keys[y - 1]) > key_rank(keys[y]); y--) {
            const int t = keys[y];
            keys[y] = keys[y - 1], keys[y - 1] = t;
        }
    if (rc == 0 && nk > MAX_AXES) rc = tlb_fail(err, "the runs differ in %d keys; a report takes at most %d", nk, MAX_AXES);
    r->naxes = nk;
    int sk = -1;
    for (int k = 0; k < RUN_CONFIG_NUM_KEYS; k++)
        if (strcmp(run_config_key_name(k), "seed") == 0) sk = k;
    for (int i = 0; i < count && rc == 0; i++) {
        run_config_value_text(&cfg[i], sk, r->runs[i].seed, sizeof r->runs[i].seed);
        for (int j = 0; j < nk; j++) run_config_value_text(&cfg[i], keys[j], r->runs[i].text[j], VALUE_LEN);
    }
    if (rc == 0) rc = refuse_repeated_configs(r, cfg, count, err);
    if (rc == 0) r->num_classes = cfg[0].model.num_classes;
    free(cfg);
    for (int j = 0; j < nk && rc == 0; j++) {
        report_axis *a = &r->axes[j];
        a->key = keys[j];
        a->numeric = 1;
        for (int i = 0; i < count && rc == 0; i++) {
            const char *t = r->runs[i].text[j];
            int found = 0;
            for (int v = 0; v < a->n && !found; v++) found = strcmp(a->values[v], t) == 0;
            if (found) continue;
            if (a->n == MAX_VALUES) {
                rc = tlb_fail(err, "%s takes more than %d values", run_config_key_name(a->key), MAX_VALUES);
                break;
            }
            snprintf(a->values[a->n++], VALUE_LEN, "%s", t);
            double d;
            a->numeric &= is_number(t, &d);
        }
        if (a->numeric) qsort(a->values, (size_t)a->n, VALUE_LEN, cmp_value);
        for (int i = 0; i < count; i++)
            for (int v = 0; v < a->n; v++)
                if (strcmp(a->values[v], r->runs[i].text[j]) == 0) r->runs[i].at[j] = v;
    }
    if (rc) {
        report_free(r);
        return -1;
    }
    for (int i = 0; i < count; i++) r->order[i] = i;
    report_g = r;
    qsort(r->order, (size_t)count, sizeof *r->order, cmp_runs);
    r->ngroups = 0;
    for (int i = 0; i < count; i++) {
        const report_run *a = &r->runs[r->order[i]];
        int same = i > 0;
        for (int j = 0; j < nk && same; j++) same = a->at[j] == r->runs[r->order[i - 1]].at[j];
        if (!same) r->group_start[r->ngroups++] = i;
    }
    r->group_start[r->ngroups] = count;
    return 0;
}

typedef struct {
    int n;
    double mean, sd, min, max;
} stats;

/* Over the finite values of metric m in group g; sd = 0 for one value. */
static stats group_stats(const report *r, int g, int m)
{
    stats s = {0, NAN, NAN, NAN, NAN};
    double sum = 0;
    for (int i = r->group_start[g]; i < r->group_start[g + 1]; i++) {
        const double v = r->runs[r->order[i]].m[m];
        if (!isfinite(v)) continue;
        sum += v;
        s.min = s.n ? fmin(s.min, v) : v;
        s.max = s.n ? fmax(s.max, v) : v;
        s.n++;
    }
    if (s.n == 0) return s;
    s.mean = sum / s.n;
    double ss = 0;
    for (int i = r->group_start[g]; i < r->group_start[g + 1]; i++) {
        const double v = r->runs[r->order[i]].m[m];
        if (isfinite(v)) ss += (v - s.mean) * (v - s.mean);
    }
    s.sd = s.n > 1 ? sqrt(ss / (s.n - 1)) : 0;
    return s;
}

/* A growing text buffer. */
typedef struct {
    char *p;
    size_t len, cap;
    int oom;
} text;

__attribute__((format(printf, 2, 3)))
static void add(text *t, const char *fmt, ...)
{
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        const int m = vsnprintf(t->p ? t->p + t->len : NULL, t->p ? t->cap - t->len : 0, fmt, ap);
        va_end(ap);
        if (m < 0) return;
        if (t->p && t->len + (size_t)m < t->cap) {
            t->len += (size_t)m;
            return;
        }
        const size_t cap = (t->cap + (size_t)m + 1) * 2;
        char *q = realloc(t->p, cap);
        if (!q) {
            t->oom = 1;
            return;
        }
        t->p = q, t->cap = cap;
    }
}

static const char *metric_col(const report *r, int m)
{
    return m < NUM_FIXED ? FIXED_COLS[m] : r->metric_key[m];
}

static void add_csv_value(text *t, double v, int m)
{
    if (!isfinite(v)) add(t, ",");
    else if (m == M_PARAMS || m == M_EPOCHS) add(t, ",%.0f", v);
    else if (m == M_IPS || m == M_WALL) add(t, ",%.1f", v);
    else add(t, ",%.4f", v);
}

static void write_tables(const report *r, text *csv, text *runs, text *md)
{
    /* results.csv and runs.csv */
    for (int j = 0; j < r->naxes; j++) add(csv, "%s,", run_config_key_name(r->axes[j].key));
    for (int j = 0; j < r->naxes; j++) add(runs, "%s,", run_config_key_name(r->axes[j].key));
    add(csv, "n,seeds");
    add(runs, "seed");
    for (int m = 0; m < r->nmetrics; m++) {
        const char *c = metric_col(r, m);
        add(csv, ",%s_mean,%s_sd,%s_min,%s_max", c, c, c, c);
        add(runs, ",%s", c);
    }
    add(csv, "\n");
    add(runs, ",run_dir\n");
    for (int g = 0; g < r->ngroups; g++) {
        const report_run *first = &r->runs[r->order[r->group_start[g]]];
        for (int j = 0; j < r->naxes; j++) add(csv, "%s,", first->text[j]);
        add(csv, "%d,", r->group_start[g + 1] - r->group_start[g]);
        for (int i = r->group_start[g]; i < r->group_start[g + 1]; i++)
            add(csv, "%s%s", i > r->group_start[g] ? " " : "", r->runs[r->order[i]].seed);
        for (int m = 0; m < r->nmetrics; m++) {
            const stats s = group_stats(r, g, m);
            add_csv_value(csv, s.mean, m), add_csv_value(csv, s.n > 1 ? s.sd : NAN, m); /* no sd of one */
            add_csv_value(csv, s.min, m), add_csv_value(csv, s.max, m);
        }
        add(csv, "\n");
        for (int i = r->group_start[g]; i < r->group_start[g + 1]; i++) {
            const report_run *run = &r->runs[r->order[i]];
            for (int j = 0; j < r->naxes; j++) add(runs, "%s,", run->text[j]);
            add(runs, "%s", run->seed);
            for (int m = 0; m < r->nmetrics; m++) add_csv_value(runs, run->m[m], m);
            add(runs, ",%s\n", run->dir);
        }
    }

    /* results.md: the statistics that matter, mean +- sd */
    int multi = 0;
    for (int g = 0; g < r->ngroups; g++) multi |= r->group_start[g + 1] - r->group_start[g] > 1;
    add(md, "%d runs, %d grid point%s", r->nruns, r->ngroups, r->ngroups == 1 ? "" : "s");
    if (r->naxes) {
        add(md, "; swept:");
        for (int j = 0; j < r->naxes; j++) add(md, "%s %s", j ? "," : "", run_config_key_name(r->axes[j].key));
    }
    add(md, ".%s\n\n", multi ? " Values are mean ± sample standard deviation over the seeds." : "");
    add(md, "|");
    for (int j = 0; j < r->naxes; j++) add(md, " %s |", run_config_key_name(r->axes[j].key));
    add(md, " seeds | val acc | test acc | test loss |");
    for (int m = NUM_FIXED; m < r->nmetrics; m++) add(md, " %s |", r->metric_key[m]);
    add(md, " parameters | epochs | wall s | img/s |\n|");
    for (int c = 0; c < r->naxes + 4 + (r->nmetrics - NUM_FIXED) + 4; c++) add(md, "---|");
    add(md, "\n");
    for (int g = 0; g < r->ngroups; g++) {
        const report_run *first = &r->runs[r->order[r->group_start[g]]];
        add(md, "|");
        for (int j = 0; j < r->naxes; j++) add(md, " %s |", first->text[j]);
        add(md, " ");
        for (int i = r->group_start[g]; i < r->group_start[g + 1]; i++)
            add(md, "%s%s", i > r->group_start[g] ? ", " : "", r->runs[r->order[i]].seed);
        add(md, " |");
        const int shown[] = {M_VAL_ACC, M_TEST_ACC, M_TEST_LOSS};
        for (int q = 0; q < 3 + r->nmetrics - NUM_FIXED; q++) {
            const int m = q < 3 ? shown[q] : NUM_FIXED + q - 3;
            const stats s = group_stats(r, g, m);
            if (s.n == 0) add(md, " – |");
            else if (s.n > 1) add(md, " %.4f ± %.4f |", s.mean, s.sd);
            else add(md, " %.4f |", s.mean);
        }
        add(md, " %.0f | %.0f | %.0f | %.0f |\n", group_stats(r, g, M_PARAMS).mean, group_stats(r, g, M_EPOCHS).mean,
            group_stats(r, g, M_WALL).mean, group_stats(r, g, M_IPS).mean);
    }
}

/* x: the axis with the most values, numbers before words, first in sweep
 * order on ties; one line per combination of the other axes. */
static void plot_data(const report *r, sweep_plot *p)
{
    memset(p, 0, sizeof *p);
    p->chance = r->num_classes > 0 ? 1.0 / r->num_classes : 0;
    int xa = -1;
    for (int j = 0; j < r->naxes; j++) {
        const report_axis *a = &r->axes[j];
        if (xa < 0 || a->numeric > r->axes[xa].numeric ||
            (a->numeric == r->axes[xa].numeric && a->n > r->axes[xa].n))
            xa = j;
    }
    if (xa < 0) { /* no axis: the runs' one grid point, over its seeds */
        snprintf(p->xlabel, sizeof p->xlabel, "all runs");
        p->categorical = 1, p->nx = 1;
        snprintf(p->xnames[0], sizeof p->xnames[0], "seeds");
    } else {
        const report_axis *a = &r->axes[xa];
        snprintf(p->xlabel, sizeof p->xlabel, "%s", run_config_key_name(a->key));
        p->categorical = !a->numeric;
        p->nx = a->n < SWEEP_PLOT_MAX_POINTS ? a->n : SWEEP_PLOT_MAX_POINTS;
        for (int v = 0; v < p->nx; v++) snprintf(p->xnames[v], sizeof p->xnames[v], "%s", a->values[v]);
    }
    for (int g = 0; g < r->ngroups; g++) {
        const report_run *first = &r->runs[r->order[r->group_start[g]]];
        /* The line: the values of the other axes. */
        char label[160] = "";
        size_t len = 0;
        for (int j = 0; j < r->naxes; j++) {
            if (j == xa) continue;
            int m = snprintf(label + len, sizeof label - len, "%s%s=%s", len ? ", " : "",
                             run_config_key_name(r->axes[j].key), first->text[j]);
            if (m > 0) len += (size_t)m;
            if (len >= sizeof label) len = sizeof label - 1;
        }
        int line = 0;
        while (line < p->nlines && strcmp(p->lines[line].label, label) != 0) line++;
        if (line == p->nlines) {
            if (p->nlines == SWEEP_PLOT_MAX_LINES) continue;
            snprintf(p->lines[p->nlines++].label, sizeof p->lines[0].label, "%s", label);
        }
        const int at = xa < 0 ? 0 : first->at[xa];
        if (p->lines[line].n == SWEEP_PLOT_MAX_POINTS || at >= SWEEP_PLOT_MAX_POINTS) continue;
        const stats s = group_stats(r, g, M_TEST_ACC);
        double x = at;
        if (!p->categorical) is_number(p->xnames[at], &x);
        const int k = p->lines[line].n++;
        p->lines[line].x[k] = x, p->lines[line].y[k] = s.mean, p->lines[line].err[k] = s.n > 1 ? s.sd : 0;
        if (k == 0 || s.n < p->lines[line].seeds_min) p->lines[line].seeds_min = s.n;
        if (s.n > p->lines[line].seeds_max) p->lines[line].seeds_max = s.n;
    }
    /* Side by side, a little, where error bars would overlap. */
    int bars = 0;
    for (int l = 0; l < p->nlines; l++)
        for (int k = 0; k < p->lines[l].n; k++) bars |= p->lines[l].err[k] > 0;
    if (bars && p->nlines > 1) {
        double span = 1;
        if (!p->categorical && p->nx > 1) {
            double lo, hi;
            is_number(p->xnames[0], &lo), is_number(p->xnames[p->nx - 1], &hi);
            span = hi - lo;
        }
        for (int l = 0; l < p->nlines; l++)
            for (int k = 0; k < p->lines[l].n; k++) p->lines[l].x[k] += (l - (p->nlines - 1) / 2.0) * 0.02 * span;
    }
}

int sweep_report_plot_data(char *const *run_dirs, int count, sweep_plot *plot, tlb_error *err)
{
    report r;
    if (report_load(&r, run_dirs, count, err) != 0) return -1;
    plot_data(&r, plot);
    report_free(&r);
    return 0;
}

int sweep_report(const char *out_dir, char *const *run_dirs, int count, tlb_error *err)
{
    /* One report at a time per folder, or two would mix their files. */
    run_lock lock = {-1};
    if (run_lock_acquire(&lock, out_dir, err) != 0) return -1;
    report r;
    if (report_load(&r, run_dirs, count, err) != 0) {
        run_lock_release(&lock);
        return -2;
    }
    text csv = {0}, runs = {0}, md = {0};
    write_tables(&r, &csv, &runs, &md);
    sweep_plot *p = malloc(sizeof *p);
    int rc = 0;
    if (csv.oom || runs.oom || md.oom || !p) rc = tlb_fail(err, "out of memory");
    char path[1300];
    if (rc == 0) rc = fs_join(path, sizeof path, out_dir, "results.csv", err);
    if (rc == 0) rc = fs_write_file_atomic(path, csv.p, csv.len, err);
    if (rc == 0) rc = fs_join(path, sizeof path, out_dir, "runs.csv", err);
    if (rc == 0) rc = fs_write_file_atomic(path, runs.p, runs.len, err);
    if (rc == 0) rc = fs_join(path, sizeof path, out_dir, "results.md", err);
    if (rc == 0) rc = fs_write_file_atomic(path, md.p, md.len, err);
    if (rc == 0) {
        plot_data(&r, p);
        plot_series series[SWEEP_PLOT_MAX_LINES];
        const double *bars[SWEEP_PLOT_MAX_LINES];
        const char *names[SWEEP_PLOT_MAX_POINTS];
        char legend[SWEEP_PLOT_MAX_LINES][200];
        for (int l = 0; l < p->nlines; l++) {
            /* n: the seeds behind each point, so a bar-less point of one run is not read as certain. */
            char n[32];
            if (p->lines[l].seeds_min == p->lines[l].seeds_max) snprintf(n, sizeof n, "n=%d", p->lines[l].seeds_min);
            else snprintf(n, sizeof n, "n=%d-%d", p->lines[l].seeds_min, p->lines[l].seeds_max);
            if (p->lines[l].label[0]) snprintf(legend[l], sizeof legend[l], "%.160s (%s)", p->lines[l].label, n);
            else snprintf(legend[l], sizeof legend[l], "%s", n);
            series[l] = (plot_series){legend[l], p->lines[l].x, p->lines[l].y, p->lines[l].n};
            bars[l] = p->lines[l].err;
        }
        for (int v = 0; v < p->nx; v++) names[v] = p->xnames[v];
        const plot_categories cats = {names, p->nx};
        int seeds = 0;
        for (int g = 0; g < r.ngroups; g++) seeds |= r.group_start[g + 1] - r.group_start[g] > 1;
        rc = fs_join(path, sizeof path, out_dir, "results.png", err);
        /* From 0 with chance marked: differences drawn at their true scale. */
        const plot_line_options o = {.errbars = bars, .xcats = p->categorical ? &cats : NULL, .y_from_zero = 1,
                                     .reference_y = p->chance, .reference_label = "chance"};
        if (rc == 0)
            rc = plot_lines_png_opts(path, seeds ? "Test accuracy (mean, bars: sd over seeds)" : "Test accuracy",
                                     p->xlabel, "test accuracy", series, p->nlines, &o, err);
    }
    free(p);
    free(csv.p), free(runs.p), free(md.p);
    report_free(&r);
    run_lock_release(&lock);
    return rc;
}
