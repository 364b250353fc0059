/*
 * Forward and backward passes of every layer kind, over planned buffers.
 * Shapes: a node's buffers are (b, size) with size the product of its
 * per-sample shape; images are (b, H, W, C).
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "nn/nn.h"
#include "tensor/tensor.h"

static inline const float *wdata(const struct ddts_model *m, int slot)
{
    return m->params + m->w[slot].off;
}

static inline float *gdata(const struct ddts_model *m, int slot)
{
    return m->grads + m->w[slot].off;
}

/* Gradient destination of input t of node nd, or NULL when not needed; *acc
 * tells whether to add (the input has several consumers) or overwrite. */
static float *dx_of(const struct ddts_model *m, const struct nn_node *nd, int t, int *acc)
{
    const struct nn_node *a = &m->nodes[nd->in[t]];
    *acc = 0;
    if (!a->needs_grad)
        return NULL;
    *acc = a->n_consumers > 1;
    return a->dy;
}

static void add_bias(size_t rows, size_t k, const float *bias, float *z, int nt)
{
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * k > 65536)
    for (long r = 0; r < (long)rows; r++) {
        float *zr = z + (size_t)r * k;
        for (size_t j = 0; j < k; j++)
            zr[j] += bias[j];
    }
}

/* Whether the node's activation is a plain relu applied in place (z == y). */
static int plain_relu_in_place(const struct nn_node *nd)
{
    const struct nn_act *a = &nd->act;
    return nd->z == nd->y && a->kind == ACT_RELU && a->alpha == 0 && a->threshold == 0 &&
           a->max_value <= 0;
}

/* z += bias, then y = act(z); plain relu in place is fused into one pass.
 * Returns 1 when the activation was applied. */
static int bias_act(struct nn_node *nd, size_t rows, size_t k, const float *bias, int nt)
{
    if (plain_relu_in_place(nd)) {
        float *y = nd->y;
#pragma omp parallel for num_threads(nt) schedule(static) if (rows * k > 65536)
        for (long r = 0; r < (long)rows; r++) {
            float *yr = y + (size_t)r * k;
            for (size_t j = 0; j < k; j++) {
                float v = yr[j] + (bias ? bias[j] : 0.0f);
                yr[j] = v > 0 ? v : 0.0f;
            }
        }
        return 1;
    }
    if (bias)
        add_bias(rows, k, bias, nd->z, nt);
    return 0;
}

/* db (k) = sum over rows of dz (rows, k), as one GEMM with a ones vector. */
static void bias_grad(const struct ddts_model *m, size_t rows, size_t k, const float *dz, float *db)
{
    ddts__tensor_sgemm_par(m->threads, 1, 0, k, 1, rows, 1.0f, dz, k, m->ones, 1, 0.0f, db, 1);
}

static void put(float *dst, const float *src, size_t n, int acc)
{
    if (acc) {
        for (size_t i = 0; i < n; i++)
            dst[i] += src[i];
    } else {
        memcpy(dst, src, n * sizeof *dst);
    }
}

static void conv_geom(const struct nn_node *nd, const struct nn_node *a, struct ddts__conv_geom *g)
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

static int conv_is_pointwise(const struct ddts__conv_geom *g)
{
    return g->KH == 1 && g->KW == 1 && g->SH == 1 && g->SW == 1 && g->PT == 0 && g->PL == 0;
}

/* ---- Dense: z (R, units) = x (R, in) W (in, units) + b ---- */
static void dense_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t in = (size_t)a->shape[a->rank - 1], rows = b * (a->size / in);
    ddts__tensor_sgemm_par(m->threads, 0, 0, rows, (size_t)nd->units, in, 1.0f, a->y, in,
                           wdata(m, nd->w0), (size_t)nd->units, 0.0f, nd->z, (size_t)nd->units);
    nd->act_done = bias_act(nd, rows, (size_t)nd->units, nd->use_bias ? wdata(m, nd->w0 + 1) : NULL,
                            m->threads);
}

