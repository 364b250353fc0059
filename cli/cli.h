/* The ddts program: shared helpers of the subcommands. */
#ifndef DDTS_CLI_H
#define DDTS_CLI_H

#include <stdio.h>

#include "ddts/ddts.h"

/* Exit codes: 0 success, 1 failure, 2 usage error. */
enum { CLI_OK = 0, CLI_FAIL = 1, CLI_USAGE = 2 };

struct cli_command {
    const char *name;
    const char *summary;
    const char *usage; /* full --help text */
    int (*run)(int argc, char **argv);
};

/* Every subcommand, in the order `ddts --help` lists them. */
extern const struct cli_command cli_commands[];
extern const size_t cli_n_commands;

/* Each subcommand's entry point: argv[0] is the subcommand's name. */
int cmd_train(int argc, char **argv);
int cmd_server(int argc, char **argv);
int cmd_client(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_evaluate(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_ensemble(int argc, char **argv);
int cmd_model(int argc, char **argv);
int cmd_demo(int argc, char **argv);

/* `ddts inspect DATAFILE`: prints each array of a data file (npz arrays, xlsx
 * sheets) with its shape, dtype, min, max and mean; `key` (may be NULL)
 * restricts it to one array or sheet. Returns a CLI exit code. */
int cli_inspect_data(const char *path, const char *key);
/* ddts_data_load, plus "keras:NAME" for a Keras built-in dataset (key: x_train
 * (default), y_train, x_test or y_test). */
enum ddts_status cli_load_data(const char *path, const char *key, struct ddts_array **out,
                               struct ddts_error *err);

/* Help texts, defined next to each command. */
extern const char cli_usage_train[], cli_usage_server[], cli_usage_client[], cli_usage_inspect[],
    cli_usage_convert[], cli_usage_evaluate[], cli_usage_predict[], cli_usage_ensemble[],
    cli_usage_model[], cli_usage_demo[];

/* Prints "ddts CMD: message" to stderr and returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) DDTS_PRINTF(2, 3);
/* Prints "ddts CMD: error: <err->msg>" to stderr and returns CLI_FAIL. */
int cli_fail(const char *cmd, const struct ddts_error *err);
/* Prints a command's --help text to stdout; returns CLI_OK. */
int cli_print_help(const char *cmd);
/* A logger writing "HH:MM:SS level: msg" lines to stderr (no colour when NO_COLOR or not a tty). */
struct ddts_logger cli_logger(enum ddts_log_level min);
/* Parses a non-negative integer flag value; CLI_USAGE message on failure. */
int cli_parse_long(const char *cmd, const char *flag, const char *value, long min, long max,
                   long *out);
int cli_parse_double(const char *cmd, const char *flag, const char *value, double *out);

#endif
