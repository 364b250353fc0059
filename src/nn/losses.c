/*
 * Losses with Keras' definitions and reduction: each loss is a mean over the
 * last axis (a sum for crossentropies and KL), then a mean over every other
 * row of the batch ("sum over batch size"). Crossentropies on a softmax or
 * sigmoid output read the logits (z) as TF Keras does, for stability.
 */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

#define EPS 1e-7

static const struct {
    const char *name;
    enum nn_loss_kind kind;
} loss_names[] = {
    {"sparse_categorical_crossentropy", LOSS_SPARSE_CCE},
    {"SparseCategoricalCrossentropy", LOSS_SPARSE_CCE},
    {"categorical_crossentropy", LOSS_CCE},
    {"CategoricalCrossentropy", LOSS_CCE},
    {"binary_crossentropy", LOSS_BCE},
    {"BinaryCrossentropy", LOSS_BCE},
    {"mean_squared_error", LOSS_MSE},
    {"mse", LOSS_MSE},
    {"MSE", LOSS_MSE},
    {"MeanSquaredError", LOSS_MSE},
    {"mean_absolute_error", LOSS_MAE},
    {"mae", LOSS_MAE},
    {"MAE", LOSS_MAE},
    {"MeanAbsoluteError", LOSS_MAE},
    {"mean_absolute_percentage_error", LOSS_MAPE},
    {"mape", LOSS_MAPE},
    {"MAPE", LOSS_MAPE},
    {"MeanAbsolutePercentageError", LOSS_MAPE},
    {"mean_squared_logarithmic_error", LOSS_MSLE},
    {"msle", LOSS_MSLE},
    {"MSLE", LOSS_MSLE},
    {"MeanSquaredLogarithmicError", LOSS_MSLE},
    {"huber", LOSS_HUBER},
    {"huber_loss", LOSS_HUBER},
    {"Huber", LOSS_HUBER},
    {"kl_divergence", LOSS_KLD},
    {"kullback_leibler_divergence", LOSS_KLD},
    {"kld", LOSS_KLD},
    {"KLD", LOSS_KLD},
    {"KLDivergence", LOSS_KLD},
    {"hinge", LOSS_HINGE},
    {"Hinge", LOSS_HINGE},
    {"squared_hinge", LOSS_SQUARED_HINGE},
    {"SquaredHinge", LOSS_SQUARED_HINGE},
    {"log_cosh", LOSS_LOGCOSH},
    {"logcosh", LOSS_LOGCOSH},
    {"LogCosh", LOSS_LOGCOSH},
    {"poisson", LOSS_POISSON},
    {"Poisson", LOSS_POISSON},
};

int ddts__nn_loss_parse(const char *name, struct nn_loss *out)
{
    for (size_t i = 0; i < sizeof loss_names / sizeof loss_names[0]; i++) {
        if (strcmp(name, loss_names[i].name) == 0) {
            memset(out, 0, sizeof *out);
            out->kind = loss_names[i].kind;
            out->delta = 1.0;
            return 0;
        }
    }
    return -1;
}

const char *ddts__nn_loss_name(enum nn_loss_kind k)
{
    for (size_t i = 0; i < sizeof loss_names / sizeof loss_names[0]; i++)
        if (loss_names[i].kind == k && loss_names[i].name[0] >= 'a')
            return loss_names[i].name;
    return "?";
}

static size_t argmax(const float *v, size_t k)
{
    size_t b = 0;
    for (size_t j = 1; j < k; j++)
        if (v[j] > v[b])
            b = j;
    return b;
}

/* Per-row loss and gradient (scaled by `sc` = 1 / rows) of one row.
 * Longer than our ~120-line rule on purpose: one switch with a short case
 * per Keras loss, each formula beside its gradient; split per loss the cases
 * would only be harder to compare with Keras' definitions. */
