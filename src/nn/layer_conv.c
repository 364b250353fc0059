/*
 * The convolution family: Conv2D and Conv1D (a 1-D layer runs as the 2-D
 * one over a (1, T) image), Conv2DTranspose, and the convolution classes of
 * Keras files ddts reads by name only (the transposed 1-D and 3-D ones);
 * depthwise and separable convolutions live in layer_depthwise.c, Conv3D
 * in layer_conv3d.c.
 *
 *   Conv2D           (H, W, C) -> (H', W', F)   kernel (kh, kw, C, F), bias (F)
 *                    valid: H' = (H - dk) / s + 1; same: H' = ceil(H / s)
 *   Conv1D           (T, C) -> (T', F)          kernel (k, C, F): the same floats
 *   Conv2DTranspose  (H, W, C) -> (H s, W s, F) kernel (kh, kw, F, C)
 *
 * Kernels: im2col + one sgemm per chunk of images (src/tensor/im2col.c,
 * blas.c); 1x1 stride-1 convolutions skip im2col; short windows run the
 * direct kernels of src/tensor/conv_direct.c.
 */
#include <stdint.h>
#include <string.h>

#include "nn/layer.h"
#include "tensor/tensor.h"

/* Largest im2col scratch we plan, in floats (64 MiB): bigger batches are
 * convolved in chunks of images. */
#define COL_MAX_FLOATS ((size_t)1 << 24)
/* The input gradient's columns are computed in chunks of at most this many
 * floats (2 MiB) rather than for the whole batch: the GEMMs stay large
 * (thousands of rows) and the scratch small. */
#define DCOL_MAX_FLOATS ((size_t)1 << 19)

/* ---- weight names ---- */

/* ---- config ---- */

enum ddts_status ddts__nn_cfg_conv_window(struct nn_parse *p, struct nn_node *nd)
{
    int v[3];
    /* 1-D layers run as 2-D ones over a (1, T) image */
    nd->dim1 = strstr(nd->class_name, "1D") != NULL;
    int n = nd->dim1 ? 1 : strstr(nd->class_name, "3D") ? 3 : 2;
    static const char *const keys[] = {"kernel_size", "strides", "dilation_rate"};
    static const char *const bad[] = {"bad kernel_size", "bad strides", "bad dilation_rate"};
    int *const out[][3] = {
        {&nd->kd, &nd->kh, &nd->kw}, {&nd->sd, &nd->sh, &nd->sw}, {&nd->dd, &nd->dh, &nd->dw}};
    for (int k = 0; k < 3; k++) {
        if (ddts__nn_cfg_ints(p, keys[k], n, k == 0 ? 0 : 1, v) != 0 || v[0] <= 0)
            return ddts__nn_bad(p, bad[k]); /* a missing kernel_size reads 0 */
        /* the last n of (depth, height, width); the others are 1 */
        for (int i = 0; i < 3; i++)
            *out[k][i] = i < 3 - n ? 1 : v[i - (3 - n)];
    }
    return DDTS_OK;
}

enum ddts_status ddts__nn_cfg_conv_rest(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st;
    int g;
    if ((nd->dd > 1 || nd->dh > 1 || nd->dw > 1) && (nd->sd > 1 || nd->sh > 1 || nd->sw > 1))
        return ddts__nn_unsup(p, "dilation with strides");
    if (ddts__nn_cfg_int(p, "groups", 1, 1, 1, &g) != 0)
        return ddts__nn_unsup(p, "groups");
    if ((st = ddts__nn_cfg_channels_last(p)) != DDTS_OK ||
        (st = ddts__nn_cfg_padding(p, &nd->same)) != DDTS_OK)
        return st;
    nd->use_bias = ddts__nn_cfg_bool(p, "use_bias", 1);
    if ((st = ddts__nn_cfg_act(p, "activation", &nd->act)) != DDTS_OK)
        return st;
    static const char *const nulls[] = {"activity_regularizer", "kernel_constraint",
                                        "bias_constraint", "lora_rank"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if ((st = ddts__nn_cfg_null(p, nulls[i])) != DDTS_OK)
            return st;
    return DDTS_OK;
}

static enum ddts_status conv_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st;
    if (ddts__nn_cfg_int(p, "filters", 1, 1 << 24, 0, &nd->units) != 0)
        return ddts__nn_bad(p, "filters must be a positive integer");
    if ((st = ddts__nn_cfg_conv_window(p, nd)) != DDTS_OK)
        return st;
    if (nd->kind == NN_CONV2DT && (st = ddts__nn_cfg_null(p, "output_padding")) != DDTS_OK)
        return st;
    return ddts__nn_cfg_conv_rest(p, nd);
}