static void dense_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t in = (size_t)a->shape[a->rank - 1], rows = b * (a->size / in), u = (size_t)nd->units;
    if (m->w[nd->w0].trainable) {
        /* dW (in, units) = x^T dz */
        ddts__tensor_sgemm_par(m->threads, 1, 0, in, u, rows, 1.0f, a->y, in, nd->dz, u, 0.0f,
                               gdata(m, nd->w0), u);
        if (nd->use_bias)
            bias_grad(m, rows, u, nd->dz, gdata(m, nd->w0 + 1));
    }
    int acc;
    float *dx = dx_of(m, nd, 0, &acc);
    if (dx) /* dx (R, in) = dz W^T */
        ddts__tensor_sgemm_par(m->threads, 0, 1, rows, in, u, 1.0f, nd->dz, u, wdata(m, nd->w0), u,
                               acc ? 1.0f : 0.0f, dx, in);
}

/* The max pooling a direct convolution computes too (model.c), or NULL. */
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
    const float *W = wdata(m, nd->w0);
    const float *bias = nd->use_bias ? wdata(m, nd->w0 + 1) : NULL;
    if (nd->direct) {
        struct ddts__conv_pool pool;
        int relu = plain_relu_in_place(nd);
        ddts__tensor_conv_direct(&g, b, a->y, W, F, bias, relu, nd->z, fused_pool(m, nd, &pool),
                                 m->col, m->threads);
        nd->act_done = relu;
        return;
    }
    if (conv_is_pointwise(&g)) {
        ddts__tensor_sgemm_par(m->threads, 0, 0, b * P, F, K, 1.0f, a->y, K, W, F, 0.0f, nd->z, F);
    } else {
        float *col = nd->colbuf ? nd->colbuf : m->col;
        for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
            size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
            ddts__tensor_im2col(&g, nb, a->y + n0 * a->size, col, m->threads);
            ddts__tensor_sgemm_par(m->threads, 0, 0, nb * P, F, K, 1.0f, col, K, W, F, 0.0f,
                                   nd->z + n0 * nd->size, F);
        }
    }
    nd->act_done = bias_act(nd, b * P, F, bias, m->threads);
}

static void conv_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv_geom g;
    conv_geom(nd, a, &g);
    size_t K = (size_t)g.KH * g.KW * g.C, F = (size_t)nd->units, P = (size_t)g.OH * g.OW;
    const float *W = wdata(m, nd->w0);
    int train = m->w[nd->w0].trainable;
    int acc;
    float *dx = dx_of(m, nd, 0, &acc);
    struct ddts__conv_pool pool;
    if (train && nd->direct)
        ddts__tensor_conv_direct_wgrad(&g, b, a->y, nd->dz, F, gdata(m, nd->w0),
                                       nd->use_bias ? gdata(m, nd->w0 + 1) : NULL,
                                       fused_pool(m, nd, &pool), m->col, m->threads);
    else if (train && nd->use_bias)
        bias_grad(m, b * P, F, nd->dz, gdata(m, nd->w0 + 1));
    if (conv_is_pointwise(&g)) {
        if (train)
            ddts__tensor_sgemm_par(m->threads, 1, 0, K, F, b * P, 1.0f, a->y, K, nd->dz, F, 0.0f,
                                   gdata(m, nd->w0), F);
        if (dx)
            ddts__tensor_sgemm_par(m->threads, 0, 1, b * P, K, F, 1.0f, nd->dz, F, W, F,
                                   acc ? 1.0f : 0.0f, dx, K);
        return;
    }
    /* dW (K, F) += col^T dz; the forward pass's im2col when kept */
    for (size_t n0 = 0; train && !nd->direct && n0 < b; n0 += (size_t)nd->chunk) {
        size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
        const float *col = nd->colbuf;
        if (col == NULL) {
            ddts__tensor_im2col(&g, nb, a->y + n0 * a->size, m->col, m->threads);
            col = m->col;
        }
        ddts__tensor_sgemm_par(m->threads, 1, 0, K, F, nb * P, 1.0f, col, K, nd->dz + n0 * nd->size,
                               F, n0 ? 1.0f : 0.0f, gdata(m, nd->w0), F);
    }
    /* dcol (nb*P, K) = dz W^T, scattered back onto the image, in dchunks */
    for (size_t n0 = 0; dx && n0 < b; n0 += (size_t)nd->dchunk) {
        size_t nb = b - n0 < (size_t)nd->dchunk ? b - n0 : (size_t)nd->dchunk;
        ddts__tensor_sgemm_par(m->threads, 0, 1, nb * P, K, F, 1.0f, nd->dz + n0 * nd->size, F, W,
                               F, 0.0f, m->col, K);
        float *dxi = dx + n0 * a->size;
        if (!acc)
            memset(dxi, 0, nb * a->size * sizeof *dxi);
        ddts__tensor_col2im(&g, nb, m->col, dxi, m->threads);
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
    const float *W = wdata(m, nd->w0);
    for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
        size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
        ddts__tensor_sgemm_par(m->threads, 0, 1, nb * P, K, Cin, 1.0f, a->y + n0 * a->size, Cin, W,
                               Cin, 0.0f, m->col, K);
        float *z = nd->z + n0 * nd->size;
        memset(z, 0, nb * nd->size * sizeof *z);
        ddts__tensor_col2im(&g, nb, m->col, z, m->threads);
    }
    if (nd->use_bias)
        add_bias(b * (nd->size / (size_t)nd->units), (size_t)nd->units, wdata(m, nd->w0 + 1), nd->z,
                 m->threads);
}

