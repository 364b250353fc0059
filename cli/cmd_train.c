/* ddts train */
#include "cli.h"

const char cli_usage_train[] =
    "usage: ddts train --model PATH [OPTIONS]\n"
    "\n"
    "Train a Keras model on this machine, with the job settings of ddts server.\n";

int cmd_train(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts train' is not implemented yet"};
    return cli_fail("train", &err);
}
