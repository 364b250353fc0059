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
#include "tensor/simd.h"

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

/* BN: batch mean and inverse std (2 C), then three per-channel scratch rows
 * (gamma and beta, ones and zeros when absent; gamma inv); per-channel sums
 * (2 C doubles). */
static void bn_plan(struct ddts_model *m, size_t i, size_t cap, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    size_t c = (size_t)nd->shape[nd->rank - 1];
    (void)cap;
    need->tmp_n = 2 * c > need->tmp_n ? 2 * c : need->tmp_n;
    nd->aux2 = ddts__nn_plan_buf(5, c, &need->fail);
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

/* ---- BatchNormalization over the last axis ----
 *
 * x (R, C) is the input as rows of C channels (R = samples x positions).
 * Training: the batch mean and biased variance of each channel, summed in
 * double over the rows in order (one pass for the mean, one for the squared
 * deviations), then y = (x - mean) inv gamma + beta, inv = 1 / sqrt(var + eps).
 * xhat = (x - mean) inv is not kept: the backward pass computes it again
 * from x, the same float operations giving the same bits.
 *
 * A ReLU layer (plain or clipped, as MobileNets' ReLU6) that is the only
 * consumer is fused (bn_link): the forward pass writes the ReLU's output,
 * and the backward pass reads the ReLU's output gradient, masked where the
 * ReLU passed its input z through (0 < z < max_value; z computed again from
 * x), so that neither the BatchNormalization's output nor the gradient
 * between the two layers is written. The kernels vectorise over channels (16 at a time, in two
 * double vectors for the sums) and are compiled per instruction set
 * (src/tensor/simd.h); the sums keep their row order, so every build gives
 * the same bits.
 */
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

/* What the kernels need: the rows, the per-channel vectors, the fused relu. */
struct bn_args {
    size_t C;
    const float *x;          /* (R, C) input */
    const float *mean, *inv; /* (C) */
    const float *gm, *bt;    /* (C) gamma and beta (ones, zeros when absent) */
    float *out;              /* (R, C) forward output: z, or the fused relu's y */
    const float *dy;         /* (R, C) gradient at out */
    int relu;                /* 0 none, 1 plain relu, 2 clipped at mv */
    float mv;                /* max_value of a clipped relu */
    double *s1, *s2;         /* (C) sums */
    const float *k;          /* (C) gamma inv (backward) */
    float *dx;               /* (R, C) input gradient */
    int acc;                 /* dx += */
};

typedef double v8d __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));

ALWAYS_INLINE v8d lo8(const float *p)
{
    v8f v;
    memcpy(&v, p, sizeof v);
    return __builtin_convertvector(v, v8d);
}

ALWAYS_INLINE v8d vload8d(const double *p)
{
    v8d v;
    memcpy(&v, p, sizeof v);
    return v;
}

ALWAYS_INLINE void vstore8d(double *p, v8d v)
{
    memcpy(p, &v, sizeof v);
}

/* The gradient at the BN output, element i of the rows: the fused relu's
 * mask applied, from z = xhat gamma + beta as the forward pass computed it. */
ALWAYS_INLINE float bn_g(const struct bn_args *a, size_t i, size_t c, float h)
{
    float g = a->dy[i];
    if (a->relu == 0)
        return g;
    float z = h * a->gm[c] + a->bt[c];
    return (a->relu == 1 ? z > 0 : (z > 0 && z < a->mv)) ? g : 0.0f;
}

ALWAYS_INLINE v16 bn_gv(const struct bn_args *a, size_t i, size_t c, v16 h)
{
    v16 g = vload(a->dy + i);
    if (a->relu == 0)
        return g;
    const v16 z = h * vload(a->gm + c) + vload(a->bt + c), zero = {0};
    v16i keep = z > zero;
    if (a->relu == 2)
        keep &= z < a->mv;
    return (v16)((v16i)g & keep);
}

/* Pass 1 of training: s1 = column sums of x, pass 2: s2 = sums of (x - mean)^2
 * with mean = s1 / R; both in double, rows in order. */
