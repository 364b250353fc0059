/*
 * Keras model configs (JSON) to ddts models: the nn module's only user of
 * jansson.
 * Understands Keras 2.2 to Keras 3 spellings; see docs/engine.md.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "nn/layer.h"

struct ctx {
    struct ddts_model *m;
    struct ddts_error *err;
    int depth;
    unsigned free_dims; /* None dimensions of the shape read_shape read last */
    /* the call arguments of the attention layer being added (attention_kwargs) */
    int kw_causal, kw_mask;
};

#define MAX_DEPTH   32
#define MAX_INBOUND 256

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static int jbool(const json_t *o, const char *key, int def)
{
    const json_t *v = json_object_get(o, key);
    if (json_is_boolean(v))
        return json_is_true(v);
    return def;
}

static double jnum(const json_t *o, const char *key, double def)
{
    const json_t *v = json_object_get(o, key);
    return json_is_number(v) ? json_number_value(v) : def;
}

static enum ddts_status bad(struct ctx *c, const char *name, const char *cls, const char *what)
{
    return ddts_error_set(c->err, DDTS_EFORMAT, "layer '%s' (%s): %s", name, cls, what);
}

static enum ddts_status unsup(struct ctx *c, const char *name, const char *cls, const char *what)
{
    return ddts_error_set(c->err, DDTS_EUNSUPPORTED, "layer '%s' (%s): %s is not supported", name,
                          cls, what);
}

/* ---- activations, initializers, regularizers ---- */
static enum ddts_status parse_act(struct ddts_model *m, struct ddts_error *err, const json_t *v,
                                  const char *name, const char *cls, struct nn_act *out)
{
    const char *an = NULL;
    if (v == NULL || json_is_null(v))
        an = "linear";
    else if (json_is_string(v))
        an = json_string_value(v);
    else if (json_is_object(v)) {
        /* Keras 3 may serialize a function as {"class_name": "function", "config": "relu"}. */
        const json_t *cf = json_object_get(v, "config");
        an = json_is_string(cf) ? json_string_value(cf) : jstr(v, "class_name");
    }
    if (an == NULL)
        return ddts_error_set(err, DDTS_EFORMAT, "layer '%s' (%s): activation is not a name", name,
                              cls);
    if (ddts__nn_act_parse(an, m->keras3, out) != 0)
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "layer '%s' (%s): activation '%s' is not supported", name, cls, an);
    return DDTS_OK;
}

static void lower_snake(const char *in, char *out, size_t n)
{
    size_t j = 0;
    for (size_t i = 0; in[i] && j + 2 < n; i++) {
        char ch = in[i];
        if (ch >= 'A' && ch <= 'Z') {
            if (i > 0 && j > 0 && out[j - 1] != '_')
                out[j++] = '_';
            ch = (char)(ch - 'A' + 'a');
        }
        out[j++] = ch;
    }
    out[j] = 0;
}

static enum ddts_status parse_init(struct ctx *c, const json_t *v, const char *name,
                                   const char *cls, struct nn_init def, struct nn_init *out)
{
    *out = def;
    if (v == NULL || json_is_null(v))
        return DDTS_OK;
    const char *cn = json_is_string(v) ? json_string_value(v) : jstr(v, "class_name");
    const json_t *cf = json_is_object(v) ? json_object_get(v, "config") : NULL;
    if (cn == NULL)
        return bad(c, name, cls, "initializer without class_name");
    char k[64];
    lower_snake(cn, k, sizeof k);
    memset(out, 0, sizeof *out);
    struct {
        const char *n;
        double scale;
        int mode, dist;
    } vs[] = {
        {"glorot_uniform", 1, FAN_AVG, DIST_UNIFORM}, {"glorot_normal", 1, FAN_AVG, DIST_TRUNCATED},
        {"he_uniform", 2, FAN_IN, DIST_UNIFORM},      {"he_normal", 2, FAN_IN, DIST_TRUNCATED},
        {"lecun_uniform", 1, FAN_IN, DIST_UNIFORM},   {"lecun_normal", 1, FAN_IN, DIST_TRUNCATED},
    };
    for (size_t i = 0; i < sizeof vs / sizeof vs[0]; i++) {
        if (strcmp(k, vs[i].n) == 0) {
            out->kind = INIT_VARIANCE_SCALING;
            out->a = vs[i].scale;
            out->mode = vs[i].mode;
            out->dist = vs[i].dist;
            return DDTS_OK;
        }
    }
    if (strcmp(k, "zeros") == 0 || strcmp(k, "zero") == 0) {
        out->kind = INIT_ZEROS;
    } else if (strcmp(k, "ones") == 0 || strcmp(k, "one") == 0) {
        out->kind = INIT_ONES;
    } else if (strcmp(k, "constant") == 0) {
        out->kind = INIT_CONSTANT;
        out->a = jnum(cf, "value", 0);
    } else if (strcmp(k, "random_normal") == 0 || strcmp(k, "normal") == 0) {
        out->kind = INIT_RANDOM_NORMAL;
        out->a = jnum(cf, "mean", 0);
        out->b = jnum(cf, "stddev", 0.05);
    } else if (strcmp(k, "random_uniform") == 0 || strcmp(k, "uniform") == 0) {
        out->kind = INIT_RANDOM_UNIFORM;
        out->a = jnum(cf, "minval", -0.05);
        out->b = jnum(cf, "maxval", 0.05);
    } else if (strcmp(k, "truncated_normal") == 0) {
        out->kind = INIT_TRUNCATED_NORMAL;
        out->a = jnum(cf, "mean", 0);
        out->b = jnum(cf, "stddev", 0.05);
    } else if (strcmp(k, "variance_scaling") == 0) {
        out->kind = INIT_VARIANCE_SCALING;
        out->a = jnum(cf, "scale", 1);
        const char *mo = jstr(cf, "mode"), *di = jstr(cf, "distribution");
        out->mode = mo == NULL || strcmp(mo, "fan_in") == 0 ? FAN_IN
                    : strcmp(mo, "fan_out") == 0            ? FAN_OUT
                                                            : FAN_AVG;
        out->dist = di == NULL || strcmp(di, "truncated_normal") == 0 || strcmp(di, "normal") == 0
                        ? DIST_TRUNCATED
                    : strcmp(di, "untruncated_normal") == 0 ? DIST_NORMAL
                                                            : DIST_UNIFORM;
    } else if (strcmp(k, "orthogonal") == 0 || strcmp(k, "orthogonal_initializer") == 0) {
        out->kind = INIT_ORTHOGONAL;
        out->a = jnum(cf, "gain", 1);
    } else if (strcmp(k, "identity") == 0) {
        out->kind = INIT_IDENTITY;
        out->a = jnum(cf, "gain", 1);
    } else {
        return ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                              "layer '%s' (%s): initializer '%s' is not supported", name, cls, cn);
    }
    return DDTS_OK;
}

static enum ddts_status parse_reg(struct ctx *c, const json_t *v, const char *name, const char *cls,
                                  struct nn_reg *out)
{
    memset(out, 0, sizeof *out);
    if (v == NULL || json_is_null(v))
        return DDTS_OK;
    const char *cn = json_is_string(v) ? json_string_value(v) : jstr(v, "class_name");
    const json_t *cf = json_is_object(v) ? json_object_get(v, "config") : NULL;
    if (cn == NULL)
        return bad(c, name, cls, "regularizer without class_name");
    if (strcmp(cn, "L2") == 0 || strcmp(cn, "l2") == 0) {
        out->l2 = jnum(cf, "l2", 0.01);
    } else if (strcmp(cn, "L1") == 0 || strcmp(cn, "l1") == 0) {
        out->l1 = jnum(cf, "l1", 0.01);
    } else if (strcmp(cn, "L1L2") == 0 || strcmp(cn, "l1_l2") == 0) {
        out->l1 = jnum(cf, "l1", 0.0);
        out->l2 = jnum(cf, "l2", 0.0);
    } else {
        return ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                              "layer '%s' (%s): regularizer '%s' is not supported", name, cls, cn);
    }
    return DDTS_OK;
}

const struct nn_init ddts__nn_init_glorot = {INIT_VARIANCE_SCALING, 1, 0, FAN_AVG, DIST_UNIFORM, 0};
const struct nn_init ddts__nn_init_zeros = {INIT_ZEROS, 0, 0, 0, 0, 0};
const struct nn_init ddts__nn_init_ones = {INIT_ONES, 0, 0, 0, 0, 0};

static int is_model_class(const char *cls)
{
    return strcmp(cls, "Sequential") == 0 || strcmp(cls, "Functional") == 0 ||
           strcmp(cls, "Model") == 0;
}

/* ---- the accessors of layer.h: a family's parse hook reads its config here ---- */

