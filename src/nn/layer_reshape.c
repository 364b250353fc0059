/*
 * The reshaping family: Flatten and Reshape (views of their input, no copy
 * in the forward pass), UpSampling2D (nearest) and ZeroPadding2D.
 *
 *   Flatten        (...) -> (prod)
 *   Reshape        (...) -> target_shape (one -1 allowed)
 *   UpSampling2D   (H, W, C) -> (H sh, W sw, C)
 *   ZeroPadding2D  (H, W, C) -> (H + top + bottom, W + left + right, C)
 *   Cropping2D     (H, W, C) -> (H - top - bottom, W - left - right, C)
 *   UpSampling1D, ZeroPadding1D, Cropping1D: the same over (T, C)
 *   Permute        per-sample axes reordered: output axis i is input axis dims[i] - 1
 */
#include <string.h>

#include "nn/layer.h"

static enum ddts_status flatten_parse(struct nn_parse *p, struct nn_node *nd)
{
    (void)nd;
    return ddts__nn_cfg_channels_last(p);
}

static enum ddts_status flatten_shape(struct ddts_model *m, struct nn_node *nd,
                                      struct ddts_error *err)
{
    (void)err;
    nd->rank = 1;
    nd->shape[0] = (int64_t)m->nodes[nd->in[0]].size;
    return DDTS_OK;
}

static enum ddts_status reshape_parse(struct nn_parse *p, struct nn_node *nd)
{
    int r = ddts__nn_cfg_int_list(p, "target_shape", DDTS_MAX_RANK, nd->shape);
    if (r < 0)
        return ddts__nn_bad(p, "bad target_shape");
    nd->rank = r;
    return DDTS_OK;
}

static enum ddts_status reshape_shape(struct ddts_model *m, struct nn_node *nd,
                                      struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    const char *nm = nd->name, *cl = nd->class_name;
    int neg = -1;
    size_t known = 1;
    if (nd->axis > 0) /* inferred again (ddts_model_bind_input): the -1 it resolved */
        nd->shape[nd->axis - 1] = -1;
    for (int t = 0; t < nd->rank; t++) {
        if (nd->shape[t] == -1) {
            if (neg >= 0)
                return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s): two -1 in target_shape",
                                      nm, cl);
            neg = t;
        } else if (nd->shape[t] <= 0 || ddts_size_mul(known, (size_t)nd->shape[t], &known) != 0) {
            return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s): bad target_shape", nm, cl);
        }
    }
    if (neg >= 0) {
        if (known == 0 || a->size % known != 0)
            return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s): cannot reshape %zu elements",
                                  nm, cl, a->size);
        nd->shape[neg] = (int64_t)(a->size / known);
        nd->axis = neg + 1;
        known = a->size;
    }
    if (known != a->size)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s): target_shape has %zu elements, input %zu", nm, cl,
                              known, a->size);
    return DDTS_OK;
}

static enum ddts_status upsample_parse(struct nn_parse *p, struct nn_node *nd)
{
    int two[2];
    if (strcmp(nd->class_name, "UpSampling1D") == 0) {
        nd->dim1 = 1;
        if (ddts__nn_cfg_ints(p, "size", 1, 2, two) != 0)
            return ddts__nn_bad(p, "bad size");
        nd->kw = two[0];
        return DDTS_OK;
    }
    if (ddts__nn_cfg_ints(p, "size", 2, 2, two) != 0)
        return ddts__nn_bad(p, "bad size");
    nd->kh = two[0];
    nd->kw = two[1];
    const char *ip = ddts__nn_cfg_str(p, "interpolation");
    if (ip != NULL && strcmp(ip, "nearest") != 0)
        return ddts__nn_unsup(p, "interpolation other than nearest");
    return ddts__nn_cfg_channels_last(p);
}

/* ZeroPadding1D / Cropping1D: an int or [left, right] steps; cropping is
 * padding by a negative amount. */
static enum ddts_status pad1d_parse(struct nn_parse *p, struct nn_node *nd)
{
    int crop = strcmp(nd->class_name, "Cropping1D") == 0;
    const char *key = crop ? "cropping" : "padding";
    int lr[2];
    int64_t v[2];
    if (ddts__nn_cfg_int(p, key, 0, 1 << 20, 1, &lr[0]) == 0) {
        lr[1] = lr[0];
    } else if (ddts__nn_cfg_int_list(p, key, 2, v) == 2 && v[0] >= 0 && v[1] >= 0 &&
               v[0] <= (1 << 20) && v[1] <= (1 << 20)) {
        lr[0] = (int)v[0];
        lr[1] = (int)v[1];
    } else {
        return ddts__nn_bad(p, crop ? "bad cropping" : "bad padding");
    }
    nd->dim1 = 1;
    nd->pl = crop ? -lr[0] : lr[0];
    nd->pr = crop ? -lr[1] : lr[1];
    return DDTS_OK;
}

