/*
 * The pooling family: MaxPooling1D/2D, AveragePooling1D/2D (valid/same; a
 * same-padded average divides by the valid cells only, as TF), and the
 * global poolings (keepdims). 1-D layers see their (T, C) as (1, T, C).
 *
 *   Max/AvgPool2D   (H, W, C) -> (H', W', C)  H' as a convolution's with the pool as window
 *   Global*2D       (H, W, C) -> (C), or (1, 1, C) with keepdims
 *
 * A max pooling keeps its argmax (nd->aux, int32) for the backward pass;
 * after a relu dense or convolution layer with tiling windows it also applies the relu's
 * backward, and a direct convolution over the model's input computes it in
 * its own kernel (plan_link below).
 */
#include <string.h>

#include "nn/layer.h"
#include "tensor/tensor.h"

static enum ddts_status pool_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st;
    int two[2];
    nd->dim1 = strstr(nd->class_name, "1D") != NULL;
    int nk = nd->dim1 ? 1 : 2;
    if (ddts__nn_cfg_ints(p, "pool_size", nk, 2, two) != 0)
        return ddts__nn_bad(p, "bad pool_size");
    nd->kh = nd->dim1 ? 1 : two[0];
    nd->kw = nd->dim1 ? two[0] : two[1];
    if (!ddts__nn_cfg_has(p, "strides")) {
        nd->sh = nd->kh;
        nd->sw = nd->kw;
    } else if (ddts__nn_cfg_ints(p, "strides", nk, 1, two) != 0) {
        return ddts__nn_bad(p, "bad strides");
    } else {
        nd->sh = nd->dim1 ? 1 : two[0];
        nd->sw = nd->dim1 ? two[0] : two[1];
    }
    if ((st = ddts__nn_cfg_channels_last(p)) != DDTS_OK)
        return st;
    return ddts__nn_cfg_padding(p, &nd->same);
}

static enum ddts_status pool_shape(struct ddts_model *m, struct nn_node *nd, struct ddts_error *err)
{
    return ddts__nn_window_shape(m, nd, nn_c(&m->nodes[nd->in[0]]), err);
}

static enum ddts_status global_parse(struct nn_parse *p, struct nn_node *nd)
{
    nd->keepdims = ddts__nn_cfg_bool(p, "keepdims", 0);
    nd->pool1d = strstr(nd->class_name, "1D") != NULL;
    const char *df = ddts__nn_cfg_str(p, "data_format");
    /* Keras' time-series transformer example: GlobalAveragePooling1D
     * (channels_first) on (T, C) averages the last axis, giving (T) */
    if (nd->pool1d && nd->kind == NN_GAP && df != NULL && strcmp(df, "channels_first") == 0) {
        nd->chfirst = 1;
        return DDTS_OK;
    }
    return ddts__nn_cfg_channels_last(p);
}

static enum ddts_status global_shape(struct ddts_model *m, struct nn_node *nd,
                                     struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int want = nd->pool1d ? 2 : 3;
    if (a->rank != want)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s) needs %s input, got rank %d",
                              nd->name, nd->class_name, nd->pool1d ? "(T, C)" : "(H, W, C)",
                              a->rank);
    if (nd->chfirst) { /* (T, C) -> (T) or (T, 1) */
        nd->rank = nd->keepdims ? 2 : 1;
        nd->shape[0] = a->shape[0];
        nd->shape[1] = 1;
    } else if (nd->keepdims) {
        nd->rank = want;
        for (int t = 0; t < want - 1; t++)
            nd->shape[t] = 1;
        nd->shape[want - 1] = a->shape[want - 1];
    } else {
        nd->rank = 1;
        nd->shape[0] = a->shape[want - 1];
    }
    return DDTS_OK;
}

/* The argmax of every output cell, as int32 in a float buffer. */
static void argmax_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
}

