/*
 * The normalization family: BatchNormalization over the last axis,
 * LayerNormalization over the last axis or a trailing block of axes, the preprocessing
 * Normalization layer (a job's normalizer travels in it) and Rescaling. Shapes are unchanged: (...,
 * C) -> (..., C).
 *
 * Weights in Keras' order:
 *   BatchNormalization  gamma (scale), beta (center), moving_mean, moving_variance   (C)
 *   LayerNormalization  gamma (scale), beta (center)        (C), or the block's shape
 *   Normalization       mean, variance (C), count (a scalar)
 */
#include <math.h>
#include <string.h>

#include "nn/layer.h"

/* ---- weight names ---- */

static const char *bn_names(const struct nn_weight_flags *f, size_t index)
{
    /* gamma only with scale, beta only with center. */
    const char *order[4];
    size_t n = 0;
    if (f->scale)
        order[n++] = "gamma";
    if (f->center)
        order[n++] = "beta";
    order[n++] = "moving_mean";
    order[n++] = "moving_variance";
    return index < n ? order[index] : NULL;
}

static const char *ln_names(const struct nn_weight_flags *f, size_t index)
{
    const char *order[2];
    size_t n = 0;
    if (f->scale)
        order[n++] = "gamma";
    if (f->center)
        order[n++] = "beta";
    return index < n ? order[index] : NULL;
}

static const char *normalization_names(const struct nn_weight_flags *f, size_t index)
{
    static const char *const nv[] = {"mean", "variance", "count"};
    (void)f;
    return index < 3 ? nv[index] : NULL;
}

/* ---- config ---- */

static enum ddts_status bn_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st = ddts__nn_cfg_axis_last(p, p->m->nodes[nd->in[0]].rank, 0);
    if (st != DDTS_OK)
        return st;
    if (ddts__nn_cfg_float(p, "momentum", 0, 1, 0.99, &nd->momentum) != 0)
        return ddts__nn_bad(p, "momentum must be a number in [0, 1]");
    if (ddts__nn_cfg_float(p, "epsilon", 0, 1e30, 1e-3, &nd->eps) != 0)
        return ddts__nn_bad(p, "epsilon must be a non-negative number");
    nd->center = ddts__nn_cfg_bool(p, "center", 1);
    nd->scale = ddts__nn_cfg_bool(p, "scale", 1);
    if (ddts__nn_cfg_bool(p, "renorm", 0))
        return ddts__nn_unsup(p, "renorm");
    return DDTS_OK;
}

/* axis: an int or a list (Keras' numbering, batch 0, negatives from the
 * end), default -1. The axes must be a trailing block of the input (sorted:
 * [1, 2] or [-2, -1] over (T, D)); each row of that block is normalized and
 * gamma/beta have the block's shape. */
static enum ddts_status ln_parse(struct nn_parse *p, struct nn_node *nd)
{
    int rank = p->m->nodes[nd->in[0]].rank;
    int64_t ax[DDTS_MAX_RANK + 1];
    int n = 1, one;
    ax[0] = -1;
    if (ddts__nn_cfg_int(p, "axis", -rank, rank, -1, &one) == 0)
        ax[0] = one;
    else if ((n = ddts__nn_cfg_int_list(p, "axis", DDTS_MAX_RANK + 1, ax)) < 1)
        return ddts__nn_bad(p, "axis must be an axis or a list of axes of the input");
    for (int i = 0; i < n; i++) {
        if (ax[i] < -rank || ax[i] > rank || ax[i] == 0)
            return ddts__nn_bad(p, "axis names an axis the input does not have (or the batch)");
        if (ax[i] < 0)
            ax[i] += rank + 1;
        if (ax[i] != rank - n + 1 + i)
            return ddts__nn_unsup(
                p, "an axis list other than a sorted trailing block ([..., -2, -1])");
    }
    nd->norm_axis = rank - n;
    if (ddts__nn_cfg_float(p, "epsilon", 0, 1e30, 1e-3, &nd->eps) != 0)
        return ddts__nn_bad(p, "epsilon must be a non-negative number");
    nd->center = ddts__nn_cfg_bool(p, "center", 1);
    nd->scale = ddts__nn_cfg_bool(p, "scale", 1);
    if (ddts__nn_cfg_bool(p, "rms_scaling", 0))
        return ddts__nn_unsup(p, "rms_scaling");
    return DDTS_OK;
}

