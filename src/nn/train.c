/* compile, fit, evaluate, predict: the training loop over planned buffers. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "nn/nn.h"
#include "tensor/tensor.h"

static int loss_is_ce(enum nn_loss_kind k)
{
    return k == LOSS_SPARSE_CCE || k == LOSS_CCE || k == LOSS_BCE;
}

static enum ddts_status parse_metrics(const char *s, int *out, struct ddts_error *err)
{
    *out = 0;
    while (*s) {
        const char *e = strchr(s, ',');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        while (n > 0 && *s == ' ') {
            s++;
            n--;
        }
        while (n > 0 && s[n - 1] == ' ')
            n--;
        if (n == 0) {
            /* an empty item: nothing */
        } else if ((n == 8 && strncmp(s, "accuracy", 8) == 0) ||
                   (n == 3 && strncmp(s, "acc", 3) == 0)) {
            *out |= MET_ACCURACY;
        } else if (n == 3 && strncmp(s, "mse", 3) == 0) {
            *out |= MET_MSE;
        } else if (n == 3 && strncmp(s, "mae", 3) == 0) {
            *out |= MET_MAE;
        } else {
            return ddts_error_set(err, DDTS_EUNSUPPORTED, "metric '%.*s' is not supported", (int)n,
                                  s);
        }
        if (!e)
            break;
        s = e + 1;
    }
    return DDTS_OK;
}

enum ddts_status ddts_model_compile(struct ddts_model *m, const struct ddts_compile_options *o,
                                    struct ddts_error *err)
{
    struct ddts__nn_tc tc;
    memset(&tc, 0, sizeof tc);
    enum ddts_status st;
    if (o->training_config_json) {
        st = ddts__nn_parse_training_config(o->training_config_json, m->keras3, &tc, err);
        if (st != DDTS_OK)
            return st;
    }
    struct nn_loss loss;
    if (o->loss) {
        if (ddts__nn_loss_parse(o->loss, &loss) != 0)
            return ddts_error_set(err, DDTS_EUNSUPPORTED, "loss '%s' is not supported", o->loss);
        struct nn_loss tl;
        if (tc.have_loss && ddts__nn_loss_parse(tc.loss, &tl) == 0 && tl.kind == loss.kind) {
            loss.from_logits = tc.from_logits;
            loss.label_smoothing = tc.label_smoothing;
            loss.delta = tc.delta;
        }
    } else if (tc.have_loss) {
        if (ddts__nn_loss_parse(tc.loss, &loss) != 0)
            return ddts_error_set(err, DDTS_EUNSUPPORTED,
                                  "loss '%s' of the model's training_config is not supported",
                                  tc.loss);
        loss.from_logits = tc.from_logits;
        loss.label_smoothing = tc.label_smoothing;
        loss.delta = tc.delta > 0 ? tc.delta : 1.0;
    } else {
        return ddts_error_set(err, DDTS_EINVAL, "no loss given and the model has no compiled loss");
    }
    struct nn_opt opt;
    if (o->optimizer) {
        if (ddts__nn_opt_parse(o->optimizer, &opt) != 0)
            return ddts_error_set(err, DDTS_EUNSUPPORTED, "optimizer '%s' is not supported",
                                  o->optimizer);
    } else if (tc.have_opt) {
        opt = tc.optc;
    } else {
        (void)ddts__nn_opt_parse("adam", &opt);
    }
    if (o->learning_rate > 0)
        opt.lr = o->learning_rate;
    int metrics;
    if (o->metrics) {
        st = parse_metrics(o->metrics, &metrics, err);
        if (st != DDTS_OK)
            return st;
    } else if (tc.have_metrics) {
        metrics = tc.metrics;
    } else {
        metrics = loss_is_ce(loss.kind) ? MET_ACCURACY : 0;
    }
    struct nn_node *out = &m->nodes[m->output_node];
    /* A scalar output (rank 0 per sample, e.g. batch_input_shape [null]) has one value. */
    size_t K = out->rank > 0 ? (size_t)out->shape[out->rank - 1] : 1;
    ddts_free(m->opt.state);
    m->opt = opt;
    m->opt.state = NULL;
    m->loss = loss;
    m->loss_name = ddts__nn_loss_name(loss.kind);
    m->opt_name = ddts__nn_opt_name(opt.kind);
    m->metrics = metrics;
    m->acc_kind = ACC_NONE;
    if (metrics & MET_ACCURACY) {
        if (loss.kind == LOSS_SPARSE_CCE)
            m->acc_kind = ACC_SPARSE;
        else if (loss.kind == LOSS_BCE || K == 1)
            m->acc_kind = ACC_BINARY;
        else
            m->acc_kind = ACC_CATEGORICAL;
    }
    m->fused = !loss.from_logits && (((loss.kind == LOSS_SPARSE_CCE || loss.kind == LOSS_CCE) &&
                                      out->act.kind == ACT_SOFTMAX) ||
                                     (loss.kind == LOSS_BCE && out->act.kind == ACT_SIGMOID));
    m->threads = o->threads > 0 ? o->threads : 1;
    m->best_valid = 0; /* a new training: no best weights yet */
    st = ddts__nn_opt_alloc(m, err);
    if (st != DDTS_OK)
        return st;
    m->compiled = 1;
    return DDTS_OK;
}

/* ---- data ---- */
struct data {
    const struct ddts_dataset *d;
    size_t n;       /* samples */
    size_t x_count; /* elements per sample in x */
    size_t y_count;
};