static const json_t *cfg_of(const struct nn_parse *p)
{
    return (const json_t *)p->cfg;
}

static const json_t *cfg_get(const struct nn_parse *p, const char *key)
{
    const json_t *v = json_object_get(cfg_of(p), key);
    return v == NULL || json_is_null(v) ? NULL : v;
}

enum ddts_status ddts__nn_bad(struct nn_parse *p, const char *what)
{
    const struct nn_node *nd = &p->m->nodes[p->idx];
    return ddts_error_set(p->err, DDTS_EFORMAT, "layer '%s' (%s): %s", nd->name, nd->class_name,
                          what);
}

enum ddts_status ddts__nn_unsup(struct nn_parse *p, const char *what)
{
    const struct nn_node *nd = &p->m->nodes[p->idx];
    return ddts_error_set(p->err, DDTS_EUNSUPPORTED, "layer '%s' (%s): %s is not supported",
                          nd->name, nd->class_name, what);
}

int ddts__nn_cfg_has(const struct nn_parse *p, const char *key)
{
    return cfg_get(p, key) != NULL;
}

int ddts__nn_cfg_is_number(const struct nn_parse *p, const char *key)
{
    return json_is_number(cfg_get(p, key));
}

const char *ddts__nn_cfg_str(const struct nn_parse *p, const char *key)
{
    return jstr(cfg_of(p), key);
}

int ddts__nn_cfg_bool(const struct nn_parse *p, const char *key, int def)
{
    return jbool(cfg_of(p), key, def);
}

/* A JSON number that is an integer in [lo, hi]: checked in double before any
 * conversion, so 1e30 or NaN never reach an int. */
static int int_in(const json_t *v, long lo, long hi, long *out)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        if (x < lo || x > hi)
            return -1;
        *out = (long)x;
        return 0;
    }
    if (!json_is_real(v))
        return -1;
    double d = json_real_value(v);
    if (!(d >= (double)lo && d <= (double)hi) || d != floor(d))
        return -1;
    *out = (long)d;
    return 0;
}

int ddts__nn_cfg_int(const struct nn_parse *p, const char *key, long lo, long hi, long def,
                     int *out)
{
    const json_t *v = cfg_get(p, key);
    long x = def;
    if (v != NULL && int_in(v, lo, hi, &x) != 0)
        return -1;
    if (v == NULL && (def < lo || def > hi))
        return -1;
    *out = (int)x;
    return 0;
}

int ddts__nn_cfg_float(const struct nn_parse *p, const char *key, double lo, double hi, double def,
                       float *out)
{
    const json_t *v = cfg_get(p, key);
    double x = v == NULL ? def : json_is_number(v) ? json_number_value(v) : NAN;
    if (!(x >= lo && x <= hi))
        return -1;
    *out = (float)x;
    return 0;
}

int ddts__nn_cfg_ints(const struct nn_parse *p, const char *key, int n, int def, int *out)
{
    const json_t *v = cfg_get(p, key);
    long x;
    if (v == NULL) {
        for (int i = 0; i < n; i++)
            out[i] = def;
        return 0;
    }
    if (json_is_number(v)) {
        if (int_in(v, 1, (1 << 24) - 1, &x) != 0)
            return -1;
        for (int i = 0; i < n; i++)
            out[i] = (int)x;
        return 0;
    }
    if (!json_is_array(v) || json_array_size(v) != (size_t)n)
        return -1;
    for (int i = 0; i < n; i++) {
        if (int_in(json_array_get(v, (size_t)i), 1, (1 << 24) - 1, &x) != 0)
            return -1;
        out[i] = (int)x;
    }
    return 0;
}

int ddts__nn_cfg_int_list(const struct nn_parse *p, const char *key, int max, int64_t *out)
{
    const json_t *v = cfg_get(p, key);
    if (!json_is_array(v) || json_array_size(v) > (size_t)max)
        return -1;
    for (size_t t = 0; t < json_array_size(v); t++) {
        long x;
        if (int_in(json_array_get(v, t), -(1L << 31) + 1, (1L << 31) - 1, &x) != 0)
            return -1;
        out[t] = x;
    }
    return (int)json_array_size(v);
}

int ddts__nn_cfg_pad4(const struct nn_parse *p, const char *key, int out[4])
{
    const json_t *v = cfg_get(p, key);
    long x[4];
    const long hi = 1L << 20;
    if (json_is_number(v)) {
        if (int_in(v, 0, hi, &x[0]) != 0)
            return -1;
        x[1] = x[2] = x[3] = x[0];
    } else if (json_is_array(v) && json_array_size(v) == 2 &&
               json_is_number(json_array_get(v, 0))) {
        if (int_in(json_array_get(v, 0), 0, hi, &x[0]) != 0 ||
            int_in(json_array_get(v, 1), 0, hi, &x[2]) != 0)
            return -1;
        x[1] = x[0];
        x[3] = x[2];
    } else if (json_is_array(v) && json_array_size(v) == 2) {
        for (size_t t = 0; t < 2; t++) {
            const json_t *q = json_array_get(v, t);
            if (!json_is_array(q) || json_array_size(q) != 2 ||
                int_in(json_array_get(q, 0), 0, hi, &x[2 * t]) != 0 ||
                int_in(json_array_get(q, 1), 0, hi, &x[2 * t + 1]) != 0)
                return -1;
        }
    } else {
        return -1;
    }
    for (int t = 0; t < 4; t++)
        out[t] = (int)x[t];
    return 0;
}

enum ddts_status ddts__nn_cfg_act(struct nn_parse *p, const char *key, struct nn_act *out)
{
    const struct nn_node *nd = &p->m->nodes[p->idx];
    return parse_act(p->m, p->err, json_object_get(cfg_of(p), key), nd->name, nd->class_name, out);
}

enum ddts_status ddts__nn_cfg_null(struct nn_parse *p, const char *key)
{
    return cfg_get(p, key) != NULL ? ddts__nn_unsup(p, key) : DDTS_OK;
}

enum ddts_status ddts__nn_cfg_channels_last(struct nn_parse *p)
{
    const char *df = jstr(cfg_of(p), "data_format");
    if (df != NULL && strcmp(df, "channels_last") != 0)
        return ddts__nn_unsup(p, "data_format channels_first");
    return DDTS_OK;
}

enum ddts_status ddts__nn_cfg_padding(struct nn_parse *p, int *same)
{
    const char *s = jstr(cfg_of(p), "padding");
    if (s == NULL || strcmp(s, "valid") == 0)
        *same = 0;
    else if (strcmp(s, "same") == 0)
        *same = 1;
    else if (strcmp(s, "causal") == 0 &&
             (strcmp(p->m->nodes[p->idx].class_name, "Conv1D") == 0 ||
              strcmp(p->m->nodes[p->idx].class_name, "Convolution1D") == 0))
        *same = 2; /* left padding of dilation * (kernel - 1) steps */
    else
        return ddts__nn_unsup(p, "this padding");
    return DDTS_OK;
}

enum ddts_status ddts__nn_cfg_axis_last(struct nn_parse *p, int rank, int required)
{
    const json_t *ax = json_object_get(cfg_of(p), "axis");
    if (json_is_array(ax) && json_array_size(ax) == 1)
        ax = json_array_get(ax, 0);
    if (ax == NULL && !required)
        return DDTS_OK;
    if (!json_is_integer(ax) || !(json_integer_value(ax) == -1 || json_integer_value(ax) == rank))
        return ddts__nn_unsup(p, "an axis other than the last");
    return DDTS_OK;
}

enum ddts_status ddts__nn_cfg_weight(struct nn_parse *p, const char *wname, int rank,
                                     const int64_t *shape, int trainable, const char *init_key,
                                     struct nn_init def, const char *reg_key)
{
    struct ctx c = {p->m, p->err, 0, 0, 0, 0};
    const struct nn_node *nd = &p->m->nodes[p->idx];
    const json_t *cfg = cfg_of(p);
    struct nn_init in;
    struct nn_reg rg;
    enum ddts_status st = parse_init(&c, init_key ? json_object_get(cfg, init_key) : NULL, nd->name,
                                     nd->class_name, def, &in);
    if (st == DDTS_OK)
        st = parse_reg(&c, reg_key ? json_object_get(cfg, reg_key) : NULL, nd->name, nd->class_name,
                       &rg);
    if (st == DDTS_OK)
        st = ddts__nn_add_weight(p->m, p->idx, wname, rank, shape, trainable, &in, p->err);
    if (st == DDTS_OK)
        p->m->w[p->m->n_w - 1].reg = rg;
    return st;
}

/* ---- one layer ---- */
#define TRY(x)                                                                                     \
    do {                                                                                           \
        st = (x);                                                                                  \
        if (st != DDTS_OK)                                                                         \
            return st;                                                                             \
    } while (0)

