/*
 * The merge family: Add, Average, Subtract, Multiply, Maximum, Minimum
 * (inputs of one shape, no broadcasting), Concatenate (any axis) and Dot
 * (Keras' batch_dot of two inputs over one axis each, optionally of
 * l2-normalized inputs: cosine similarity). Maximum/Minimum send each
 * gradient to the input that won, the first one on a tie (TF's
 * maximum/minimum gradients, applied input by input as Keras folds them).
 * Layers with several inputs: nd->in[0 .. n_in) in call order.
 */
#include <math.h>
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

/* dz[i] times d z[i] / d input t[i] for the non-linear merges. Multiply:
 * the product of the other inputs. Maximum / Minimum: dz goes to the first
 * input whose value equals the output (a NaN input: the last one). */
static float merge_grad(const struct ddts_model *m, const struct nn_node *nd, int t, size_t i)
{
    float g = nd->dz[i];
    if (nd->kind == NN_MULTIPLY) {
        for (int u = 0; u < nd->n_in; u++)
            if (u != t)
                g *= m->nodes[nd->in[u]].y[i];
        return g;
    }
    int win = 0;
    while (win < nd->n_in - 1 && m->nodes[nd->in[win]].y[i] != nd->z[i])
        win++;
    return win == t ? g : 0.0f;
}

static void merge_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t n = b * nd->size;
    for (int t = 0; t < nd->n_in; t++) {
        int acc;
        float *dx = ddts__nn_dx(m, nd, t, &acc);
        if (dx == NULL)
            continue;
        if (nd->kind == NN_ADD || nd->kind == NN_AVERAGE || nd->kind == NN_SUBTRACT) {
            /* linear: dz times a constant (a loop the compiler vectorises) */
            float f = nd->kind == NN_AVERAGE              ? 1.0f / (float)nd->n_in
                      : nd->kind == NN_SUBTRACT && t == 1 ? -1.0f
                                                          : 1.0f;
            for (size_t i = 0; i < n; i++)
                dx[i] = acc ? dx[i] + f * nd->dz[i] : f * nd->dz[i];
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            float g = merge_grad(m, nd, t, i);
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

static void concat_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    concat(m, nd, b, 0);
}

static void concat_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    concat(m, nd, b, 1);
}

/* ---- Dot ---- */

/* Keras' `axes`: one int for both inputs or a pair; batch included, may be negative. */
static enum ddts_status dot_parse(struct nn_parse *p, struct nn_node *nd)
{
    int64_t ax[2];
    if (ddts__nn_cfg_is_number(p, "axes")) {
        if (ddts__nn_cfg_int(p, "axes", -DDTS_MAX_RANK - 1, DDTS_MAX_RANK + 1, 0,
                             &nd->dot_axes[0]) != 0)
            return ddts__nn_bad(p, "bad axes");
        nd->dot_axes[1] = nd->dot_axes[0];
    } else if (ddts__nn_cfg_int_list(p, "axes", 2, ax) == 2 && ax[0] > -DDTS_MAX_RANK - 2 &&
               ax[0] < DDTS_MAX_RANK + 2 && ax[1] > -DDTS_MAX_RANK - 2 &&
               ax[1] < DDTS_MAX_RANK + 2) {
        nd->dot_axes[0] = (int)ax[0];
        nd->dot_axes[1] = (int)ax[1];
    } else {
        return ddts__nn_bad(p, "axes must be an int or a list of two ints");
    }
    nd->normalize = ddts__nn_cfg_bool(p, "normalize", 0);
    return DDTS_OK;
}

/* One input of a Dot seen as a matrix (U, K) per sample: element (u, k) at
 * u * su + k * sk; K runs along the contracted axis. */
struct dot_view {
    size_t U, K, su, sk;
    int other; /* the per-sample axis that is not contracted, -1 for a vector */
};