static enum ddts_status normalization_parse(struct nn_parse *p, struct nn_node *nd)
{
    enum ddts_status st = ddts__nn_cfg_axis_last(p, p->m->nodes[nd->in[0]].rank, 1);
    if (st == DDTS_OK)
        st = ddts__nn_cfg_null(p, "mean");
    if (st == DDTS_OK)
        st = ddts__nn_cfg_null(p, "variance");
    nd->invert = ddts__nn_cfg_bool(p, "invert", 0);
    return st;
}

static enum ddts_status rescaling_parse(struct nn_parse *p, struct nn_node *nd)
{
    if (!ddts__nn_cfg_is_number(p, "scale"))
        return ddts__nn_unsup(p, "a non-scalar scale");
    if (ddts__nn_cfg_float(p, "scale", -3e38, 3e38, 1, &nd->r_scale) != 0 ||
        ddts__nn_cfg_float(p, "offset", -3e38, 3e38, 0, &nd->r_off) != 0)
        return ddts__nn_bad(p, "scale and offset must be finite numbers");
    return DDTS_OK;
}

/* gamma and beta (with scale and center) of shape (rank) `shape`. */
static enum ddts_status gamma_beta(struct nn_parse *p, struct nn_node *nd, int rank,
                                   const int64_t *shape)
{
    enum ddts_status st = DDTS_OK;
    int center = nd->center;
    if (nd->scale)
        st = ddts__nn_cfg_weight(p, "gamma", rank, shape, 1, "gamma_initializer",
                                 ddts__nn_init_ones, "gamma_regularizer");
    if (st == DDTS_OK && center)
        st = ddts__nn_cfg_weight(p, "beta", rank, shape, 1, "beta_initializer", ddts__nn_init_zeros,
                                 "beta_regularizer");
    return st;
}

static enum ddts_status bn_weights(struct nn_parse *p, struct nn_node *nd)
{
    int64_t c = nd->shape[nd->rank - 1];
    enum ddts_status st = gamma_beta(p, nd, 1, &c);
    if (st == DDTS_OK)
        st = ddts__nn_cfg_weight(p, "moving_mean", 1, &c, 0, "moving_mean_initializer",
                                 ddts__nn_init_zeros, NULL);
    if (st == DDTS_OK)
        st = ddts__nn_cfg_weight(p, "moving_variance", 1, &c, 0, "moving_variance_initializer",
                                 ddts__nn_init_ones, NULL);
    return st;
}

static enum ddts_status ln_weights(struct nn_parse *p, struct nn_node *nd)
{
    return gamma_beta(p, nd, nd->rank - nd->norm_axis, nd->shape + nd->norm_axis);
}

/* The adapted state, non-trainable, in Normalization.build's order: mean,
 * variance (C) and count (a scalar), in tf.keras 2.x and in Keras 3 alike
 * (keras/src/layers/preprocessing/normalization.py keeps count "for
 * backwards compatibility with older saved models"); Keras refuses to load
 * a file whose layer has fewer weights than build() creates. */
static enum ddts_status normalization_weights(struct nn_parse *p, struct nn_node *nd)
{
    int64_t c = nd->shape[nd->rank - 1];
    enum ddts_status st = ddts__nn_cfg_weight(p, "mean", 1, &c, 0, NULL, ddts__nn_init_zeros, NULL);
    if (st == DDTS_OK)
        st = ddts__nn_cfg_weight(p, "variance", 1, &c, 0, NULL, ddts__nn_init_ones, NULL);
    if (st == DDTS_OK)
        st = ddts__nn_cfg_weight(p, "count", 0, &c, 0, NULL, ddts__nn_init_zeros, NULL);
    return st;
}