/* ---- sequences: masks, recurrent layers, wrappers ---- */

/* 1 + the node that starts the mask node i emits, 0 for none: Embedding
 * with mask_zero and Masking start one; layers that keep the time axis
 * pass theirs on; a recurrent layer returning only its last step, pooling,
 * Flatten and the rest end it (as Keras' compute_mask does). */
static int mask_out(const struct ddts_model *m, int i)
{
    const struct nn_node *nd = &m->nodes[i];
    switch (nd->kind) {
    case NN_EMBEDDING:
        return nd->mask_zero ? i + 1 : 0;
    case NN_MASKING:
        return i + 1;
    case NN_RNN:
        return nd->rnn.return_sequences ? nd->mask_src : 0;
    case NN_DROPOUT:
    case NN_NOISE:
    case NN_ACTIVATION:
    case NN_PRELU:
    case NN_MAXIMUM:
    case NN_MINIMUM:
    case NN_DENSE:
    case NN_CONCAT:
    case NN_ADD:
    case NN_AVERAGE:
    case NN_MULTIPLY:
    case NN_LAYERNORM:
    case NN_MHA:   /* the query's mask (Keras: supports_masking, */
    case NN_LUONG: /* compute_mask gives the first argument's) */
    case NN_ADDITIVE:
        return nd->mask_src;
    default:
        return 0;
    }
}

/* An attention node's value and key masks (its query's is nd->mask_src):
 * what its value and key inputs emit, as Keras derives query_mask,
 * value_mask and key_mask (MultiHeadAttention) or mask=[q, v] (Attention)
 * from its inputs' masks. */
static void attention_masks(const struct ddts_model *m, struct nn_node *nd)
{
    if (nd->kind != NN_MHA && nd->kind != NN_LUONG && nd->kind != NN_ADDITIVE)
        return;
    int n = nd->n_in - nd->attn_mask; /* query, value(, key) */
    nd->vmask_src = mask_out(m, nd->in[n > 1 ? 1 : 0]);
    nd->kmask_src = mask_out(m, nd->in[n > 2 ? 2 : n > 1 ? 1 : 0]);
}

/* Which axes of node i's output follow a None input dimension; refuses one
 * that would size the node's weights. */
static enum ddts_status track_free_dims(struct ctx *c, int i)
{
    struct nn_node *nd = &c->m->nodes[i];
    unsigned f = 0;
    for (int t = 0; t < nd->n_in; t++)
        f |= c->m->nodes[nd->in[t]].free_dims;
    const struct nn_node *a = &c->m->nodes[nd->in[0]];
    if (f == 0) {
        nd->free_dims = 0;
        return DDTS_OK;
    }
    unsigned last = 1u << (a->rank - 1);
    int weighted = nd->kind == NN_DENSE || nd->kind == NN_CONV2D || nd->kind == NN_CONV2DT ||
                   nd->kind == NN_CONV3D || nd->kind == NN_RNN || nd->kind == NN_BATCHNORM ||
                   nd->kind == NN_LAYERNORM || nd->kind == NN_NORMALIZATION ||
                   (nd->kind == NN_ADDITIVE && nd->scale);
    if (weighted && (f & last))
        return unsup(c, nd->name, nd->class_name,
                     "an input dimension of unknown size (None) that sizes the weights");
    /* PReLU's alpha has every axis it does not share; LayerNormalization's
     * gamma and beta every normalized axis */
    unsigned sized = nd->kind == NN_PRELU       ? ~nd->shared_axes
                     : nd->kind == NN_LAYERNORM ? ~((1u << nd->norm_axis) - 1)
                                                : 0;
    if (f & sized)
        return unsup(c, nd->name, nd->class_name,
                     "an input dimension of unknown size (None) that sizes the weights");
    switch (nd->kind) {
    case NN_EMBEDDING:
        nd->free_dims = f;
        break;
    case NN_RNN:
        nd->free_dims = nd->rnn.return_sequences ? (f & 1u) : 0;
        break;
    case NN_GAP:
    case NN_GMP:
        nd->free_dims = nd->keepdims ? f & ~last : 0;
        break;
    case NN_REPEAT:
        nd->free_dims = f << 1;
        break;
    case NN_PERMUTE:
        nd->free_dims = 0;
        for (int k = 0; k < nd->rank; k++)
            nd->free_dims |= (f >> nd->perm[k] & 1u) << k;
        break;
    default:
        /* same rank: the same axes (a weighted layer's last is its own);
         * otherwise every axis may depend on them */
        nd->free_dims = nd->rank == a->rank ? (weighted ? f & ~last : f) : (1u << nd->rank) - 1;
        break;
    }
    return DDTS_OK;
}

static enum ddts_status add_layer(struct ctx *c, const char *cls, const char *name,
                                  const json_t *cfg, const int *in, int n_in, int entry, int *out);

/* The output nodes of one layer, in Keras' order (tensor index). */
struct layer_outs {
    int n;
    int node[NN_MAX_LAYER_OUTPUTS];
};

/* return_state of recurrent node `rnn`: a node per final state (h, then c
 * for LSTM) appended to *o. */
static enum ddts_status add_state_outputs(struct ctx *c, int rnn, int entry, struct layer_outs *o)
{
    enum ddts_status st;
    if (!c->m->nodes[rnn].return_state)
        return DDTS_OK;
    int n_states = c->m->nodes[rnn].rnn.cell == RNN_LSTM ? 2 : 1;
    for (int k = 0; k < n_states && o->n < NN_MAX_LAYER_OUTPUTS; k++) {
        char sname[300];
        snprintf(sname, sizeof sname, "%s/state_%s", c->m->nodes[rnn].name, k ? "c" : "h");
        int idx;
        TRY(ddts__nn_add_node(c->m, sname, "RecurrentState", &ddts__nn_rnn_state_ops, entry, &rnn,
                              1, &idx, c->err));
        c->m->nodes[idx].state_which = k;
        c->m->nodes[idx].trainable = c->m->nodes[rnn].trainable;
        TRY(ddts__nn_infer_shape(c->m, idx, c->err));
        c->m->nodes[rnn].state_out[k] = idx + 1;
        o->node[o->n++] = idx;
    }
    return DDTS_OK;
}

/* Freezes the nodes from `first` on and their weights: what a model or a
 * wrapper whose config says "trainable": false holds. Keras gives such a
 * layer no trainable weights whatever its inner layers' configs say (and a
 * BatchNormalization inside runs in inference mode); the weights were
 * created, trainable as their own layers said, while those were parsed. */
static void freeze_from(struct ddts_model *m, size_t first)
{
    for (size_t q = first; q < m->n_nodes; q++)
        m->nodes[q].trainable = 0;
    for (size_t s = 0; s < m->n_w; s++)
        if (m->w[s].node >= (int)first)
            m->w[s].trainable = 0;
}

/* Bidirectional: a forward and a backward recurrent node (weights in that
 * order, as Keras lists them) and a merge node named after the wrapper.
 * TimeDistributed: its inner layer when that layer already maps the last
 * axis alone (Dense, Dropout, Activation), which is what TimeDistributed
 * makes of it. */
