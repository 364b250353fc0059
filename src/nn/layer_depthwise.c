/*
 * The depthwise family: DepthwiseConv2D / DepthwiseConv1D and
 * SeparableConv2D / SeparableConv1D (a 1-D layer runs as the 2-D one over a
 * (1, T) image, like Conv1D).
 *
 *   DepthwiseConv2D  (H, W, C) -> (H', W', C M)   kernel (kh, kw, C, M), bias (C M)
 *                    output channel c M + m = sum over the window of
 *                    x[.., c] * kernel[i, j, c, m]  (M: depth_multiplier)
 *   SeparableConv2D  the depthwise convolution (no bias), then a pointwise
 *                    1x1 convolution: depthwise_kernel (kh, kw, C, M),
 *                    pointwise_kernel (1, 1, C M, F), bias (F)
 *
 * Geometry (valid/same, strides, dilation) is Conv2D's: TF's rules through
 * ddts__nn_window_shape. The depthwise part runs direct kernels (no im2col:
 * a window touches one channel, so a GEMM would be mostly zeros), one
 * output row of C M floats at a time; the pointwise part is one GEMM.
 * Threads: samples in the forward pass and for the input gradient; kernel
 * taps for the weight gradient, so every sum has one fixed order.
 */
#include <string.h>

#include "nn/layer.h"
#include "tensor/tensor.h"

/* Keras 3 names a DepthwiseConv2D kernel "kernel" (tf.keras:
 * "depthwise_kernel"); this hook names the variables of Keras 3 files. */
static const char *depthwise_names(const struct nn_weight_flags *f, size_t index)
{
    static const char *const d[] = {"kernel", "bias"};
    return index < 2 && (index == 0 || f->use_bias) ? d[index] : NULL;
}

static const char *separable_names(const struct nn_weight_flags *f, size_t index)
{
    static const char *const s[] = {"depthwise_kernel", "pointwise_kernel", "bias"};
    return index < 3 && (index < 2 || f->use_bias) ? s[index] : NULL;
}

static int is_separable(const struct nn_node *nd)
{
    return nd->kind == NN_SEPARABLE;
}

/* ---- config ---- */

static enum ddts_status dw_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st;
    if (ddts__nn_cfg_int(p, "depth_multiplier", 1, 1 << 20, 1, &nd->depth_mult) != 0)
        return ddts__nn_bad(p, "depth_multiplier must be a positive integer");
    if (is_separable(nd) && ddts__nn_cfg_int(p, "filters", 1, 1 << 24, 0, &nd->units) != 0)
        return ddts__nn_bad(p, "filters must be a positive integer");
    if ((st = ddts__nn_cfg_conv_window(p, nd)) != DDTS_OK)
        return st;
    if ((st = ddts__nn_cfg_channels_last(p)) != DDTS_OK ||
        (st = ddts__nn_cfg_padding(p, &nd->same)) != DDTS_OK)
        return st;
    nd->use_bias = ddts__nn_cfg_bool(p, "use_bias", 1);
    if ((st = ddts__nn_cfg_act(p, "activation", &nd->act)) != DDTS_OK)
        return st;
    static const char *const nulls[] = {"activity_regularizer", "depthwise_constraint",
                                        "pointwise_constraint", "bias_constraint",
                                        "kernel_constraint"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if ((st = ddts__nn_cfg_null(p, nulls[i])) != DDTS_OK)
            return st;
    return DDTS_OK;
}

static enum ddts_status dw_shape(struct ddts_model *m, struct nn_node *nd, struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int64_t c = a->rank >= 2 ? nn_c(a) : 0;
    int64_t cm = c * nd->depth_mult;
    if (cm > ((int64_t)1 << 30))
        return ddts_error_set(err, DDTS_ELIMIT, "layer '%s' (%s): too many channels", nd->name,
                              nd->class_name);
    if (!is_separable(nd))
        nd->units = (int)cm;
    return ddts__nn_window_shape(m, nd, is_separable(nd) ? nd->units : cm, err);
}

