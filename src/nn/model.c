/* The model graph: building, shape inference, the flat weight buffer, buffer
 * planning and the public accessors. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn.h"
#include "tensor/tensor.h"

/* Largest im2col scratch we plan, in floats (64 MiB): bigger batches are
 * convolved in chunks of images. */
#define COL_MAX_FLOATS ((size_t)1 << 24)
/* A convolution that keeps its im2col for the backward pass needs the
 * shared scratch only for the input gradient's columns; those are computed
 * in chunks of at most this many floats (2 MiB) rather than for the whole
 * batch: the GEMMs stay large (thousands of rows) and the scratch small. */
#define DCOL_MAX_FLOATS ((size_t)1 << 19)

static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t nc = *cap ? *cap * 2 : 16;
    void *q = ddts_realloc(*p, nc * elem);
    if (q == NULL)
        return -1;
    memset((char *)q + *cap * elem, 0, (nc - *cap) * elem);
    *p = q;
    *cap = nc;
    return 0;
}

enum ddts_status ddts__nn_add_node(struct ddts_model *m, const char *name, const char *class_name,
                                   enum nn_kind kind, int entry, const int *in, int n_in,
                                   int *out_idx, struct ddts_error *err)
{
    if (m->n_nodes >= DDTS_MAX_LAYERS)
        return ddts_error_set(err, DDTS_ELIMIT, "model: more than %d layers", DDTS_MAX_LAYERS);
    if (grow((void **)&m->nodes, &m->cap_nodes, m->n_nodes, sizeof *m->nodes) != 0)
        return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory");
    struct nn_node *nd = &m->nodes[m->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->name = ddts_strdup(name);
    nd->class_name = ddts_strdup(class_name);
    nd->in = n_in > 0 ? ddts_mallocarray((size_t)n_in, sizeof *nd->in) : NULL;
    if (nd->name == NULL || nd->class_name == NULL || (n_in > 0 && nd->in == NULL)) {
        ddts_free(nd->name);
        ddts_free(nd->class_name);
        ddts_free(nd->in);
        memset(nd, 0, sizeof *nd);
        return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory");
    }
    if (n_in > 0)
        memcpy(nd->in, in, (size_t)n_in * sizeof *in);
    nd->n_in = n_in;
    nd->kind = kind;
    nd->entry = entry;
    nd->trainable = 1;
    nd->use_bias = 1;
    nd->kh = nd->kw = nd->sh = nd->sw = nd->dh = nd->dw = 1;
    nd->w0 = (int)m->n_w;
    *out_idx = (int)m->n_nodes++;
    return DDTS_OK;
}

enum ddts_status ddts__nn_add_weight(struct ddts_model *m, int node, const char *name, int rank,
                                     const int64_t *shape, int trainable,
                                     const struct nn_init *init, struct ddts_error *err)
{
    struct nn_node *nd = &m->nodes[node];
    if (grow((void **)&m->w, &m->cap_w, m->n_w, sizeof *m->w) != 0)
        return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory");
    struct nn_weight *w = &m->w[m->n_w];
    memset(w, 0, sizeof *w);
    size_t n = 1;
    for (int i = 0; i < rank; i++) {
        if (shape[i] <= 0 || ddts_size_mul(n, (size_t)shape[i], &n) != 0 || n > DDTS_MAX_PARAMS)
            return ddts_error_set(err, DDTS_ELIMIT, "layer '%s' (%s): weight '%s' is too large",
                                  nd->name, nd->class_name, name);
        w->shape[i] = shape[i];
    }
    w->name = ddts_strdup(name);
    if (w->name == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory");
    w->layer_name = nd->name;
    w->node = node;
    w->rank = rank;
    w->n = n;
    w->trainable = trainable && nd->trainable;
    w->init = *init;
    if (nd->n_w == 0)
        nd->w0 = (int)m->n_w;
    nd->n_w++;
    m->n_w++;
    return DDTS_OK;
}

enum ddts_status ddts__nn_add_entry(struct ddts_model *m, const char *name, const char *class_name,
                                    int *out_idx, struct ddts_error *err)
{
    if (grow((void **)&m->entries, &m->cap_entries, m->n_entries, sizeof *m->entries) != 0)
        return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory");
    struct nn_entry *e = &m->entries[m->n_entries];
    memset(e, 0, sizeof *e);
    e->name = ddts_strdup(name);
    e->class_name = ddts_strdup(class_name);
    if (e->name == NULL || e->class_name == NULL) {
        ddts_free(e->name);
        ddts_free(e->class_name);
        e->name = e->class_name = NULL;
        return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory");
    }
    e->node_out = -1;
    *out_idx = (int)m->n_entries++;
    return DDTS_OK;
}

/* TF's output length and leading padding of a window over `in` cells. */
static int out_len(int in, int k, int s, int d, int same, int *pad_lead, int *pad_total)
{
    int dk = d * (k - 1) + 1;
    int o;
    if (same) {
        o = (in + s - 1) / s;
        int pt = (o - 1) * s + dk - in;
        if (pt < 0)
            pt = 0;
        *pad_lead = pt / 2;
        *pad_total = pt;
    } else {
        o = in >= dk ? (in - dk) / s + 1 : 0;
        *pad_lead = 0;
        *pad_total = 0;
    }
    return o;
}

#define SHAPE_ERR(...) ddts_error_set(err, DDTS_ESHAPE, __VA_ARGS__)

enum ddts_status ddts__nn_infer_shape(struct ddts_model *m, int i, struct ddts_error *err)
{
    struct nn_node *nd = &m->nodes[i];
    const struct nn_node *a = nd->n_in > 0 ? &m->nodes[nd->in[0]] : NULL;
    const char *nm = nd->name, *cl = nd->class_name;
    if (nd->kind != NN_INPUT && a == NULL)
        return SHAPE_ERR("layer '%s' (%s) has no input", nm, cl);
    switch (nd->kind) {
    case NN_INPUT:
        break;
    case NN_DENSE:
        if (a->rank < 1)
            return SHAPE_ERR("layer '%s' (%s): input has rank 0", nm, cl);
        nd->rank = a->rank;
        memcpy(nd->shape, a->shape, sizeof nd->shape);
        nd->shape[nd->rank - 1] = nd->units;
        break;
    case NN_CONV2D:
    case NN_MAXPOOL:
    case NN_AVGPOOL: {
        int want = nd->dim1 ? 2 : 3;
        if (a->rank != want)
            return SHAPE_ERR("layer '%s' (%s) needs %s input, got rank %d", nm, cl,
                             nd->dim1 ? "(T, C)" : "(H, W, C)", a->rank);
        int tph, tpw;
        int oh = out_len((int)nn_h(a), nd->kh, nd->sh, nd->dh, nd->same, &nd->pt, &tph);
        int ow;
        if (nd->same == 2) { /* causal (Conv1D): all the padding on the left */
            tpw = nd->dw * (nd->kw - 1);
            nd->pl = tpw;
            ow = ((int)nn_w(a) - 1) / nd->sw + 1;
        } else {
            ow = out_len((int)nn_w(a), nd->kw, nd->sw, nd->dw, nd->same, &nd->pl, &tpw);
        }
        nd->pb = tph - nd->pt;
        nd->pr = tpw - nd->pl;
        if (oh <= 0 || ow <= 0)
            return SHAPE_ERR("layer '%s' (%s): input (%lld, %lld) is smaller than the window", nm,
                             cl, (long long)nn_h(a), (long long)nn_w(a));
        int64_t ch = nd->kind == NN_CONV2D ? nd->units : nn_c(a);
        nd->rank = want;
        if (nd->dim1) {
            nd->shape[0] = ow;
            nd->shape[1] = ch;
        } else {
            nd->shape[0] = oh;
            nd->shape[1] = ow;
            nd->shape[2] = ch;
        }
        break;
    }
    case NN_CONV2DT: {
        if (a->rank != 3)
            return SHAPE_ERR("layer '%s' (%s) needs (H, W, C) input, got rank %d", nm, cl, a->rank);
        int o[2];
        int in[2] = {(int)a->shape[0], (int)a->shape[1]};
        int k[2] = {nd->kh, nd->kw}, s[2] = {nd->sh, nd->sw}, d[2] = {nd->dh, nd->dw};
        int pl[2];
        for (int t = 0; t < 2; t++) {
            int dk = d[t] * (k[t] - 1) + 1;
            o[t] = nd->same ? in[t] * s[t] : in[t] * s[t] + (dk > s[t] ? dk - s[t] : 0);
            int tot = (in[t] - 1) * s[t] + dk - o[t];
            pl[t] = tot > 0 ? tot / 2 : 0;
        }
        nd->pt = pl[0];
        nd->pl = pl[1];
        nd->rank = 3;
        nd->shape[0] = o[0];
        nd->shape[1] = o[1];
        nd->shape[2] = nd->units;
        break;
    }
    case NN_GAP:
    case NN_GMP: {
        int want = nd->pool1d ? 2 : 3;
        if (a->rank != want)
            return SHAPE_ERR("layer '%s' (%s) needs %s input, got rank %d", nm, cl,
                             nd->pool1d ? "(T, C)" : "(H, W, C)", a->rank);
        if (nd->keepdims) {
            nd->rank = want;
            for (int t = 0; t < want - 1; t++)
                nd->shape[t] = 1;
            nd->shape[want - 1] = a->shape[want - 1];
        } else {
            nd->rank = 1;
            nd->shape[0] = a->shape[want - 1];
        }
        break;
    }
    case NN_EMBEDDING:
        if (a->rank + 1 > DDTS_MAX_RANK)
            return SHAPE_ERR("layer '%s' (%s): input rank %d", nm, cl, a->rank);
        nd->rank = a->rank + 1;
        memcpy(nd->shape, a->shape, sizeof nd->shape);
        nd->shape[a->rank] = nd->units;
        break;
    case NN_FLATTEN:
        nd->rank = 1;
        nd->shape[0] = (int64_t)a->size;
        break;
    case NN_RESHAPE: {
        int neg = -1;
        size_t known = 1;
        if (nd->axis > 0) /* inferred again (ddts_model_bind_input): the -1 it resolved */
            nd->shape[nd->axis - 1] = -1;
        for (int t = 0; t < nd->rank; t++) {
            if (nd->shape[t] == -1) {
                if (neg >= 0)
                    return SHAPE_ERR("layer '%s' (%s): two -1 in target_shape", nm, cl);
                neg = t;
            } else if (nd->shape[t] <= 0) {
                return SHAPE_ERR("layer '%s' (%s): bad target_shape", nm, cl);
            } else {
                known *= (size_t)nd->shape[t];
            }
        }
        if (neg >= 0) {
            if (known == 0 || a->size % known != 0)
                return SHAPE_ERR("layer '%s' (%s): cannot reshape %zu elements", nm, cl, a->size);
            nd->shape[neg] = (int64_t)(a->size / known);
            nd->axis = neg + 1;
            known = a->size;
        }
        if (known != a->size)
            return SHAPE_ERR("layer '%s' (%s): target_shape has %zu elements, input %zu", nm, cl,
                             known, a->size);
        break;
    }
    case NN_RNN:
        if (a->rank != 2)
            return SHAPE_ERR("layer '%s' (%s) needs (T, F) input, got rank %d", nm, cl, a->rank);
        nd->rnn.T = (int)a->shape[0];
        nd->rnn.F = (int)a->shape[1];
        nd->rank = nd->rnn.return_sequences ? 2 : 1;
        nd->shape[0] = nd->rnn.return_sequences ? a->shape[0] : nd->rnn.U;
        nd->shape[1] = nd->rnn.U;
        break;
    case NN_REPEAT:
        if (a->rank != 1)
            return SHAPE_ERR("layer '%s' (%s) needs (F) input, got rank %d", nm, cl, a->rank);
        nd->rank = 2;
        nd->shape[0] = nd->repeat;
        nd->shape[1] = a->shape[0];
        break;
    case NN_MASKING:
    case NN_DROPOUT:
    case NN_LAYERNORM:
    case NN_ACTIVATION:
    case NN_BATCHNORM:
    case NN_NORMALIZATION:
    case NN_RESCALING:
        nd->rank = a->rank;
        memcpy(nd->shape, a->shape, sizeof nd->shape);
        break;
    case NN_UPSAMPLE:
    case NN_ZEROPAD:
        if (nd->dim1) { /* (T, C) */
            if (a->rank != 2)
                return SHAPE_ERR("layer '%s' (%s) needs (T, C) input, got rank %d", nm, cl,
                                 a->rank);
            nd->rank = 2;
            nd->shape[0] =
                nd->kind == NN_UPSAMPLE ? a->shape[0] * nd->kw : a->shape[0] + nd->pl + nd->pr;
            nd->shape[1] = a->shape[1];
            if (nd->shape[0] <= 0)
                return SHAPE_ERR("layer '%s' (%s): cropping leaves no step of %lld", nm, cl,
                                 (long long)a->shape[0]);
            break;
        }
        if (a->rank != 3)
            return SHAPE_ERR("layer '%s' (%s) needs (H, W, C) input, got rank %d", nm, cl, a->rank);
        nd->rank = 3;
        if (nd->kind == NN_UPSAMPLE) {
            nd->shape[0] = a->shape[0] * nd->kh;
            nd->shape[1] = a->shape[1] * nd->kw;
        } else {
            nd->shape[0] = a->shape[0] + nd->pt + nd->pb;
            nd->shape[1] = a->shape[1] + nd->pl + nd->pr;
        }
        nd->shape[2] = a->shape[2];
        break;
    case NN_ADD:
    case NN_AVERAGE:
    case NN_SUBTRACT:
    case NN_MULTIPLY:
        if (nd->kind == NN_SUBTRACT && nd->n_in != 2)
            return SHAPE_ERR("layer '%s' (%s) needs 2 inputs, got %d", nm, cl, nd->n_in);
        for (int t = 1; t < nd->n_in; t++) {
            const struct nn_node *b = &m->nodes[nd->in[t]];
            if (b->rank != a->rank || memcmp(b->shape, a->shape, sizeof a->shape) != 0)
                return SHAPE_ERR("layer '%s' (%s): inputs '%s' and '%s' differ in shape", nm, cl,
                                 a->name, b->name);
        }
        nd->rank = a->rank;
        memcpy(nd->shape, a->shape, sizeof nd->shape);
        break;
    case NN_CONCAT: {
        if (nd->keras_axis == 0) /* the config's axis, kept for inferring again */
            nd->keras_axis = nd->axis;
        int ax = nd->keras_axis < 0 ? a->rank + nd->keras_axis : nd->keras_axis - 1;
        if (ax < 0 || ax >= a->rank)
            return SHAPE_ERR("layer '%s' (%s): axis %d out of range", nm, cl, nd->axis);
        nd->axis = ax;
        nd->rank = a->rank;
        memcpy(nd->shape, a->shape, sizeof nd->shape);
        for (int t = 1; t < nd->n_in; t++) {
            const struct nn_node *b = &m->nodes[nd->in[t]];
            for (int q = 0; q < a->rank; q++)
                if (b->rank != a->rank || (q != ax && b->shape[q] != a->shape[q]))
                    return SHAPE_ERR("layer '%s' (%s): inputs '%s' and '%s' differ in shape", nm,
                                     cl, a->name, b->name);
            nd->shape[ax] += b->shape[ax];
        }
        break;
    }
    }
    if (nd->rank < 0 || nd->rank > DDTS_MAX_RANK)
        return SHAPE_ERR("layer '%s' (%s): rank %d", nm, cl, nd->rank);
    size_t n = 1;
    for (int t = 0; t < nd->rank; t++) {
        if (nd->shape[t] <= 0 || ddts_size_mul(n, (size_t)nd->shape[t], &n) != 0 || n > (1u << 30))
            return ddts_error_set(err, DDTS_ELIMIT, "layer '%s' (%s): output is too large", nm, cl);
    }
    nd->size = n;
    return DDTS_OK;
}

enum ddts_status ddts__nn_finalize(struct ddts_model *m, struct ddts_error *err)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        nd->n_consumers = 0;
        nd->needs_grad = 0;
        if (nd->kind != NN_INPUT) {
            for (int t = 0; t < nd->n_in; t++)
                if (m->nodes[nd->in[t]].needs_grad)
                    nd->needs_grad = 1;
            for (int t = 0; t < nd->n_w; t++)
                if (m->w[nd->w0 + t].trainable)
                    nd->needs_grad = 1;
        }
    }
    /* Gradients flow back from the output: every node on a path from a
     * trainable weight to the output needs dy. Output always. */
    for (size_t i = 0; i < m->n_nodes; i++)
        for (int t = 0; t < m->nodes[i].n_in; t++)
            m->nodes[m->nodes[i].in[t]].n_consumers++;
    /* Entries: weight lists, trainable first then non-trainable. */
    size_t off = 0;
    m->n_trainable = 0;
    for (size_t e = 0; e < m->n_entries; e++) {
        struct nn_entry *en = &m->entries[e];
        size_t cnt = 0;
        for (size_t s = 0; s < m->n_w; s++)
            if (m->nodes[m->w[s].node].entry == (int)e)
                cnt++;
        ddts_free(en->w);
        en->w = cnt ? ddts_mallocarray(cnt, sizeof *en->w) : NULL;
        if (cnt && en->w == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory");
        en->n_w = 0;
        for (int pass = 1; pass >= 0; pass--)
            for (size_t s = 0; s < m->n_w; s++)
                if (en->n_w < cnt && m->nodes[m->w[s].node].entry == (int)e &&
                    m->w[s].trainable == pass) {
                    en->w[en->n_w++] = (int)s;
                    m->w[s].off = off;
                    if (ddts_size_add(off, m->w[s].n, &off) != 0)
                        return ddts_error_set(err, DDTS_ELIMIT, "model: too many parameters");
                    if (pass)
                        m->n_trainable += m->w[s].n;
                }
    }
    if (off > DDTS_MAX_PARAMS)
        return ddts_error_set(err, DDTS_ELIMIT, "model: %zu parameters (max %llu)", off,
                              (unsigned long long)DDTS_MAX_PARAMS);
    m->n_params = off;
    ddts_free(m->params);
    ddts_free(m->grads);
    size_t nb;
    if (ddts_size_mul(off ? off : 1, sizeof(float), &nb) != 0)
        return ddts_error_set(err, DDTS_ELIMIT, "model: too many parameters");
    m->params = ddts_aligned_alloc(nb);
    m->grads = ddts_aligned_alloc(nb);
    if (m->params == NULL || m->grads == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory for %zu parameters", off);
    memset(m->params, 0, nb);
    memset(m->grads, 0, nb);
    m->has_reg = 0;
    for (size_t s = 0; s < m->n_w; s++)
        if (m->w[s].trainable && (m->w[s].reg.l1 != 0 || m->w[s].reg.l2 != 0))
            m->has_reg = 1;
    return DDTS_OK;
}

static void unplan(struct ddts_model *m)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        if (nd->own_y)
            ddts_free(nd->y);
        if (nd->own_z)
            ddts_free(nd->z);
        if (nd->own_dz)
            ddts_free(nd->dz);
        ddts_free(nd->dy);
        ddts_free(nd->aux);
        ddts_free(nd->aux2);
        ddts_free(nd->colbuf);
        ddts_free(nd->scratch);
        nd->scratch = NULL;
        nd->y = nd->z = nd->dy = nd->dz = nd->aux = nd->aux2 = nd->colbuf = NULL;
        nd->own_y = nd->own_z = nd->own_dz = 0;
    }
    ddts_free(m->target);
    ddts_free(m->col);
    ddts_free(m->tmp);
    ddts_free(m->ones);
    m->ones = NULL;
    m->target = NULL;
    m->col = NULL;
    m->tmp = NULL;
    m->cap = 0;
}

