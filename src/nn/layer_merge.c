/*
 * The merge family: Add, Average, Subtract, Multiply, Maximum, Minimum
 * (inputs of one shape, no broadcasting) and Concatenate (any axis).
 * Maximum/Minimum send each gradient to the input that won, the first one on
 * a tie (TF's maximum/minimum gradients, applied input by input as Keras
 * folds them). Layers with several inputs:
 * nd->in[0 .. n_in) in call order.
 */
#include <string.h>

#include "nn/layer.h"

static enum ddts_status no_options(struct nn_parse *p, struct nn_node *nd)
{
    (void)p;
    (void)nd;
    return DDTS_OK;
}

static enum ddts_status concat_parse(struct nn_parse *p, struct nn_node *nd)
{
    if (ddts__nn_cfg_int(p, "axis", -DDTS_MAX_RANK - 1, DDTS_MAX_RANK + 1, -1, &nd->axis) != 0)
        return ddts__nn_bad(p, "bad axis");
    return DDTS_OK;
}

static enum ddts_status elementwise_shape(struct ddts_model *m, struct nn_node *nd,
                                          struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (nd->kind == NN_SUBTRACT && nd->n_in != 2)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s) needs 2 inputs, got %d", nd->name,
                              nd->class_name, nd->n_in);
    for (int t = 1; t < nd->n_in; t++) {
        const struct nn_node *b = &m->nodes[nd->in[t]];
        if (b->rank != a->rank || memcmp(b->shape, a->shape, sizeof a->shape) != 0)
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "layer '%s' (%s): inputs '%s' and '%s' differ in shape", nd->name,
                                  nd->class_name, a->name, b->name);
    }
    nd->rank = a->rank;
    memcpy(nd->shape, a->shape, sizeof nd->shape);
    return DDTS_OK;
}

static enum ddts_status concat_shape(struct ddts_model *m, struct nn_node *nd,
                                     struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (nd->keras_axis == 0) /* the config's axis, kept for inferring again */
        nd->keras_axis = nd->axis;
    int ax = nd->keras_axis < 0 ? a->rank + nd->keras_axis : nd->keras_axis - 1;
    if (ax < 0 || ax >= a->rank)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s): axis %d out of range", nd->name,
                              nd->class_name, nd->axis);
    nd->axis = ax;
    nd->rank = a->rank;
    memcpy(nd->shape, a->shape, sizeof nd->shape);
    for (int t = 1; t < nd->n_in; t++) {
        const struct nn_node *b = &m->nodes[nd->in[t]];
        for (int q = 0; q < a->rank; q++)
            if (b->rank != a->rank || (q != ax && b->shape[q] != a->shape[q]))
                return ddts_error_set(err, DDTS_ESHAPE,
                                      "layer '%s' (%s): inputs '%s' and '%s' differ in shape",
                                      nd->name, nd->class_name, a->name, b->name);
        if (nd->shape[ax] > (1LL << 30))
            return ddts_error_set(err, DDTS_ELIMIT, "layer '%s' (%s): output is too large",
                                  nd->name, nd->class_name);
        nd->shape[ax] += b->shape[ax];
    }
    return DDTS_OK;
}

static void merge_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t n = b * nd->size;
    const float *x0 = m->nodes[nd->in[0]].y;
    memcpy(nd->z, x0, n * sizeof *nd->z);
    for (int t = 1; t < nd->n_in; t++) {
        const float *x = m->nodes[nd->in[t]].y;
        for (size_t i = 0; i < n; i++) {
            if (nd->kind == NN_MULTIPLY)
                nd->z[i] *= x[i];
            else if (nd->kind == NN_SUBTRACT)
                nd->z[i] -= x[i];
            else
                nd->z[i] += x[i];
        }
    }
    if (nd->kind == NN_AVERAGE) {
        float inv = 1.0f / (float)nd->n_in;
        for (size_t i = 0; i < n; i++)
            nd->z[i] *= inv;
    }
}

static void merge_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t n = b * nd->size;
    for (int t = 0; t < nd->n_in; t++) {
        int acc;
        float *dx = ddts__nn_dx(m, nd, t, &acc);
        if (dx == NULL)
            continue;
        for (size_t i = 0; i < n; i++) {
            float g = nd->dz[i];
            if (nd->kind == NN_AVERAGE) {
                g /= (float)nd->n_in;
            } else if (nd->kind == NN_SUBTRACT && t == 1) {
                g = -g;
            } else if (nd->kind == NN_MULTIPLY) {
                for (int u = 0; u < nd->n_in; u++)
                    if (u != t)
                        g *= m->nodes[nd->in[u]].y[i];
            }
            dx[i] = acc ? dx[i] + g : g;
        }
    }
}

/* Maximum / Minimum: z = the extreme over the inputs. */
static void extreme_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t n = b * nd->size;
    int mx = nd->kind == NN_MAXIMUM;
    memcpy(nd->z, m->nodes[nd->in[0]].y, n * sizeof *nd->z);
    for (int t = 1; t < nd->n_in; t++) {
        const float *x = m->nodes[nd->in[t]].y;
        for (size_t i = 0; i < n; i++)
            if (mx ? x[i] > nd->z[i] : x[i] < nd->z[i])
                nd->z[i] = x[i];
    }
}