static double row_loss(const struct nn_loss *L, int logits, size_t K, const float *y,
                       const float *t, float *g, double sc)
{
    double l = 0;
    switch (L->kind) {
    case LOSS_SPARSE_CCE:
    case LOSS_CCE: {
        int sparse = L->kind == LOSS_SPARSE_CCE;
        size_t lab = sparse ? (size_t)t[0] : 0;
        double ls = sparse ? 0 : L->label_smoothing;
#define TGT(j) (sparse ? ((j) == lab ? 1.0 : 0.0) : (double)t[j] * (1 - ls) + ls / (double)K)
        if (logits) {
            double mx = y[0];
            for (size_t j = 1; j < K; j++)
                mx = y[j] > mx ? y[j] : mx;
            double s = 0, st = 0;
            for (size_t j = 0; j < K; j++)
                s += exp(y[j] - mx);
            double lse = mx + log(s);
            for (size_t j = 0; j < K; j++) {
                double tj = TGT(j);
                st += tj;
                l += tj * (lse - y[j]);
            }
            if (g)
                for (size_t j = 0; j < K; j++)
                    g[j] = (float)(sc * (exp(y[j] - lse) * st - TGT(j)));
        } else {
            double S = 0, gp = 0;
            for (size_t j = 0; j < K; j++)
                S += y[j];
            if (S <= 0)
                S = EPS;
            for (size_t j = 0; j < K; j++) {
                double p = y[j] / S, tj = TGT(j);
                if (p < EPS) {
                    l -= tj * log(EPS);
                } else if (p > 1 - EPS) {
                    l -= tj * log(1 - EPS);
                } else {
                    l -= tj * log(p);
                    gp += -tj; /* g_k p_k with g_k = -t_k / p_k */
                }
            }
            if (g)
                for (size_t j = 0; j < K; j++) {
                    double p = y[j] / S, gj = (p < EPS || p > 1 - EPS) ? 0 : -TGT(j) / p;
                    g[j] = (float)(sc * (gj - gp) / S);
                }
        }
#undef TGT
        return l;
    }
    case LOSS_BCE: {
        double ls = L->label_smoothing;
        for (size_t j = 0; j < K; j++) {
            double tj = t[j] * (1 - ls) + 0.5 * ls, d;
            if (logits) {
                double z = y[j];
                l += (z > 0 ? z : 0) - z * tj + log1p(exp(-fabs(z)));
                double s = z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z));
                d = s - tj;
            } else {
                double p = y[j];
                int clip = p < EPS || p > 1 - EPS;
                p = p < EPS ? EPS : (p > 1 - EPS ? 1 - EPS : p);
                l -= tj * log(p) + (1 - tj) * log(1 - p);
                d = clip ? 0 : -tj / p + (1 - tj) / (1 - p);
            }
            if (g)
                g[j] = (float)(sc * d / (double)K);
        }
        return l / (double)K;
    }
    case LOSS_KLD:
        for (size_t j = 0; j < K; j++) {
            double tj = t[j] < EPS ? EPS : (t[j] > 1 ? 1 : t[j]);
            double p = y[j] < EPS ? EPS : (y[j] > 1 ? 1 : y[j]);
            l += tj * log(tj / p);
            if (g)
                g[j] = (float)((y[j] > EPS && y[j] < 1) ? -sc * tj / p : 0);
        }
        return l;
    default:
        break;
    }
    for (size_t j = 0; j < K; j++) {
        double e = (double)y[j] - t[j], d = 0;
        switch (L->kind) {
        case LOSS_MSE:
            l += e * e;
            d = 2 * e;
            break;
        case LOSS_MAE:
            l += fabs(e);
            d = e > 0 ? 1 : (e < 0 ? -1 : 0);
            break;
        case LOSS_MAPE: {
            double den = fabs(t[j]) > EPS ? fabs(t[j]) : EPS;
            l += 100 * fabs(e) / den;
            d = 100 * (e > 0 ? 1 : (e < 0 ? -1 : 0)) / den;
            break;
        }
        case LOSS_MSLE: {
            double yp = y[j] > EPS ? y[j] : EPS, tt = t[j] > EPS ? t[j] : EPS;
            double a = log(yp + 1) - log(tt + 1);
            l += a * a;
            d = y[j] > EPS ? 2 * a / (yp + 1) : 0;
            break;
        }
        case LOSS_HUBER: {
            double ae = fabs(e), dl = L->delta;
            l += ae <= dl ? 0.5 * e * e : dl * ae - 0.5 * dl * dl;
            d = ae <= dl ? e : (e > 0 ? dl : -dl);
            break;
        }
        case LOSS_LOGCOSH:
            /* log cosh e = e + softplus(-2e) - log 2, stable for large |e| */
            l += e + (-2 * e > 0 ? -2 * e : 0) + log1p(exp(-fabs(2 * e))) - log(2.0);
            d = tanh(e);
            break;
        case LOSS_POISSON:
            l += y[j] - t[j] * log(y[j] + EPS);
            d = 1 - t[j] / (y[j] + EPS);
            break;
        case LOSS_HINGE:
        case LOSS_SQUARED_HINGE: {
            /* Keras maps {0, 1} labels to {-1, 1}. */
            double tt = (t[j] == 0 || t[j] == 1) ? 2 * t[j] - 1 : t[j];
            double h = 1 - tt * y[j];
            if (h > 0) {
                l += L->kind == LOSS_HINGE ? h : h * h;
                d = L->kind == LOSS_HINGE ? -tt : -2 * tt * h;
            }
            break;
        }
        default:
            break;
        }
        if (g)
            g[j] = (float)(sc * d / (double)K);
    }
    return l / (double)K;
}