static void convt_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    struct ddts__conv_geom g;
    conv_geom(nd, a, &g);
    size_t K = (size_t)g.KH * g.KW * g.C, Cin = (size_t)a->shape[2], P = (size_t)g.OH * g.OW;
    const float *W = wdata(m, nd->w0);
    int train = m->w[nd->w0].trainable;
    int acc;
    float *dx = dx_of(m, nd, 0, &acc);
    if (train && nd->use_bias)
        bias_grad(m, b * (nd->size / (size_t)nd->units), (size_t)nd->units, nd->dz,
                  gdata(m, nd->w0 + 1));
    for (size_t n0 = 0; n0 < b; n0 += (size_t)nd->chunk) {
        size_t nb = b - n0 < (size_t)nd->chunk ? b - n0 : (size_t)nd->chunk;
        ddts__tensor_im2col(&g, nb, nd->dz + n0 * nd->size, m->col, m->threads);
        if (train) /* dW (K, Cin) += col^T x */
            ddts__tensor_sgemm_par(m->threads, 1, 0, K, Cin, nb * P, 1.0f, m->col, K,
                                   a->y + n0 * a->size, Cin, n0 ? 1.0f : 0.0f, gdata(m, nd->w0),
                                   Cin);
        if (dx) /* dx (nb*P, Cin) = col W */
            ddts__tensor_sgemm_par(m->threads, 0, 0, nb * P, Cin, K, 1.0f, m->col, K, W, Cin,
                                   acc ? 1.0f : 0.0f, dx + n0 * a->size, Cin);
    }
}