/* ZeroPadding2D / Cropping2D: an int, a pair or a pair of pairs; cropping is
 * padding by a negative amount (the same passes). */
static enum ddts_status zeropad_parse(struct nn_parse *p, struct nn_node *nd)
{
    int crop = strcmp(nd->class_name, "Cropping2D") == 0;
    int v[4];
    if (ddts__nn_cfg_pad4(p, crop ? "cropping" : "padding", v) != 0)
        return ddts__nn_bad(p, crop ? "bad cropping" : "bad padding");
    int sg = crop ? -1 : 1;
    nd->pt = sg * v[0];
    nd->pb = sg * v[1];
    nd->pl = sg * v[2];
    nd->pr = sg * v[3];
    return ddts__nn_cfg_channels_last(p);
}

/* UpSampling2D and ZeroPadding2D: (H, W, C) images. */
static enum ddts_status image_shape(struct ddts_model *m, struct nn_node *nd,
                                    struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (nd->dim1) { /* (T, C) */
        if (a->rank != 2)
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "layer '%s' (%s) needs (T, C) input, got rank %d", nd->name,
                                  nd->class_name, a->rank);
        nd->rank = 2;
        nd->shape[0] =
            nd->kind == NN_UPSAMPLE ? a->shape[0] * nd->kw : a->shape[0] + nd->pl + nd->pr;
        nd->shape[1] = a->shape[1];
        if (nd->shape[0] <= 0)
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "layer '%s' (%s): cropping leaves no step of %lld", nd->name,
                                  nd->class_name, (long long)a->shape[0]);
        return DDTS_OK;
    }
    if (a->rank != 3)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s) needs (H, W, C) input, got rank %d", nd->name,
                              nd->class_name, a->rank);
    nd->rank = 3;
    if (nd->kind == NN_UPSAMPLE) {
        nd->shape[0] = a->shape[0] * nd->kh;
        nd->shape[1] = a->shape[1] * nd->kw;
    } else {
        nd->shape[0] = a->shape[0] + nd->pt + nd->pb;
        nd->shape[1] = a->shape[1] + nd->pl + nd->pr;
    }
    nd->shape[2] = a->shape[2];
    if (nd->shape[0] <= 0 || nd->shape[1] <= 0)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s): cropping leaves nothing of %lld x %lld", nd->name,
                              nd->class_name, (long long)a->shape[0], (long long)a->shape[1]);
    return DDTS_OK;
}

/* Permute: dims, a permutation of 1 .. rank (Keras' numbering, batch excluded). */
static enum ddts_status permute_parse(struct nn_parse *p, struct nn_node *nd)
{
    int rank = p->m->nodes[nd->in[0]].rank;
    int64_t dims[DDTS_MAX_RANK];
    unsigned seen = 0;
    if (ddts__nn_cfg_int_list(p, "dims", DDTS_MAX_RANK, dims) != rank)
        return ddts__nn_bad(p, "dims must list every input axis once");
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 1 || dims[i] > rank || (seen & (1u << (dims[i] - 1))))
            return ddts__nn_bad(p, "dims must be a permutation of 1 .. rank");
        seen |= 1u << (dims[i] - 1);
        nd->perm[i] = (int)dims[i] - 1;
    }
    return DDTS_OK;
}

static enum ddts_status permute_shape(struct ddts_model *m, struct nn_node *nd,
                                      struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    (void)err;
    nd->rank = a->rank;
    for (int i = 0; i < a->rank; i++)
        nd->shape[i] = a->shape[nd->perm[i]];
    return DDTS_OK;
}

/* y[i0, .., ir] = x[j] with j's axis perm[k] = ik: the output walked in
 * order, the input offset advanced by its strides (odometer). Backward adds
 * dy back through the same map. Samples run in parallel, each writing only
 * its own rows. */