/* ---- planning ---- */

/* BN: xhat (cap, size); batch mean and inverse std (2 C), then two per-channel
 * scratch rows (the passes' gamma and beta, or g inv); per-channel sums. */
static void bn_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    size_t c = (size_t)nd->shape[nd->rank - 1];
    need->tmp_n = 4 * c > need->tmp_n ? 4 * c : need->tmp_n;
    nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
    nd->aux2 = ddts__nn_plan_buf(4, c, &need->fail);
}

/* Values per LayerNormalization row: the normalized trailing block. */
static size_t ln_row(const struct nn_node *nd)
{
    size_t c = 1;
    for (int d = nd->norm_axis; d < nd->rank; d++)
        c *= (size_t)nd->shape[d];
    return c;
}

/* LN: xhat (cap, size) and 1/std per row. */
static void ln_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    size_t c = ln_row(nd);
    need->tmp_n = 4 * c > need->tmp_n ? 4 * c : need->tmp_n;
    nd->aux = ddts__nn_plan_buf(cap, nd->size, &need->fail);
    nd->aux2 = ddts__nn_plan_buf(cap, nd->size / c, &need->fail);
}

/* ---- passes ---- */

/* ---- BatchNormalization over the last axis ---- */
struct bn_w {
    const float *gamma, *beta;
    float *mm, *mv, *dgamma, *dbeta;
    int train_gb;
};

static void bn_views(struct ddts_model *m, const struct nn_node *nd, struct bn_w *o)
{
    int s = nd->w0;
    memset(o, 0, sizeof *o);
    if (nd->scale) {
        o->gamma = ddts__nn_wdata(m, s);
        o->dgamma = ddts__nn_gdata(m, s);
        o->train_gb = m->w[s].trainable;
        s++;
    }
    if (nd->center) {
        o->beta = ddts__nn_wdata(m, s);
        o->dbeta = ddts__nn_gdata(m, s);
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
    bn_views(m, nd, &w);
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
    /* gamma and beta as arrays (ones, zeros when absent): a branch-free loop. */
    float *gm = nd->aux2 + 2 * C, *bt = nd->aux2 + 3 * C;
    for (size_t c = 0; c < C; c++) {
        gm[c] = w.gamma ? w.gamma[c] : 1.0f;
        bt[c] = w.beta ? w.beta[c] : 0.0f;
    }
#pragma omp parallel for num_threads(m->threads) schedule(static) if (R * C > 65536)
    for (long r = 0; r < (long)R; r++) {
        const float *x = a->y + (size_t)r * C;
        float *xh = nd->aux + (size_t)r * C, *z = nd->z + (size_t)r * C;
        for (size_t c = 0; c < C; c++) {
            xh[c] = (x[c] - mean[c]) * inv[c];
            z[c] = xh[c] * gm[c] + bt[c];
        }
    }
}

static void bn_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    size_t C = (size_t)nd->shape[nd->rank - 1], R = b * (nd->size / C);
    struct bn_w w;
    bn_views(m, nd, &w);
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
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx == NULL)
        return;
    /* dx = g inv / R (R dy - sum dy - xhat sum(dy xhat)) in training, else
     * g inv dy: per channel k = g inv, and the sums divided by R once (sdy,
     * sdyx hold the means from here), so that the loop over rows is
     * branch-free and vectorises. */
    int train = bn_training(m, nd);
    float *k = nd->aux2 + 2 * C;
    for (size_t c = 0; c < C; c++) {
        k[c] = (w.gamma ? w.gamma[c] : 1.0f) * inv[c];
        sdy[c] = train ? sdy[c] / (double)R : 0.0;
        sdyx[c] = train ? sdyx[c] / (double)R : 0.0;
    }
