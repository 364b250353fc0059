/*
 * The 3-D family: Conv3D, MaxPooling3D and AveragePooling3D over volumes
 * (D, H, W, C), channels_last (NDHWC, Keras' default), TF's valid/same rules
 * on each axis.
 *
 *   Conv3D            (D, H, W, C) -> (D', H', W', F)  kernel (kd, kh, kw, C, F), bias (F)
 *   Max/AvgPooling3D  (D, H, W, C) -> (D', H', W', C)  pool_size, strides (default: the pool)
 *
 * Conv3D is im2col (the 2-D rows of each depth slice the window reads,
 * src/tensor/im2col.c) and one sgemm per chunk of volumes; the columns are
 * computed again for the backward pass. A max pooling keeps its argmax
 * (nd->aux, int32: the input cell per output); a same-padded average
 * divides by the cells inside the volume only, as TF.
 */
#include <float.h>
#include <string.h>

#include "nn/layer.h"
#include "tensor/tensor.h"

/* Largest im2col scratch planned, in floats (64 MiB): larger batches run in
 * chunks of volumes (a single volume may need more). */
#define COL3_MAX_FLOATS ((size_t)1 << 24)

/* Three window sizes (pool_size, strides): an int or a list of three. */
static int three(struct nn_parse *p, const char *key, int def, int *d, int *h, int *w)
{
    int v[3];
    if (ddts__nn_cfg_ints(p, key, 3, def, v) != 0)
        return -1;
    *d = v[0];
    *h = v[1];
    *w = v[2];
    return 0;
}

static enum ddts_status conv3d_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st;
    if (ddts__nn_cfg_int(p, "filters", 1, 1 << 24, 0, &nd->units) != 0)
        return ddts__nn_bad(p, "filters must be a positive integer");
    if ((st = ddts__nn_cfg_conv_window(p, nd)) != DDTS_OK)
        return st;
    return ddts__nn_cfg_conv_rest(p, nd);
}

static enum ddts_status pool3d_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st;
    nd->avg = strncmp(nd->class_name, "Average", 7) == 0;
    if (three(p, "pool_size", 2, &nd->kd, &nd->kh, &nd->kw) != 0)
        return ddts__nn_bad(p, "bad pool_size");
    if (!ddts__nn_cfg_has(p, "strides")) {
        nd->sd = nd->kd;
        nd->sh = nd->kh;
        nd->sw = nd->kw;
    } else if (three(p, "strides", 1, &nd->sd, &nd->sh, &nd->sw) != 0) {
        return ddts__nn_bad(p, "bad strides");
    }
    nd->dd = nd->dh = nd->dw = 1;
    if ((st = ddts__nn_cfg_channels_last(p)) != DDTS_OK)
        return st;
    return ddts__nn_cfg_padding(p, &nd->same);
}

/* (D', H', W', channels) from the input volume and the window. */
static enum ddts_status shape3(struct ddts_model *m, struct nn_node *nd, int64_t channels,
                               struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (a->rank != 4)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s) needs (D, H, W, C) input, got rank %d", nd->name,
                              nd->class_name, a->rank);
    int tot;
    long long od =
        ddts__nn_window_len(a->shape[0], nd->kd, nd->sd, nd->dd, nd->same, &nd->pf, &tot);
    long long oh =
        ddts__nn_window_len(a->shape[1], nd->kh, nd->sh, nd->dh, nd->same, &nd->pt, &tot);
    long long ow =
        ddts__nn_window_len(a->shape[2], nd->kw, nd->sw, nd->dw, nd->same, &nd->pl, &tot);
    if (od <= 0 || oh <= 0 || ow <= 0)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s): input (%lld, %lld, %lld) is smaller than the "
                              "window",
                              nd->name, nd->class_name, (long long)a->shape[0],
                              (long long)a->shape[1], (long long)a->shape[2]);
    nd->rank = 4;
    nd->shape[0] = od;
    nd->shape[1] = oh;
    nd->shape[2] = ow;
    nd->shape[3] = channels;
    return DDTS_OK;
}

