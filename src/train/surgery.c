/*
 * Model surgery: new Keras model configurations made from existing ones
 * (JSON in, JSON out, with jansson), and the new model files they become
 * (ddts_keras_write_new, tf.keras 2.x layout):
 *
 *  - a job's normalizer as a Keras Normalization layer at the model's input
 *    (Sequential: after the InputLayer; Functional: after the input, its
 *    consumers rewired), so that the saved model works on raw data;
 *  - an ensemble that averages its members' outputs: an InputLayer, each
 *    member nested as a model called at node index 1, an Average layer.
 *
 * The layouts are documented in docs/file-formats.md ("Model surgery").
 */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/trainer.h"
#include "train/bridge.h"

static const char *jstr(const json_t *o, const char *key)
{
    const json_t *v = json_is_object(o) ? json_object_get(o, key) : NULL;
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static enum ddts_status oom(struct ddts_error *err)
{
    return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
}

static enum ddts_status parse_json(const char *text, json_t **out, struct ddts_error *err)
{
    size_t n = strlen(text);
    if (n > DDTS_MAX_CONFIG_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "model config: %zu bytes (max %u)", n,
                              DDTS_MAX_CONFIG_BYTES);
    json_error_t je;
    *out = json_loadb(text, n, JSON_REJECT_DUPLICATES, &je);
    if (*out == NULL)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "model config: JSON error at line %d column %d: %s", je.line,
                              je.column, je.text);
    return DDTS_OK;
}

/* The {"class_name", "config"} object of a model (some files wrap it in {"model_config": ...}). */
static json_t *model_object(json_t *root)
{
    if (json_object_get(root, "class_name") == NULL && json_object_get(root, "model_config"))
        return json_object_get(root, "model_config");
    return root;
}

/* A layer's name: the entry's "name" (Functional), else its config's. */
static const char *entry_name(const json_t *layer)
{
    const char *n = jstr(layer, "name");
    return n != NULL ? n : jstr(json_object_get(layer, "config"), "name");
}

static int name_taken(const json_t *layers, const char *name)
{
    size_t i;
    const json_t *l;
    json_array_foreach(layers, i, l)
    {
        const char *n = entry_name(l);
        if (n != NULL && strcmp(n, name) == 0)
            return 1;
    }
    return 0;
}

/* Keras' naming: base, base_1, base_2, ... the first one not in `layers`. */
static void unique_name(const json_t *layers, const char *base, char *out, size_t cap)
{
    snprintf(out, cap, "%s", base);
    for (int i = 1; name_taken(layers, out) && i < 100000; i++)
        snprintf(out, cap, "%s_%d", base, i);
}

static json_t *shape_list(int rank, const int64_t *shape, int with_batch)
{
    json_t *a = json_array();
    if (a == NULL)
        return NULL;
    if (with_batch && json_array_append_new(a, json_null()) != 0)
        goto fail;
    for (int i = 0; i < rank; i++)
        if (json_array_append_new(a, json_integer((json_int_t)shape[i])) != 0)
            goto fail;
    return a;
fail:
    json_decref(a);
    return NULL;
}

/* Keras 3 configs carry "module" keys on their layer entries. */
static int is_keras3_layer(const json_t *layer)
{
    return json_object_get(layer, "module") != NULL;
}

/* A layer entry {"class_name", "config"[, "name", "inbound_nodes"]} in the
 * style of `like` (Keras 3: "module" and "registered_name" too). */
static json_t *new_entry(const char *cls, json_t *cfg, const char *name, int keras3)
{
    json_t *e = json_object();
    if (e == NULL || cfg == NULL)
        goto fail;
    if (keras3 && json_object_set_new(e, "module", json_string("keras.layers")) != 0)
        goto fail;
    if (json_object_set_new(e, "class_name", json_string(cls)) != 0 ||
        json_object_set_new(e, "config", cfg) != 0)
        goto fail2;
    cfg = NULL;
    if (keras3 && json_object_set_new(e, "registered_name", json_null()) != 0)
        goto fail2;
    if (name != NULL && json_object_set_new(e, "name", json_string(name)) != 0)
        goto fail2;
    return e;
fail:
    json_decref(cfg);
fail2:
    json_decref(e);
    return NULL;
}

/* Base layer config: name, trainable, dtype. */
static json_t *base_config(const char *name)
{
    return json_pack("{s:s, s:b, s:s}", "name", name, "trainable", 1, "dtype", "float32");
}

