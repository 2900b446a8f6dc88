/* Timing, random inputs, CSV files and memory readings shared by the parts. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "bench.h"
#include "util/clock.h"
#include "util/fs.h"

double bench_now(void) { return clock_now(); }

static unsigned long long rand_state = 12345;

float *bench_rand(size_t n, float scale)
{
    float *p = aligned_alloc(64, ((n ? n : 1) * sizeof(float) + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "tlb_bench: out of memory for %zu floats\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        rand_state = rand_state * 6364136223846793005ULL + 1442695040888963407ULL;
        p[i] = (float)((rand_state >> 40) * (1.0 / 8388608.0) - 1.0) * scale;
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double bench_median(void (*fn)(void *), void *arg, double seconds)
{
    enum { MAX_REPS = 5000 };
    static double t[MAX_REPS];
    fn(arg);
    int n = 0;
    const double start = bench_now();
    while (n < MAX_REPS && (n < 5 || bench_now() - start < seconds)) {
        const double t0 = bench_now();
        fn(arg);
        t[n++] = bench_now() - t0;
    }
    qsort(t, n, sizeof *t, cmp_double);
    return n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
}

FILE *bench_csv(const bench_opts *o, const char *name, const char *header)
{
    char path[FS_PATH_MAX];
    tlb_error err;
    if (fs_mkdir_p(o->out_dir, &err) != 0) {
        fprintf(stderr, "tlb_bench: %s\n", err.msg);
        return NULL;
    }
    if (snprintf(path, sizeof path, "%s/%s", o->out_dir, name) >= (int)sizeof path) {
        fprintf(stderr, "tlb_bench: %s/%s: path too long\n", o->out_dir, name);
        return NULL;
    }
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "tlb_bench: cannot write %s: %s\n", path, strerror(errno));
        return NULL;
    }
    fprintf(f, "%s\n", header);
    return f;
}

int bench_listed(const char *list, const char *key)
{
    const size_t n = strlen(key);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        const size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len == n && strncmp(p, key, n) == 0) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static double status_mib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kib = 0;
    const size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':') {
            kib = atof(line + kl + 1);
            break;
        }
    fclose(f);
    return kib / 1024.0;
}

double bench_vm_hwm_mib(void) { return status_mib("VmHWM"); }
double bench_vm_rss_mib(void) { return status_mib("VmRSS"); }
