/*
 * libFuzzer target: model surgery (src/train/surgery.c) on hostile model
 * configurations: the Normalization layer inserted at the input (Sequential
 * and Functional, Keras 2 and 3 forms) and the ensemble configuration. The
 * first input byte picks the input shape; the rest is the config JSON.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ddts/trainer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    int rank = 1 + data[0] % 3;
    int64_t shape[3] = {1 + data[0] % 7, 2, 3};
    char *json = ddts_malloc(size);
    if (json == NULL)
        return 0;
    memcpy(json, data + 1, size - 1);
    json[size - 1] = '\0';
    struct ddts_error err;
    char *out = NULL, *name = NULL;
    if (ddts_surgery_insert_normalization(json, rank, shape, &out, &name, &err) == DDTS_OK) {
        /* The result names the new layer, and the config lister reads it without harm. */
        struct ddts_keras_config *c = NULL;
        if (out == NULL || name == NULL || name[0] == '\0' || strstr(out, name) == NULL)
            __builtin_trap();
        if (ddts_keras_config_parse(out, strlen(out), &c, &err) == DDTS_OK)
            ddts_keras_config_destroy(c);
        ddts_free(out);
        ddts_free(name);
    } else if (out != NULL || name != NULL) {
        __builtin_trap();
    }
    const char *members[] = {json, json};
    if (ddts_surgery_ensemble_config(members, 2, rank, shape, &out, &err) == DDTS_OK)
        ddts_free(out);
    ddts_free(json);
    return 0;
}
