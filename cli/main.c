/* ddts: the command-line program, a thin layer over the library. */
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

const struct cli_command cli_commands[] = {
    {"server", "coordinate a job: split data, send it to clients, gather results", cli_usage_server,
     cmd_server},
    {"client", "join a server, train on a share of the data, upload results", cli_usage_client,
     cmd_client},
    {"train", "train a Keras model on this machine (no network)", cli_usage_train, cmd_train},
    {"inspect", "summarise a Keras model or a data file", cli_usage_inspect, cmd_inspect},
    {"convert", "convert a data file to .npy", cli_usage_convert, cmd_convert},
    {"evaluate", "evaluate a trained model on data files", cli_usage_evaluate, cmd_evaluate},
    {"predict", "run a trained model on data files", cli_usage_predict, cmd_predict},
    {"ensemble", "combine several models into one", cli_usage_ensemble, cmd_ensemble},
    {"model", "create Keras model files without TensorFlow", cli_usage_model, cmd_model},
    {"demo", "a server and two clients training on Fashion-MNIST on 127.0.0.1", cli_usage_demo,
     cmd_demo},
    {"wizard", "ask the job settings on a terminal and write a job file", cli_usage_wizard,
     cmd_wizard},
    {"dashboard", "serve the jobs of a work folder as a web page", cli_usage_dashboard,
     cmd_dashboard},
};
const size_t cli_n_commands = sizeof cli_commands / sizeof cli_commands[0];

static void print_main_help(FILE *fp)
{
    fprintf(fp, "usage: ddts [--help] [--version] COMMAND [ARGS...]\n\n"
                "Train Keras models on several machines at once.\n\n"
                "Commands:\n");
    for (size_t i = 0; i < cli_n_commands; i++)
        fprintf(fp, "  %-10s %s\n", cli_commands[i].name, cli_commands[i].summary);
    fprintf(fp, "  %-10s %s\n", "help", "show the help of a command");
    fprintf(fp, "\nRun 'ddts help COMMAND' or 'ddts COMMAND --help' for a command's options.\n"
                "Documentation: man ddts, and docs/ in the source tree.\n");
}

static const struct cli_command *find_command(const char *name)
{
    for (size_t i = 0; i < cli_n_commands; i++)
        if (strcmp(cli_commands[i].name, name) == 0)
            return &cli_commands[i];
    return NULL;
}

int cli_print_help(const char *cmd)
{
    const struct cli_command *c = find_command(cmd);
    if (c == NULL)
        return cli_usage_error("help", "unknown command '%s' (see 'ddts --help')", cmd);
    fputs(c->usage, stdout);
    return CLI_OK;
}

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (cmd[0] != '\0')
        fprintf(stderr, "ddts %s: ", cmd);
    else
        fputs("ddts: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_USAGE;
}

int cli_fail(const char *cmd, const struct ddts_error *err)
{
    fprintf(stderr, "ddts %s: error: %s\n", cmd,
            err->msg[0] ? err->msg : ddts_status_str(err->status));
    return CLI_FAIL;
}

static void stderr_sink(void *userdata, enum ddts_log_level level, const char *msg)
{
    (void)userdata;
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[16];
    strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    int color = isatty(2) && getenv("NO_COLOR") == NULL;
    const char *on = "", *off = "";
    if (color && level >= DDTS_LOG_WARN) {
        on = level == DDTS_LOG_ERROR ? "\033[31m" : "\033[33m";
        off = "\033[0m";
    }
    if (level == DDTS_LOG_INFO)
        fprintf(stderr, "%s %s\n", stamp, msg);
    else
        fprintf(stderr, "%s %s%s%s: %s\n", stamp, on, ddts_log_level_str(level), off, msg);
}

struct ddts_logger cli_logger(enum ddts_log_level min)
{
    struct ddts_logger l = {stderr_sink, NULL, min};
    return l;
}

int cli_parse_long(const char *cmd, const char *flag, const char *value, long min, long max,
                   long *out)
{
    char *end = NULL;
    long v = strtol(value, &end, 10);
    if (end == value || *end != '\0' || v < min || v > max)
        return cli_usage_error(cmd, "%s: '%s' is not an integer in [%ld, %ld]", flag, value, min,
                               max);
    *out = v;
    return CLI_OK;
}

int cli_parse_double(const char *cmd, const char *flag, const char *value, double *out)
{
    char *end = NULL;
    double v = strtod(value, &end);
    if (end == value || *end != '\0')
        return cli_usage_error(cmd, "%s: '%s' is not a number", flag, value);
    *out = v;
    return CLI_OK;
}

/*
 * OpenBLAS and OpenMP read their settings when they are loaded, so the
 * engine's hints (docs/engine.md: OPENBLAS_CORETYPE where OpenBLAS falls back
 * to slow generic kernels, OMP_WAIT_POLICY=passive) take effect only in a
 * fresh process: export them and re-execute once. On failure, carry on.
 */
static void apply_engine_hints(char **argv)
{
    if (getenv("DDTS_REEXEC") != NULL)
        return;
    const char *hints[8];
    size_t n = ddts_nn_env_hints(hints, 8);
    if (n == 0)
        return;
    for (size_t i = 0; i < n; i++)
        putenv((char *)hints[i]);
    setenv("DDTS_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv)
{
    apply_engine_hints(argv);
    if (argc < 2) {
        print_main_help(stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_main_help(stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("ddts %s\n", DDTS_VERSION);
        return CLI_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            print_main_help(stdout);
            return CLI_OK;
        }
        return cli_print_help(argv[2]);
    }
    if (cmd[0] == '-')
        return cli_usage_error("", "unknown option '%s' (see 'ddts --help')", cmd);
    const struct cli_command *c = find_command(cmd);
    if (c == NULL)
        return cli_usage_error("", "unknown command '%s' (see 'ddts --help')", cmd);
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--") == 0)
            break;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            return cli_print_help(cmd);
    }
    return c->run(argc - 1, argv + 1);
}