static enum ddts_status wrapper_layers(struct ctx *c, const char *cls, const char *name,
                                       const json_t *cfg, const int *in, int n_in, int entry,
                                       int *out, struct layer_outs *o)
{
    enum ddts_status st;
    const json_t *l = json_object_get(cfg, "layer");
    const char *icls = jstr(l, "class_name");
    const json_t *icfg = json_object_get(l, "config");
    if (icls == NULL || !json_is_object(icfg))
        return bad(c, name, cls, "no inner layer");
    if (n_in != 1)
        return bad(c, name, cls, "expects exactly one input");
    if (strcmp(cls, "TimeDistributed") == 0) {
        const struct nn_layer_ops *iops = ddts__nn_layer_find(icls);
        if (iops == NULL || !iops->per_step)
            return ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                                  "layer '%s' (%s): an inner %s is not supported (layers that map "
                                  "the last axis alone are: Dense, Dropout, activations)",
                                  name, cls, icls);
        return add_layer(c, icls, name, icfg, in, 1, entry, out);
    }
    if (strcmp(icls, "LSTM") != 0 && strcmp(icls, "GRU") != 0 && strcmp(icls, "SimpleRNN") != 0)
        return ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                              "layer '%s' (%s): an inner %s is not supported (LSTM, GRU and "
                              "SimpleRNN are)",
                              name, cls, icls);
    const json_t *mm = json_object_get(cfg, "merge_mode");
    const char *mode = json_is_string(mm) ? json_string_value(mm) : NULL;
    const char *mcls = NULL;
    if (o == NULL && mode == NULL)
        return unsup(c, name, cls, "merge_mode None (two outputs) outside a functional model");
    if (o == NULL && jbool(icfg, "return_state", 0))
        return unsup(c, name, cls, "return_state (several outputs) outside a functional model");
    if (mode == NULL)
        mcls = NULL; /* two outputs: the forward and the backward layer's */
    else if (strcmp(mode, "concat") == 0)
        mcls = "Concatenate";
    else if (strcmp(mode, "sum") == 0)
        mcls = "Add";
    else if (strcmp(mode, "mul") == 0)
        mcls = "Multiply";
    else if (strcmp(mode, "ave") == 0)
        mcls = "Average";
    else
        return unsup(c, name, cls, "this merge_mode");
    /* Keras 3 writes the backward layer's own config (go_backwards already
     * flipped); older files leave it to be derived from the forward one. */
    const json_t *bl = json_object_get(cfg, "backward_layer");
    const char *bcls = icls;
    const json_t *bcfg = icfg;
    if (bl != NULL && !json_is_null(bl)) {
        bcls = jstr(bl, "class_name");
        bcfg = json_object_get(bl, "config");
        if (bcls == NULL || !json_is_object(bcfg))
            return bad(c, name, cls, "bad backward_layer");
        if (strcmp(bcls, icls) != 0)
            return unsup(c, name, cls, "a backward_layer of another class");
    }
    const char *iname = jstr(icfg, "name");
    char fname[256], bname[256];
    snprintf(fname, sizeof fname, "forward_%s", iname ? iname : "rnn");
    snprintf(bname, sizeof bname, "backward_%s", iname ? iname : "rnn");
    int two[2];
    TRY(add_layer(c, icls, fname, icfg, in, 1, entry, &two[0]));
    TRY(add_layer(c, bcls, bname, bcfg, in, 1, entry, &two[1]));
    struct ddts__rnn_spec *fs = &c->m->nodes[two[0]].rnn, *bs = &c->m->nodes[two[1]].rnn;
    if (bcfg == icfg)
        bs->go_backwards = !bs->go_backwards;
    if (bs->U != fs->U || bs->return_sequences != fs->return_sequences ||
        bs->go_backwards == fs->go_backwards)
        return unsup(c, name, cls, "a backward_layer that does not mirror the forward one");
    bs->reverse_out = bs->return_sequences;
    if (mcls == NULL) {
        /* merge_mode None: [forward output, backward output, forward states, backward states] */
        o->n = 0;
        o->node[o->n++] = two[0];
        o->node[o->n++] = two[1];
        TRY(add_state_outputs(c, two[0], entry, o));
        TRY(add_state_outputs(c, two[1], entry, o));
        *out = two[0];
        return DDTS_OK;
    }
    int idx;
    /* the merge layer's descriptor, under the wrapper's name and class */
    TRY(ddts__nn_add_node(c->m, name, cls, ddts__nn_layer_find(mcls), entry, two, 2, &idx, c->err));
    struct nn_node *nd = &c->m->nodes[idx];
    nd->trainable = jbool(cfg, "trainable", 1);
    nd->axis = -1;
    TRY(ddts__nn_infer_shape(c->m, idx, c->err));
    TRY(track_free_dims(c, idx));
    c->m->nodes[idx].mask_src = mask_out(c->m, two[0]);
    *out = idx;
    if (o != NULL) {
        /* [merged output, forward states, backward states] */
        o->n = 0;
        o->node[o->n++] = idx;
        TRY(add_state_outputs(c, two[0], entry, o));
        TRY(add_state_outputs(c, two[1], entry, o));
    }
    return DDTS_OK;
}

/* A wrapper layer (wrapper_layers); "trainable": false on the wrapper
 * freezes what it wraps. */
static enum ddts_status add_wrapper(struct ctx *c, const char *cls, const char *name,
                                    const json_t *cfg, const int *in, int n_in, int entry, int *out,
                                    struct layer_outs *o)
{
    size_t first = c->m->n_nodes;
    enum ddts_status st = wrapper_layers(c, cls, name, cfg, in, n_in, entry, out, o);
    if (st == DDTS_OK && !jbool(cfg, "trainable", 1))
        freeze_from(c->m, first);
    return st;
}

/* A functional model's layer with all its outputs (return_state, a
 * Bidirectional's merge_mode None). */
static enum ddts_status add_layer_outs(struct ctx *c, const char *cls, const char *name,
                                       const json_t *cfg, const int *in, int n_in, int entry,
                                       struct layer_outs *o)
{
    enum ddts_status st;
    o->n = 0;
    int node;
    if (strcmp(cls, "Bidirectional") == 0)
        return add_wrapper(c, cls, name, cfg, in, n_in, entry, &node, o);
    TRY(add_layer(c, cls, name, cfg, in, n_in, entry, &node));
    o->node[o->n++] = node;
    if (c->m->nodes[node].kind == NN_RNN)
        TRY(add_state_outputs(c, node, entry, o));
    return DDTS_OK;
}

/* A layer of class `cls`: its descriptor parses the config, infers the
 * shape and adds the weights (src/nn/layer_*.c). */
static enum ddts_status add_layer(struct ctx *c, const char *cls, const char *name,
                                  const json_t *cfg, const int *in, int n_in, int entry, int *out)
{
    enum ddts_status st;
    if (strcmp(cls, "Bidirectional") == 0 || strcmp(cls, "TimeDistributed") == 0)
        return add_wrapper(c, cls, name, cfg, in, n_in, entry, out, NULL);
    const struct nn_layer_ops *d = ddts__nn_layer_find(cls);
    if (d == NULL || d->parse == NULL || d == &ddts__nn_input_ops)
        return ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                              "layer '%s' (%s): layer class '%s' is not supported", name, cls, cls);
    if (d->max_in == 1 && n_in != 1)
        return bad(c, name, cls, "expects exactly one input");
    if (n_in < d->min_in || n_in < 1)
        return bad(c, name, cls, "has no inputs");
    if (n_in > d->max_in)
        return bad(c, name, cls, "has too many inputs");
    int idx;
    TRY(ddts__nn_add_node(c->m, name, cls, d, entry, in, n_in, &idx, c->err));
    struct nn_parse p = {c->m, c->err, (const struct nn_cfg *)cfg, idx};
    c->m->nodes[idx].trainable = jbool(cfg, "trainable", 1);
    c->m->nodes[idx].causal = c->kw_causal;
    c->m->nodes[idx].attn_mask = c->kw_mask;
    TRY(d->parse(&p, &c->m->nodes[idx]));
    TRY(ddts__nn_infer_shape(c->m, idx, c->err));
    if (d->add_weights != NULL)
        TRY(d->add_weights(&p, &c->m->nodes[idx]));
    TRY(track_free_dims(c, idx));
    c->m->nodes[idx].mask_src = mask_out(c->m, in[0]);
    attention_masks(c->m, &c->m->nodes[idx]);
    *out = idx;
    return DDTS_OK;
}

/* Shape (batch dimension first, dropped) from a JSON list; 0 if absent. */
static enum ddts_status read_shape(struct ctx *c, const json_t *v, int drop_batch, const char *name,
                                   const char *cls, int *rank, int64_t *shape)
{
    if (!json_is_array(v))
        return bad(c, name, cls, "input shape is not a list");
    c->free_dims = 0;
    size_t n = json_array_size(v), s = drop_batch ? 1 : 0;
    if (n < s || n - s > DDTS_MAX_RANK)
        return ddts_error_set(c->err, DDTS_ELIMIT, "layer '%s' (%s): input rank %zu (max %d)", name,
                              cls, n - s, DDTS_MAX_RANK);
    *rank = (int)(n - s);
    for (size_t i = s; i < n; i++) {
        const json_t *e = json_array_get(v, i);
        if (json_is_null(e)) {
            /* a dimension of unknown size (variable-length sequences): a
             * placeholder until the data binds it (ddts_model_bind_input) */
            c->free_dims |= 1u << (i - s);
            shape[i - s] = DDTS_FREE_DIM_PLACEHOLDER;
            continue;
        }
        if (!json_is_integer(e) || json_integer_value(e) <= 0 || json_integer_value(e) > (1 << 30))
            return bad(c, name, cls, "bad input shape");
        shape[i - s] = json_integer_value(e);
    }
    return DDTS_OK;
}

static enum ddts_status make_input(struct ctx *c, const char *name, const char *cls, int rank,
                                   const int64_t *shape, int entry, int *out)
{
    enum ddts_status st;
    TRY(ddts__nn_add_node(c->m, name, cls, &ddts__nn_input_ops, entry, NULL, 0, out, c->err));
    struct nn_node *nd = &c->m->nodes[*out];
    nd->rank = rank;
    memcpy(nd->shape, shape, (size_t)rank * sizeof *shape);
    nd->free_dims = c->free_dims;
    c->free_dims = 0;
    return ddts__nn_infer_shape(c->m, *out, c->err);
}

