/*
 * A new Keras model from a compact layer list ("dense:128:relu,dense:10:softmax"):
 * the tf.keras 2.15 Sequential configuration, a training configuration and
 * Keras-initialised weights, ready for ddts_keras_write_new. The JSON is
 * generated here (every name and number is ours, so nothing needs escaping
 * beyond the identifier check of user words).
 *
 * Shapes follow Keras (channels last, one sample, no batch axis):
 *   Dense           (..., in) -> (..., units)      kernel (in, units), bias (units)
 *   Conv2D          (H, W, C) -> (H', W', F)       kernel (kh, kw, C, F), bias (F)
 *                   valid: H' = H - kh + 1; same: H' = H
 *   Max/AvgPool2D   (H, W, C) -> (H / P, W / P, C) (floor, strides P, valid)
 *   GlobalAvgPool2D (H, W, C) -> (C)
 *   Flatten         (...) -> (prod)
 *   BatchNorm       (..., C)                       gamma, beta, moving_mean, moving_variance (C)
 */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/array.h"
#include "ddts/keras.h"
#include "io/keras_internal.h"

struct sb {
    char *p;
    size_t n, cap;
    int oom;
};

static void sb_add(struct sb *b, const char *fmt, ...) DDTS_PRINTF(2, 3);
static void sb_add(struct sb *b, const char *fmt, ...)
{
    if (b->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) {
            b->oom = 1;
            return;
        }
        if (b->p != NULL && (size_t)k < b->cap - b->n) {
            b->n += (size_t)k;
            return;
        }
        size_t cap = b->cap ? b->cap * 2 : 4096;
        while (cap < b->n + (size_t)k + 1)
            cap *= 2;
        char *q = ddts_realloc(b->p, cap);
        if (q == NULL) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
}

/* Keras names (activations, losses, metrics): letters, digits, '_', '.', '>'. */
static int word_ok(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 64)
        return 0;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '>')
            return 0;
    return 1;
}

