/*
 * Keras model configurations: just enough JSON reading to list the layers of
 * a model in config order (names, classes, the few flags that decide which
 * weights a layer has), nested models included. The only user of jansson
 * among the Keras modules.
 *
 * Shapes of the configuration handled (docs/file-formats.md, "Keras"):
 *   - Keras <= 2.2.2 Sequential: {"class_name": "Sequential", "config": [layer, ...]}
 *   - later Sequential: {"class_name": "Sequential", "config": {"name": .., "layers": [...]}}
 *   - Functional / Model: "config": {"name", "layers": [{"class_name", "name", "config",
 *     "inbound_nodes"}, ...], "input_layers", "output_layers"}
 *   - Keras 3 adds {"module", "registered_name", "build_config", ...} around each object.
 * A layer's name is its entry's "name", else its config's "name".
 */
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ddts/keras.h"
#include "io/keras_internal.h"

struct lister {
    struct ddts_keras_config *c;
    size_t cap;
    struct ddts_error *err;
};

static int flag(json_t *cfg, const char *key)
{
    json_t *v = json_is_object(cfg) ? json_object_get(cfg, key) : NULL;
    if (json_is_boolean(v))
        return json_is_true(v) ? 1 : 0;
    return 1;
}

static enum ddts_status checked_string(json_t *v, const char *what, const char *path,
                                       struct ddts_error *err)
{
    if (!json_is_string(v))
        return ddts_error_set(err, DDTS_EFORMAT, "%s: %s is missing or not a string", path, what);
    size_t len = json_string_length(v);
    if (len == 0 || len > DDTS_MAX_KERAS_NAME)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: %s has %zu bytes (1 to %d allowed)", path,
                              what, len, DDTS_MAX_KERAS_NAME);
    if (memchr(json_string_value(v), '\0', len) != NULL)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: %s holds a NUL byte", path, what);
    return DDTS_OK;
}

/* The list of layers of a model object: config.layers, or a bare config list. */
static json_t *layers_of(json_t *model)
{
    json_t *cfg = json_object_get(model, "config");
    if (json_is_array(cfg))
        return cfg;
    if (json_is_object(cfg)) {
        json_t *layers = json_object_get(cfg, "layers");
        if (json_is_array(layers))
            return layers;
    }
    return NULL;
}

static enum ddts_status list_layers(struct lister *l, json_t *layers, int depth, int parent,
                                    const char *path)
{
    if (depth > DDTS_MAX_KERAS_NESTING)
        return ddts_error_set(l->err, DDTS_ELIMIT, "%s: models nested more than %d deep", path,
                              DDTS_MAX_KERAS_NESTING);
    size_t n = json_array_size(layers);
    for (size_t i = 0; i < n; i++) {
        char here[256];
        if (snprintf(here, sizeof here, "%s.layers[%zu]", path, i) < 0)
            here[0] = '\0';
        json_t *entry = json_array_get(layers, i);
        if (!json_is_object(entry))
            return ddts_error_set(l->err, DDTS_EFORMAT, "%s: not an object", here);
        json_t *cls = json_object_get(entry, "class_name");
        enum ddts_status st = checked_string(cls, "class_name", here, l->err);
        if (st != DDTS_OK)
            return st;
        json_t *cfg = json_object_get(entry, "config");
        json_t *name = json_object_get(entry, "name");
        if (!json_is_string(name) && json_is_object(cfg))
            name = json_object_get(cfg, "name");
        st = checked_string(name, "name", here, l->err);
        if (st != DDTS_OK)
            return st;
        if (l->c->n_layers >= DDTS_MAX_LAYERS)
            return ddts_error_set(l->err, DDTS_ELIMIT, "%s: more than %d layers", here,
                                  DDTS_MAX_LAYERS);
        if (l->c->n_layers == l->cap) {
            size_t cap = l->cap ? l->cap * 2 : 16;
            struct ddts_keras_config_layer *p =
                ddts_realloc(l->c->layers, cap * sizeof *l->c->layers);
            if (p == NULL)
                return ddts_error_set(l->err, DDTS_ENOMEM, "config: out of memory");
            l->c->layers = p;
            l->cap = cap;
        }
        struct ddts_keras_config_layer *cl = &l->c->layers[l->c->n_layers];
        memset(cl, 0, sizeof *cl);
        l->c->n_layers++;
        cl->name = ddts_strdup(json_string_value(name));
        cl->class_name = ddts_strdup(json_string_value(cls));
        if (cl->name == NULL || cl->class_name == NULL)
            return ddts_error_set(l->err, DDTS_ENOMEM, "config: out of memory");
        cl->depth = depth;
        cl->parent = parent;
        cl->use_bias = flag(cfg, "use_bias");
        cl->center = flag(cfg, "center");
        cl->scale = flag(cfg, "scale");
        /* the attention layers' scale weight: "use_scale", whose default is
         * false for Attention and true for AdditiveAttention */
        if (json_is_object(cfg) && json_object_get(cfg, "use_scale") != NULL)
            cl->scale = flag(cfg, "use_scale");
        else if (strcmp(cl->class_name, "Attention") == 0)
            cl->scale = 0;
        json_t *inner = layers_of(entry);
        if (inner != NULL) {
            int self = (int)(l->c->n_layers - 1);
            st = list_layers(l, inner, depth + 1, self, here);
            if (st != DDTS_OK)
                return st;
        }
    }
    return DDTS_OK;
}

