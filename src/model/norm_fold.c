#include "model/norm_fold.h"

#include <string.h>

#include "ops/thread_scratch.h"

static _Thread_local thread_scratch fold_scratch;

/* Each piece on a 64-byte boundary. */
static size_t rounded(size_t n) { return (n + 15) & ~(size_t)15; }
static size_t fold_floats(int D, int N)
{
    return 6 * (rounded((size_t)D * N) + rounded((size_t)N)) + 2 * rounded((size_t)D);
}

int norm_fold_prepare(int D, int N, tlb_error *err)
{
    return thread_scratch_reserve(&fold_scratch, fold_floats(D, N)) != 0
               ? tlb_fail(err, "out of memory for the folded LayerNorms of a [%d,%d] product", D, N) : 0;
}

norm_fold norm_fold_workspace(int D, int N)
{
    float *p = thread_scratch_get(&fold_scratch, fold_floats(D, N));
    norm_fold f;
    for (int i = 0; i < 3; i++) {
        f.w[i] = p, p += rounded((size_t)D * N);
        f.b[i] = p, p += rounded((size_t)N);
        f.gw[i] = p, p += rounded((size_t)D * N);
        f.gb[i] = p, p += rounded((size_t)N);
    }
    float *ones = p, *zeros = p + rounded((size_t)D);
    for (int d = 0; d < D; d++) ones[d] = 1.0f, zeros[d] = 0.0f;
    f.ones = ones, f.zeros = zeros;
    return f;
}

void norm_fold_weights(float *wf, float *bf, const float *gamma, const float *beta, const float *W,
                       const float *b, int D, int N)
{
    memcpy(bf, b, (size_t)N * sizeof *bf);
    for (int i = 0; i < D; i++) {
        const float g = gamma[i], be = beta[i];
        const float *w = W + (size_t)i * N;
        float *o = wf + (size_t)i * N;
        for (int j = 0; j < N; j++) {
            o[j] = g * w[j];
            bf[j] += be * w[j];
        }
    }
}

/* sum_j a[j] b[j] in LANES running sums (lane l takes j = l mod LANES, in
 * order), then those in order: vector code without reassociating a chain,
 * so the same bits on every CPU. */
#define LANES 16
static float dot(const float *a, const float *b, int n)
{
    float acc[LANES] = {0};
    int j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += a[j + l] * b[j + l];
    for (int l = 0; j < n; j++, l++) acc[l] += a[j] * b[j];
    float s = 0.0f;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

void norm_fold_grads(float *dW, float *db, float *dgamma, float *dbeta, const float *gw, const float *gb,
                     const float *gamma, const float *beta, const float *W, int D, int N)
{
    for (int j = 0; j < N; j++) db[j] += gb[j];
    for (int i = 0; i < D; i++) {
        const float g = gamma[i], be = beta[i];
        const float *w = W + (size_t)i * N, *G = gw + (size_t)i * N;
        float *o = dW + (size_t)i * N;
        for (int j = 0; j < N; j++) o[j] += g * G[j] + be * gb[j];
        dgamma[i] += dot(G, w, N);
        dbeta[i] += dot(gb, w, N);
    }
}
