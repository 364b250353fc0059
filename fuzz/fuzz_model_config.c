/* libFuzzer target: Keras model configs (ddts_model_from_keras_config), then
 * weight initialization, introspection and compile with a training_config. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ddts/nn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts_model *m = NULL;
    if (ddts_model_from_keras_config((const char *)data, size, &m, NULL) != DDTS_OK)
        return 0;
    (void)ddts_model_init_weights(m, 1, NULL);
    for (size_t i = 0; i < ddts_model_n_layers(m); i++) {
        struct ddts_layer_info li;
        if (ddts_model_layer_info(m, i, &li) != DDTS_OK)
            continue;
        for (size_t j = 0; j < li.n_weights; j++) {
            struct ddts_weight_view wv;
            (void)ddts_model_weight(m, i, j, &wv);
        }
    }
    struct ddts_compile_options co = {.training_config_json = "{\"loss\":\"mse\"}"};
    (void)ddts_model_compile(m, &co, NULL);
    ddts_model_destroy(m);
    return 0;
}
