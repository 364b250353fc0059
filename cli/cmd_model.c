/* ddts model new: Keras model files without TensorFlow. */
#include <ctype.h>
#include <dirent.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_model[] =
    "usage: ddts model new (SPEC.json | --layers LIST --input-shape D1,D2,...) -o OUT.h5\n"
    "                      [--loss NAME] [--optimizer NAME] [--learning-rate F]\n"
    "                      [--metrics LIST] [--seed N]\n"
    "\n"
    "Create a Keras model file (tf.keras 2.x .h5 layout, which tf.keras and Keras 3\n"
    "load_model read) without TensorFlow. SPEC.json is a model architecture in\n"
    "Keras' own JSON format: what model.to_json() writes, {\"class_name\":\n"
    "\"Sequential\", \"config\": {\"layers\": [...]}} (see examples/). Weights are\n"
    "drawn from each layer's initializers with --seed; the compile configuration\n"
    "(loss, optimizer, metrics) is stored as Keras' training_config.\n"
    "\n"
    "Or a Sequential model from a compact layer list, e.g.\n"
    "  --layers conv2d:32:3:relu,maxpool2d:2,flatten,dense:128:relu,dense:10:softmax\n"
    "  --input-shape 28,28,1\n"
    "(the syntax is in docs/file-formats.md).\n"
    "\n"
    "  -o, --output FILE     the .h5 file to write (required)\n"
    "  --loss NAME           Keras loss (default sparse_categorical_crossentropy)\n"
    "  --optimizer NAME      adam (default), sgd, rmsprop, ...\n"
    "  --learning-rate F     default: the optimizer's Keras default\n"
    "  --metrics LIST        comma-separated (default accuracy)\n"
    "  --seed N              initial weights (default 1)\n";

static const char *optimizer_class(const char *name)
{
    static const char *const map[][2] = {
        {"adam", "Adam"},     {"sgd", "SGD"},         {"rmsprop", "RMSprop"},
        {"adamw", "AdamW"},   {"adagrad", "Adagrad"}, {"adadelta", "Adadelta"},
        {"adamax", "Adamax"}, {"nadam", "Nadam"},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcasecmp(name, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

static double default_lr(const char *name)
{
    if (strcasecmp(name, "sgd") == 0 || strcasecmp(name, "adagrad") == 0 ||
        strcasecmp(name, "adadelta") == 0)
        return 0.01;
    if (strcasecmp(name, "adamax") == 0 || strcasecmp(name, "nadam") == 0)
        return 0.001;
    return 0.001;
}

/* Keras names of losses and metrics: [A-Za-z0-9_.] only (they go into JSON as they are). */
static int keras_name_ok(const char *s, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.')
            return 0;
    return 1;
}

enum ddts_status cli_model_new(const char *spec_path, const char *out_path, uint64_t seed,
                               const char *loss, const char *optimizer, double learning_rate,
                               const char *metrics, struct ddts_error *err)
{
    if (!keras_name_ok(loss, strlen(loss)))
        return ddts_error_set(err, DDTS_EINVAL, "--loss: '%s' is not a Keras loss name", loss);
    for (const char *p = metrics; p != NULL && *p != '\0';) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!keras_name_ok(p, len))
            return ddts_error_set(err, DDTS_EINVAL, "--metrics: '%.*s' is not a Keras metric name",
                                  (int)len, p);
        p = comma ? comma + 1 : NULL;
    }
    char *spec = NULL;
    size_t n = 0;
    struct ddts_model *m = NULL;
    struct ddts_keras_model *k = NULL;
    enum ddts_status st = ddts_read_file(spec_path, DDTS_MAX_CONFIG_BYTES, &spec, &n, err);
    if (st != DDTS_OK)
        return st;
    const char *cls = optimizer_class(optimizer);
    if (cls == NULL) {
        st =
            ddts_error_set(err, DDTS_EUNSUPPORTED, "--optimizer: '%s' is not supported", optimizer);
        goto out;
    }
    if (learning_rate <= 0)
        learning_rate = default_lr(optimizer);
    /* Keras' training_config, as tf.keras 2.x writes it for compile(loss=..., metrics=[...]). */
    char metrics_json[512] = "";
    size_t used = 0;
    const char *p = metrics;
    while (p != NULL && *p != '\0') {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        st = ddts_format(metrics_json + used, sizeof metrics_json - used, err, "%s\"%.*s\"",
                         used ? ", " : "", (int)len, p);
        if (st != DDTS_OK) {
            ddts_error_prefix(err, "--metrics: ");
            goto out;
        }
        used += strlen(metrics_json + used);
        p = comma ? comma + 1 : NULL;
    }
    char training_config[2048];
    st = ddts_format(training_config, sizeof training_config, err,
                     "{\"loss\": \"%s\", \"metrics\": [%s], \"weighted_metrics\": null, "
                     "\"loss_weights\": null, \"optimizer_config\": {\"class_name\": \"%s\", "
                     "\"config\": {\"name\": \"%s\", \"learning_rate\": %.17g}}}",
                     loss, metrics_json, cls, cls, learning_rate);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "--loss/--metrics: ");
        goto out;
    }
    st = ddts_model_from_keras_config(spec, n, &m, err);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "%s: ", spec_path);
        goto out;
    }
    st = ddts_model_init_weights(m, seed, err);
    if (st != DDTS_OK)
        goto out;
    /* The compile configuration must be one the engine can train. */
    struct ddts_compile_options co = {.training_config_json = training_config};
    st = ddts_model_compile(m, &co, err);
    if (st != DDTS_OK)
        goto out;
    st = ddts_bridge_new_keras(m, spec, training_config, &k, err);
    if (st != DDTS_OK)
        goto out;
    st = ddts_keras_write_new(k, out_path, err);
