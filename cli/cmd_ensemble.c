/* ddts ensemble: one model from several. */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_ensemble[] =
    "usage: ddts ensemble -o OUT.h5 M1 M2 ...\n"
    "       ddts ensemble -o OUT --average-weights M1 M2 ...\n"
    "\n"
    "Combine several trained Keras models (e.g. the models of a --sync none job,\n"
    "gathered under WORKDIR/JOB/clients/) into one.\n"
    "\n"
    "By default OUT averages the members' outputs: a Keras functional model with\n"
    "an InputLayer, each member nested as a model (member_1, member_2, ...) and\n"
    "an Average layer, written as a new tf.keras 2.x .h5 file that Keras'\n"
    "load_model, 'ddts evaluate' and 'ddts predict' open. Members need the same\n"
    "input and output shapes, not the same architecture. OUT is compiled like M1.\n"
    "\n"
    "With --average-weights, OUT is M1 with every weight the mean of the\n"
    "members' weights (members of the same architecture), written in the\n"
    "format and layout of M1.\n"
    "\n"
    "  -o, --output FILE     the model to write (required)\n"
    "  --average-weights     average the weights instead of the outputs (members\n"
    "                        must have the same layers and weight shapes)\n";

/* The output-averaging ensemble of argv[0..n). */
static int average_outputs(const char *out, char **argv, size_t n)
{
    struct ddts_error err;
    ddts_error_clear(&err);
    const char *dot = strrchr(out, '.');
    if (dot != NULL && strcmp(dot, ".keras") == 0)
        return cli_usage_error("ensemble",
                               "the ensemble is a new .h5 file (tf.keras 2.x layout): name it "
                               "*.h5, not %s",
                               out);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): sizeof *p of a pointer array is the idiom */
    struct ddts_keras_model **ms = ddts_calloc(n, sizeof *ms);
    if (ms == NULL) {
        ddts_error_set(&err, DDTS_ENOMEM, "out of memory");
        return cli_fail("ensemble", &err);
    }
    enum ddts_status st = DDTS_OK;
    for (size_t i = 0; st == DDTS_OK && i < n; i++)
        st = ddts_keras_read(argv[i], &ms[i], &err);
    if (st == DDTS_OK)
        st = ddts_surgery_write_ensemble((const struct ddts_keras_model *const *)ms,
                                         (const char *const *)argv, n, out, &err);
    for (size_t i = 0; i < n; i++)
        ddts_keras_destroy(ms[i]);
    ddts_free((void *)ms);
    if (st != DDTS_OK)
        return cli_fail("ensemble", &err);
    printf("%s: mean of %zu models' outputs\n", out, n);
    return CLI_OK;
}

int cmd_ensemble(int argc, char **argv)
{
    const char *out = NULL;
    int average = 0;
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"average-weights", no_argument, NULL, 'a'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'a':
            average = 1;
            break;
        default:
            return cli_usage_error("ensemble", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (out == NULL)
        return cli_usage_error("ensemble", "-o OUT is required");
    if (argc - optind < 2)
        return cli_usage_error("ensemble", "at least two member models are required");
    if (!average)
        return average_outputs(out, argv + optind, (size_t)(argc - optind));
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_keras_model *sum = NULL, *k = NULL;
    enum ddts_status st = ddts_keras_read(argv[optind], &sum, &err);
    size_t n_members = (size_t)(argc - optind);
    for (int i = optind + 1; st == DDTS_OK && i < argc; i++) {
        st = ddts_keras_read(argv[i], &k, &err);
        if (st != DDTS_OK)
            break;
        for (size_t l = 0; st == DDTS_OK && l < sum->n_layers; l++) {
            struct ddts_keras_layer *a = &sum->layers[l];
            struct ddts_keras_layer *b = ddts_keras_layer_find(k, a->name);
            if (b == NULL || b->n_weights != a->n_weights) {
                st = ddts_error_set(&err, DDTS_ESHAPE,
                                    "%s: layer '%s' differs from %s's: not the same architecture",
                                    argv[i], a->name, argv[optind]);
                break;
            }
            for (size_t w = 0; w < a->n_weights; w++) {
                if (a->weights[w].count != b->weights[w].count) {
                    st = ddts_error_set(&err, DDTS_ESHAPE, "%s: weight '%s' has another shape",
                                        argv[i], a->weights[w].name);
                    break;
                }
                for (size_t j = 0; j < a->weights[w].count; j++)
                    a->weights[w].data[j] += b->weights[w].data[j];
            }
        }
        ddts_keras_destroy(k);
        k = NULL;
    }
    if (st == DDTS_OK) {
        for (size_t l = 0; l < sum->n_layers; l++)
            for (size_t w = 0; w < sum->layers[l].n_weights; w++)
                for (size_t j = 0; j < sum->layers[l].weights[w].count; j++)
                    sum->layers[l].weights[w].data[j] /= (float)n_members;
        st = ddts_keras_write(sum, out, &err);
    }
    ddts_keras_destroy(sum);
    if (st != DDTS_OK)
        return cli_fail("ensemble", &err);
    printf("%s: mean of %zu models' weights\n", out, n_members);
    return CLI_OK;
}