static enum ddts_status check_data(struct ddts_model *m, const struct ddts_dataset *d, int need_y,
                                   struct data *o, const char *what, struct ddts_error *err)
{
    memset(o, 0, sizeof *o);
    o->d = d;
    if (d == NULL || d->x == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "%s: no x data", what);
    const struct ddts_array *x = d->x;
    enum ddts_status st = ddts_model_bind_input(m, x, err);
    if (st != DDTS_OK)
        return st;
    size_t nx = x->rank > 0 ? (size_t)x->shape[0] : 1;
    o->x_count = ddts_array_sample_count(x);
    size_t in_size = ddts_model_input_size(m);
    if (o->x_count != in_size) {
        char b1[128];
        ddts_array_shape_str(x, b1, sizeof b1);
        return ddts_error_set(err, DDTS_ESHAPE,
                              "%s: x of shape %s has %zu elements per sample, the model's input "
                              "needs %zu",
                              what, b1, o->x_count, in_size);
    }
    o->n = d->idx ? d->n : (d->n ? d->n : nx);
    if (!d->idx && o->n > nx)
        return ddts_error_set(err, DDTS_EINVAL, "%s: %zu samples requested, x has %zu", what, o->n,
                              nx);
    if (d->idx)
        for (size_t i = 0; i < o->n; i++)
            if (d->idx[i] >= nx)
                return ddts_error_set(err, DDTS_EINVAL, "%s: sample index %u out of range (%zu)",
                                      what, d->idx[i], nx);
    if (need_y) {
        if (d->y == NULL)
            return ddts_error_set(err, DDTS_EINVAL, "%s: no y data", what);
        size_t ny = d->y->rank > 0 ? (size_t)d->y->shape[0] : 1;
        if (ny != nx)
            return ddts_error_set(err, DDTS_ESHAPE, "%s: x has %zu samples, y has %zu", what, nx,
                                  ny);
        o->y_count = ddts_array_sample_count(d->y);
        const struct nn_node *out = &m->nodes[m->output_node];
        /* A scalar output (rank 0 per sample, e.g. batch_input_shape [null]) has one value. */
        size_t K = out->rank > 0 ? (size_t)out->shape[out->rank - 1] : 1;
        size_t want = m->loss.kind == LOSS_SPARSE_CCE ? out->size / K : out->size;
        if (o->y_count != want) {
            char b1[128];
            ddts_array_shape_str(d->y, b1, sizeof b1);
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "%s: y of shape %s has %zu elements per sample; the model's "
                                  "output with loss %s needs %zu",
                                  what, b1, o->y_count, m->loss_name, want);
        }
    }
    return DDTS_OK;
}

static inline size_t sample_at(const struct ddts_dataset *d, const uint32_t *order, size_t k)
{
    if (order)
        return order[k];
    return d->idx ? d->idx[k] : k;
}

/* Copies sample s of the batch (sample start + s of the order) into row s
 * of the input and (with_y) target buffers. */
static void gather_one(struct ddts_model *m, const struct data *dt, const uint32_t *order,
                       size_t start, size_t s, int with_y)
{
    const struct ddts_dataset *d = dt->d;
    size_t xc = dt->x_count, yc = dt->y_count;
    size_t i = sample_at(d, order, start + s);
    /* A packed sample: each input's part (in input order) into its node. */
    size_t off = 0;
    for (int k = 0; k < m->n_inputs; k++) {
        const struct nn_node *in = &m->nodes[m->input_nodes[k]];
        size_t n = in->size;
        float *xr = in->y + s * n;
        ddts_array_to_f32(d->x, i * xc + off, n, xr);
        if (d->x_offset != NULL && d->x_scale != NULL)
            for (size_t j = 0; j < n; j++)
                xr[j] = (xr[j] - d->x_offset[off + j]) * d->x_scale[off + j];
        off += n;
    }
    if (with_y) {
        float *yr = m->target + s * yc;
        ddts_array_to_f32(d->y, i * yc, yc, yr);
        if (d->y_offset != NULL && d->y_scale != NULL)
            for (size_t j = 0; j < yc; j++)
                yr[j] = (yr[j] - d->y_offset[j]) * d->y_scale[j];
    }
}

/* The first of the targets [lo, hi) that is not a class index of a sparse
 * crossentropy, or -1 (any other loss: -1). */
static long bad_label(const struct ddts_model *m, size_t lo, size_t hi)
{
    if (m->loss.kind != LOSS_SPARSE_CCE)
        return -1;
    const struct nn_node *out = &m->nodes[m->output_node];
    float K = (float)out->shape[out->rank - 1];
    for (size_t s = lo; s < hi; s++) {
        float v = m->target[s];
        if (!(v >= 0 && v < K && v == floorf(v)))
            return (long)s;
    }
    return -1;
}

static enum ddts_status label_error(const struct ddts_model *m, const struct data *dt,
                                    const uint32_t *order, size_t start, long bad,
                                    struct ddts_error *err)
{
    const struct nn_node *out = &m->nodes[m->output_node];
    return ddts_error_set(
        err, DDTS_EINVAL, "label %g of sample %zu is not a class index in [0, %g)",
        (double)m->target[bad], sample_at(dt->d, order, start + (size_t)bad / dt->y_count),
        (double)out->shape[out->rank - 1]);
}