enum ddts_status ddts_keras_config_parse(const char *json, size_t nbytes,
                                         struct ddts_keras_config **out, struct ddts_error *err)
{
    *out = NULL;
    if (json == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "config: no JSON text");
    if (nbytes > DDTS_MAX_CONFIG_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "config: %zu bytes (max %u)", nbytes,
                              DDTS_MAX_CONFIG_BYTES);
    json_error_t jerr;
    json_t *root = json_loadb(json, nbytes, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL)
        return ddts_error_set(err, DDTS_EFORMAT, "config: not JSON: %s at line %d, column %d",
                              jerr.text, jerr.line, jerr.column);
    enum ddts_status st = DDTS_OK;
    struct ddts_keras_config *c = ddts_calloc(1, sizeof *c);
    if (c == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "config: out of memory");
        goto done;
    }
    if (!json_is_object(root)) {
        st = ddts_error_set(err, DDTS_EFORMAT, "config: the top level is not an object");
        goto done;
    }
    st = checked_string(json_object_get(root, "class_name"), "class_name", "config", err);
    if (st != DDTS_OK)
        goto done;
    c->model_class = ddts_strdup(json_string_value(json_object_get(root, "class_name")));
    if (c->model_class == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "config: out of memory");
        goto done;
    }
    json_t *cfg = json_object_get(root, "config");
    json_t *name = json_is_object(cfg) ? json_object_get(cfg, "name") : NULL;
    if (json_is_string(name) && checked_string(name, "name", "config.config", NULL) == DDTS_OK) {
        c->model_name = ddts_strdup(json_string_value(name));
        if (c->model_name == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "config: out of memory");
            goto done;
        }
    }
    json_t *layers = layers_of(root);
    if (layers == NULL) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "config: class %s has no list of layers (config.layers); only "
                            "Sequential and Functional models are supported",
                            c->model_class);
        goto done;
    }
    struct lister l = {c, 0, err};
    st = list_layers(&l, layers, 0, -1, "config");
done:
    json_decref(root);
    if (st != DDTS_OK) {
        ddts_keras_config_destroy(c);
        return st;
    }
    *out = c;
    return DDTS_OK;
}

void ddts_keras_config_destroy(struct ddts_keras_config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_layers; i++) {
        ddts_free(c->layers[i].name);
        ddts_free(c->layers[i].class_name);
    }
    ddts_free(c->layers);
    ddts_free(c->model_class);
    ddts_free(c->model_name);
    ddts_free(c);
}