/* Input shape of an InputLayer config or of a first layer. */
static enum ddts_status input_shape_of(struct ctx *c, const json_t *layer, const json_t *cfg,
                                       const char *name, const char *cls, int *rank, int64_t *shape,
                                       int *found)
{
    const json_t *v;
    *found = 1;
    if ((v = json_object_get(cfg, "batch_input_shape")) != NULL && !json_is_null(v))
        return read_shape(c, v, 1, name, cls, rank, shape);
    if ((v = json_object_get(cfg, "batch_shape")) != NULL && !json_is_null(v))
        return read_shape(c, v, 1, name, cls, rank, shape);
    if ((v = json_object_get(cfg, "input_shape")) != NULL && !json_is_null(v))
        return read_shape(c, v, 0, name, cls, rank, shape);
    if ((v = json_object_get(cfg, "shape")) != NULL && !json_is_null(v))
        return read_shape(c, v, 0, name, cls, rank, shape);
    const json_t *bc = json_object_get(layer, "build_config");
    if ((v = json_object_get(bc, "input_shape")) != NULL && json_is_array(v))
        return read_shape(c, v, 1, name, cls, rank, shape);
    *found = 0;
    return DDTS_OK;
}

static enum ddts_status parse_model(struct ctx *c, const json_t *obj, int in_node, int entry,
                                    int *out_node);

static const char *layer_name(const json_t *layer, const json_t *cfg)
{
    const char *n = jstr(cfg, "name");
    if (n == NULL)
        n = jstr(layer, "name");
    return n ? n : "?";
}

static enum ddts_status new_entry(struct ctx *c, const char *name, const char *cls, int *e)
{
    return ddts__nn_add_entry(c->m, name, cls, e, c->err);
}

static enum ddts_status parse_sequential(struct ctx *c, const json_t *cfg, int in_node, int entry,
                                         int *out_node)
{
    enum ddts_status st;
    const json_t *layers = json_is_array(cfg) ? cfg : json_object_get(cfg, "layers");
    if (!json_is_array(layers))
        return ddts_error_set(c->err, DDTS_EFORMAT, "Sequential config has no layer list");
    int cur = in_node;
    int mtrain = json_is_object(cfg) ? jbool(cfg, "trainable", 1) : 1;
    size_t i;
    json_t *layer;
    json_array_foreach(layers, i, layer)
    {
        const char *cls = jstr(layer, "class_name");
        const json_t *lc = json_object_get(layer, "config");
        if (cls == NULL || !json_is_object(lc))
            return ddts_error_set(c->err, DDTS_EFORMAT,
                                  "Sequential layer %zu: no class_name/config", i);
        const char *name = layer_name(layer, lc);
        int rank, found, e = entry;
        int64_t shape[DDTS_MAX_RANK];
        if (strcmp(cls, "InputLayer") == 0) {
            if (cur >= 0)
                continue;
            TRY(input_shape_of(c, layer, lc, name, cls, &rank, shape, &found));
            if (!found)
                return bad(c, name, cls, "no input shape");
            TRY(make_input(c, name, cls, rank, shape, entry, &cur));
            continue;
        }
        if (cur < 0) {
            if (!is_model_class(cls)) {
                TRY(input_shape_of(c, layer, lc, name, cls, &rank, shape, &found));
                if (!found)
                    return ddts_error_set(c->err, DDTS_EFORMAT,
                                          "layer '%s' (%s): the model's input shape is unknown "
                                          "(no InputLayer or batch_input_shape)",
                                          name, cls);
                TRY(make_input(c, "input", "InputLayer", rank, shape, entry, &cur));
            }
        }
        if (e < 0)
            TRY(new_entry(c, name, cls, &e));
        size_t first = c->m->n_nodes;
        if (is_model_class(cls)) {
            TRY(parse_model(c, layer, cur, e, &cur));
        } else {
            TRY(add_layer(c, cls, name, lc, &cur, 1, e, &cur));
            if (c->m->nodes[cur].kind == NN_RNN && c->m->nodes[cur].return_state)
                return unsup(c, name, cls, "return_state (several outputs) in a Sequential model");
        }
        if (!mtrain)
            freeze_from(c->m, first);
        if (entry < 0)
            c->m->entries[e].node_out = cur;
    }
    if (cur < 0)
        return ddts_error_set(c->err, DDTS_EFORMAT, "Sequential model has no layers");
    *out_node = cur;
    return DDTS_OK;
}

/* Collects layer names, node indices (which call of a layer called several
 * times) and tensor indices (which output of a layer with several) of Keras 2
 * refs ["name", node, tensor, {...}] and Keras 3 {"class_name":
 * "__keras_tensor__", "config": {"keras_history": [name, node, tensor]}}; a
 * Keras 3 call's kwargs.initial_state follows its args. */
struct refs {
    int n;
    const char *name[MAX_INBOUND];
    int node[MAX_INBOUND], tensor[MAX_INBOUND];
};

static enum ddts_status collect_refs(struct ctx *c, const json_t *v, struct refs *r, int depth)
{
    if (depth > 16)
        return ddts_error_set(c->err, DDTS_EFORMAT, "inbound_nodes nested too deeply");
    if (json_is_array(v)) {
        if (json_array_size(v) >= 3 && json_is_string(json_array_get(v, 0)) &&
            json_is_integer(json_array_get(v, 1))) {
            const json_t *ti = json_array_get(v, 2);
            json_int_t t = json_is_integer(ti) ? json_integer_value(ti) : 0;
            json_int_t k = json_integer_value(json_array_get(v, 1));
            if (t < 0 || t > 64 || k < 0 || k > DDTS_MAX_LAYERS)
                return ddts_error_set(
                    c->err, DDTS_EFORMAT, "layer '%s': node index %lld, tensor index %lld",
                    json_string_value(json_array_get(v, 0)), (long long)k, (long long)t);
            if (r->n >= MAX_INBOUND)
                return ddts_error_set(c->err, DDTS_ELIMIT, "a layer has more than %d inputs",
                                      MAX_INBOUND);
            r->tensor[r->n] = (int)t;
            r->node[r->n] = (int)k;
            r->name[r->n++] = json_string_value(json_array_get(v, 0));
            /* tf.keras may keep a call's tensor kwargs here: {"initial_state": [refs]} */
            const json_t *is = json_object_get(json_array_get(v, 3), "initial_state");
            if (is != NULL && !json_is_null(is))
                return collect_refs(c, is, r, depth + 1);
            return DDTS_OK;
        }
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            enum ddts_status st = collect_refs(c, e, r, depth + 1);
            if (st != DDTS_OK)
                return st;
        }
        return DDTS_OK;
    }
    if (json_is_object(v)) {
        const char *cn = jstr(v, "class_name");
        if (cn && strcmp(cn, "__keras_tensor__") == 0) {
            const json_t *h = json_object_get(json_object_get(v, "config"), "keras_history");
            return collect_refs(c, h, r, depth + 1);
        }
        const json_t *args = json_object_get(v, "args");
        enum ddts_status st = DDTS_OK;
        if (args)
            st = collect_refs(c, args, r, depth + 1);
        const json_t *is = json_object_get(json_object_get(v, "kwargs"), "initial_state");
        if (st == DDTS_OK && is != NULL && !json_is_null(is))
            st = collect_refs(c, is, r, depth + 1);
        return st;
    }
    return DDTS_OK;
}

/* A functional model's layers by name in `scope`: {"b": the node index of
 * its first call, "n": its number of calls, "c": [the outputs of each call
 * built so far]}; an output is a node, or the array of a layer's output
 * nodes (tensor index order) when it has several. */
static enum ddts_status scope_add(struct ctx *c, json_t *scope, const char *name, const char *cls,
                                  int base, int calls)
{
    if (json_object_get(scope, name) != NULL)
        return ddts_error_set(c->err, DDTS_EFORMAT, "layer '%s' (%s): a second layer of this name",
                              name, cls);
    json_t *o = json_pack("{s:i, s:i, s:[]}", "b", base, "n", calls, "c");
    if (o == NULL || json_object_set_new(scope, name, o) != 0)
        return ddts_error_set(c->err, DDTS_ENOMEM, "out of memory");
    return DDTS_OK;
}

/* A tensor reference: Keras 2 ["name", node, tensor] or a Keras 3 __keras_tensor__. */
static int is_tensor_ref(const json_t *v)
{
    if (json_is_array(v))
        return json_array_size(v) >= 3 && json_is_string(json_array_get(v, 0)) &&
               json_is_integer(json_array_get(v, 1));
    const char *cn = jstr(v, "class_name");
    return cn != NULL && strcmp(cn, "__keras_tensor__") == 0;
}