static enum ddts_status conv3d_shape(struct ddts_model *m, struct nn_node *nd,
                                     struct ddts_error *err)
{
    return shape3(m, nd, nd->units, err);
}

static enum ddts_status pool3d_shape(struct ddts_model *m, struct nn_node *nd,
                                     struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    return shape3(m, nd, a->rank == 4 ? a->shape[3] : 0, err);
}

static enum ddts_status conv3d_weights(struct nn_parse *p, struct nn_node *nd)
{
    const struct nn_node *a = &p->m->nodes[nd->in[0]];
    int64_t ws[5] = {nd->kd, nd->kh, nd->kw, a->shape[3], nd->units};
    enum ddts_status st = ddts__nn_cfg_weight(p, "kernel", 5, ws, 1, "kernel_initializer",
                                              ddts__nn_init_glorot, "kernel_regularizer");
    return st == DDTS_OK ? ddts__nn_cfg_bias(p, nd) : st;
}

static void geom3(const struct nn_node *nd, const struct nn_node *a, struct ddts__conv3_geom *g)
{
    g->g = (struct ddts__conv_geom){.H = (int)a->shape[1],
                                    .W = (int)a->shape[2],
                                    .C = (int)a->shape[3],
                                    .KH = nd->kh,
                                    .KW = nd->kw,
                                    .SH = nd->sh,
                                    .SW = nd->sw,
                                    .DH = nd->dh,
                                    .DW = nd->dw,
                                    .PT = nd->pt,
                                    .PL = nd->pl,
                                    .OH = (int)nd->shape[1],
                                    .OW = (int)nd->shape[2]};
    g->D = (int)a->shape[0];
    g->KD = nd->kd;
    g->SD = nd->sd;
    g->DD = nd->dd;
    g->PF = nd->pf;
    g->OD = (int)nd->shape[0];
}

/* Columns of one volume: (D' H' W', kd kh kw C). */
static size_t col_per_volume(const struct nn_node *nd, const struct nn_node *a)
{
    return (size_t)(nd->shape[0] * nd->shape[1] * nd->shape[2]) * (size_t)nd->kd * nd->kh * nd->kw *
           (size_t)a->shape[3];
}

static void conv3d_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t rows = cap * (nd->size / (size_t)nd->units);
    need->ones_n = rows > need->ones_n ? rows : need->ones_n;
    size_t per = col_per_volume(nd, a);
    size_t nb = per > 0 ? COL3_MAX_FLOATS / per : cap;
    nb = nb < 1 ? 1 : nb > cap ? cap : nb;
    nd->chunk = (int)nb;
    if (nb * per > need->col_n)
        need->col_n = nb * per;
}

/* z (b D'H'W', F) = im2col(x) (b D'H'W', K) W (K, F) + bias, chunk by chunk. */
static void conv3d_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv3_geom g;
    geom3(nd, a, &g);
    size_t F = (size_t)nd->units, P = nd->size / F, K = col_per_volume(nd, a) / P;
    const float *W = ddts__nn_wdata(m, nd->w0);
    for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
        size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
        ddts__tensor_im2col3(&g, nb, a->y + n0 * a->size, m->col, m->threads);
        ddts__tensor_sgemm_par(m->threads, 0, 0, nb * P, F, K, 1.0f, m->col, K, W, F, 0.0f,
                               nd->z + n0 * nd->size, F);
    }
    const float *bias = nd->use_bias ? ddts__nn_wdata(m, nd->w0 + 1) : NULL;
    nd->act_done = ddts__nn_bias_act(nd, b * P, F, bias, m->threads);
}