/* Copies samples [start, start+b) of the order into the input and target buffers. */
static enum ddts_status gather(struct ddts_model *m, const struct data *dt, const uint32_t *order,
                               size_t start, size_t b, int with_y, struct ddts_error *err)
{
    if (m->threads > 1 && b * dt->x_count > 65536) {
#pragma omp parallel for num_threads(m->threads) schedule(static)
        for (long s = 0; s < (long)b; s++)
            gather_one(m, dt, order, start, (size_t)s, with_y);
    } else { /* no region on one thread: libgomp makes a system call at its end */
        for (size_t s = 0; s < b; s++)
            gather_one(m, dt, order, start, s, with_y);
    }
    long bad = with_y ? bad_label(m, 0, b * dt->y_count) : -1;
    return bad >= 0 ? label_error(m, dt, order, start, bad, err) : DDTS_OK;
}

static double reg_loss(const struct ddts_model *m)
{
    double r = 0;
    if (!m->has_reg)
        return 0;
    for (size_t i = 0; i < m->n_w; i++) {
        const struct nn_weight *w = &m->w[i];
        if (!w->trainable || (w->reg.l1 == 0 && w->reg.l2 == 0))
            continue;
        const float *p = m->params + w->off;
        double s1 = 0, s2 = 0;
        for (size_t j = 0; j < w->n; j++) {
            s1 += fabs(p[j]);
            s2 += (double)p[j] * p[j];
        }
        r += w->reg.l1 * s1 + w->reg.l2 * s2;
    }
    return r;
}

/* Log names, without and with the "val_" prefix. */
static const char *const NAMES[2][4] = {{"loss", "accuracy", "mse", "mae"},
                                        {"val_loss", "val_accuracy", "val_mse", "val_mae"}};

struct sums {
    double loss, acc, mse, mae;
    size_t samples, rows;
};

static void fill_logs(const struct ddts_model *m, const struct sums *s, int val,
                      struct ddts_logs *l)
{
    double ns = s->samples ? (double)s->samples : 1, nr = s->rows ? (double)s->rows : 1;
    l->names[l->n] = NAMES[val][0];
    l->values[l->n++] = s->loss / ns;
    if (m->acc_kind != ACC_NONE) {
        l->names[l->n] = NAMES[val][1];
        l->values[l->n++] = s->acc / nr;
    }
    if (m->metrics & MET_MSE) {
        l->names[l->n] = NAMES[val][2];
        l->values[l->n++] = s->mse / nr;
    }
    if (m->metrics & MET_MAE) {
        l->names[l->n] = NAMES[val][3];
        l->values[l->n++] = s->mae / nr;
    }
}

/* A batch's loss figures (tot, reg: its regularization loss) into the sums. */
static void add_sums(struct ddts_model *m, struct sums *s, const struct ddts__nn_loss_sums *tot,
                     double reg, size_t b)
{
    /* The figure: in y's own units when the data asks for them, else the loss. */
    m->units_loss = tot->units / (double)tot->rows;
    s->loss += (m->units_loss + reg) * (double)b;
    s->samples += b;
    s->rows += tot->rows;
    s->acc += tot->acc;
    s->mse += tot->mse;
    s->mae += tot->mae;
}

/* One forward pass (+ loss) over a batch, adding to the sums. */
static double batch_loss(struct ddts_model *m, size_t b, int grad, struct sums *s)
{
    ddts__nn_forward(m, b);
    double reg = reg_loss(m);
    struct ddts__nn_loss_sums tot = {0};
    ddts__nn_loss_rows(m, b, b, grad, &tot);
    add_sums(m, s, &tot, reg, b);
    return tot.loss / (double)tot.rows + reg;
}

/* ---- the batch split (nn.h, struct nn_split; docs/engine.md) ---- */

/* The fewest samples per thread that take the batch split: with fewer, the
 * weights that every thread packs again for its GEMMs cost more than the
 * synchronisations saved. */
#define SPLIT_MIN_ROWS 16

/* Whether a batch of b samples takes the batch split: planned for this
 * model and thread count (layers that work on each sample alone), at least
 * SPLIT_MIN_ROWS samples per thread, and the 10^6 forward multiply-adds
 * below which one GEMM is not split either (ddts__tensor_sgemm_par). */
static int split_applies(const struct ddts_model *m, size_t b)
{
    return m->split.n > 1 && m->split.n == m->threads && !m->no_batch_split &&
           b >= (size_t)m->split.n * SPLIT_MIN_ROWS && (double)b * m->split.macs >= 1e6;
}

/* Thread t of nt's block [lo, hi) of n. */
static void block(size_t n, int t, int nt, size_t *lo, size_t *hi)
{
    *lo = n * (size_t)t / (size_t)nt;
    *hi = n * (size_t)(t + 1) / (size_t)nt;
}

/* Thread t's part of a batch-split pass over samples [start, start + b) of
 * the order: its block's gather, forward, loss and (train) backward, in its
 * view of the model. */
static void split_rows(struct ddts_model *m, const struct data *dt, const uint32_t *order,
                       size_t start, size_t b, int train, int t, int nt)
{
    size_t lo, hi, yc = dt->y_count;
    block(b, t, nt, &lo, &hi);
    struct nn_split_part *p = &m->split.parts[t];
    memset(p, 0, sizeof *p);
    for (size_t s = lo; s < hi; s++)
        gather_one(m, dt, order, start, s, 1);
    p->bad = bad_label(m, lo * yc, hi * yc);
    if (train && m->split.draws) {
        /* Every node's draws for the whole batch in node order, as one
         * thread makes them: the masks do not depend on the thread count. */
        if (t == 0)
            ddts__nn_draw(m, b);
#pragma omp barrier
    }
    if (p->bad >= 0)
        return; /* the batch fails: nothing may read that label */
    struct ddts_model *v = ddts__nn_split_view(m, t, lo);
    ddts__nn_forward(v, hi - lo);
    ddts__nn_loss_rows(v, hi - lo, b, train, &p->sums);
    if (train)
        ddts__nn_backward(v, hi - lo);
}