/* The per-sample axis of input t (0 or 1) that Dot contracts, or -1. */
static int dot_axis(const struct nn_node *nd, const struct nn_node *a, int t)
{
    int ax = nd->dot_axes[t];
    ax = ax < 0 ? ax + a->rank + 1 : ax;
    return ax >= 1 && ax <= a->rank ? ax - 1 : -1;
}

static struct dot_view dot_view_of(const struct nn_node *nd, const struct nn_node *a, int t)
{
    struct dot_view v = {1, (size_t)a->shape[0], 0, 1, -1};
    if (a->rank == 2) {
        int p = dot_axis(nd, a, t) == 1; /* dot_shape checked it is 0 or 1 */
        v.other = 1 - p;
        v.K = (size_t)a->shape[p];
        v.U = (size_t)a->shape[v.other];
        v.sk = p == 0 ? (size_t)a->shape[1] : 1;
        v.su = p == 0 ? 1 : (size_t)a->shape[1];
    }
    return v;
}

static enum ddts_status dot_shape(struct ddts_model *m, struct nn_node *nd, struct ddts_error *err)
{
    if (nd->n_in != 2)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (Dot) needs 2 inputs, got %d", nd->name,
                              nd->n_in);
    const struct nn_node *a = &m->nodes[nd->in[0]], *b = &m->nodes[nd->in[1]];
    for (int t = 0; t < 2; t++) {
        const struct nn_node *x = t ? b : a;
        if (x->rank < 1 || x->rank > 2)
            return ddts_error_set(err, DDTS_EUNSUPPORTED,
                                  "layer '%s' (Dot): input '%s' has %d dimensions besides the "
                                  "batch; only 1 or 2 are supported",
                                  nd->name, x->name, x->rank);
        if (dot_axis(nd, x, t) < 0)
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "layer '%s' (Dot): axis %d out of range for input '%s'", nd->name,
                                  nd->dot_axes[t], x->name);
    }
    struct dot_view va = dot_view_of(nd, a, 0), vb = dot_view_of(nd, b, 1);
    if (va.K != vb.K)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (Dot): the contracted axes differ in size (%zu in "
                              "'%s', %zu in '%s')",
                              nd->name, va.K, a->name, vb.K, b->name);
    nd->rank = 0;
    if (va.other >= 0)
        nd->shape[nd->rank++] = (int64_t)va.U;
    if (vb.other >= 0)
        nd->shape[nd->rank++] = (int64_t)vb.U;
    if (nd->rank == 0) /* two vectors: (batch, 1) as in Keras */
        nd->shape[nd->rank++] = 1;
    return DDTS_OK;
}

/* The l2-normalized copies of both inputs (normalize=True). */
static void dot_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    if (!nd->normalize)
        return;
    nd->aux = ddts__nn_plan_buf(cap, m->nodes[nd->in[0]].size, &need->fail);
    nd->aux2 = ddts__nn_plan_buf(cap, m->nodes[nd->in[1]].size, &need->fail);
}

/* Keras' l2_normalize epsilon: x / sqrt(max(sum x^2, 1e-12)). */
#define DOT_EPS 1e-12

static float dot_inv_norm(const float *x, const struct dot_view *v, size_t u, double *sq)
{
    double s = 0;
    for (size_t k = 0; k < v->K; k++) {
        double e = x[u * v->su + k * v->sk];
        s += e * e;
    }
    *sq = s;
    return (float)(1.0 / sqrt(s > DOT_EPS ? s : DOT_EPS));
}

static void dot_normalize(const float *x, float *xn, const struct dot_view *v, size_t b,
                          size_t size)
{
    for (size_t s = 0; s < b; s++)
        for (size_t u = 0; u < v->U; u++) {
            double sq;
            const float *xs = x + s * size;
            float inv = dot_inv_norm(xs, v, u, &sq);
            for (size_t k = 0; k < v->K; k++) {
                size_t at = u * v->su + k * v->sk;
                xn[s * size + at] = xs[at] * inv;
            }
        }
}

