#include "train/grad_clip.h"

#include <math.h>

double grad_global_norm(const float *g, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) sum += (double)g[i] * g[i];
    return sqrt(sum);
}

double grad_clip_global(float *g, size_t n, double max_norm)
{
    const double norm = grad_global_norm(g, n);
    if (max_norm > 0.0 && norm > max_norm) {
        const float scale = (float)(max_norm / norm);
        for (size_t i = 0; i < n; i++) g[i] *= scale;
    }
    return norm;
}