static void permute(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int r = nd->rank, acc = 0;
    float *dx = backward ? ddts__nn_dx(m, nd, 0, &acc) : NULL;
    if (backward && dx == NULL)
        return;
    size_t ist[DDTS_MAX_RANK], st[DDTS_MAX_RANK], s = 1;
    for (int d = r - 1; d >= 0; d--) {
        ist[d] = s;
        s *= (size_t)a->shape[d];
    }
    for (int i = 0; i < r; i++)
        st[i] = ist[nd->perm[i]]; /* input stride of output axis i */
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b * nd->size > 65536)
    for (long n = 0; n < (long)b; n++) {
        const float *x = a->y + (size_t)n * a->size;
        float *y = nd->y + (size_t)n * nd->size, *g = dx ? dx + (size_t)n * a->size : NULL;
        const float *gy = nd->dz + (size_t)n * nd->size;
        int64_t idx[DDTS_MAX_RANK] = {0};
        size_t off = 0;
        for (size_t o = 0; o < nd->size; o++) {
            if (!backward)
                y[o] = x[off];
            else
                g[off] = acc ? g[off] + gy[o] : gy[o];
            for (int d = r - 1; d >= 0; d--) { /* next output index */
                off += st[d];
                if (++idx[d] < nd->shape[d])
                    break;
                off -= st[d] * (size_t)nd->shape[d];
                idx[d] = 0;
            }
        }
    }
}

static void permute_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    permute(m, nd, b, 0);
}

static void permute_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    permute(m, nd, b, 1);
}

static void upsample(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int H = (int)nn_h(a), W = (int)nn_w(a), C = (int)nn_c(a);
    int OH = (int)nn_h(nd), OW = (int)nn_w(nd);
    int acc = 0;
    float *dx = backward ? ddts__nn_dx(m, nd, 0, &acc) : NULL;
    if (backward && dx == NULL)
        return;
    for (size_t n = 0; n < b; n++) {
        if (backward && !acc)
            memset(dx + n * a->size, 0, a->size * sizeof *dx);
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                size_t o = n * nd->size + ((size_t)oh * OW + ow) * C;
                size_t i = n * a->size + ((size_t)(oh / nd->kh) * W + ow / nd->kw) * C;
                for (int c = 0; c < C; c++) {
                    if (backward)
                        dx[i + c] += nd->dy[o + c];
                    else
                        nd->y[o + c] = a->y[i + c];
                }
            }
    }
    (void)H;
}

static void zeropad(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    /* ZeroPadding1D/2D and Cropping1D (negative pl, pr): the input rows and
     * columns that land inside the output are copied, the rest is zero */
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int H = (int)nn_h(a), W = (int)nn_w(a), C = (int)nn_c(a);
    int OH = (int)nn_h(nd), OW = (int)nn_w(nd);
    int pt = nd->dim1 ? 0 : nd->pt;
    int w0 = nd->pl < 0 ? -nd->pl : 0, w1 = W < OW - nd->pl ? W : OW - nd->pl;
    int acc = 0;
    float *dx = backward ? ddts__nn_dx(m, nd, 0, &acc) : NULL;
    if (backward && dx == NULL)
        return;
    if (!backward)
        memset(nd->y, 0, b * nd->size * sizeof *nd->y);
    else if (!acc)
        memset(dx, 0, b * a->size * sizeof *dx);
    if (w1 <= w0)
        return;
    size_t len = (size_t)(w1 - w0) * C;
    for (size_t n = 0; n < b; n++)
        for (int h = 0; h < H; h++) {
            int oh = h + pt;
            if (oh < 0 || oh >= OH)
                continue;
            size_t i = n * a->size + ((size_t)h * W + w0) * C;
            size_t o = n * nd->size + ((size_t)oh * OW + w0 + nd->pl) * C;
            if (backward)
                ddts__nn_put(dx + i, nd->dy + o, len, 1);
            else
                memcpy(nd->y + o, a->y + i, len * sizeof *nd->y);
        }
}

static void upsample_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    upsample(m, nd, b, 0);
}

static void upsample_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    upsample(m, nd, b, 1);
}

static void zeropad_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    zeropad(m, nd, b, 0);
}

static void zeropad_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    zeropad(m, nd, b, 1);
}

/* "flatten": (...) -> (prod). */
static enum ddts_status flatten_spec(struct nn_spec *s)
{
    if (s->n_arg != 1)
        return s->fail(s, DDTS_EINVAL, "flatten takes no argument");
    int64_t prod = 1;
    for (int i = 0; i < s->rank; i++)
        if (__builtin_mul_overflow(prod, s->shape[i], &prod) || prod > (1LL << 40))
            return s->fail(s, DDTS_ELIMIT, "too many values");
    enum ddts_status st = s->open(s, "Flatten", "flatten");
    if (st != DDTS_OK)
        return st;
    s->json(s, ", \"data_format\": \"channels_last\"");
    s->shape[0] = prod;
    s->rank = 1;
    return DDTS_OK;
}

