/*
 * libFuzzer target: the Keras model-config lister (keras_config.c), which
 * reads config.json of .keras files and the model_config attribute of .h5
 * files. Also the metadata.json string getter.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ddts/keras.h"
#include "ddts/trainer.h"
#include "io/keras_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_keras_config *c = NULL;
    struct ddts_error err;
    if (ddts_keras_config_parse((const char *)data, size, &c, &err) == DDTS_OK) {
        /* Invariants a caller relies on. */
        for (size_t i = 0; i < c->n_layers; i++) {
            const struct ddts_keras_config_layer *l = &c->layers[i];
            if (l->name == NULL || l->class_name == NULL || l->name[0] == '\0' ||
                l->parent >= (int)i || (l->parent < 0) != (l->depth == 0))
                __builtin_trap();
            char *snake = ddts__keras_snake_case(l->class_name);
            char *sn = ddts__keras_short_name(l, i % 5);
            if (snake == NULL || sn == NULL)
                __builtin_trap();
            ddts_free(snake);
            ddts_free(sn);
        }
        ddts_keras_config_destroy(c);
        /* The normalizer's config rewrite (its one implementation, src/train/surgery.c)
         * on the same (NUL-terminated) text. */
        char *text = ddts_strndup((const char *)data, size);
        int64_t shape[1] = {3};
        char *json = NULL, *name = NULL;
        if (text != NULL &&
            ddts_surgery_insert_normalization(text, 1, shape, &json, &name, &err) == DDTS_OK) {
            struct ddts_keras_config *c2 = NULL;
            if (ddts_keras_config_parse(json, strlen(json), &c2, &err) != DDTS_OK)
                __builtin_trap(); /* our output must parse */
            ddts_keras_config_destroy(c2);
            ddts_free(json);
            ddts_free(name);
        }
        ddts_free(text);
    }
    char *v = NULL;
    if (ddts__keras_json_string((const char *)data, size, "keras_version", &v, &err) == DDTS_OK)
        ddts_free(v);
    return 0;
}