/* An inbound node calling a layer on `src` (output 0 of node 0): Keras 2
 * [[["src", 0, 0, {}]]]; Keras 3 [{"args": [__keras_tensor__], "kwargs": {}}]. */
static json_t *inbound_from(const char *src, int node, int keras3, int rank, const int64_t *shape)
{
    if (!keras3)
        return json_pack("[[[s, i, i, {}]]]", src, node, 0);
    json_t *shp = shape_list(rank, shape, 1);
    if (shp == NULL)
        return NULL;
    return json_pack("[{s:[{s:s, s:{s:o, s:s, s:[s, i, i]}}], s:{}}]", "args", "class_name",
                     "__keras_tensor__", "config", "shape", shp, "dtype", "float32",
                     "keras_history", src, node, 0, "kwargs");
}

/* Replaces every tensor reference [from, node, tensor, ...] by [to, ...] in `v`. */
static int rewire(json_t *v, const char *from, const char *to, int depth)
{
    if (depth > 32)
        return 0;
    if (json_is_array(v)) {
        if (json_array_size(v) >= 3 && json_is_string(json_array_get(v, 0)) &&
            json_is_integer(json_array_get(v, 1)) &&
            strcmp(json_string_value(json_array_get(v, 0)), from) == 0)
            return json_array_set_new(v, 0, json_string(to));
        size_t i;
        json_t *e;
        json_array_foreach(v, i, e)
        {
            if (rewire(e, from, to, depth + 1) != 0)
                return -1;
        }
        return 0;
    }
    if (json_is_object(v)) {
        const char *k;
        json_t *e;
        json_object_foreach(v, k, e)
        {
            if (rewire(e, from, to, depth + 1) != 0)
                return -1;
        }
    }
    return 0;
}

/* The new layers: [Reshape((F,)),] Normalization[, Reshape(input_shape)]. */
struct inserted {
    size_t n;
    char names[3][128];
    json_t *entries[3];
};

static void inserted_free(struct inserted *ins)
{
    for (size_t i = 0; i < ins->n; i++)
        json_decref(ins->entries[i]);
    ins->n = 0;
}

static enum ddts_status make_inserted(const json_t *layers, int rank, const int64_t *shape,
                                      int keras3, int invert, struct inserted *ins,
                                      struct ddts_error *err)
{
    memset(ins, 0, sizeof *ins);
    int64_t f = 1;
    for (int i = 0; i < rank; i++)
        f *= shape[i];
    int wrap = rank > 1;
    if (wrap)
        unique_name(layers, "reshape", ins->names[0], sizeof ins->names[0]);
    unique_name(layers, invert ? "denormalization" : "normalization", ins->names[wrap],
                sizeof ins->names[0]);
    if (wrap) {
        /* The second Reshape must not reuse the first one's name. */
        char cand[128];
        snprintf(cand, sizeof cand, "%s", ins->names[0]);
        for (int i = 1; name_taken(layers, cand) || strcmp(cand, ins->names[0]) == 0; i++)
            snprintf(cand, sizeof cand, "reshape_%d", i);
        snprintf(ins->names[2], sizeof ins->names[2], "%s", cand);
    }
    ins->n = wrap ? 3 : 1;
    for (size_t i = 0; i < ins->n; i++) {
        json_t *cfg = base_config(ins->names[i]);
        if (cfg == NULL)
            goto fail;
        int is_norm = (int)i == wrap;
        int ok;
        if (is_norm) {
            ok = json_object_set_new(cfg, "axis", json_pack("[i]", -1)) == 0 &&
                 json_object_set_new(cfg, "mean", json_null()) == 0 &&
                 json_object_set_new(cfg, "variance", json_null()) == 0;
            if (ok && (keras3 || invert))
                ok = json_object_set_new(cfg, "invert", json_boolean(invert)) == 0;
        } else {
            ok = json_object_set_new(cfg, "target_shape",
                                     i == 0 ? json_pack("[I]", (json_int_t)f)
                                            : shape_list(rank, shape, 0)) == 0;
        }
        if (!ok) {
            json_decref(cfg);
            goto fail;
        }
        ins->entries[i] = new_entry(is_norm ? "Normalization" : "Reshape", cfg, NULL, keras3);
        if (ins->entries[i] == NULL) {
            ins->n = i;
            goto fail;
        }
    }
    return DDTS_OK;
fail:
    inserted_free(ins);
    return oom(err);
}