#pragma omp parallel for num_threads(m->threads) schedule(static) if (R * C > 65536)
    for (long r = 0; r < (long)R; r++) {
        const float *dz = nd->dz + (size_t)r * C, *xh = nd->aux + (size_t)r * C;
        float *d = dx + (size_t)r * C;
        if (acc) {
            for (size_t c = 0; c < C; c++)
                d[c] += k[c] * (float)(dz[c] - sdy[c] - xh[c] * sdyx[c]);
        } else {
            for (size_t c = 0; c < C; c++)
                d[c] = k[c] * (float)(dz[c] - sdy[c] - xh[c] * sdyx[c]);
        }
    }
}

/* ---- LayerNormalization over a trailing block of axes, per row ---- */
static void layernorm(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t C = ln_row(nd), R = b * (nd->size / C);
    int s = nd->w0;
    const float *gamma = nd->scale ? ddts__nn_wdata(m, s) : NULL;
    float *dgamma = nd->scale ? ddts__nn_gdata(m, s) : NULL;
    int train = nd->n_w > 0 && m->w[nd->w0].trainable;
    if (nd->scale)
        s++;
    const float *beta = nd->center ? ddts__nn_wdata(m, s) : NULL;
    float *dbeta = nd->center ? ddts__nn_gdata(m, s) : NULL;
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
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
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

/* y = (x - mean) / max(sqrt(variance), 1e-7) over the last axis; with invert
 * (Keras >= 2.10, 3): y = mean + x * max(sqrt(variance), 1e-7). */
static void normalization(struct ddts_model *m, struct nn_node *nd, size_t b, int backward)
{
    const struct nn_node *a = &m->nodes[nd->in[0]];
    size_t C = (size_t)nd->shape[nd->rank - 1], R = b * (nd->size / C);
    const float *mean = ddts__nn_wdata(m, nd->w0), *var = ddts__nn_wdata(m, nd->w0 + 1);
    int acc = 0;
    float *dx = backward ? ddts__nn_dx(m, nd, 0, &acc) : NULL;
    if (backward && dx == NULL)
        return;
    for (size_t r = 0; r < R; r++)
        for (size_t c = 0; c < C; c++) {
            float sd = sqrtf(var[c]);
            float den = sd > 1e-7f ? sd : 1e-7f;
            size_t i = r * C + c;
            if (backward)
                dx[i] = (acc ? dx[i] : 0) + (nd->invert ? nd->dz[i] * den : nd->dz[i] / den);
            else
                nd->z[i] = nd->invert ? mean[c] + a->y[i] * den : (a->y[i] - mean[c]) / den;
        }
}

static void ln_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    layernorm(m, nd, b, 0);
}

static void ln_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    layernorm(m, nd, b, 1);
}

static void normalization_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    normalization(m, nd, b, 0);
}

static void normalization_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    normalization(m, nd, b, 1);
}

/* Rescaling: y = x * scale + offset. */
static void rescaling_fwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const float *x = m->nodes[nd->in[0]].y;
    size_t n = b * nd->size;
    for (size_t t = 0; t < n; t++)
        nd->z[t] = x[t] * nd->r_scale + nd->r_off;
}

static void rescaling_bwd(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    int acc;
    float *dx = ddts__nn_dx(m, nd, 0, &acc);
    if (dx)
        for (size_t t = 0; t < b * nd->size; t++)
            dx[t] = (acc ? dx[t] : 0) + nd->dz[t] * nd->r_scale;
}

