#include "data/randaugment.h"

#include <math.h>
#include <string.h>

#include "util/rng.h"

static const char *const op_names[RA_NUM_OPS] = {
    "identity", "shear_x",    "shear_y",   "translate_x", "translate_y", "rotate",       "brightness",
    "color",    "contrast",   "sharpness", "posterize",   "solarize",    "autocontrast", "equalize",
};

const char *randaugment_op_name(randaugment_op op)
{
    return op >= 0 && op < RA_NUM_OPS ? op_names[op] : "?";
}

static inline float clamp01(float v) { return v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v; }

/* 8-bit value of a float in [0, 1], as ToPILImage would store it (rounded). */
static inline int to_byte(float v) { return (int)(clamp01(v) * 255.0f + 0.5f); }

/* img = src sampled at A (p - c) + c + t for every output pixel p, nearest
 * neighbour, 0 outside; c = the image centre. src must not alias img. */
static void affine_nearest(float *img, const float *src, int S, float a, float b, float c, float d, float tx, float ty)
{
    const float ctr = 0.5f * (float)(S - 1);
    for (int y = 0; y < S; y++) {
        const float v = (float)y - ctr;
        for (int x = 0; x < S; x++) {
            const float u = (float)x - ctr;
            const int sx = (int)floorf(a * u + b * v + ctr + tx + 0.5f);
            const int sy = (int)floorf(c * u + d * v + ctr + ty + 0.5f);
            float *o = img + ((size_t)y * S + x) * 3;
            if (sx < 0 || sy < 0 || sx >= S || sy >= S) {
                o[0] = o[1] = o[2] = 0.0f;
                continue;
            }
            const float *p = src + ((size_t)sy * S + sx) * 3;
            o[0] = p[0], o[1] = p[1], o[2] = p[2];
        }
    }
}

/* img = clamp(f img + (1 - f) degenerate), torchvision's _blend; at f = 1
 * exactly img. degenerate NULL means black. */
static void blend(float *img, const float *degenerate, int n, float f)
{
    const float g = 1.0f - f;
    for (int i = 0; i < n; i++) img[i] = clamp01(f * img[i] + g * (degenerate ? degenerate[i] : 0.0f));
}

/* ITU-R 601 luma, torchvision's rgb_to_grayscale weights. */
static inline float grey(const float *p) { return 0.2989f * p[0] + 0.587f * p[1] + 0.114f * p[2]; }

static void equalize_channel(float *img, int S, int ch)
{
    const int n = S * S;
    int hist[256] = {0};
    for (int i = 0; i < n; i++) hist[to_byte(img[i * 3 + ch])]++;
    int last = 255;
    while (last > 0 && hist[last] == 0) last--;
    const int step = (n - hist[last]) / 255;
    if (step == 0) return; /* PIL: too few distinct values, unchanged */
    float lut[256];
    int acc = step / 2;
    for (int v = 0; v < 256; v++) {
        int o = acc / step;
        lut[v] = (float)(o > 255 ? 255 : o) / 255.0f;
        acc += hist[v];
    }
    for (int i = 0; i < n; i++) img[i * 3 + ch] = lut[to_byte(img[i * 3 + ch])];
}