static enum ddts_status insert_sequential(json_t *cfg, int rank, const int64_t *shape,
                                          struct inserted *ins, struct ddts_error *err)
{
    json_t *layers = json_is_array(cfg) ? cfg : json_object_get(cfg, "layers");
    if (!json_is_array(layers) || json_array_size(layers) == 0)
        return ddts_error_set(err, DDTS_EFORMAT, "model config: Sequential without layers");
    json_t *first = json_array_get(layers, 0);
    int keras3 = is_keras3_layer(first);
    enum ddts_status st = make_inserted(layers, rank, shape, keras3, 0, ins, err);
    if (st != DDTS_OK)
        return st;
    size_t pos = 0;
    const char *cls = jstr(first, "class_name");
    if (cls != NULL && strcmp(cls, "InputLayer") == 0) {
        pos = 1;
    } else {
        /* The first layer carries the input shape: it moves to the new first layer. */
        static const char *const keys[] = {"batch_input_shape", "batch_shape", "input_shape",
                                           "input_dim"};
        json_t *fc = json_object_get(first, "config");
        json_t *nc = json_object_get(ins->entries[0], "config");
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
            json_t *v = json_object_get(fc, keys[i]);
            if (v == NULL)
                continue;
            if (json_object_set(nc, keys[i], v) != 0 || json_object_del(fc, keys[i]) != 0)
                return oom(err);
        }
    }
    for (size_t i = 0; i < ins->n; i++) {
        if (json_array_insert(layers, pos + i, ins->entries[i]) != 0)
            return oom(err);
    }
    return DDTS_OK;
}

static enum ddts_status insert_functional(json_t *cfg, int rank, const int64_t *shape,
                                          struct inserted *ins, struct ddts_error *err)
{
    json_t *layers = json_object_get(cfg, "layers");
    json_t *inputs = json_object_get(cfg, "input_layers");
    if (!json_is_array(layers) || !json_is_array(inputs))
        return ddts_error_set(err, DDTS_EFORMAT, "model config: Functional without layers");
    /* [["input_1", 0, 0]] (Keras 2, several inputs) or ["input_1", 0, 0] (one input). */
    const json_t *ref = inputs;
    if (json_array_size(inputs) == 1 && json_is_array(json_array_get(inputs, 0)))
        ref = json_array_get(inputs, 0);
    else if (json_array_size(inputs) > 0 && json_is_array(json_array_get(inputs, 0)))
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "model config: %zu inputs (a normalizer needs a single-input model)",
                              json_array_size(inputs));
    if (!json_is_string(json_array_get(ref, 0)))
        return ddts_error_set(err, DDTS_EFORMAT, "model config: bad input_layers");
    char input[256];
    snprintf(input, sizeof input, "%s", json_string_value(json_array_get(ref, 0)));
    size_t pos = json_array_size(layers), i;
    json_t *l;
    json_array_foreach(layers, i, l)
    {
        const char *n = entry_name(l);
        if (n != NULL && strcmp(n, input) == 0) {
            pos = i;
            break;
        }
    }
    if (pos == json_array_size(layers))
        return ddts_error_set(err, DDTS_EFORMAT, "model config: input layer '%s' is not listed",
                              input);
    int keras3 = is_keras3_layer(json_array_get(layers, pos));
    enum ddts_status st = make_inserted(layers, rank, shape, keras3, 0, ins, err);
    if (st != DDTS_OK)
        return st;
    const char *last = ins->names[ins->n - 1];
    /* Every consumer of the input now reads the last new layer. */
    json_array_foreach(layers, i, l)
    {
        if (i == pos)
            continue;
        if (rewire(json_object_get(l, "inbound_nodes"), input, last, 0) != 0)
            return oom(err);
    }
    if (rewire(json_object_get(cfg, "output_layers"), input, last, 0) != 0)
        return oom(err);
    int64_t flat = 1;
    for (int d = 0; d < rank; d++)
        flat *= shape[d];
    const char *prev = input;
    for (size_t k = 0; k < ins->n; k++) {
        /* The tensor each new layer reads: the input, or the flat one after the first Reshape. */
        int in_rank = (ins->n == 3 && k > 0) ? 1 : rank;
        const int64_t *in_shape = (ins->n == 3 && k > 0) ? &flat : shape;
        json_t *e = ins->entries[k];
        if (json_object_set_new(e, "name", json_string(ins->names[k])) != 0 ||
            json_object_set_new(e, "inbound_nodes",
                                inbound_from(prev, 0, keras3, in_rank, in_shape)) != 0 ||
            json_array_insert(layers, pos + 1 + k, e) != 0)
            return oom(err);
        prev = ins->names[k];
    }
    return DDTS_OK;
}

