/*
 * Optimizers with Keras' (2.11+ and 3) update rules and defaults, over the
 * flat parameter and gradient buffers, weight by weight (clipnorm is per
 * weight as in Keras). State vectors have one float per parameter each.
 */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

static const struct {
    const char *name;
    enum nn_opt_kind kind;
} opt_names[] = {
    {"sgd", OPT_SGD},         {"SGD", OPT_SGD},           {"adam", OPT_ADAM},
    {"Adam", OPT_ADAM},       {"adamw", OPT_ADAMW},       {"AdamW", OPT_ADAMW},
    {"rmsprop", OPT_RMSPROP}, {"RMSprop", OPT_RMSPROP},   {"adagrad", OPT_ADAGRAD},
    {"Adagrad", OPT_ADAGRAD}, {"adadelta", OPT_ADADELTA}, {"Adadelta", OPT_ADADELTA},
    {"adamax", OPT_ADAMAX},   {"Adamax", OPT_ADAMAX},     {"nadam", OPT_NADAM},
    {"Nadam", OPT_NADAM},
};

int ddts__nn_opt_parse(const char *name, struct nn_opt *o)
{
    for (size_t i = 0; i < sizeof opt_names / sizeof opt_names[0]; i++) {
        if (strcmp(name, opt_names[i].name) != 0)
            continue;
        memset(o, 0, sizeof *o);
        o->kind = opt_names[i].kind;
        o->lr = 0.001;
        o->beta1 = 0.9;
        o->beta2 = 0.999;
        o->eps = 1e-7;
        o->rho = 0.9;
        switch (o->kind) {
        case OPT_SGD:
            o->lr = 0.01;
            break;
        case OPT_ADAMW:
            o->weight_decay = 0.004;
            break;
        case OPT_ADAGRAD:
            o->initial_accumulator = 0.1;
            break;
        case OPT_ADADELTA:
            o->rho = 0.95;
            break;
        default:
            break;
        }
        return 0;
    }
    return -1;
}

const char *ddts__nn_opt_name(enum nn_opt_kind k)
{
    for (size_t i = 0; i < sizeof opt_names / sizeof opt_names[0]; i++)
        if (opt_names[i].kind == k)
            return opt_names[i].name;
    return "?";
}

enum ddts_status ddts__nn_opt_alloc(struct ddts_model *m, struct ddts_error *err)
{
    struct nn_opt *o = &m->opt;
    size_t k = 0, extra = 0;
    switch (o->kind) {
    case OPT_SGD:
        k = o->momentum > 0;
        break;
    case OPT_ADAM:
    case OPT_ADAMW:
        k = 2 + (o->amsgrad != 0);
        break;
    case OPT_RMSPROP:
        k = 1 + (o->momentum > 0) + (o->centered != 0);
        break;
    case OPT_ADAGRAD:
        k = 1;
        break;
    case OPT_ADADELTA:
    case OPT_ADAMAX:
        k = 2;
        break;
    case OPT_NADAM:
        k = 2;
        extra = 1;
        break;
    }
    size_t n;
    if (ddts_size_mul(k, m->n_params, &n) != 0 || ddts_size_add(n, extra, &n) != 0)
        return ddts_error_set(err, DDTS_ELIMIT, "optimizer: state too large");
    ddts_free(o->state);
    o->state = NULL;
    o->n_state_vec = k;
    o->n_state = n;
    if (n > 0) {
        o->state = ddts_aligned_alloc(n * sizeof(float));
        if (o->state == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "optimizer: out of memory");
        memset(o->state, 0, n * sizeof(float));
        if (o->kind == OPT_ADAGRAD)
            for (size_t i = 0; i < m->n_params; i++)
                o->state[i] = (float)o->initial_accumulator;
        if (o->kind == OPT_NADAM)
            o->state[n - 1] = 1.0f; /* product of momentum factors */
    }
    m->iterations = 0;
    return DDTS_OK;
}