static enum ddts_status dw_weights(struct nn_parse *p, struct nn_node *nd)
{
    const struct nn_node *a = &p->m->nodes[nd->in[0]];
    int64_t c = nn_c(a), cm = c * nd->depth_mult;
    /* 1-D layers: (k, C, M) and (1, C M, F), the same floats without the 1 */
    int64_t dk[4] = {nd->kh, nd->kw, c, nd->depth_mult};
    int r = nd->dim1 ? 3 : 4;
    enum ddts_status st;
    if (is_separable(nd)) {
        int64_t pk[4] = {1, 1, cm, nd->units};
        st = ddts__nn_cfg_weight(p, "depthwise_kernel", r, nd->dim1 ? dk + 1 : dk, 1,
                                 "depthwise_initializer", ddts__nn_init_glorot,
                                 "depthwise_regularizer");
        if (st == DDTS_OK)
            st = ddts__nn_cfg_weight(p, "pointwise_kernel", r, nd->dim1 ? pk + 1 : pk, 1,
                                     "pointwise_initializer", ddts__nn_init_glorot,
                                     "pointwise_regularizer");
    } else {
        st = ddts__nn_cfg_weight(p, "depthwise_kernel", r, nd->dim1 ? dk + 1 : dk, 1,
                                 "depthwise_initializer", ddts__nn_init_glorot,
                                 "depthwise_regularizer");
    }
    return st == DDTS_OK ? ddts__nn_cfg_bias(p, nd) : st;
}

/* Separable: the depthwise output (aux) and its gradient (aux2), (cap, OH OW C M). */
static void dw_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    size_t rows = cap * (size_t)(nn_h(nd) * nn_w(nd));
    need->ones_n = rows > need->ones_n ? rows : need->ones_n;
    if (is_separable(nd)) {
        const struct nn_node *a = &m->nodes[nd->in[0]];
        size_t per = rows / cap * (size_t)nn_c(a) * (size_t)nd->depth_mult;
        nd->aux = ddts__nn_plan_buf(cap, per, &need->fail);
        if (nd->needs_grad)
            nd->aux2 = ddts__nn_plan_buf(cap, per, &need->fail);
    }
}

/* ---- the direct depthwise kernels ---- */

struct dw_geom {
    int H, W, C, M, OH, OW, KH, KW, SH, SW, DH, DW, PT, PL;
};

static void dw_geom(const struct nn_node *nd, const struct nn_node *a, struct dw_geom *g)
{
    *g = (struct dw_geom){.H = (int)nn_h(a),
                          .W = (int)nn_w(a),
                          .C = (int)nn_c(a),
                          .M = nd->depth_mult,
                          .OH = (int)nn_h(nd),
                          .OW = (int)nn_w(nd),
                          .KH = nd->kh,
                          .KW = nd->kw,
                          .SH = nd->sh,
                          .SW = nd->sw,
                          .DH = nd->dh,
                          .DW = nd->dw,
                          .PT = nd->pt,
                          .PL = nd->pl};
}

/* z (b, OH, OW, C M) = depthwise(x) (+ bias). */
static void dw_conv(const struct dw_geom *g, size_t b, const float *x, const float *W,
                    const float *bias, float *z, int threads)
{
    size_t CM = (size_t)g->C * g->M, xs = (size_t)g->H * g->W * g->C;
    size_t zs = (size_t)g->OH * g->OW * CM;
#pragma omp parallel for num_threads(threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        const float *xn = x + (size_t)n * xs;
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++) {
                float *zo = z + (size_t)n * zs + ((size_t)oh * g->OW + ow) * CM;
                if (bias != NULL)
                    memcpy(zo, bias, CM * sizeof *zo);
                else
                    memset(zo, 0, CM * sizeof *zo);
                for (int i = 0; i < g->KH; i++) {
                    int ih = oh * g->SH - g->PT + i * g->DH;
                    if (ih < 0 || ih >= g->H)
                        continue;
                    for (int j = 0; j < g->KW; j++) {
                        int iw = ow * g->SW - g->PL + j * g->DW;
                        if (iw < 0 || iw >= g->W)
                            continue;
                        const float *xi = xn + ((size_t)ih * g->W + iw) * g->C;
                        const float *wk = W + ((size_t)i * g->KW + j) * CM;
                        if (g->M == 1) {
                            for (int c = 0; c < g->C; c++)
                                zo[c] += xi[c] * wk[c];
                        } else {
                            for (int c = 0; c < g->C; c++)
                                for (int mm = 0; mm < g->M; mm++)
                                    zo[(size_t)c * g->M + mm] += xi[c] * wk[(size_t)c * g->M + mm];
                        }
                    }
                }
            }
    }
}

