/*
 * libFuzzer target: the parent's decoder of the isolated HDF5 reader's result
 * (ddts__keras_h5_decode_result, keras_h5_isolated.c). The child that wrote a
 * result may have been taken over by a hostile file, so the decoder trusts
 * nothing in it: every length, count and weight offset must be checked, and a
 * successful decode must be a well-formed model. Input: u64 (little-endian)
 * where the model's description starts, then the result. Seeds:
 * fuzz/corpus/make_seeds.py.
 */
#include <stdint.h>
#include <string.h>

#include "ddts/keras.h"
#include "io/keras_internal.h"

static void check_weights(const struct ddts_keras_weight *w, size_t n)
{
    for (size_t j = 0; j < n; j++) {
        size_t count = 1;
        for (int k = 0; k < w[j].rank; k++)
            count *= (size_t)w[j].shape[k];
        if (w[j].rank < 0 || w[j].rank > DDTS_MAX_RANK || count != w[j].count)
            __builtin_trap();
        if (w[j].count > 0 && w[j].data != NULL) {
            volatile float sink = w[j].data[w[j].count - 1];
            (void)sink;
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < sizeof(uint64_t))
        return 0;
    uint64_t meta;
    memcpy(&meta, data, sizeof meta);
    data += sizeof meta;
    size -= sizeof meta;
    struct ddts_keras_model *m = ddts_calloc(1, sizeof *m);
    if (m == NULL)
        return 0;
    struct ddts_error err;
    ddts_error_clear(&err);
    enum ddts_status st =
        ddts__keras_h5_decode_result(data, size, (size_t)(meta % (size + 1)), "fuzz", m, &err);
    if (st != DDTS_OK && strncmp(err.msg, "fuzz", 4) != 0)
        __builtin_trap(); /* every failure names the input */
    for (size_t i = 0; st == DDTS_OK && i < m->n_layers; i++)
        check_weights(m->layers[i].weights, m->layers[i].n_weights);
    if (st == DDTS_OK)
        check_weights(m->optimizer_weights, m->n_optimizer_weights);
    ddts_keras_destroy(m);
    return 0;
}
