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

/* Per-step constants (struct ddts__nn_opt_k, nn.h), in float as Keras computes. */

/* NOLINTBEGIN(clang-analyzer-core.NullDereference): s0..s2 are the state vectors
 * that ddts__nn_opt_alloc allocates for each kind that reads them (n_state_vec);
 * the analyzer cannot see that invariant across functions. */
/* Adam's update of parameter j (a: the step's rate, c1 = 1 - beta1, c2 = 1 - beta2). */
static inline void adam_one(float *restrict p, const float *restrict g, float *restrict s0,
                            float *restrict s1, long j, float a, float c1, float c2, float eps)
{
    float gj = g[j];
    float mm = s0[j] + (gj - s0[j]) * c1;
    float vv = s1[j] + (gj * gj - s1[j]) * c2;
    s0[j] = mm;
    s1[j] = vv;
    p[j] -= a * mm / (sqrtf(vv) + eps);
}

/* One optimizer update of n parameters p with gradients g and state s0..s2,
 * each a straight loop the compiler can vectorise. */
static void update(const struct nn_opt *o, float *restrict p, const float *restrict g,
                   float *restrict s0, float *restrict s1, float *restrict s2, size_t n,
                   const struct ddts__nn_opt_k *k, int nt)
{
    const long N = (long)n;
    const float lr = k->lr, b1 = k->b1, b2 = k->b2, eps = k->eps, mom = k->mom, rho = k->rho;
    switch (o->kind) {
    case OPT_SGD:
        if (mom > 0 && o->nesterov) {
            for (long j = 0; j < N; j++) {
                float v = mom * s0[j] - lr * g[j];
                s0[j] = v;
                p[j] += mom * v - lr * g[j];
            }
        } else if (mom > 0) {
            for (long j = 0; j < N; j++) {
                float v = mom * s0[j] - lr * g[j];
                s0[j] = v;
                p[j] += v;
            }
        } else {
            for (long j = 0; j < N; j++)
                p[j] -= lr * g[j];
        }
        break;
    case OPT_ADAM:
    case OPT_ADAMW: {
        const float a = k->alpha_adam, c1 = 1 - b1, c2 = 1 - b2;
        if (o->amsgrad) {
            for (long j = 0; j < N; j++) {
                float gj = g[j];
                float mm = s0[j] + (gj - s0[j]) * c1;
                float vv = s1[j] + (gj * gj - s1[j]) * c2;
                s0[j] = mm;
                s1[j] = vv;
                vv = vv > s2[j] ? vv : s2[j];
                s2[j] = vv;
                p[j] -= a * mm / (sqrtf(vv) + eps);
            }
            break;
        }
        /* Memory-bound (7 streams of n floats per step, 15 % of an MLP step at
         * one thread): split from 64k parameters, where each thread's half
         * still outweighs waking it; elementwise, so bit-identical for any
         * thread count. No region on one thread (libgomp makes a system call
         * at the end of every region). */
        if (nt > 1 && N > 65536) {
#pragma omp parallel for num_threads(nt) schedule(static)
            for (long j = 0; j < N; j++)
                adam_one(p, g, s0, s1, j, a, c1, c2, eps);
        } else {
            for (long j = 0; j < N; j++)
                adam_one(p, g, s0, s1, j, a, c1, c2, eps);
        }
        break;
    }
    case OPT_RMSPROP: {
        float *mo = mom > 0 ? s1 : NULL;
        float *avg = o->centered ? (mo ? s2 : s1) : NULL;
        for (long j = 0; j < N; j++) {
            float gj = g[j];
            float v = rho * s0[j] + (1 - rho) * gj * gj;
            s0[j] = v;
            float den = v;
            if (avg) {
                float av = rho * avg[j] + (1 - rho) * gj;
                avg[j] = av;
                den = v - av * av;
            }
            float inc = lr * gj / sqrtf(den + eps);
            if (mo) {
                float mv = mom * mo[j] + inc;
                mo[j] = mv;
                p[j] -= mv;
            } else {
                p[j] -= inc;
            }
        }
        break;
    }
    case OPT_ADAGRAD:
        for (long j = 0; j < N; j++) {
            float acc = s0[j] + g[j] * g[j];
            s0[j] = acc;
            p[j] -= lr * g[j] / sqrtf(acc + eps);
        }
        break;
    case OPT_ADADELTA:
        for (long j = 0; j < N; j++) {
            float gj = g[j];
            float ag = rho * s0[j] + (1 - rho) * gj * gj;
            s0[j] = ag;
            float d = sqrtf(s1[j] + eps) / sqrtf(ag + eps) * gj;
            s1[j] = rho * s1[j] + (1 - rho) * d * d;
            p[j] -= lr * d;
        }
        break;
    case OPT_ADAMAX:
        for (long j = 0; j < N; j++) {
            float gj = g[j];
            float mm = b1 * s0[j] + (1 - b1) * gj;
            float ag = fabsf(gj), u = b2 * s1[j];
            u = ag > u ? ag : u;
            s0[j] = mm;
            s1[j] = u;
            p[j] -= k->lr_adamax * mm / (u + eps);
        }
        break;
    case OPT_NADAM:
        for (long j = 0; j < N; j++) {
            float gj = g[j];
            float mm = s0[j] + (gj - s0[j]) * (1 - b1);
            float vv = s1[j] + (gj * gj - s1[j]) * (1 - b2);
            s0[j] = mm;
            s1[j] = vv;
            float mh = k->u_t1 * mm / (1 - k->up_t1) + (1 - k->u_t) * gj / (1 - k->up_t);
            float vh = vv / (1 - k->b2p);
            p[j] -= lr * mh / (sqrtf(vh) + eps);
        }
        break;
    }
}
/* NOLINTEND(clang-analyzer-core.NullDereference) */

