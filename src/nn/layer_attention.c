/*
 * The attention family: MultiHeadAttention over (T, D) sequences, as Keras
 * defines it (keras.layers.MultiHeadAttention, attention over axis 1).
 *
 *   inputs   query (T, Dq), value (S, Dv), key (S, Dk) (key = value when absent)
 *   weights  query kernel (Dq, H, dk), bias (H, dk); key kernel (Dk, H, dk), bias;
 *            value kernel (Dv, H, dv), bias (H, dv); output kernel (H, dv, Do),
 *            bias (Do); Do = output_shape, or Dq when null
 *   forward  Q = (xq Wq + bq) / sqrt(dk), K = xk Wk + bk, V = xv Wv + bv
 *            P[h] = softmax over s of Q[h] K[h]^T      (T, S) per head
 *            O[h] = P[h] V[h]                            (T, dv)
 *            z = O (T, H dv) Wo (H dv, Do) + bo
 *
 * Projections are one GEMM each over the batch; scores and the weighted sums
 * are GEMMs per (sample, head) on strided views (row stride H dk), threads
 * over (sample, head); the softmax is fused in the score rows (max
 * subtracted, exp and sum in one pass). Q, K, V, P and O are planned buffers
 * (aux) kept for the backward pass; its gradients use a second one (aux2).
 * Supported: self- and cross-attention, `attention_axes` null or [1] on
 * (T, D) inputs, use_bias, output_shape an integer, masks (the inputs'
 * masks, use_causal_mask, an attention_mask input: see "masks" below) and
 * the attention dropout on P in training (PD = P * mask (Keras 3) * dropout
 * mask is what O is made of).
 *
 * Attention (Luong, dot) and the additive scores of AdditiveAttention
 * (Bahdanau) and Attention(score_mode="concat") over [query (T, D), value
 * (S, E)(, key (S, D))]:
 *
 *   dot       scores = q k^T, times scale () with use_scale
 *   additive  scores[t, s] = c sum_d w_d tanh(a (q[t, d] + k[s, d]))
 *             AdditiveAttention: w = scale (D) (use_scale, else 1), a = c = 1
 *             Attention concat:  a = scale () (use_scale, else 1), w = 1,
 *                                c = concat_score_weight ()
 *   then      z = softmax over s (scores (masked)) v, row t times the
 *             query's mask; in training the probabilities times a dropout
 *             mask (dropout > 0), as MultiHeadAttention
 */
#include <math.h>
#include <string.h>

#include "nn/layer.h"
#include "tensor/tensor.h"

static const char *mha_names(const struct nn_weight_flags *f, size_t index)
{
    static const char *const all[] = {"kernel", "bias", "kernel", "bias",
                                      "kernel", "bias", "kernel", "bias"};
    static const char *const nb[] = {"kernel", "kernel", "kernel", "kernel"};
    if (f->use_bias)
        return index < 8 ? all[index] : NULL;
    return index < 4 ? nb[index] : NULL;
}

static enum ddts_status mha_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st;
    if (ddts__nn_cfg_int(p, "num_heads", 1, 1 << 16, 0, &nd->heads) != 0)
        return ddts__nn_bad(p, "num_heads must be a positive integer");
    if (ddts__nn_cfg_int(p, "key_dim", 1, 1 << 20, 0, &nd->key_dim) != 0)
        return ddts__nn_bad(p, "key_dim must be a positive integer");
    if (ddts__nn_cfg_int(p, "value_dim", 1, 1 << 20, nd->key_dim, &nd->value_dim) != 0)
        return ddts__nn_bad(p, "value_dim must be a positive integer");
    nd->units = 0;
    if (ddts__nn_cfg_has(p, "output_shape") &&
        ddts__nn_cfg_int(p, "output_shape", 1, 1 << 24, 0, &nd->units) != 0) {
        int64_t os[2];
        if (ddts__nn_cfg_int_list(p, "output_shape", 2, os) != 1 || os[0] < 1 || os[0] > (1 << 24))
            return ddts__nn_unsup(p, "output_shape other than an integer");
        nd->units = (int)os[0];
    }
    int64_t ax[DDTS_MAX_RANK];
    if (ddts__nn_cfg_has(p, "attention_axes")) {
        int n = ddts__nn_cfg_int_list(p, "attention_axes", DDTS_MAX_RANK, ax);
        if (n < 0) {
            int one;
            if (ddts__nn_cfg_int(p, "attention_axes", 1, 1, 1, &one) != 0)
                return ddts__nn_unsup(p, "attention_axes other than [1]");
        } else if (n != 1 || ax[0] != 1) {
            return ddts__nn_unsup(p, "attention_axes other than [1]");
        }
    }
    nd->use_bias = ddts__nn_cfg_bool(p, "use_bias", 1);
    if (nd->n_in - nd->attn_mask > 3)
        return ddts__nn_bad(p, "takes query, value and key (and an attention_mask)");
    if (ddts__nn_cfg_float(p, "dropout", 0, 1, 0, &nd->rate) != 0 || nd->rate >= 1)
        return ddts__nn_bad(p, "dropout must be in [0, 1)");
    static const char *const nulls[] = {"activity_regularizer", "kernel_constraint",
                                        "bias_constraint"};
    for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
        if ((st = ddts__nn_cfg_null(p, nulls[i])) != DDTS_OK)
            return st;
    return DDTS_OK;
}

/* Query, value and key inputs: the first n_in - attn_mask inputs (a
 * MultiHeadAttention's attention_mask is the last). */
static int n_qvk(const struct nn_node *nd)
{
    return nd->n_in - nd->attn_mask;
}
static const struct nn_node *in_q(const struct ddts_model *m, const struct nn_node *nd)
{
    return &m->nodes[nd->in[0]];
}
static const struct nn_node *in_v(const struct ddts_model *m, const struct nn_node *nd)
{
    return &m->nodes[nd->in[n_qvk(nd) > 1 ? 1 : 0]];
}
static const struct nn_node *in_k(const struct ddts_model *m, const struct nn_node *nd)
{
    int n = n_qvk(nd);
    return &m->nodes[nd->in[n > 2 ? 2 : n > 1 ? 1 : 0]];
}