static float *fbuf(size_t a, size_t b, int *fail)
{
    size_t n;
    if (ddts_size_mul(a, b, &n) != 0 || ddts_size_mul(n ? n : 1, sizeof(float), &n) != 0) {
        *fail = 1;
        return NULL;
    }
    float *p = ddts_aligned_alloc(n);
    if (p == NULL)
        *fail = 1;
    else
        memset(p, 0, n);
    return p;
}

static int has_core_act(const struct nn_node *nd)
{
    return nd->act.kind != ACT_LINEAR;
}

/* Activations whose derivative is a function of their output run in place:
 * z and y share a buffer, and so do dz and dy. Not for the output node, whose
 * logits a fused loss reads, nor for Activation layers, whose z is their
 * input's y. */
static int act_in_place(const struct ddts_model *m, size_t i)
{
    const struct nn_node *nd = &m->nodes[i];
    const struct nn_act *a = &nd->act;
    if ((int)i == m->output_node || nd->kind == NN_ACTIVATION)
        return 0;
    return (a->kind == ACT_RELU && a->alpha == 0 && a->threshold == 0 && a->max_value <= 0) ||
           a->kind == ACT_SIGMOID || a->kind == ACT_TANH || a->kind == ACT_SOFTMAX;
}

enum ddts_status ddts__nn_plan(struct ddts_model *m, size_t cap, struct ddts_error *err)
{
    /* Buffers only grow: a smaller batch (evaluation, the last batch) runs in
     * the planned ones. Per-thread scratch (direct convolutions) is sized for
     * the thread count planned with: another count plans again. */
    if (cap <= m->cap && m->cap > 0 && m->plan_threads == m->threads)
        return DDTS_OK;
    if (cap < m->cap)
        cap = m->cap;
    unplan(m);
    int fail = 0;
    size_t col_n = 0, ones_n = 1, tmp_n = 1;
    size_t kept = 0; /* floats of im2col kept across passes (at most 256 MiB) */
    for (size_t i = 0; i < m->n_nodes && !fail; i++) {
        struct nn_node *nd = &m->nodes[i];
        const struct nn_node *a = nd->n_in > 0 ? &m->nodes[nd->in[0]] : NULL;
        if (a == NULL && nd->kind != NN_INPUT) {
            fail = 1; /* unreachable: the graph builder gives every other kind an input */
            break;
        }
        if (nd->kind == NN_FLATTEN || nd->kind == NN_RESHAPE) {
            nd->y = nd->z = a->y;
        } else if (nd->kind == NN_ACTIVATION) {
            nd->z = a->y;
            nd->y = fbuf(cap, nd->size, &fail);
            nd->own_y = 1;
        } else {
            nd->y = fbuf(cap, nd->size, &fail);
            nd->own_y = 1;
            if (has_core_act(nd) && !act_in_place(m, i)) {
                nd->z = fbuf(cap, nd->size, &fail);
                nd->own_z = 1;
            } else {
                nd->z = nd->y;
            }
        }
        if (nd->kind != NN_INPUT) {
            nd->dy = fbuf(cap, nd->size, &fail);
            if (has_core_act(nd) && !act_in_place(m, i)) {
                nd->dz = fbuf(cap, nd->size, &fail);
                nd->own_dz = 1;
            } else {
                nd->dz = nd->dy;
            }
        }
        if (nd->kind == NN_DENSE || nd->kind == NN_CONV2D || nd->kind == NN_CONV2DT) {
            size_t rows = cap * (nd->size / (size_t)nd->shape[nd->rank - 1]);
            ones_n = rows > ones_n ? rows : ones_n;
        }
        if ((nd->kind == NN_BATCHNORM || nd->kind == NN_LAYERNORM) &&
            4 * (size_t)nd->shape[nd->rank - 1] > tmp_n)
            tmp_n = 4 * (size_t)nd->shape[nd->rank - 1];
        size_t seq = ddts__nn_seq_scratch(m, nd, cap);
        if (seq > 0)
            nd->scratch = fbuf(seq, 1, &fail);
        switch (nd->kind) {
        case NN_DROPOUT:
        case NN_MAXPOOL:
        case NN_GMP:
            nd->aux = fbuf(cap, nd->size, &fail);
            break;
        case NN_BATCHNORM:
            nd->aux = fbuf(cap, nd->size, &fail);
            nd->aux2 = fbuf(2, (size_t)nd->shape[nd->rank - 1], &fail);
            break;
        case NN_LAYERNORM: /* xhat, and 1/std per row */
            nd->aux = fbuf(cap, nd->size, &fail);
            nd->aux2 = fbuf(cap, nd->size / (size_t)nd->shape[nd->rank - 1], &fail);
            break;
        case NN_CONV2D:
        case NN_CONV2DT: {
            size_t per;
            if (nd->kind == NN_CONV2D)
                per = (size_t)(nn_h(nd) * nn_w(nd)) * nd->kh * nd->kw * (size_t)nn_c(a);
            else
                per = (size_t)a->shape[0] * a->shape[1] * nd->kh * nd->kw * nd->shape[2];
            size_t nb = per > 0 ? COL_MAX_FLOATS / per : cap;
            if (nb < 1)
                nb = 1;
            if (nb > cap)
                nb = cap;
            nd->chunk = nd->dchunk = (int)nb;
            /* A convolution whose whole batch fits one chunk keeps its im2col
             * for the backward pass instead of recomputing it. */
            int pointwise = nd->kh == 1 && nd->kw == 1 && nd->sh == 1 && nd->sw == 1 &&
                            nd->pt == 0 && nd->pl == 0;
            size_t need = nb * per;
            struct ddts__conv_geom tg = {.KH = nd->kh, .KW = nd->kw, .C = (int)nn_c(a)};
            nd->direct = nd->kind == NN_CONV2D && !pointwise && !m->conv_gemm_only &&
                         ddts__tensor_conv_direct_fits(&tg);
            if (nd->direct) {
                /* no im2col but the input gradient's, in dchunks; the
                 * weight gradient's per-thread sums */
                size_t dn = per > 0 ? DCOL_MAX_FLOATS / per : cap;
                dn = dn < 1 ? 1 : dn > cap ? cap : dn;
                nd->dchunk = (int)dn;
                need = a->needs_grad ? dn * per : 0;
                size_t wg = ddts__tensor_conv_direct_scratch(&tg, (size_t)nd->units, 0, m->threads);
                if (nd->needs_grad && m->w[nd->w0].trainable && wg > need)
                    need = wg;
            }
            if (nd->kind == NN_CONV2D && !pointwise && !nd->direct && nb == cap && nd->needs_grad &&
                m->w[nd->w0].trainable && kept + cap * per <= 4 * COL_MAX_FLOATS) {
                nd->colbuf = fbuf(cap, per, &fail);
                kept += cap * per;
                size_t dn = per > 0 ? DCOL_MAX_FLOATS / per : cap;
                dn = dn < 1 ? 1 : dn > cap ? cap : dn;
                nd->dchunk = (int)dn;
                need = a->needs_grad ? dn * per : 0;
            }
            if (need > col_n)
                col_n = need;
            break;
        }
        default:
            break;
        }
    }
    /* Conv/Dense + relu + tiling max pooling (stride = pool size; a remainder
     * no window covers gets a zero gradient either way): the pooling's
     * backward applies the relu derivative (relu'(z) = [pool output > 0] at
     * the argmax cell), saving a pass over the largest activation of a CNN. */
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        nd->pool_relu = nd->skip_act_bwd = nd->pool_node = nd->in_conv = 0;
    }
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        if (nd->kind != NN_MAXPOOL)
            continue;
        struct nn_node *a = &m->nodes[nd->in[0]];
        int tiles = nd->sh == nd->kh && nd->sw == nd->kw && nd->pt == 0 && nd->pl == 0 &&
                    nn_h(a) >= nn_h(nd) * nd->kh && nn_w(a) >= nn_w(nd) * nd->kw;
        if (tiles && a->n_consumers == 1 && a->needs_grad && a->z == a->y &&
            a->act.kind == ACT_RELU && a->act.alpha == 0 && a->act.threshold == 0 &&
            a->act.max_value <= 0 &&
            (a->kind == NN_DENSE || a->kind == NN_CONV2D || a->kind == NN_CONV2DT)) {
            nd->pool_relu = 1;
            a->skip_act_bwd = 1;
            /* A direct convolution over the model's input computes the
             * pooling too, and its gradient from the pooling's: its own
             * output and gradient never reach memory. (Over an input that
             * needs a gradient, the input gradient's GEMM needs its dz.) */
            if (a->direct && !m->nodes[a->in[0]].needs_grad) {
                a->pool_node = (int)i;
                nd->in_conv = 1;
                struct ddts__conv_geom tg = {.KH = a->kh,
                                             .KW = a->kw,
                                             .C = (int)nn_c(&m->nodes[a->in[0]]),
                                             .OW = (int)nn_w(a)};
                size_t need =
                    ddts__tensor_conv_direct_scratch(&tg, (size_t)a->units, nd->kh, m->threads);
                col_n = need > col_n ? need : col_n;
            }
        }
    }
    if (!fail && col_n > 0)
        m->col = fbuf(col_n, 1, &fail);
    m->col_n = col_n;
    if (!fail) {
        m->ones = fbuf(ones_n, 1, &fail);
        for (size_t i = 0; !fail && i < ones_n; i++)
            m->ones[i] = 1.0f;
        m->ones_n = ones_n;
    }
    if (!fail) {
        m->tmp = ddts_mallocarray(tmp_n, sizeof(double));
        fail = m->tmp == NULL;
        m->tmp_n = tmp_n;
    }
    if (!fail && m->target_size > 0)
        m->target = fbuf(cap, m->target_size, &fail);
    if (fail) {
        unplan(m);
        return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory planning batch %zu", cap);
    }
    m->cap = cap;
    m->plan_threads = m->threads;
    return DDTS_OK;
}

