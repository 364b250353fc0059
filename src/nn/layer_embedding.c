/*
 * The embedding family: Embedding, y (..., D) = E[x (...)] with E the
 * `embeddings` weight (input_dim, output_dim), default uniform(-0.05, 0.05).
 * Input values are class indices; indices outside [0, input_dim) give zero
 * vectors and indices have no gradient.
 *
 * mask_zero starts a mask (id 0 is padding) that the recurrent layers and
 * GlobalAveragePooling1D read (layer_recurrent.c, ddts__nn_mask).
 */
#include <string.h>

#include "nn/layer.h"

static enum ddts_status embedding_parse(struct nn_parse *p, struct nn_node *nd)
{
    int input_dim;
    if (ddts__nn_cfg_int(p, "output_dim", 1, 1 << 24, 0, &nd->units) != 0 ||
        ddts__nn_cfg_int(p, "input_dim", 1, 1 << 30, 0, &input_dim) != 0)
        return ddts__nn_bad(p, "input_dim and output_dim must be positive");
    nd->mask_zero = ddts__nn_cfg_bool(p, "mask_zero", 0);
    return DDTS_OK;
}

static enum ddts_status embedding_shape(struct ddts_model *m, struct nn_node *nd,
                                        struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (a->rank + 1 > DDTS_MAX_RANK)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s): input rank %d", nd->name,
                              nd->class_name, a->rank);
    nd->rank = a->rank + 1;
    memcpy(nd->shape, a->shape, sizeof nd->shape);
    nd->shape[a->rank] = nd->units;
    return DDTS_OK;
}

static enum ddts_status embedding_weights(struct nn_parse *p, struct nn_node *nd)
{
    static const struct nn_init uniform = {INIT_RANDOM_UNIFORM, -0.05, 0.05, 0, 0, 0};
    int input_dim = 0;
    if (ddts__nn_cfg_int(p, "input_dim", 1, 1 << 30, 0, &input_dim) != 0)
        return ddts__nn_bad(p, "input_dim and output_dim must be positive");
    int64_t ws[2] = {input_dim, nd->units};
    return ddts__nn_cfg_weight(p, "embeddings", 2, ws, 1, "embeddings_initializer", uniform,
                               "embeddings_regularizer");
}

static const char *embedding_names(const struct nn_weight_flags *f, size_t index)
{
    (void)f;
    return index == 0 ? "embeddings" : NULL;
}

static void embedding_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    const float *E = ddts__nn_wdata(m, nd->w0);
    size_t D = (size_t)nd->units, R = b * a->size;
    float V = (float)m->w[nd->w0].shape[0];
    for (size_t r = 0; r < R; r++) {
        float v = a->y[r];
        if (v >= 0 && v < V)
            memcpy(nd->z + r * D, E + (size_t)v * D, D * sizeof(float));
        else
            memset(nd->z + r * D, 0, D * sizeof(float));
    }
}

static void embedding_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t D = (size_t)nd->units, R = b * a->size;
    const struct nn_weight *w = &m->w[nd->w0];
    float V = (float)w->shape[0];
    if (w->trainable) {
        float *dE = ddts__nn_gdata(m, nd->w0);
        memset(dE, 0, w->n * sizeof *dE);
        for (size_t r = 0; r < R; r++) {
            float v = a->y[r];
            if (v >= 0 && v < V) {
                float *d = dE + (size_t)v * D;
                const float *g = nd->dz + r * D;
                for (size_t j = 0; j < D; j++)
                    d[j] += g[j];
            }
        }
    }
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx && !acc) /* indices have no gradient */
        memset(dx, 0, R * sizeof *dx);
}

static const struct nn_layer_ops embedding_ops = {
    .class_names = (const char *const[]){"Embedding", NULL},
    .kind = NN_EMBEDDING,
    .doc = "a row of the embeddings table per index",
    .min_in = 1,
    .max_in = 1,
    .weight_name = embedding_names,
    .parse = embedding_parse,
    .infer_shape = embedding_shape,
    .add_weights = embedding_weights,
    .forward = embedding_forward,
    .backward = embedding_backward,
};

const struct nn_layer_ops *const ddts__nn_family_embedding[] = {&embedding_ops, NULL};