/* ---- masks: what Keras adds to the scores before the softmax ----
 *
 * A score (t, s) is kept (M = 1) when the attention_mask (MultiHeadAttention)
 * is non-zero there, the query's mask keeps step t (MultiHeadAttention: its
 * query_mask; Attention and AdditiveAttention instead zero output row t), the
 * value's and (MultiHeadAttention) key's masks keep step s, and, with
 * use_causal_mask, s <= t. A masked score gets -1e9 added in float32 before
 * the softmax (Keras' Softmax with a mask adds (1 - mask) * -1e9; Attention's
 * _apply_scores subtracts 1e9 * padding), so its probability is 0 and a row
 * with every score masked comes out uniform, as in TensorFlow; Keras 3's
 * Softmax layer (MultiHeadAttention) then multiplies the probabilities by
 * the mask, which zeros such a row. Masks are (b, T, S) floats in planned
 * scratch, with the (b, T) query and (b, S) value and key masks. */
struct attn_masks {
    int on; /* 0: no mask (the regions are not planned) */
    float *M, *qm, *vm, *km;
    /* Attention, AdditiveAttention with dropout > 0: the probabilities the
     * output is made of, PD = P * DM, and the dropout mask DM (b, T, S) */
    int drop;
    float *PD, *DM;
};

static int has_mask(const struct nn_node *nd)
{
    return nd->causal || nd->attn_mask || nd->mask_src || nd->vmask_src || nd->kmask_src;
}

/* Floats per sample of the masks of a node with T query and S value steps. */
static size_t mask_floats(const struct nn_node *nd, size_t T, size_t S)
{
    return has_mask(nd) ? T * S + T + 2 * S : 0;
}

/* The masks' regions in a block of `cap` samples at base. */
static void mask_bufs(const struct nn_node *nd, float *base, size_t cap, size_t T, size_t S,
                      struct attn_masks *k)
{
    k->on = has_mask(nd);
    k->M = base;
    k->qm = base + cap * T * S;
    k->vm = k->qm + cap * T;
    k->km = k->vm + cap * S;
}

static void step_mask(const struct ddts_model *m, int src, size_t b, size_t n, float *out)
{
    if (src)
        ddts__nn_mask_of(m, src, b, out);
    else
        for (size_t i = 0; i < b * n; i++)
            out[i] = 1.0f;
}

/* Fills k for b samples; with_q: the query's mask enters the scores. */
static void mask_build(const struct ddts_model *m, const struct nn_node *nd, size_t b, size_t T,
                       size_t S, int with_q, const struct attn_masks *k)
{
    step_mask(m, nd->mask_src, b, T, k->qm);
    step_mask(m, nd->vmask_src, b, S, k->vm);
    step_mask(m, nd->kind == NN_MHA ? nd->kmask_src : 0, b, S, k->km);
    const float *am = nd->attn_mask ? m->nodes[nd->in[nd->n_in - 1]].y : NULL;
    for (size_t n = 0; n < b; n++)
        for (size_t t = 0; t < T; t++) {
            float q = with_q ? k->qm[n * T + t] : 1.0f;
            float *row = k->M + (n * T + t) * S;
            const float *a = am != NULL ? am + (n * T + t) * S : NULL;
            for (size_t s = 0; s < S; s++) {
                int keep = q != 0.0f && k->vm[n * S + s] != 0.0f && k->km[n * S + s] != 0.0f &&
                           (!nd->causal || s <= t) && (a == NULL || a[s] != 0.0f);
                row[s] = keep ? 1.0f : 0.0f;
            }
        }
}

/* scores (T, S) += -1e9 where M (T, S) is 0, in float32 as Keras does. */
static void mask_scores(float *P, const float *M, size_t T, size_t S)
{
    for (size_t i = 0; i < T * S; i++)
        if (M[i] == 0.0f)
            P[i] += -1e9f;
}

static enum ddts_status mha_shape(struct ddts_model *m, struct nn_node *nd, struct ddts_error *err)
{
    const struct nn_node *q = in_q(m, nd), *v = in_v(m, nd), *k = in_k(m, nd);
    if (q->rank != 2 || v->rank != 2 || k->rank != 2)
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "layer '%s' (%s): only (T, D) query, value and key inputs are "
                              "supported",
                              nd->name, nd->class_name);
    if (k->shape[0] != v->shape[0])
        return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' (%s): key has %lld steps, value %lld",
                              nd->name, nd->class_name, (long long)k->shape[0],
                              (long long)v->shape[0]);
    const struct nn_node *am = nd->attn_mask ? &m->nodes[nd->in[nd->n_in - 1]] : NULL;
    if (am != NULL && (am->rank != 2 || am->shape[0] != q->shape[0] || am->shape[1] != v->shape[0]))
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "layer '%s' (%s): attention_mask must be (T, S) = (%lld, %lld) per "
                              "sample (other shapes, broadcast by Keras, are not supported)",
                              nd->name, nd->class_name, (long long)q->shape[0],
                              (long long)v->shape[0]);
    if (nd->units == 0)
        nd->units = (int)q->shape[1];
    nd->rank = 2;
    nd->shape[0] = q->shape[0];
    nd->shape[1] = nd->units;
    return DDTS_OK;
}

static enum ddts_status mha_weights(struct nn_parse *p, struct nn_node *nd)
{
    const struct ddts_model *m = p->m;
    int64_t H = nd->heads, dk = nd->key_dim, dv = nd->value_dim;
    int64_t shp[4][3] = {{in_q(m, nd)->shape[1], H, dk},
                         {in_k(m, nd)->shape[1], H, dk},
                         {in_v(m, nd)->shape[1], H, dv},
                         {H, dv, nd->units}};
    int64_t bs[4][2] = {{H, dk}, {H, dk}, {H, dv}, {nd->units, 0}};
    /* tf.keras 2.x names the weights after MHA's EinsumDense sublayers
     * ("query/kernel:0", ...): what a new .h5 gets (a .keras file keeps
     * them in the sub_groups below, by position). */
    static const char *const names[4][2] = {{"query/kernel", "query/bias"},
                                            {"key/kernel", "key/bias"},
                                            {"value/kernel", "value/bias"},
                                            {"attention_output/kernel", "attention_output/bias"}};
    enum ddts_status st = DDTS_OK;
    for (int i = 0; i < 4 && st == DDTS_OK; i++) {
        st = ddts__nn_cfg_weight(p, names[i][0], 3, shp[i], 1, "kernel_initializer",
                                 ddts__nn_init_glorot, "kernel_regularizer");
        if (st == DDTS_OK && nd->use_bias)
            st = ddts__nn_cfg_weight(p, names[i][1], i < 3 ? 2 : 1, bs[i], 1, "bias_initializer",
                                     ddts__nn_init_zeros, "bias_regularizer");
    }
    return st;
}