void ddts_model_destroy(struct ddts_model *m)
{
    if (m == NULL)
        return;
    unplan(m);
    for (size_t i = 0; i < m->n_nodes; i++) {
        ddts_free(m->nodes[i].name);
        ddts_free(m->nodes[i].class_name);
        ddts_free(m->nodes[i].in);
    }
    for (size_t i = 0; i < m->n_w; i++)
        ddts_free(m->w[i].name);
    for (size_t i = 0; i < m->n_entries; i++) {
        ddts_free(m->entries[i].name);
        ddts_free(m->entries[i].class_name);
        ddts_free(m->entries[i].w);
    }
    ddts_free(m->nodes);
    ddts_free(m->w);
    ddts_free(m->entries);
    ddts_free(m->params);
    ddts_free(m->grads);
    ddts_free(m->opt.state);
    ddts_free(m->best);
    ddts_free(m->name);
    ddts_free(m);
}

const char *ddts_model_name(const struct ddts_model *m)
{
    return m->name ? m->name : "model";
}

size_t ddts_model_n_layers(const struct ddts_model *m)
{
    return m->n_entries;
}

enum ddts_status ddts_model_layer_info(const struct ddts_model *m, size_t i,
                                       struct ddts_layer_info *out)
{
    memset(out, 0, sizeof *out);
    if (i >= m->n_entries)
        return DDTS_EINVAL;
    const struct nn_entry *e = &m->entries[i];
    out->name = e->name;
    out->class_name = e->class_name;
    out->n_weights = e->n_w;
    if (e->node_out >= 0) {
        const struct nn_node *nd = &m->nodes[e->node_out];
        out->out_rank = nd->rank + 1 <= DDTS_MAX_RANK ? nd->rank + 1 : DDTS_MAX_RANK;
        out->out_shape[0] = -1;
        for (int t = 0; t + 1 < out->out_rank; t++)
            out->out_shape[t + 1] = nd->shape[t];
    }
    for (size_t j = 0; j < e->n_w; j++) {
        const struct nn_weight *w = &m->w[e->w[j]];
        out->n_params += w->n;
        if (w->trainable)
            out->n_trainable += w->n;
    }
    return DDTS_OK;
}