/* TF's output length and leading padding of a window over `in` cells (in
 * 64 bits: kernel sizes and dilations up to 2^24 each). */
long long ddts__nn_window_len(long long in, long long k, long long s, long long d, int same,
                              int *pad_lead, int *pad_total)
{
    long long dk = d * (k - 1) + 1, o;
    if (same) {
        o = (in + s - 1) / s;
        long long pt = (o - 1) * s + dk - in;
        if (pt < 0 || pt > (1 << 30))
            pt = pt < 0 ? 0 : -1;
        *pad_lead = pt < 0 ? 0 : (int)(pt / 2);
        *pad_total = pt < 0 ? 0 : (int)pt;
        if (pt < 0)
            o = 0;
    } else {
        o = in >= dk ? (in - dk) / s + 1 : 0;
        *pad_lead = 0;
        *pad_total = 0;
    }
    return o;
}

enum ddts_status ddts__nn_window_shape(struct ddts_model *m, struct nn_node *nd, int64_t channels,
                                       struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int want = nd->dim1 ? 2 : 3;
    if (a->rank != want)
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s) needs %s input, got rank %d",
                              nd->name, nd->class_name, nd->dim1 ? "(T, C)" : "(H, W, C)", a->rank);
    int tph, tpw;
    long long oh = ddts__nn_window_len(nn_h(a), nd->kh, nd->sh, nd->dh, nd->same, &nd->pt, &tph);
    long long ow;
    if (nd->same == 2) { /* causal (Conv1D): all the padding on the left */
        tpw = nd->dw * (nd->kw - 1);
        nd->pl = tpw;
        ow = (nn_w(a) - 1) / nd->sw + 1;
    } else {
        ow = ddts__nn_window_len(nn_w(a), nd->kw, nd->sw, nd->dw, nd->same, &nd->pl, &tpw);
    }
    nd->pb = tph - nd->pt;
    nd->pr = tpw - nd->pl;
    if (oh <= 0 || ow <= 0)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s): input (%lld, %lld) is smaller than the window",
                              nd->name, nd->class_name, (long long)nn_h(a), (long long)nn_w(a));
    nd->rank = want;
    if (nd->dim1) {
        nd->shape[0] = ow;
        nd->shape[1] = channels;
    } else {
        nd->shape[0] = oh;
        nd->shape[1] = ow;
        nd->shape[2] = channels;
    }
    return DDTS_OK;
}

static enum ddts_status conv_shape(struct ddts_model *m, struct nn_node *nd, struct ddts_error *err)
{
    return ddts__nn_window_shape(m, nd, nd->units, err);
}

static enum ddts_status convt_shape(struct ddts_model *m, struct nn_node *nd,
                                    struct ddts_error *err)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    if (a->rank != 3)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s) needs (H, W, C) input, got rank %d", nd->name,
                              nd->class_name, a->rank);
    long long o[2];
    long long in[2] = {a->shape[0], a->shape[1]};
    long long k[2] = {nd->kh, nd->kw}, s[2] = {nd->sh, nd->sw}, d[2] = {nd->dh, nd->dw};
    int pl[2];
    for (int t = 0; t < 2; t++) {
        long long dk = d[t] * (k[t] - 1) + 1;
        o[t] = nd->same ? in[t] * s[t] : in[t] * s[t] + (dk > s[t] ? dk - s[t] : 0);
        long long tot = (in[t] - 1) * s[t] + dk - o[t];
        if (o[t] > (1 << 30) || tot > (1 << 30))
            return ddts_error_set(err, DDTS_ELIMIT, "layer '%s' (%s): output is too large",
                                  nd->name, nd->class_name);
        pl[t] = tot > 0 ? (int)(tot / 2) : 0;
    }
    nd->pt = pl[0];
    nd->pl = pl[1];
    nd->rank = 3;
    nd->shape[0] = o[0];
    nd->shape[1] = o[1];
    nd->shape[2] = nd->units;
    return DDTS_OK;
}

