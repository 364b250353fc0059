/* ddts client */
#include "cli.h"

const char cli_usage_client[] =
    "usage: ddts client --server HOST:PORT [OPTIONS]\n"
    "\n"
    "Join a server, receive model, settings and data, train, upload results.\n";

int cmd_client(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts client' is not implemented yet"};
    return cli_fail("client", &err);
}