ALWAYS_INLINE void bn_stats_body(const struct bn_args *a, size_t R)
{
    const size_t C = a->C;
    size_t c = 0;
    for (; c + 16 <= C; c += 16) {
        v8d s0 = {0}, s1 = {0};
        for (size_t r = 0; r < R; r++) {
            s0 += lo8(a->x + r * C + c);
            s1 += lo8(a->x + r * C + c + 8);
        }
        vstore8d(a->s1 + c, s0);
        vstore8d(a->s1 + c + 8, s1);
    }
    for (; c < C; c++) {
        double s = 0;
        for (size_t r = 0; r < R; r++)
            s += a->x[r * C + c];
        a->s1[c] = s;
    }
    for (c = 0; c < C; c++)
        a->s1[c] /= (double)R;
    for (c = 0; c + 16 <= C; c += 16) {
        const v8d m0 = vload8d(a->s1 + c), m1 = vload8d(a->s1 + c + 8);
        v8d q0 = {0}, q1 = {0};
        for (size_t r = 0; r < R; r++) {
            v8d d0 = lo8(a->x + r * C + c) - m0, d1 = lo8(a->x + r * C + c + 8) - m1;
            q0 += d0 * d0;
            q1 += d1 * d1;
        }
        vstore8d(a->s2 + c, q0);
        vstore8d(a->s2 + c + 8, q1);
    }
    for (; c < C; c++) {
        double q = 0;
        for (size_t r = 0; r < R; r++) {
            double d = a->x[r * C + c] - a->s1[c];
            q += d * d;
        }
        a->s2[c] = q;
    }
}

/* out = (x - mean) inv gamma + beta, then the fused relu, rows r0 .. r1 - 1. */
ALWAYS_INLINE void bn_apply_body(const struct bn_args *a, size_t r0, size_t r1)
{
    const size_t C = a->C;
    const v16 zero = {0};
    for (size_t r = r0; r < r1; r++) {
        const float *x = a->x + r * C;
        float *o = a->out + r * C;
        size_t c = 0;
        for (; c + 16 <= C; c += 16) {
            v16 h = (vload(x + c) - vload(a->mean + c)) * vload(a->inv + c);
            v16 v = h * vload(a->gm + c) + vload(a->bt + c);
            if (a->relu)
                v = vrelu(v);
            if (a->relu == 2) {
                v16i in = v < a->mv;
                v = (v16)(((v16i)v & in) | ((v16i)(zero + a->mv) & ~in));
            }
            vstore(o + c, v);
        }
        for (; c < C; c++) {
            float h = (x[c] - a->mean[c]) * a->inv[c];
            float v = h * a->gm[c] + a->bt[c];
            if (a->relu)
                v = v > 0 ? v : 0;
            if (a->relu == 2)
                v = v < a->mv ? v : a->mv;
            o[c] = v;
        }
    }
}

/* s1 = column sums of g, s2 = of g xhat (double, rows in order), g the
 * gradient at the BN output. */
ALWAYS_INLINE void bn_gsums_body(const struct bn_args *a, size_t R)
{
    const size_t C = a->C;
    size_t c = 0;
    for (; c + 16 <= C; c += 16) {
        const v16 mean = vload(a->mean + c), inv = vload(a->inv + c);
        v8d s0 = {0}, s1 = {0}, q0 = {0}, q1 = {0};
        for (size_t r = 0; r < R; r++) {
            float g[16], h[16];
            const v16 hv = (vload(a->x + r * C + c) - mean) * inv;
            vstore(g, bn_gv(a, r * C + c, c, hv));
            vstore(h, hv);
            v8d g0 = lo8(g), g1 = lo8(g + 8);
            s0 += g0;
            s1 += g1;
            q0 += g0 * lo8(h);
            q1 += g1 * lo8(h + 8);
        }
        vstore8d(a->s1 + c, s0);
        vstore8d(a->s1 + c + 8, s1);
        vstore8d(a->s2 + c, q0);
        vstore8d(a->s2 + c + 8, q1);
    }
    for (; c < C; c++) {
        double s = 0, q = 0;
        for (size_t r = 0; r < R; r++) {
            float h = (a->x[r * C + c] - a->mean[c]) * a->inv[c], g = bn_g(a, r * C + c, c, h);
            s += g;
            q += (double)g * h;
        }
        a->s1[c] = s;
        a->s2[c] = q;
    }
}

/* dx (+)= k (g - s1 - xhat s2) in double, s1 and s2 the means of the sums
 * (zero in inference), rows r0 .. r1 - 1. */
ALWAYS_INLINE void bn_dx_body(const struct bn_args *a, size_t r0, size_t r1)
{
    const size_t C = a->C;
    for (size_t r = r0; r < r1; r++) {
        float *d = a->dx + r * C;
        size_t c = 0;
        for (; c + 16 <= C; c += 16) {
            float g[16], h[16], v[16];
            const v16 hv = (vload(a->x + r * C + c) - vload(a->mean + c)) * vload(a->inv + c);
            vstore(g, bn_gv(a, r * C + c, c, hv));
            vstore(h, hv);
            for (int half = 0; half < 16; half += 8) {
                v8d t = lo8(g + half) - vload8d(a->s1 + c + half) -
                        lo8(h + half) * vload8d(a->s2 + c + half);
                v8f f = __builtin_convertvector(t, v8f);
                memcpy(v + half, &f, sizeof f);
            }
            v16 out = vload(a->k + c) * vload(v);
            vstore(d + c, a->acc ? vload(d + c) + out : out);
        }
        for (; c < C; c++) {
            float h = (a->x[r * C + c] - a->mean[c]) * a->inv[c], g = bn_g(a, r * C + c, c, h);
            float out = a->k[c] * (float)(g - a->s1[c] - h * a->s2[c]);
            d[c] = a->acc ? d[c] + out : out;
        }
    }
}