enum ddts_status ddts__nn_cfg_bias(struct nn_parse *p, const struct nn_node *nd)
{
    int64_t nb = nd->units;
    if (!nd->use_bias)
        return DDTS_OK;
    return ddts__nn_cfg_weight(p, "bias", 1, &nb, 1, "bias_initializer", ddts__nn_init_zeros,
                               "bias_regularizer");
}

static enum ddts_status conv_weights(struct nn_parse *p, struct nn_node *nd)
{
    const struct nn_node *a = &p->m->nodes[nd->in[0]];
    int64_t ws[4] = {nd->kh, nd->kw, nd->kind == NN_CONV2D ? nn_c(a) : nd->units,
                     nd->kind == NN_CONV2D ? nd->units : nn_c(a)};
    /* Conv1D kernels are (k, cin, cout): the same floats without the 1 */
    enum ddts_status st =
        ddts__nn_cfg_weight(p, "kernel", nd->dim1 ? 3 : 4, nd->dim1 ? ws + 1 : ws, 1,
                            "kernel_initializer", ddts__nn_init_glorot, "kernel_regularizer");
    return st == DDTS_OK ? ddts__nn_cfg_bias(p, nd) : st;
}

/* ---- planning: im2col chunks, the direct kernels' scratch ---- */

static void conv_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    const struct nn_node *a = &m->nodes[nd->in[0]];
    nd->crop_h = nd->crop_w = 0; /* the max pooling after it may set them (plan_link) */
    size_t rows = cap * (nd->size / (size_t)nd->shape[nd->rank - 1]);
    need->ones_n = rows > need->ones_n ? rows : need->ones_n;
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
    int pointwise =
        nd->kh == 1 && nd->kw == 1 && nd->sh == 1 && nd->sw == 1 && nd->pt == 0 && nd->pl == 0;
    size_t col = nb * per;
    struct ddts__conv_geom tg;
    ddts__nn_conv_geom_full(nd, a, &tg);
    nd->direct = nd->kind == NN_CONV2D && !pointwise && !m->conv_gemm_only &&
                 ddts__tensor_conv_direct_fits(&tg);
    if (nd->kind == NN_CONV2D && !pointwise) {
        /* the input gradient's columns in dchunks of DCOL_MAX_FLOATS: the
         * GEMMs stay large, the scratch small and in cache */
        size_t dn = per > 0 ? DCOL_MAX_FLOATS / per : cap;
        dn = dn < 1 ? 1 : dn > cap ? cap : dn;
        nd->dchunk = (int)dn;
        /* no larger than the forward's chunks; a direct convolution has no
         * forward im2col */
        if (nd->direct)
            col = a->needs_grad ? dn * per : 0;
        /* the weight gradient: the direct kernels' or, for the others, the
         * AVX-512 one's (conv_direct.c; elsewhere im2col in dchunks and a
         * GEMM, within col) */
        size_t wg = nd->direct
                        ? ddts__tensor_conv_direct_scratch(&tg, (size_t)nd->units, 0, m->threads)
                        : ddts__tensor_conv_wgrad_scratch(&tg, (size_t)nd->units, m->threads);
        if (nd->needs_grad && m->w[nd->w0].trainable && wg > col)
            col = wg;
    }
    if (col > need->col_n)
        need->col_n = col;
}

/* ---- passes ---- */