/*
 * The inverse at the output (--order XX): [Reshape((F,)),]
 * Normalization(invert=True)[, Reshape(shape)] appended after the last layer
 * of a Sequential, or after the single output of a Functional model (which
 * then becomes the output).
 */
static enum ddts_status append_denormalization(json_t *root, int rank, const int64_t *shape,
                                               char **norm_name, struct ddts_error *err)
{
    json_t *obj = model_object(root);
    const char *cls = jstr(obj, "class_name");
    json_t *cfg = json_object_get(obj, "config");
    json_t *layers = json_is_array(cfg) ? cfg : json_object_get(cfg, "layers");
    if (!json_is_array(layers) || json_array_size(layers) == 0)
        return ddts_error_set(err, DDTS_EFORMAT, "model config: no layers");
    int functional = cls != NULL && strcmp(cls, "Sequential") != 0;
    json_t *outs = functional ? json_object_get(cfg, "output_layers") : NULL;
    const json_t *ref = outs;
    if (functional && json_array_size(outs) == 1 && json_is_array(json_array_get(outs, 0)))
        ref = json_array_get(outs, 0);
    if (functional && (!json_is_array(ref) || !json_is_string(json_array_get(ref, 0))))
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "model config: the output denormalizer needs a single-output model");
    int keras3 = is_keras3_layer(json_array_get(layers, 0));
    struct inserted ins;
    enum ddts_status st = make_inserted(layers, rank, shape, keras3, 1, &ins, err);
    if (st != DDTS_OK)
        return st;
    char prev[256] = "";
    int node = 0;
    if (functional) {
        snprintf(prev, sizeof prev, "%s", json_string_value(json_array_get(ref, 0)));
        node = (int)json_integer_value(json_array_get(ref, 1));
    }
    int64_t flat = 1;
    for (int d = 0; d < rank; d++)
        flat *= shape[d];
    for (size_t k = 0; k < ins.n; k++) {
        json_t *e = ins.entries[k];
        if (functional) {
            int in_rank = (ins.n == 3 && k > 0) ? 1 : rank;
            const int64_t *in_shape = (ins.n == 3 && k > 0) ? &flat : shape;
            if (json_object_set_new(e, "name", json_string(ins.names[k])) != 0 ||
                json_object_set_new(
                    e, "inbound_nodes",
                    inbound_from(prev, k == 0 ? node : 0, keras3, in_rank, in_shape)) != 0)
                st = oom(err);
            snprintf(prev, sizeof prev, "%s", ins.names[k]);
        }
        if (st == DDTS_OK && json_array_append(layers, e) != 0)
            st = oom(err);
    }
    if (st == DDTS_OK && functional &&
        rewire(outs, json_string_value(json_array_get(ref, 0)), ins.names[ins.n - 1], 0) != 0)
        st = oom(err);
    if (st == DDTS_OK && functional) {
        /* The new output is node 0 of the last new layer. */
        json_t *r = (json_t *)ref;
        if (json_array_set_new(r, 1, json_integer(0)) != 0)
            st = oom(err);
    }
    if (st == DDTS_OK && (*norm_name = ddts_strdup(ins.names[ins.n == 3 ? 1 : 0])) == NULL)
        st = oom(err);
    inserted_free(&ins);
    return st;
}

/* The configuration text of `root` as a ddts_malloc string. */
static enum ddts_status dump(json_t *root, char **out, struct ddts_error *err)
{
    char *s = json_dumps(root, JSON_COMPACT);
    *out = s != NULL ? ddts_strdup(s) : NULL;
    free(s);
    return *out != NULL ? DDTS_OK : oom(err);
}

