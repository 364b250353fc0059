/* ddts evaluate and ddts predict: run a trained model on data files. */
#include <getopt.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_evaluate[] =
    "usage: ddts evaluate --model PATH (--x FILE --y FILE | --dataset DIR |\n"
    "                     --keras-dataset NAME) [--batch-size N] [--threads N]\n"
    "\n"
    "Evaluate a trained Keras model: loss and metrics over the data, as Keras'\n"
    "model.evaluate. Data: two files (any supported format), a folder with X/\n"
    "and Y/, or a Keras dataset's test split. Samples are reshaped to the model's\n"
    "input when their element counts match.\n";

const char cli_usage_predict[] =
    "usage: ddts predict --model PATH (--x FILE | --dataset DIR | --keras-dataset NAME)\n"
    "                    -o OUT.npy [--batch-size N] [--threads N]\n"
    "\n"
    "Run a trained Keras model on data and write its outputs as a float32 .npy\n"
    "array of shape (N, outputs...). Prints the prediction's samples/s on stderr.\n";

struct eval_args {
    const char *model, *x, *y, *dataset, *keras, *out;
    long batch, threads;
};

static int parse(const char *cmd, int argc, char **argv, struct eval_args *a)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},
        {"x", required_argument, NULL, 'x'},
        {"y", required_argument, NULL, 'y'},
        {"dataset", required_argument, NULL, 'd'},
        {"keras-dataset", required_argument, NULL, 'k'},
        {"output", required_argument, NULL, 'o'},
        {"batch-size", required_argument, NULL, 'b'},
        {"threads", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    memset(a, 0, sizeof *a);
    a->batch = 128;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            a->model = optarg;
            break;
        case 'x':
            a->x = optarg;
            break;
        case 'y':
            a->y = optarg;
            break;
        case 'd':
            a->dataset = optarg;
            break;
        case 'k':
            a->keras = optarg;
            break;
        case 'o':
            a->out = optarg;
            break;
        case 'b':
            if (cli_parse_long(cmd, "--batch-size", optarg, 1, 1 << 20, &a->batch) != CLI_OK)
                return CLI_USAGE;
            break;
        case 't':
            if (cli_parse_long(cmd, "--threads", optarg, 0, 1024, &a->threads) != CLI_OK)
                return CLI_USAGE;
            break;
        default:
            return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error(cmd, "unexpected argument '%s'", argv[optind]);
    if (a->model == NULL)
        return cli_usage_error(cmd, "--model PATH is required");
    if (a->x == NULL && a->dataset == NULL && a->keras == NULL)
        return cli_usage_error(cmd, "data is required: --x FILE, --dataset DIR or "
                                    "--keras-dataset NAME");
    return CLI_OK;
}

static enum ddts_status load(const struct eval_args *a, int need_y, struct ddts_array **x,
                             struct ddts_array **y, struct ddts_error *err)
{
    *x = *y = NULL;
    enum ddts_status st;
    if (a->keras != NULL) {
        struct ddts_array *xtr = NULL, *ytr = NULL;
        st = ddts_keras_dataset_load(a->keras, &xtr, &ytr, x, y, err);
        ddts_array_destroy(xtr);
        ddts_array_destroy(ytr);
        return st;
    }
    if (a->dataset != NULL)
        return ddts_data_load_xy(a->dataset, x, y, err);
    st = ddts_data_load(a->x, NULL, x, err);
    if (st == DDTS_OK && a->y != NULL)
        st = ddts_data_load(a->y, NULL, y, err);
    else if (st == DDTS_OK && need_y)
        st = ddts_error_set(err, DDTS_EINVAL, "--y FILE is required with --x");
    return st;
}

static enum ddts_status open_model(const struct eval_args *a, struct ddts_model **m,
                                   struct ddts_error *err)
{
    struct ddts_keras_model *k = NULL;
    enum ddts_status st = ddts_keras_read(a->model, &k, err);
    if (st != DDTS_OK)
        return st;
    st = ddts_bridge_load(k, 0, m, err);
    if (st == DDTS_OK) {
        struct ddts_compile_options co = {
            .training_config_json = k->training_config,
            .threads = a->threads > 0 ? (int)a->threads : (int)sysconf(_SC_NPROCESSORS_ONLN),
        };
        if (k->training_config == NULL)
            co.loss = "mse";
        st = ddts_model_compile(*m, &co, err);
        if (st != DDTS_OK) {
            ddts_model_destroy(*m);
            *m = NULL;
        }
    }
    if (st != DDTS_OK)
        ddts_error_prefix(err, "%s: ", a->model);
    ddts_keras_destroy(k);
    return st;
}

int cmd_evaluate(int argc, char **argv)
{
    struct eval_args a;
    int rc = parse("evaluate", argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_array *x = NULL, *y = NULL;
    struct ddts_model *m = NULL;
    enum ddts_status st = load(&a, 1, &x, &y, &err);
    if (st == DDTS_OK)
        st = open_model(&a, &m, &err);
    if (st == DDTS_OK) {
        struct ddts_dataset d = {.x = x, .y = y, .n = (size_t)x->shape[0]};
        struct ddts_logs logs;
        st = ddts_model_evaluate(m, &d, (int)a.batch, &logs, &err);
        if (st == DDTS_OK) {
            printf("samples: %zu\n", d.n);
            for (size_t i = 0; i < logs.n; i++)
                printf("%s: %.6f\n", logs.names[i], logs.values[i]);
        }
    }
    ddts_model_destroy(m);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    return st == DDTS_OK ? CLI_OK : cli_fail("evaluate", &err);
}

int cmd_predict(int argc, char **argv)
{
    struct eval_args a;
    int rc = parse("predict", argc, argv, &a);
    if (rc != CLI_OK)
        return rc;
    if (a.out == NULL)
        return cli_usage_error("predict", "-o OUT.npy is required");
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_array *x = NULL, *y = NULL, *pred = NULL;
    struct ddts_model *m = NULL;
    enum ddts_status st = load(&a, 0, &x, &y, &err);
    if (st == DDTS_OK)
        st = open_model(&a, &m, &err);
    double t0 = ddts_now();
    if (st == DDTS_OK)
        st = ddts_model_predict(m, x, (int)a.batch, &pred, &err);
    double secs = ddts_now() - t0;
    if (st == DDTS_OK) {
        size_t n = (size_t)pred->shape[0];
        fprintf(stderr, "predicted %zu samples in %.4f s (%.0f samples/s)\n", n, secs,
                secs > 0 ? (double)n / secs : 0.0);
        st = ddts_npy_write(a.out, pred, &err);
    }
    if (st == DDTS_OK) {
        char shape[128];
        ddts_array_shape_str(pred, shape, sizeof shape);
        printf("%s: float32 %s\n", a.out, shape);
    }
    ddts_array_destroy(pred);
    ddts_model_destroy(m);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    return st == DDTS_OK ? CLI_OK : cli_fail("predict", &err);
}