/* Per-sample sizes of the kept buffers (floats). */
struct mha_dims {
    size_t T, S, H, dk, dv, Dq, Dk, Dv, Do;
    size_t q, k, v, p, o; /* offsets in a sample's aux block */
    size_t pd, dm, mk;    /* probabilities used, dropout mask, masks (0: none) */
    size_t per;           /* floats per sample */
};

/* Keras 3's Softmax multiplies its output by the mask. */
static int mask_times_p(const struct ddts_model *m, const struct nn_node *nd)
{
    return m->keras3 && has_mask(nd);
}

static void mha_dims(const struct ddts_model *m, const struct nn_node *nd, struct mha_dims *d)
{
    d->T = (size_t)in_q(m, nd)->shape[0];
    d->S = (size_t)in_v(m, nd)->shape[0];
    d->H = (size_t)nd->heads;
    d->dk = (size_t)nd->key_dim;
    d->dv = (size_t)nd->value_dim;
    d->Dq = (size_t)in_q(m, nd)->shape[1];
    d->Dk = (size_t)in_k(m, nd)->shape[1];
    d->Dv = (size_t)in_v(m, nd)->shape[1];
    d->Do = (size_t)nd->units;
    /* buffers over the whole batch: Q (b T, H dk), K (b S, H dk), V (b S, H dv),
     * P (b H T, S), O (b T, H dv); then, when needed, PD (b H T, S) the
     * probabilities O is made of (masked in Keras 3, dropped out in training),
     * DM (b H T, S) the dropout mask, and the masks; offsets are per-sample
     * multiples */
    size_t hts = d->H * d->T * d->S;
    d->q = 0;
    d->k = d->T * d->H * d->dk;
    d->v = d->k + d->S * d->H * d->dk;
    d->p = d->v + d->S * d->H * d->dv;
    d->o = d->p + hts;
    d->per = d->o + d->T * d->H * d->dv;
    d->pd = d->dm = d->mk = 0;
    if (nd->rate > 0 || mask_times_p(m, nd)) {
        d->pd = d->per;
        d->per += hts;
    }
    if (nd->rate > 0) {
        d->dm = d->per;
        d->per += hts;
    }
    if (has_mask(nd)) {
        d->mk = d->per;
        d->per += mask_floats(nd, d->T, d->S);
    }
}

static void mha_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    struct mha_dims d;
    mha_dims(m, nd, &d);
    size_t rows = cap * (d.T > d.S ? d.T : d.S);
    need->ones_n = rows > need->ones_n ? rows : need->ones_n;
    nd->aux = ddts__nn_plan_buf(cap, d.per, &need->fail);
    if (nd->needs_grad)
        nd->aux2 = ddts__nn_plan_buf(cap, d.per, &need->fail);
}

/* The batch regions of a block laid out as mha_dims says (cap-major). */
struct mha_bufs {
    float *q, *k, *v, *p, *o, *pd, *dm;
    struct attn_masks mk;
};

static void mha_bufs(const struct mha_dims *d, const struct nn_node *nd, float *base, size_t cap,
                     struct mha_bufs *b)
{
    b->q = base;
    b->k = base + cap * d->k;
    b->v = base + cap * d->v;
    b->p = base + cap * d->p;
    b->o = base + cap * d->o;
    b->pd = d->pd ? base + cap * d->pd : NULL;
    b->dm = d->dm ? base + cap * d->dm : NULL;
    mask_bufs(nd, base + cap * d->mk, cap, d->T, d->S, &b->mk);
}

/* Y (rows, n) = X (rows, in) W (in, n) + bias. */
static void project(const struct ddts_model *m, size_t rows, size_t in, size_t n, const float *x,
                    int wslot, const float *bias, float *y)
{
    ddts__tensor_sgemm_par(m->threads, 0, 0, rows, n, in, 1.0f, x, in, ddts__nn_wdata(m, wslot), n,
                           0.0f, y, n);
    if (bias != NULL)
        ddts__nn_add_bias(rows, n, bias, y, m->threads);
}

/* Softmax over each of the T rows of P (T, S), max subtracted. */
static void softmax_rows(float *P, size_t T, size_t S)
{
    for (size_t t = 0; t < T; t++) {
        float *r = P + t * S, mx = r[0];
        for (size_t s = 1; s < S; s++)
            mx = r[s] > mx ? r[s] : mx;
        float sum = 0.0f;
        for (size_t s = 0; s < S; s++)
            sum += (r[s] = expf(r[s] - mx));
        float inv = 1.0f / sum;
        for (size_t s = 0; s < S; s++)
            r[s] *= inv;
    }
}

/* One (sample, head): P = softmax(Q K^T (masked)), then O = PD V with PD =
 * P times the Keras 3 mask and the dropout mask, when there is one. */