enum ddts_status ddts_surgery_insert_normalization(const char *config_json, int input_rank,
                                                   const int64_t *input_shape, char **out_json,
                                                   char **norm_name, struct ddts_error *err)
{
    *out_json = NULL;
    *norm_name = NULL;
    if (input_rank < 1 || input_rank >= DDTS_MAX_RANK)
        return ddts_error_set(err, DDTS_EINVAL, "normalizer: input rank %d", input_rank);
    json_t *root = NULL;
    enum ddts_status st = parse_json(config_json, &root, err);
    if (st != DDTS_OK)
        return st;
    json_t *obj = model_object(root);
    const char *cls = jstr(obj, "class_name");
    json_t *cfg = json_object_get(obj, "config");
    struct inserted ins;
    memset(&ins, 0, sizeof ins);
    if (cls != NULL && strcmp(cls, "Sequential") == 0)
        st = insert_sequential(cfg, input_rank, input_shape, &ins, err);
    else if (cls != NULL && (strcmp(cls, "Functional") == 0 || strcmp(cls, "Model") == 0))
        st = insert_functional(cfg, input_rank, input_shape, &ins, err);
    else
        st = ddts_error_set(err, DDTS_EUNSUPPORTED,
                            "model config: class '%s' (a normalizer layer needs a Sequential or "
                            "Functional model)",
                            cls ? cls : "?");
    if (st == DDTS_OK) {
        *out_json = json_dumps(root, JSON_COMPACT);
        *norm_name = ddts_strdup(ins.names[ins.n == 3 ? 1 : 0]);
        if (*out_json != NULL && *norm_name != NULL) {
            /* jansson allocates with malloc: hand the caller a ddts_malloc copy. */
            char *copy = ddts_strdup(*out_json);
            free(*out_json);
            *out_json = copy;
        }
        if (*out_json == NULL || *norm_name == NULL) {
            free(*out_json);
            ddts_free(*norm_name);
            *out_json = *norm_name = NULL;
            st = oom(err);
        }
    }
    inserted_free(&ins);
    json_decref(root);
    return st;
}

/* Index of the top-level layer named `name` in `m`, or -1. */
static long layer_index(const struct ddts_model *m, const char *name)
{
    size_t n = ddts_model_n_layers(m);
    for (size_t i = 0; i < n; i++) {
        struct ddts_layer_info info;
        if (ddts_model_layer_info(m, i, &info) == DDTS_OK && strcmp(info.name, name) == 0)
            return (long)i;
    }
    return -1;
}

/* Builds the engine's model for `config` (weights to be filled by the caller). */
static enum ddts_status build(const char *config, struct ddts_model **out, struct ddts_error *err)
{
    enum ddts_status st = ddts_model_from_keras_config(config, strlen(config), out, err);
    if (st == DDTS_OK) {
        st = ddts_model_init_weights(*out, 0, err);
        if (st != DDTS_OK) {
            ddts_model_destroy(*out);
            *out = NULL;
        }
    }
    return st;
}

/* Writes `m2` with `config` as a new file, keeping k's training config, version and backend. */
static enum ddts_status write_new(struct ddts_model *m2, const char *config,
                                  const struct ddts_keras_model *k, const char *path,
                                  struct ddts_error *err)
{
    struct ddts_keras_model *k2 = NULL;
    enum ddts_status st = ddts_bridge_new_keras(m2, config, k->training_config, &k2, err);
    if (st != DDTS_OK)
        return st;
    if (k->keras_version != NULL && (k2->keras_version = ddts_strdup(k->keras_version)) == NULL)
        st = oom(err);
    if (st == DDTS_OK && k->backend != NULL && (k2->backend = ddts_strdup(k->backend)) == NULL)
        st = oom(err);
    if (st == DDTS_OK)
        st = ddts_keras_write_new(k2, path, err);
    ddts_keras_destroy(k2);
    return st;
}