static int parse_int(const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

struct builder {
    struct ddts_keras_model *m;
    struct sb cfg;
    struct ddts_rng rng;
    int rank;
    int64_t shape[DDTS_MAX_RANK];
    size_t total;
    struct ddts_error *err;
    /* Per-class counters for Keras' automatic names (dense, dense_1, ...). */
    struct {
        const char *base;
        int used;
    } names[16];
    size_t n_names;
    const char *cls; /* class of the layer being added */
};

static void auto_name(struct builder *b, const char *base, char *out, size_t n)
{
    size_t i = 0;
    while (i < b->n_names && strcmp(b->names[i].base, base) != 0)
        i++;
    if (i == b->n_names && i < sizeof b->names / sizeof b->names[0]) {
        b->names[i].base = base;
        b->names[i].used = 0;
        b->n_names++;
        snprintf(out, n, "%s", base);
        return;
    }
    int k = ++b->names[i].used;
    snprintf(out, n, "%s_%d", base, k);
}

static struct ddts_keras_layer *new_layer(struct builder *b, const char *name)
{
    const char *cls = b->cls;
    struct ddts_keras_model *m = b->m;
    struct ddts_keras_layer *p = ddts_realloc(m->layers, (m->n_layers + 1) * sizeof *p);
    if (p == NULL)
        return NULL;
    m->layers = p;
    struct ddts_keras_layer *L = &p[m->n_layers++];
    memset(L, 0, sizeof *L);
    L->name = ddts_strdup(name);
    L->class_name = ddts_strdup(cls);
    return L->name && L->class_name ? L : NULL;
}

/* Adds a weight: fill 0 zeros, 1 ones, 2 glorot_uniform with (fan_in, fan_out). */
static enum ddts_status add_weight(struct builder *b, struct ddts_keras_layer *L,
                                   const char *short_name, int rank, const int64_t *shape, int fill,
                                   double fan_in, double fan_out)
{
    size_t count = 1;
    for (int i = 0; i < rank; i++)
        if (ddts_size_mul(count, (size_t)shape[i], &count) != 0 || count > DDTS_MAX_KERAS_PARAMS)
            count = (size_t)DDTS_MAX_KERAS_PARAMS + 1;
    if (count > DDTS_MAX_KERAS_PARAMS - b->total)
        return ddts_error_set(b->err, DDTS_ELIMIT, "model spec: layer %s: more than %llu weights",
                              L->name, DDTS_MAX_KERAS_PARAMS);
    struct ddts_keras_weight *w = ddts_realloc(L->weights, (L->n_weights + 1) * sizeof *w);
    if (w == NULL)
        return ddts_error_set(b->err, DDTS_ENOMEM, "model spec: out of memory");
    L->weights = w;
    w = &w[L->n_weights++];
    memset(w, 0, sizeof *w);
    char name[160];
    snprintf(name, sizeof name, "%s/%s:0", L->name, short_name);
    w->name = ddts_strdup(name);
    w->short_name = ddts_strdup(short_name);
    w->layer_name = ddts_strdup(L->name);
    w->rank = rank;
    memcpy(w->shape, shape, (size_t)rank * sizeof *shape);
    w->count = count;
    w->stored_dtype = DDTS_F32;
    w->data = ddts_malloc((count ? count : 1) * sizeof(float));
    if (w->name == NULL || w->short_name == NULL || w->layer_name == NULL || w->data == NULL)
        return ddts_error_set(b->err, DDTS_ENOMEM, "model spec: out of memory");
    /* glorot_uniform: U(-limit, limit), limit = sqrt(6 / (fan_in + fan_out)). */
    double limit = fill == 2 ? sqrt(6.0 / (fan_in + fan_out)) : 0.0;
    for (size_t i = 0; i < count; i++)
        w->data[i] = fill == 0   ? 0.0f
                     : fill == 1 ? 1.0f
                                 : (float)((2.0 * ddts_rng_uniform(&b->rng) - 1.0) * limit);
    b->total += count;
    return DDTS_OK;
}

static const char *const initializers =
    "\"kernel_regularizer\": null, \"bias_regularizer\": null, \"activity_regularizer\": null, "
    "\"kernel_constraint\": null, \"bias_constraint\": null, "
    "\"kernel_initializer\": {\"module\": \"keras.initializers\", \"class_name\": "
    "\"GlorotUniform\", \"config\": {\"seed\": null}, \"registered_name\": null}, "
    "\"bias_initializer\": {\"module\": \"keras.initializers\", \"class_name\": \"Zeros\", "
    "\"config\": {}, \"registered_name\": null}";

static void shape_json(struct sb *s, int rank, const int64_t *shape)
{
    for (int i = 0; i < rank; i++)
        sb_add(s, "%s%lld", i ? ", " : "", (long long)shape[i]);
}

static void open_layer(struct builder *b, const char *cls, const char *name)
{
    b->cls = cls;
    sb_add(&b->cfg,
           ", {\"module\": \"keras.layers\", \"class_name\": \"%s\", \"config\": {\"name\": "
           "\"%s\", \"trainable\": true, \"dtype\": \"float32\"",
           cls, name);
}

/* Closes a layer's config and adds build_config with its input shape. */
static void close_layer(struct builder *b, int in_rank, const int64_t *in_shape)
{
    sb_add(&b->cfg, "}, \"registered_name\": null, \"build_config\": {\"input_shape\": [null");
    for (int i = 0; i < in_rank; i++)
        sb_add(&b->cfg, ", %lld", (long long)in_shape[i]);
    sb_add(&b->cfg, "]}}");
}

static enum ddts_status bad(struct builder *b, size_t idx, const char *text, const char *why)
{
    return ddts_error_set(b->err, DDTS_EINVAL, "model spec: layer %zu (\"%s\"): %s", idx + 1, text,
                          why);
}

static enum ddts_status add_layer(struct builder *b, size_t idx, const char *text, char **arg,
                                  int n_arg)
{
    const char *kind = arg[0];
    int in_rank = b->rank;
    int64_t in_shape[DDTS_MAX_RANK];
    memcpy(in_shape, b->shape, sizeof in_shape);
    char name[64];
    enum ddts_status st = DDTS_OK;
    long v = 0;
    if (strcmp(kind, "dense") == 0) {
        if (n_arg < 2 || n_arg > 3 || parse_int(arg[1], 1, 1L << 24, &v) != 0)
            return bad(b, idx, text, "expected dense:UNITS[:ACTIVATION]");
        const char *act = n_arg == 3 ? arg[2] : "linear";
        if (!word_ok(act))
            return bad(b, idx, text, "bad activation name");
        auto_name(b, "dense", name, sizeof name);
        open_layer(b, "Dense", name);
        sb_add(&b->cfg, ", \"units\": %ld, \"activation\": \"%s\", \"use_bias\": true, %s", v, act,
               initializers);
        close_layer(b, in_rank, in_shape);
        struct ddts_keras_layer *L = new_layer(b, name);
        if (L == NULL)
            return ddts_error_set(b->err, DDTS_ENOMEM, "model spec: out of memory");
        int64_t k[2] = {b->shape[b->rank - 1], v};
        st = add_weight(b, L, "kernel", 2, k, 2, (double)k[0], (double)k[1]);
        if (st == DDTS_OK)
            st = add_weight(b, L, "bias", 1, &k[1], 0, 0, 0);
        b->shape[b->rank - 1] = v;
        return st;
    }
    if (strcmp(kind, "conv2d") == 0) {
        if (n_arg < 3 || n_arg > 5 || parse_int(arg[1], 1, 1L << 20, &v) != 0)
            return bad(b, idx, text, "expected conv2d:FILTERS:K[xK][:ACTIVATION][:same|valid]");
        long kh = 0, kw = 0;
        char *x = strchr(arg[2], 'x');
        if (x != NULL)
            *x = '\0';
        if (parse_int(arg[2], 1, 4096, &kh) != 0 ||
            (x != NULL ? parse_int(x + 1, 1, 4096, &kw) : (kw = kh, 0)) != 0)
            return bad(b, idx, text, "bad kernel size");
        const char *act = n_arg >= 4 ? arg[3] : "linear";
        const char *pad = n_arg == 5 ? arg[4] : "valid";
        if (!word_ok(act) || (strcmp(pad, "same") != 0 && strcmp(pad, "valid") != 0))
            return bad(b, idx, text, "bad activation or padding");
        if (b->rank != 3)
            return ddts_error_set(b->err, DDTS_ESHAPE,
                                  "model spec: layer %zu (\"%s\"): conv2d needs an (H, W, C) "
                                  "input, got rank %d",
                                  idx + 1, text, b->rank);
        int same = strcmp(pad, "same") == 0;
        if (!same && (b->shape[0] < kh || b->shape[1] < kw))
            return ddts_error_set(b->err, DDTS_ESHAPE,
                                  "model spec: layer %zu (\"%s\"): kernel %ldx%ld larger than "
                                  "the %lldx%lld input",
                                  idx + 1, text, kh, kw, (long long)b->shape[0],
                                  (long long)b->shape[1]);
        auto_name(b, "conv2d", name, sizeof name);
        open_layer(b, "Conv2D", name);
        sb_add(&b->cfg,
               ", \"filters\": %ld, \"kernel_size\": [%ld, %ld], \"strides\": [1, 1], "
               "\"padding\": \"%s\", \"data_format\": \"channels_last\", \"dilation_rate\": "
               "[1, 1], \"groups\": 1, \"activation\": \"%s\", \"use_bias\": true, %s",
               v, kh, kw, pad, act, initializers);
        close_layer(b, in_rank, in_shape);
        struct ddts_keras_layer *L = new_layer(b, name);
        if (L == NULL)
            return ddts_error_set(b->err, DDTS_ENOMEM, "model spec: out of memory");
        int64_t k[4] = {kh, kw, b->shape[2], v};
        double rf = (double)kh * (double)kw;
        st = add_weight(b, L, "kernel", 4, k, 2, rf * (double)k[2], rf * (double)v);
        if (st == DDTS_OK)
            st = add_weight(b, L, "bias", 1, &k[3], 0, 0, 0);
        if (!same) {
            b->shape[0] -= kh - 1;
            b->shape[1] -= kw - 1;
        }
        b->shape[2] = v;
        return st;
    }
    if (strcmp(kind, "maxpool2d") == 0 || strcmp(kind, "avgpool2d") == 0) {
        if (n_arg != 2 || parse_int(arg[1], 1, 4096, &v) != 0)
            return bad(b, idx, text, "expected maxpool2d:P or avgpool2d:P");
        if (b->rank != 3 || b->shape[0] < v || b->shape[1] < v)
            return ddts_error_set(b->err, DDTS_ESHAPE,
                                  "model spec: layer %zu (\"%s\"): needs an (H, W, C) input of "
                                  "at least %ldx%ld",
                                  idx + 1, text, v, v);
        int max = kind[0] == 'm';
        auto_name(b, max ? "max_pooling2d" : "average_pooling2d", name, sizeof name);
        open_layer(b, max ? "MaxPooling2D" : "AveragePooling2D", name);
        sb_add(&b->cfg,
               ", \"pool_size\": [%ld, %ld], \"padding\": \"valid\", \"strides\": [%ld, %ld], "
               "\"data_format\": \"channels_last\"",
               v, v, v, v);
        close_layer(b, in_rank, in_shape);
        b->shape[0] /= v;
        b->shape[1] /= v;
        return new_layer(b, name) ? DDTS_OK
                                  : ddts_error_set(b->err, DDTS_ENOMEM, "model spec: no memory");
    }
    if (strcmp(kind, "globalavgpool2d") == 0) {
        if (n_arg != 1 || b->rank != 3)
            return bad(b, idx, text, "globalavgpool2d takes no argument and an (H, W, C) input");
        auto_name(b, "global_average_pooling2d", name, sizeof name);
        open_layer(b, "GlobalAveragePooling2D", name);
        sb_add(&b->cfg, ", \"data_format\": \"channels_last\", \"keepdims\": false");
        close_layer(b, in_rank, in_shape);
        b->shape[0] = b->shape[2];
        b->rank = 1;
        return new_layer(b, name) ? DDTS_OK
                                  : ddts_error_set(b->err, DDTS_ENOMEM, "model spec: no memory");
    }
    if (strcmp(kind, "flatten") == 0) {
        if (n_arg != 1)
            return bad(b, idx, text, "flatten takes no argument");
        int64_t prod = 1;
        for (int i = 0; i < b->rank; i++)
            if (__builtin_mul_overflow(prod, b->shape[i], &prod) || prod > (1LL << 40))
                return ddts_error_set(b->err, DDTS_ELIMIT,
                                      "model spec: layer %zu (\"%s\"): too many values", idx + 1,
                                      text);
        auto_name(b, "flatten", name, sizeof name);
        open_layer(b, "Flatten", name);
        sb_add(&b->cfg, ", \"data_format\": \"channels_last\"");
        close_layer(b, in_rank, in_shape);
        b->shape[0] = prod;
        b->rank = 1;
        return new_layer(b, name) ? DDTS_OK
                                  : ddts_error_set(b->err, DDTS_ENOMEM, "model spec: no memory");
    }
    if (strcmp(kind, "dropout") == 0) {
        char *end;
        double rate = n_arg == 2 ? strtod(arg[1], &end) : -1.0;
        if (n_arg != 2 || *end != '\0' || !(rate >= 0.0 && rate < 1.0))
            return bad(b, idx, text, "expected dropout:RATE with 0 <= RATE < 1");
        auto_name(b, "dropout", name, sizeof name);
        open_layer(b, "Dropout", name);
        sb_add(&b->cfg, ", \"rate\": %.9g, \"noise_shape\": null, \"seed\": null", rate);
        close_layer(b, in_rank, in_shape);
        return new_layer(b, name) ? DDTS_OK
                                  : ddts_error_set(b->err, DDTS_ENOMEM, "model spec: no memory");
    }
    if (strcmp(kind, "batchnorm") == 0) {
        if (n_arg != 1)
            return bad(b, idx, text, "batchnorm takes no argument");
        auto_name(b, "batch_normalization", name, sizeof name);
        open_layer(b, "BatchNormalization", name);
        sb_add(&b->cfg,
               ", \"axis\": -1, \"momentum\": 0.99, \"epsilon\": 0.001, \"center\": true, "
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
        close_layer(b, in_rank, in_shape);
        struct ddts_keras_layer *L = new_layer(b, name);
        if (L == NULL)
            return ddts_error_set(b->err, DDTS_ENOMEM, "model spec: out of memory");
        const int64_t *c = &b->shape[b->rank - 1];
        st = add_weight(b, L, "gamma", 1, c, 1, 0, 0);
        if (st == DDTS_OK)
            st = add_weight(b, L, "beta", 1, c, 0, 0, 0);
        if (st == DDTS_OK)
            st = add_weight(b, L, "moving_mean", 1, c, 0, 0, 0);
        if (st == DDTS_OK)
            st = add_weight(b, L, "moving_variance", 1, c, 1, 0, 0);
        return st;
    }
    if (strcmp(kind, "activation") == 0) {
        if (n_arg != 2 || !word_ok(arg[1]))
            return bad(b, idx, text, "expected activation:NAME");
        auto_name(b, "activation", name, sizeof name);
        open_layer(b, "Activation", name);
        sb_add(&b->cfg, ", \"activation\": \"%s\"", arg[1]);
        close_layer(b, in_rank, in_shape);
        return new_layer(b, name) ? DDTS_OK
                                  : ddts_error_set(b->err, DDTS_ENOMEM, "model spec: no memory");
    }
    if (strcmp(kind, "reshape") == 0) {
        if (n_arg != 2)
            return bad(b, idx, text, "expected reshape:D1xD2x...");
        int64_t dims[DDTS_MAX_RANK];
        int r = 0;
        int64_t prod = 1, have = 1;
        for (char *tok = arg[1]; tok != NULL && r < DDTS_MAX_RANK - 1;) {
            char *x = strchr(tok, 'x');
            if (x != NULL)
                *x = '\0';
            if (parse_int(tok, 1, 1L << 30, &v) != 0)
                return bad(b, idx, text, "bad reshape dimension");
            dims[r++] = v;
            if (__builtin_mul_overflow(prod, (int64_t)v, &prod))
                return bad(b, idx, text, "reshape too large");
            tok = x ? x + 1 : NULL;
        }
        for (int i = 0; i < b->rank; i++)
            if (__builtin_mul_overflow(have, b->shape[i], &have))
                return bad(b, idx, text, "input too large");
        if (prod != have)
            return ddts_error_set(b->err, DDTS_ESHAPE,
                                  "model spec: layer %zu (\"%s\"): reshape to %lld values of an "
                                  "input of %lld",
                                  idx + 1, text, (long long)prod, (long long)have);
        auto_name(b, "reshape", name, sizeof name);
        open_layer(b, "Reshape", name);
        sb_add(&b->cfg, ", \"target_shape\": [");
        shape_json(&b->cfg, r, dims);
        sb_add(&b->cfg, "]");
        close_layer(b, in_rank, in_shape);
        b->rank = r;
        memcpy(b->shape, dims, (size_t)r * sizeof *dims);
        return new_layer(b, name) ? DDTS_OK
                                  : ddts_error_set(b->err, DDTS_ENOMEM, "model spec: no memory");
    }
    return bad(b, idx, text,
               "unknown layer kind (dense, conv2d, maxpool2d, avgpool2d, globalavgpool2d, "
               "flatten, dropout, batchnorm, activation, reshape)");
}

/* Keras optimizer defaults (keras.optimizers, tf.keras 2.11+ and Keras 3). */
static int optimizer_json(struct sb *s, const char *name, double lr)
{
    static const struct {
        const char *key, *cls;
        double lr;
        const char *rest;
    } opts[] = {
        {"adam", "Adam", 0.001,
         "\"beta_1\": 0.9, \"beta_2\": 0.999, \"epsilon\": 1e-07, \"amsgrad\": false"},
        {"sgd", "SGD", 0.01, "\"momentum\": 0.0, \"nesterov\": false"},
        {"rmsprop", "RMSprop", 0.001,
         "\"rho\": 0.9, \"momentum\": 0.0, \"epsilon\": 1e-07, \"centered\": false"},
        {"adagrad", "Adagrad", 0.001, "\"initial_accumulator_value\": 0.1, \"epsilon\": 1e-07"},
        {"adamax", "Adamax", 0.001, "\"beta_1\": 0.9, \"beta_2\": 0.999, \"epsilon\": 1e-07"},
        {"nadam", "Nadam", 0.001, "\"beta_1\": 0.9, \"beta_2\": 0.999, \"epsilon\": 1e-07"},
    };
    for (size_t i = 0; i < sizeof opts / sizeof opts[0]; i++) {
        if (strcmp(opts[i].key, name) != 0)
            continue;
        sb_add(s,
               "\"optimizer_config\": {\"class_name\": \"%s\", \"config\": {\"name\": \"%s\", "
               "\"learning_rate\": %.9g, %s}}",
               opts[i].cls, opts[i].cls, lr > 0 ? lr : opts[i].lr, opts[i].rest);
        return 0;
    }
    return -1;
}

enum ddts_status ddts_keras_spec_build(const struct ddts_keras_spec *spec,
                                       struct ddts_keras_model **out, struct ddts_error *err)
{
    *out = NULL;
    if (spec == NULL || spec->layers == NULL || spec->input_shape == NULL || spec->input_rank < 1 ||
        spec->input_rank >= DDTS_MAX_RANK)
        return ddts_error_set(err, DDTS_EINVAL,
                              "model spec: a layer list and an input shape of rank 1 to %d are "
                              "needed",
                              DDTS_MAX_RANK - 1);
    for (int i = 0; i < spec->input_rank; i++)
        if (spec->input_shape[i] < 1 || spec->input_shape[i] > (1LL << 30))
            return ddts_error_set(err, DDTS_EINVAL, "model spec: input dimension %d is %lld", i,
                                  (long long)spec->input_shape[i]);
    const char *opt = spec->optimizer ? spec->optimizer : "adam";
    if (spec->loss != NULL && !word_ok(spec->loss))
        return ddts_error_set(err, DDTS_EINVAL, "model spec: bad loss name \"%s\"", spec->loss);
    if (spec->metrics != NULL && !word_ok(spec->metrics))
        return ddts_error_set(err, DDTS_EINVAL, "model spec: bad metric name \"%s\"",
                              spec->metrics);
    struct builder b;
    memset(&b, 0, sizeof b);
    b.err = err;
    b.rank = spec->input_rank;
    memcpy(b.shape, spec->input_shape, (size_t)spec->input_rank * sizeof *b.shape);
    ddts_rng_seed(&b.rng, spec->seed);
    enum ddts_status st = DDTS_OK;
    char *text = ddts_strdup(spec->layers);
    struct sb tc = {0};
    b.m = ddts_calloc(1, sizeof *b.m);
    if (text == NULL || b.m == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "model spec: out of memory");
        goto done;
    }
    b.m->format = DDTS_KERAS_H5;
    b.m->keras_version = ddts_strdup("2.15.0");
    b.m->backend = ddts_strdup("tensorflow");
    /* The InputLayer: tf.keras names it after the first layer ("dense_input"). */
    sb_add(&b.cfg, "{\"class_name\": \"Sequential\", \"config\": {\"name\": \"sequential\", "
                   "\"layers\": [{\"module\": \"keras.layers\", \"class_name\": \"InputLayer\", "
                   "\"config\": {\"batch_input_shape\": [null, ");
    shape_json(&b.cfg, spec->input_rank, spec->input_shape);
    char first[32] = "";
    sscanf(text, "%31[a-z0-9]", first);
    sb_add(&b.cfg,
           "], \"dtype\": \"float32\", \"sparse\": false, \"ragged\": false, \"name\": "
           "\"%s_input\"}, \"registered_name\": null}",
           first[0] ? first : "input");
    size_t idx = 0;
    char *save = NULL;
    for (char *tok = strtok_r(text, ",", &save); tok != NULL && st == DDTS_OK;
         tok = strtok_r(NULL, ",", &save), idx++) {
        if (idx >= DDTS_MAX_LAYERS) {
            st = ddts_error_set(err, DDTS_ELIMIT, "model spec: more than %d layers",
                                DDTS_MAX_LAYERS);
            break;
        }
        while (*tok == ' ')
            tok++;
        char shown[96];
        snprintf(shown, sizeof shown, "%s", tok);
        char *arg[6];
        int n_arg = 0;
        char *s2 = NULL;
        for (char *a = strtok_r(tok, ":", &s2); a != NULL; a = strtok_r(NULL, ":", &s2)) {
            if (n_arg == 6) {
                n_arg = 7;
                break;
            }
            arg[n_arg++] = a;
        }
        if (n_arg == 0 || n_arg > 6)
            st = bad(&b, idx, shown, "empty or too many fields");
        else
            st = add_layer(&b, idx, shown, arg, n_arg);
    }
    if (st == DDTS_OK && idx == 0)
        st = ddts_error_set(err, DDTS_EINVAL, "model spec: no layers");
    if (st != DDTS_OK)
        goto done;
    sb_add(&b.cfg, "]}, \"keras_version\": \"2.15.0\", \"backend\": \"tensorflow\"}");
    if (spec->loss != NULL) {
        sb_add(&tc, "{\"loss\": \"%s\", \"metrics\": ", spec->loss);
        if (spec->metrics != NULL)
            sb_add(&tc, "[\"%s\"]", spec->metrics);
        else
            sb_add(&tc, "null");
        sb_add(&tc, ", \"weighted_metrics\": null, \"loss_weights\": null, ");
        if (optimizer_json(&tc, opt, spec->learning_rate) != 0) {
            st = ddts_error_set(err, DDTS_EINVAL,
                                "model spec: unknown optimizer \"%s\" (adam, sgd, rmsprop, "
                                "adagrad, adamax, nadam)",
                                opt);
            goto done;
        }
        sb_add(&tc, "}");
    }
    if (b.cfg.oom || tc.oom || b.m->keras_version == NULL || b.m->backend == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "model spec: out of memory");
        goto done;
    }
    b.m->model_config = b.cfg.p;
    b.cfg.p = NULL;
    b.m->training_config = tc.p;
    tc.p = NULL;
done:
    ddts_free(text);
    ddts_free(b.cfg.p);
    ddts_free(tc.p);
    if (st != DDTS_OK) {
        ddts_keras_destroy(b.m);
        return st;
    }
    *out = b.m;
    return DDTS_OK;
}
