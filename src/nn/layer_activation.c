/*
 * The activation family: Activation (any activation ddts knows), ReLU
 * (max_value, negative_slope, threshold), LeakyReLU, ELU and Softmax over the
 * last axis, as layers. Their z is their input's y (no copy); the engine
 * applies nd->act (src/nn/activations.c). PReLU has its own weights and
 * passes:
 *
 *   PReLU  y = x (x > 0), alpha x (x <= 0); alpha has the input's per-sample
 *          shape with each `shared_axes` axis of size 1 (broadcast over it)
 */
#include <string.h>

#include "nn/layer.h"

static enum ddts_status activation_parse(struct nn_parse *p, struct nn_node *nd)
{
    const char *cls = nd->class_name;
    if (strcmp(cls, "Activation") == 0)
        return ddts__nn_cfg_act(p, "activation", &nd->act);
    if (strcmp(cls, "ReLU") == 0) {
        nd->act.kind = ACT_RELU;
        if (ddts__nn_cfg_float(p, "negative_slope", -3e38, 3e38, 0, &nd->act.alpha) != 0 ||
            ddts__nn_cfg_float(p, "max_value", -3e38, 3e38, 0, &nd->act.max_value) != 0 ||
            ddts__nn_cfg_float(p, "threshold", -3e38, 3e38, 0, &nd->act.threshold) != 0)
            return ddts__nn_bad(p, "negative_slope, max_value and threshold must be numbers");
        return DDTS_OK;
    }
    if (strcmp(cls, "LeakyReLU") == 0) {
        float ns = 0.3f;
        nd->act.kind = ACT_RELU;
        if (ddts__nn_cfg_float(p, "negative_slope", -3e38, 3e38, 0.3, &ns) != 0 ||
            ddts__nn_cfg_float(p, "alpha", -3e38, 3e38, ns, &nd->act.alpha) != 0)
            return ddts__nn_bad(p, "alpha must be a number");
        return DDTS_OK;
    }
    if (strcmp(cls, "ELU") == 0) {
        nd->act.kind = ACT_ELU;
        if (ddts__nn_cfg_float(p, "alpha", -3e38, 3e38, 1.0, &nd->act.alpha) != 0)
            return ddts__nn_bad(p, "alpha must be a number");
        return DDTS_OK;
    }
    /* Softmax */
    int ax;
    if (ddts__nn_cfg_int(p, "axis", -1, -1, -1, &ax) != 0)
        return ddts__nn_unsup(p, "softmax over an axis other than -1");
    nd->act.kind = ACT_SOFTMAX;
    return DDTS_OK;
}

/* "activation:NAME". */
static enum ddts_status activation_spec(struct nn_spec *s)
{
    if (s->n_arg != 2 || !ddts__nn_spec_word_ok(s->arg[1]))
        return s->fail(s, DDTS_EINVAL, "expected activation:NAME");
    enum ddts_status st = s->open(s, "Activation", "activation");
    if (st == DDTS_OK)
        s->json(s, ", \"activation\": \"%s\"", s->arg[1]);
    return st;
}

static const char *prelu_names(const struct nn_weight_flags *f, size_t index)
{
    (void)f;
    return index == 0 ? "alpha" : NULL;
}

/* shared_axes: null, an axis or a list of axes, Keras' numbering (1 is the
 * first per-sample axis). */
static enum ddts_status prelu_parse(struct nn_parse *p, struct nn_node *nd)
{
    int rank = p->m->nodes[nd->in[0]].rank;
    int64_t ax[DDTS_MAX_RANK];
    int n = 0, one;
    nd->shared_axes = 0;
    if (ddts__nn_cfg_has(p, "shared_axes")) {
        if (ddts__nn_cfg_int(p, "shared_axes", 1, rank, 0, &one) == 0) {
            ax[0] = one;
            n = 1;
        } else if ((n = ddts__nn_cfg_int_list(p, "shared_axes", DDTS_MAX_RANK, ax)) < 0) {
            return ddts__nn_bad(p, "shared_axes must be null, an axis or a list of axes");
        }
    }
    for (int i = 0; i < n; i++) {
        if (ax[i] < 1 || ax[i] > rank)
            return ddts__nn_bad(p, "shared_axes names an axis the input does not have");
        nd->shared_axes |= 1u << (ax[i] - 1);
    }
    return ddts__nn_cfg_null(p, "alpha_constraint");
}

static enum ddts_status prelu_weights(struct nn_parse *p, struct nn_node *nd)
{
    int64_t shape[DDTS_MAX_RANK];
    for (int d = 0; d < nd->rank; d++)
        shape[d] = nd->shared_axes & (1u << d) ? 1 : nd->shape[d];
    return ddts__nn_cfg_weight(p, "alpha", nd->rank, shape, 1, "alpha_initializer",
                               ddts__nn_init_zeros, "alpha_regularizer");
}

/* Per-sample alpha counts (the tmp scratch sums alpha gradients in double). */
static void prelu_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    const struct nn_node *nd = &m->nodes[i];
    size_t n = m->w[nd->w0].n;
    (void)cap;
    need->tmp_n = n > need->tmp_n ? n : need->tmp_n;
}