void randaugment_apply_op(float *img, float *scratch, int S, randaugment_op op, float level)
{
    const int n = S * S * 3;
    const float mag = fabsf(level);
    const size_t bytes = (size_t)n * sizeof(float);
    switch (op) {
    case RA_IDENTITY:
    case RA_NUM_OPS:
        return;
    case RA_SHEAR_X: /* source x = x + s (y - c): rows slide sideways */
        memcpy(scratch, img, bytes);
        affine_nearest(img, scratch, S, 1.0f, 0.3f * level, 0.0f, 1.0f, 0.0f, 0.0f);
        return;
    case RA_SHEAR_Y:
        memcpy(scratch, img, bytes);
        affine_nearest(img, scratch, S, 1.0f, 0.0f, 0.3f * level, 1.0f, 0.0f, 0.0f);
        return;
    case RA_TRANSLATE_X:
    case RA_TRANSLATE_Y: {
        /* torchvision: int(150 / 331 * side * magnitude), whole pixels */
        const float t = (float)(int)(150.0f / 331.0f * (float)S * mag) * (level < 0 ? -1.0f : 1.0f);
        memcpy(scratch, img, bytes);
        if (op == RA_TRANSLATE_X) affine_nearest(img, scratch, S, 1, 0, 0, 1, -t, 0);
        else affine_nearest(img, scratch, S, 1, 0, 0, 1, 0, -t);
        return;
    }
    case RA_ROTATE: {
        /* output p shows source R(-theta) p: content turns by theta */
        const float th = 30.0f * level * (float)(M_PI / 180.0);
        const float cs = cosf(th), sn = sinf(th);
        memcpy(scratch, img, bytes);
        affine_nearest(img, scratch, S, cs, sn, -sn, cs, 0.0f, 0.0f);
        return;
    }
    case RA_BRIGHTNESS:
        blend(img, NULL, n, 1.0f + 0.9f * level);
        return;
    case RA_COLOR:
        for (int i = 0; i < S * S; i++) scratch[i * 3] = scratch[i * 3 + 1] = scratch[i * 3 + 2] = grey(img + i * 3);
        blend(img, scratch, n, 1.0f + 0.9f * level);
        return;
    case RA_CONTRAST: {
        double sum = 0.0;
        for (int i = 0; i < S * S; i++) sum += grey(img + i * 3);
        const float mean = (float)(sum / (S * S));
        for (int i = 0; i < n; i++) scratch[i] = mean;
        blend(img, scratch, n, 1.0f + 0.9f * level);
        return;
    }
    case RA_SHARPNESS: {
        /* torchvision's degenerate image: [[1,1,1],[1,5,1],[1,1,1]] / 13 inside, the border as it is */
        memcpy(scratch, img, bytes);
        for (int y = 1; y < S - 1; y++)
            for (int x = 1; x < S - 1; x++)
                for (int c = 0; c < 3; c++) {
                    const float *p = img + ((size_t)y * S + x) * 3 + c;
                    const int row = S * 3;
                    float s = p[-row - 3] + p[-row] + p[-row + 3] + p[-3] + 5.0f * p[0] + p[3] + p[row - 3] +
                              p[row] + p[row + 3];
                    scratch[((size_t)y * S + x) * 3 + c] = s / 13.0f;
                }
        blend(img, scratch, n, 1.0f + 0.9f * level);
        return;
    }
    case RA_POSTERIZE: {
        const int bits = 8 - (int)lrintf(4.0f * mag);
        if (bits >= 8) return;
        const int mask = (0xff << (8 - bits)) & 0xff;
        for (int i = 0; i < n; i++) img[i] = (float)(to_byte(img[i]) & mask) / 255.0f;
        return;
    }
    case RA_SOLARIZE: {
        const float t = 1.0f - mag;
        for (int i = 0; i < n; i++)
            if (img[i] > t) img[i] = 1.0f - img[i];
        return;
    }
    case RA_AUTOCONTRAST:
        for (int c = 0; c < 3; c++) {
            float lo = img[c], hi = img[c];
            for (int i = 1; i < S * S; i++) lo = fminf(lo, img[i * 3 + c]), hi = fmaxf(hi, img[i * 3 + c]);
            if (!(hi > lo)) continue;
            const float k = 1.0f / (hi - lo);
            for (int i = 0; i < S * S; i++) img[i * 3 + c] = clamp01((img[i * 3 + c] - lo) * k);
        }
        return;
    case RA_EQUALIZE:
        for (int c = 0; c < 3; c++) equalize_channel(img, S, c);
        return;
    }
}

/* Op j of an image: counter 2j picks the op, counter 2j + 1 its sign. */
static void draw_one(randaugment_op *op, float *sign, int j, uint64_t key)
{
    *op = (randaugment_op)(((rng_u64(key, 2 * (uint64_t)j) >> 32) * RA_NUM_OPS) >> 32);
    *sign = rng_u64(key, 2 * (uint64_t)j + 1) >> 63 ? -1.0f : 1.0f;
}

void randaugment_draw(randaugment_op *ops, float *signs, int n, uint64_t key)
{
    for (int j = 0; j < n; j++) draw_one(&ops[j], &signs[j], j, key);
}

void randaugment(float *img, float *scratch, int S, int n, int m, uint64_t key)
{
    for (int j = 0; j < n; j++) {
        randaugment_op op;
        float sign;
        draw_one(&op, &sign, j, key);
        randaugment_apply_op(img, scratch, S, op, sign * (float)m / RANDAUGMENT_MAX_MAGNITUDE);
    }
}
