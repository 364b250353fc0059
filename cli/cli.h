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

/*
 * The passphrase of `ddts server` / `ddts client`: from `file` (--passphrase-file; NULL if not
 * given), else the environment variable DDTS_PASSPHRASE, else a prompt on the terminal without
 * echo (asked twice when `confirm`). Never from a plain flag value. On failure prints the error
 * and returns CLI_FAIL or CLI_USAGE; on success the caller owns *out (ddts_passphrase_destroy).
 */
int cli_passphrase(const char *cmd, const char *file, int confirm, struct ddts_passphrase **out);

#endif