/* The layer's whole geometry (conv_geom below: the part it computes). */
void ddts__nn_conv_geom_full(const struct nn_node *nd, const struct nn_node *a,
                             struct ddts__conv_geom *g)
{
    if (nd->kind == NN_CONV2DT) {
        /* The image is the output; the input plays the convolution's output. */
        g->H = (int)nd->shape[0];
        g->W = (int)nd->shape[1];
        g->C = (int)nd->shape[2];
        g->OH = (int)a->shape[0];
        g->OW = (int)a->shape[1];
    } else {
        g->H = (int)nn_h(a);
        g->W = (int)nn_w(a);
        g->C = (int)nn_c(a);
        g->OH = (int)nn_h(nd);
        g->OW = (int)nn_w(nd);
    }
    g->KH = nd->kh;
    g->KW = nd->kw;
    g->SH = nd->sh;
    g->SW = nd->sw;
    g->DH = nd->dh;
    g->DW = nd->dw;
    g->PT = nd->pt;
    g->PL = nd->pl;
}

/* The output rows and columns the passes compute: all, or the leading
 * crop_h x crop_w that a max pooling reads (stored packed). im2col, col2im
 * and the direct kernels take OH and OW as the positions to visit. */
static void conv_geom(const struct nn_node *nd, const struct nn_node *a, struct ddts__conv_geom *g)
{
    ddts__nn_conv_geom_full(nd, a, g);
    if (nd->crop_h > 0) {
        g->OH = nd->crop_h;
        g->OW = nd->crop_w;
    }
}

static int conv_is_pointwise(const struct ddts__conv_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PT == 0 && g->PL == 0;
}

/*
 * A Conv2D whose only reader is a max pooling with tiling windows that
 * leave a remainder ('valid' pooling of 11 by 2 reads rows and columns 0-9)
 * computes only the rows and columns the windows read, and stores them
 * packed as (n, rows, cols, F): the GEMMs, im2col and col2im skip the rest
 * (a sixth of the second convolution of examples/fashion_cnn.json). Not for
 * the model's output, a 1x1 convolution (its GEMM reads the input in
 * place), or a direct convolution computing the pooling itself. The pooling
 * reads its input as stored (layer_pool.c, stored_in). Returns whether it
 * crops.
 */
int ddts__nn_conv_crop(struct ddts_model *m, size_t conv, int rows, int cols)
{
    struct nn_node *nd = &m->nodes[conv];
    struct ddts__conv_geom g;
    if (nd->kind != NN_CONV2D || nd->pool_node != 0 || (int)conv == m->output_node)
        return 0;
    ddts__nn_conv_geom_full(nd, &m->nodes[nd->in[0]], &g);
    if (conv_is_pointwise(&g) || rows <= 0 || cols <= 0 || rows > g.OH || cols > g.OW ||
        (rows == g.OH && cols == g.OW))
        return 0;
    nd->crop_h = rows;
    nd->crop_w = cols;
    return 1;
}

static const struct ddts__conv_pool *fused_pool(const struct ddts_model *m,
                                                const struct nn_node *nd, struct ddts__conv_pool *p)
{
    if (nd->pool_node == 0)
        return NULL;
    const struct nn_node *pn = &m->nodes[nd->pool_node];
    *p = (struct ddts__conv_pool){.PH = pn->kh,
                                  .PW = pn->kw,
                                  .POH = (int)nn_h(pn),
                                  .POW = (int)nn_w(pn),
                                  .y = pn->y,
                                  .arg = (int32_t *)pn->aux,
                                  .dy = pn->dy};
    return p;
}

