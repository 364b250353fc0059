/*
 * The dropout family: Dropout, inverted as in Keras (y = x * mask / (1 -
 * rate) in training, y = x in inference), the mask drawn from the model's
 * seeded RNG (seed, epoch); SpatialDropout1D and SpatialDropout2D draw one
 * value per (sample, channel) for every step or pixel. The Gaussian noise
 * layers, training only too (identity in inference):
 *
 *   GaussianNoise    y = x + stddev n,                      n ~ N(0, 1) per element
 *   GaussianDropout  y = x m, m ~ N(1, rate / (1 - rate)) per element (m kept in aux)
 *
 * Shape unchanged.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"
#include "nn/nn.h"

static enum ddts_status dropout_parse(struct nn_parse *p, struct nn_node *nd)
{
    nd->spatial = strncmp(nd->class_name, "SpatialDropout", 14) == 0;
    if (ddts__nn_cfg_float(p, "rate", 0, 1, 0, &nd->rate) != 0 || !(nd->rate < 1))
        return ddts__nn_bad(p, "rate must be in [0, 1)");
    if (strcmp(nd->class_name, "SpatialDropout2D") == 0) {
        if (p->m->nodes[nd->in[0]].rank != 3)
            return ddts__nn_bad(p, "needs (H, W, C) input");
        return ddts__nn_cfg_channels_last(p);
    }
    return ddts__nn_cfg_null(p, "noise_shape");
}

static enum ddts_status noise_parse(struct nn_parse *p, struct nn_node *nd)
{
    nd->gauss_mult = strcmp(nd->class_name, "GaussianDropout") == 0;
    if (nd->gauss_mult) {
        if (ddts__nn_cfg_float(p, "rate", 0, 1, 0, &nd->rate) != 0 || !(nd->rate < 1))
            return ddts__nn_bad(p, "rate must be in [0, 1)");
    } else if (ddts__nn_cfg_float(p, "stddev", 0, 1e30, 0, &nd->rate) != 0) {
        return ddts__nn_bad(p, "stddev must be a non-negative number");
    }
    return DDTS_OK;
}

/* GaussianDropout's multipliers (cap, size). */
static void noise_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    if (nd->gauss_mult)
        nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
}

static void noise_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const float *x = m->nodes[nd->in[0]].y;
    size_t n = b * nd->size;
    if (!m->training || nd->rate <= 0) {
        memcpy(nd->y, x, n * sizeof *nd->y);
        return;
    }
    if (!nd->gauss_mult) {
        for (size_t i = 0; i < n; i++)
            nd->y[i] = x[i] + (float)(nd->rate * ddts_rng_normal(&m->drop_rng));
        return;
    }
    double sd = sqrt((double)nd->rate / (1.0 - (double)nd->rate));
    for (size_t i = 0; i < n; i++) {
        nd->aux[i] = (float)(1.0 + sd * ddts_rng_normal(&m->drop_rng));
        nd->y[i] = x[i] * nd->aux[i];
    }
}

/* Additive noise passes dy through; multiplicative noise scales it. */
static void noise_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    size_t n = b * nd->size;
    int masked = m->training && nd->rate > 0 && nd->gauss_mult;
    for (size_t i = 0; i < n; i++) {
        float g = masked ? nd->dz[i] * nd->aux[i] : nd->dz[i];
        dx[i] = acc ? dx[i] + g : g;
    }
}

/* The mask, (cap, size), scaled by 1 / (1 - rate). */
static void dropout_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
}

void ddts__nn_dropout_mask(struct ddts_rng *rng, float *mask, size_t n, float rate)
{
    /* u = r / 2^32 is dropped when u < rate, i.e. when r < rate * 2^32: an
     * integer compare on a 32-bit draw (two per generator step), drawn in
     * bulk into the mask's own memory and turned into floats in place. */
    float keep = 1.0f / (1.0f - rate);
    double t = (double)rate * 4294967296.0;
    uint32_t thr = t >= 4294967295.0 ? UINT32_MAX : (uint32_t)t;
    /* The mask is allocated storage: each value is read as uint32, then stored as float. */
    uint32_t *r = (uint32_t *)mask;
    ddts_rng_fill_u32(rng, r, n);
    for (size_t i = 0; i < n; i++) {
        uint32_t v = r[i];
        mask[i] = v >= thr ? keep : 0.0f;
    }
}

