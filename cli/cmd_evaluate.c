/* ddts evaluate */
#include "cli.h"

const char cli_usage_evaluate[] = "usage: ddts evaluate --model PATH --x FILE --y FILE\n"
                                  "\n"
                                  "Evaluate a trained model on data files.\n";

int cmd_evaluate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    struct ddts_error err = {DDTS_EUNSUPPORTED, 0, "'ddts evaluate' is not implemented yet"};
    return cli_fail("evaluate", &err);
}
