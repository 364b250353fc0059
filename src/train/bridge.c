/*
 * Keras files <-> the engine. A Keras file lists each layer's weights in
 * Keras' order; the engine keeps the same order, so weights are matched by
 * layer name and then by position, and every shape is checked.
 */
#include <string.h>

#include "ddts/trainer.h"
#include "train/bridge.h"

int ddts__bridge_same_shape(int ra, const int64_t *a, int rb, const int64_t *b)
{
    if (ra != rb)
        return 0;
    for (int i = 0; i < ra; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

static void shape_str(int rank, const int64_t *shape, char *buf, size_t cap)
{
    size_t used = 0;
    int w = snprintf(buf, cap, "(");
    used = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < rank && used < cap; i++) {
        w = snprintf(buf + used, cap - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    if (used < cap)
        snprintf(buf + used, cap - used, ")");
}

enum ddts_status ddts_bridge_load(const struct ddts_keras_model *k, uint64_t seed,
                                  struct ddts_model **out, struct ddts_error *err)
{
    *out = NULL;
    struct ddts_model *m = NULL;
    enum ddts_status st =
        ddts_model_from_keras_config(k->model_config, strlen(k->model_config), &m, err);
    if (st != DDTS_OK)
        return st;
    ddts_model_set_keras_version(m, k->keras_version);
    st = ddts_model_init_weights(m, seed, err);
    if (st != DDTS_OK)
        goto fail;
    size_t n_layers = ddts_model_n_layers(m);
    for (size_t i = 0; i < n_layers; i++) {
        struct ddts_layer_info info;
        st = ddts_model_layer_info(m, i, &info);
        if (st != DDTS_OK)
            goto fail;
        if (info.n_weights == 0)
            continue;
        const struct ddts_keras_layer *kl = ddts_keras_layer_find(k, info.name);
        if (kl == NULL || kl->n_weights == 0)
            continue; /* no stored weights: keep the fresh ones */
        if (kl->n_weights != info.n_weights) {
            st = ddts_error_set(err, DDTS_ESHAPE,
                                "layer '%s' (%s): the file holds %zu weights, the model needs %zu",
                                info.name, info.class_name, kl->n_weights, info.n_weights);
            goto fail;
        }
        for (size_t j = 0; j < info.n_weights; j++) {
            struct ddts_weight_view v;
            st = ddts_model_weight(m, i, j, &v);
            if (st != DDTS_OK)
                goto fail;
            const struct ddts_keras_weight *w = &kl->weights[j];
            if (!ddts__bridge_same_shape(v.rank, v.shape, w->rank, w->shape)) {
                char a[128], b[128];
                shape_str(w->rank, w->shape, a, sizeof a);
                shape_str(v.rank, v.shape, b, sizeof b);
                st = ddts_error_set(err, DDTS_ESHAPE,
                                    "layer '%s' weight '%s': the file's shape is %s, the model's "
                                    "config needs %s",
                                    info.name, w->name, a, b);
                goto fail;
            }
            memcpy(v.data, w->data, v.n_floats * sizeof(float));
        }
    }
    *out = m;
    return DDTS_OK;
fail:
    ddts_model_destroy(m);
    return st;
}

enum ddts_status ddts_bridge_store(struct ddts_model *m, struct ddts_keras_model *k,
                                   struct ddts_error *err)
{
    size_t n_layers = ddts_model_n_layers(m);
    for (size_t i = 0; i < n_layers; i++) {
        struct ddts_layer_info info;
        enum ddts_status st = ddts_model_layer_info(m, i, &info);
        if (st != DDTS_OK)
            return st;
        if (info.n_weights == 0)
            continue;
        struct ddts_keras_layer *kl = ddts_keras_layer_find(k, info.name);
        if (kl == NULL || kl->n_weights != info.n_weights)
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "layer '%s' (%s): the model file has no place for its %zu "
                                  "weights",
                                  info.name, info.class_name, info.n_weights);
        for (size_t j = 0; j < info.n_weights; j++) {
            struct ddts_weight_view v;
            st = ddts_model_weight(m, i, j, &v);
            if (st != DDTS_OK)
                return st;
            struct ddts_keras_weight *w = &kl->weights[j];
            if (w->count != v.n_floats)
                return ddts_error_set(err, DDTS_ESHAPE, "layer '%s' weight '%s': size differs",
                                      info.name, w->name);
            memcpy(w->data, v.data, v.n_floats * sizeof(float));
        }
    }
    return DDTS_OK;
}

enum ddts_status ddts_bridge_write(struct ddts_model *m, struct ddts_keras_model *k,
                                   const char *path, struct ddts_error *err)
{
    enum ddts_status st = ddts_bridge_store(m, k, err);
    if (st != DDTS_OK)
        return st;
    if (k->source_path != NULL)
        return ddts_keras_write(k, path, err);
    return ddts_keras_write_new(k, path, err);
}

enum ddts_status ddts_bridge_new_keras(struct ddts_model *m, const char *config_json,
                                       const char *training_config_json,
                                       struct ddts_keras_model **out, struct ddts_error *err)
{
    *out = NULL;
    struct ddts_keras_model *k = ddts_calloc(1, sizeof *k);
    if (k == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    enum ddts_status st = DDTS_ENOMEM;
    k->format = DDTS_KERAS_H5;
    k->model_config = ddts_strdup(config_json);
    if (k->model_config == NULL)
        goto fail;
    if (training_config_json != NULL) {
        k->training_config = ddts_strdup(training_config_json);
        if (k->training_config == NULL)
            goto fail;
    }
    size_t n_layers = ddts_model_n_layers(m);
    k->layers = ddts_calloc(n_layers, sizeof *k->layers);
    if (k->layers == NULL)
        goto fail;
    k->n_layers = n_layers;
    for (size_t i = 0; i < n_layers; i++) {
        struct ddts_layer_info info;
        st = ddts_model_layer_info(m, i, &info);
        if (st != DDTS_OK)
            goto fail;
        st = DDTS_ENOMEM;
        struct ddts_keras_layer *kl = &k->layers[i];
        kl->name = ddts_strdup(info.name);
        kl->class_name = ddts_strdup(info.class_name);
        if (kl->name == NULL || kl->class_name == NULL)
            goto fail;
        if (info.n_weights == 0)
            continue;
        kl->weights = ddts_calloc(info.n_weights, sizeof *kl->weights);
        if (kl->weights == NULL)
            goto fail;
        kl->n_weights = info.n_weights;
        for (size_t j = 0; j < info.n_weights; j++) {
            struct ddts_weight_view v;
            st = ddts_model_weight(m, i, j, &v);
            if (st != DDTS_OK)
                goto fail;
            st = DDTS_ENOMEM;
            struct ddts_keras_weight *w = &kl->weights[j];
            char name[512];
            snprintf(name, sizeof name, "%s/%s:0", v.layer_name ? v.layer_name : info.name, v.name);
            w->name = ddts_strdup(name);
            w->short_name = ddts_strdup(v.name);
            w->layer_name = ddts_strdup(v.layer_name ? v.layer_name : info.name);
            w->data = ddts_mallocarray(v.n_floats ? v.n_floats : 1, sizeof(float));
            if (w->name == NULL || w->short_name == NULL || w->layer_name == NULL ||
                w->data == NULL)
                goto fail;
            w->rank = v.rank;
            memcpy(w->shape, v.shape, sizeof w->shape);
            w->count = v.n_floats;
            w->stored_dtype = DDTS_F32;
            memcpy(w->data, v.data, v.n_floats * sizeof(float));
        }
    }
    *out = k;
    return DDTS_OK;
fail:
    ddts_keras_destroy(k);
    return st == DDTS_OK ? DDTS_ENOMEM : ddts_error_set(err, st, "cannot build the model file");
}