/* "reshape:D1xD2x...": the same number of values. */
static enum ddts_status reshape_spec(struct nn_spec *s)
{
    if (s->n_arg != 2)
        return s->fail(s, DDTS_EINVAL, "expected reshape:D1xD2x...");
    int64_t dims[DDTS_MAX_RANK];
    int r = 0;
    int64_t prod = 1, have = 1;
    long v;
    for (char *tok = s->arg[1]; tok != NULL && r < DDTS_MAX_RANK - 1;) {
        char *x = strchr(tok, 'x');
        if (x != NULL)
            *x = '\0';
        if (ddts__nn_spec_int(tok, 1, 1L << 30, &v) != 0)
            return s->fail(s, DDTS_EINVAL, "bad reshape dimension");
        dims[r++] = v;
        if (__builtin_mul_overflow(prod, (int64_t)v, &prod))
            return s->fail(s, DDTS_EINVAL, "reshape too large");
        tok = x ? x + 1 : NULL;
    }
    for (int i = 0; i < s->rank; i++)
        if (__builtin_mul_overflow(have, s->shape[i], &have))
            return s->fail(s, DDTS_EINVAL, "input too large");
    if (prod != have)
        return s->fail(s, DDTS_ESHAPE, "reshape to %lld values of an input of %lld",
                       (long long)prod, (long long)have);
    enum ddts_status st = s->open(s, "Reshape", "reshape");
    if (st != DDTS_OK)
        return st;
    s->json(s, ", \"target_shape\": [");
    for (int i = 0; i < r; i++)
        s->json(s, "%s%lld", i ? ", " : "", (long long)dims[i]);
    s->json(s, "]");
    s->rank = r;
    memcpy(s->shape, dims, (size_t)r * sizeof *dims);
    return DDTS_OK;
}

static const struct nn_layer_ops flatten_ops = {
    .class_names = (const char *const[]){"Flatten", NULL},
    .kind = NN_FLATTEN,
    .doc = "(...) -> (prod), a view of its input",
    .min_in = 1,
    .max_in = 1,
    .parse = flatten_parse,
    .infer_shape = flatten_shape,
    .backward = ddts__nn_identity_backward,
    .out = NN_OUT_VIEW,
    .rows = 1,
    .spec_word = "flatten",
    .spec_usage = "flatten",
    .spec = flatten_spec,
};

static const struct nn_layer_ops reshape_ops = {
    .class_names = (const char *const[]){"Reshape", NULL},
    .kind = NN_RESHAPE,
    .doc = "target_shape (one -1 allowed), a view of its input",
    .min_in = 1,
    .max_in = 1,
    .parse = reshape_parse,
    .infer_shape = reshape_shape,
    .backward = ddts__nn_identity_backward,
    .out = NN_OUT_VIEW,
    .rows = 1,
    .spec_word = "reshape",
    .spec_usage = "reshape:D1xD2x...",
    .spec = reshape_spec,
};

static const struct nn_layer_ops upsample_ops = {
    .class_names = (const char *const[]){"UpSampling2D", "UpSampling1D", NULL},
    .kind = NN_UPSAMPLE,
    .doc = "nearest-neighbour upsampling by (sh, sw)",
    .min_in = 1,
    .max_in = 1,
    .parse = upsample_parse,
    .infer_shape = image_shape,
    .forward = upsample_fwd,
    .backward = upsample_bwd,
};

static const struct nn_layer_ops zeropad_ops = {
    .class_names = (const char *const[]){"ZeroPadding2D", "Cropping2D", NULL},
    .kind = NN_ZEROPAD,
    .doc = "zeros added around (or rows and columns cropped from) the image: int, pair or pairs",
    .min_in = 1,
    .max_in = 1,
    .parse = zeropad_parse,
    .infer_shape = image_shape,
    .forward = zeropad_fwd,
    .backward = zeropad_bwd,
};

static const struct nn_layer_ops pad1d_ops = {
    .class_names = (const char *const[]){"ZeroPadding1D", "Cropping1D", NULL},
    .kind = NN_ZEROPAD,
    .doc = "zeros added to (or steps cropped from) both ends of (T, C)",
    .min_in = 1,
    .max_in = 1,
    .parse = pad1d_parse,
    .infer_shape = image_shape,
    .forward = zeropad_fwd,
    .backward = zeropad_bwd,
};

static const struct nn_layer_ops permute_ops = {
    .class_names = (const char *const[]){"Permute", NULL},
    .kind = NN_PERMUTE,
    .doc = "per-sample axes reordered (dims, 1-based)",
    .min_in = 1,
    .max_in = 1,
    .parse = permute_parse,
    .infer_shape = permute_shape,
    .forward = permute_fwd,
    .backward = permute_bwd,
};

const struct nn_layer_ops *const ddts__nn_family_reshape[] = {
    &flatten_ops, &reshape_ops, &upsample_ops, &zeropad_ops, &pad1d_ops, &permute_ops, NULL};
