/* ddts inspect: a Keras model's summary, or a data file's arrays. */
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_inspect[] =
    "usage: ddts inspect FILE [--key NAME]\n"
    "       ddts inspect --layers\n"
    "\n"
    "A Keras model (.h5, .hdf5, .keras): a summary like Keras' model.summary():\n"
    "each layer's name, type, output shape and parameter count (a layer with\n"
    "several outputs, return_state or Bidirectional merge_mode=None, lists each\n"
    "output's shape, one a line), the totals (trainable and non-trainable), the\n"
    "compiled optimizer and loss. A shared layer (called several times on one\n"
    "set of weights) is one row with its parameters once; a 'Shared layers'\n"
    "line lists how often each is called.\n"
    "A data file (.npy, .npz, .csv, .xlsx, .idx, .idx.gz): each array's shape,\n"
    "dtype, minimum, maximum and mean; --key picks an npz array or xlsx sheet.\n"
    "--layers: the Keras layer classes ddts knows (its layer registry): each\n"
    "class with its aliases, whether the engine trains it or only reads its\n"
    "weights from files, its `ddts model new --layers` form, and what it computes.\n";

static int is_model_path(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot != NULL && (strcasecmp(dot, ".h5") == 0 || strcasecmp(dot, ".hdf5") == 0 ||
                           strcasecmp(dot, ".keras") == 0);
}

/* Output k of layer i's n outputs as Keras 2's summary writes it: "(None, 5, 3)"
 * for one output; one per line for several, "[(None, 5, 3),", " (None, 3),",
 * ..., " (None, 3)]". */
static void shape_text(const struct ddts_model *m, size_t i, int k, int n, char *buf, size_t cap)
{
    int64_t shape[DDTS_MAX_RANK];
    int rank = ddts_model_layer_output_shape(m, i, (size_t)k, shape);
    size_t used = (size_t)snprintf(buf, cap, "%s(None", n < 2 ? "" : k == 0 ? "[" : " ");
    for (int d = 1; d < rank && used < cap; d++)
        used += (size_t)snprintf(buf + used, cap - used, ", %lld", (long long)shape[d]);
    if (used < cap)
        snprintf(buf + used, cap - used, ")%s", n < 2 ? "" : k + 1 < n ? "," : "]");
}

static void bytes_text(size_t n_params, char *buf, size_t cap)
{
    double b = (double)n_params * 4.0;
    if (b >= 1024.0 * 1024.0)
        snprintf(buf, cap, "%.2f MB", b / (1024.0 * 1024.0));
    else if (b >= 1024.0)
        snprintf(buf, cap, "%.2f KB", b / 1024.0);
    else
        snprintf(buf, cap, "%.0f Byte", b);
}