/* Alpha strides per axis (0 along a shared axis) and the alpha offset of
 * row r of the per-sample (rows, C) view. */
static void prelu_strides(const struct nn_node *nd, size_t *st)
{
    size_t s = 1;
    for (int d = nd->rank - 1; d >= 0; d--) {
        st[d] = nd->shared_axes & (1u << d) ? 0 : s;
        s *= nd->shared_axes & (1u << d) ? 1 : (size_t)nd->shape[d];
    }
}

static size_t prelu_row(const struct nn_node *nd, const size_t *st, size_t r)
{
    size_t off = 0;
    for (int d = nd->rank - 2; d >= 0; d--) {
        off += (r % (size_t)nd->shape[d]) * st[d];
        r /= (size_t)nd->shape[d];
    }
    return off;
}

static void prelu_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const float *x = m->nodes[nd->in[0]].y, *alpha = ddts__nn_wdata(m, nd->w0);
    size_t st[DDTS_MAX_RANK] = {0};
    prelu_strides(nd, st);
    size_t C = (size_t)nd->shape[nd->rank - 1], rows = nd->size / C, sc = st[nd->rank - 1];
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b * nd->size > 65536)
    for (long n = 0; n < (long)b; n++)
        for (size_t r = 0; r < rows; r++) {
            const float *al = alpha + prelu_row(nd, st, r);
            const float *xr = x + (size_t)n * nd->size + r * C;
            float *zr = nd->z + (size_t)n * nd->size + r * C;
            for (size_t c = 0; c < C; c++)
                zr[c] = xr[c] > 0 ? xr[c] : al[c * sc] * xr[c];
        }
}

/* dalpha = sum over the broadcast of dy x where x < 0 (TF's relu(-x)
 * gradient is 0 at 0); dx = dy (x > 0), alpha dy (x < 0), 0 at 0. */
static void prelu_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const float *x = m->nodes[nd->in[0]].y, *alpha = ddts__nn_wdata(m, nd->w0);
    const struct nn_weight *w = &m->w[nd->w0];
    size_t st[DDTS_MAX_RANK] = {0};
    prelu_strides(nd, st);
    size_t C = (size_t)nd->shape[nd->rank - 1], rows = nd->size / C, sc = st[nd->rank - 1];
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    double *ga = m->tmp;
    if (w->trainable)
        memset(ga, 0, w->n * sizeof *ga);
    for (size_t n = 0; n < b; n++)
        for (size_t r = 0; r < rows; r++) {
            size_t ao = prelu_row(nd, st, r), o = n * nd->size + r * C;
            const float *al = alpha + ao, *xr = x + o, *dz = nd->dz + o;
            for (size_t c = 0; c < C; c++) {
                float g = xr[c] > 0 ? dz[c] : xr[c] < 0 ? al[c * sc] * dz[c] : 0.0f;
                if (w->trainable && xr[c] < 0)
                    ga[ao + c * sc] += (double)dz[c] * xr[c];
                if (dx != NULL)
                    dx[o + c] = acc ? dx[o + c] + g : g;
            }
        }
    if (w->trainable) {
        float *d = ddts__nn_gdata(m, nd->w0);
        for (size_t i = 0; i < w->n; i++)
            d[i] = (float)ga[i];
    }
}

/* A ReLU that the BatchNormalization before it computes (layer_norm.c,
 * bn_link) has nothing left to do in either pass. */
static void activation_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    (void)m;
    (void)b;
    nd->act_done = nd->act_in_prev;
}

static void activation_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    if (!nd->act_in_prev)
        ddts__nn_identity_backward(m, nd, b);
}

static const struct nn_layer_ops activation_ops = {
    .class_names = (const char *const[]){"Activation", "ReLU", "LeakyReLU", "Softmax", "ELU", NULL},
    .kind = NN_ACTIVATION,
    .per_step = 1,
    .doc = "an activation function as a layer",
    .min_in = 1,
    .max_in = 1,
    .parse = activation_parse,
    .infer_shape = ddts__nn_shape_same,
    .forward = activation_forward,
    .backward = activation_backward,
    .out = NN_OUT_ACT,
    .rows = 1,
    .spec_word = "activation",
    .spec_usage = "activation:NAME",
    .spec = activation_spec,
};

static const struct nn_layer_ops prelu_ops = {
    .class_names = (const char *const[]){"PReLU", NULL},
    .kind = NN_PRELU,
    .doc = "x for x > 0, alpha x otherwise; alpha learned, broadcast over shared_axes",
    .min_in = 1,
    .max_in = 1,
    .weight_name = prelu_names,
    .parse = prelu_parse,
    .infer_shape = ddts__nn_shape_same,
    .add_weights = prelu_weights,
    .plan = prelu_plan,
    .forward = prelu_forward,
    .backward = prelu_backward,
};

const struct nn_layer_ops *const ddts__nn_family_activation[] = {&activation_ops, &prelu_ops, NULL};