/* ---- Conv2D: z (b*OH*OW, F) = im2col(x) (b*OH*OW, K) W (K, F) + b ---- */
static void conv_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv_geom g;
    conv_geom(nd, a, &g);
    size_t K = (size_t)g.KH * g.KW * g.C, F = (size_t)nd->units, P = (size_t)g.OH * g.OW;
    const float *W = ddts__nn_wdata(m, nd->w0);
    const float *bias = nd->use_bias ? ddts__nn_wdata(m, nd->w0 + 1) : NULL;
    if (nd->direct) {
        struct ddts__conv_pool pool;
        int relu = ddts__nn_plain_relu_in_place(nd);
        ddts__tensor_conv_direct(&g, b, a->y, W, F, bias, relu, nd->z, fused_pool(m, nd, &pool),
                                 m->col, m->threads);
        nd->act_done = relu;
        return;
    }
    if (conv_is_pointwise(&g)) {
        ddts__tensor_sgemm_par(m->threads, 0, 0, b * P, F, K, 1.0f, a->y, K, W, F, 0.0f, nd->z, F);
        nd->act_done = ddts__nn_bias_act(nd, b * P, F, bias, m->threads);
        return;
    }
    float *col = m->col;
    if (nd->chunk < m->threads) { /* large images: each pass split over the threads */
        for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
            size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
            ddts__tensor_im2col(&g, nb, a->y + n0 * a->size, col, m->threads);
            ddts__tensor_sgemm_par(m->threads, 0, 0, nb * P, F, K, 1.0f, col, K, W, F, 0.0f,
                                   nd->z + n0 * P * F, F);
        }
        nd->act_done = ddts__nn_bias_act(nd, b * P, F, bias, m->threads);
        return;
    }
    /* im2col, GEMM, bias and relu: one parallel region per chunk, the
     * threads splitting its images */
    int relu = ddts__nn_plain_relu_in_place(nd);
    for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
        size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
        ddts__tensor_conv_fwd(&g, nb, a->y + n0 * a->size, W, F, bias, relu, nd->z + n0 * P * F,
                              col, m->threads);
    }
    nd->act_done = relu;
}

static void conv_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv_geom g;
    conv_geom(nd, a, &g);
    size_t K = (size_t)g.KH * g.KW * g.C, F = (size_t)nd->units, P = (size_t)g.OH * g.OW;
    const float *W = ddts__nn_wdata(m, nd->w0);
    int train = m->w[nd->w0].trainable;
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    struct ddts__conv_pool pool;
    if (conv_is_pointwise(&g)) {
        if (train && nd->use_bias)
            ddts__nn_bias_grad(m, b * P, F, nd->dz, ddts__nn_gdata(m, nd->w0 + 1));
        ddts__tensor_linear_grads(m->threads, b * P, K, F, a->y, nd->dz, W,
                                  train ? ddts__nn_gdata(m, nd->w0) : NULL, dx, acc);
        return;
    }
    /* dW (K, F) = im2col(x)^T dz and db: the direct kernels' (a direct
     * convolution fused with its pooling rebuilds dz from the pooling's
     * gradient), or for the others the AVX-512 kernel without im2col; in
     * the other builds im2col in dchunks and a GEMM over each */
    float *dW = train ? ddts__nn_gdata(m, nd->w0) : NULL;
    float *db = train && nd->use_bias ? ddts__nn_gdata(m, nd->w0 + 1) : NULL;
    if (train && nd->direct)
        ddts__tensor_conv_direct_wgrad(&g, b, a->y, nd->dz, F, dW, db, fused_pool(m, nd, &pool),
                                       m->col, m->threads);
    else if (train &&
             !ddts__tensor_conv_wgrad(&g, b, a->y, nd->dz, F, dW, db, m->col, m->threads)) {
        if (db)
            ddts__nn_bias_grad(m, b * P, F, nd->dz, db);
        for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->dchunk) {
            size_t nb = b - n0 < (size_t)nd->dchunk ? b - n0 : (size_t)nd->dchunk;
            ddts__tensor_im2col(&g, nb, a->y + n0 * a->size, m->col, m->threads);
            ddts__tensor_sgemm_par(m->threads, 1, 0, K, F, nb * P, 1.0f, m->col, K,
                                   nd->dz + n0 * P * F, F, n0 ? 1.0f : 0.0f, dW, F);
        }
    }
    /* dcol (nb*P, K) = dz W^T, scattered back onto the image, in dchunks:
     * one parallel region, each thread on its images in groups through its
     * part of the dchunk's scratch; or, where a dchunk holds fewer images
     * than threads (large images), each GEMM split over the threads */
    size_t group = (size_t)nd->dchunk / (size_t)m->threads;
    if (dx && group >= 1) {
        ddts__tensor_conv_dx(&g, b, nd->dz, W, F, dx, !acc, m->col, group, m->threads);
        return;
    }
    for (size_t n0 = 0; dx && n0 < b; n0 += (size_t)nd->dchunk) {
        size_t nb = b - n0 < (size_t)nd->dchunk ? b - n0 : (size_t)nd->dchunk;
        ddts__tensor_sgemm_par(m->threads, 0, 1, nb * P, K, F, 1.0f, nd->dz + n0 * P * F, F, W, F,
                               0.0f, m->col, K);
        ddts__tensor_col2im(&g, nb, m->col, dx + n0 * a->size, !acc, m->threads);
    }
}