enum ddts_status ddts_model_weight(struct ddts_model *m, size_t layer, size_t j,
                                   struct ddts_weight_view *out)
{
    memset(out, 0, sizeof *out);
    if (layer >= m->n_entries || j >= m->entries[layer].n_w)
        return DDTS_EINVAL;
    const struct nn_weight *w = &m->w[m->entries[layer].w[j]];
    out->name = w->name;
    out->layer_name = w->layer_name;
    out->rank = w->rank;
    memcpy(out->shape, w->shape, sizeof out->shape);
    out->data = m->params + w->off;
    out->n_floats = w->n;
    out->offset = w->off;
    out->trainable = w->trainable;
    return DDTS_OK;
}

float *ddts_model_weights_flat(struct ddts_model *m, size_t *n_floats)
{
    if (n_floats)
        *n_floats = m->n_params;
    return m->params;
}

size_t ddts_model_n_params(const struct ddts_model *m)
{
    return m->n_params;
}

size_t ddts_model_n_trainable(const struct ddts_model *m)
{
    return m->n_trainable;
}

int ddts_model_input_shape(const struct ddts_model *m, int64_t shape[DDTS_MAX_RANK])
{
    const struct nn_node *nd = &m->nodes[m->input_node];
    memcpy(shape, nd->shape, sizeof nd->shape);
    return nd->rank;
}