/* Convolution/dense + relu + tiling max pooling (stride = pool size; a remainder
 * no window covers gets a zero gradient either way): the pooling's
 * backward applies the relu derivative (relu'(z) = [pool output > 0] at
 * the argmax cell), saving a pass over the largest activation of a CNN. */
static void maxpool_link(struct ddts_model *m, size_t i, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    struct nn_node *a = &m->nodes[nd->in[0]];
    int tiles = nd->sh == nd->kh && nd->sw == nd->kw && nd->pt == 0 && nd->pl == 0 &&
                nn_h(a) >= nn_h(nd) * nd->kh && nn_w(a) >= nn_w(nd) * nd->kw;
    if (!(tiles && a->n_consumers == 1 && a->needs_grad && a->z == a->y &&
          a->act.kind == ACT_RELU && a->act.alpha == 0 && a->act.threshold == 0 &&
          a->act.max_value <= 0 &&
          (a->kind == NN_DENSE || a->kind == NN_CONV2D || a->kind == NN_CONV2DT)))
        return;
    nd->pool_relu = 1;
    a->skip_act_bwd = 1;
    /* A direct convolution over the model's input computes the pooling too,
     * and its gradient from the pooling's: its own output and gradient never
     * reach memory. (Over an input that needs a gradient, the input
     * gradient's GEMM needs its dz.) */
    if (a->direct && !m->nodes[a->in[0]].needs_grad) {
        a->pool_node = (int)i;
        nd->in_conv = 1;
        struct ddts__conv_geom tg;
        ddts__nn_conv_geom_full(a, &m->nodes[a->in[0]], &tg);
        size_t col = ddts__tensor_conv_direct_scratch(&tg, (size_t)a->units, nd->kh, m->threads);
        need->col_n = col > need->col_n ? col : need->col_n;
        return;
    }
    /* Otherwise a convolution computes only the cells the windows read. */
    (void)ddts__nn_conv_crop(m, (size_t)nd->in[0], (int)nn_h(nd) * nd->kh, (int)nn_w(nd) * nd->kw);
}

/* The input's (H, W, C) as stored: a convolution may store only the rows
 * and columns this pooling reads (crop_h, crop_w, packed; layer_conv.c).
 * Returned by value: an address-taken C would be reloaded after every
 * int32 store of the argmax loops, which then do not vectorise. */
struct hwc {
    int H, W, C;
};

static struct hwc stored_in(const struct nn_node *a)
{
    struct hwc s = {a->crop_h > 0 ? a->crop_h : (int)nn_h(a),
                    a->crop_h > 0 ? a->crop_w : (int)nn_w(a), (int)nn_c(a)};
    return s;
}

static void maxpool_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    const struct hwc in = stored_in(a);
    const int H = in.H, W = in.W, C = in.C, OH = (int)nn_h(nd), OW = (int)nn_w(nd);
    const size_t asz = (size_t)H * W * C;
    int32_t *arg = (int32_t *)nd->aux;
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b * nd->size > 65536)
    for (long r = 0; r < (long)(b * (size_t)OH); r++) {
        size_t n = (size_t)r / (size_t)OH;
        int oh = (int)((size_t)r % (size_t)OH);
        const float *x = a->y + n * asz;
        float *y = nd->y + n * nd->size + (size_t)oh * OW * C;
        int32_t *ar = arg + n * nd->size + (size_t)oh * OW * C;
        int h0 = oh * nd->sh - nd->pt;
        int i0 = h0 < 0 ? 0 : h0, i1 = h0 + nd->kh > H ? H : h0 + nd->kh;
        for (int ow = 0; ow < OW; ow++) {
            int w0 = ow * nd->sw - nd->pl;
            int j0 = w0 < 0 ? 0 : w0, j1 = w0 + nd->kw > W ? W : w0 + nd->kw;
            float *restrict yo = y + (size_t)ow * C;
            int32_t *restrict ao = ar + (size_t)ow * C;
            /* the first cell of the window, then the others, vectorised over C */
            int32_t base = (int32_t)(((size_t)i0 * W + j0) * C);
            for (int c = 0; c < C; c++) {
                yo[c] = x[base + c];
                ao[c] = base + c;
            }
            for (int ih = i0; ih < i1; ih++)
                for (int iw = j0; iw < j1; iw++) {
                    int32_t idx = (int32_t)(((size_t)ih * W + iw) * C);
                    if (idx == base)
                        continue;
                    const float *restrict xc = x + idx;
                    for (int c = 0; c < C; c++) {
                        /* a branch-free select, which the vectoriser takes */
                        float v = xc[c], cur = yo[c];
                        int32_t mk = -(int32_t)(v > cur);
                        ao[c] = (ao[c] & ~mk) | ((idx + c) & mk);
                        yo[c] = v > cur ? v : cur;
                    }
                }
        }
    }
}