/* 1 when v is null or a list of nulls (a call's mask arguments Keras filled
 * in without a mask). */
static int all_null(const json_t *v)
{
    size_t i;
    json_t *e;
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_array(v) || is_tensor_ref(v))
        return 0;
    json_array_foreach(v, i, e) if (!json_is_null(e)) return 0;
    return 1;
}

/* The call arguments of an attention layer's node (ib0: its inbound node):
 * tf.keras 2.x keeps them in the first reference's fourth element ({"value":
 * ["v", 0, 0], "attention_mask": [...], "use_causal_mask": true}: every
 * argument but the first), Keras 3 in the node's "kwargs". Tensors passed by
 * keyword (value, key, then MultiHeadAttention's attention_mask) follow the
 * positional inputs; use_causal_mask goes to c->kw_causal. Explicit
 * query/value/key masks and the rest are refused by name. */
static enum ddts_status attention_kwargs(struct ctx *c, const json_t *ib0, const char *name,
                                         const char *cls, struct refs *r)
{
    enum ddts_status st;
    int mha = strcmp(cls, "MultiHeadAttention") == 0;
    if (!mha && strcmp(cls, "Attention") != 0 && strcmp(cls, "AdditiveAttention") != 0)
        return DDTS_OK;
    const json_t *kw = json_object_get(ib0, "kwargs");
    if (json_is_array(ib0) && json_is_array(json_array_get(ib0, 0)))
        kw = json_array_get(json_array_get(ib0, 0), 3);
    if (!json_is_object(kw))
        return DDTS_OK;
    static const char *const by_kw[] = {"value", "key", "attention_mask"};
    for (size_t i = 0; i < 3; i++) {
        const json_t *v = json_object_get(kw, by_kw[i]);
        if (v == NULL || json_is_null(v))
            continue;
        if (!is_tensor_ref(v) || (!mha && i < 2))
            return unsup(c, name, cls,
                         i == 2 ? "attention_mask given as constant values"
                                : "this call's tensor passed by keyword");
        if (i == 2 && !mha)
            return unsup(c, name, cls, "attention_mask");
        int before = r->n;
        TRY(collect_refs(c, v, r, 1));
        if (r->n != before + 1)
            return bad(c, name, cls, "a keyword tensor argument is not one tensor");
        c->kw_mask = i == 2;
    }
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)kw, key, v)
    {
        int known = 0;
        for (size_t i = 0; i < 3; i++)
            known |= strcmp(key, by_kw[i]) == 0;
        if (known || strcmp(key, "training") == 0)
            continue;
        if (strcmp(key, "use_causal_mask") == 0) {
            if (!json_is_boolean(v) && !json_is_null(v))
                return bad(c, name, cls, "use_causal_mask must be true or false");
            c->kw_causal = json_is_true(v);
        } else if (strcmp(key, "return_attention_scores") == 0) {
            if (json_is_true(v))
                return unsup(c, name, cls, "return_attention_scores");
        } else if (strcmp(key, "query_mask") == 0 || strcmp(key, "value_mask") == 0 ||
                   strcmp(key, "key_mask") == 0 || strcmp(key, "mask") == 0) {
            if (!all_null(v))
                return ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                                      "layer '%s' (%s): call argument %s given as a tensor is not "
                                      "supported (masks derived from the inputs are)",
                                      name, cls, key);
        } else {
            return ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                                  "layer '%s' (%s): call argument '%s' is not supported", name, cls,
                                  key);
        }
    }
    return DDTS_OK;
}

/* The nodes of refs: 0; 1 when a ref names a call not built yet (its inputs
 * come later); -1 with the error set when a ref can never resolve. A layer
 * called once takes any node index: Keras 2.2 counted a nested model's own
 * first node, later versions do not (Keras' _should_skip_first_node). */
static int lookup(struct ctx *c, json_t *scope, const struct refs *r, int *out, const char *who)
{
    for (int i = 0; i < r->n; i++) {
        const json_t *o = json_object_get(scope, r->name[i]);
        if (o == NULL) {
            ddts_error_set(c->err, DDTS_EFORMAT, "layer '%s': inbound layer '%s' is not defined",
                           who, r->name[i]);
            return -1;
        }
        json_int_t n = json_integer_value(json_object_get(o, "n"));
        json_int_t k = n == 1 ? 0 : r->node[i] - json_integer_value(json_object_get(o, "b"));
        if (k < 0 || k >= n) {
            ddts_error_set(c->err, DDTS_EFORMAT,
                           "layer '%s': inbound layer '%s' has no node %d (it is called %lld "
                           "times)",
                           who, r->name[i], r->node[i], (long long)n);
            return -1;
        }
        const json_t *v = json_array_get(json_object_get(o, "c"), (size_t)k);
        if (v == NULL)
            return 1;
        if (json_is_array(v) && (size_t)r->tensor[i] < json_array_size(v))
            v = json_array_get(v, (size_t)r->tensor[i]);
        else if (json_is_integer(v) && r->tensor[i] != 0)
            v = NULL;
        if (!json_is_integer(v)) {
            ddts_error_set(c->err, DDTS_EFORMAT, "layer '%s': inbound layer '%s' has no output %d",
                           who, r->name[i], r->tensor[i]);
            return -1;
        }
        out[i] = (int)json_integer_value(v);
    }
    return 0;
}

/* One layer of a Functional config and where its calls stand. */
struct fn_layer {
    const json_t *layer, *cfg;
    const char *name, *cls;
    int e;                    /* its entry */
    int calls, next;          /* calls in the config; the next one to build */
    int own_first, own_count; /* the nodes of its first call */
};

/* A nested model's node index of its first call: Keras counts the node that
 * links a model built on an Input to its output (tf.keras: any model whose
 * first layer is an InputLayer; Keras 3: a Functional, not a Sequential). */
static int node_base(const struct ctx *c, const char *cls, const json_t *cfg)
{
    if (!is_model_class(cls))
        return 0;
    if (c->m->keras3)
        return strcmp(cls, "Sequential") != 0;
    const json_t *layers = json_is_array(cfg) ? cfg : json_object_get(cfg, "layers");
    const char *first = jstr(json_array_get(layers, 0), "class_name");
    return first != NULL && strcmp(first, "InputLayer") == 0;
}

static enum ddts_status fn_layer_init(struct ctx *c, const json_t *layer, size_t i, int entry,
                                      json_t *scope, struct fn_layer *L)
{
    enum ddts_status st;
    L->layer = layer;
    L->cls = jstr(layer, "class_name");
    L->cfg = json_object_get(layer, "config");
    if (L->cls == NULL || !json_is_object(L->cfg))
        return ddts_error_set(c->err, DDTS_EFORMAT, "Functional layer %zu: no class_name/config",
                              i);
    L->name = jstr(layer, "name");
    if (L->name == NULL)
        L->name = layer_name(layer, L->cfg);
    L->calls = 1;
    if (strcmp(L->cls, "InputLayer") != 0) {
        const json_t *ib = json_object_get(layer, "inbound_nodes");
        if (!json_is_array(ib) || json_array_size(ib) == 0)
            return ddts_error_set(c->err, DDTS_EFORMAT, "layer '%s' (%s): no inbound_nodes",
                                  L->name, L->cls);
        if (json_array_size(ib) > DDTS_MAX_LAYERS)
            return ddts_error_set(c->err, DDTS_ELIMIT, "layer '%s' (%s): %zu calls", L->name,
                                  L->cls, json_array_size(ib));
        L->calls = (int)json_array_size(ib);
    }
    L->e = entry;
    if (entry < 0)
        TRY(new_entry(c, L->name, L->cls, &L->e));
    return scope_add(c, scope, L->name, L->cls, node_base(c, L->cls, L->cfg), L->calls);
}

/* The next call of layer L: its node(s) added (a nested model's too), bound
 * in `scope`; a call after the first takes the first call's weights
 * (ddts__nn_share_call). *ready is 0 when its inputs are not built yet. */