/* dz goes to the first input whose value equals the output. */
static void extreme_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t n = b * nd->size;
    for (int t = 0; t < nd->n_in; t++) {
        int acc;
        float *dx = ddts__nn_dx(m, nd, t, &acc);
        if (dx == NULL)
            continue;
        for (size_t i = 0; i < n; i++) {
            int win = 0;
            while (win < nd->n_in - 1 && m->nodes[nd->in[win]].y[i] != nd->z[i])
                win++; /* (a NaN input: the last one) */
            float g = win == t ? nd->dz[i] : 0.0f;
            dx[i] = acc ? dx[i] + g : g;
        }
    }
}

static void concat(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    size_t outer = b, inner_out = 1;
    for (int q = 0; q < nd->axis; q++)
        outer *= (size_t)nd->shape[q];
    for (int q = nd->axis; q < nd->rank; q++)
        inner_out *= (size_t)nd->shape[q];
    size_t off = 0;
    for (int t = 0; t < nd->n_in; t++) {
        const struct nn_node *a = &m->nodes[nd->in[t]];
        size_t inner = a->size / (nd->size / inner_out);
        int acc = 0;
        float *dx = backward ? ddts__nn_dx(m, nd, t, &acc) : NULL;
        if (!backward || dx != NULL)
            for (size_t o = 0; o < outer; o++) {
                if (backward)
                    ddts__nn_put(dx + o * inner, nd->dz + o * inner_out + off, inner, acc);
                else
                    memcpy(nd->z + o * inner_out + off, a->y + o * inner, inner * sizeof(float));
            }
        off += inner;
    }
}

/* Normalization: y = (x - mean) / max(sqrt(variance), 1e-7) over the last axis. */

static void concat_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    concat(m, nd, b, 0);
}

static void concat_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    concat(m, nd, b, 1);
}

static const struct nn_layer_ops add_ops = {
    .class_names = (const char *const[]){"Add", NULL},
    .kind = NN_ADD,
    .doc = "sum of its inputs",
    .min_in = 1,
    .max_in = NN_MAX_INPUTS,
    .parse = no_options,
    .infer_shape = elementwise_shape,
    .forward = merge_forward,
    .backward = merge_backward,
};

static const struct nn_layer_ops average_ops = {
    .class_names = (const char *const[]){"Average", NULL},
    .kind = NN_AVERAGE,
    .doc = "mean of its inputs",
    .min_in = 1,
    .max_in = NN_MAX_INPUTS,
    .parse = no_options,
    .infer_shape = elementwise_shape,
    .forward = merge_forward,
    .backward = merge_backward,
};

static const struct nn_layer_ops subtract_ops = {
    .class_names = (const char *const[]){"Subtract", NULL},
    .kind = NN_SUBTRACT,
    .doc = "first input minus the second",
    .min_in = 1,
    .max_in = NN_MAX_INPUTS,
    .parse = no_options,
    .infer_shape = elementwise_shape,
    .forward = merge_forward,
    .backward = merge_backward,
};

static const struct nn_layer_ops multiply_ops = {
    .class_names = (const char *const[]){"Multiply", NULL},
    .kind = NN_MULTIPLY,
    .doc = "product of its inputs",
    .min_in = 1,
    .max_in = NN_MAX_INPUTS,
    .parse = no_options,
    .infer_shape = elementwise_shape,
    .forward = merge_forward,
    .backward = merge_backward,
};

static const struct nn_layer_ops maximum_ops = {
    .class_names = (const char *const[]){"Maximum", NULL},
    .kind = NN_MAXIMUM,
    .doc = "element-wise maximum of its inputs",
    .min_in = 1,
    .max_in = NN_MAX_INPUTS,
    .parse = no_options,
    .infer_shape = elementwise_shape,
    .forward = extreme_forward,
    .backward = extreme_backward,
};

static const struct nn_layer_ops minimum_ops = {
    .class_names = (const char *const[]){"Minimum", NULL},
    .kind = NN_MINIMUM,
    .doc = "element-wise minimum of its inputs",
    .min_in = 1,
    .max_in = NN_MAX_INPUTS,
    .parse = no_options,
    .infer_shape = elementwise_shape,
    .forward = extreme_forward,
    .backward = extreme_backward,
};

static const struct nn_layer_ops concat_ops = {
    .class_names = (const char *const[]){"Concatenate", NULL},
    .kind = NN_CONCAT,
    .doc = "its inputs side by side along an axis",
    .min_in = 1,
    .max_in = NN_MAX_INPUTS,
    .parse = concat_parse,
    .infer_shape = concat_shape,
    .forward = concat_fwd,
    .backward = concat_bwd,
};

const struct nn_layer_ops *const ddts__nn_family_merge[] = {
    &add_ops,     &average_ops, &subtract_ops, &multiply_ops,
    &maximum_ops, &minimum_ops, &concat_ops,   NULL,
};