/* Scatter dy (b, size) through argmax indices into dx (b, in_size). */
static void argmax_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    const int32_t *arg = (const int32_t *)nd->aux;
    /* Windows that tile the image (stride = pool, no padding; a bottom or
     * right remainder that no window covers, as 'valid' pooling of 11 by 2
     * leaves, is zeroed): each input cell is written once, no zeroing pass. */
    int tiles = nd->kind == NN_MAXPOOL && !acc && nd->sh == nd->kh && nd->sw == nd->kw &&
                nd->pt == 0 && nd->pl == 0 && nn_h(a) >= nn_h(nd) * nd->kh &&
                nn_w(a) >= nn_w(nd) * nd->kw;
    if (tiles) {
        const struct hwc in = stored_in(a);
        const int H = in.H, W = in.W, C = in.C, OH = (int)nn_h(nd), OW = (int)nn_w(nd);
        const size_t asz = (size_t)H * W * C;
        const int tail = (W - OW * nd->kw) * C;
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
        for (long r = 0; r < (long)(b * (size_t)OH); r++) {
            size_t n = (size_t)r / (size_t)OH;
            int oh = (int)((size_t)r % (size_t)OH);
            float *d = dx + n * asz;
            const float *dy = nd->dy + n * nd->size + (size_t)oh * OW * C;
            const int32_t *ar = arg + n * nd->size + (size_t)oh * OW * C;
            const float *py = nd->y + n * nd->size + (size_t)oh * OW * C;
            for (int i = 0; i < nd->kh; i++)
                for (int ow = 0; ow < OW; ow++)
                    for (int j = 0; j < nd->kw; j++) {
                        int32_t idx =
                            (int32_t)((((size_t)oh * nd->kh + i) * W + (size_t)ow * nd->kw + j) *
                                      C);
                        float *restrict dd = d + idx;
                        const float *restrict g = dy + (size_t)ow * C;
                        const int32_t *restrict am = ar + (size_t)ow * C;
                        const float *restrict yo = py + (size_t)ow * C;
                        if (nd->pool_relu) {
                            for (int c = 0; c < C; c++) {
                                float gv = g[c], yv = yo[c];
                                dd[c] = ((am[c] == idx + c) & (yv > 0)) ? gv : 0.0f;
                            }
                        } else {
                            for (int c = 0; c < C; c++) {
                                float gv = g[c];
                                dd[c] = am[c] == idx + c ? gv : 0.0f;
                            }
                        }
                    }
            /* the uncovered right columns of these rows, and below the last
             * window row the uncovered bottom rows */
            for (int i = 0; tail > 0 && i < nd->kh; i++)
                memset(d + (((size_t)oh * nd->kh + (size_t)i) * W + (size_t)OW * nd->kw) * C, 0,
                       (size_t)tail * sizeof *d);
            if (oh == OH - 1 && H > OH * nd->kh)
                memset(d + (size_t)OH * nd->kh * W * C, 0,
                       (size_t)(H - OH * nd->kh) * W * C * sizeof *d);
        }
        return;
    }
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        float *d = dx + (size_t)n * a->size;
        if (!acc)
            memset(d, 0, a->size * sizeof *d);
        const float *dy = nd->dy + (size_t)n * nd->size;
        const int32_t *ar = arg + (size_t)n * nd->size;
        for (size_t i = 0; i < nd->size; i++)
            if (ar[i] >= 0)
                d[ar[i]] += dy[i];
    }
}