/* Adds regularization gradients, clips, and applies one update. */
void ddts__nn_opt_step(struct ddts_model *m)
{
    struct nn_opt *o = &m->opt;
    const size_t P = m->n_params;
    float *S0 = o->state, *S1 = o->state ? o->state + P : NULL,
          *S2 = o->state && o->n_state_vec > 2 ? o->state + 2 * P : NULL;
    double t = (double)m->iterations + 1;
    double lr = o->lr;
    int nt = m->threads;
    double gscale = 1;
    if (o->global_clipnorm > 0) {
        double s = 0;
        for (size_t i = 0; i < m->n_w; i++) {
            const struct nn_weight *w = &m->w[i];
            if (!w->trainable)
                continue;
            const float *g = m->grads + w->off;
            for (size_t j = 0; j < w->n; j++)
                s += (double)g[j] * g[j];
        }
        s = sqrt(s);
        if (s > o->global_clipnorm)
            gscale = o->global_clipnorm / s;
    }
    /* Nadam's momentum schedule (Keras): u_t = b1 (1 - 0.5 * 0.96^(0.004 t)). */
    double u_t = 0, u_t1 = 0, up_t = 1, up_t1 = 1;
    if (o->kind == OPT_NADAM) {
        float *up = o->state + o->n_state - 1;
        u_t = o->beta1 * (1 - 0.5 * pow(0.96, 0.004 * t));
        u_t1 = o->beta1 * (1 - 0.5 * pow(0.96, 0.004 * (t + 1)));
        up_t = (double)*up * u_t;
        up_t1 = up_t * u_t1;
        *up = (float)up_t;
    }
    double b1p = pow(o->beta1, t), b2p = pow(o->beta2, t);
    for (size_t wi = 0; wi < m->n_w; wi++) {
        const struct nn_weight *w = &m->w[wi];
        if (!w->trainable)
            continue;
        float *p = m->params + w->off, *g = m->grads + w->off;
        const size_t n = w->n, off = w->off;
        if (w->reg.l1 != 0 || w->reg.l2 != 0)
            for (size_t j = 0; j < n; j++)
                g[j] += (float)(2 * w->reg.l2 * p[j] +
                                w->reg.l1 * (p[j] > 0 ? 1 : (p[j] < 0 ? -1 : 0)));
        double sc = gscale;
        if (o->clipnorm > 0) {
            double s = 0;
            for (size_t j = 0; j < n; j++)
                s += (double)g[j] * g[j];
            s = sqrt(s) * gscale;
            if (s > o->clipnorm)
                sc *= o->clipnorm / s;
        }
        const float cv = (float)o->clipvalue;
        if (o->weight_decay > 0) /* Keras 3: decoupled decay on every optimizer */
            for (size_t j = 0; j < n; j++)
                p[j] -= (float)(p[j] * o->weight_decay * lr);
#pragma omp parallel for num_threads(nt) schedule(static) if (n > 32768)
        for (long jj = 0; jj < (long)n; jj++) {
            size_t j = (size_t)jj, q = off + j;
            double gj = g[j] * sc;
            if (cv > 0)
                gj = gj > cv ? cv : (gj < -cv ? -cv : gj);
            switch (o->kind) {
            case OPT_SGD:
                if (o->momentum > 0) {
                    double v = o->momentum * S0[q] - lr * gj;
                    S0[q] = (float)v;
                    p[j] += (float)(o->nesterov ? o->momentum * v - lr * gj : v);
                } else {
                    p[j] -= (float)(lr * gj);
                }
                break;
            case OPT_ADAM:
            case OPT_ADAMW: {
                double mm = S0[q] + (gj - S0[q]) * (1 - o->beta1);
                double vv = S1[q] + (gj * gj - S1[q]) * (1 - o->beta2);
                S0[q] = (float)mm;
                S1[q] = (float)vv;
                if (o->amsgrad) {
                    if (vv > S2[q])
                        S2[q] = (float)vv;
                    vv = S2[q];
                }
                double alpha = lr * sqrt(1 - b2p) / (1 - b1p);
                p[j] -= (float)(alpha * mm / (sqrt(vv) + o->eps));
                break;
            }
            case OPT_RMSPROP: {
                double v = o->rho * S0[q] + (1 - o->rho) * gj * gj;
                S0[q] = (float)v;
                double den = v;
                float *mom = o->momentum > 0 ? S1 : NULL;
                float *avg = o->centered ? (mom ? S2 : S1) : NULL;
                if (avg) {
                    double a = o->rho * avg[q] + (1 - o->rho) * gj;
                    avg[q] = (float)a;
                    den = v - a * a;
                }
                double inc = lr * gj / sqrt(den + o->eps);
                if (mom) {
                    double mv = o->momentum * mom[q] + inc;
                    mom[q] = (float)mv;
                    p[j] -= (float)mv;
                } else {
                    p[j] -= (float)inc;
                }
                break;
            }
            case OPT_ADAGRAD: {
                double a = S0[q] + gj * gj;
                S0[q] = (float)a;
                p[j] -= (float)(lr * gj / sqrt(a + o->eps));
                break;
            }
            case OPT_ADADELTA: {
                double ag = o->rho * S0[q] + (1 - o->rho) * gj * gj;
                S0[q] = (float)ag;
                double d = sqrt(S1[q] + o->eps) / sqrt(ag + o->eps) * gj;
                S1[q] = (float)(o->rho * S1[q] + (1 - o->rho) * d * d);
                p[j] -= (float)(lr * d);
                break;
            }
            case OPT_ADAMAX: {
                double mm = o->beta1 * S0[q] + (1 - o->beta1) * gj;
                double u = fabs(gj) > o->beta2 * S1[q] ? fabs(gj) : o->beta2 * S1[q];
                S0[q] = (float)mm;
                S1[q] = (float)u;
                p[j] -= (float)(lr / (1 - b1p) * mm / (u + o->eps));
                break;
            }
            case OPT_NADAM: {
                double mm = S0[q] + (gj - S0[q]) * (1 - o->beta1);
                double vv = S1[q] + (gj * gj - S1[q]) * (1 - o->beta2);
                S0[q] = (float)mm;
                S1[q] = (float)vv;
                double mh = u_t1 * mm / (1 - up_t1) + (1 - u_t) * gj / (1 - up_t);
                double vh = vv / (1 - b2p);
                p[j] -= (float)(lr * mh / (sqrt(vh) + o->eps));
                break;
            }
            }
        }
    }
    m->iterations++;
}
