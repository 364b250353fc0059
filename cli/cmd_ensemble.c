/* ddts ensemble */
#include "cli.h"

const char cli_usage_ensemble[] = "usage: ddts ensemble -o OUT M1 M2 ... [--average-weights]\n"
                                  "\n"
                                  "Combine several Keras models into one.\n";

int cmd_ensemble(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts ensemble' is not implemented yet"};
    return cli_fail("ensemble", &err);
}