static void dropout_draw(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    if (!m->training || nd->rate <= 0)
        return;
    if (nd->spatial) {
        /* SpatialDropout1D: one draw per (sample, channel), kept for every
         * step; the (b, C) draws sit at the front of the (b, T, C) mask and
         * are spread from the back so that none is overwritten before use. */
        size_t C = (size_t)nd->shape[nd->rank - 1], T = nd->size / C;
        ddts__nn_dropout_mask(&m->drop_rng, nd->aux, b * C, nd->rate);
        for (size_t s = b; s-- > 0;)
            for (size_t t = T; t-- > 0;)
                for (size_t c = C; c-- > 0;)
                    nd->aux[(s * T + t) * C + c] = nd->aux[s * C + c];
    } else {
        ddts__nn_dropout_mask(&m->drop_rng, nd->aux, b * nd->size, nd->rate);
    }
}

static void dropout_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t n = b * nd->size;
    if (!m->training || nd->rate <= 0) {
        memcpy(nd->y, a->y, n * sizeof *nd->y);
        return;
    }
    if (!m->drawn)
        dropout_draw(m, nd, b);
    const float *restrict x = a->y, *restrict k = nd->aux;
    float *restrict y = nd->y;
    for (size_t i = 0; i < n; i++)
        y[i] = x[i] * k[i];
}

static void dropout_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    size_t n = b * nd->size;
    const float *restrict dy = nd->dy, *restrict k = nd->aux;
    if (!(m->training && nd->rate > 0)) {
        for (size_t i = 0; i < n; i++)
            dx[i] = acc ? dx[i] + dy[i] : dy[i];
    } else if (acc) {
        for (size_t i = 0; i < n; i++)
            dx[i] += dy[i] * k[i];
    } else {
        for (size_t i = 0; i < n; i++)
            dx[i] = dy[i] * k[i];
    }
}

/* "dropout:RATE" with 0 <= RATE < 1. */
static enum ddts_status dropout_spec(struct nn_spec *s)
{
    char *end = NULL;
    double rate = s->n_arg == 2 ? strtod(s->arg[1], &end) : -1.0;
    if (s->n_arg != 2 || *end != '\0' || !(rate >= 0.0 && rate < 1.0))
        return s->fail(s, DDTS_EINVAL, "expected dropout:RATE with 0 <= RATE < 1");
    enum ddts_status st = s->open(s, "Dropout", "dropout");
    if (st == DDTS_OK)
        s->json(s, ", \"rate\": %.9g, \"noise_shape\": null, \"seed\": null", rate);
    return st;
}

static const struct nn_layer_ops dropout_ops = {
    .class_names = (const char *const[]){"Dropout", NULL},
    .kind = NN_DROPOUT,
    .per_step = 1,
    .doc = "inverted dropout in training, identity in inference",
    .min_in = 1,
    .max_in = 1,
    .parse = dropout_parse,
    .infer_shape = ddts__nn_shape_same,
    .plan = dropout_plan,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .rows = 1,
    .draw = dropout_draw,
    .spec_word = "dropout",
    .spec_usage = "dropout:RATE",
    .spec = dropout_spec,
};

static const struct nn_layer_ops spatial_dropout_ops = {
    .class_names = (const char *const[]){"SpatialDropout1D", "SpatialDropout2D", NULL},
    .kind = NN_DROPOUT,
    .doc = "dropout of whole channels over (T, C) or (H, W, C): one draw per sample and channel",
    .min_in = 1,
    .max_in = 1,
    .parse = dropout_parse,
    .infer_shape = ddts__nn_shape_same,
    .plan = dropout_plan,
    .forward = dropout_forward,
    .backward = dropout_backward,
    .rows = 1,
    .draw = dropout_draw,
};

static const struct nn_layer_ops noise_ops = {
    .class_names = (const char *const[]){"GaussianNoise", "GaussianDropout", NULL},
    .kind = NN_NOISE,
    .doc = "Gaussian noise in training (added, stddev; or multiplied, rate), identity in inference",
    .min_in = 1,
    .max_in = 1,
    .parse = noise_parse,
    .infer_shape = ddts__nn_shape_same,
    .plan = noise_plan,
    .forward = noise_forward,
    .backward = noise_backward,
};

const struct nn_layer_ops *const ddts__nn_family_dropout[] = {&dropout_ops, &spatial_dropout_ops,
                                                              &noise_ops, NULL};