/* dW (K, F) = im2col(x)^T dz, db = column sums of dz, dx = col2im(dz W^T). */
static void conv3d_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv3_geom g;
    geom3(nd, a, &g);
    size_t F = (size_t)nd->units, P = nd->size / F, K = col_per_volume(nd, a) / P;
    const float *W = ddts__nn_wdata(m, nd->w0);
    int train = m->w[nd->w0].trainable, acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (train && nd->use_bias)
        ddts__nn_bias_grad(m, b * P, F, nd->dz, ddts__nn_gdata(m, nd->w0 + 1));
    for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
        size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
        const float *dz = nd->dz + n0 * nd->size;
        if (train) {
            ddts__tensor_im2col3(&g, nb, a->y + n0 * a->size, m->col, m->threads);
            ddts__tensor_sgemm_par(m->threads, 1, 0, K, F, nb * P, 1.0f, m->col, K, dz, F,
                                   n0 ? 1.0f : 0.0f, ddts__nn_gdata(m, nd->w0), F);
        }
        if (dx) {
            ddts__tensor_sgemm_par(m->threads, 0, 1, nb * P, K, F, 1.0f, dz, F, W, F, 0.0f, m->col,
                                   K);
            float *dxi = dx + n0 * a->size;
            if (!acc)
                memset(dxi, 0, nb * a->size * sizeof *dxi);
            ddts__tensor_col2im3(&g, nb, m->col, dxi, m->threads);
        }
    }
}

/* ---- pooling ---- */

static void pool3d_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    if (!nd->avg) /* the argmax of each output, as int32 */
        nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
}

/* One output cell (od, oh, ow) of sample s, every channel: the mean of the
 * window's cells inside the volume (arg NULL, average pooling), else the max
 * and its input cell in arg. */
static void pool3d_cell(const struct nn_node *nd, const struct nn_node *a, const float *x, int od,
                        int oh, int ow, float *y, int32_t *arg)
{
    const int D = (int)a->shape[0], H = (int)a->shape[1], Wd = (int)a->shape[2];
    const int C = (int)a->shape[3];
    int d0 = od * nd->sd - nd->pf, h0 = oh * nd->sh - nd->pt, w0 = ow * nd->sw - nd->pl;
    int cells = 0;
    for (int c = 0; c < C; c++) {
        y[c] = arg == NULL ? 0.0f : -FLT_MAX;
        if (arg != NULL)
            arg[c] = -1;
    }
    for (int kd = 0; kd < nd->kd; kd++)
        for (int kh = 0; kh < nd->kh; kh++)
            for (int kw = 0; kw < nd->kw; kw++) {
                int id = d0 + kd, ih = h0 + kh, iw = w0 + kw;
                if (id < 0 || id >= D || ih < 0 || ih >= H || iw < 0 || iw >= Wd)
                    continue;
                int32_t at = (int32_t)((((size_t)id * H + ih) * Wd + iw) * C);
                cells++;
                if (arg == NULL) {
                    for (int c = 0; c < C; c++)
                        y[c] += x[at + c];
                    continue;
                }
                for (int c = 0; c < C; c++)
                    if (x[at + c] > y[c] || arg[c] < 0) {
                        y[c] = x[at + c];
                        arg[c] = at + c;
                    }
            }
    if (arg == NULL && cells > 0)
        for (int c = 0; c < C; c++)
            y[c] /= (float)cells;
}

static void pool3d_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    const int OD = (int)nd->shape[0], OH = (int)nd->shape[1], OW = (int)nd->shape[2];
    const size_t C = (size_t)nd->shape[3];
    const long rows = (long)(b * (size_t)OD);
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b * nd->size > 65536)
    for (long r = 0; r < rows; r++) {
        size_t s = (size_t)r / (size_t)OD;
        int od = (int)((size_t)r % (size_t)OD);
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                size_t o = s * nd->size + (((size_t)od * OH + oh) * OW + ow) * C;
                pool3d_cell(nd, a, a->y + s * a->size, od, oh, ow, nd->z + o,
                            nd->avg ? NULL : (int32_t *)nd->aux + o);
            }
    }
}

/* Max: each output's gradient to its argmax. Average: spread over the
 * window's cells inside the volume. */