/* Average pooling; with same padding Keras divides by the valid cells only. */
static void avgpool(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int H = (int)nn_h(a), W = (int)nn_w(a), C = (int)nn_c(a);
    int OH = (int)nn_h(nd), OW = (int)nn_w(nd);
    int acc = 0;
    float *dx = backward ? ddts__nn_dx(m, nd, 0, &acc) : NULL;
    if (backward && dx == NULL)
        return;
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        const float *x = a->y + (size_t)n * a->size;
        float *y = nd->y + (size_t)n * nd->size;
        const float *dy = nd->dy + (size_t)n * nd->size;
        float *d = backward ? dx + (size_t)n * a->size : NULL;
        if (backward && !acc)
            memset(d, 0, a->size * sizeof *d);
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * nd->sh - nd->pt, h1 = h0 + nd->kh;
            h0 = h0 < 0 ? 0 : h0;
            h1 = h1 > H ? H : h1;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * nd->sw - nd->pl, w1 = w0 + nd->kw;
                w0 = w0 < 0 ? 0 : w0;
                w1 = w1 > W ? W : w1;
                float inv = 1.0f / (float)((h1 - h0) * (w1 - w0));
                size_t o = ((size_t)oh * OW + ow) * C;
                for (int c = 0; c < C; c++) {
                    if (backward) {
                        float g = dy[o + c] * inv;
                        for (int ih = h0; ih < h1; ih++)
                            for (int iw = w0; iw < w1; iw++)
                                d[((size_t)ih * W + iw) * C + c] += g;
                    } else {
                        float s = 0;
                        for (int ih = h0; ih < h1; ih++)
                            for (int iw = w0; iw < w1; iw++)
                                s += x[((size_t)ih * W + iw) * C + c];
                        y[o + c] = s * inv;
                    }
                }
            }
        }
    }
}

/* channels_first GlobalAveragePooling1D: y (b, T) = mean over c of x (b, T, C). */
static void gap_rows(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t C = (size_t)a->shape[1], rows = b * (size_t)a->shape[0];
    int acc = 0;
    float *dx = backward ? ddts__nn_dx(m, nd, 0, &acc) : NULL;
    if (backward && dx == NULL)
        return;
    float inv = 1.0f / (float)C;
    for (size_t r = 0; r < rows; r++) {
        if (backward) {
            for (size_t c = 0; c < C; c++)
                dx[r * C + c] = (acc ? dx[r * C + c] : 0) + nd->dy[r] * inv;
        } else {
            float s = 0.0f;
            for (size_t c = 0; c < C; c++)
                s += a->y[r * C + c];
            nd->y[r] = s * inv;
        }
    }
}

/* GlobalAveragePooling1D after a mask: the mean over the steps that count
 * (zero when none does). nd->scratch holds the mask (cap, T). */