/* Whether node i's weights still fit its input after shapes were inferred again. */
static int weights_fit(const struct ddts_model *m, const struct nn_node *nd)
{
    if (nd->n_w == 0 || nd->n_in == 0)
        return 1;
    const struct nn_node *a = &m->nodes[nd->in[0]];
    const struct nn_weight *w = &m->w[nd->w0];
    switch (nd->kind) {
    case NN_DENSE:
    case NN_RNN:
        return w->shape[0] == a->shape[a->rank - 1];
    case NN_CONV2D:
        return w->shape[w->rank - 2] == nn_c(a);
    case NN_EMBEDDING:
        return 1;
    default:
        return (int64_t)w->n == nd->shape[nd->rank - 1] || w->rank == 0;
    }
}

static enum ddts_status infer_all(struct ddts_model *m, struct ddts_error *err)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        enum ddts_status st = ddts__nn_infer_shape(m, (int)i, err);
        if (st != DDTS_OK)
            return st;
        if (!weights_fit(m, &m->nodes[i]))
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "layer '%s' (%s): its weights do not fit an input of this size",
                                  m->nodes[i].name, m->nodes[i].class_name);
    }
    return DDTS_OK;
}

enum ddts_status ddts_model_bind_input(struct ddts_model *m, const struct ddts_array *x,
                                       struct ddts_error *err)
{
    struct nn_node *in = &m->nodes[m->input_node];
    if (in->free_dims == 0 || x == NULL)
        return DDTS_OK;
    if (x->rank != in->rank + 1)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "the model's input has a dimension of unknown size (None): x needs "
                              "rank %d (samples first) to give it, got rank %d",
                              in->rank + 1, x->rank);
    int64_t old[DDTS_MAX_RANK];
    memcpy(old, in->shape, sizeof old);
    int changed = 0;
    for (int i = 0; i < in->rank; i++) {
        if (!(in->free_dims & (1u << i)))
            continue;
        int64_t v = x->shape[i + 1];
        if (v <= 0 || v > (1 << 24))
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "x dimension %d is %lld, cannot size the model's input", i + 1,
                                  (long long)v);
        changed |= v != in->shape[i];
        in->shape[i] = v;
    }
    if (!changed)
        return DDTS_OK;
    enum ddts_status st = infer_all(m, err);
    if (st != DDTS_OK) {
        /* back to the shapes before: they were consistent */
        memcpy(m->nodes[m->input_node].shape, old, sizeof old);
        (void)infer_all(m, NULL);
        return st;
    }
    unplan(m);
    return DDTS_OK;
}