static void pool3d_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    if (!acc)
        memset(dx, 0, b * a->size * sizeof *dx);
    const int D = (int)a->shape[0], H = (int)a->shape[1], Wd = (int)a->shape[2];
    const int OD = (int)nd->shape[0], OH = (int)nd->shape[1], OW = (int)nd->shape[2];
    const size_t C = (size_t)nd->shape[3];
    for (size_t s = 0; s < b; s++) {
        float *dxs = dx + s * a->size;
        const float *dz = nd->dz + s * nd->size;
        if (!nd->avg) {
            const int32_t *arg = (const int32_t *)nd->aux + s * nd->size;
            for (size_t o = 0; o < nd->size; o++)
                if (arg[o] >= 0)
                    dxs[arg[o]] += dz[o];
            continue;
        }
        for (int od = 0; od < OD; od++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    int d0 = od * nd->sd - nd->pf, h0 = oh * nd->sh - nd->pt,
                        w0 = ow * nd->sw - nd->pl;
                    int dlo = d0 < 0 ? 0 : d0, dhi = d0 + nd->kd > D ? D : d0 + nd->kd;
                    int hlo = h0 < 0 ? 0 : h0, hhi = h0 + nd->kh > H ? H : h0 + nd->kh;
                    int wlo = w0 < 0 ? 0 : w0, whi = w0 + nd->kw > Wd ? Wd : w0 + nd->kw;
                    int cells = (dhi - dlo) * (hhi - hlo) * (whi - wlo);
                    if (cells <= 0)
                        continue;
                    const float *g = dz + (((size_t)od * OH + oh) * OW + ow) * C;
                    float inv = 1.0f / (float)cells;
                    for (int id = dlo; id < dhi; id++)
                        for (int ih = hlo; ih < hhi; ih++)
                            for (int iw = wlo; iw < whi; iw++) {
                                float *d = dxs + (((size_t)id * H + ih) * Wd + iw) * C;
                                for (size_t c = 0; c < C; c++)
                                    d[c] += g[c] * inv;
                            }
                }
    }
}

static const struct nn_layer_ops conv3d_ops = {
    .class_names = (const char *const[]){"Conv3D", "Convolution3D", NULL},
    .kind = NN_CONV3D,
    .doc = "convolution over (D, H, W, C): valid/same, strides, dilation",
    .min_in = 1,
    .max_in = 1,
    .weight_name = ddts__nn_kernel_bias,
    .parse = conv3d_parse,
    .infer_shape = conv3d_shape,
    .add_weights = conv3d_weights,
    .plan = conv3d_plan,
    .forward = conv3d_forward,
    .backward = conv3d_backward,
};

static const struct nn_layer_ops maxpool3d_ops = {
    .class_names = (const char *const[]){"MaxPooling3D", "MaxPool3D", NULL},
    .kind = NN_POOL3D,
    .doc = "max over (d, h, w) windows of (D, H, W, C): valid/same, strides",
    .min_in = 1,
    .max_in = 1,
    .parse = pool3d_parse,
    .infer_shape = pool3d_shape,
    .plan = pool3d_plan,
    .forward = pool3d_forward,
    .backward = pool3d_backward,
};

static const struct nn_layer_ops avgpool3d_ops = {
    .class_names = (const char *const[]){"AveragePooling3D", "AvgPool3D", NULL},
    .kind = NN_POOL3D,
    .doc = "mean over (d, h, w) windows of (D, H, W, C) (same: of the cells inside)",
    .min_in = 1,
    .max_in = 1,
    .parse = pool3d_parse,
    .infer_shape = pool3d_shape,
    .plan = pool3d_plan,
    .forward = pool3d_forward,
    .backward = pool3d_backward,
};

const struct nn_layer_ops *const ddts__nn_family_conv3d[] = {
    &conv3d_ops,
    &maxpool3d_ops,
    &avgpool3d_ops,
    NULL,
};
