/*
 * The layer registry and the passes: the table of every layer family's
 * descriptors (layer.h), lookups by Keras class name and spec word, the
 * helpers family files share, and the forward and backward loops that call
 * each node's hooks. Shapes: a node's buffers are (b, size) with size the
 * product of its per-sample shape; images are (b, H, W, C).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"
#include "tensor/tensor.h"

/* One family per line (helpers add lines here side by side). */
/* clang-format off */
const struct nn_layer_ops *const *const ddts__nn_families[] = {
    ddts__nn_family_dense,
    ddts__nn_family_conv,
    ddts__nn_family_pool,
    ddts__nn_family_norm,
    ddts__nn_family_reshape,
    ddts__nn_family_merge,
    ddts__nn_family_activation,
    ddts__nn_family_dropout,
    ddts__nn_family_embedding,
    ddts__nn_family_recurrent,
    ddts__nn_family_depthwise,
    ddts__nn_family_attention,
    ddts__nn_family_conv3d,
    NULL,
};
/* clang-format on */

const struct nn_layer_ops ddts__nn_input_ops = {
    .class_names = (const char *const[]){"InputLayer", NULL},
    .kind = NN_INPUT,
    .doc = "the model's input: data is copied into its output",
    .min_in = 0,
    .max_in = 0,
    .rows = 1,
};

const struct nn_layer_ops *ddts__nn_layer_find(const char *cls)
{
    if (cls == NULL)
        return NULL;
    for (size_t f = 0; ddts__nn_families[f] != NULL; f++)
        for (size_t i = 0; ddts__nn_families[f][i] != NULL; i++) {
            const struct nn_layer_ops *d = ddts__nn_families[f][i];
            for (size_t k = 0; d->class_names[k] != NULL; k++)
                if (strcmp(d->class_names[k], cls) == 0)
                    return d;
        }
    return NULL;
}

const struct nn_layer_ops *ddts__nn_layer_find_spec(const char *word)
{
    for (size_t f = 0; ddts__nn_families[f] != NULL; f++)
        for (size_t i = 0; ddts__nn_families[f][i] != NULL; i++) {
            const struct nn_layer_ops *d = ddts__nn_families[f][i];
            if (d->spec_word != NULL && strcmp(d->spec_word, word) == 0)
                return d;
        }
    return NULL;
}

void ddts__nn_layer_spec_words(char *buf, size_t cap)
{
    size_t n = 0;
    if (cap == 0)
        return;
    buf[0] = '\0';
    for (size_t f = 0; ddts__nn_families[f] != NULL; f++)
        for (size_t i = 0; ddts__nn_families[f][i] != NULL; i++) {
            const char *w = ddts__nn_families[f][i]->spec_word;
            if (w == NULL)
                continue;
            int k = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", w);
            if (k < 0 || (size_t)k >= cap - n)
                return;
            n += (size_t)k;
        }
}

size_t ddts__nn_layer_sub_rank(const char *cls, const char *sub)
{
    const struct nn_layer_ops *d = ddts__nn_layer_find(cls);
    size_t k = 0;
    for (; d != NULL && d->sub_groups != NULL && d->sub_groups[k] != NULL; k++)
        if (strcmp(d->sub_groups[k], sub) == 0)
            return k;
    return k + 1;
}

const char *ddts__nn_layer_weight_name(const char *cls, const struct nn_weight_flags *f,
                                       size_t index)
{
    const struct nn_layer_ops *d = ddts__nn_layer_find(cls);
    return d != NULL && d->weight_name != NULL ? d->weight_name(f, index) : NULL;
}

int ddts__nn_layer_always_weighted(const char *cls)
{
    const struct nn_layer_ops *d = ddts__nn_layer_find(cls);
    static const struct nn_weight_flags all = {1, 1, 1};
    return d != NULL && !d->weights_optional && d->weight_name != NULL &&
           d->weight_name(&all, 0) != NULL;
}

enum ddts_status ddts_nn_layer_class(size_t i, struct ddts_layer_class *out)
{
    memset(out, 0, sizeof *out);
    for (size_t f = 0; ddts__nn_families[f] != NULL; f++)
        for (size_t k = 0; ddts__nn_families[f][k] != NULL; k++, i--)
            if (i == 0) {
                const struct nn_layer_ops *d = ddts__nn_families[f][k];
                out->name = d->class_names[0];
                out->aliases = d->class_names + 1;
                out->doc = d->doc;
                out->runs = d->parse != NULL;
                out->spec_usage = d->spec_usage;
                return DDTS_OK;
            }
    return DDTS_ENOTFOUND;
}