typedef void (*bn_sums_fn)(const struct bn_args *, size_t);
typedef void (*bn_rows_fn)(const struct bn_args *, size_t, size_t);

/* attr is an attribute list: it cannot be parenthesised. */
/* NOLINTBEGIN(bugprone-macro-parentheses) */
#define BN_BUILD(suffix, attr)                                                                     \
    attr static void bn_stats_##suffix(const struct bn_args *a, size_t R)                          \
    {                                                                                              \
        bn_stats_body(a, R);                                                                       \
    }                                                                                              \
    attr static void bn_apply_##suffix(const struct bn_args *a, size_t r0, size_t r1)              \
    {                                                                                              \
        bn_apply_body(a, r0, r1);                                                                  \
    }                                                                                              \
    attr static void bn_gsums_##suffix(const struct bn_args *a, size_t R)                          \
    {                                                                                              \
        bn_gsums_body(a, R);                                                                       \
    }                                                                                              \
    attr static void bn_dx_##suffix(const struct bn_args *a, size_t r0, size_t r1)                 \
    {                                                                                              \
        bn_dx_body(a, r0, r1);                                                                     \
    }
/* NOLINTEND(bugprone-macro-parentheses) */

BN_BUILD(generic, )
#if DDTS_HAVE_ISA_BUILDS
BN_BUILD(avx2, DDTS_TARGET_AVX2)
BN_BUILD(avx512, DDTS_TARGET_AVX512)
#endif

/* The kernels of each build, by ddts__tensor_isa_level(). */
static const struct {
    bn_sums_fn stats, gsums;
    bn_rows_fn apply, dx;
} bn_kernels[] = {
    {bn_stats_generic, bn_gsums_generic, bn_apply_generic, bn_dx_generic},
#if DDTS_HAVE_ISA_BUILDS
    {bn_stats_avx2, bn_gsums_avx2, bn_apply_avx2, bn_dx_avx2},
    {bn_stats_avx512, bn_gsums_avx512, bn_apply_avx512, bn_dx_avx512},
#endif
};

/* The fused relu (bn_link) of node nd: its node, or NULL. */
static const struct nn_node *bn_relu(const struct ddts_model *m, const struct nn_node *nd)
{
    return nd->act_node > 0 ? &m->nodes[nd->act_node - 1] : NULL;
}

static void bn_set_relu(const struct nn_node *r, struct bn_args *a)
{
    a->relu = r == NULL ? 0 : r->act.max_value > 0 ? 2 : 1;
    a->mv = r == NULL ? 0.0f : r->act.max_value;
}

/* Rows [lo, hi) of R for thread t of T. */
static void bn_split(size_t R, int t, int T, size_t *lo, size_t *hi)
{
    size_t blk = (R + (size_t)T - 1) / (size_t)T;
    *lo = (size_t)t * blk < R ? (size_t)t * blk : R;
    *hi = *lo + blk < R ? *lo + blk : R;
}

static void bn_forward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *in = &m->nodes[nd->in[0]], *r = bn_relu(m, nd);
    size_t C = (size_t)nd->shape[nd->rank - 1], R = b * (nd->size / C);
    int isa = ddts__tensor_isa_level();
    struct bn_w w;
    bn_views(m, nd, &w);
    float *mean = nd->aux2, *inv = nd->aux2 + C, *gm = nd->aux2 + 2 * C, *bt = nd->aux2 + 3 * C;
    struct bn_args a = {.C = C,
                        .x = in->y,
                        .mean = mean,
                        .inv = inv,
                        .gm = gm,
                        .bt = bt,
                        .out = r ? r->y : nd->z,
                        .s1 = m->tmp,
                        .s2 = m->tmp + C};
    bn_set_relu(r, &a);
    if (bn_training(m, nd)) {
        bn_kernels[isa].stats(&a, R);
        for (size_t c = 0; c < C; c++) {
            double var = a.s2[c] / (double)R;
            mean[c] = (float)a.s1[c];
            inv[c] = (float)(1.0 / sqrt(var + nd->eps));
            /* Keras 2 (TF's fused kernel) feeds the moving variance with the
             * unbiased batch variance; Keras 3 with the biased one. */
            double var_m = (!m->keras3 && R > 1) ? var * (double)R / (double)(R - 1) : var;
            w.mm[c] = (float)(w.mm[c] * nd->momentum + a.s1[c] * (1.0 - nd->momentum));
            w.mv[c] = (float)(w.mv[c] * nd->momentum + var_m * (1.0 - nd->momentum));
        }
    } else {
        for (size_t c = 0; c < C; c++) {
            mean[c] = w.mm[c];
            inv[c] = (float)(1.0 / sqrt((double)w.mv[c] + nd->eps));
        }
    }
    /* gamma and beta as arrays (ones, zeros when absent): a branch-free loop. */
    for (size_t c = 0; c < C; c++) {
        gm[c] = w.gamma ? w.gamma[c] : 1.0f;
        bt[c] = w.beta ? w.beta[c] : 0.0f;
    }
    bn_rows_fn apply = bn_kernels[isa].apply;
    int nt = m->threads > 1 && R * C > 65536 ? m->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        size_t lo, hi;
        bn_split(R, t, nt, &lo, &hi);
        apply(&a, lo, hi);
    }
}