out:
    ddts_keras_destroy(k);
    ddts_model_destroy(m);
    ddts_free(spec);
    return st;
}

int cmd_model(int argc, char **argv)
{
    if (argc < 2)
        return cli_usage_error("model", "missing subcommand (new)");
    if (strcmp(argv[1], "new") != 0)
        return cli_usage_error("model", "unknown subcommand '%s' (new)", argv[1]);
    const char *out = NULL, *loss = "sparse_categorical_crossentropy", *opt = "adam";
    const char *metrics = "accuracy";
    const char *layers = NULL, *input_shape = NULL;
    double lr = 0;
    long seed = 1;
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},
        {"loss", required_argument, NULL, 'l'},
        {"optimizer", required_argument, NULL, 'p'},
        {"learning-rate", required_argument, NULL, 'r'},
        {"metrics", required_argument, NULL, 'm'},
        {"seed", required_argument, NULL, 's'},
        {"layers", required_argument, NULL, 'L'},
        {"input-shape", required_argument, NULL, 'I'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    optind = 2;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'l':
            loss = optarg;
            break;
        case 'p':
            opt = optarg;
            break;
        case 'm':
            metrics = optarg;
            break;
        case 'L':
            layers = optarg;
            break;
        case 'I':
            input_shape = optarg;
            break;
        case 'r':
            if (cli_parse_double("model", "--learning-rate", optarg, &lr) != CLI_OK)
                return CLI_USAGE;
            break;
        case 's':
            if (cli_parse_long("model", "--seed", optarg, 0, 0x7fffffffL, &seed) != CLI_OK)
                return CLI_USAGE;
            break;
        default:
            return cli_usage_error("model", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (out == NULL)
        return cli_usage_error("model", "-o OUT.h5 is required");
    struct ddts_error err;
    ddts_error_clear(&err);
    if (layers != NULL) {
        if (optind != argc)
            return cli_usage_error("model", "give either SPEC.json or --layers, not both");
        if (input_shape == NULL)
            return cli_usage_error("model", "--layers needs --input-shape D1,D2,...");
        int64_t shape[DDTS_MAX_RANK];
        int rank = 0;
        for (const char *p = input_shape; *p != '\0' && rank < DDTS_MAX_RANK - 1;) {
            char *end = NULL;
            long long d = strtoll(p, &end, 10);
            if (end == p || d <= 0 || (*end != ',' && *end != '\0'))
                return cli_usage_error("model", "--input-shape: '%s' is not D1,D2,...",
                                       input_shape);
            shape[rank++] = d;
            p = *end == ',' ? end + 1 : end;
        }
        struct ddts_keras_spec spec = {layers, rank, shape, loss, opt, lr, metrics, (uint64_t)seed};
        struct ddts_keras_model *k = NULL;
        if (ddts_keras_spec_build(&spec, &k, &err) != DDTS_OK ||
            ddts_keras_write_new(k, out, &err) != DDTS_OK) {
            ddts_keras_destroy(k);
            return cli_fail("model", &err);
        }
        ddts_keras_destroy(k);
        printf("%s\n", out);
        return CLI_OK;
    }
    if (optind != argc - 1)
        return cli_usage_error("model", "new needs exactly one SPEC.json (or --layers)");
    if (cli_model_new(argv[optind], out, (uint64_t)seed, loss, opt, lr, metrics, &err) != DDTS_OK)
        return cli_fail("model", &err);
    printf("%s\n", out);
    return CLI_OK;
}