void ddts__nn_loss_rows(struct ddts_model *m, size_t b, size_t b_all, int grad,
                        struct ddts__nn_loss_sums *out)
{
    struct nn_node *o = &m->nodes[m->output_node];
    size_t K = (size_t)o->shape[o->rank - 1], per_sample = o->size / K, R = b * per_sample;
    size_t R_all = b_all * per_sample; /* the rows the mean is over */
    int sparse = m->loss.kind == LOSS_SPARSE_CCE;
    size_t tk = sparse ? 1 : K;
    int logits = m->fused || m->loss.from_logits;
    const float *yin = m->fused ? o->z : o->y;
    float *gout = grad ? (m->fused ? o->dz : o->dy) : NULL;
    double sc = 1.0 / (double)R_all, total = 0, acc = 0, se = 0, ae = 0, units_total = 0;
    /* Figures in the targets' own units: outputs and targets mapped back (v / scale +
     * offset) into a scratch row each; the gradient stays the normalized loss's. */
    int units = m->units_scale != NULL && !sparse;
    for (size_t r = 0; r < R; r++) {
        const float *t = m->target + r * tk;
        total += row_loss(&m->loss, logits, K, yin + r * K, t, gout ? gout + r * K : NULL, sc);
        const float *y = o->y + r * K;
        if (units) {
            float *yu = m->units_row, *tu = m->units_row + K;
            size_t e0 = (r % per_sample) * K;
            for (size_t j = 0; j < K; j++) {
                yu[j] = y[j] / m->units_scale[e0 + j] + m->units_offset[e0 + j];
                tu[j] = t[j] / m->units_scale[e0 + j] + m->units_offset[e0 + j];
            }
            units_total += row_loss(&m->loss, 0, K, yu, tu, NULL, sc);
            y = yu;
            t = tu;
        }
        if (m->acc_kind == ACC_SPARSE) {
            acc += argmax(y, K) == (size_t)t[0];
        } else if (m->acc_kind == ACC_CATEGORICAL) {
            acc += argmax(y, K) == argmax(t, K);
        } else if (m->acc_kind == ACC_BINARY) {
            double c = 0;
            for (size_t j = 0; j < K; j++)
                c += (float)(y[j] > 0.5f) == t[j];
            acc += c / (double)K;
        }
        if (!sparse && (m->metrics & (MET_MSE | MET_MAE))) {
            double s2 = 0, s1 = 0;
            for (size_t j = 0; j < K; j++) {
                double e = (double)y[j] - t[j];
                s2 += e * e;
                s1 += fabs(e);
            }
            se += s2 / (double)K;
            ae += s1 / (double)K;
        }
    }
    out->loss += total;
    out->units += units ? units_total : total;
    out->acc += acc;
    out->mse += se;
    out->mae += ae;
    out->rows += R;
}

double ddts__nn_loss(struct ddts_model *m, size_t b, int grad, double *acc_sum, double *mse_sum,
                     double *mae_sum, size_t *rows_out)
{
    struct ddts__nn_loss_sums s = {0};
    ddts__nn_loss_rows(m, b, b, grad, &s);
    if (acc_sum)
        *acc_sum += s.acc;
    if (mse_sum)
        *mse_sum += s.mse;
    if (mae_sum)
        *mae_sum += s.mae;
    if (rows_out)
        *rows_out = s.rows;
    m->units_loss = s.units / (double)s.rows;
    return s.loss / (double)s.rows;
}
