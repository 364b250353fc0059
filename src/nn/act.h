/*
 * Element-wise activations with Keras' definitions (not softmax), inline for
 * the kernels that fuse them into their own loops (activations.c, the
 * recurrent cells). act_f(z) is the activation, act_d(z, y) its derivative
 * at z given y = act_f(z).
 */
#ifndef DDTS_NN_ACT_H
#define DDTS_NN_ACT_H

#include <math.h>

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

#endif