static void mha_head(const struct mha_dims *d, const struct mha_bufs *u, int k3, size_t nh)
{
    size_t n = nh / d->H, h = nh % d->H, HK = d->H * d->dk, HV = d->H * d->dv;
    size_t ts = d->T * d->S;
    const float *Q = u->q + n * d->T * HK + h * d->dk, *K = u->k + n * d->S * HK + h * d->dk;
    const float *V = u->v + n * d->S * HV + h * d->dv;
    const float *M = u->mk.M + n * ts;
    float *P = u->p + nh * ts, *O = u->o + n * d->T * HV + h * d->dv;
    ddts__tensor_sgemm(0, 1, d->T, d->S, d->dk, 1.0f, Q, HK, K, HK, 0.0f, P, d->S);
    if (u->mk.on)
        mask_scores(P, M, d->T, d->S);
    softmax_rows(P, d->T, d->S); /* fused, stable softmax over s */
    const float *use = P;
    if (u->pd != NULL) {
        float *PD = u->pd + nh * ts;
        const float *DM = u->dm != NULL ? u->dm + nh * ts : NULL;
        for (size_t i = 0; i < ts; i++)
            PD[i] = P[i] * (k3 ? M[i] : 1.0f) * (DM != NULL ? DM[i] : 1.0f);
        use = PD;
    }
    ddts__tensor_sgemm(0, 0, d->T, d->dv, d->S, 1.0f, use, d->S, V, HV, 0.0f, O, HV);
}

static void mha_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    struct mha_dims d;
    mha_dims(m, nd, &d);
    struct mha_bufs u;
    mha_bufs(&d, nd, nd->aux, m->cap, &u);
    int ub = nd->use_bias, w = nd->w0;
    size_t HK = d.H * d.dk, HV = d.H * d.dv, hts = d.H * d.T * d.S;
    project(m, b * d.T, d.Dq, HK, in_q(m, nd)->y, w, ub ? ddts__nn_wdata(m, w + 1) : NULL, u.q);
    w += 1 + ub;
    project(m, b * d.S, d.Dk, HK, in_k(m, nd)->y, w, ub ? ddts__nn_wdata(m, w + 1) : NULL, u.k);
    w += 1 + ub;
    project(m, b * d.S, d.Dv, HV, in_v(m, nd)->y, w, ub ? ddts__nn_wdata(m, w + 1) : NULL, u.v);
    w += 1 + ub;
    float scale = 1.0f / sqrtf((float)d.dk);
    for (size_t i = 0; i < b * d.T * HK; i++)
        u.q[i] *= scale;
    if (u.mk.on)
        mask_build(m, nd, b, d.T, d.S, 1, &u.mk);
    /* the attention dropout (Keras: its _dropout_layer on the softmax
     * output), training only, one bulk draw as the Dropout layer makes */
    if (u.dm != NULL) {
        if (m->training)
            ddts__nn_dropout_mask(&m->drop_rng, u.dm, b * hts, nd->rate);
        else
            for (size_t i = 0; i < b * hts; i++)
                u.dm[i] = 1.0f;
    }
    int k3 = mask_times_p(m, nd);
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b * d.H > 1)
    for (long nh = 0; nh < (long)(b * d.H); nh++)
        mha_head(&d, &u, k3, (size_t)nh);
    project(m, b * d.T, HV, d.Do, u.o, w, ub ? ddts__nn_wdata(m, w + 1) : NULL, nd->z);
}

/* Weight gradients of a projection Y = X W + b from dY, and dX (+)= dY W^T. */
static void project_back(const struct ddts_model *m, const struct nn_node *nd, size_t rows,
                         size_t in, size_t n, const float *x, int wslot, int ub, const float *dy,
                         float *dx, int acc)
{
    if (m->w[wslot].trainable) {
        ddts__tensor_sgemm_par(m->threads, 1, 0, in, n, rows, 1.0f, x, in, dy, n, 0.0f,
                               ddts__nn_gdata(m, wslot), n);
        if (ub)
            ddts__nn_bias_grad(m, rows, n, dy, ddts__nn_gdata(m, wslot + 1));
    }
    (void)nd;
    if (dx != NULL)
        ddts__tensor_sgemm_par(m->threads, 0, 1, rows, in, n, 1.0f, dy, n, ddts__nn_wdata(m, wslot),
                               n, acc ? 1.0f : 0.0f, dx, in);
}

/* One (sample, head) of the backward pass: dV, dQ, dK from dO (in g.o). */
static void mha_head_back(const struct mha_dims *d, const struct mha_bufs *u,
                          const struct mha_bufs *g, int k3, size_t nh)
{
    size_t n = nh / d->H, h = nh % d->H, HK = d->H * d->dk, HV = d->H * d->dv;
    size_t ts = d->T * d->S;
    size_t oq = n * d->T * HK + h * d->dk, ok = n * d->S * HK + h * d->dk;
    size_t ov = n * d->S * HV + h * d->dv, oo = n * d->T * HV + h * d->dv;
    const float *P = u->p + nh * ts, *use = u->pd != NULL ? u->pd + nh * ts : P;
    float *dP = g->p + nh * ts;
    /* dV = PD^T dO; dPD = dO V^T, then dP = dPD times the masks PD applied */
    ddts__tensor_sgemm(1, 0, d->S, d->dv, d->T, 1.0f, use, d->S, g->o + oo, HV, 0.0f, g->v + ov,
                       HV);
    ddts__tensor_sgemm(0, 1, d->T, d->S, d->dv, 1.0f, g->o + oo, HV, u->v + ov, HV, 0.0f, dP, d->S);
    if (u->pd != NULL) {
        const float *M = k3 ? u->mk.M + n * ts : NULL;
        const float *DM = u->dm != NULL ? u->dm + nh * ts : NULL;
        for (size_t i = 0; i < ts; i++)
            dP[i] *= (M != NULL ? M[i] : 1.0f) * (DM != NULL ? DM[i] : 1.0f);
    }
    for (size_t t = 0; t < d->T; t++) { /* dScore = P (dP - sum_s P dP) */
        const float *pr = P + t * d->S;
        float *r = dP + t * d->S, dot = 0.0f;
        for (size_t s = 0; s < d->S; s++)
            dot += pr[s] * r[s];
        for (size_t s = 0; s < d->S; s++)
            r[s] = pr[s] * (r[s] - dot);
    }
    /* dQ (before the scale) = scale dS K; dK = dS^T Q (Q already scaled) */
    float scale = 1.0f / sqrtf((float)d->dk);
    ddts__tensor_sgemm(0, 0, d->T, d->dk, d->S, scale, dP, d->S, u->k + ok, HK, 0.0f, g->q + oq,
                       HK);
    ddts__tensor_sgemm(1, 0, d->S, d->dk, d->T, 1.0f, dP, d->S, u->q + oq, HK, 0.0f, g->k + ok, HK);
}