/* ---- Conv2DTranspose: the adjoint of a convolution; kernel (kh, kw, F, Cin)
 * viewed as (K = kh*kw*F, Cin). z = col2im(x W^T) + b ---- */
static void convt_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv_geom g;
    conv_geom(nd, a, &g);
    size_t K = (size_t)g.KH * g.KW * g.C, Cin = (size_t)a->shape[2], P = (size_t)g.OH * g.OW;
    const float *W = ddts__nn_wdata(m, nd->w0);
    for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
        size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
        ddts__tensor_sgemm_par(m->threads, 0, 1, nb * P, K, Cin, 1.0f, a->y + n0 * a->size, Cin, W,
                               Cin, 0.0f, m->col, K);
        ddts__tensor_col2im(&g, nb, m->col, nd->z + n0 * nd->size, 1, m->threads);
    }
    if (nd->use_bias)
        ddts__nn_add_bias(b * (nd->size / (size_t)nd->units), (size_t)nd->units,
                          ddts__nn_wdata(m, nd->w0 + 1), nd->z, m->threads);
}

static void convt_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv_geom g;
    conv_geom(nd, a, &g);
    size_t K = (size_t)g.KH * g.KW * g.C, Cin = (size_t)a->shape[2], P = (size_t)g.OH * g.OW;
    const float *W = ddts__nn_wdata(m, nd->w0);
    int train = m->w[nd->w0].trainable;
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (train && nd->use_bias)
        ddts__nn_bias_grad(m, b * (nd->size / (size_t)nd->units), (size_t)nd->units, nd->dz,
                           ddts__nn_gdata(m, nd->w0 + 1));
    for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
        size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
        ddts__tensor_im2col(&g, nb, nd->dz + n0 * nd->size, m->col, m->threads);
        if (train) /* dW (K, Cin) += col^T x */
            ddts__tensor_sgemm_par(m->threads, 1, 0, K, Cin, nb * P, 1.0f, m->col, K,
                                   a->y + n0 * a->size, Cin, n0 ? 1.0f : 0.0f,
                                   ddts__nn_gdata(m, nd->w0), Cin);
        if (dx) /* dx (nb*P, Cin) = col W */
            ddts__tensor_sgemm_par(m->threads, 0, 0, nb * P, Cin, K, 1.0f, m->col, K, W, Cin,
                                   acc ? 1.0f : 0.0f, dx + n0 * a->size, Cin);
    }
}

/* (positions x K x F) of the forward GEMM; Conv2DTranspose: (input positions x K x Cin). */
static double conv_macs(const struct ddts_model *m, const struct nn_node *nd)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv_geom g;
    /* the layer's count, cropped or not (as the peer computes) */
    ddts__nn_conv_geom_full(nd, a, &g);
    double K = (double)g.KH * g.KW * g.C, P = (double)g.OH * g.OW;
    return P * K * (double)(nd->kind == NN_CONV2DT ? a->shape[2] : nd->units);
}

/* ---- `ddts model new --layers` ---- */