/* ---- Pooling ---- */
static void maxpool_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int H = (int)nn_h(a), W = (int)nn_w(a), C = (int)nn_c(a);
    int OH = (int)nn_h(nd), OW = (int)nn_w(nd);
    int32_t *arg = (int32_t *)nd->aux;
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b * nd->size > 65536)
    for (long r = 0; r < (long)(b * (size_t)OH); r++) {
        size_t n = (size_t)r / (size_t)OH;
        int oh = (int)((size_t)r % (size_t)OH);
        const float *x = a->y + n * a->size;
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
    float *dx = dx_of(m, nd, 0, &acc);
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
        int W = (int)nn_w(a), C = (int)nn_c(a), OH = (int)nn_h(nd), OW = (int)nn_w(nd);
        int H = (int)nn_h(a), tail = (W - OW * nd->kw) * C;
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
        for (long r = 0; r < (long)(b * (size_t)OH); r++) {
            size_t n = (size_t)r / (size_t)OH;
            int oh = (int)((size_t)r % (size_t)OH);
            float *d = dx + n * a->size;
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
    float *dx = backward ? dx_of(m, nd, 0, &acc) : NULL;
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

/* GlobalAveragePooling1D after a mask: the mean over the steps that count
 * (zero when none does). */
static void masked_gap(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t C = (size_t)a->shape[a->rank - 1], T = a->size / C;
    float *mask = nd->scratch;
    if (!backward)
        ddts__nn_mask(m, nd, b, mask);
    int acc;
    float *dx = backward ? dx_of(m, nd, 0, &acc) : NULL;
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

static void global_pool_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
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
    int acc;
    float *dx = dx_of(m, nd, 0, &acc);
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

/* ---- Dropout (inverted, as Keras): y = x * mask / (1 - rate) in training ---- */
static void dropout_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t n = b * nd->size;
    if (!m->training || nd->rate <= 0) {
        memcpy(nd->y, a->y, n * sizeof *nd->y);
        return;
    }
    float keep = 1.0f / (1.0f - nd->rate);
    if (nd->spatial) {
        /* SpatialDropout1D: one draw per (sample, channel), kept for every step */
        size_t C = (size_t)nd->shape[nd->rank - 1], T = nd->size / C;
        for (size_t s = 0; s < b; s++)
            for (size_t c = 0; c < C; c++) {
                float k = ddts_rng_uniform(&m->drop_rng) >= nd->rate ? keep : 0.0f;
                for (size_t t = 0; t < T; t++)
                    nd->aux[(s * T + t) * C + c] = k;
            }
        for (size_t i = 0; i < n; i++)
            nd->y[i] = a->y[i] * nd->aux[i];
        return;
    }
    for (size_t i = 0; i < n; i++) {
        nd->aux[i] = ddts_rng_uniform(&m->drop_rng) >= nd->rate ? keep : 0.0f;
        nd->y[i] = a->y[i] * nd->aux[i];
    }
}

static void dropout_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    int acc;
    float *dx = dx_of(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    size_t n = b * nd->size;
    int masked = m->training && nd->rate > 0;
    for (size_t i = 0; i < n; i++) {
        float g = masked ? nd->dy[i] * nd->aux[i] : nd->dy[i];
        dx[i] = acc ? dx[i] + g : g;
    }
}

/* ---- BatchNormalization over the last axis ---- */
struct bn_w {
    const float *gamma, *beta;
    float *mm, *mv, *dgamma, *dbeta;
    int train_gb;
};

static void bn_weights(struct ddts_model *m, const struct nn_node *nd, struct bn_w *o)
{
    int s = nd->w0;
    memset(o, 0, sizeof *o);
    if (nd->scale) {
        o->gamma = wdata(m, s);
        o->dgamma = gdata(m, s);
        o->train_gb = m->w[s].trainable;
        s++;
    }
    if (nd->center) {
        o->beta = wdata(m, s);
        o->dbeta = gdata(m, s);
        o->train_gb = m->w[s].trainable;
        s++;
    }
    o->mm = m->params + m->w[s].off;
    o->mv = m->params + m->w[s + 1].off;
}

/* Keras: a BatchNormalization layer with trainable=False runs in inference mode. */
static int bn_training(const struct ddts_model *m, const struct nn_node *nd)
{
    return m->training && nd->trainable;
}

static void bn_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t C = (size_t)nd->shape[nd->rank - 1], R = b * (nd->size / C);
    struct bn_w w;
    bn_weights(m, nd, &w);
    float *mean = nd->aux2, *inv = nd->aux2 + C;
    if (bn_training(m, nd)) {
        double *s1 = m->tmp, *s2 = m->tmp + C;
        for (size_t c = 0; c < C; c++)
            s1[c] = s2[c] = 0;
        for (size_t r = 0; r < R; r++) {
            const float *x = a->y + r * C;
            for (size_t c = 0; c < C; c++)
                s1[c] += x[c];
        }
        for (size_t c = 0; c < C; c++)
            s1[c] /= (double)R;
        for (size_t r = 0; r < R; r++) {
            const float *x = a->y + r * C;
            for (size_t c = 0; c < C; c++) {
                double d = x[c] - s1[c];
                s2[c] += d * d;
            }
        }
        for (size_t c = 0; c < C; c++) {
            double var = s2[c] / (double)R;
            mean[c] = (float)s1[c];
            inv[c] = (float)(1.0 / sqrt(var + nd->eps));
            /* Keras 2 (TF's fused kernel) feeds the moving variance with the
             * unbiased batch variance; Keras 3 with the biased one. */
            double var_m = (!m->keras3 && R > 1) ? var * (double)R / (double)(R - 1) : var;
            w.mm[c] = (float)(w.mm[c] * nd->momentum + s1[c] * (1.0 - nd->momentum));
            w.mv[c] = (float)(w.mv[c] * nd->momentum + var_m * (1.0 - nd->momentum));
        }
    } else {
        for (size_t c = 0; c < C; c++) {
            mean[c] = w.mm[c];
            inv[c] = (float)(1.0 / sqrt((double)w.mv[c] + nd->eps));
        }
    }
#pragma omp parallel for num_threads(m->threads) schedule(static) if (R * C > 65536)
    for (long r = 0; r < (long)R; r++) {
        const float *x = a->y + (size_t)r * C;
        float *xh = nd->aux + (size_t)r * C, *z = nd->z + (size_t)r * C;
        for (size_t c = 0; c < C; c++) {
            xh[c] = (x[c] - mean[c]) * inv[c];
            z[c] = xh[c] * (w.gamma ? w.gamma[c] : 1.0f) + (w.beta ? w.beta[c] : 0.0f);
        }
    }
}

static void bn_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t C = (size_t)nd->shape[nd->rank - 1], R = b * (nd->size / C);
    struct bn_w w;
    bn_weights(m, nd, &w);
    const float *inv = nd->aux2 + C;
    double *sdy = m->tmp, *sdyx = m->tmp + C;
    for (size_t c = 0; c < C; c++)
        sdy[c] = sdyx[c] = 0;
    for (size_t r = 0; r < R; r++) {
        const float *dz = nd->dz + r * C, *xh = nd->aux + r * C;
        for (size_t c = 0; c < C; c++) {
            sdy[c] += dz[c];
            sdyx[c] += (double)dz[c] * xh[c];
        }
    }
    if (w.train_gb) {
        for (size_t c = 0; c < C; c++) {
            if (w.dgamma)
                w.dgamma[c] = (float)sdyx[c];
            if (w.dbeta)
                w.dbeta[c] = (float)sdy[c];
        }
    }
    int acc;
    float *dx = dx_of(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    int train = bn_training(m, nd);
#pragma omp parallel for num_threads(m->threads) schedule(static) if (R * C > 65536)
    for (long r = 0; r < (long)R; r++) {
        const float *dz = nd->dz + (size_t)r * C, *xh = nd->aux + (size_t)r * C;
        float *d = dx + (size_t)r * C;
        for (size_t c = 0; c < C; c++) {
            float g = w.gamma ? w.gamma[c] : 1.0f;
            float v;
            if (train) /* dx = g inv / R (R dy - sum dy - xhat sum(dy xhat)) */
                v = g * inv[c] * (float)(dz[c] - sdy[c] / (double)R - xh[c] * sdyx[c] / (double)R);
            else
                v = g * inv[c] * dz[c];
            d[c] = acc ? d[c] + v : v;
        }
    }
}

/* ---- Embedding: y (R, D) = E[x (R)]; indices outside [0, V) give zeros ---- */
static void embedding_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    const float *E = wdata(m, nd->w0);
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
        float *dE = gdata(m, nd->w0);
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
    float *dx = dx_of(m, nd, 0, &acc);
    if (dx && !acc) /* indices have no gradient */
        memset(dx, 0, R * sizeof *dx);
}