/* ---- helpers for spec hooks ---- */

int ddts__nn_spec_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int ddts__nn_spec_word_ok(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '>')
            return 0;
    return 1;
}

const char ddts__nn_spec_initializers[] =
    "\"kernel_regularizer\": null, \"bias_regularizer\": null, \"activity_regularizer\": null, "
    "\"kernel_constraint\": null, \"bias_constraint\": null, "
    "\"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": "
    "\"GlorotUniform\", \"config\": {\"seed\": null}, \"registered_name\": null}, "
    "\"bias_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"Zeros\", "
    "\"config\": {}, \"registered_name\": null}";

/* ---- helpers shared by the family files ---- */

/* The loops below open an OpenMP region only on several threads: libgomp
 * makes a system call at the end of every region, even one of a single
 * thread (activations.c). */

static void add_bias_rows(size_t lo, size_t hi, size_t k, const float *bias, float *z)
{
    for (size_t r = lo; r < hi; r++) {
        float *zr = z + r * k;
        for (size_t j = 0; j < k; j++)
            zr[j] += bias[j];
    }
}

void ddts__nn_add_bias(size_t rows, size_t k, const float *bias, float *z, int nt)
{
    if (nt > 1 && rows * k > 65536) {
#pragma omp parallel for num_threads(nt) schedule(static)
        for (long r = 0; r < (long)rows; r++)
            add_bias_rows((size_t)r, (size_t)r + 1, k, bias, z);
    } else {
        add_bias_rows(0, rows, k, bias, z);
    }
}

/* Whether the node's activation is a plain relu applied in place (z == y). */
int ddts__nn_plain_relu_in_place(const struct nn_node *nd)
{
    const struct nn_act *a = &nd->act;
    return nd->z == nd->y && a->kind == ACT_RELU && a->alpha == 0 && a->threshold == 0 &&
           a->max_value <= 0;
}

static void bias_relu_rows(size_t lo, size_t hi, size_t k, const float *bias, float *y)
{
    for (size_t r = lo; r < hi; r++) {
        float *yr = y + r * k;
        for (size_t j = 0; j < k; j++) {
            float v = yr[j] + (bias ? bias[j] : 0.0f);
            yr[j] = v > 0 ? v : 0.0f;
        }
    }
}

/* z += bias, then y = act(z); plain relu in place is fused into one pass.
 * Returns 1 when the activation was applied. */
int ddts__nn_bias_act(struct nn_node *nd, size_t rows, size_t k, const float *bias, int nt)
{
    if (ddts__nn_plain_relu_in_place(nd)) {
        float *y = nd->y;
        if (nt > 1 && rows * k > 65536) {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (long r = 0; r < (long)rows; r++)
                bias_relu_rows((size_t)r, (size_t)r + 1, k, bias, y);
        } else {
            bias_relu_rows(0, rows, k, bias, y);
        }
        return 1;
    }
    if (bias)
        ddts__nn_add_bias(rows, k, bias, nd->z, nt);
    return 0;
}

/* db (k) = sum over rows of dz (rows, k), as one GEMM with a ones vector. */
void ddts__nn_bias_grad(const struct ddts_model *m, size_t rows, size_t k, const float *dz,
                        float *db)
{
    ddts__tensor_sgemm_par(m->threads, 1, 0, k, 1, rows, 1.0f, dz, k, m->ones, 1, 0.0f, db, 1);
}

void ddts__nn_put(float *dst, const float *src, size_t n, int acc)
{
    if (acc) {
        for (size_t i = 0; i < n; i++)
            dst[i] += src[i];
    } else {
        memcpy(dst, src, n * sizeof *dst);
    }
}

enum ddts_status ddts__nn_shape_same(struct ddts_model *m, struct nn_node *nd,
                                     struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    (void)err;
    nd->rank = a->rank;
    memcpy(nd->shape, a->shape, sizeof nd->shape);
    return DDTS_OK;
}

void ddts__nn_identity_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx)
        ddts__nn_put(dx, nd->dz, b * nd->size, acc);
}