int cli_inspect_model(const char *path)
{
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_keras_model *k = NULL;
    struct ddts_model *m = NULL;
    if (ddts_keras_read(path, &k, &err) != DDTS_OK)
        return cli_fail("inspect", &err);
    if (ddts_bridge_load(k, 0, &m, &err) != DDTS_OK) {
        ddts_error_prefix(&err, "%s: ", path);
        ddts_keras_destroy(k);
        return cli_fail("inspect", &err);
    }
    /* Columns as wide as their widest cell (Keras' widths at least), so every row aligns. */
    size_t n_layers = ddts_model_n_layers(m);
    int w_name = 28, w_shape = 25;
    for (size_t i = 0; i < n_layers; i++) {
        struct ddts_layer_info info;
        if (ddts_model_layer_info(m, i, &info) != DDTS_OK)
            continue;
        char name[128], shape[128];
        int len = snprintf(name, sizeof name, "%s (%s)", info.name, info.class_name);
        w_name = len > w_name ? (len < (int)sizeof name ? len : (int)sizeof name - 1) : w_name;
        for (int o = 0; o < info.n_outputs; o++) {
            shape_text(m, i, o, info.n_outputs, shape, sizeof shape);
            w_shape = (int)strlen(shape) > w_shape ? (int)strlen(shape) : w_shape;
        }
    }
    char rule[320], dbl[320];
    int width = 1 + w_name + 1 + w_shape + 1 + 10;
    width = width < 65 ? 65 : (width < (int)sizeof rule ? width : (int)sizeof rule - 1);
    memset(rule, '_', (size_t)width);
    memset(dbl, '=', (size_t)width);
    rule[width] = dbl[width] = '\0';
    printf("Model: \"%s\"  (%s, Keras %s)\n%s\n", ddts_model_name(m),
           k->format == DDTS_KERAS_ZIP ? ".keras" : "HDF5",
           k->keras_version ? k->keras_version : "?", rule);
    printf(" %-*s %-*s %s\n%s\n", w_name, "Layer (type)", w_shape, "Output Shape", "Param #", dbl);
    for (size_t i = 0; i < n_layers; i++) {
        struct ddts_layer_info info;
        if (ddts_model_layer_info(m, i, &info) != DDTS_OK)
            continue;
        char name[128], shape[128];
        snprintf(name, sizeof name, "%s (%s)", info.name, info.class_name);
        shape_text(m, i, 0, info.n_outputs, shape, sizeof shape);
        printf(" %-*s %-*s %zu\n", w_name, name, w_shape, shape, info.n_params);
        for (int o = 1; o < info.n_outputs; o++) { /* a layer's further outputs */
            shape_text(m, i, o, info.n_outputs, shape, sizeof shape);
            printf(" %-*s %s\n", w_name, "", shape);
        }
        if (i + 1 < n_layers)
            printf("\n");
    }
    size_t total = ddts_model_n_params(m), trainable = ddts_model_n_trainable(m);
    char b1[32], b2[32], b3[32];
    bytes_text(total, b1, sizeof b1);
    bytes_text(trainable, b2, sizeof b2);
    bytes_text(total - trainable, b3, sizeof b3);
    printf("%s\nTotal params: %zu (%s)\nTrainable params: %zu (%s)\n"
           "Non-trainable params: %zu (%s)\n%s\n",
           dbl, total, b1, trainable, b2, total - trainable, b3, rule);
    if (ddts_model_n_inputs(m) > 1) { /* the order of --x flags and X/, X2/, ... folders */
        printf("Inputs (--x and X/, X2/, ... in this order):");
        for (size_t i = 0; i < ddts_model_n_inputs(m); i++) {
            int64_t shape[DDTS_MAX_RANK];
            int rank = ddts_model_input_shape_at(m, i, shape);
            printf("%s %s (None", i ? "," : "", ddts_model_input_name(m, i));
            for (int q = 0; q < rank; q++)
                printf(", %lld", (long long)shape[q]);
            printf(")");
        }
        printf("\n");
    }
    /* A shared layer is one row (its weights once); the calls are listed here. */
    int n_shared = 0;
    for (size_t i = 0; i < n_layers; i++) {
        struct ddts_layer_info info;
        if (ddts_model_layer_info(m, i, &info) != DDTS_OK || info.n_calls < 2)
            continue;
        printf("%s %s x%zu",
               n_shared++ ? "," : "Shared layers (one set of weights, called several times):",
               info.name, info.n_calls);
    }
    if (n_shared > 0)
        printf("\n");
    struct ddts_compile_options co = {.training_config_json = k->training_config};
    if (k->training_config != NULL && ddts_model_compile(m, &co, &err) == DDTS_OK)
        printf("Optimizer: %s (learning rate %g)\nLoss: %s\n", ddts_model_optimizer_name(m),
               ddts_model_learning_rate(m), ddts_model_loss_name(m));
    else if (k->training_config != NULL)
        printf("Compiled with: %s\n", err.msg);
    else
        printf("Not compiled (no training configuration in the file)\n");
    ddts_model_destroy(m);
    ddts_keras_destroy(k);
    return CLI_OK;
}

/* The layer registry, one class a line. */
static int inspect_layers(void)
{
    struct ddts_layer_class lc;
    for (size_t i = 0; ddts_nn_layer_class(i, &lc) == DDTS_OK; i++) {
        char names[512];
        size_t used = (size_t)snprintf(names, sizeof names, "%s", lc.name);
        for (size_t a = 0; lc.aliases[a] != NULL && used < sizeof names; a++)
            used += (size_t)snprintf(names + used, sizeof names - used, "%s%s", a ? ", " : " (",
                                     lc.aliases[a]);
        if (lc.aliases[0] != NULL && used < sizeof names)
            snprintf(names + used, sizeof names - used, ")");
        printf("%-9s %s\n", lc.runs ? "trains" : "read-only", names);
        if (lc.spec_usage != NULL)
            printf("          --layers %s\n", lc.spec_usage);
        printf("          %s\n", lc.doc ? lc.doc : "");
    }
    return CLI_OK;
}

int cmd_inspect(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--layers") == 0)
        return inspect_layers();
    const char *key = NULL, *path = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strncmp(argv[i], "--key=", 6) == 0)
            key = argv[i] + 6;
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (path == NULL)
            path = argv[i];
        else
            return cli_usage_error("inspect", "unexpected argument '%s'", argv[i]);
    }
    if (path == NULL)
        return cli_usage_error("inspect", "missing FILE");
    if (is_model_path(path))
        return cli_inspect_model(path);
    return cli_inspect_data(path, key);
}