static enum ddts_status functional_call(struct ctx *c, struct fn_layer *L,
                                        const char *const *input_names, int n_inputs, int in_node,
                                        int entry, int mtrain, json_t *scope, int *ready)
{
    enum ddts_status st;
    struct refs r = {0};
    int ids[MAX_INBOUND];
    struct layer_outs outs = {0, {0}};
    const char *name = L->name, *cls = L->cls;
    int node = -1, k = L->next;
    size_t first = c->m->n_nodes, w_from = c->m->n_w;
    *ready = 1;
    if (strcmp(cls, "InputLayer") == 0) {
        int listed = 0;
        for (int q = 0; q < n_inputs; q++)
            listed |= strcmp(name, input_names[q]) == 0;
        if (!listed)
            return ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                                  "layer '%s' (InputLayer): not one of the model's input_layers",
                                  name);
        if (in_node >= 0) {
            node = in_node;
        } else {
            int rank, found;
            int64_t shape[DDTS_MAX_RANK];
            TRY(input_shape_of(c, L->layer, L->cfg, name, cls, &rank, shape, &found));
            if (!found)
                return bad(c, name, cls, "no input shape");
            TRY(make_input(c, name, cls, rank, shape, L->e, &node));
        }
    } else {
        const json_t *ib = json_array_get(json_object_get(L->layer, "inbound_nodes"), (size_t)k);
        TRY(collect_refs(c, ib, &r, 0));
        c->kw_causal = c->kw_mask = 0;
        TRY(attention_kwargs(c, ib, name, cls, &r));
        if (r.n == 0)
            return ddts_error_set(c->err, DDTS_EFORMAT, "layer '%s' (%s): no inputs", name, cls);
        int lk = lookup(c, scope, &r, ids, name);
        if (lk < 0)
            return DDTS_EFORMAT;
        if (lk > 0) {
            *ready = 0;
            return DDTS_OK;
        }
        if (is_model_class(cls)) {
            if (r.n != 1)
                return unsup(c, name, cls, "a nested model with several inputs");
            TRY(parse_model(c, L->layer, ids[0], L->e, &node));
        } else {
            st = add_layer_outs(c, cls, name, L->cfg, ids, r.n, L->e, &outs);
            c->kw_causal = c->kw_mask = 0;
            if (st != DDTS_OK)
                return st;
            node = outs.node[0];
        }
    }
    if (!mtrain)
        freeze_from(c->m, first);
    if (k == 0) {
        L->own_first = (int)first;
        L->own_count = (int)(c->m->n_nodes - first);
        if (entry < 0) {
            c->m->entries[L->e].node_out = node;
            if (outs.n > 1) {
                c->m->entries[L->e].n_out = outs.n;
                memcpy(c->m->entries[L->e].node_outs, outs.node, sizeof outs.node);
            }
        }
    } else {
        TRY(ddts__nn_share_call(c->m, L->own_first, (int)first, L->own_count, w_from, k, c->err));
    }
    L->next++;
    /* One output: its node; several: the array of their nodes (tensor index order). */
    json_t *jv = outs.n > 1 ? json_array() : json_integer(node);
    for (int q = 0; jv != NULL && outs.n > 1 && q < outs.n; q++)
        if (json_array_append_new(jv, json_integer(outs.node[q])) != 0) {
            json_decref(jv);
            jv = NULL;
        }
    json_t *calls = json_object_get(json_object_get(scope, name), "c");
    if (jv == NULL || json_array_append_new(calls, jv) != 0)
        return ddts_error_set(c->err, DDTS_ENOMEM, "out of memory");
    return DDTS_OK;
}

/* Builds every call of every layer: in the config's order, a call whose
 * inputs come from a later call (a shared layer applied again further down)
 * waiting for them, as Keras' from_config does. */
static enum ddts_status functional_calls(struct ctx *c, struct fn_layer *L, size_t n_layers,
                                         const char *const *in_names, int n_in, int in_node,
                                         int entry, int mtrain, json_t *scope)
{
    enum ddts_status st;
    for (;;) {
        int progress = 0, left = 0;
        for (size_t i = 0; i < n_layers; i++) {
            int ready = 1;
            while (ready && L[i].next < L[i].calls) {
                TRY(functional_call(c, &L[i], in_names, n_in, in_node, entry, mtrain, scope,
                                    &ready));
                progress |= ready;
            }
            left |= L[i].next < L[i].calls;
        }
        if (!left)
            return DDTS_OK;
        if (!progress)
            break;
    }
    for (size_t i = 0; i < n_layers; i++)
        if (L[i].next < L[i].calls)
            return ddts_error_set(c->err, DDTS_EFORMAT,
                                  "layer '%s' (%s): its inputs (call %d) are never defined (a "
                                  "cycle, or a missing layer)",
                                  L[i].name, L[i].cls, L[i].next);
    return DDTS_OK;
}

static enum ddts_status parse_functional(struct ctx *c, const json_t *cfg, int in_node, int entry,
                                         int *out_node)
{
    enum ddts_status st = DDTS_OK;
    const json_t *layers = json_object_get(cfg, "layers");
    if (!json_is_array(layers))
        return ddts_error_set(c->err, DDTS_EFORMAT, "Functional config has no layer list");
    const char *in_names[DDTS_MAX_INPUTS];
    int ids[DDTS_MAX_INPUTS] = {-1}, n_in;
    int mtrain = jbool(cfg, "trainable", 1);
    struct refs r = {0};
    st = collect_refs(c, json_object_get(cfg, "input_layers"), &r, 0);
    if (st != DDTS_OK)
        return st;
    /* Several inputs at the top only: a nested model is called on one tensor. */
    if (r.n < 1 || r.n > DDTS_MAX_INPUTS || (in_node >= 0 && r.n != 1))
        return ddts_error_set(c->err, DDTS_EUNSUPPORTED, "model '%s': %d inputs (%s)",
                              jstr(cfg, "name") ? jstr(cfg, "name") : "?", r.n,
                              in_node >= 0 ? "a nested model with several inputs is not supported"
                                           : "1 to 16 are supported (DDTS_MAX_INPUTS)");
    n_in = r.n;
    struct refs in_refs = r;
    memcpy(in_names, r.name, (size_t)n_in * sizeof *in_names);
    size_t n_layers = json_array_size(layers);
    json_t *scope = json_object();
    struct fn_layer *L = ddts_calloc(n_layers ? n_layers : 1, sizeof *L);
    if (scope == NULL || L == NULL) {
        st = ddts_error_set(c->err, DDTS_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n_layers && st == DDTS_OK; i++)
        st = fn_layer_init(c, json_array_get(layers, i), i, entry, scope, &L[i]);
    if (st == DDTS_OK)
        st = functional_calls(c, L, n_layers, in_names, n_in, in_node, entry, mtrain, scope);
    if (st != DDTS_OK)
        goto done;
    if (in_node < 0) { /* the top model: its inputs in input_layers order */
        if (lookup(c, scope, &in_refs, ids, "input_layers") != 0) {
            st = DDTS_EFORMAT; /* (every call is built by now: lookup set the error) */
            goto done;
        }
        for (int k = 0; k < n_in; k++) {
            if (c->m->nodes[ids[k]].kind != NN_INPUT) {
                st = ddts_error_set(c->err, DDTS_EFORMAT, "input_layers: '%s' is not an InputLayer",
                                    in_names[k]);
                goto done;
            }
            for (int q = 0; q < k; q++)
                if (ids[q] == ids[k]) {
                    st = ddts_error_set(c->err, DDTS_EFORMAT, "input_layers: '%s' listed twice",
                                        in_names[k]);
                    goto done;
                }
            c->m->input_nodes[k] = ids[k];
        }
        c->m->n_inputs = n_in;
    }
    r.n = 0;
    if ((st = collect_refs(c, json_object_get(cfg, "output_layers"), &r, 0)) != DDTS_OK)
        goto done;
    if (r.n != 1) {
        st = ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                            "model '%s': %d outputs (only single-output models are supported)",
                            jstr(cfg, "name") ? jstr(cfg, "name") : "?", r.n);
        goto done;
    }
    if (lookup(c, scope, &r, ids, "output_layers") != 0)
        st = DDTS_EFORMAT; /* (lookup set the error) */
    else
        *out_node = ids[0];
done:
    ddts_free(L);
    json_decref(scope);
    return st;
}

static enum ddts_status parse_model(struct ctx *c, const json_t *obj, int in_node, int entry,
                                    int *out_node)
{
    const char *cls = jstr(obj, "class_name");
    const json_t *cfg = json_object_get(obj, "config");
    if (cls == NULL || cfg == NULL)
        return ddts_error_set(c->err, DDTS_EFORMAT, "model config has no class_name/config");
    if (++c->depth > MAX_DEPTH)
        return ddts_error_set(c->err, DDTS_ELIMIT, "models nested deeper than %d", MAX_DEPTH);
    enum ddts_status st;
    if (strcmp(cls, "Sequential") == 0)
        st = parse_sequential(c, cfg, in_node, entry, out_node);
    else if ((strcmp(cls, "Functional") == 0 || strcmp(cls, "Model") == 0) &&
             json_object_get(cfg, "layers") != NULL)
        st = parse_functional(c, cfg, in_node, entry, out_node);
    else
        st = ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                            "model class '%s' (subclassed models) is not supported", cls);
    c->depth--;
    return st;
}

/* Keras 3 configs carry "module" keys and dtype policies as objects. A
 * "keras_version" at the top (model.to_json(), `ddts model new`, surgery)
 * decides: tf.keras 2.13+ writes "module" keys too. */