/* dW (KH, KW, C, M) = sum of x * dz over samples and positions, one tap per thread. */
static void dw_wgrad(const struct dw_geom *g, size_t b, const float *x, const float *dz, float *dW,
                     int threads)
{
    size_t CM = (size_t)g->C * g->M, xs = (size_t)g->H * g->W * g->C;
    size_t zs = (size_t)g->OH * g->OW * CM;
    int taps = g->KH * g->KW;
#pragma omp parallel for num_threads(threads) schedule(static) if (taps > 1)
    for (int t = 0; t < taps; t++) {
        int i = t / g->KW, j = t % g->KW;
        float *dw = dW + (size_t)t * CM;
        memset(dw, 0, CM * sizeof *dw);
        for (size_t n = 0; n < b; n++)
            for (int oh = 0; oh < g->OH; oh++) {
                int ih = oh * g->SH - g->PT + i * g->DH;
                if (ih < 0 || ih >= g->H)
                    continue;
                for (int ow = 0; ow < g->OW; ow++) {
                    int iw = ow * g->SW - g->PL + j * g->DW;
                    if (iw < 0 || iw >= g->W)
                        continue;
                    const float *xi = x + n * xs + ((size_t)ih * g->W + iw) * g->C;
                    const float *dzo = dz + n * zs + ((size_t)oh * g->OW + ow) * CM;
                    if (g->M == 1) { /* MobileNets: a vectorisable loop over channels */
                        for (int c = 0; c < g->C; c++)
                            dw[c] += xi[c] * dzo[c];
                        continue;
                    }
                    for (int c = 0; c < g->C; c++)
                        for (int mm = 0; mm < g->M; mm++)
                            dw[(size_t)c * g->M + mm] += xi[c] * dzo[(size_t)c * g->M + mm];
                }
            }
    }
}

/* dx (b, H, W, C) (+)= the adjoint of the depthwise convolution applied to dz. */
static void dw_dgrad(const struct dw_geom *g, size_t b, const float *dz, const float *W, float *dx,
                     int acc, int threads)
{
    size_t CM = (size_t)g->C * g->M, xs = (size_t)g->H * g->W * g->C;
    size_t zs = (size_t)g->OH * g->OW * CM;
#pragma omp parallel for num_threads(threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        float *dxn = dx + (size_t)n * xs;
        if (!acc)
            memset(dxn, 0, xs * sizeof *dxn);
        for (int oh = 0; oh < g->OH; oh++)
            for (int ow = 0; ow < g->OW; ow++) {
                const float *dzo = dz + (size_t)n * zs + ((size_t)oh * g->OW + ow) * CM;
                for (int i = 0; i < g->KH; i++) {
                    int ih = oh * g->SH - g->PT + i * g->DH;
                    if (ih < 0 || ih >= g->H)
                        continue;
                    for (int j = 0; j < g->KW; j++) {
                        int iw = ow * g->SW - g->PL + j * g->DW;
                        if (iw < 0 || iw >= g->W)
                            continue;
                        float *dxi = dxn + ((size_t)ih * g->W + iw) * g->C;
                        const float *wk = W + ((size_t)i * g->KW + j) * CM;
                        if (g->M == 1) { /* the same sums as below, vectorisable */
                            for (int c = 0; c < g->C; c++)
                                dxi[c] += dzo[c] * wk[c];
                            continue;
                        }
                        for (int c = 0; c < g->C; c++) {
                            float s = 0.0f;
                            for (int mm = 0; mm < g->M; mm++)
                                s += dzo[(size_t)c * g->M + mm] * wk[(size_t)c * g->M + mm];
                            dxi[c] += s;
                        }
                    }
                }
            }
    }
}