/* "batchnorm": Keras' defaults. */
static enum ddts_status bn_spec(struct nn_spec *s)
{
    if (s->n_arg != 1)
        return s->fail(s, DDTS_EINVAL, "batchnorm takes no argument");
    enum ddts_status st = s->open(s, "BatchNormalization", "batch_normalization");
    if (st != DDTS_OK)
        return st;
    s->json(s, ", \"axis\": -1, \"momentum\": 0.99, \"epsilon\": 0.001, \"center\": true, "
               "\"scale\": true, \"beta_initializer\": {\"module\": \"keras.initializers\", "
               "\"class_name\": \"Zeros\", \"config\": {}, \"registered_name\": null}, "
               "\"gamma_initializer\": {\"module\": \"keras.initializers\", \"class_name\": "
               "\"Ones\", \"config\": {}, \"registered_name\": null}, "
               "\"moving_mean_initializer\": {\"module\": \"keras.initializers\", "
               "\"class_name\": \"Zeros\", \"config\": {}, \"registered_name\": null}, "
               "\"moving_variance_initializer\": {\"module\": \"keras.initializers\", "
               "\"class_name\": \"Ones\", \"config\": {}, \"registered_name\": null}, "
               "\"beta_regularizer\": null, \"gamma_regularizer\": null, \"beta_constraint\": "
               "null, \"gamma_constraint\": null");
    const int64_t *c = &s->shape[s->rank - 1];
    st = s->weight(s, "gamma", 1, c, 1, 0, 0);
    if (st == DDTS_OK)
        st = s->weight(s, "beta", 1, c, 0, 0, 0);
    if (st == DDTS_OK)
        st = s->weight(s, "moving_mean", 1, c, 0, 0, 0);
    if (st == DDTS_OK)
        st = s->weight(s, "moving_variance", 1, c, 1, 0, 0);
    return st;
}

static const struct nn_layer_ops batchnorm_ops = {
    .class_names = (const char *const[]){"BatchNormalization", NULL},
    .kind = NN_BATCHNORM,
    .doc = "batch statistics in training (moving ones updated), moving ones in inference",
    .min_in = 1,
    .max_in = 1,
    .weight_name = bn_names,
    .parse = bn_parse,
    .infer_shape = ddts__nn_shape_same,
    .add_weights = bn_weights,
    .plan = bn_plan,
    .forward = bn_forward,
    .backward = bn_backward,
    .spec_word = "batchnorm",
    .spec_usage = "batchnorm",
    .spec = bn_spec,
};

static const struct nn_layer_ops layernorm_ops = {
    .class_names = (const char *const[]){"LayerNormalization", NULL},
    .kind = NN_LAYERNORM,
    .doc = "per-row mean and biased variance over the last axis (or a trailing block of axes)",
    .min_in = 1,
    .max_in = 1,
    .weight_name = ln_names,
    .parse = ln_parse,
    .infer_shape = ddts__nn_shape_same,
    .add_weights = ln_weights,
    .plan = ln_plan,
    .forward = ln_fwd,
    .backward = ln_bwd,
};

static const struct nn_layer_ops normalization_ops = {
    .class_names = (const char *const[]){"Normalization", NULL},
    .kind = NN_NORMALIZATION,
    .doc = "y = (x - mean) / max(sqrt(variance), 1e-7), adapted mean and variance",
    .min_in = 1,
    .max_in = 1,
    .weight_name = normalization_names,
    .weights_optional = 1, /* none when the config carries mean and variance */
    .parse = normalization_parse,
    .infer_shape = ddts__nn_shape_same,
    .add_weights = normalization_weights,
    .forward = normalization_fwd,
    .backward = normalization_bwd,
};

static const struct nn_layer_ops rescaling_ops = {
    .class_names = (const char *const[]){"Rescaling", NULL},
    .kind = NN_RESCALING,
    .doc = "y = x * scale + offset (scalars)",
    .min_in = 1,
    .max_in = 1,
    .parse = rescaling_parse,
    .infer_shape = ddts__nn_shape_same,
    .forward = rescaling_fwd,
    .backward = rescaling_bwd,
};

const struct nn_layer_ops *const ddts__nn_family_norm[] = {
    &batchnorm_ops, &layernorm_ops, &normalization_ops, &rescaling_ops, NULL,
};