/* g += the regularization gradient of p, n values of weight w. */
static void add_reg(const struct nn_weight *w, const float *p, float *g, size_t n)
{
    for (size_t j = 0; j < n; j++)
        g[j] += (float)(2 * w->reg.l2 * p[j] + w->reg.l1 * (p[j] > 0 ? 1 : (p[j] < 0 ? -1 : 0)));
}

int ddts__nn_opt_splits(const struct ddts_model *m)
{
    return !(m->opt.clipnorm > 0) && !(m->opt.global_clipnorm > 0);
}

void ddts__nn_opt_consts(const struct ddts_model *m, struct ddts__nn_opt_k *k)
{
    const struct nn_opt *o = &m->opt;
    double t = (double)m->iterations + 1;
    double lr = o->lr;
    /* Nadam's momentum schedule (Keras): u_t = b1 (1 - 0.5 * 0.96^(0.004 t)). */
    double u_t = 0, u_t1 = 0, up_t = 1, up_t1 = 1;
    if (o->kind == OPT_NADAM) {
        const float *up = o->state + o->n_state - 1;
        u_t = o->beta1 * (1 - 0.5 * pow(0.96, 0.004 * t));
        u_t1 = o->beta1 * (1 - 0.5 * pow(0.96, 0.004 * (t + 1)));
        /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): Nadam always has state */
        up_t = (double)*up * u_t;
        up_t1 = up_t * u_t1;
    }
    double b1p = pow(o->beta1, t), b2p = pow(o->beta2, t);
    *k = (struct ddts__nn_opt_k){
        .lr = (float)lr,
        .b1 = (float)o->beta1,
        .b2 = (float)o->beta2,
        .eps = (float)o->eps,
        .mom = (float)o->momentum,
        .rho = (float)o->rho,
        .alpha_adam = (float)(lr * sqrt(1 - b2p) / (1 - b1p)),
        .lr_adamax = (float)(lr / (1 - b1p)),
        .u_t = (float)u_t,
        .u_t1 = (float)u_t1,
        .up_t = (float)up_t,
        .up_t1 = (float)up_t1,
        .b2p = (float)b2p,
        .gscale = 1,
        .reg_here = 1,
        .nadam_p = up_t,
    };
}