static void mha_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    struct mha_dims d;
    mha_dims(m, nd, &d);
    struct mha_bufs u, g;
    mha_bufs(&d, nd, nd->aux, m->cap, &u);
    mha_bufs(&d, nd, nd->aux2, m->cap, &g);
    int ub = nd->use_bias, step = 1 + ub;
    int wq = nd->w0, wk = wq + step, wv = wk + step, wo = wv + step;
    size_t HK = d.H * d.dk, HV = d.H * d.dv;
    /* dO = dz Wo^T; dWo, dbo */
    project_back(m, nd, b * d.T, HV, d.Do, u.o, wo, ub, nd->dz, g.o, 0);
    int k3 = mask_times_p(m, nd);
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b * d.H > 1)
    for (long nh = 0; nh < (long)(b * d.H); nh++)
        mha_head_back(&d, &u, &g, k3, (size_t)nh);
    int n = n_qvk(nd), aq = 0, ak = 1, av = 1, am = 0;
    float *dxq = ddts__nn_dx(m, nd, 0, &aq);
    float *dxv = n > 1 ? ddts__nn_dx(m, nd, 1, &av) : dxq;
    float *dxk = n > 2 ? ddts__nn_dx(m, nd, 2, &ak) : dxv;
    if (n == 1) /* one input for all three: add the second and third */
        av = ak = 1;
    else if (n == 2)
        ak = 1;
    project_back(m, nd, b * d.T, d.Dq, HK, in_q(m, nd)->y, wq, ub, g.q, dxq, aq);
    project_back(m, nd, b * d.S, d.Dv, HV, in_v(m, nd)->y, wv, ub, g.v, dxv, av);
    project_back(m, nd, b * d.S, d.Dk, HK, in_k(m, nd)->y, wk, ub, g.k, dxk, ak);
    /* the attention_mask is read as booleans: no gradient flows to it */
    float *dxm = nd->attn_mask ? ddts__nn_dx(m, nd, nd->n_in - 1, &am) : NULL;
    if (dxm != NULL && !am)
        memset(dxm, 0, b * m->nodes[nd->in[nd->n_in - 1]].size * sizeof *dxm);
}

static const struct nn_layer_ops mha_ops = {
    .class_names = (const char *const[]){"MultiHeadAttention", NULL},
    .kind = NN_MHA,
    .doc = "multi-head scaled dot-product attention over (T, D) query and (S, D) value/key",
    .min_in = 1,
    .max_in = 4, /* query, value, key, attention_mask */
    .weight_name = mha_names,
    .sub_groups =
        (const char *const[]){"query_dense", "key_dense", "value_dense", "output_dense", NULL},
    .parse = mha_parse,
    .infer_shape = mha_shape,
    .add_weights = mha_weights,
    .plan = mha_plan,
    .forward = mha_forward,
    .backward = mha_backward,
};

/* ---- Attention (Luong): z = softmax(q k^T) v, no scaling, no weights ----
 * inputs [query (T, D), value (S, D)] or [query, value, key]; P kept in aux
 * (cap, T, S), its gradient in aux2. */

/* Attention: score_mode dot or concat, use_scale (default false);
 * AdditiveAttention: use_scale (default true). */
static enum ddts_status luong_parse(struct nn_parse *p, struct nn_node *nd)
{
    int additive = strcmp(nd->class_name, "AdditiveAttention") == 0;
    const char *mode = ddts__nn_cfg_str(p, "score_mode");
    nd->score_concat = !additive && mode != NULL && strcmp(mode, "concat") == 0;
    if (!additive && mode != NULL && strcmp(mode, "dot") != 0 && !nd->score_concat)
        return ddts__nn_bad(p, "score_mode must be dot or concat");
    nd->scale = ddts__nn_cfg_bool(p, "use_scale", additive);
    /* tf.keras 2.x before 2.10 kept `causal` in the config (later a call
     * argument, use_causal_mask) */
    nd->causal |= ddts__nn_cfg_bool(p, "causal", 0);
    if (ddts__nn_cfg_float(p, "dropout", 0, 1, 0, &nd->rate) != 0 || nd->rate >= 1)
        return ddts__nn_bad(p, "dropout must be in [0, 1)");
    return DDTS_OK;
}

/* In build()'s order: AdditiveAttention scale (D), glorot_uniform;
 * Attention: scale () (use_scale) then concat_score_weight () (concat), ones. */
static enum ddts_status luong_weights(struct nn_parse *p, struct nn_node *nd)
{
    int64_t d = in_q(p->m, nd)->shape[1];
    enum ddts_status st = DDTS_OK;
    if (strcmp(nd->class_name, "AdditiveAttention") == 0)
        return nd->scale
                   ? ddts__nn_cfg_weight(p, "scale", 1, &d, 1, NULL, ddts__nn_init_glorot, NULL)
                   : DDTS_OK;
    if (nd->scale)
        st = ddts__nn_cfg_weight(p, "scale", 0, &d, 1, NULL, ddts__nn_init_ones, NULL);
    if (st == DDTS_OK && nd->score_concat)
        st =
            ddts__nn_cfg_weight(p, "concat_score_weight", 0, &d, 1, NULL, ddts__nn_init_ones, NULL);
    return st;
}

static enum ddts_status luong_shape(struct ddts_model *m, struct nn_node *nd,
                                    struct ddts_error *err)
{
    const struct nn_node *q = in_q(m, nd), *v = in_v(m, nd), *k = in_k(m, nd);
    if (nd->n_in < 2 || q->rank != 2 || v->rank != 2 || k->rank != 2)
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "layer '%s' (%s): needs [query, value(, key)] of shape (T, D)",
                              nd->name, nd->class_name);
    if (k->shape[0] != v->shape[0] || q->shape[1] != k->shape[1])
        return ddts_error_set(err, DDTS_ESHAPE,
                              "layer '%s' (%s): key must have value's steps and query's features",
                              nd->name, nd->class_name);
    nd->rank = 2;
    nd->shape[0] = q->shape[0];
    nd->shape[1] = v->shape[1];
    return DDTS_OK;
}

