/* The model graph: building, shape inference, the flat weight buffer, buffer
 * planning and the public accessors. */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/layer.h"

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
                                   const struct nn_layer_ops *ops, int entry, const int *in,
                                   int n_in, int *out_idx, struct ddts_error *err)
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
    nd->ops = ops;
    nd->kind = ops->kind;
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

static int same_shape(int ra, const int64_t *a, int rb, const int64_t *b)
{
    if (ra != rb)
        return 0;
    for (int i = 0; i < ra; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static void shape_text(const struct nn_weight *w, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < w->rank && at + 1 < cap; i++) {
        int k = snprintf(buf + at, cap - at, "%s%lld", i ? ", " : "", (long long)w->shape[i]);
        at += k > 0 ? (size_t)k : 0;
    }
}

enum ddts_status ddts__nn_share_call(struct ddts_model *m, int own_first, int call_first, int count,
                                     size_t w_from, int call, struct ddts_error *err)
{
    const struct nn_node *lead = &m->nodes[own_first];
    if (count != (int)m->n_nodes - call_first)
        return ddts_error_set(
            err, DDTS_EUNSUPPORTED, "layer '%s' (%s): call %d builds %d nodes, its first call %d",
            lead->name, lead->class_name, call, (int)m->n_nodes - call_first, count);
    for (int i = 0; i < count; i++) {
        const struct nn_node *o = &m->nodes[own_first + i], *c = &m->nodes[call_first + i];
        if (o->kind != c->kind || o->n_w != c->n_w)
            return ddts_error_set(err, DDTS_EUNSUPPORTED,
                                  "layer '%s' (%s): call %d builds another graph than its first",
                                  o->name, o->class_name, call);
        for (int t = 0; t < o->n_w; t++) {
            const struct nn_weight *wo = &m->w[o->w0 + t], *wc = &m->w[c->w0 + t];
            if (same_shape(wo->rank, wo->shape, wc->rank, wc->shape))
                continue;
            char a[96], b[96];
            shape_text(wo, a, sizeof a);
            shape_text(wc, b, sizeof b);
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "layer '%s' (%s): call %d needs weight '%s' of shape (%s), its "
                                  "first call made it (%s): a shared layer's inputs must fit "
                                  "one set of weights",
                                  o->name, o->class_name, call, wo->name, b, a);
        }
    }
    for (size_t s = w_from; s < m->n_w; s++)
        ddts_free(m->w[s].name);
    m->n_w = w_from;
    for (int i = 0; i < count; i++) {
        struct nn_node *o = &m->nodes[own_first + i], *c = &m->nodes[call_first + i];
        c->w0 = o->w0;
        c->n_w = o->n_w;
        c->share_of = own_first + i + 1;
        o->n_calls++;
    }
    return DDTS_OK;
}

#define SHAPE_ERR(...) ddts_error_set(err, DDTS_ESHAPE, __VA_ARGS__)