enum ddts_status ddts_surgery_write_normalized(struct ddts_model *m,
                                               const struct ddts_keras_model *k,
                                               const struct ddts_norm_layer *norm, const char *path,
                                               struct ddts_error *err)
{
    int64_t shape[DDTS_MAX_RANK];
    int rank = ddts_model_input_shape(m, shape);
    if (ddts_model_n_inputs(m) > 1)
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "normalizer: a model with %zu inputs (the Normalization layer goes "
                              "after a single input)",
                              ddts_model_n_inputs(m));
    if (norm->n_features != ddts_model_input_size(m))
        return ddts_error_set(err, DDTS_ESHAPE,
                              "normalizer: %zu features, the model's input has %zu values",
                              norm->n_features, ddts_model_input_size(m));
    for (size_t i = 0; i < norm->n_features; i++)
        if (!isfinite(norm->mean[i]) || !isfinite(norm->variance[i]) || norm->variance[i] < 0)
            return ddts_error_set(err, DDTS_EINVAL,
                                  "normalizer: value %zu is not finite (mean %g, variance %g) or "
                                  "the variance is negative",
                                  i, (double)norm->mean[i], (double)norm->variance[i]);
    char *config = NULL, *norm_name = NULL, *denorm_name = NULL;
    struct ddts_model *m2 = NULL;
    enum ddts_status st =
        ddts_surgery_insert_normalization(k->model_config, rank, shape, &config, &norm_name, err);
    if (st == DDTS_OK && norm->invert_output) {
        int64_t oshape[DDTS_MAX_RANK];
        int orank = ddts_model_output_shape(m, oshape);
        json_t *root = NULL;
        if (ddts_model_output_size(m) != norm->n_features)
            st = ddts_error_set(err, DDTS_ESHAPE,
                                "normalizer: the output has %zu values, the input %zu (XX needs "
                                "an output shaped like the input)",
                                ddts_model_output_size(m), norm->n_features);
        if (st == DDTS_OK)
            st = parse_json(config, &root, err);
        if (st == DDTS_OK)
            st = append_denormalization(root, orank, oshape, &denorm_name, err);
        if (st == DDTS_OK) {
            ddts_free(config);
            config = NULL;
            st = dump(root, &config, err);
        }
        json_decref(root);
    }
    if (st == DDTS_OK)
        st = build(config, &m2, err);
    size_t n_layers = m2 != NULL ? ddts_model_n_layers(m2) : 0;
    for (size_t i = 0; st == DDTS_OK && i < n_layers; i++) {
        struct ddts_layer_info info;
        st = ddts_model_layer_info(m2, i, &info);
        if (st != DDTS_OK || info.n_weights == 0)
            continue;
        int is_norm = strcmp(info.name, norm_name) == 0 ||
                      (denorm_name != NULL && strcmp(info.name, denorm_name) == 0);
        long src = is_norm ? -1 : layer_index(m, info.name);
        for (size_t j = 0; st == DDTS_OK && j < info.n_weights; j++) {
            struct ddts_weight_view v, w;
            st = ddts_model_weight(m2, i, j, &v);
            if (st != DDTS_OK)
                break;
            if (is_norm) {
                const float *from = NULL;
                if (strcmp(v.name, "mean") == 0)
                    from = norm->mean;
                else if (strcmp(v.name, "variance") == 0)
                    from = norm->variance;
                if (from != NULL && v.n_floats == norm->n_features)
                    memcpy(v.data, from, v.n_floats * sizeof(float));
                else if (strcmp(v.name, "count") == 0 && v.n_floats == 1)
                    v.data[0] = (float)norm->count;
                else
                    st = ddts_error_set(err, DDTS_ESHAPE,
                                        "normalizer layer '%s': unexpected weight '%s' of %zu "
                                        "values",
                                        info.name, v.name, v.n_floats);
                continue;
            }
            if (src < 0) {
                st =
                    ddts_error_set(err, DDTS_EFORMAT, "normalizer: layer '%s' vanished", info.name);
                break;
            }
            st = ddts_model_weight(m, (size_t)src, j, &w);
            if (st == DDTS_OK && w.n_floats != v.n_floats)
                st = ddts_error_set(err, DDTS_ESHAPE, "normalizer: layer '%s' weight '%s' changed",
                                    info.name, v.name);
            if (st == DDTS_OK)
                memcpy(v.data, w.data, v.n_floats * sizeof(float));
        }
    }
    if (st == DDTS_OK)
        st = write_new(m2, config, k, path, err);
    if (st != DDTS_OK)
        ddts_error_prefix(err, "%s: ", path);
    ddts_model_destroy(m2);
    ddts_free(config);
    ddts_free(norm_name);
    ddts_free(denorm_name);
    return st;
}

/* ---- Ensembles ---- */

