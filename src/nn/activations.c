/* Activations with Keras' definitions; forward z -> y and backward dy -> dz. */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

#include "nn/act.h"
#include "tensor/tensor.h"

/*
 * Each loop below opens an OpenMP region only when it runs on several
 * threads: libgomp enters the kernel (a futex wake) at the end of every
 * region, even one of a single thread ("if" false, or nested inside the batch
 * split's region), ~12 system calls per MLP step.
 */

static void softmax_row(size_t k, const float *zr, float *yr)
{
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

static void softmax_rows(size_t rows, size_t k, const float *z, float *y, int threads)
{
    if (threads > 1 && rows * k > 16384) {
#pragma omp parallel for num_threads(threads) schedule(static)
        for (long r = 0; r < (long)rows; r++)
            softmax_row(k, z + (size_t)r * k, y + (size_t)r * k);
    } else {
        for (size_t r = 0; r < rows; r++)
            softmax_row(k, z + r * k, y + r * k);
    }
}

void ddts__nn_act_apply(const struct nn_act *a, size_t n, const float *z, float *y)
{
    if (a->kind == ACT_SIGMOID)
        ddts__tensor_vsigmoid(n, z, y);
    else if (a->kind == ACT_TANH)
        ddts__tensor_vtanh(n, z, y);
    else if (a->kind == ACT_LINEAR && y != z)
        memcpy(y, z, n * sizeof *y);
    else if (a->kind != ACT_LINEAR)
        for (size_t i = 0; i < n; i++)
            y[i] = act_f(a, z[i]);
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
        if (threads > 1 && n > 65536) {
#pragma omp parallel for num_threads(threads) schedule(static)
            for (long i = 0; i < (long)n; i++)
                y[i] = z[i] > 0 ? z[i] : 0;
        } else {
            for (size_t i = 0; i < n; i++)
                y[i] = z[i] > 0 ? z[i] : 0;
        }
        return;
    }
    if (a->kind == ACT_RELU && a->alpha == 0 && a->max_value > 0 && a->threshold == 0) {
        /* ReLU6 and other clipped ReLUs (MobileNets): relu_f's branches as two selects,
         * which GCC and clang vectorise by themselves. No `omp simd`: that is a demand
         * clang cannot meet where UBSan instruments the loop (the fuzz build), and it
         * reports the failure as -Wpass-failed. */
        const float mv = a->max_value;
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 65536)
        for (long i = 0; i < (long)n; i++) {
            float v = z[i] > 0 ? z[i] : 0;
            y[i] = v < mv ? v : mv;
        }
        return;
    }
    if (threads <= 1 || n <= 16384) {
        ddts__nn_act_apply(a, n, z, y);
        return;
    }
    /* blocks of 4096: each thread's share is whole blocks */
    size_t nb = (n + 4095) / 4096;
#pragma omp parallel for num_threads(threads) schedule(static)
    for (long i = 0; i < (long)nb; i++) {
        size_t lo = (size_t)i * 4096, len = n - lo < 4096 ? n - lo : 4096;
        ddts__nn_act_apply(a, len, z + lo, y + lo);
    }
}

static inline void relu_backward_one(const float *z, const float *dy, float *dz, size_t i)
{
    float g = dy[i]; /* loaded unconditionally: a select the compiler vectorises */
    dz[i] = z[i] > 0 ? g : 0.0f;
}

/* dz_j = y_j (dy_j - sum_i dy_i y_i) over one row of k. */
static void softmax_row_backward(size_t k, const float *yr, const float *dyr, float *dzr)
{
    double s = 0;
    for (size_t j = 0; j < k; j++)
        s += (double)dyr[j] * yr[j];
    for (size_t j = 0; j < k; j++)
        dzr[j] = yr[j] * (dyr[j] - (float)s);
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
        if (threads > 1 && n > 16384) {
#pragma omp parallel for num_threads(threads) schedule(static)
            for (long r = 0; r < (long)rows; r++)
                softmax_row_backward(k, y + (size_t)r * k, dy + (size_t)r * k, dz + (size_t)r * k);
        } else {
            for (size_t r = 0; r < rows; r++)
                softmax_row_backward(k, y + r * k, dy + r * k, dz + r * k);
        }
        return;
    }
    if (a->kind == ACT_RELU && a->alpha == 0 && a->max_value <= 0 && a->threshold == 0) {
        if (threads > 1 && n > 65536) {
#pragma omp parallel for num_threads(threads) schedule(static)
            for (long i = 0; i < (long)n; i++)
                relu_backward_one(z, dy, dz, (size_t)i);
        } else {
            for (size_t i = 0; i < n; i++)
                relu_backward_one(z, dy, dz, i);
        }
        return;
    }
    if (a->kind == ACT_RELU && a->alpha == 0 && a->max_value > 0 && a->threshold == 0) {
        /* act_d for a clipped ReLU: 1 strictly inside (0, max_value), else 0 (vectorised
         * without `omp simd`, as the forward pass). */
        const float mv = a->max_value;
#pragma omp parallel for num_threads(threads) schedule(static) if (n > 65536)
        for (long i = 0; i < (long)n; i++) {
            float g = dy[i], v = z[i]; /* both loaded: a select the compiler vectorises */
            dz[i] = v > 0 && v < mv ? g : 0.0f;
        }
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