/* ---- LayerNormalization over the last axis, per row ---- */
static void layernorm(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t C = (size_t)nd->shape[nd->rank - 1], R = b * (nd->size / C);
    int s = nd->w0;
    const float *gamma = nd->scale ? wdata(m, s) : NULL;
    float *dgamma = nd->scale ? gdata(m, s) : NULL;
    int train = nd->n_w > 0 && m->w[nd->w0].trainable;
    if (nd->scale)
        s++;
    const float *beta = nd->center ? wdata(m, s) : NULL;
    float *dbeta = nd->center ? gdata(m, s) : NULL;
    float *xh = nd->aux, *inv = nd->aux2;
    if (!backward) {
        for (size_t r = 0; r < R; r++) {
            const float *x = a->y + r * C;
            double mu = 0, var = 0;
            for (size_t c = 0; c < C; c++)
                mu += x[c];
            mu /= (double)C;
            for (size_t c = 0; c < C; c++)
                var += (x[c] - mu) * (x[c] - mu);
            var /= (double)C;
            inv[r] = (float)(1.0 / sqrt(var + nd->eps));
            for (size_t c = 0; c < C; c++) {
                float h = (float)(x[c] - mu) * inv[r];
                xh[r * C + c] = h;
                nd->z[r * C + c] = h * (gamma ? gamma[c] : 1.0f) + (beta ? beta[c] : 0.0f);
            }
        }
        return;
    }
    if (train) {
        double *sg = m->tmp, *sb = m->tmp + C;
        for (size_t c = 0; c < C; c++)
            sg[c] = sb[c] = 0;
        for (size_t r = 0; r < R; r++)
            for (size_t c = 0; c < C; c++) {
                sg[c] += (double)nd->dz[r * C + c] * xh[r * C + c];
                sb[c] += nd->dz[r * C + c];
            }
        for (size_t c = 0; c < C; c++) {
            if (dgamma)
                dgamma[c] = (float)sg[c];
            if (dbeta)
                dbeta[c] = (float)sb[c];
        }
    }
    int acc;
    float *dx = dx_of(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    for (size_t r = 0; r < R; r++) {
        /* dx = inv / C (C dxh - sum dxh - xhat sum(dxh xhat)), dxh = dz gamma */
        double s1 = 0, s2 = 0;
        for (size_t c = 0; c < C; c++) {
            double d = (double)nd->dz[r * C + c] * (gamma ? gamma[c] : 1.0f);
            s1 += d;
            s2 += d * xh[r * C + c];
        }
        for (size_t c = 0; c < C; c++) {
            double d = (double)nd->dz[r * C + c] * (gamma ? gamma[c] : 1.0f);
            float v = (float)(inv[r] * (d - s1 / (double)C - xh[r * C + c] * s2 / (double)C));
            dx[r * C + c] = acc ? dx[r * C + c] + v : v;
        }
    }
}

/* ---- Shape plumbing ---- */
static void upsample(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    int H = (int)nn_h(a), W = (int)nn_w(a), C = (int)nn_c(a);
    int OH = (int)nn_h(nd), OW = (int)nn_w(nd);
    int acc = 0;
    float *dx = backward ? dx_of(m, nd, 0, &acc) : NULL;
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
    float *dx = backward ? dx_of(m, nd, 0, &acc) : NULL;
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
                put(dx + i, nd->dy + o, len, 1);
            else
                memcpy(nd->y + o, a->y + i, len * sizeof *nd->y);
        }
}

