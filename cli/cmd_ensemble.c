/* ddts ensemble: one model from several. */
#include <getopt.h>
#include <string.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_ensemble[] =
    "usage: ddts ensemble -o OUT --average-weights M1 M2 ...\n"
    "\n"
    "Combine several trained Keras models of the same architecture (e.g. the\n"
    "models of a --sync none job, gathered under WORKDIR/JOB/clients/) into one\n"
    "whose every weight is the mean of the members' weights. OUT is written in\n"
    "the format and layout of M1, so Keras' load_model opens it.\n"
    "\n"
    "  -o, --output FILE     the model to write (required)\n"
    "  --average-weights     average the weights (members must have the same layers\n"
    "                        and weight shapes)\n"
    "\n"
    "An ensemble that averages the members' outputs (a Keras Average layer over\n"
    "the member models) is not implemented yet.\n";

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
    if (!average) {
        struct ddts_error e = {DDTS_EUNSUPPORTED, 0,
                               "output averaging is not implemented yet; use --average-weights"};
        return cli_fail("ensemble", &e);
    }
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
