/*
 * A new Keras model from a compact layer list ("dense:128:relu,dense:10:softmax"):
 * the tf.keras 2.15 Sequential configuration, a training configuration and
 * Keras-initialised weights, ready for ddts_keras_write_new. The JSON is
 * generated here (every name and number is ours, so nothing needs escaping
 * beyond the identifier check of user words).
 *
 * Each word ("dense", "conv2d", ...) belongs to a layer family
 * (src/nn/layer_*.c, its descriptor's spec hook): the family checks the
 * fields, writes its config keys and weights (Keras' shapes, channels last,
 * one sample) and the output shape; this file names the layers, frames their
 * JSON and holds the weights.
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
#include "nn/layer.h"

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

static void shape_json(struct sb *s, int rank, const int64_t *shape)
{
    for (int i = 0; i < rank; i++)
        sb_add(s, "%s%lld", i ? ", " : "", (long long)shape[i]);
}

/* The layer entry as tf.keras 2.x writes it in an .h5 file's model_config
 * (no "module" or "build_config" on layer entries: Keras 3 adds those, and
 * ddts reads a config with them as Keras 3's). */
static void open_layer(struct builder *b, const char *cls, const char *name)
{
    b->cls = cls;
    sb_add(&b->cfg,
           ", {\"class_name\": \"%s\", \"config\": {\"name\": \"%s\", \"trainable\": true, "
           "\"dtype\": \"float32\"",
           cls, name);
}

static void close_layer(struct builder *b)
{
    sb_add(&b->cfg, "}}");
}

/* The callbacks of struct nn_spec (nn/layer.h) for one layer. */
struct spec_layer {
    struct nn_spec s; /* first: the hooks get &s */
    struct builder *b;
    size_t idx;
    const char *text;
    struct ddts_keras_layer *L;
};

static enum ddts_status spec_fail(struct nn_spec *s, enum ddts_status st, const char *fmt, ...)
    DDTS_PRINTF(3, 4);
static enum ddts_status spec_fail(struct nn_spec *s, enum ddts_status st, const char *fmt, ...)
{
    struct spec_layer *sl = (struct spec_layer *)s;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return ddts_error_set(sl->b->err, st, "model spec: layer %zu (\"%s\"): %s", sl->idx + 1,
                          sl->text, why);
}

static enum ddts_status spec_open(struct nn_spec *s, const char *cls, const char *base)
{
    struct spec_layer *sl = (struct spec_layer *)s;
    char name[64];
    auto_name(sl->b, base, name, sizeof name);
    open_layer(sl->b, cls, name);
    sl->L = new_layer(sl->b, name);
    return sl->L != NULL ? DDTS_OK
                         : ddts_error_set(sl->b->err, DDTS_ENOMEM, "model spec: out of memory");
}

static void spec_json(struct nn_spec *s, const char *fmt, ...) DDTS_PRINTF(2, 3);
static void spec_json(struct nn_spec *s, const char *fmt, ...)
{
    struct spec_layer *sl = (struct spec_layer *)s;
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (k < 0 || (size_t)k >= sizeof buf)
        sl->b->cfg.oom = 1; /* our own fixed texts: never longer */
    else
        sb_add(&sl->b->cfg, "%s", buf);
}

static enum ddts_status spec_weight(struct nn_spec *s, const char *short_name, int rank,
                                    const int64_t *shape, int fill, double fan_in, double fan_out)
{
    struct spec_layer *sl = (struct spec_layer *)s;
    return add_weight(sl->b, sl->L, short_name, rank, shape, fill, fan_in, fan_out);
}

static enum ddts_status add_layer(struct builder *b, size_t idx, const char *text, char **arg,
                                  int n_arg)
{
    const struct nn_layer_ops *d = ddts__nn_layer_find_spec(arg[0]);
    if (d == NULL || d->spec == NULL) {
        char words[256];
        ddts__nn_layer_spec_words(words, sizeof words);
        return ddts_error_set(b->err, DDTS_EINVAL,
                              "model spec: layer %zu (\"%s\"): unknown layer kind (%s)", idx + 1,
                              text, words);
    }
    struct spec_layer sl = {
        .s = {.arg = arg,
              .n_arg = n_arg,
              .rank = b->rank,
              .open = spec_open,
              .json = spec_json,
              .weight = spec_weight,
              .fail = spec_fail},
        .b = b,
        .idx = idx,
        .text = text,
    };
    memcpy(sl.s.shape, b->shape, sizeof b->shape);
    sl.s.ctx = &sl;
    enum ddts_status st = d->spec(&sl.s);
    if (sl.L != NULL)
        close_layer(b);
    if (st == DDTS_OK) {
        b->rank = sl.s.rank;
        memcpy(b->shape, sl.s.shape, sizeof b->shape);
    }
    return st;
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

/* metrics: a comma-separated list (or NULL), each a Keras name (they go
 * into the JSON as they are). */
static enum ddts_status check_metrics(const char *metrics, struct ddts_error *err)
{
    for (const char *p = metrics; p != NULL;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char word[72];
        if (n >= sizeof word || (memcpy(word, p, n), word[n] = '\0', !ddts__nn_spec_word_ok(word)))
            return ddts_error_set(err, DDTS_EINVAL, "model spec: bad metric name \"%.*s\"",
                                  (int)(n < 64 ? n : 64), p);
        p = comma ? comma + 1 : NULL;
    }
    return DDTS_OK;
}

/* The metrics as a JSON list of names, or null. */
static void metrics_json(struct sb *tc, const char *metrics)
{
    if (metrics == NULL) {
        sb_add(tc, "null");
        return;
    }
    sb_add(tc, "[");
    for (const char *p = metrics; p != NULL;) {
        const char *comma = strchr(p, ',');
        int n = comma ? (int)(comma - p) : (int)strlen(p);
        sb_add(tc, "%s\"%.*s\"", p == metrics ? "" : ", ", n, p);
        p = comma ? comma + 1 : NULL;
    }
    sb_add(tc, "]");
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
    if (spec->loss != NULL && !ddts__nn_spec_word_ok(spec->loss))
        return ddts_error_set(err, DDTS_EINVAL, "model spec: bad loss name \"%s\"", spec->loss);
    enum ddts_status st = check_metrics(spec->metrics, err);
    if (st != DDTS_OK)
        return st;
    struct builder b;
    memset(&b, 0, sizeof b);
    b.err = err;
    b.rank = spec->input_rank;
    memcpy(b.shape, spec->input_shape, (size_t)spec->input_rank * sizeof *b.shape);
    ddts_rng_seed(&b.rng, spec->seed);
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
                   "\"layers\": [{\"class_name\": \"InputLayer\", "
                   "\"config\": {\"batch_input_shape\": [null, ");
    shape_json(&b.cfg, spec->input_rank, spec->input_shape);
    char first[32] = "";
    sscanf(text, "%31[a-z0-9]", first);
    sb_add(&b.cfg,
           "], \"dtype\": \"float32\", \"sparse\": false, \"ragged\": false, \"name\": "
           "\"%s_input\"}}",
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
            st = ddts_error_set(err, DDTS_EINVAL, "model spec: layer %zu (\"%s\"): %s", idx + 1,
                                shown, "empty or too many fields");
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
        metrics_json(&tc, spec->metrics);
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