static void masked_gap(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t C = (size_t)a->shape[a->rank - 1], T = a->size / C;
    float *mask = nd->scratch;
    if (!backward)
        ddts__nn_mask(m, nd, b, mask);
    int acc;
    float *dx = backward ? ddts__nn_dx(m, nd, 0, &acc) : NULL;
    for (size_t n = 0; n < b; n++) {
        const float *mk = mask + n * T;
        float cnt = 0;
        for (size_t t = 0; t < T; t++)
            cnt += mk[t];
        float inv = cnt > 0 ? 1.0f / cnt : 0.0f;
        if (!backward) {
            float *y = nd->y + n * C;
            const float *x = a->y + n * a->size;
            for (size_t c = 0; c < C; c++)
                y[c] = 0;
            for (size_t t = 0; t < T; t++)
                for (size_t c = 0; c < C && mk[t] != 0.0f; c++)
                    y[c] += x[t * C + c];
            for (size_t c = 0; c < C; c++)
                y[c] *= inv;
        } else {
            float *d = dx + n * a->size;
            const float *dy = nd->dy + n * C;
            for (size_t t = 0; t < T; t++)
                for (size_t c = 0; c < C; c++) {
                    float v = dy[c] * inv * mk[t];
                    d[t * C + c] = acc ? d[t * C + c] + v : v;
                }
        }
    }
}

/* A masked GlobalAveragePooling1D keeps its mask, (cap, T). */
static void gap_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    if (nd->mask_src)
        nd->scratch = ddts__nn_plan_buf(cap, (size_t)m->nodes[nd->in[0]].shape[0], &need->fail);
}

static void global_pool_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (nd->chfirst) {
        gap_rows(m, nd, b, 0);
        return;
    }
    size_t C = (size_t)a->shape[a->rank - 1], HW = a->size / C;
    int32_t *arg = (int32_t *)nd->aux;
    if (nd->kind == NN_GAP && nd->mask_src) {
        masked_gap(m, nd, b, 0);
        return;
    }
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        const float *x = a->y + (size_t)n * a->size;
        float *y = nd->y + (size_t)n * C;
        if (nd->kind == NN_GAP) {
            for (size_t c = 0; c < C; c++)
                y[c] = 0;
            for (size_t p = 0; p < HW; p++)
                for (size_t c = 0; c < C; c++)
                    y[c] += x[p * C + c];
            for (size_t c = 0; c < C; c++)
                y[c] /= (float)HW;
        } else {
            int32_t *ar = arg + (size_t)n * C;
            for (size_t c = 0; c < C; c++) {
                y[c] = x[c];
                ar[c] = (int32_t)c;
            }
            for (size_t p = 1; p < HW; p++)
                for (size_t c = 0; c < C; c++)
                    if (x[p * C + c] > y[c]) {
                        y[c] = x[p * C + c];
                        ar[c] = (int32_t)(p * C + c);
                    }
        }
    }
}

static void gap_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (nd->chfirst) {
        gap_rows(m, nd, b, 1);
        return;
    }
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    if (nd->mask_src) {
        masked_gap(m, nd, b, 1);
        return;
    }
    size_t C = (size_t)a->shape[a->rank - 1], HW = a->size / C;
    float inv = 1.0f / (float)HW;
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        float *d = dx + (size_t)n * a->size;
        const float *dy = nd->dy + (size_t)n * C;
        for (size_t p = 0; p < HW; p++)
            for (size_t c = 0; c < C; c++)
                d[p * C + c] = (acc ? d[p * C + c] : 0) + dy[c] * inv;
    }
}

static void maxpool_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    if (!nd->in_conv)
        maxpool_forward(m, nd, b);
}

static void maxpool_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    if (!nd->in_conv)
        argmax_backward(m, nd, b);
}

static void avgpool_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    avgpool(m, nd, b, 0);
}

static void avgpool_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    avgpool(m, nd, b, 1);
}

/* "maxpool2d:P" and "avgpool2d:P": P x P windows, strides P, valid. */
static enum ddts_status pool_spec(struct nn_spec *s)
{
    long v;
    if (s->n_arg != 2 || ddts__nn_spec_int(s->arg[1], 1, 4096, &v) != 0)
        return s->fail(s, DDTS_EINVAL, "expected maxpool2d:P or avgpool2d:P");
    if (s->rank != 3 || s->shape[0] < v || s->shape[1] < v)
        return s->fail(s, DDTS_ESHAPE, "needs an (H, W, C) input of at least %ldx%ld", v, v);
    int max = s->arg[0][0] == 'm';
    enum ddts_status st = s->open(s, max ? "MaxPooling2D" : "AveragePooling2D",
                                  max ? "max_pooling2d" : "average_pooling2d");
    if (st != DDTS_OK)
        return st;
    s->json(s,
            ", \"pool_size\": [%ld, %ld], \"padding\": \"valid\", \"strides\": [%ld, %ld], "
            "\"data_format\": \"channels_last\"",
            v, v, v, v);
    s->shape[0] /= v;
    s->shape[1] /= v;
    return DDTS_OK;
}

