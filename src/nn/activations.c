/* Activations with Keras' definitions; forward z -> y and backward dy -> dz. */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

#define SQRT1_2     0.70710678118654752440
#define INV_SQRT2PI 0.39894228040143267794

static inline float sigm(float x)
{
    /* Stable for large |x|: exp never overflows. */
    if (x >= 0) {
        float e = expf(-x);
        return 1.0f / (1.0f + e);
    }
    float e = expf(x);
    return e / (1.0f + e);
}

static inline float softplus(float x)
{
    return log1pf(expf(-fabsf(x))) + (x > 0 ? x : 0);
}

static void softmax_rows(size_t rows, size_t k, const float *z, float *y, int threads)
{
#pragma omp parallel for num_threads(threads) schedule(static) if (rows * k > 16384)
    for (long r = 0; r < (long)rows; r++) {
        const float *zr = z + (size_t)r * k;
        float *yr = y + (size_t)r * k;
        float mx = zr[0];
        for (size_t j = 1; j < k; j++)
            mx = zr[j] > mx ? zr[j] : mx;
        double s = 0;
        for (size_t j = 0; j < k; j++) {
            yr[j] = expf(zr[j] - mx);
            s += yr[j];
        }
        float inv = (float)(1.0 / s);
        for (size_t j = 0; j < k; j++)
            yr[j] *= inv;
    }
}

static inline float relu_f(const struct nn_act *a, float x)
{
    float y;
    if (x >= a->threshold)
        y = x;
    else
        y = a->alpha * (x - a->threshold);
    if (a->alpha == 0 && x < a->threshold)
        y = 0;
    if (a->max_value > 0 && y > a->max_value)
        y = a->max_value;
    return y;
}

static inline float act_f(const struct nn_act *a, float x)
{
    switch (a->kind) {
    case ACT_LINEAR:
        return x;
    case ACT_RELU:
        return relu_f(a, x);
    case ACT_SIGMOID:
        return sigm(x);
    case ACT_TANH:
        return tanhf(x);
    case ACT_ELU:
        return x > 0 ? x : a->alpha * expm1f(x);
    case ACT_SELU:
        return 1.0507009873554804934f * (x > 0 ? x : 1.6732632423543772848f * expm1f(x));
    case ACT_SOFTPLUS:
        return softplus(x);
    case ACT_SOFTSIGN:
        return x / (1.0f + fabsf(x));
    case ACT_SWISH:
        return x * sigm(x);
    case ACT_GELU:
        return 0.5f * x * (1.0f + erff(x * (float)SQRT1_2));
    case ACT_GELU_TANH: {
        float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
        return 0.5f * x * (1.0f + tanhf(u));
    }
    case ACT_HARD_SIGMOID: {
        float y = a->alpha * x + 0.5f;
        return y < 0 ? 0 : (y > 1 ? 1 : y);
    }
    case ACT_EXPONENTIAL:
        return expf(x);
    case ACT_HARD_SWISH: {
        float r = x + 3.0f;
        r = r < 0 ? 0 : (r > 6 ? 6 : r);
        return x * r / 6.0f;
    }
    case ACT_MISH:
        return x * tanhf(softplus(x));
    case ACT_SOFTMAX:
        break;
    }
    return x;
}

/* d act / dz at z (with y = act(z) available). */
static inline float act_d(const struct nn_act *a, float x, float y)
{
    switch (a->kind) {
    case ACT_LINEAR:
        return 1;
    case ACT_RELU: {
        if (a->max_value > 0 && y >= a->max_value && x >= a->threshold)
            return 0;
        return x > a->threshold ? 1.0f : a->alpha;
    }
    case ACT_SIGMOID:
        return y * (1 - y);
    case ACT_TANH:
        return 1 - y * y;
    case ACT_ELU:
        return x > 0 ? 1.0f : y + a->alpha;
    case ACT_SELU:
        return x > 0 ? 1.0507009873554804934f
                     : 1.0507009873554804934f * 1.6732632423543772848f * expf(x);
    case ACT_SOFTPLUS:
        return sigm(x);
    case ACT_SOFTSIGN: {
        float d = 1.0f + fabsf(x);
        return 1.0f / (d * d);
    }
    case ACT_SWISH: {
        float s = sigm(x);
        return s + x * s * (1 - s);
    }
    case ACT_GELU:
        return 0.5f * (1.0f + erff(x * (float)SQRT1_2)) +
               x * (float)INV_SQRT2PI * expf(-0.5f * x * x);
    case ACT_GELU_TANH: {
        float c = 0.7978845608028654f;
        float u = c * (x + 0.044715f * x * x * x);
        float t = tanhf(u);
        return 0.5f * (1 + t) + 0.5f * x * (1 - t * t) * c * (1 + 3 * 0.044715f * x * x);
    }
    case ACT_HARD_SIGMOID: {
        float u = a->alpha * x + 0.5f;
        return (u > 0 && u < 1) ? a->alpha : 0;
    }
    case ACT_EXPONENTIAL:
        return y;
    case ACT_HARD_SWISH:
        if (x < -3)
            return 0;
        if (x > 3)
            return 1;
        return (2 * x + 3) / 6.0f;
    case ACT_MISH: {
        float sp = softplus(x), t = tanhf(sp);
        return t + x * (1 - t * t) * sigm(x);
    }
    case ACT_SOFTMAX:
        break;
    }
    return 1;
}

