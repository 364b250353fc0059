/* ddts convert: any supported data file to .npy. */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

const char cli_usage_convert[] =
    "usage: ddts convert IN OUT.npy [--key NAME] [--dtype DTYPE] [KERAS DATASET OPTIONS]\n"
    "\n"
    "Load any supported data file and write it as .npy (written atomically).\n"
    "\n"
    "Input formats (by extension): .npy, .npz, .csv (header detected), .xlsx\n"
    "(first sheet, header detected), .idx and .idx.gz (also MNIST names such as\n"
    "train-images-idx3-ubyte.gz). IN may also be keras:NAME, a Keras built-in\n"
    "dataset (mnist, fashion_mnist, cifar10, cifar100, imdb, reuters,\n"
    "boston_housing) read from Keras' cache (or downloaded) or Debian's copy; --key\n"
    "then picks x_train (default), y_train, x_test or y_test.\n"
    "\n"
    "Options:\n"
    "  --key NAME      the array of an .npz file or the sheet of an .xlsx file\n"
    "                  (default: the only array / the first sheet)\n"
    "  --dtype DTYPE   dtype of the output: float64 (default), float32, float16,\n"
    "                  int8 ... int64, uint8 ... uint64, bool, or 'keep' for the\n"
    "                  stored dtype\n"
    "  --num-words N   imdb, reuters: keep the N most frequent words (Keras num_words)\n"
    "  --skip-top N    imdb, reuters: the N most frequent words become OOV (2)\n"
    "  --maxlen N      imdb, reuters: drop sequences of N words or more, pad to N\n"
    "                  (default: pad to the longest)\n"
    "  --label-mode M  cifar100: fine (100 classes, default) or coarse (20)\n"
    "  -h, --help      show this help\n"
    "\n"
    "Example:\n"
    "  ddts convert /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz y.npy --dtype "
    "uint8\n";

int cmd_convert(int argc, char **argv)
{
    static const struct option opts[] = {
        {"key", required_argument, NULL, 'k'},
        {"dtype", required_argument, NULL, 'd'},
        {"num-words", required_argument, NULL, 'n'},
        {"skip-top", required_argument, NULL, 's'},
        {"maxlen", required_argument, NULL, 'm'},
        {"label-mode", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *key = NULL, *dtype = "float64";
    struct ddts_keras_dataset_options ko = {0, 0, 0, NULL};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'k':
            key = optarg;
            break;
        case 'd':
            dtype = optarg;
            break;
        case 'n':
        case 's':
        case 'm': {
            char *end = NULL;
            long v = strtol(optarg, &end, 10);
            if (end == optarg || *end != '\0' || v < 0 || v > DDTS_MAX_SEQUENCE_LENGTH)
                return cli_usage_error("convert", "%s: '%s' is not a count in [0, %d]",
                                       argv[optind - 1], optarg, DDTS_MAX_SEQUENCE_LENGTH);
            *(c == 'n' ? &ko.num_words : c == 's' ? &ko.skip_top : &ko.maxlen) = (int)v;
            break;
        }
        case 'l':
            if (strcmp(optarg, "fine") != 0 && strcmp(optarg, "coarse") != 0)
                return cli_usage_error("convert", "--label-mode: '%s' is not fine or coarse",
                                       optarg);
            ko.label_mode = optarg;
            break;
        case 'h':
            return cli_print_help("convert");
        default:
            return cli_usage_error("convert",
                                   "unknown or incomplete option '%s' (see 'ddts convert --help')",
                                   argv[optind - 1]);
        }
    }
    /* Options may also follow the positional arguments. */
    const char *pos[2];
    int n_pos = 0;
    for (int i = optind; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 || strcmp(argv[i], "--dtype") == 0) {
            if (i + 1 >= argc)
                return cli_usage_error("convert", "%s needs a value", argv[i]);
            if (argv[i][2] == 'k')
                key = argv[++i];
            else
                dtype = argv[++i];
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_error("convert", "unknown option '%s' (see 'ddts convert --help')",
                                   argv[i]);
        if (n_pos == 2)
            return cli_usage_error("convert", "unexpected argument '%s'", argv[i]);
        pos[n_pos++] = argv[i];
    }
    if (n_pos != 2)
        return cli_usage_error("convert", "expected IN and OUT.npy (see 'ddts convert --help')");
    size_t out_len = strlen(pos[1]);
    if (out_len < 4 || strcmp(pos[1] + out_len - 4, ".npy") != 0)
        return cli_usage_error("convert", "OUT must be a .npy file name, not '%s'", pos[1]);
    enum ddts_dtype to = DDTS_F64;
    int keep = strcmp(dtype, "keep") == 0;
    if (!keep && ddts_dtype_parse(dtype, &to) != DDTS_OK)
        return cli_usage_error(
            "convert",
            "--dtype: unknown dtype '%s' (float64, float32, float16, int8..int64, "
            "uint8..uint64, bool, keep)",
            dtype);
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_array *a = NULL, *b = NULL;
    if (cli_load_data(pos[0], key, &ko, &a, &err) != DDTS_OK)
        return cli_fail("convert", &err);
    if (!keep && a->dtype != to) {
        if (ddts_array_convert(a, to, &b, &err) != DDTS_OK) {
            ddts_array_destroy(a);
            return cli_fail("convert", &err);
        }
        ddts_array_destroy(a);
        a = b;
    }
    enum ddts_status st = ddts_npy_write(pos[1], a, &err);
    char shape[160];
    ddts_array_shape_str(a, shape, sizeof shape);
    if (st == DDTS_OK)
        fprintf(stderr, "wrote %s: %s %s\n", pos[1], ddts_dtype_name(a->dtype), shape);
    ddts_array_destroy(a);
    return st == DDTS_OK ? CLI_OK : cli_fail("convert", &err);
}