static void bn_backward(struct ddts_model *m, struct nn_node *nd, size_t b)
{
    const struct nn_node *r = bn_relu(m, nd);
    size_t C = (size_t)nd->shape[nd->rank - 1], R = b * (nd->size / C);
    int isa = ddts__tensor_isa_level();
    struct bn_w w;
    bn_views(m, nd, &w);
    float *gm = nd->aux2 + 2 * C, *bt = nd->aux2 + 3 * C, *k = nd->aux2 + 4 * C;
    struct bn_args a = {.C = C,
                        .x = m->nodes[nd->in[0]].y,
                        .mean = nd->aux2,
                        .inv = nd->aux2 + C,
                        .gm = gm,
                        .bt = bt,
                        .dy = r ? r->dy : nd->dz,
                        .s1 = m->tmp,
                        .s2 = m->tmp + C,
                        .k = k};
    bn_set_relu(r, &a);
    for (size_t c = 0; c < C; c++) {
        gm[c] = w.gamma ? w.gamma[c] : 1.0f;
        bt[c] = w.beta ? w.beta[c] : 0.0f;
    }
    bn_kernels[isa].gsums(&a, R);
    if (w.train_gb) {
        for (size_t c = 0; c < C; c++) {
            if (w.dgamma)
                w.dgamma[c] = (float)a.s2[c];
            if (w.dbeta)
                w.dbeta[c] = (float)a.s1[c];
        }
    }
    a.dx = ddts__nn_dx(m, nd, 0, &a.acc);
    if (a.dx == NULL)
        return;
    /* dx = g inv / R (R dy - sum dy - xhat sum(dy xhat)) in training, else
     * g inv dy: per channel k = g inv, and the sums divided by R once (s1,
     * s2 hold the means from here), so that the loop over rows is
     * branch-free and vectorises. */
    int train = bn_training(m, nd);
    for (size_t c = 0; c < C; c++) {
        k[c] = (w.gamma ? w.gamma[c] : 1.0f) * a.inv[c];
        a.s1[c] = train ? a.s1[c] / (double)R : 0.0;
        a.s2[c] = train ? a.s2[c] / (double)R : 0.0;
    }
    bn_rows_fn dx = bn_kernels[isa].dx;
    int nt = m->threads > 1 && R * C > 65536 ? m->threads : 1;
#pragma omp parallel for num_threads(nt) schedule(static) if (nt > 1)
    for (int t = 0; t < nt; t++) {
        size_t lo, hi;
        bn_split(R, t, nt, &lo, &hi);
        dx(&a, lo, hi);
    }
}

/* A ReLU layer (no negative slope, no threshold; max_value or none) that is
 * the BatchNormalization's only consumer runs inside it (see above). */
static void bn_link(struct ddts_model *m, size_t i, struct nn_plan_need *need)
{
    struct nn_node *nd = &m->nodes[i];
    (void)need;
    if (nd->n_consumers != 1 || (int)i == m->output_node || nd->act.kind != ACT_LINEAR)
        return;
    for (size_t j = i + 1; j < m->n_nodes; j++) {
        struct nn_node *r = &m->nodes[j];
        if (r->n_in < 1 || r->in[0] != (int)i)
            continue;
        const struct nn_act *ra = &r->act;
        if (r->kind != NN_ACTIVATION || r->n_in != 1 || (int)j == m->output_node || r->z != nd->y ||
            ra->kind != ACT_RELU || ra->alpha != 0 || ra->threshold != 0)
            return;
        nd->act_node = (int)j + 1;
        r->act_in_prev = 1;
        r->skip_act_bwd = 1;
        return;
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
    .plan_link = bn_link,
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