void ddts__nn_act_forward(const struct nn_act *a, size_t rows, size_t k, const float *z, float *y,
                          int threads)
{
    size_t n = rows * k;
    if (a->kind == ACT_LINEAR) {
        if (y != z)
            memcpy(y, z, n * sizeof *y);
        return;
    }
    if (a->kind == ACT_SOFTMAX) {
        softmax_rows(rows, k, z, y, threads);
        return;
    }
    if (a->kind == ACT_RELU && a->alpha == 0 && a->max_value <= 0 && a->threshold == 0) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 65536)
        for (long i = 0; i < (long)n; i++)
            y[i] = z[i] > 0 ? z[i] : 0;
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 16384)
    for (long i = 0; i < (long)n; i++)
        y[i] = act_f(a, z[i]);
}

void ddts__nn_act_backward(const struct nn_act *a, size_t rows, size_t k, const float *z,
                           const float *y, const float *dy, float *dz, int threads)
{
    size_t n = rows * k;
    if (a->kind == ACT_LINEAR) {
        if (dz != dy)
            memcpy(dz, dy, n * sizeof *dz);
        return;
    }
    if (a->kind == ACT_SOFTMAX) {
        /* dz_j = y_j (dy_j - sum_i dy_i y_i) */
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 16384)
        for (long r = 0; r < (long)rows; r++) {
            const float *yr = y + (size_t)r * k, *dyr = dy + (size_t)r * k;
            float *dzr = dz + (size_t)r * k;
            double s = 0;
            for (size_t j = 0; j < k; j++)
                s += (double)dyr[j] * yr[j];
            for (size_t j = 0; j < k; j++)
                dzr[j] = yr[j] * (dyr[j] - (float)s);
        }
        return;
    }
    if (a->kind == ACT_RELU && a->alpha == 0 && a->max_value <= 0 && a->threshold == 0) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 65536)
        for (long i = 0; i < (long)n; i++)
            dz[i] = z[i] > 0 ? dy[i] : 0;
        return;
    }
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 16384)
    for (long i = 0; i < (long)n; i++)
        dz[i] = dy[i] * act_d(a, z[i], y[i]);
}

int ddts__nn_act_parse(const char *name, int keras3, struct nn_act *out)
{
    memset(out, 0, sizeof *out);
    static const struct {
        const char *name;
        enum nn_act_kind kind;
        float alpha, max_value;
    } tab[] = {
        {"linear", ACT_LINEAR, 0, 0},
        {"relu", ACT_RELU, 0, 0},
        {"relu6", ACT_RELU, 0, 6},
        {"leaky_relu", ACT_RELU, 0.2f, 0},
        {"sigmoid", ACT_SIGMOID, 0, 0},
        {"tanh", ACT_TANH, 0, 0},
        {"softmax", ACT_SOFTMAX, 0, 0},
        {"elu", ACT_ELU, 1, 0},
        {"selu", ACT_SELU, 0, 0},
        {"softplus", ACT_SOFTPLUS, 0, 0},
        {"softsign", ACT_SOFTSIGN, 0, 0},
        {"swish", ACT_SWISH, 0, 0},
        {"silu", ACT_SWISH, 0, 0},
        {"gelu", ACT_GELU, 0, 0},
        {"hard_sigmoid", ACT_HARD_SIGMOID, 0.2f, 0},
        {"exponential", ACT_EXPONENTIAL, 0, 0},
        {"hard_silu", ACT_HARD_SWISH, 0, 0},
        {"hard_swish", ACT_HARD_SWISH, 0, 0},
        {"mish", ACT_MISH, 0, 0},
    };
    if (name == NULL || name[0] == 0) {
        out->kind = ACT_LINEAR;
        return 0;
    }
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (strcmp(name, tab[i].name) == 0) {
            out->kind = tab[i].kind;
            out->alpha = tab[i].alpha;
            out->max_value = tab[i].max_value;
            /* Keras 3 defines hard_sigmoid as relu6(x + 3) / 6 (slope 1/6);
             * Keras 2 as clip(0.2 x + 0.5, 0, 1). */
            if (tab[i].kind == ACT_HARD_SIGMOID && keras3)
                out->alpha = 1.0f / 6.0f;
            return 0;
        }
    }
    return -1;
}