/* The member's model object, renamed, as a layer entry of the ensemble. */
static enum ddts_status member_entry(const char *config_json, size_t i, json_t **out,
                                     struct ddts_error *err)
{
    json_t *root = NULL;
    enum ddts_status st = parse_json(config_json, &root, err);
    if (st != DDTS_OK)
        return st;
    json_t *obj = model_object(root);
    const char *cls = jstr(obj, "class_name");
    json_t *cfg = json_object_get(obj, "config");
    if (cls == NULL ||
        !(strcmp(cls, "Sequential") == 0 || strcmp(cls, "Functional") == 0 ||
          strcmp(cls, "Model") == 0) ||
        cfg == NULL) {
        st = ddts_error_set(err, DDTS_EUNSUPPORTED,
                            "member %zu: model class '%s' (Sequential or Functional needed)", i + 1,
                            cls ? cls : "?");
        goto out;
    }
    char name[64];
    snprintf(name, sizeof name, "member_%zu", i + 1);
    if (json_is_array(cfg)) {
        /* Keras <= 2.2.2: a Sequential config is a bare list. */
        json_t *wrapped = json_pack("{s:s, s:O}", "name", name, "layers", cfg);
        if (wrapped == NULL || json_object_set_new(obj, "config", wrapped) != 0) {
            st = oom(err);
            goto out;
        }
        cfg = wrapped;
    } else if (json_object_set_new(cfg, "name", json_string(name)) != 0) {
        st = oom(err);
        goto out;
    }
    json_t *e = json_pack("{s:s, s:O, s:s, s:[[[s, i, i, {}]]]}", "class_name", cls, "config", cfg,
                          "name", name, "inbound_nodes", "input", 0, 0);
    if (e == NULL)
        st = oom(err);
    *out = e;
out:
    json_decref(root);
    return st;
}

enum ddts_status ddts_surgery_ensemble_config(const char *const *member_configs, size_t n,
                                              int input_rank, const int64_t *input_shape,
                                              char **out_json, struct ddts_error *err)
{
    *out_json = NULL;
    if (n < 2 || n > DDTS_MAX_LAYERS)
        return ddts_error_set(err, DDTS_EINVAL, "ensemble: %zu members (2 ..= %d)", n,
                              DDTS_MAX_LAYERS);
    if (input_rank < 1 || input_rank >= DDTS_MAX_RANK)
        return ddts_error_set(err, DDTS_EINVAL, "ensemble: input rank %d", input_rank);
    enum ddts_status st = DDTS_OK;
    json_t *layers = json_array(), *avg_in = json_array();
    json_t *root = NULL;
    json_t *shape = shape_list(input_rank, input_shape, 1);
    if (layers == NULL || avg_in == NULL || shape == NULL)
        goto nomem;
    json_t *input =
        json_pack("{s:s, s:{s:o, s:s, s:b, s:b, s:s}, s:s, s:[]}", "class_name", "InputLayer",
                  "config", "batch_input_shape", shape, "dtype", "float32", "sparse", 0, "ragged",
                  0, "name", "input", "name", "input", "inbound_nodes");
    shape = NULL;
    if (input == NULL || json_array_append_new(layers, input) != 0)
        goto nomem;
    for (size_t i = 0; i < n; i++) {
        json_t *e = NULL;
        st = member_entry(member_configs[i], i, &e, err);
        if (st != DDTS_OK)
            goto out;
        if (json_array_append_new(layers, e) != 0)
            goto nomem;
        /* A nested model's node 0 is its own build: the call on "input" is node 1. */
        if (json_array_append_new(avg_in, json_pack("[s, i, i, {}]", jstr(e, "name"), 1, 0)) != 0)
            goto nomem;
    }
    json_t *avg = json_pack("{s:s, s:{s:s, s:b, s:s}, s:s, s:[O]}", "class_name", "Average",
                            "config", "name", "average", "trainable", 1, "dtype", "float32", "name",
                            "average", "inbound_nodes", avg_in);
    if (avg == NULL || json_array_append_new(layers, avg) != 0)
        goto nomem;
    root = json_pack("{s:s, s:{s:s, s:b, s:O, s:[[s, i, i]], s:[[s, i, i]]}, s:s, s:s}",
                     "class_name", "Functional", "config", "name", "ensemble", "trainable", 1,
                     "layers", layers, "input_layers", "input", 0, 0, "output_layers", "average", 0,
                     0, "keras_version", "2.15.0", "backend", "tensorflow");
    if (root == NULL)
        goto nomem;
    char *text = json_dumps(root, JSON_COMPACT);
    if (text == NULL)
        goto nomem;
    *out_json = ddts_strdup(text);
    free(text);
    if (*out_json == NULL)
        goto nomem;
    goto out;
nomem:
    st = oom(err);
out:
    json_decref(shape);
    json_decref(layers);
    json_decref(avg_in);
    json_decref(root);
    return st;
}

/* The weight of member `k` owned by (sub)layer `layer` with short name `short_name`. */
static const struct ddts_keras_weight *member_weight(const struct ddts_keras_model *k,
                                                     const char *layer, const char *short_name)
{
    for (size_t i = 0; i < k->n_layers; i++)
        for (size_t j = 0; j < k->layers[i].n_weights; j++) {
            const struct ddts_keras_weight *w = &k->layers[i].weights[j];
            if (w->layer_name != NULL && w->short_name != NULL &&
                strcmp(w->layer_name, layer) == 0 && strcmp(w->short_name, short_name) == 0)
                return w;
        }
    return NULL;
}