/* The nt threads' figures summed in thread order; *bad: the first bad label
 * of the batch, or -1. */
static void split_total(const struct ddts_model *m, int nt, struct ddts__nn_loss_sums *tot,
                        long *bad)
{
    memset(tot, 0, sizeof *tot);
    *bad = -1;
    for (int t = 0; t < nt; t++) {
        const struct nn_split_part *p = &m->split.parts[t];
        if (*bad < 0)
            *bad = p->bad;
        tot->loss += p->sums.loss;
        tot->units += p->sums.units;
        tot->acc += p->sums.acc;
        tot->mse += p->sums.mse;
        tot->mae += p->sums.mae;
        tot->rows += p->sums.rows;
    }
}

/* Thread t's slice of the parameters (whole 64-byte lines): the threads'
 * weight gradients summed in thread order into m->grads (thread 0's), then
 * the update of the slice when k is given. */
static void split_update(struct ddts_model *m, int t, int nt, const struct ddts__nn_opt_k *k)
{
    size_t P = m->n_params, lo, hi;
    block(P, t, nt, &lo, &hi);
    lo = lo / 16 * 16;
    hi = t + 1 == nt ? P : hi / 16 * 16;
    float *restrict g = m->grads;
    for (int u = 1; u < nt; u++) {
        const float *restrict gu = m->split.grads + (size_t)(u - 1) * P;
        for (size_t j = lo; j < hi; j++)
            g[j] += gu[j];
    }
    if (k != NULL)
        ddts__nn_opt_apply(m, k, lo, hi, 1);
}

/* A batch-split pass as one parallel region; in training, after one barrier,
 * the summed gradients and (k given) the update, unless the batch failed (a
 * bad label, a loss that is not finite: every thread decides alike from the
 * same sums). reg: the regularization loss. Returns the team's size. */
static int split_region(struct ddts_model *m, const struct data *dt, const uint32_t *order,
                        size_t start, size_t b, int train, const struct ddts__nn_opt_k *k,
                        double reg)
{
    int team = 1;
#pragma omp parallel num_threads(m->split.n)
    {
        int t = omp_get_thread_num(), nt = omp_get_num_threads();
        if (t == 0)
            team = nt;
        split_rows(m, dt, order, start, b, train, t, nt);
        if (train) {
#pragma omp barrier
            struct ddts__nn_loss_sums tot;
            long bad;
            split_total(m, nt, &tot, &bad);
            if (bad < 0 && isfinite(tot.loss / (double)tot.rows + reg))
                split_update(m, t, nt, k);
        }
    }
    return team;
}

/* The sums of a batch-split pass into *s: DDTS_EINVAL for a bad label;
 * *loss: the batch's loss with reg. */
static enum ddts_status split_sums(struct ddts_model *m, const struct data *dt,
                                   const uint32_t *order, size_t start, size_t b, int nt,
                                   double reg, struct sums *s, double *loss, struct ddts_error *err)
{
    struct ddts__nn_loss_sums tot;
    long bad;
    split_total(m, nt, &tot, &bad);
    if (bad >= 0)
        return label_error(m, dt, order, start, bad, err);
    add_sums(m, s, &tot, reg, b);
    *loss = tot.loss / (double)tot.rows + reg;
    return DDTS_OK;
}

/* Whether the data's figures are in y's own units (ddts_dataset.figures_in_y_units). */
static int wants_units(const struct ddts_dataset *d)
{
    return d != NULL && d->figures_in_y_units && d->y_offset != NULL && d->y_scale != NULL;
}

/* The figures of the batches that follow: in dt's y units when it asks for them. */
static void use_units(struct ddts_model *m, const struct data *dt)
{
    int on = wants_units(dt->d);
    m->units_offset = on ? dt->d->y_offset : NULL;
    m->units_scale = on ? dt->d->y_scale : NULL;
}

/* Scratch for figures in y's units: two rows of the output per thread of
 * the batch split (before any step, after planning). */