static void merge_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t n = b * nd->size;
    const float *x0 = m->nodes[nd->in[0]].y;
    memcpy(nd->z, x0, n * sizeof *nd->z);
    for (int t = 1; t < nd->n_in; t++) {
        const float *x = m->nodes[nd->in[t]].y;
        for (size_t i = 0; i < n; i++) {
            if (nd->kind == NN_MULTIPLY)
                nd->z[i] *= x[i];
            else if (nd->kind == NN_SUBTRACT)
                nd->z[i] -= x[i];
            else
                nd->z[i] += x[i];
        }
    }
    if (nd->kind == NN_AVERAGE) {
        float inv = 1.0f / (float)nd->n_in;
        for (size_t i = 0; i < n; i++)
            nd->z[i] *= inv;
    }
}

static void merge_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t n = b * nd->size;
    for (int t = 0; t < nd->n_in; t++) {
        int acc;
        float *dx = dx_of(m, nd, t, &acc);
        if (dx == NULL)
            continue;
        for (size_t i = 0; i < n; i++) {
            float g = nd->dz[i];
            if (nd->kind == NN_AVERAGE) {
                g /= (float)nd->n_in;
            } else if (nd->kind == NN_SUBTRACT && t == 1) {
                g = -g;
            } else if (nd->kind == NN_MULTIPLY) {
                for (int u = 0; u < nd->n_in; u++)
                    if (u != t)
                        g *= m->nodes[nd->in[u]].y[i];
            }
            dx[i] = acc ? dx[i] + g : g;
        }
    }
}