enum ddts_status ddts_surgery_write_ensemble(const struct ddts_keras_model *const *members,
                                             const char *const *names, size_t n, const char *path,
                                             struct ddts_error *err)
{
    if (n < 2 || n > DDTS_MAX_LAYERS)
        return ddts_error_set(err, DDTS_EINVAL, "ensemble: %zu members (2 ..= %d)", n,
                              DDTS_MAX_LAYERS);
    const char **configs = ddts_calloc(n, sizeof *configs);
    if (configs == NULL)
        return oom(err);
    struct ddts_model *m = NULL, *e = NULL;
    char *config = NULL;
    int64_t in0[DDTS_MAX_RANK], out0[DDTS_MAX_RANK];
    int rin0 = 0, rout0 = 0;
    enum ddts_status st = DDTS_OK;
    /* Every member must build, with the first member's input and output shapes. */
    for (size_t i = 0; st == DDTS_OK && i < n; i++) {
        configs[i] = members[i]->model_config;
        st = ddts_model_from_keras_config(configs[i], strlen(configs[i]), &m, err);
        if (st != DDTS_OK) {
            ddts_error_prefix(err, "%s: ", names[i]);
            break;
        }
        int64_t in[DDTS_MAX_RANK], out[DDTS_MAX_RANK];
        int rin = ddts_model_input_shape(m, in), rout = ddts_model_output_shape(m, out);
        if (i == 0) {
            rin0 = rin;
            rout0 = rout;
            memcpy(in0, in, sizeof in);
            memcpy(out0, out, sizeof out);
        } else if (!ddts__bridge_same_shape(rin, in, rin0, in0) ||
                   !ddts__bridge_same_shape(rout, out, rout0, out0)) {
            st = ddts_error_set(err, DDTS_ESHAPE,
                                "%s: its input or output shape differs from %s's: an ensemble "
                                "averages outputs of the same shape on the same input",
                                names[i], names[0]);
        }
        ddts_model_destroy(m);
        m = NULL;
    }
    if (st == DDTS_OK)
        st = ddts_surgery_ensemble_config(configs, n, rin0, in0, &config, err);
    if (st == DDTS_OK)
        st = build(config, &e, err);
    size_t n_layers = e != NULL ? ddts_model_n_layers(e) : 0;
    for (size_t i = 0; st == DDTS_OK && i < n_layers; i++) {
        struct ddts_layer_info info;
        st = ddts_model_layer_info(e, i, &info);
        if (st != DDTS_OK || info.n_weights == 0)
            continue;
        size_t mi = 0;
        if (strncmp(info.name, "member_", 7) == 0)
            mi = (size_t)strtoul(info.name + 7, NULL, 10);
        if (mi < 1 || mi > n) {
            st = ddts_error_set(err, DDTS_EFORMAT, "ensemble: unexpected weighted layer '%s'",
                                info.name);
            break;
        }
        const struct ddts_keras_model *k = members[mi - 1];
        for (size_t j = 0; st == DDTS_OK && j < info.n_weights; j++) {
            struct ddts_weight_view v;
            st = ddts_model_weight(e, i, j, &v);
            if (st != DDTS_OK)
                break;
            const struct ddts_keras_weight *w = member_weight(k, v.layer_name, v.name);
            if (w == NULL)
                st = ddts_error_set(err, DDTS_EFORMAT, "%s: no weight '%s' of layer '%s'",
                                    names[mi - 1], v.name, v.layer_name);
            else if (!ddts__bridge_same_shape(w->rank, w->shape, v.rank, v.shape))
                st = ddts_error_set(err, DDTS_ESHAPE,
                                    "%s: weight '%s' of layer '%s' does not fit its config",
                                    names[mi - 1], v.name, v.layer_name);
            else
                memcpy(v.data, w->data, v.n_floats * sizeof(float));
        }
    }
    if (st == DDTS_OK) {
        /* The ensemble is a new tf.keras 2.x file, compiled like the first member. */
        struct ddts_keras_model base;
        memset(&base, 0, sizeof base);
        base.training_config = members[0]->training_config;
        st = write_new(e, config, &base, path, err);
    }
    ddts_model_destroy(e);
    ddts_free(config);
    ddts_free((void *)configs);
    return st;
}