int ddts_model_output_shape(const struct ddts_model *m, int64_t shape[DDTS_MAX_RANK])
{
    const struct nn_node *nd = &m->nodes[m->output_node];
    memcpy(shape, nd->shape, sizeof nd->shape);
    return nd->rank;
}

size_t ddts_model_input_size(const struct ddts_model *m)
{
    return m->nodes[m->input_node].size;
}

size_t ddts_model_output_size(const struct ddts_model *m)
{
    return m->nodes[m->output_node].size;
}

const char *ddts_model_loss_name(const struct ddts_model *m)
{
    return m->compiled ? m->loss_name : NULL;
}

const char *ddts_model_optimizer_name(const struct ddts_model *m)
{
    return m->compiled ? m->opt_name : NULL;
}

double ddts_model_learning_rate(const struct ddts_model *m)
{
    return m->compiled ? m->opt.lr : 0;
}

void ddts_model_set_learning_rate(struct ddts_model *m, double lr)
{
    m->opt.lr = lr;
}

void ddts_model_set_threads(struct ddts_model *m, int threads)
{
    m->threads = threads > 0 ? threads : 1;
}

float *ddts_model_optimizer_state(struct ddts_model *m, size_t *n_floats)
{
    if (n_floats)
        *n_floats = m->compiled ? m->opt.n_state : 0;
    return m->compiled ? m->opt.state : NULL;
}