enum ddts_status ddts__nn_infer_shape(struct ddts_model *m, int i, struct ddts_error *err)
{
    struct nn_node *nd = &m->nodes[i];
    const char *nm = nd->name, *cl = nd->class_name;
    if (nd->kind != NN_INPUT && nd->n_in < 1)
        return SHAPE_ERR("layer '%s' (%s) has no input", nm, cl);
    if (nd->ops->infer_shape != NULL) {
        enum ddts_status st = nd->ops->infer_shape(m, nd, err);
        if (st != DDTS_OK)
            return st;
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
    ddts_free(m->gshare);
    m->gshare = NULL;
    for (size_t i = 0; i < m->n_nodes && m->gshare == NULL; i++)
        if (m->nodes[i].share_of && m->nodes[i].n_w > 0 &&
            (m->gshare = ddts_aligned_alloc(nb)) == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "model: out of memory for %zu parameters", off);
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
    ddts_free(m->split.views);
    ddts_free(m->split.nodes);
    ddts_free(m->split.grads);
    ddts_free(m->split.parts);
    memset(&m->split, 0, sizeof m->split);
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

float *ddts__nn_plan_buf(size_t a, size_t b, int *fail)
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
    if ((int)i == m->output_node || nd->ops->out == NN_OUT_ACT)
        return 0;
    return (a->kind == ACT_RELU && a->alpha == 0 && a->threshold == 0 && a->max_value <= 0) ||
           a->kind == ACT_SIGMOID || a->kind == ACT_TANH || a->kind == ACT_SOFTMAX;
}

/* y, z, dy, dz of node i for `cap` samples (views and aliases where they can be). */
static void plan_outputs(struct ddts_model *m, size_t i, size_t cap, int *fail)
{
    struct nn_node *nd = &m->nodes[i];
    const struct nn_node *a = nd->n_in > 0 ? &m->nodes[nd->in[0]] : NULL;
    int separate = has_core_act(nd) && !act_in_place(m, i);
    /* (a is NULL only for the input, whose output is its own) */
    if (a != NULL && nd->ops->out == NN_OUT_VIEW) {
        nd->y = nd->z = a->y;
    } else if (a != NULL && nd->ops->out == NN_OUT_ACT) {
        nd->z = a->y;
        nd->y = ddts__nn_plan_buf(cap, nd->size, fail);
        nd->own_y = 1;
    } else {
        nd->y = ddts__nn_plan_buf(cap, nd->size, fail);
        nd->own_y = 1;
        if (separate) {
            nd->z = ddts__nn_plan_buf(cap, nd->size, fail);
            nd->own_z = 1;
        } else {
            nd->z = nd->y;
        }
    }
    if (nd->kind != NN_INPUT) {
        nd->dy = ddts__nn_plan_buf(cap, nd->size, fail);
        if (separate) {
            nd->dz = ddts__nn_plan_buf(cap, nd->size, fail);
            nd->own_dz = 1;
        } else {
            nd->dz = nd->dy;
        }
    }
}

/* The shared scratch every node asked for, and the loss target. */
static void plan_shared(struct ddts_model *m, size_t cap, const struct nn_plan_need *need,
                        int *fail)
{
    if (!*fail && need->col_n > 0)
        m->col = ddts__nn_plan_buf(need->col_n, 1, fail);
    m->col_n = need->col_n;
    if (!*fail) {
        m->ones = ddts__nn_plan_buf(need->ones_n, 1, fail);
        for (size_t i = 0; !*fail && i < need->ones_n; i++)
            m->ones[i] = 1.0f;
        m->ones_n = need->ones_n;
    }
    if (!*fail) {
        m->tmp = ddts_mallocarray(need->tmp_n, sizeof(double));
        *fail = m->tmp == NULL;
        m->tmp_n = need->tmp_n;
    }
    if (!*fail && m->target_size > 0)
        m->target = ddts__nn_plan_buf(cap, m->target_size, fail);
}

/* The batch split's views and buffers (nn.h, struct nn_split), when more
 * than one thread runs, every layer works on each sample alone
 * (nn_layer_ops.rows) and no layer is shared (a shared layer's gradient is
 * summed over its calls in m->gshare). */
static void plan_split(struct ddts_model *m, int *fail)
{
    struct nn_split *sp = &m->split;
    if (*fail || m->threads < 2 || m->gshare != NULL)
        return;
    for (size_t i = 0; i < m->n_nodes; i++)
        if (!m->nodes[i].ops->rows)
            return;
    size_t n = (size_t)m->threads, nn;
    if (ddts_size_mul(n, m->n_nodes, &nn) != 0) {
        *fail = 1;
        return;
    }
    sp->views = ddts_calloc(n, sizeof *sp->views);
    sp->nodes = ddts_calloc(nn, sizeof *sp->nodes);
    sp->parts = ddts_calloc(n, sizeof *sp->parts);
    sp->grads = ddts__nn_plan_buf(n - 1, m->n_params, fail);
    if (sp->views == NULL || sp->nodes == NULL || sp->parts == NULL)
        *fail = 1;
    struct ddts__nn_flops fl;
    ddts__nn_flops(m, &fl);
    sp->macs = fl.forward / 2;
    for (size_t i = 0; i < m->n_nodes; i++)
        sp->draws |= m->nodes[i].ops->draw != NULL;
    sp->n = *fail ? 0 : m->threads;
}

static float *shift(float *p, size_t n)
{
    return p != NULL ? p + n : NULL;
}

struct ddts_model *ddts__nn_split_view(struct ddts_model *m, int t, size_t lo)
{
    struct ddts_model *v = &m->split.views[t];
    struct nn_node *nodes = m->split.nodes + (size_t)t * m->n_nodes;
    memcpy(nodes, m->nodes, m->n_nodes * sizeof *nodes);
    for (size_t i = 0; i < m->n_nodes; i++) {
        /* Views and aliases (Flatten's y, an Activation's z) have the size
         * of the buffer they alias, so each moves with it. */
        struct nn_node *nd = &nodes[i];
        size_t off = lo * nd->size;
        nd->y = shift(nd->y, off);
        nd->z = shift(nd->z, off);
        nd->dy = shift(nd->dy, off);
        nd->dz = shift(nd->dz, off);
        nd->aux = shift(nd->aux, off);
    }
    *v = *m;
    v->nodes = nodes;
    v->threads = 1;
    v->drawn = 1;
    v->row0 = lo;
    v->grads = t == 0 ? m->grads : m->split.grads + (size_t)(t - 1) * m->n_params;
    v->target = shift(m->target, lo * m->target_size);
    /* units_scratch (train.c) plans two output rows per thread */
    v->units_row = shift(m->units_row, (size_t)t * (m->units_row_n / (size_t)m->split.n));
    return v;
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
    struct nn_plan_need need = {.col_n = 0, .ones_n = 1, .tmp_n = 1};
    for (size_t i = 0; i < m->n_nodes && !need.fail; i++) {
        struct nn_node *nd = &m->nodes[i];
        if (nd->n_in < 1 && nd->kind != NN_INPUT) {
            need.fail = 1; /* unreachable: the graph builder gives every other kind an input */
            break;
        }
        plan_outputs(m, i, cap, &need.fail);
        if (nd->ops->plan != NULL)
            nd->ops->plan(m, i, cap, &need);
    }
    /* Fusions across nodes (layer_pool.c: max pooling with the layer before it;
     * layer_norm.c: BatchNormalization with the ReLU after it). */
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        nd->pool_relu = nd->skip_act_bwd = nd->pool_node = nd->in_conv = 0;
        nd->act_node = nd->act_in_prev = 0;
    }
    for (size_t i = 0; i < m->n_nodes && !need.fail; i++)
        if (m->nodes[i].ops->plan_link != NULL)
            m->nodes[i].ops->plan_link(m, i, &need);
    plan_shared(m, cap, &need, &need.fail);
    plan_split(m, &need.fail);
    if (need.fail) {
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
    ddts_free(m->gshare);
    ddts_free(m->opt.state);
    ddts_free(m->best);
    ddts_free(m->units_row);
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
    out->n_calls = 1;
    if (e->node_out >= 0) {
        out->n_calls = 1 + (size_t)m->nodes[e->node_out].n_calls;
        out->n_outputs = e->n_out > 1 ? e->n_out : 1;
        out->out_rank = ddts_model_layer_output_shape(m, i, 0, out->out_shape);
    }
    for (size_t j = 0; j < e->n_w; j++) {
        const struct nn_weight *w = &m->w[e->w[j]];
        out->n_params += w->n;
        if (w->trainable)
            out->n_trainable += w->n;
    }
    return DDTS_OK;
}

int ddts_model_layer_output_shape(const struct ddts_model *m, size_t i, size_t k,
                                  int64_t shape[DDTS_MAX_RANK])
{
    if (i >= m->n_entries || m->entries[i].node_out < 0)
        return -1;
    const struct nn_entry *e = &m->entries[i];
    if (k >= (size_t)(e->n_out > 1 ? e->n_out : 1))
        return -1;
    const struct nn_node *nd = &m->nodes[e->n_out > 1 ? e->node_outs[k] : e->node_out];
    int rank = nd->rank + 1 <= DDTS_MAX_RANK ? nd->rank + 1 : DDTS_MAX_RANK;
    shape[0] = -1;
    for (int t = 0; t + 1 < rank; t++)
        shape[t + 1] = nd->shape[t];
    return rank;
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
    if (m->n_inputs > 1) { /* the packed sample: every input flattened, in order */
        memset(shape, 0, DDTS_MAX_RANK * sizeof *shape);
        shape[0] = (int64_t)ddts_model_input_size(m);
        return 1;
    }
    const struct nn_node *nd = &m->nodes[m->input_node];
    memcpy(shape, nd->shape, sizeof nd->shape);
    return nd->rank;
}

size_t ddts_model_n_inputs(const struct ddts_model *m)
{
    return (size_t)m->n_inputs;
}

int ddts_model_input_shape_at(const struct ddts_model *m, size_t k, int64_t shape[DDTS_MAX_RANK])
{
    if (k >= (size_t)m->n_inputs)
        return -1;
    const struct nn_node *nd = &m->nodes[m->input_nodes[k]];
    memcpy(shape, nd->shape, sizeof nd->shape);
    return nd->rank;
}

const char *ddts_model_input_name(const struct ddts_model *m, size_t k)
{
    return k < (size_t)m->n_inputs ? m->nodes[m->input_nodes[k]].name : NULL;
}

enum ddts_status ddts_model_check_n_inputs(const struct ddts_model *m, size_t n, const char *what,
                                           struct ddts_error *err)
{
    if (n == (size_t)m->n_inputs)
        return DDTS_OK;
    char names[512];
    size_t at = 0;
    names[0] = '\0';
    for (int k = 0; k < m->n_inputs; k++) { /* "a, b, c", cut to fit */
        const char *sep = k ? ", " : "", *nm = m->nodes[m->input_nodes[k]].name;
        for (const char *q = sep; *q && at + 1 < sizeof names; q++)
            names[at++] = *q;
        for (const char *q = nm; *q && at + 1 < sizeof names; q++)
            names[at++] = *q;
        names[at] = '\0';
    }
    return ddts_error_set(err, DDTS_ESHAPE, "the model takes %d input%s (%s%s); %s gives %zu",
                          m->n_inputs, m->n_inputs == 1 ? "" : "s", names,
                          m->n_inputs > 1 ? ", in this order" : "", what ? what : "the data", n);
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
    case NN_CONV3D:
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
    if (m->n_inputs > 1) {
        for (int k = 0; k < m->n_inputs; k++)
            if (m->nodes[m->input_nodes[k]].free_dims != 0)
                return ddts_error_set(err, DDTS_EUNSUPPORTED,
                                      "input '%s' has a dimension of unknown size (None): not "
                                      "supported in a model with several inputs",
                                      m->nodes[m->input_nodes[k]].name);
        return DDTS_OK;
    }
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
    size_t n = 0;
    for (int k = 0; k < m->n_inputs; k++)
        n += m->nodes[m->input_nodes[k]].size;
    return n;
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

bool ddts_model_best_state(const struct ddts_model *m, struct ddts_best_state *out)
{
    memset(out, 0, sizeof *out);
    out->epoch = -1;
    if (!m->best_valid || m->best == NULL)
        return false;
    out->weights = m->best;
    out->n_weights = m->n_params;
    out->epoch = m->best_epoch;
    out->value = m->best_value;
    snprintf(out->monitor, sizeof out->monitor, "%s", m->best_monitor);
    return true;
}

enum ddts_status ddts_model_set_best_state(struct ddts_model *m, const struct ddts_best_state *b,
                                           struct ddts_error *err)
{
    if (b->n_weights != m->n_params)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "the saved best model holds %zu values, the model %zu", b->n_weights,
                              m->n_params);
    if (b->epoch < 0 || b->monitor[0] == '\0' ||
        memchr(b->monitor, '\0', sizeof b->monitor) == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "the saved best model has no epoch or monitor");
    if (m->best == NULL) {
        m->best = ddts_aligned_alloc((m->n_params ? m->n_params : 1) * sizeof(float));
        if (m->best == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    memcpy(m->best, b->weights, m->n_params * sizeof(float));
    m->best_epoch = b->epoch;
    m->best_value = b->value;
    snprintf(m->best_monitor, sizeof m->best_monitor, "%s", b->monitor);
    m->best_valid = 1;
    return DDTS_OK;
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