static int looks_keras3(const json_t *v, int depth)
{
    const char *kv = depth == 0 ? jstr(v, "keras_version") : NULL;
    if (kv != NULL)
        return kv[0] >= '3' && kv[0] <= '9';
    if (depth > 6)
        return 0;
    if (json_is_object(v)) {
        if (json_object_get(v, "module") != NULL || json_object_get(v, "build_config") != NULL)
            return 1;
        const json_t *cfg = json_object_get(v, "config");
        const json_t *layers = json_is_array(cfg) ? cfg : json_object_get(cfg, "layers");
        if (json_is_array(layers) && json_array_size(layers) > 0)
            return looks_keras3(json_array_get(layers, 0), depth + 1);
    }
    return 0;
}

enum ddts_status ddts_model_from_keras_config(const char *json, size_t json_nbytes,
                                              struct ddts_model **out, struct ddts_error *err)
{
    *out = NULL;
    if (json_nbytes > DDTS_MAX_CONFIG_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "model config: %zu bytes (max %u)", json_nbytes,
                              DDTS_MAX_CONFIG_BYTES);
    json_error_t je;
    json_t *root = json_loadb(json, json_nbytes, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "model config: JSON error at line %d column %d: %s", je.line,
                              je.column, je.text);
    enum ddts_status st;
    struct ddts_model *m = ddts_calloc(1, sizeof *m);
    if (m == NULL) {
        json_decref(root);
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    m->threads = 1;
    m->input_node = m->output_node = -1;
    /* Some files wrap the config once more ({"model_config": {...}}). */
    const json_t *obj = root;
    if (json_object_get(obj, "class_name") == NULL && json_object_get(obj, "model_config"))
        obj = json_object_get(obj, "model_config");
    m->keras3 = looks_keras3(obj, 0);
    const json_t *cfg = json_object_get(obj, "config");
    const char *nm = json_is_object(cfg) ? jstr(cfg, "name") : NULL;
    m->name = ddts_strdup(nm ? nm : "model");
    struct ctx c = {m, err, 0, 0, 0, 0};
    if (m->name == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        goto fail;
    }
    st = parse_model(&c, obj, -1, -1, &m->output_node);
    if (st != DDTS_OK)
        goto fail;
    m->input_node = -1;
    if (m->n_inputs == 0) /* a Sequential: its first node */
        for (size_t i = 0; i < m->n_nodes; i++)
            if (m->nodes[i].kind == NN_INPUT) {
                m->input_nodes[m->n_inputs++] = (int)i;
                break;
            }
    if (m->n_inputs > 0)
        m->input_node = m->input_nodes[0];
    if (m->input_node < 0 || m->output_node < 0) {
        st = ddts_error_set(err, DDTS_EFORMAT, "model config: no input or output");
        goto fail;
    }
    st = ddts__nn_finalize(m, err);
    if (st != DDTS_OK)
        goto fail;
    json_decref(root);
    *out = m;
    return DDTS_OK;
fail:
    json_decref(root);
    ddts_model_destroy(m);
    return st;
}

/* ---- training_config (compile) ---- */

static double opt_num(const json_t *cf, const char *key, double def)
{
    const json_t *v = json_object_get(cf, key);
    if (json_is_number(v))
        return json_number_value(v);
    /* a learning-rate schedule: take its initial rate */
    if (json_is_object(v)) {
        const json_t *sc = json_object_get(v, "config");
        if (json_is_number(json_object_get(sc, "initial_learning_rate")))
            return json_number_value(json_object_get(sc, "initial_learning_rate"));
    }
    return def;
}

enum ddts_status ddts__nn_parse_training_config(const char *json, int keras3,
                                                struct ddts__nn_tc *tc, struct ddts_error *err)
{
    (void)keras3;
    memset(tc, 0, sizeof *tc);
    json_error_t je;
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &je);
    if (root == NULL)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "training_config: JSON error at line %d column %d: %s", je.line,
                              je.column, je.text);
    enum ddts_status st = DDTS_OK;
    const json_t *loss = json_object_get(root, "loss");
    if (json_is_object(loss) && json_object_size(loss) > 0 &&
        !json_object_get(loss, "class_name")) {
        /* {"output_name": loss} for one output */
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)loss, k, v)
        {
            loss = v;
            break;
        }
    }
    if (json_is_array(loss) && json_array_size(loss) == 1)
        loss = json_array_get(loss, 0);
    if (json_is_string(loss)) {
        snprintf(tc->loss, sizeof tc->loss, "%s", json_string_value(loss));
        tc->have_loss = 1;
    } else if (json_is_object(loss)) {
        const char *cn = jstr(loss, "class_name");
        const json_t *cf = json_object_get(loss, "config");
        if (cn) {
            /* Keras 3 may serialize a loss function as {"class_name": "function", "config": name}
             */
            const char *nm =
                strcmp(cn, "function") == 0 && json_is_string(cf) ? json_string_value(cf) : cn;
            snprintf(tc->loss, sizeof tc->loss, "%s", nm);
            tc->have_loss = 1;
            tc->from_logits = jbool(cf, "from_logits", 0);
            tc->label_smoothing = jnum(cf, "label_smoothing", 0);
            tc->delta = jnum(cf, "delta", 1.0);
        }
    }
    const json_t *oc = json_object_get(root, "optimizer_config");
    if (json_is_object(oc)) {
        const char *cn = jstr(oc, "class_name");
        const json_t *cf = json_object_get(oc, "config");
        if (cn && strncmp(cn, "Custom>", 7) == 0)
            cn += 7;
        if (cn && ddts__nn_opt_parse(cn, &tc->optc) == 0) {
            struct nn_opt *o = &tc->optc;
            snprintf(tc->opt, sizeof tc->opt, "%s", cn);
            tc->have_opt = 1;
            o->lr = opt_num(cf, "learning_rate", opt_num(cf, "lr", o->lr));
            o->beta1 = opt_num(cf, "beta_1", o->beta1);
            o->beta2 = opt_num(cf, "beta_2", o->beta2);
            o->eps = opt_num(cf, "epsilon", o->eps);
            o->momentum = opt_num(cf, "momentum", o->momentum);
            o->rho = opt_num(cf, "rho", o->rho);
            o->weight_decay = opt_num(cf, "weight_decay", o->weight_decay);
            o->initial_accumulator =
                opt_num(cf, "initial_accumulator_value", o->initial_accumulator);
            o->nesterov = jbool(cf, "nesterov", 0);
            o->amsgrad = jbool(cf, "amsgrad", 0);
            o->centered = jbool(cf, "centered", 0);
            o->clipnorm = opt_num(cf, "clipnorm", 0);
            o->clipvalue = opt_num(cf, "clipvalue", 0);
            o->global_clipnorm = opt_num(cf, "global_clipnorm", 0);
            if (o->kind == OPT_ADAMW && o->weight_decay <= 0)
                o->weight_decay = 0.004;
            if (o->kind != OPT_ADAMW && json_is_null(json_object_get(cf, "weight_decay")))
                o->weight_decay = 0;
            if (jnum(cf, "decay", 0) != 0)
                st = ddts_error_set(err, DDTS_EUNSUPPORTED,
                                    "training_config: optimizer 'decay' is not supported");
            if (jbool(cf, "use_ema", 0))
                st = ddts_error_set(err, DDTS_EUNSUPPORTED,
                                    "training_config: optimizer use_ema is not supported");
        } else if (cn) {
            st = ddts_error_set(err, DDTS_EUNSUPPORTED,
                                "training_config: optimizer '%s' is not supported", cn);
        }
    }
    const json_t *met = json_object_get(root, "metrics");
    if (json_is_array(met)) {
        tc->have_metrics = 1;
        size_t i;
        json_t *v;
        json_array_foreach(met, i, v)
        {
            const json_t *e = v;
            if (json_is_array(e) && json_array_size(e) > 0)
                e = json_array_get(e, 0);
            const char *s = json_is_string(e) ? json_string_value(e) : jstr(e, "class_name");
            if (json_is_object(e) && jstr(json_object_get(e, "config"), "name"))
                s = jstr(json_object_get(e, "config"), "name");
            if (s == NULL)
                continue;
            if (strcmp(s, "accuracy") == 0 || strcmp(s, "acc") == 0 || strstr(s, "ccuracy") != NULL)
                tc->metrics |= MET_ACCURACY;
            else if (strcmp(s, "mse") == 0 || strcmp(s, "mean_squared_error") == 0)
                tc->metrics |= MET_MSE;
            else if (strcmp(s, "mae") == 0 || strcmp(s, "mean_absolute_error") == 0)
                tc->metrics |= MET_MAE;
        }
    }
    json_decref(root);
    return st;
}
