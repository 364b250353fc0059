/*
 * The dropout family: Dropout, inverted as in Keras (y = x * mask / (1 -
 * rate) in training, y = x in inference), the mask drawn from the model's
 * seeded RNG (seed, epoch); SpatialDropout1D draws one value per (sample,
 * channel) for every step. Shape unchanged.
 */
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"

static enum ddts_status dropout_parse(struct nn_parse *p, struct nn_node *nd)
{
    nd->spatial = strcmp(nd->class_name, "SpatialDropout1D") == 0;
    if (ddts__nn_cfg_float(p, "rate", 0, 1, 0, &nd->rate) != 0 || !(nd->rate < 1))
        return ddts__nn_bad(p, "rate must be in [0, 1)");
    return ddts__nn_cfg_null(p, "noise_shape");
}

/* The mask, (cap, size), scaled by 1 / (1 - rate). */
static void dropout_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
}

static void dropout_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t n = b * nd->size;
    if (!m->training || nd->rate <= 0) {
        memcpy(nd->y, a->y, n * sizeof *nd->y);
        return;
    }
    float keep = 1.0f / (1.0f - nd->rate);
    if (nd->spatial) {
        /* SpatialDropout1D: one draw per (sample, channel), kept for every step */
        size_t C = (size_t)nd->shape[nd->rank - 1], T = nd->size / C;
        for (size_t s = 0; s < b; s++)
            for (size_t c = 0; c < C; c++) {
                float k = ddts_rng_uniform(&m->drop_rng) >= nd->rate ? keep : 0.0f;
                for (size_t t = 0; t < T; t++)
                    nd->aux[(s * T + t) * C + c] = k;
            }
        for (size_t i = 0; i < n; i++)
            nd->y[i] = a->y[i] * nd->aux[i];
        return;
    }
    for (size_t i = 0; i < n; i++) {
        nd->aux[i] = ddts_rng_uniform(&m->drop_rng) >= nd->rate ? keep : 0.0f;
        nd->y[i] = a->y[i] * nd->aux[i];
    }
}

static void dropout_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    size_t n = b * nd->size;
    int masked = m->training && nd->rate > 0;
    for (size_t i = 0; i < n; i++) {
        float g = masked ? nd->dy[i] * nd->aux[i] : nd->dy[i];
        dx[i] = acc ? dx[i] + g : g;
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
    .spec_word = "dropout",
    .spec_usage = "dropout:RATE",
    .spec = dropout_spec,
};

static const struct nn_layer_ops spatial_dropout_ops = {
    .class_names = (const char *const[]){"SpatialDropout1D", NULL},
    .kind = NN_DROPOUT,
    .doc = "dropout of whole channels over (T, C): one draw per sample and channel",
    .min_in = 1,
    .max_in = 1,
    .parse = dropout_parse,
    .infer_shape = ddts__nn_shape_same,
    .plan = dropout_plan,
    .forward = dropout_forward,
    .backward = dropout_backward,
};

const struct nn_layer_ops *const ddts__nn_family_dropout[] = {&dropout_ops, &spatial_dropout_ops,
                                                              NULL};
