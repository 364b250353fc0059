/* ddts demo */
#include "cli.h"

const char cli_usage_demo[] =
    "usage: ddts demo [--workdir DIR]\n"
    "\n"
    "Start a server and two clients on 127.0.0.1, train a small model on\n"
    "Fashion-MNIST, collect everything and print where the results are.\n";

int cmd_demo(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts demo' is not implemented yet"};
    return cli_fail("demo", &err);
}
