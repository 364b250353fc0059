/* ddts inspect */
#include "cli.h"

const char cli_usage_inspect[] =
    "usage: ddts inspect FILE\n"
    "\n"
    "Summarise a Keras model (layers, shapes, parameters) or a data file.\n";

int cmd_inspect(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts inspect' is not implemented yet"};
    return cli_fail("inspect", &err);
}