static void concat(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    size_t outer = b, inner_out = 1;
    for (int q = 0; q < nd->axis; q++)
        outer *= (size_t)nd->shape[q];
    for (int q = nd->axis; q < nd->rank; q++)
        inner_out *= (size_t)nd->shape[q];
    size_t off = 0;
    for (int t = 0; t < nd->n_in; t++) {
        const struct nn_node *a = &m->nodes[nd->in[t]];
        size_t inner = a->size / (nd->size / inner_out);
        int acc = 0;
        float *dx = backward ? dx_of(m, nd, t, &acc) : NULL;
        if (!backward || dx != NULL)
            for (size_t o = 0; o < outer; o++) {
                if (backward)
                    put(dx + o * inner, nd->dz + o * inner_out + off, inner, acc);
                else
                    memcpy(nd->z + o * inner_out + off, a->y + o * inner, inner * sizeof(float));
            }
        off += inner;
    }
}

/* Normalization: y = (x - mean) / max(sqrt(variance), 1e-7) over the last axis. */
static void normalization(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t C = (size_t)nd->shape[nd->rank - 1], R = b * (nd->size / C);
    const float *mean = wdata(m, nd->w0), *var = wdata(m, nd->w0 + 1);
    int acc = 0;
    float *dx = backward ? dx_of(m, nd, 0, &acc) : NULL;
    if (backward && dx == NULL)
        return;
    for (size_t r = 0; r < R; r++)
        for (size_t c = 0; c < C; c++) {
            float sd = sqrtf(var[c]);
            float den = sd > 1e-7f ? sd : 1e-7f;
            size_t i = r * C + c;
            if (backward)
                dx[i] = (acc ? dx[i] : 0) + nd->dz[i] / den;
            else
                nd->z[i] = (a->y[i] - mean[c]) / den;
        }
}

void ddts__nn_forward(struct ddts_model *m, size_t b)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        const struct nn_node *a = nd->n_in > 0 ? &m->nodes[nd->in[0]] : NULL;
        size_t rows_k = (size_t)(nd->rank > 0 ? nd->shape[nd->rank - 1] : 1);
        nd->act_done = 0;
        if (a == NULL && nd->kind != NN_INPUT)
            continue; /* unreachable: the graph builder gives every other kind an input */
        switch (nd->kind) {
        case NN_INPUT:
        case NN_FLATTEN:
        case NN_RESHAPE:
            continue; /* data already in place / aliased */
        case NN_DENSE:
            dense_forward(m, nd, b);
            break;
        case NN_CONV2D:
            conv_forward(m, nd, b);
            break;
        case NN_CONV2DT:
            convt_forward(m, nd, b);
            break;
        case NN_MAXPOOL:
            if (!nd->in_conv)
                maxpool_forward(m, nd, b);
            break;
        case NN_AVGPOOL:
            avgpool(m, nd, b, 0);
            break;
        case NN_GAP:
        case NN_GMP:
            global_pool_forward(m, nd, b);
            break;
        case NN_DROPOUT:
            dropout_forward(m, nd, b);
            break;
        case NN_ACTIVATION:
            break; /* z aliases the input */
        case NN_BATCHNORM:
            bn_forward(m, nd, b);
            break;
        case NN_UPSAMPLE:
            upsample(m, nd, b, 0);
            break;
        case NN_ZEROPAD:
            zeropad(m, nd, b, 0);
            break;
        case NN_ADD:
        case NN_AVERAGE:
        case NN_SUBTRACT:
        case NN_MULTIPLY:
            merge_forward(m, nd, b);
            break;
        case NN_CONCAT:
            concat(m, nd, b, 0);
            break;
        case NN_NORMALIZATION:
            normalization(m, nd, b, 0);
            break;
        case NN_EMBEDDING:
            embedding_forward(m, nd, b);
            break;
        case NN_LAYERNORM:
            layernorm(m, nd, b, 0);
            break;
        case NN_RNN:
            ddts__nn_rnn_forward(m, nd, b);
            break;
        case NN_MASKING:
        case NN_REPEAT:
            ddts__nn_seq_forward(m, nd, b);
            break;
        case NN_RESCALING: {
            size_t n = b * nd->size;
            for (size_t t = 0; t < n; t++)
                nd->z[t] = a->y[t] * nd->r_scale + nd->r_off;
            break;
        }
        }
        if (nd->act.kind != ACT_LINEAR && !nd->act_done)
            ddts__nn_act_forward(&nd->act, b * nd->size / rows_k, rows_k, nd->z, nd->y, m->threads);
    }
}

