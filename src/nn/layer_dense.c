/*
 * The dense family: Dense, z (..., units) = x (..., in) W (in, units) + b, on
 * the last axis of any rank (leading axes are batch-like), and the classes
 * of Keras files ddts reads by name only (EinsumDense, LocallyConnected).
 */
#include <string.h>

#include "nn/layer.h"
#include "tensor/tensor.h"

const char *ddts__nn_kernel_bias(const struct nn_weight_flags *f, size_t index)
{
    static const char *const kb[] = {"kernel", "bias"};
    return index < 2 && (index == 0 || f->use_bias) ? kb[index] : NULL;
}

static enum ddts_status dense_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st;
    if (ddts__nn_cfg_int(p, "units", 1, 1 << 24, 0, &nd->units) != 0)
        return ddts__nn_bad(p, "units must be a positive integer");
    nd->use_bias = ddts__nn_cfg_bool(p, "use_bias", 1);
    static const char *const nulls[] = {"activity_regularizer", "kernel_constraint",
                                        "bias_constraint", "lora_rank"};
    if ((st = ddts__nn_cfg_act(p, "activation", &nd->act)) != DDTS_OK)
        return st;
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if ((st = ddts__nn_cfg_null(p, nulls[i])) != DDTS_OK)
            return st;
    return DDTS_OK;
}

static enum ddts_status dense_shape(struct ddts_model *m, struct nn_node *nd,
                                    struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (a->rank < 1)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s): input has rank 0", nd->name,
                              nd->class_name);
    nd->rank = a->rank;
    memcpy(nd->shape, a->shape, sizeof nd->shape);
    nd->shape[nd->rank - 1] = nd->units;
    return DDTS_OK;
}

static enum ddts_status dense_weights(struct nn_parse *p, struct nn_node *nd)
{
    const struct nn_node *a = &p->m->nodes[nd->in[0]];
    int64_t ws[2] = {a->shape[a->rank - 1], nd->units};
    int use_bias = nd->use_bias; /* nd may move as weights are added */
    enum ddts_status st = ddts__nn_cfg_weight(p, "kernel", 2, ws, 1, "kernel_initializer",
                                              ddts__nn_init_glorot, "kernel_regularizer");
    if (st == DDTS_OK && use_bias)
        st = ddts__nn_cfg_weight(p, "bias", 1, ws + 1, 1, "bias_initializer", ddts__nn_init_zeros,
                                 "bias_regularizer");
    return st;
}

/* The ones vector its bias gradient GEMM reads: one per row. */
static void dense_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    const struct nn_node *nd = &m->nodes[i];
    size_t rows = cap * (nd->size / (size_t)nd->shape[nd->rank - 1]);
    need->ones_n = rows > need->ones_n ? rows : need->ones_n;
}

/* z (R, units) = x (R, in) W (in, units) + b */
static void dense_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t in = (size_t)a->shape[a->rank - 1], rows = b * (a->size / in);
    ddts__tensor_sgemm_par(m->threads, 0, 0, rows, (size_t)nd->units, in, 1.0f, a->y, in,
                           ddts__nn_wdata(m, nd->w0), (size_t)nd->units, 0.0f, nd->z,
                           (size_t)nd->units);
    nd->act_done =
        ddts__nn_bias_act(nd, rows, (size_t)nd->units,
                          nd->use_bias ? ddts__nn_wdata(m, nd->w0 + 1) : NULL, m->threads);
}

static void dense_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t in = (size_t)a->shape[a->rank - 1], rows = b * (a->size / in), u = (size_t)nd->units;
    int train = m->w[nd->w0].trainable;
    if (train && nd->use_bias)
        ddts__nn_bias_grad(m, rows, u, nd->dz, ddts__nn_gdata(m, nd->w0 + 1));
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    ddts__tensor_linear_grads(m->threads, rows, in, u, a->y, nd->dz, ddts__nn_wdata(m, nd->w0),
                              train ? ddts__nn_gdata(m, nd->w0) : NULL, dx, acc);
}

static double dense_macs(const struct ddts_model *m, const struct nn_node *nd)
{
    /* (rows per sample x in) inputs, each times `units` weights */
    return (double)m->nodes[nd->in[0]].size * (double)nd->units;
}

/* "dense:UNITS[:ACTIVATION]": glorot_uniform kernel, zero bias. */
static enum ddts_status dense_spec(struct nn_spec *s)
{
    long v;
    if (s->n_arg < 2 || s->n_arg > 3 || ddts__nn_spec_int(s->arg[1], 1, 1L << 24, &v) != 0)
        return s->fail(s, DDTS_EINVAL, "expected dense:UNITS[:ACTIVATION]");
    const char *act = s->n_arg == 3 ? s->arg[2] : "linear";
    if (!ddts__nn_spec_word_ok(act))
        return s->fail(s, DDTS_EINVAL, "bad activation name");
    enum ddts_status st = s->open(s, "Dense", "dense");
    if (st != DDTS_OK)
        return st;
    s->json(s, ", \"units\": %ld, \"activation\": \"%s\", \"use_bias\": true, %s", v, act,
            ddts__nn_spec_initializers);
    int64_t k[2] = {s->shape[s->rank - 1], v};
    st = s->weight(s, "kernel", 2, k, 2, (double)k[0], (double)k[1]);
    if (st == DDTS_OK)
        st = s->weight(s, "bias", 1, &k[1], 0, 0, 0);
    s->shape[s->rank - 1] = v;
    return st;
}

static const struct nn_layer_ops dense_ops = {
    .class_names = (const char *const[]){"Dense", NULL},
    .kind = NN_DENSE,
    .per_step = 1,
    .doc = "z = x W + b on the last axis, then the activation",
    .min_in = 1,
    .max_in = 1,
    .weight_name = ddts__nn_kernel_bias,
    .parse = dense_parse,
    .infer_shape = dense_shape,
    .add_weights = dense_weights,
    .plan = dense_plan,
    .forward = dense_forward,
    .backward = dense_backward,
    .macs = dense_macs,
    .rows = 1,
    .spec_word = "dense",
    .spec_usage = "dense:UNITS[:ACTIVATION]",
    .spec = dense_spec,
};

/* Known by name (their files' weights are named), not run by the engine. */
static const struct nn_layer_ops dense_like_ops = {
    .class_names =
        (const char *const[]){"EinsumDense", "LocallyConnected1D", "LocallyConnected2D", NULL},
    .kind = NN_NAMED,
    .doc = "not supported by the engine; weights kernel, bias",
    .weight_name = ddts__nn_kernel_bias,
};

const struct nn_layer_ops *const ddts__nn_family_dense[] = {&dense_ops, &dense_like_ops, NULL};