/* P (cap, T, S) then the masks (mask_bufs) in aux, P's gradient in aux2;
 * weight gradients are summed per sample in m->tmp (cap, D + 2) doubles; a
 * scaled dot product keeps dS k (cap, T, D) in colbuf for the scale's
 * gradient. */
static void luong_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    size_t T = (size_t)in_q(m, nd)->shape[0], S = (size_t)in_v(m, nd)->shape[0], ts = T * S;
    size_t tn = cap * ((size_t)in_q(m, nd)->shape[1] + 2);
    size_t drop = nd->rate > 0 ? 2 * ts : 0;
    nd->aux = ddts__nn_plan_buf(cap, ts + mask_floats(nd, T, S) + drop, &need->fail);
    if (nd->needs_grad)
        nd->aux2 = ddts__nn_plan_buf(cap, ts, &need->fail);
    if (nd->n_w > 0)
        need->tmp_n = tn > need->tmp_n ? tn : need->tmp_n;
    if (nd->kind == NN_LUONG && !nd->score_concat && nd->scale && nd->needs_grad)
        nd->colbuf = ddts__nn_plan_buf(cap, (size_t)in_q(m, nd)->size, &need->fail);
}

/* The additive score's parameters: weight slots (-1: none) and values. */
struct add_par {
    int sa, sw, sc; /* slots of a (scalar), w (D), c (scalar) */
    float a, c;
    const float *w; /* NULL: all ones */
};

static void add_par(const struct ddts_model *m, const struct nn_node *nd, struct add_par *q)
{
    q->sa = q->sw = q->sc = -1;
    if (strcmp(nd->class_name, "AdditiveAttention") == 0) {
        q->sw = nd->scale ? nd->w0 : -1;
    } else {
        q->sa = nd->scale ? nd->w0 : -1;
        q->sc = nd->w0 + (nd->scale ? 1 : 0);
    }
    q->a = q->sa >= 0 ? ddts__nn_wdata(m, q->sa)[0] : 1.0f;
    q->c = q->sc >= 0 ? ddts__nn_wdata(m, q->sc)[0] : 1.0f;
    q->w = q->sw >= 0 ? ddts__nn_wdata(m, q->sw) : NULL;
}

/* The masks of an Attention or AdditiveAttention node (after P in aux). */
static void luong_masks(const struct ddts_model *m, const struct nn_node *nd, size_t T, size_t S,
                        struct attn_masks *k)
{
    mask_bufs(nd, nd->aux + m->cap * T * S, m->cap, T, S, k);
    k->drop = nd->rate > 0;
    k->PD = nd->aux + m->cap * (T * S + mask_floats(nd, T, S));
    k->DM = k->PD + m->cap * T * S;
}

/* The dropout (Keras: on the softmax output, training only, inverted):
 * a bulk draw from the Dropout layer's RNG and mask routine; ones in
 * inference. */
static void drop_draw(struct ddts_model *m, const struct nn_node *nd, float *DM, size_t n)
{
    if (m->training)
        ddts__nn_dropout_mask(&m->drop_rng, DM, n, nd->rate);
    else
        for (size_t i = 0; i < n; i++)
            DM[i] = 1.0f;
}

/* dP of the output's probabilities -> dP of P (times DM with dropout). */
static void drop_back(const struct attn_masks *k, float *dP, size_t n, size_t ts)
{
    const float *DM = k->DM + n * ts;
    for (size_t i = 0; k->drop && i < ts; i++)
        dP[i] *= DM[i];
}

/* What sample n's output is made of: P, or PD = P * DM with dropout. */
static const float *drop_probs(const struct attn_masks *k, const float *P, size_t n, size_t ts)
{
    if (!k->drop)
        return P;
    float *PD = k->PD + n * ts;
    const float *DM = k->DM + n * ts;
    for (size_t i = 0; i < ts; i++)
        PD[i] = P[i] * DM[i];
    return PD;
}

/* Keras' Attention: the output times the query's mask, row by row:
 * z (T, E) *= qm (T); the same for the output's gradient. */
static void keep_rows(float *z, const float *qm, size_t T, size_t E)
{
    for (size_t t = 0; t < T; t++)
        if (qm[t] == 0.0f)
            memset(z + t * E, 0, E * sizeof *z);
}

static void additive_forward(struct ddts_model *m, struct nn_node *nd, size_t b,
                             const struct attn_masks *mk)
{
    const struct nn_node *q = in_q(m, nd), *v = in_v(m, nd), *k = in_k(m, nd);
    size_t T = (size_t)q->shape[0], S = (size_t)v->shape[0], D = (size_t)q->shape[1];
    size_t E = (size_t)v->shape[1];
    struct add_par pr;
    add_par(m, nd, &pr);
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        float *P = nd->aux + (size_t)n * T * S;
        const float *qy = q->y + (size_t)n * q->size, *ky = k->y + (size_t)n * k->size;
        for (size_t t = 0; t < T; t++)
            for (size_t s = 0; s < S; s++) {
                float acc = 0.0f;
                for (size_t d = 0; d < D; d++)
                    acc += (pr.w ? pr.w[d] : 1.0f) * tanhf(pr.a * (qy[t * D + d] + ky[s * D + d]));
                P[t * S + s] = pr.c * acc;
            }
        if (mk->on)
            mask_scores(P, mk->M + (size_t)n * T * S, T, S);
        softmax_rows(P, T, S);
        ddts__tensor_sgemm(0, 0, T, E, S, 1.0f, drop_probs(mk, P, (size_t)n, T * S), S,
                           v->y + (size_t)n * v->size, E, 0.0f, nd->z + (size_t)n * nd->size, E);
    }
}

/* dS = P (dP - rowsum(P dP)), dP = dz v^T; with th = tanh(a (q + k)) and
 * g = dS c w_d (1 - th^2): dq[t] += a g, dk[s] += a g, dw_d += dS c th,
 * da += g (q + k), dc += dS sum_d w_d th. Weight gradients are summed per
 * sample in m->tmp, then over the samples in order (same bits for any
 * thread count). */
