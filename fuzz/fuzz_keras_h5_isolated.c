/*
 * libFuzzer target: the isolated HDF5 reader (keras_h5_isolated.c) on raw
 * bytes. Each input is parsed by libhdf5 in a limited child process; a crash
 * or a hang there must come back as an error, never take this process down,
 * and a successful read must be a well-formed model (what the parent decodes
 * from the child is checked here). Slow (a fork per input): CTest runs it
 * for its time cap only. Seeds: mutants of real Keras files
 * (tests/data/h5-mutants), two of which crash libhdf5 1.10.
 */
#include <stdint.h>
#include <string.h>

#include "ddts/keras.h"
#include "io/keras_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int once;
    if (!once) {
        ddts__keras_h5_set_child_cpu(1);
        once = 1;
    }
    struct ddts_keras_model *m = ddts_calloc(1, sizeof *m);
    if (m == NULL)
        return 0;
    struct ddts_error err;
    ddts_error_clear(&err);
    enum ddts_status st = ddts__keras_h5_read_legacy_image(data, size, "fuzz", m, &err);
    if (st != DDTS_OK && strncmp(err.msg, "fuzz", 4) != 0)
        __builtin_trap(); /* every failure names the input */
    for (size_t i = 0; st == DDTS_OK && i < m->n_layers; i++)
        for (size_t j = 0; j < m->layers[i].n_weights; j++) {
            const struct ddts_keras_weight *w = &m->layers[i].weights[j];
            size_t count = 1;
            for (int k = 0; k < w->rank; k++)
                count *= (size_t)w->shape[k];
            if (w->rank < 0 || w->rank > DDTS_MAX_RANK || count != w->count)
                __builtin_trap();
            if (w->count > 0 && w->data != NULL) {
                volatile float sink = w->data[w->count - 1];
                (void)sink;
            }
        }
    ddts_keras_destroy(m);
    return 0;
}
