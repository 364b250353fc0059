/* Weight initializers with Keras' definitions, from one seeded RNG. */
#include <math.h>
#include <string.h>

#include "nn/nn.h"

/* Fans as Keras computes them from the weight shape: (in, out) matrices; (kh, kw, cin, cout)
 * kernels with the receptive field multiplying both. */
static void fans(const struct nn_weight *w, double *fan_in, double *fan_out)
{
    if (w->rank < 1) {
        *fan_in = *fan_out = 1;
    } else if (w->rank == 1) {
        *fan_in = *fan_out = (double)w->shape[0];
    } else if (w->rank == 2) {
        *fan_in = (double)w->shape[0];
        *fan_out = (double)w->shape[1];
    } else {
        double rf = 1;
        for (int i = 0; i < w->rank - 2; i++)
            rf *= (double)w->shape[i];
        *fan_in = (double)w->shape[w->rank - 2] * rf;
        *fan_out = (double)w->shape[w->rank - 1] * rf;
    }
}

/* Normal truncated to two standard deviations (resampling), as TF does. */
static double trunc_normal(struct ddts_rng *rng)
{
    for (;;) {
        double v = ddts_rng_normal(rng);
        if (v >= -2.0 && v <= 2.0)
            return v;
    }
}

static enum ddts_status orthogonal(float *p, const struct nn_weight *w, double gain,
                                   struct ddts_rng *rng, struct ddts_error *err)
{
    /* Keras: QR of a (rows, cols) normal matrix, rows = prod(shape[:-1]);
     * here Gram-Schmidt on the longer side's vectors, which gives the same
     * distribution (Haar) without LAPACK. */
    size_t cols = w->rank > 0 ? (size_t)w->shape[w->rank - 1] : 1;
    size_t rows = cols ? w->n / cols : 0;
    int tr = rows < cols; /* orthonormalise rows instead of columns */
    size_t nv = tr ? rows : cols, len = tr ? cols : rows;
    double *q = ddts_mallocarray(nv * len, sizeof *q);
    if (q == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "init: out of memory");
    for (size_t i = 0; i < nv * len; i++)
        q[i] = ddts_rng_normal(rng);
    for (size_t v = 0; v < nv; v++) {
        double *qv = q + v * len;
        for (int pass = 0; pass < 2; pass++) {
            for (size_t u = 0; u < v; u++) {
                double *qu = q + u * len, d = 0;
                for (size_t t = 0; t < len; t++)
                    d += qu[t] * qv[t];
                for (size_t t = 0; t < len; t++)
                    qv[t] -= d * qu[t];
            }
        }
        double nn = 0;
        for (size_t t = 0; t < len; t++)
            nn += qv[t] * qv[t];
        nn = sqrt(nn);
        for (size_t t = 0; t < len; t++)
            qv[t] = nn > 0 ? qv[t] / nn : 0;
    }
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < cols; c++)
            p[r * cols + c] = (float)(gain * (tr ? q[r * len + c] : q[c * len + r]));
    ddts_free(q);
    return DDTS_OK;
}

enum ddts_status ddts__nn_init_weight(struct ddts_model *m, struct nn_weight *w,
                                      struct ddts_rng *rng, struct ddts_error *err)
{
    float *p = m->params + w->off;
    const struct nn_init *in = &w->init;
    switch (in->kind) {
    case INIT_ZEROS:
        memset(p, 0, w->n * sizeof *p);
        break;
    case INIT_ONES:
        for (size_t i = 0; i < w->n; i++)
            p[i] = 1;
        break;
    case INIT_CONSTANT:
        for (size_t i = 0; i < w->n; i++)
            p[i] = (float)in->a;
        break;
    case INIT_RANDOM_NORMAL:
        for (size_t i = 0; i < w->n; i++)
            p[i] = (float)(in->a + in->b * ddts_rng_normal(rng));
        break;
    case INIT_RANDOM_UNIFORM:
        for (size_t i = 0; i < w->n; i++)
            p[i] = (float)(in->a + (in->b - in->a) * ddts_rng_uniform(rng));
        break;
    case INIT_TRUNCATED_NORMAL:
        for (size_t i = 0; i < w->n; i++)
            p[i] = (float)(in->a + in->b * trunc_normal(rng));
        break;
    case INIT_VARIANCE_SCALING: {
        double fi, fo;
        fans(w, &fi, &fo);
        double fan = in->mode == FAN_IN ? fi : in->mode == FAN_OUT ? fo : (fi + fo) / 2;
        double scale = in->a / (fan > 1 ? fan : 1);
        if (in->dist == DIST_UNIFORM) {
            double lim = sqrt(3.0 * scale);
            for (size_t i = 0; i < w->n; i++)
                p[i] = (float)(-lim + 2 * lim * ddts_rng_uniform(rng));
        } else if (in->dist == DIST_NORMAL) {
            double sd = sqrt(scale);
            for (size_t i = 0; i < w->n; i++)
                p[i] = (float)(sd * ddts_rng_normal(rng));
        } else {
            /* 0.879... is the stddev of a unit normal truncated to [-2, 2]. */
            double sd = sqrt(scale) / 0.87962566103423978;
            for (size_t i = 0; i < w->n; i++)
                p[i] = (float)(sd * trunc_normal(rng));
        }
        break;
    }
    case INIT_ORTHOGONAL:
        return orthogonal(p, w, in->a, rng, err);
    case INIT_IDENTITY: {
        memset(p, 0, w->n * sizeof *p);
        if (w->rank == 2)
            for (int64_t i = 0; i < w->shape[0] && i < w->shape[1]; i++)
                p[i * w->shape[1] + i] = (float)in->a;
        break;
    }
    }
    if (in->unit_forget) /* Keras' LSTM unit_forget_bias: (i, f, c, o) blocks, f = 1 */
        for (size_t i = w->n / 4; i < w->n / 2; i++)
            p[i] = 1;
    return DDTS_OK;
}