static void additive_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *q = in_q(m, nd), *v = in_v(m, nd), *k = in_k(m, nd);
    size_t T = (size_t)q->shape[0], S = (size_t)v->shape[0], D = (size_t)q->shape[1];
    size_t E = (size_t)v->shape[1], G = D + 2;
    struct add_par pr;
    add_par(m, nd, &pr);
    int aq = 0, av = 0, ak = 1;
    float *dq = ddts__nn_dx(m, nd, 0, &aq);
    float *dv = ddts__nn_dx(m, nd, 1, &av);
    float *dk = nd->n_in > 2 ? ddts__nn_dx(m, nd, 2, &ak) : dv;
    if (nd->n_in == 2)
        ak = 1; /* key = value: its gradient adds to the value's */
    int wgrad = nd->n_w > 0 && m->w[nd->w0].trainable;
    struct attn_masks mk;
    luong_masks(m, nd, T, S, &mk);
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        const float *P = nd->aux + (size_t)n * T * S, *dz = nd->dz + (size_t)n * nd->size;
        const float *use = mk.drop ? mk.PD + (size_t)n * T * S : P;
        float *dP = nd->aux2 + (size_t)n * T * S;
        const float *qy = q->y + (size_t)n * q->size, *ky = k->y + (size_t)n * k->size;
        float *gq = dq ? dq + (size_t)n * q->size : NULL,
              *gk = dk ? dk + (size_t)n * k->size : NULL;
        double *gw = m->tmp + (size_t)n * G; /* dw (D), da, dc */
        ddts__tensor_sgemm(0, 1, T, S, E, 1.0f, dz, E, v->y + (size_t)n * v->size, E, 0.0f, dP, S);
        drop_back(&mk, dP, (size_t)n, T * S);
        for (size_t t = 0; t < T; t++) {
            const float *pt = P + t * S;
            float *r = dP + t * S, dot = 0.0f;
            for (size_t s = 0; s < S; s++)
                dot += pt[s] * r[s];
            for (size_t s = 0; s < S; s++)
                r[s] = pt[s] * (r[s] - dot);
        }
        /* value first, then query and key (inputs shared between the slots
         * accumulate in slot order) */
        if (dv != NULL)
            ddts__tensor_sgemm(1, 0, S, E, T, 1.0f, use, S, dz, E, av ? 1.0f : 0.0f,
                               dv + (size_t)n * v->size, E);
        if (gq != NULL && !aq)
            memset(gq, 0, q->size * sizeof *gq);
        if (gk != NULL && !ak)
            memset(gk, 0, k->size * sizeof *gk);
        if (wgrad)
            memset(gw, 0, G * sizeof *gw);
        for (size_t t = 0; t < T; t++)
            for (size_t s = 0; s < S; s++) {
                float ds = dP[t * S + s], cds = pr.c * ds;
                double sw = 0.0;
                for (size_t d = 0; d < D; d++) {
                    float u = qy[t * D + d] + ky[s * D + d], th = tanhf(pr.a * u);
                    float wd = pr.w ? pr.w[d] : 1.0f;
                    float g = cds * wd * (1.0f - th * th);
                    if (gq != NULL)
                        gq[t * D + d] += pr.a * g;
                    if (gk != NULL)
                        gk[s * D + d] += pr.a * g;
                    if (wgrad) {
                        gw[d] += (double)cds * th;
                        gw[D] += (double)g * u;
                        sw += (double)wd * th;
                    }
                }
                if (wgrad)
                    gw[D + 1] += ds * sw;
            }
    }
    if (!wgrad)
        return;
    double da = 0, dc = 0;
    float *dw = pr.sw >= 0 ? ddts__nn_gdata(m, pr.sw) : NULL;
    for (size_t d = 0; dw != NULL && d < D; d++) {
        double sum = 0;
        for (size_t n = 0; n < b; n++)
            sum += m->tmp[n * G + d];
        dw[d] = (float)sum;
    }
    for (size_t n = 0; n < b; n++) {
        da += m->tmp[n * G + D];
        dc += m->tmp[n * G + D + 1];
    }
    if (pr.sa >= 0)
        ddts__nn_gdata(m, pr.sa)[0] = (float)da;
    if (pr.sc >= 0)
        ddts__nn_gdata(m, pr.sc)[0] = (float)dc;
}

static void luong_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *q = in_q(m, nd), *v = in_v(m, nd), *k = in_k(m, nd);
    size_t T = (size_t)q->shape[0], S = (size_t)v->shape[0], D = (size_t)q->shape[1];
    size_t E = (size_t)v->shape[1];
    struct attn_masks mk;
    luong_masks(m, nd, T, S, &mk);
    if (mk.on)
        mask_build(m, nd, b, T, S, 0, &mk);
    if (mk.drop)
        drop_draw(m, nd, mk.DM, b * T * S);
    if (nd->kind == NN_ADDITIVE || nd->score_concat) {
        additive_forward(m, nd, b, &mk);
    } else {
        float sc = nd->scale ? ddts__nn_wdata(m, nd->w0)[0] : 1.0f; /* use_scale */
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
        for (long n = 0; n < (long)b; n++) {
            float *P = nd->aux + (size_t)n * T * S;
            ddts__tensor_sgemm(0, 1, T, S, D, sc, q->y + (size_t)n * q->size, D,
                               k->y + (size_t)n * k->size, D, 0.0f, P, S);
            if (mk.on)
                mask_scores(P, mk.M + (size_t)n * T * S, T, S);
            softmax_rows(P, T, S); /* fused, stable softmax over s */
            ddts__tensor_sgemm(0, 0, T, E, S, 1.0f, drop_probs(&mk, P, (size_t)n, T * S), S,
                               v->y + (size_t)n * v->size, E, 0.0f, nd->z + (size_t)n * nd->size,
                               E);
        }
    }
    if (mk.on && nd->mask_src)
        for (size_t n = 0; n < b; n++)
            keep_rows(nd->z + n * nd->size, mk.qm + n * T, T, E);
}

