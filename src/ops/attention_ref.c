/* Multi-head attention core, one (sample, head) pair at a time. Row-wise
 * formulation: each query row needs only Tk scratch floats, so no workspace. */
#include "ops/impls.h"

#include <math.h>

#include "ops/dropout_mask.h"

/* Indexing shared by forward and backward. q, out, dout, dq are [B, Tq, H*K]
 * and k, v, dk, dv [B, Tk, H*K]: head h's K features of token t of sample b
 * start at tok(b, T, t, H, K, h). probs is [B, H, Tq, Tk]: the row of query
 * i of (b, h) starts at probs_row(b, h, i, H, Tq, Tk). Sample b's dropout
 * mask is indexed by (h, i, j) within the sample: drop_at. */
static inline size_t tok(int b, int T, int t, int H, int K, int h)
{
    return ((size_t)b * T + t) * (H * K) + h * K;
}

static inline size_t probs_row(int b, int h, int i, int H, int Tq, int Tk)
{
    return (((size_t)b * H + h) * Tq + i) * Tk;
}

static inline size_t drop_at(int h, int i, int j, int Tq, int Tk)
{
    return ((size_t)h * Tq + i) * Tk + j;
}

/* Query row i of (b, h): oi = sum over the nk valid keys of dropout(p_j) v_j
 * -- the forward's last loop, and all of attention_mix_ref. */
static void mix_row(float *oi, const float *p, const float *v, int b, int h, int i, int nk, int Tq, int Tk, int H,
                    int K, const dropout_ctx *drop, uint64_t skey)
{
    for (int c = 0; c < K; c++) oi[c] = 0.0f;
    for (int j = 0; j < nk; j++) {
        float pj = p[j];
        if (skey) pj *= dropout_scale_at(drop, skey, drop_at(h, i, j, Tq, Tk));
        const float *vj = v + tok(b, Tk, j, H, K, h);
        for (int c = 0; c < K; c++) oi[c] += pj * vj[c];
    }
}

static void attention_forward_ref(float *out, float *probs, const float *q, const float *k,
                                  const float *v, const int *kv_len, int B, int Tq, int Tk, int H,
                                  int K, const dropout_ctx *drop)
{
    const float scale = 1.0f / sqrtf((float)K);
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const uint64_t skey = dropout_active(drop) ? dropout_sample_key(drop, b) : 0;
            const int nk = kv_len ? kv_len[b] : Tk; /* keys past nk are padding */
            for (int i = 0; i < Tq; i++) {
                const float *qi = q + tok(b, Tq, i, H, K, h);
                float *p = probs + probs_row(b, h, i, H, Tq, Tk);
                float mx = -INFINITY;
                for (int j = 0; j < nk; j++) {
                    const float *kj = k + tok(b, Tk, j, H, K, h);
                    float s = 0.0f;
                    for (int c = 0; c < K; c++) s += qi[c] * kj[c];
                    p[j] = s * scale;
                    mx = fmaxf(mx, p[j]);
                }
                float sum = 0.0f;
                for (int j = 0; j < nk; j++) {
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
                for (int j = 0; j < nk; j++) p[j] /= sum;
                for (int j = nk; j < Tk; j++) p[j] = 0.0f;
                mix_row(out + tok(b, Tq, i, H, K, h), p, v, b, h, i, nk, Tq, Tk, H, K, drop, skey);
            }
        }
    }
}

/* The forward's last loop, from the saved probabilities. */
void attention_mix_ref(float *out, const float *probs, const float *v, const int *kv_len, int B, int Tq, int Tk,
                       int H, int K, const dropout_ctx *drop)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const uint64_t skey = dropout_active(drop) ? dropout_sample_key(drop, b) : 0;
            const int nk = kv_len ? kv_len[b] : Tk;
            for (int i = 0; i < Tq; i++)
                mix_row(out + tok(b, Tq, i, H, K, h), probs + probs_row(b, h, i, H, Tq, Tk), v, b, h, i, nk, Tq,
                        Tk, H, K, drop, skey);
        }
    }
}

static void attention_backward_ref(float *dq, float *dk, float *dv, const float *dout,
                                   const float *q, const float *k, const float *v,
                                   const float *probs, int B, int Tq, int Tk, int H, int K,
                                   const dropout_ctx *drop)
{
    const float scale = 1.0f / sqrtf((float)K);
    /* Each (b, h) writes only its own rows and columns of dq, dk, dv. */
#pragma omp parallel for collapse(2) schedule(static)
    for (int b = 0; b < B; b++) {
        for (int h = 0; h < H; h++) {
            const uint64_t skey = dropout_active(drop) ? dropout_sample_key(drop, b) : 0;
            float dp[TLB_MAX_KEYS];
            for (int i = 0; i < Tq; i++) {
                const float *p = probs + probs_row(b, h, i, H, Tq, Tk);
                const float *gi = dout + tok(b, Tq, i, H, K, h);
                const float *qi = q + tok(b, Tq, i, H, K, h);
                float dot = 0.0f;
                for (int j = 0; j < Tk; j++) {
                    const float keep = skey ? dropout_scale_at(drop, skey, drop_at(h, i, j, Tq, Tk)) : 1.0f;
                    const float *vj = v + tok(b, Tk, j, H, K, h);
                    float s = 0.0f;
                    for (int c = 0; c < K; c++) s += gi[c] * vj[c];
                    dp[j] = s * keep; /* gradient wrt the pre-dropout probability */
                    dot += dp[j] * p[j];
                    if (dv) {
                        float *dvj = dv + tok(b, Tk, j, H, K, h);
                        const float pj = p[j] * keep;
                        for (int c = 0; c < K; c++) dvj[c] += pj * gi[c];
                    }
                }
                for (int j = 0; j < Tk; j++) {
                    const float ds = p[j] * (dp[j] - dot) * scale; /* softmax backward */
                    const float *kj = k + tok(b, Tk, j, H, K, h);
                    if (dq) {
                        float *dqi = dq + tok(b, Tq, i, H, K, h);
                        for (int c = 0; c < K; c++) dqi[c] += ds * kj[c];
                    }
                    if (dk) {
                        float *dkj = dk + tok(b, Tk, j, H, K, h);
                        for (int c = 0; c < K; c++) dkj[c] += ds * qi[c];
                    }
                }
            }
        }
    }
}

const attention_op attention_ref = {attention_forward_ref, attention_backward_ref, NULL, NULL};
