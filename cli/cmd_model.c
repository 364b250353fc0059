/* ddts model */
#include "cli.h"

const char cli_usage_model[] = "usage: ddts model new SPEC -o OUT.h5\n"
                               "\n"
                               "Create a Keras model file without TensorFlow.\n";

int cmd_model(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts model' is not implemented yet"};
    return cli_fail("model", &err);
}