/* ---- passes ---- */

static void dw_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct dw_geom g;
    dw_geom(nd, a, &g);
    const float *dk = ddts__nn_wdata(m, nd->w0);
    if (!is_separable(nd)) {
        dw_conv(&g, b, a->y, dk, nd->use_bias ? ddts__nn_wdata(m, nd->w0 + 1) : NULL, nd->z,
                m->threads);
        return;
    }
    /* z (b P, F) = depthwise(x) (b P, C M) pointwise (C M, F) + bias */
    size_t CM = (size_t)g.C * g.M, F = (size_t)nd->units, P = (size_t)g.OH * g.OW;
    dw_conv(&g, b, a->y, dk, NULL, nd->aux, m->threads);
    ddts__tensor_sgemm_par(m->threads, 0, 0, b * P, F, CM, 1.0f, nd->aux, CM,
                           ddts__nn_wdata(m, nd->w0 + 1), F, 0.0f, nd->z, F);
    nd->act_done = ddts__nn_bias_act(
        nd, b * P, F, nd->use_bias ? ddts__nn_wdata(m, nd->w0 + 2) : NULL, m->threads);
}

static void dw_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct dw_geom g;
    dw_geom(nd, a, &g);
    size_t CM = (size_t)g.C * g.M, P = (size_t)g.OH * g.OW;
    const float *dk = ddts__nn_wdata(m, nd->w0);
    int train = m->w[nd->w0].trainable;
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    const float *dzd = nd->dz; /* gradient at the depthwise output */
    if (is_separable(nd)) {
        size_t F = (size_t)nd->units;
        const float *pw = ddts__nn_wdata(m, nd->w0 + 1);
        if (train) {
            ddts__tensor_sgemm_par(m->threads, 1, 0, CM, F, b * P, 1.0f, nd->aux, CM, nd->dz, F,
                                   0.0f, ddts__nn_gdata(m, nd->w0 + 1), F);
            if (nd->use_bias)
                ddts__nn_bias_grad(m, b * P, F, nd->dz, ddts__nn_gdata(m, nd->w0 + 2));
        }
        ddts__tensor_sgemm_par(m->threads, 0, 1, b * P, CM, F, 1.0f, nd->dz, F, pw, F, 0.0f,
                               nd->aux2, CM);
        dzd = nd->aux2;
    } else if (train && nd->use_bias) {
        ddts__nn_bias_grad(m, b * P, CM, nd->dz, ddts__nn_gdata(m, nd->w0 + 1));
    }
    if (train)
        dw_wgrad(&g, b, a->y, dzd, ddts__nn_gdata(m, nd->w0), m->threads);
    if (dx)
        dw_dgrad(&g, b, dzd, dk, dx, acc, m->threads);
}

static const struct nn_layer_ops depthwise_ops = {
    .class_names = (const char *const[]){"DepthwiseConv2D", "DepthwiseConv1D", NULL},
    .kind = NN_DEPTHWISE,
    .doc = "depthwise convolution over (H, W, C) or (T, C): depth_multiplier, valid/same, "
           "strides, dilation",
    .min_in = 1,
    .max_in = 1,
    .weight_name = depthwise_names,
    .parse = dw_parse,
    .infer_shape = dw_shape,
    .add_weights = dw_weights,
    .plan = dw_plan,
    .forward = dw_forward,
    .backward = dw_backward,
};

static const struct nn_layer_ops separable_ops = {
    .class_names = (const char *const[]){"SeparableConv2D", "SeparableConvolution2D",
                                         "SeparableConv1D", "SeparableConvolution1D", NULL},
    .kind = NN_SEPARABLE,
    .doc = "depthwise then pointwise convolution over (H, W, C) or (T, C)",
    .min_in = 1,
    .max_in = 1,
    .weight_name = separable_names,
    .parse = dw_parse,
    .infer_shape = dw_shape,
    .add_weights = dw_weights,
    .plan = dw_plan,
    .forward = dw_forward,
    .backward = dw_backward,
};

const struct nn_layer_ops *const ddts__nn_family_depthwise[] = {&depthwise_ops, &separable_ops,
                                                                NULL};