/* "globalavgpool2d": (H, W, C) -> (C). */
static enum ddts_status gap_spec(struct nn_spec *s)
{
    if (s->n_arg != 1 || s->rank != 3)
        return s->fail(s, DDTS_EINVAL, "globalavgpool2d takes no argument and an (H, W, C) input");
    enum ddts_status st = s->open(s, "GlobalAveragePooling2D", "global_average_pooling2d");
    if (st != DDTS_OK)
        return st;
    s->json(s, ", \"data_format\": \"channels_last\", \"keepdims\": false");
    s->shape[0] = s->shape[2];
    s->rank = 1;
    return DDTS_OK;
}

static const struct nn_layer_ops maxpool_ops = {
    .class_names =
        (const char *const[]){"MaxPooling2D", "MaxPool2D", "MaxPooling1D", "MaxPool1D", NULL},
    .kind = NN_MAXPOOL,
    .doc = "maximum over each window (valid/same, strides)",
    .min_in = 1,
    .max_in = 1,
    .parse = pool_parse,
    .infer_shape = pool_shape,
    .plan = argmax_plan,
    .plan_link = maxpool_link,
    .forward = maxpool_fwd,
    .backward = maxpool_bwd,
    .spec_word = "maxpool2d",
    .spec_usage = "maxpool2d:P",
    .spec = pool_spec,
};

static const struct nn_layer_ops avgpool_ops = {
    .class_names = (const char *const[]){"AveragePooling2D", "AvgPool2D", "AveragePooling1D",
                                         "AvgPool1D", NULL},
    .kind = NN_AVGPOOL,
    .doc = "mean over each window (same padding: over the valid cells)",
    .min_in = 1,
    .max_in = 1,
    .parse = pool_parse,
    .infer_shape = pool_shape,
    .forward = avgpool_fwd,
    .backward = avgpool_bwd,
    .spec_word = "avgpool2d",
    .spec_usage = "avgpool2d:P",
    .spec = pool_spec,
};

static const struct nn_layer_ops gap_ops = {
    .class_names = (const char *const[]){"GlobalAveragePooling2D", "GlobalAvgPool2D",
                                         "GlobalAveragePooling1D", "GlobalAvgPool1D", NULL},
    .kind = NN_GAP,
    .doc = "mean over all positions, per channel",
    .min_in = 1,
    .max_in = 1,
    .parse = global_parse,
    .infer_shape = global_shape,
    .plan = gap_plan,
    .forward = global_pool_forward,
    .backward = gap_backward,
    .spec_word = "globalavgpool2d",
    .spec_usage = "globalavgpool2d",
    .spec = gap_spec,
};

static const struct nn_layer_ops gmp_ops = {
    .class_names = (const char *const[]){"GlobalMaxPooling2D", "GlobalMaxPool2D",
                                         "GlobalMaxPooling1D", "GlobalMaxPool1D", NULL},
    .kind = NN_GMP,
    .doc = "maximum over all positions, per channel",
    .min_in = 1,
    .max_in = 1,
    .parse = global_parse,
    .infer_shape = global_shape,
    .plan = argmax_plan,
    .forward = global_pool_forward,
    .backward = argmax_backward,
};

const struct nn_layer_ops *const ddts__nn_family_pool[] = {&maxpool_ops, &avgpool_ops, &gap_ops,
                                                           &gmp_ops, NULL};
