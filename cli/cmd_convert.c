/* ddts convert */
#include "cli.h"

const char cli_usage_convert[] =
    "usage: ddts convert IN OUT.npy [--key NAME] [--dtype DTYPE]\n"
    "\n"
    "Load any supported data file and write it as .npy (float64 unless --dtype).\n";

int cmd_convert(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts convert' is not implemented yet"};
    return cli_fail("convert", &err);
}
