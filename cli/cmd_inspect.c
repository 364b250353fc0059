/* ddts inspect */
#include <string.h>

#include "cli.h"

const char cli_usage_inspect[] =
    "usage: ddts inspect FILE [--key NAME]\n"
    "\n"
    "Summarise a Keras model (layers, shapes, parameters) or a data file.\n"
    "\n"
    "For a data file (.npy .npz .csv .xlsx .idx .idx.gz) it prints each array\n"
    "(npz arrays, xlsx sheets) with its dtype, shape, min, max and mean.\n"
    "FILE may also be keras:NAME for a Keras built-in dataset (mnist, fashion_mnist).\n"
    "\n"
    "Options:\n"
    "  --key NAME   only this npz array or xlsx sheet\n";

int cmd_inspect(int argc, char **argv)
{
    const char *path = NULL, *key = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (argv[i][0] == '-' && argv[i][1] != '\0')
            return cli_usage_error("inspect", "unknown option '%s'", argv[i]);
        else if (path == NULL)
            path = argv[i];
        else
            return cli_usage_error("inspect", "unexpected argument '%s'", argv[i]);
    }
    if (path == NULL)
        return cli_usage_error("inspect", "expected a FILE (see 'ddts inspect --help')");
    if (ddts_data_format_of(path) != DDTS_FORMAT_UNKNOWN || strncmp(path, "keras:", 6) == 0)
        return cli_inspect_data(path, key);
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0,
                             "'ddts inspect' of models is not implemented yet"};
    return cli_fail("inspect", &err);
}