enum ddts_status ddts__keras_json_string(const char *json, size_t nbytes, const char *key,
                                         char **out, struct ddts_error *err)
{
    *out = NULL;
    if (nbytes > DDTS_MAX_CONFIG_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "%zu bytes of JSON (max %u)", nbytes,
                              DDTS_MAX_CONFIG_BYTES);
    json_error_t jerr;
    json_t *root = json_loadb(json, nbytes, 0, &jerr);
    if (root == NULL)
        return ddts_error_set(err, DDTS_EFORMAT, "not JSON: %s at line %d, column %d", jerr.text,
                              jerr.line, jerr.column);
    enum ddts_status st = DDTS_OK;
    json_t *v = json_is_object(root) ? json_object_get(root, key) : NULL;
    if (json_is_string(v) && json_string_length(v) <= DDTS_MAX_KERAS_NAME) {
        *out = ddts_strndup(json_string_value(v), json_string_length(v));
        if (*out == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    json_decref(root);
    return st;
}

/* ---- compiled loss and optimizer --------------------------------------- */

static char *dup_json_string(json_t *v)
{
    return json_is_string(v) ? ddts_strndup(json_string_value(v), json_string_length(v)) : NULL;
}

void ddts_keras_training_deinit(struct ddts_keras_training *t)
{
    if (t == NULL)
        return;
    ddts_free(t->optimizer);
    ddts_free(t->optimizer_config_json);
    ddts_free(t->loss);
    memset(t, 0, sizeof *t);
    t->learning_rate = NAN;
}

enum ddts_status ddts_keras_training_info(const struct ddts_keras_model *m,
                                          struct ddts_keras_training *out, struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    out->learning_rate = NAN;
    if (m == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "keras: no model");
    json_t *root = NULL, *tc = NULL, *opt = NULL;
    if (m->training_config != NULL) {
        root = json_loads(m->training_config, 0, NULL);
        if (!json_is_object(root)) {
            json_decref(root);
            return ddts_error_set(err, DDTS_EFORMAT, "keras: training_config is not a JSON object");
        }
        tc = root;
        opt = json_object_get(tc, "optimizer_config");
    } else if (m->model_config != NULL && m->format == DDTS_KERAS_ZIP) {
        root = json_loads(m->model_config, 0, NULL);
        tc = json_is_object(root) ? json_object_get(root, "compile_config") : NULL;
        opt = json_is_object(tc) ? json_object_get(tc, "optimizer") : NULL;
    }
    if (!json_is_object(tc)) {
        json_decref(root);
        return DDTS_OK; /* not compiled */
    }
    enum ddts_status st = DDTS_OK;
    json_t *cls = json_object_get(opt, "class_name");
    if (json_is_string(opt))
        cls = opt; /* compile(optimizer="adam") kept as a name */
    if (json_is_string(cls)) {
        const char *c = json_string_value(cls);
        const char *gt = strrchr(c, '>');
        out->optimizer = ddts_strdup(gt ? gt + 1 : c);
        if (out->optimizer == NULL)
            st = DDTS_ENOMEM;
        for (char *p = out->optimizer; p != NULL && *p; p++)
            *p = (char)tolower((unsigned char)*p);
    }
    json_t *ocfg = json_object_get(opt, "config");
    if (json_is_object(ocfg)) {
        json_t *lr = json_object_get(ocfg, "learning_rate");
        if (lr == NULL)
            lr = json_object_get(ocfg, "lr");
        if (json_is_number(lr))
            out->learning_rate = json_number_value(lr);
        char *dumped = json_dumps(ocfg, JSON_COMPACT);
        out->optimizer_config_json = dumped ? ddts_strdup(dumped) : NULL;
        free(dumped);
        if (out->optimizer_config_json == NULL)
            st = DDTS_ENOMEM;
    }
    json_t *loss = json_object_get(tc, "loss");
    if (json_is_string(loss)) {
        out->loss = dup_json_string(loss);
        if (out->loss == NULL)
            st = DDTS_ENOMEM;
    } else if (json_is_object(loss) && json_is_string(json_object_get(loss, "class_name"))) {
        const char *c = json_string_value(json_object_get(loss, "class_name"));
        json_t *fn = json_object_get(loss, "config");
        /* Keras 3 serializes a loss function as {"class_name": "function",
         * "config": "mean_squared_error"}. */
        if (strcmp(c, "function") == 0 && json_is_string(fn))
            c = json_string_value(fn);
        out->loss = ddts__keras_snake_case(c);
        if (out->loss == NULL)
            st = DDTS_ENOMEM;
    }
    json_decref(root);
    if (st != DDTS_OK) {
        ddts_keras_training_deinit(out);
        return ddts_error_set(err, st, "keras: out of memory");
    }
    return DDTS_OK;
}

/*
 * Keras 3 keeps compile() in config.json under "compile_config": optimizer
 * (an object {"class_name", "config"} or a name), loss, metrics. Written here
 * in tf.keras 2's training_config layout ("optimizer_config" object), the
 * one every reader of m->training_config (the engine, inspect, the .h5
 * writer) knows. No compile_config (or null): *out stays NULL.
 */
enum ddts_status ddts__keras_compile_config(const char *config_json, char **out,
                                            struct ddts_error *err)
{
    *out = NULL;
    json_t *root = json_loads(config_json, 0, NULL);
    json_t *cc = json_is_object(root) ? json_object_get(root, "compile_config") : NULL;
    if (!json_is_object(cc)) {
        json_decref(root);
        return DDTS_OK;
    }
    json_t *tc = json_object(), *opt = json_object_get(cc, "optimizer");
    int bad = tc == NULL;
    static const char *const keys[] = {"loss", "metrics", "weighted_metrics", "loss_weights"};
    for (size_t i = 0; !bad && i < sizeof keys / sizeof keys[0]; i++) {
        json_t *v = json_object_get(cc, keys[i]);
        if (v != NULL && !json_is_null(v))
            bad = json_object_set(tc, keys[i], v) != 0;
    }
    if (!bad && json_is_string(opt)) {
        json_t *o = json_pack("{s:O,s:{}}", "class_name", opt, "config");
        bad = o == NULL || json_object_set_new(tc, "optimizer_config", o) != 0;
    } else if (!bad && json_is_object(opt)) {
        bad = json_object_set(tc, "optimizer_config", opt) != 0;
    }
    char *dumped = bad ? NULL : json_dumps(tc, JSON_COMPACT);
    json_decref(tc);
    json_decref(root);
    if (dumped == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "keras: out of memory");
    *out = ddts_strdup(dumped);
    free(dumped);
    return *out != NULL ? DDTS_OK : ddts_error_set(err, DDTS_ENOMEM, "keras: out of memory");
}
