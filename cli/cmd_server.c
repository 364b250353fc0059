/* ddts server */
#include "cli.h"

const char cli_usage_server[] =
    "usage: ddts server [OPTIONS]\n"
    "\n"
    "Start a coordinator: split the data among clients, send model and settings,\n"
    "gather trained models and logs. See ddts(1) and docs/ for every job setting.\n";

int cmd_server(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts server' is not implemented yet"};
    return cli_fail("server", &err);
}
