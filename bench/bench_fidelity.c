/*
 * Numerical fidelity against PyTorch, apart from seeds: ddts trains the
 * engine benchmark's MLP or CNN on the first N Fashion-MNIST training samples,
 * 2 epochs at batch 32 with Adam, in file order (no shuffling), and writes its
 * initial and trained weights; bench/torch_fidelity.py loads the same initial
 * weights into PyTorch, trains on the same batches in the same order, and
 * evaluates both trained models on the 10000 test samples. With the initial
 * weights and the order shared, the accuracy difference is the engines'
 * numerics alone (a different seed alone moves it by up to 2 points).
 *
 *   bench_fidelity mlp|cnn N OUT_DIR [--data DIR]
 *
 * Writes OUT_DIR/w0.bin and OUT_DIR/w1.bin: the flat weights (float32, the
 * layer order of the model, Keras shapes: kernels HWIO / (in, out)).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/ddts.h"
#include "models.h"

static int save(const char *dir, const char *name, const float *w, size_t n)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (f == NULL || fwrite(w, sizeof *w, n, f) != n) {
        fprintf(stderr, "cannot write %s\n", p);
        if (f)
            fclose(f);
        return -1;
    }
    return fclose(f) == 0 ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: bench_fidelity mlp|cnn N OUT_DIR [--data DIR]\n");
        return 2;
    }
    const char *json = strcmp(argv[1], "cnn") == 0 ? CNN : MLP;
    long n = strtol(argv[2], NULL, 10);
    const char *out = argv[3], *dir = "/usr/share/datasets/fashion-mnist";
    if (argc >= 6 && strcmp(argv[4], "--data") == 0)
        dir = argv[5];
    char px[4096], py[4096];
    snprintf(px, sizeof px, "%s/train-images-idx3-ubyte.gz", dir);
    snprintf(py, sizeof py, "%s/train-labels-idx1-ubyte.gz", dir);
    struct ddts_error err = {0};
    struct ddts_array *x = NULL, *y = NULL;
    struct ddts_model *m = NULL;
    if (ddts_data_load(px, NULL, &x, &err) != DDTS_OK ||
        ddts_data_load(py, NULL, &y, &err) != DDTS_OK) {
        fprintf(stderr, "data: %s\n", err.msg);
        return 1;
    }
    if (n <= 0 || n > x->shape[0])
        n = (long)x->shape[0];
    float scale[784], offset[784] = {0};
    for (int j = 0; j < 784; j++)
        scale[j] = 1.0f / 255.0f;
    struct ddts_compile_options co = {
        .loss = "sparse_categorical_crossentropy", .optimizer = "adam", .threads = 1};
    if (ddts_model_from_keras_config(json, strlen(json), &m, &err) != DDTS_OK ||
        ddts_model_init_weights(m, 42, &err) != DDTS_OK ||
        ddts_model_compile(m, &co, &err) != DDTS_OK) {
        fprintf(stderr, "model: %s\n", err.msg);
        return 1;
    }
    size_t nw;
    float *w = ddts_model_weights_flat(m, &nw);
    if (save(out, "w0.bin", w, nw) != 0)
        return 1;
    struct ddts_dataset d = {.x = x, .y = y, .n = (size_t)n, .x_offset = offset, .x_scale = scale};
    struct ddts_fit_options fo = {.epochs = 2, .batch_size = 32, .shuffle = 0};
    if (ddts_model_fit(m, &d, &fo, NULL, &err) != DDTS_OK) {
        fprintf(stderr, "fit: %s\n", err.msg);
        return 1;
    }
    if (save(out, "w1.bin", w, nw) != 0)
        return 1;
    printf("%s: %zu weights, %ld samples, 2 epochs at batch 32 in file order\n", argv[1], nw, n);
    ddts_model_destroy(m);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    return 0;
}