void ddts__nn_opt_apply(struct ddts_model *m, const struct ddts__nn_opt_k *k, size_t lo, size_t hi,
                        int nt)
{
    struct nn_opt *o = &m->opt;
    const size_t P = m->n_params;
    float *S0 = o->state && o->n_state_vec > 0 ? o->state : NULL,
          *S1 = o->state && o->n_state_vec > 1 ? o->state + P : NULL,
          *S2 = o->state && o->n_state_vec > 2 ? o->state + 2 * P : NULL;
    for (size_t wi = 0; wi < m->n_w; wi++) {
        const struct nn_weight *w = &m->w[wi];
        /* The part of the weight inside [lo, hi). */
        size_t off = w->off > lo ? w->off : lo, end = w->off + w->n < hi ? w->off + w->n : hi;
        if (!w->trainable || off >= end)
            continue;
        float *p = m->params + off, *g = m->grads + off;
        const size_t n = end - off;
        if (k->reg_here && (w->reg.l1 != 0 || w->reg.l2 != 0))
            add_reg(w, p, g, n);
        double sc = k->gscale;
        if (o->clipnorm > 0) { /* a whole weight: ddts__nn_opt_splits */
            double s = 0;
            for (size_t j = 0; j < n; j++)
                s += (double)g[j] * g[j];
            s = sqrt(s) * k->gscale;
            if (s > o->clipnorm)
                sc *= o->clipnorm / s;
        }
        const float cv = (float)o->clipvalue;
        if (o->weight_decay > 0) /* Keras 3: decoupled decay on every optimizer */
            for (size_t j = 0; j < n; j++)
                p[j] -= (float)(p[j] * o->weight_decay * o->lr);
        /* The scaled, clipped gradient replaces g in place (g is rewritten
         * by the next backward pass). */
        if (sc != 1.0 || cv > 0)
            for (size_t j = 0; j < n; j++) {
                float gj = (float)(g[j] * sc);
                if (cv > 0)
                    gj = gj > cv ? cv : (gj < -cv ? -cv : gj);
                g[j] = gj;
            }
        update(o, p, g, S0 ? S0 + off : NULL, S1 ? S1 + off : NULL, S2 ? S2 + off : NULL, n, k, nt);
    }
}

void ddts__nn_opt_advance(struct ddts_model *m, const struct ddts__nn_opt_k *k)
{
    struct nn_opt *o = &m->opt;
    if (o->kind == OPT_NADAM)
        /* NOLINTNEXTLINE(clang-analyzer-core.NullDereference): Nadam always has state */
        o->state[o->n_state - 1] = (float)k->nadam_p;
    m->iterations++;
}

/* Adds regularization gradients, clips, and applies one update. */
void ddts__nn_opt_step(struct ddts_model *m)
{
    struct ddts__nn_opt_k k;
    ddts__nn_opt_consts(m, &k);
    if (m->opt.global_clipnorm > 0) {
        /* Regularization gradients first: they are part of the loss's gradient. */
        for (size_t wi = 0; m->has_reg && wi < m->n_w; wi++) {
            const struct nn_weight *w = &m->w[wi];
            if (w->trainable && (w->reg.l1 != 0 || w->reg.l2 != 0))
                add_reg(w, m->params + w->off, m->grads + w->off, w->n);
        }
        k.reg_here = 0;
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
        if (s > m->opt.global_clipnorm)
            k.gscale = m->opt.global_clipnorm / s;
    }
    ddts__nn_opt_apply(m, &k, 0, m->n_params, m->threads);
    ddts__nn_opt_advance(m, &k);
}