static void dot_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]], *c = &m->nodes[nd->in[1]];
    struct dot_view va = dot_view_of(nd, a, 0), vc = dot_view_of(nd, c, 1);
    const float *x = a->y, *y = c->y;
    if (nd->normalize) {
        dot_normalize(a->y, nd->aux, &va, b, a->size);
        dot_normalize(c->y, nd->aux2, &vc, b, c->size);
        x = nd->aux;
        y = nd->aux2;
    }
    for (size_t s = 0; s < b; s++) {
        const float *xs = x + s * a->size, *ys = y + s * c->size;
        float *z = nd->z + s * nd->size;
        for (size_t u = 0; u < va.U; u++)
            for (size_t v = 0; v < vc.U; v++) {
                double acc = 0;
                for (size_t k = 0; k < va.K; k++)
                    acc += (double)xs[u * va.su + k * va.sk] * ys[v * vc.su + k * vc.sk];
                z[u * vc.U + v] = (float)acc;
            }
    }
}

/* Gradient of input t: d(normalized or plain input)[u, k] = sum_v dz(u, v) other[v, k]
 * (dz transposed for the second input), then back through the normalization:
 * dx = (dxn - xn (xn . dxn)) / |x| where |x|^2 > eps, dxn / sqrt(eps) below. */
static void dot_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    for (int t = 0; t < 2; t++) {
        int acc;
        float *dx = ddts__nn_dx(m, nd, t, &acc);
        if (dx == NULL)
            continue;
        const struct nn_node *a = &m->nodes[nd->in[t]], *o = &m->nodes[nd->in[1 - t]];
        struct dot_view va = dot_view_of(nd, a, t), vo = dot_view_of(nd, o, 1 - t);
        const float *xn = nd->normalize ? (t ? nd->aux2 : nd->aux) : a->y;
        const float *on = nd->normalize ? (t ? nd->aux : nd->aux2) : o->y;
        /* dz (U0, U1): element (u, v) of input t's view */
        size_t du = t == 0 ? vo.U : 1, dv = t == 0 ? 1 : va.U;
        for (size_t s = 0; s < b; s++) {
            const float *dz = nd->dz + s * nd->size, *os = on + s * o->size;
            const float *xs = xn + s * a->size, *raw = a->y + s * a->size;
            float *dxs = dx + s * a->size;
            for (size_t u = 0; u < va.U; u++) {
                double proj = 0, sq = 0;
                float inv = 1.0f;
                if (nd->normalize) {
                    inv = dot_inv_norm(raw, &va, u, &sq);
                    for (size_t k = 0; k < va.K && sq > DOT_EPS; k++) {
                        double g = 0;
                        for (size_t v = 0; v < vo.U; v++)
                            g += (double)dz[u * du + v * dv] * os[v * vo.su + k * vo.sk];
                        proj += g * xs[u * va.su + k * va.sk];
                    }
                }
                for (size_t k = 0; k < va.K; k++) {
                    double g = 0;
                    for (size_t v = 0; v < vo.U; v++)
                        g += (double)dz[u * du + v * dv] * os[v * vo.su + k * vo.sk];
                    size_t at = u * va.su + k * va.sk;
                    if (nd->normalize)
                        g = (g - xs[at] * proj) * inv;
                    dxs[at] = acc ? dxs[at] + (float)g : (float)g;
                }
            }
        }
    }
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
    .backward = merge_backward,
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
    .backward = merge_backward,
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

static const struct nn_layer_ops dot_ops = {
    .class_names = (const char *const[]){"Dot", NULL},
    .kind = NN_DOT,
    .doc = "dot product of two inputs over one axis each (batch_dot; normalize: cosine)",
    .min_in = 2,
    .max_in = 2,
    .parse = dot_parse,
    .infer_shape = dot_shape,
    .plan = dot_plan,
    .forward = dot_forward,
    .backward = dot_backward,
};

const struct nn_layer_ops *const ddts__nn_family_merge[] = {
    &add_ops,     &average_ops, &subtract_ops, &multiply_ops, &maximum_ops,
    &minimum_ops, &concat_ops,  &dot_ops,      NULL,
};