/* "conv2d:FILTERS:K[xK2][:ACTIVATION][:same|valid]", strides 1. */
static enum ddts_status conv_spec(struct nn_spec *s)
{
    long v, kh = 0, kw = 0;
    if (s->n_arg < 3 || s->n_arg > 5 || ddts__nn_spec_int(s->arg[1], 1, 1L << 20, &v) != 0)
        return s->fail(s, DDTS_EINVAL, "expected conv2d:FILTERS:K[xK][:ACTIVATION][:same|valid]");
    char *x = strchr(s->arg[2], 'x');
    if (x != NULL)
        *x = '\0';
    if (ddts__nn_spec_int(s->arg[2], 1, 4096, &kh) != 0 ||
        (x != NULL ? ddts__nn_spec_int(x + 1, 1, 4096, &kw) : (kw = kh, 0)) != 0)
        return s->fail(s, DDTS_EINVAL, "bad kernel size");
    const char *act = s->n_arg >= 4 ? s->arg[3] : "linear";
    const char *pad = s->n_arg == 5 ? s->arg[4] : "valid";
    if (!ddts__nn_spec_word_ok(act) || (strcmp(pad, "same") != 0 && strcmp(pad, "valid") != 0))
        return s->fail(s, DDTS_EINVAL, "bad activation or padding");
    if (s->rank != 3)
        return s->fail(s, DDTS_ESHAPE, "conv2d needs an (H, W, C) input, got rank %d", s->rank);
    int same = strcmp(pad, "same") == 0;
    if (!same && (s->shape[0] < kh || s->shape[1] < kw))
        return s->fail(s, DDTS_ESHAPE, "kernel %ldx%ld larger than the %lldx%lld input", kh, kw,
                       (long long)s->shape[0], (long long)s->shape[1]);
    enum ddts_status st = s->open(s, "Conv2D", "conv2d");
    if (st != DDTS_OK)
        return st;
    s->json(s,
            ", \"filters\": %ld, \"kernel_size\": [%ld, %ld], \"strides\": [1, 1], "
            "\"padding\": \"%s\", \"data_format\": \"channels_last\", \"dilation_rate\": "
            "[1, 1], \"groups\": 1, \"activation\": \"%s\", \"use_bias\": true, %s",
            v, kh, kw, pad, act, ddts__nn_spec_initializers);
    int64_t k[4] = {kh, kw, s->shape[2], v};
    double rf = (double)kh * (double)kw;
    st = s->weight(s, "kernel", 4, k, 2, rf * (double)k[2], rf * (double)v);
    if (st == DDTS_OK)
        st = s->weight(s, "bias", 1, &k[3], 0, 0, 0);
    if (!same) {
        s->shape[0] -= kh - 1;
        s->shape[1] -= kw - 1;
    }
    s->shape[2] = v;
    return st;
}

static const struct nn_layer_ops conv_ops = {
    .class_names =
        (const char *const[]){"Conv2D", "Convolution2D", "Conv1D", "Convolution1D", NULL},
    .kind = NN_CONV2D,
    .doc = "convolution over (H, W, C) or (T, C): valid/same, strides, dilation",
    .min_in = 1,
    .max_in = 1,
    .weight_name = ddts__nn_kernel_bias,
    .parse = conv_parse,
    .infer_shape = conv_shape,
    .add_weights = conv_weights,
    .plan = conv_plan,
    .forward = conv_forward,
    .backward = conv_backward,
    .macs = conv_macs,
    .spec_word = "conv2d",
    .spec_usage = "conv2d:FILTERS:K[xK2][:ACTIVATION][:same|valid]",
    .spec = conv_spec,
};

static const struct nn_layer_ops convt_ops = {
    .class_names =
        (const char *const[]){"Conv2DTranspose", "Convolution2DTranspose", "Deconvolution2D", NULL},
    .kind = NN_CONV2DT,
    .doc = "transposed convolution (the adjoint of Conv2D)",
    .min_in = 1,
    .max_in = 1,
    .weight_name = ddts__nn_kernel_bias,
    .parse = conv_parse,
    .infer_shape = convt_shape,
    .add_weights = conv_weights,
    .plan = conv_plan,
    .forward = convt_forward,
    .backward = convt_backward,
    .macs = conv_macs,
};

/* Known by name (their files' weights are named), not run by the engine;
 * Conv3D lives in layer_conv3d.c. */
static const struct nn_layer_ops conv_other_ops = {
    .class_names = (const char *const[]){"Conv1DTranspose", "Conv3DTranspose",
                                         "Convolution3DTranspose", "Deconvolution3D", NULL},
    .kind = NN_NAMED,
    .doc = "not supported by the engine; weights kernel, bias",
    .weight_name = ddts__nn_kernel_bias,
};

const struct nn_layer_ops *const ddts__nn_family_conv[] = {
    &conv_ops,
    &convt_ops,
    &conv_other_ops,
    NULL,
};