/* ---- the passes ---- */

void ddts__nn_flops(const struct ddts_model *m, struct ddts__nn_flops *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < m->n_nodes; i++) {
        const struct nn_node *nd = &m->nodes[i];
        if (nd->ops == NULL)
            continue;
        if (nd->ops->macs == NULL) {
            int trained = 0;
            for (int t = 0; t < nd->n_w; t++)
                trained |= m->w[nd->w0 + t].trainable;
            out->n_uncounted += trained != 0;
            continue;
        }
        double f = 2.0 * nd->ops->macs(m, nd);
        out->forward += f;
        if (nd->n_w > 0 && m->w[nd->w0].trainable)
            out->weight_grad += f;
        if (m->nodes[nd->in[0]].needs_grad)
            out->input_grad += f;
    }
}

void ddts__nn_forward(struct ddts_model *m, size_t b)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        nd->act_done = 0;
        /* No hook: the input and views (Flatten, Reshape). An Activation's z is
         * its input's y, and the activation below computes its y. */
        if (nd->ops->forward != NULL)
            nd->ops->forward(m, nd, b);
        if (nd->act.kind != ACT_LINEAR && !nd->act_done) {
            size_t k = (size_t)(nd->rank > 0 ? nd->shape[nd->rank - 1] : 1);
            ddts__nn_act_forward(&nd->act, b * nd->size / k, k, nd->z, nd->y, m->threads);
        }
    }
}

void ddts__nn_draw(struct ddts_model *m, size_t b)
{
    for (size_t i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].ops->draw != NULL)
            m->nodes[i].ops->draw(m, &m->nodes[i], b);
}

/* Whether node nd's weights are shared with other calls of its layer. */
static int shares_weights(const struct nn_node *nd)
{
    return nd->n_w > 0 && (nd->share_of || nd->n_calls);
}

/* The backward hook of a node whose weights other calls share: it writes its
 * weight gradients into m->gshare (at the weights' offsets, m->grads swapped
 * for the call), which are then added to m->grads: the gradient of a shared
 * weight is the sum over the calls. */
static void backward_shared(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    for (int t = 0; t < nd->n_w; t++) {
        const struct nn_weight *w = &m->w[nd->w0 + t];
        memset(m->gshare + w->off, 0, w->n * sizeof *m->gshare);
    }
    float *grads = m->grads;
    m->grads = m->gshare;
    nd->ops->backward(m, nd, b);
    m->grads = grads;
    for (int t = 0; t < nd->n_w; t++) {
        const struct nn_weight *w = &m->w[nd->w0 + t];
        if (w->trainable)
            ddts__nn_put(grads + w->off, m->gshare + w->off, w->n, 1);
    }
}

void ddts__nn_backward(struct ddts_model *m, size_t b)
{
    ddts__nn_backward_each(m, b, NULL, NULL);
}

void ddts__nn_backward_each(struct ddts_model *m, size_t b, ddts__nn_node_done_fn done,
                            void *userdata)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        if (nd->needs_grad && nd->n_consumers > 1)
            memset(nd->dy, 0, b * nd->size * sizeof *nd->dy);
        if (m->gshare != NULL && shares_weights(nd) && !nd->share_of)
            for (int t = 0; t < nd->n_w; t++) {
                const struct nn_weight *w = &m->w[nd->w0 + t];
                memset(m->grads + w->off, 0, w->n * sizeof *m->grads);
            }
    }
    for (size_t ii = m->n_nodes; ii-- > 0;) {
        struct nn_node *nd = &m->nodes[ii];
        if (nd->needs_grad && nd->kind != NN_INPUT) {
            size_t k = (size_t)(nd->rank > 0 ? nd->shape[nd->rank - 1] : 1);
            int fused_here = m->fused && (int)ii == m->output_node;
            if (nd->act.kind != ACT_LINEAR && !fused_here && !nd->skip_act_bwd)
                ddts__nn_act_backward(&nd->act, b * nd->size / k, k, nd->z, nd->y, nd->dy, nd->dz,
                                      m->threads);
            if (nd->ops->backward != NULL && m->gshare != NULL && shares_weights(nd))
                backward_shared(m, nd, b);
            else if (nd->ops->backward != NULL)
                nd->ops->backward(m, nd, b);
        }
        if (done != NULL)
            done(userdata, m, ii);
    }
}