static void luong_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t T0 = (size_t)in_q(m, nd)->shape[0], S0 = (size_t)in_v(m, nd)->shape[0];
    struct attn_masks mk;
    luong_masks(m, nd, T0, S0, &mk);
    /* z = qm (P v): the rows the query's mask zeroed pass no gradient (dz is
     * this node's own, read by nothing after its backward) */
    if (mk.on && nd->mask_src)
        for (size_t n = 0; n < b; n++)
            keep_rows(nd->dz + n * nd->size, mk.qm + n * T0, T0, (size_t)nd->shape[1]);
    if (nd->kind == NN_ADDITIVE || nd->score_concat) {
        additive_backward(m, nd, b);
        return;
    }
    const struct nn_node *q = in_q(m, nd), *v = in_v(m, nd), *k = in_k(m, nd);
    size_t T = (size_t)q->shape[0], S = (size_t)v->shape[0], D = (size_t)q->shape[1];
    size_t E = (size_t)v->shape[1];
    int aq = 0, av = 0, ak = 1;
    float *dq = ddts__nn_dx(m, nd, 0, &aq);
    float *dv = ddts__nn_dx(m, nd, 1, &av);
    float *dk = nd->n_in > 2 ? ddts__nn_dx(m, nd, 2, &ak) : dv;
    if (nd->n_in == 2)
        ak = 1; /* key = value: its gradient adds to the value's */
    /* scores = sc q k^T: dq = sc dS k, dk = sc dS^T q, dsc = sum q . (dS k) */
    float sc = nd->scale ? ddts__nn_wdata(m, nd->w0)[0] : 1.0f;
    int wgrad = nd->scale && m->w[nd->w0].trainable;
    /* Each sample writes only its own rows; inputs shared between the
     * slots (self-attention) are written in slot order within a sample. */
#pragma omp parallel for num_threads(m->threads) schedule(static) if (b > 1)
    for (long n = 0; n < (long)b; n++) {
        const float *P = nd->aux + (size_t)n * T * S, *dz = nd->dz + (size_t)n * nd->size;
        float *dP = nd->aux2 + (size_t)n * T * S;
        const float *vy = v->y + (size_t)n * v->size, *ky = k->y + (size_t)n * k->size;
        const float *qy = q->y + (size_t)n * q->size;
        const float *use = mk.drop ? mk.PD + (size_t)n * T * S : P;
        ddts__tensor_sgemm(0, 1, T, S, E, 1.0f, dz, E, vy, E, 0.0f, dP, S);
        drop_back(&mk, dP, (size_t)n, T * S);
        for (size_t t = 0; t < T; t++) {
            const float *pr = P + t * S;
            float *r = dP + t * S, dot = 0.0f;
            for (size_t s = 0; s < S; s++)
                dot += pr[s] * r[s];
            for (size_t s = 0; s < S; s++)
                r[s] = pr[s] * (r[s] - dot);
        }
        if (nd->scale) {
            float *G = nd->colbuf + (size_t)n * q->size, *g = dq ? dq + (size_t)n * q->size : NULL;
            double dsc = 0.0;
            ddts__tensor_sgemm(0, 0, T, D, S, 1.0f, dP, S, ky, D, 0.0f, G, D);
            for (size_t i = 0; i < T * D; i++) {
                dsc += (double)qy[i] * G[i];
                if (g != NULL)
                    g[i] = (aq ? g[i] : 0.0f) + sc * G[i];
            }
            m->tmp[n] = dsc;
        } else if (dq != NULL) {
            ddts__tensor_sgemm(0, 0, T, D, S, 1.0f, dP, S, ky, D, aq ? 1.0f : 0.0f,
                               dq + (size_t)n * q->size, D);
        }
        if (dv != NULL)
            ddts__tensor_sgemm(1, 0, S, E, T, 1.0f, use, S, dz, E, av ? 1.0f : 0.0f,
                               dv + (size_t)n * v->size, E);
        if (dk != NULL)
            ddts__tensor_sgemm(1, 0, S, D, T, sc, dP, S, qy, D, ak ? 1.0f : 0.0f,
                               dk + (size_t)n * k->size, D);
    }
    if (wgrad) { /* over the samples in order: the same bits for any thread count */
        double sum = 0.0;
        for (size_t n = 0; n < b; n++)
            sum += m->tmp[n];
        ddts__nn_gdata(m, nd->w0)[0] = (float)sum;
    }
}

/* .keras variable names (f->scale: use_scale). AdditiveAttention: scale;
 * Attention: scale (use_scale), then concat_score_weight (concat) -- so
 * without use_scale the first is concat_score_weight. */
static const char *additive_names(const struct nn_weight_flags *f, size_t index)
{
    return index == 0 && f->scale ? "scale" : NULL;
}

static const char *luong_names(const struct nn_weight_flags *f, size_t index)
{
    if (f->scale)
        return index == 0 ? "scale" : index == 1 ? "concat_score_weight" : NULL;
    return index == 0 ? "concat_score_weight" : NULL;
}

static const struct nn_layer_ops luong_ops = {
    .class_names = (const char *const[]){"Attention", NULL},
    .kind = NN_LUONG,
    .doc = "attention softmax(scores) v: dot q k^T (times scale with use_scale) or concat",
    .min_in = 2,
    .max_in = 3,
    .weight_name = luong_names,
    .weights_optional = 1, /* none with score_mode dot */
    .parse = luong_parse,
    .infer_shape = luong_shape,
    .add_weights = luong_weights,
    .plan = luong_plan,
    .forward = luong_forward,
    .backward = luong_backward,
};

static const struct nn_layer_ops additive_ops = {
    .class_names = (const char *const[]){"AdditiveAttention", NULL},
    .kind = NN_ADDITIVE,
    .doc = "Bahdanau attention: softmax over s of sum_d scale_d tanh(q_t + k_s), times v",
    .min_in = 2,
    .max_in = 3,
    .weight_name = additive_names,
    .weights_optional = 1, /* none with use_scale false */
    .parse = luong_parse,
    .infer_shape = luong_shape,
    .add_weights = luong_weights,
    .plan = luong_plan,
    .forward = luong_forward,
    .backward = luong_backward,
};

const struct nn_layer_ops *const ddts__nn_family_attention[] = {&mha_ops, &luong_ops, &additive_ops,
                                                                NULL};