static enum ddts_status units_scratch(struct ddts_model *m, const struct ddts_dataset *a,
                                      const struct ddts_dataset *b, struct ddts_error *err)
{
    const struct nn_node *o = &m->nodes[m->output_node];
    size_t need = 2 * (size_t)(o->rank > 0 ? o->shape[o->rank - 1] : 1) *
                  (size_t)(m->split.n > 1 ? m->split.n : 1);
    if ((!wants_units(a) && !wants_units(b)) || m->units_row_n >= need)
        return DDTS_OK;
    float *row = ddts_mallocarray(need, sizeof(float));
    if (row == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    ddts_free(m->units_row);
    m->units_row = row;
    m->units_row_n = need;
    return DDTS_OK;
}

static enum ddts_status run_eval(struct ddts_model *m, const struct data *dt, size_t bs,
                                 struct sums *s, struct ddts_error *err)
{
    memset(s, 0, sizeof *s);
    m->training = 0;
    use_units(m, dt);
    for (size_t start = 0; start < dt->n; start += bs) {
        size_t b = dt->n - start < bs ? dt->n - start : bs;
        enum ddts_status st;
        double l;
        if (split_applies(m, b)) {
            double reg = reg_loss(m);
            int nt = split_region(m, dt, NULL, start, b, 0, NULL, reg);
            st = split_sums(m, dt, NULL, start, b, nt, reg, s, &l, err);
        } else if ((st = gather(m, dt, NULL, start, b, 1, err)) == DDTS_OK) {
            (void)batch_loss(m, b, 0, s);
        }
        if (st != DDTS_OK)
            return st;
    }
    return DDTS_OK;
}

/* A model already planned (by fit) evaluates and predicts in chunks of its
 * planned batch: a larger inference batch would re-plan every training
 * buffer (gradients, kept im2col) at the larger size, for no gain. */
static size_t inference_batch(const struct ddts_model *m, size_t bs, size_t target_size)
{
    return m->cap > 0 && bs > m->cap && target_size == m->target_size ? m->cap : bs;
}

static enum ddts_status prepare(struct ddts_model *m, const struct data *dt, size_t bs,
                                struct ddts_error *err)
{
    size_t ts = dt->y_count;
    if (ts != m->target_size) {
        m->target_size = ts;
        m->cap = 0; /* force a re-plan with the new target size */
    }
    return ddts__nn_plan(m, bs, err);
}

static enum ddts_status evaluate(struct ddts_model *m, const struct ddts_dataset *d, int batch_size,
                                 struct ddts_logs *out, struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    if (!m->compiled)
        return ddts_error_set(err, DDTS_ESTATE, "evaluate: the model is not compiled");
    struct data dt;
    enum ddts_status st = check_data(m, d, 1, &dt, "evaluate", err);
    if (st != DDTS_OK)
        return st;
    size_t bs = batch_size > 0 ? (size_t)batch_size : 32;
    if (bs > dt.n)
        bs = dt.n;
    if (dt.n == 0)
        return ddts_error_set(err, DDTS_EINVAL, "evaluate: no samples");
    bs = inference_batch(m, bs, dt.y_count);
    if ((st = prepare(m, &dt, bs, err)) != DDTS_OK ||
        (st = units_scratch(m, d, NULL, err)) != DDTS_OK)
        return st;
    struct sums s;
    st = run_eval(m, &dt, bs, &s, err);
    m->units_offset = m->units_scale = NULL; /* borrowed from d: not kept */
    if (st != DDTS_OK)
        return st;
    fill_logs(m, &s, 0, out);
    return DDTS_OK;
}

static enum ddts_status predict(struct ddts_model *m, const struct ddts_array *x, int batch_size,
                                struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    struct ddts_dataset d = {.x = x};
    struct data dt;
    enum ddts_status st = check_data(m, &d, 0, &dt, "predict", err);
    if (st != DDTS_OK)
        return st;
    size_t bs = inference_batch(m, batch_size > 0 ? (size_t)batch_size : 32, m->target_size);
    if ((st = ddts__nn_plan(m, bs, err)) != DDTS_OK)
        return st;
    const struct nn_node *o = &m->nodes[m->output_node];
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    if (o->rank + 1 > DDTS_MAX_ARRAY_RANK)
        return ddts_error_set(err, DDTS_ELIMIT, "predict: output rank %d", o->rank + 1);
    shape[0] = (int64_t)dt.n;
    for (int i = 0; i < o->rank; i++)
        shape[i + 1] = o->shape[i];
    struct ddts_array *a;
    if ((st = ddts_array_create(DDTS_F32, o->rank + 1, shape, &a, err)) != DDTS_OK)
        return st;
    m->training = 0;
    for (size_t start = 0; start < dt.n; start += bs) {
        size_t b = dt.n - start < bs ? dt.n - start : bs;
        (void)gather(m, &dt, NULL, start, b, 0, err);
        ddts__nn_forward(m, b);
        memcpy((float *)a->data + start * o->size, o->y, b * o->size * sizeof(float));
    }
    *out = a;
    return DDTS_OK;
}

void ddts_history_destroy(struct ddts_history *h)
{
    if (h == NULL)
        return;
    for (size_t i = 0; h->columns != NULL && i < h->n_columns; i++)
        ddts_free(h->columns[i]);
    ddts_free(h->columns);
    ddts_free(h->epochs);
    ddts_free(h->values);
    ddts_free(h);
}

static struct ddts_history *history_create(size_t n_epochs, const struct ddts_logs *proto)
{
    struct ddts_history *h = ddts_calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    h->best_epoch = -1;
    h->n_columns = proto->n;
    h->columns = ddts_calloc(proto->n ? proto->n : 1, sizeof *h->columns);
    h->epochs = ddts_calloc(n_epochs ? n_epochs : 1, sizeof *h->epochs);
    h->values =
        ddts_calloc((n_epochs ? n_epochs : 1) * (proto->n ? proto->n : 1), sizeof *h->values);
    if (h->columns == NULL || h->epochs == NULL || h->values == NULL) {
        ddts_history_destroy(h);
        return NULL;
    }
    for (size_t i = 0; i < proto->n; i++) {
        h->columns[i] = ddts_strdup(proto->names[i]);
        if (h->columns[i] == NULL) {
            ddts_history_destroy(h);
            return NULL;
        }
    }
    return h;
}

static int monitor_is_max(const char *name)
{
    return strstr(name, "acc") != NULL;
}

/* on_gradients_ready during the backward pass of one batch. */
struct ready {
    const struct ddts_fit_callbacks *cb;
    size_t from; /* grads[from, n_params) announced final so far */
    size_t b;    /* the batch's samples */
    int stopped; /* the callback returned non-zero: no more calls */
};

/* The lowest offset F with every weight slot at or above F final once node
 * ii's backward is done: the end of the highest slot of a node before ii
 * (those are still to come). Layers finish last to first, and the flat
 * layout follows the layers (ddts__nn_finalize), so F mostly falls as each
 * layer finishes; a layout that interleaves (a nested model's non-trainable
 * weights after its trainable ones) only holds F back. O(n_w) per layer
 * with weights. */
static void node_done(void *userdata, struct ddts_model *m, size_t ii)
{
    struct ready *r = userdata;
    if (r->stopped || (ii > 0 && m->nodes[ii].n_w == 0))
        return;
    size_t f = 0;
    for (size_t s = 0; s < m->n_w; s++)
        if ((size_t)m->w[s].node < ii && m->w[s].off + m->w[s].n > f)
            f = m->w[s].off + m->w[s].n;
    if (f >= r->from)
        return;
    r->from = f;
    if (r->cb->on_gradients_ready(r->cb->userdata, m, m->grads, m->n_params, f, r->b) != 0)
        r->stopped = 1;
}

/* The backward pass of a batch of b samples, telling on_gradients_ready (if
 * any) which gradients are final as the layers finish; non-zero: stopped. */
static int backward(struct ddts_model *m, const struct ddts_fit_options *o, size_t b)
{
    const struct ddts_fit_callbacks *cb = o->callbacks;
    if (cb == NULL || cb->on_gradients_ready == NULL) {
        ddts__nn_backward(m, b);
        return 0;
    }
    struct ready r = {cb, m->n_params, b, 0};
    ddts__nn_backward_each(m, b, node_done, &r);
    if (!r.stopped && r.from > 0) /* a model without nodes: nothing announced yet */
        node_done(&r, m, 0);
    return r.stopped;
}

/* A training step by the batch split over samples [start, start + b) of
 * the order; the update runs inside the parallel region unless the
 * optimizer needs norms over whole weights or a callback sees the summed
 * gradients first. */
static enum ddts_status split_step(struct ddts_model *m, const struct ddts_fit_options *o,
                                   const struct data *dt, const uint32_t *order, size_t start,
                                   size_t b, int ep, size_t bi, struct sums *s,
                                   struct ddts_error *err)
{
    const struct ddts_fit_callbacks *cb = o->callbacks;
    int inside = ddts__nn_opt_splits(m) && !(cb && cb->on_gradients);
    struct ddts__nn_opt_k k;
    ddts__nn_opt_consts(m, &k);
    double reg = reg_loss(m), l;
    int nt = split_region(m, dt, order, start, b, 1, inside ? &k : NULL, reg);
    enum ddts_status st = split_sums(m, dt, order, start, b, nt, reg, s, &l, err);
    if (st != DDTS_OK)
        return st;
    if (!isfinite(l)) /* the region did not update */
        return ddts_error_set(err, DDTS_ENUMERIC, "fit: the loss became %g at epoch %d, batch %zu",
                              l, ep + 1, bi + 1);
    m->split.steps++;
    if (inside) {
        ddts__nn_opt_advance(m, &k);
        return DDTS_OK;
    }
    if (cb && cb->on_gradients && cb->on_gradients(cb->userdata, m, m->grads, m->n_params, b) != 0)
        return ddts_error_set(err, DDTS_ECANCELED, "fit: stopped by a callback");
    ddts__nn_opt_step(m);
    return DDTS_OK;
}

/* A training step with the work of each layer split over the threads:
 * gather, forward, loss, backward (announcing final gradients to
 * on_gradients_ready), on_gradients, the update. */
static enum ddts_status gemm_step(struct ddts_model *m, const struct ddts_fit_options *o,
                                  const struct data *dt, const uint32_t *order, size_t start,
                                  size_t b, int ep, size_t bi, struct sums *s,
                                  struct ddts_error *err)
{
    const struct ddts_fit_callbacks *cb = o->callbacks;
    enum ddts_status st = gather(m, dt, order, start, b, 1, err);
    if (st != DDTS_OK)
        return st;
    double l = batch_loss(m, b, 1, s);
    if (!isfinite(l))
        return ddts_error_set(err, DDTS_ENUMERIC, "fit: the loss became %g at epoch %d, batch %zu",
                              l, ep + 1, bi + 1);
    if (backward(m, o, b) != 0)
        return ddts_error_set(err, DDTS_ECANCELED, "fit: stopped by a callback");
    if (cb && cb->on_gradients && cb->on_gradients(cb->userdata, m, m->grads, m->n_params, b) != 0)
        return ddts_error_set(err, DDTS_ECANCELED, "fit: stopped by a callback");
    ddts__nn_opt_step(m);
    return DDTS_OK;
}

/* One epoch of fit: the sample order (shuffled from (seed, epoch)), then a
 * forward, backward and optimizer step per batch; running sums in *s. The
 * batch split takes a step where it applies, except when gradients are
 * announced layer by layer as they become final (on_gradients_ready). */
static enum ddts_status fit_epoch(struct ddts_model *m, const struct ddts_dataset *train,
                                  const struct ddts_fit_options *o, const struct data *dt,
                                  uint32_t *order, size_t bs, int ep, struct sums *s,
                                  struct ddts_error *err)
{
    enum ddts_status st;
    size_t n_batches = (dt->n + bs - 1) / bs;
    int ready = o->callbacks && o->callbacks->on_gradients_ready;
    for (size_t i = 0; i < dt->n; i++)
        order[i] = (uint32_t)(train->idx ? train->idx[i] : i);
    if (o->shuffle) {
        struct ddts_rng r;
        ddts_rng_derive(&r, o->seed, (uint64_t)ep);
        ddts_rng_shuffle_u32(&r, order, dt->n);
    }
    ddts_rng_derive(&m->drop_rng, o->seed ^ 0x9e3779b97f4a7c15ull, (uint64_t)ep);
    use_units(m, dt);
    for (size_t bi = 0; bi < n_batches; bi++) {
        size_t start = bi * bs, b = dt->n - start < bs ? dt->n - start : bs;
        m->training = 1;
        if (split_applies(m, b) && !ready)
            st = split_step(m, o, dt, order, start, b, ep, bi, s, err);
        else
            st = gemm_step(m, o, dt, order, start, b, ep, bi, s, err);
        m->training = 0;
        if (st != DDTS_OK)
            return st;
        if (o->callbacks && o->callbacks->on_batch_end) {
            struct ddts_logs run = {0};
            fill_logs(m, s, 0, &run);
            if (o->callbacks->on_batch_end(o->callbacks->userdata, m, ep, bi, n_batches, s->samples,
                                           &run) != 0)
                return ddts_error_set(err, DDTS_ECANCELED, "fit: stopped by a callback");
        }
    }
    return DDTS_OK;
}

/* checkpoint_monitor: keeps a copy of the weights when the monitored value
 * `v` improves on *best (*have: there is one). */
static enum ddts_status keep_best(struct ddts_model *m, const char *mon, double v, int *have,
                                  double *best, struct ddts_history *h, int ep,
                                  struct ddts_error *err)
{
    int better = !*have || (monitor_is_max(mon) ? v > *best : v < *best);
    if (!better)
        return DDTS_OK;
    if (m->best == NULL) {
        m->best = ddts_aligned_alloc((m->n_params ? m->n_params : 1) * sizeof(float));
        if (m->best == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "fit: out of memory");
    }
    memcpy(m->best, m->params, m->n_params * sizeof(float));
    m->best_epoch = ep;
    h->best_epoch = ep;
    *best = v;
    *have = 1;
    m->best_valid = 1;
    m->best_value = v;
    snprintf(m->best_monitor, sizeof m->best_monitor, "%s", mon);
    return DDTS_OK;
}

/*
 * The checkpoint monitor among the logged names: "auto" is the original
 * tool's choice (val_accuracy when the model has an accuracy metric, else
 * val_loss; accuracy / loss without validation data); a name that is not
 * logged is an error listing those that are.
 */
static enum ddts_status resolve_monitor(const struct ddts_logs *proto, int has_val,
                                        const char **mon, struct ddts_error *err)
{
    double unused;
    if (strcmp(*mon, "auto") == 0) {
        for (size_t i = 0; i < proto->n; i++)
            if (strcmp(proto->names[i], has_val ? "val_accuracy" : "accuracy") == 0) {
                *mon = proto->names[i];
                return DDTS_OK;
            }
        *mon = has_val ? "val_loss" : "loss";
        return DDTS_OK;
    }
    if (ddts_logs_get(proto, *mon, &unused) == 0)
        return DDTS_OK;
    char names[160];
    size_t at = 0;
    names[0] = '\0';
    for (size_t i = 0; i < proto->n && at < sizeof names; i++)
        at +=
            (size_t)snprintf(names + at, sizeof names - at, "%s%s", i ? ", " : "", proto->names[i]);
    return ddts_error_set(err, DDTS_EINVAL, "fit: monitor '%s' is not logged (logged: %s)", *mon,
                          names);
}

/* on_training_sums (val 0) or on_validation_sums (val 1): an epoch's sums
 * over every worker's samples (training) or slice (validation). */
static enum ddts_status combine_sums(struct ddts_model *m, const struct ddts_fit_callbacks *cb,
                                     int val, struct sums *s, struct ddts_error *err)
{
    int (*hook)(void *, struct ddts_model *, double *, size_t, size_t) =
        cb == NULL ? NULL
        : val      ? cb->on_validation_sums
                   : cb->on_training_sums;
    if (hook == NULL)
        return DDTS_OK;
    /* Counts below 2^53 are exact as doubles. */
    double v[6] = {s->loss, s->acc, s->mse, s->mae, (double)s->samples, (double)s->rows};
    if (hook(cb->userdata, m, v, 6, s->samples) != 0)
        return ddts_error_set(err, DDTS_ECANCELED, "fit: stopped by a callback");
    if (!(v[4] >= 0 && v[5] >= 0 && v[4] < 9007199254740992.0 && v[5] < 9007199254740992.0))
        return ddts_error_set(err, DDTS_EINVAL, "fit: combined %s counts %g, %g",
                              val ? "validation" : "training", v[4], v[5]);
    *s = (struct sums){v[0], v[1], v[2], v[3], (size_t)v[4], (size_t)v[5]};
    return DDTS_OK;
}

static enum ddts_status fit(struct ddts_model *m, const struct ddts_dataset *train,
                            const struct ddts_fit_options *o, struct ddts_history **out,
                            struct ddts_error *err)
{
    if (out)
        *out = NULL;
    if (!m->compiled)
        return ddts_error_set(err, DDTS_ESTATE, "fit: the model is not compiled");
    struct data dt, dv;
    enum ddts_status st = check_data(m, train, 1, &dt, "fit", err);
    if (st != DDTS_OK)
        return st;
    if (o->validation && (st = check_data(m, o->validation, 1, &dv, "validation", err)) != DDTS_OK)
        return st;
    if (dt.n == 0)
        return ddts_error_set(err, DDTS_EINVAL, "fit: no training samples");
    if (dt.n > UINT32_MAX)
        return ddts_error_set(err, DDTS_ELIMIT, "fit: more than 2^32 samples");
    size_t bs = o->batch_size > 0 ? (size_t)o->batch_size : 32;
    if (bs > dt.n)
        bs = dt.n;
    if ((st = prepare(m, &dt, bs, err)) != DDTS_OK ||
        (st = units_scratch(m, train, o->validation, err)) != DDTS_OK)
        return st;
    int e0 = o->initial_epoch > 0 ? o->initial_epoch : 0;
    size_t n_ep = o->epochs > e0 ? (size_t)(o->epochs - e0) : 0;
    uint32_t *order = ddts_mallocarray(dt.n, sizeof *order);
    if (order == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "fit: out of memory");
    /* Column layout: training logs, then validation logs. */
    struct ddts_logs proto = {0};
    struct sums zero = {0};
    fill_logs(m, &zero, 0, &proto);
    if (o->validation)
        fill_logs(m, &zero, 1, &proto);
    struct ddts_history *h = history_create(n_ep, &proto);
    if (h == NULL) {
        ddts_free(order);
        return ddts_error_set(err, DDTS_ENOMEM, "fit: out of memory");
    }
    const char *mon = o->checkpoint_monitor;
    if (mon != NULL &&
        (st = resolve_monitor(&proto, o->validation != NULL, &mon, err)) != DDTS_OK) {
        ddts_history_destroy(h);
        ddts_free(order);
        return st;
    }
    const char *es_mon = mon ? mon : (o->validation ? "val_loss" : "loss");
    /* The best value carries over fit calls (epoch-by-epoch fitting) until
     * the next compile or a change of monitor. */
    int have_ck = mon && m->best_valid && m->best && strcmp(m->best_monitor, mon) == 0;
    double best_ck = have_ck ? m->best_value : 0, best_es = 0;
    int have_es = 0, wait = 0;
    for (int ep = e0; ep < o->epochs; ep++) {
        struct sums s = {0};
        if ((st = fit_epoch(m, train, o, &dt, order, bs, ep, &s, err)) != DDTS_OK ||
            (st = combine_sums(m, o->callbacks, 0, &s, err)) != DDTS_OK)
            goto done;
        struct ddts_logs logs = {0};
        fill_logs(m, &s, 0, &logs);
        if (o->callbacks && o->callbacks->on_epoch_trained &&
            o->callbacks->on_epoch_trained(o->callbacks->userdata, m, ep) != 0) {
            st = ddts_error_set(err, DDTS_ECANCELED, "fit: stopped by a callback");
            goto done;
        }
        if (o->validation) {
            struct sums vs;
            if ((st = run_eval(m, &dv, bs, &vs, err)) != DDTS_OK ||
                (st = combine_sums(m, o->callbacks, 1, &vs, err)) != DDTS_OK)
                goto done;
            fill_logs(m, &vs, 1, &logs);
        }
        double *row = h->values + h->n_epochs * h->n_columns;
        for (size_t c = 0; c < h->n_columns && c < logs.n; c++)
            row[c] = logs.values[c];
        h->epochs[h->n_epochs++] = ep;
        double v;
        if (mon && ddts_logs_get(&logs, mon, &v) == 0 &&
            (st = keep_best(m, mon, v, &have_ck, &best_ck, h, ep, err)) != DDTS_OK)
            goto done;
        if (o->callbacks && o->callbacks->on_epoch_end &&
            o->callbacks->on_epoch_end(o->callbacks->userdata, m, ep, &logs) != 0) {
            st = ddts_error_set(err, DDTS_ECANCELED, "fit: stopped by a callback");
            goto done;
        }
        if (o->early_stopping_patience > 0 && ddts_logs_get(&logs, es_mon, &v) == 0) {
            int better = !have_es || (monitor_is_max(es_mon) ? v > best_es : v < best_es);
            if (better) {
                best_es = v;
                have_es = 1;
                wait = 0;
            } else if (++wait >= o->early_stopping_patience) {
                h->stopped_early = 1;
                break;
            }
        }
    }
done:
    m->training = 0;
    m->units_offset = m->units_scale = NULL; /* borrowed from the data: not kept */
    ddts_free(order);
    if (out && (st == DDTS_OK || st == DDTS_ECANCELED))
        *out = h;
    else
        ddts_history_destroy(h);
    return st;
}

/* The public entry points run the engine with OpenBLAS on one thread (the
 * engine splits GEMMs over its own OpenMP threads) and give the program its
 * OpenBLAS thread count back on return (tensor/tensor.h). */
enum ddts_status ddts_model_evaluate(struct ddts_model *m, const struct ddts_dataset *d,
                                     int batch_size, struct ddts_logs *out, struct ddts_error *err)
{
    unsigned fp = ddts__tensor_blas_enter();
    enum ddts_status st = evaluate(m, d, batch_size, out, err);
    ddts__tensor_blas_leave(fp);
    return st;
}

enum ddts_status ddts_model_predict(struct ddts_model *m, const struct ddts_array *x,
                                    int batch_size, struct ddts_array **out, struct ddts_error *err)
{
    unsigned fp = ddts__tensor_blas_enter();
    enum ddts_status st = predict(m, x, batch_size, out, err);
    ddts__tensor_blas_leave(fp);
    return st;
}

enum ddts_status ddts_model_fit(struct ddts_model *m, const struct ddts_dataset *train,
                                const struct ddts_fit_options *o, struct ddts_history **out,
                                struct ddts_error *err)
{
    unsigned fp = ddts__tensor_blas_enter();
    enum ddts_status st = fit(m, train, o, out, err);
    ddts__tensor_blas_leave(fp);
    return st;
}
