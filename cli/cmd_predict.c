/* ddts predict */
#include "cli.h"

const char cli_usage_predict[] = "usage: ddts predict --model PATH --x FILE -o OUT.npy\n"
                                 "\n"
                                 "Run a trained model on data files and write its outputs.\n";

int cmd_predict(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts predict' is not implemented yet"};
    return cli_fail("predict", &err);
}