uint64_t ddts_model_iterations(const struct ddts_model *m)
{
    return m->iterations;
}

void ddts_model_set_iterations(struct ddts_model *m, uint64_t iterations)
{
    m->iterations = iterations;
}

const float *ddts_model_best_weights(const struct ddts_model *m, int *epoch)
{
    if (epoch)
        *epoch = m->best && m->best_valid ? m->best_epoch : -1;
    return m->best_valid ? m->best : NULL;
}

int ddts_logs_get(const struct ddts_logs *logs, const char *name, double *value)
{
    for (size_t i = 0; i < logs->n && i < DDTS_LOGS_MAX; i++) {
        if (logs->names[i] && strcmp(logs->names[i], name) == 0) {
            *value = logs->values[i];
            return 0;
        }
    }
    return -1;
}

enum ddts_status ddts_model_init_weights(struct ddts_model *m, uint64_t seed,
                                         struct ddts_error *err)
{
    struct ddts_rng rng;
    ddts_rng_seed(&rng, seed);
    /* In Keras' weight order so that the draw is independent of node order. */
    for (size_t e = 0; e < m->n_entries; e++) {
        for (size_t j = 0; j < m->entries[e].n_w; j++) {
            enum ddts_status st = ddts__nn_init_weight(m, &m->w[m->entries[e].w[j]], &rng, err);
            if (st != DDTS_OK)
                return st;
        }
    }
    return DDTS_OK;
}

void ddts_model_set_keras_version(struct ddts_model *m, const char *version)
{
    if (m == NULL || version == NULL || !isdigit((unsigned char)version[0]))
        return;
    long major = strtol(version, NULL, 10);
    m->keras3 = major >= 3;
    /* hard_sigmoid: clip(0.2 x + 0.5) up to Keras 2, clip(x / 6 + 0.5) in Keras 3 */
    float slope = m->keras3 ? 1.0f / 6.0f : 0.2f;
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_act *acts[3] = {&m->nodes[i].act, &m->nodes[i].cell_act, &m->nodes[i].ract};
        for (int k = 0; k < 3; k++)
            if (acts[k]->kind == ACT_HARD_SIGMOID)
                acts[k]->alpha = slope;
    }
}