void ddts__nn_backward(struct ddts_model *m, size_t b)
{
    for (size_t i = 0; i < m->n_nodes; i++) {
        struct nn_node *nd = &m->nodes[i];
        if (nd->needs_grad && nd->n_consumers > 1)
            memset(nd->dy, 0, b * nd->size * sizeof *nd->dy);
    }
    for (size_t ii = m->n_nodes; ii-- > 0;) {
        struct nn_node *nd = &m->nodes[ii];
        if (!nd->needs_grad || nd->kind == NN_INPUT)
            continue;
        size_t rows_k = (size_t)(nd->rank > 0 ? nd->shape[nd->rank - 1] : 1);
        int fused_here = m->fused && (int)ii == m->output_node;
        if (nd->act.kind != ACT_LINEAR && !fused_here && !nd->skip_act_bwd)
            ddts__nn_act_backward(&nd->act, b * nd->size / rows_k, rows_k, nd->z, nd->y, nd->dy,
                                  nd->dz, m->threads);
        int acc;
        float *dx;
        switch (nd->kind) {
        case NN_INPUT:
            break;
        case NN_DENSE:
            dense_backward(m, nd, b);
            break;
        case NN_CONV2D:
            conv_backward(m, nd, b);
            break;
        case NN_CONV2DT:
            convt_backward(m, nd, b);
            break;
        case NN_MAXPOOL:
        case NN_GMP:
            if (!nd->in_conv)
                argmax_backward(m, nd, b);
            break;
        case NN_AVGPOOL:
            avgpool(m, nd, b, 1);
            break;
        case NN_GAP:
            gap_backward(m, nd, b);
            break;
        case NN_DROPOUT:
            dropout_backward(m, nd, b);
            break;
        case NN_FLATTEN:
        case NN_RESHAPE:
        case NN_ACTIVATION:
            dx = dx_of(m, nd, 0, &acc);
            if (dx)
                put(dx, nd->dz, b * nd->size, acc);
            break;
        case NN_BATCHNORM:
            bn_backward(m, nd, b);
            break;
        case NN_UPSAMPLE:
            upsample(m, nd, b, 1);
            break;
        case NN_ZEROPAD:
            zeropad(m, nd, b, 1);
            break;
        case NN_ADD:
        case NN_AVERAGE:
        case NN_SUBTRACT:
        case NN_MULTIPLY:
            merge_backward(m, nd, b);
            break;
        case NN_CONCAT:
            concat(m, nd, b, 1);
            break;
        case NN_NORMALIZATION:
            normalization(m, nd, b, 1);
            break;
        case NN_EMBEDDING:
            embedding_backward(m, nd, b);
            break;
        case NN_LAYERNORM:
            layernorm(m, nd, b, 1);
            break;
        case NN_RNN:
            ddts__nn_rnn_backward(m, nd, b);
            break;
        case NN_MASKING:
        case NN_REPEAT:
            ddts__nn_seq_backward(m, nd, b);
            break;
        case NN_RESCALING:
            dx = dx_of(m, nd, 0, &acc);
            if (dx)
                for (size_t t = 0; t < b * nd->size; t++)
                    dx[t] = (acc ? dx[t] : 0) + nd->dz[t] * nd->r_scale;
            break;
        }
    }
}
