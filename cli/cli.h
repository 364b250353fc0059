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

/*
 * `ddts train --distributed mpi`, after the flags were parsed into `job` (not
 * yet completed): in the `ddts` program (cli/mpi_launch.c) it re-executes
 * the same command line as the `ddts-mpi` program; in `ddts-mpi`
 * (cli/mpi/train_mpi.c) it runs the job on the MPI ranks. `out`: --out or
 * NULL; `resume`: --resume; `bucket_mb`: --bucket-mb (0: none). argv[0] is
 * "train". Returns a CLI exit code.
 */
int cli_train_mpi(int argc, char **argv, struct ddts_job *job, const char *out, bool resume,
                  double bucket_mb);

/* `ddts inspect DATAFILE`: prints each array of a data file (npz arrays, xlsx
 * sheets) with its shape, dtype, min, max and mean; `key` (may be NULL)
 * restricts it to one array or sheet. Returns a CLI exit code. */
int cli_inspect_data(const char *path, const char *key);
/* ddts_data_load, plus "keras:NAME" for a Keras built-in dataset (key: x_train
 * (default), y_train, x_test or y_test). */
enum ddts_status cli_load_data(const char *path, const char *key,
                               const struct ddts_keras_dataset_options *ko, struct ddts_array **out,
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

/* ---- Job settings as flags, and the wizard (cli/job_flags.c, cli/wizard.c) ---- */
#include <getopt.h>

/* Called for each option of `extra` (getopt_long's struct option, val >= 1000)
 * that cli_job_parse_flags meets; returns CLI_OK or an exit code. */
typedef int (*cli_extra_flag_fn)(void *userdata, int val, const char *arg);

/*
 * Parses a command's job flags into `job` (already holding defaults):
 * first `--job FILE` (loaded, wherever it appears), then every other flag in
 * order, so flags override the file. Every setting of ddts_job_settings() is a
 * flag `--NAME VALUE` (`--NAME=VALUE`); switches (--collect, --keep-serving)
 * take no value. `extra` (may be NULL, terminated by a zero entry) adds the
 * command's own options, handed to `on_extra`. `--passphrase` is refused
 * with a hint (a secret never goes on a command line). Returns CLI_OK and
 * the index of the first positional argument in *first_positional, or
 * CLI_USAGE / CLI_FAIL after printing "ddts CMD: --flag: reason".
 */
int cli_job_parse_flags(const char *cmd, int argc, char **argv, struct ddts_job *job,
                        const struct option *extra, cli_extra_flag_fn on_extra, void *userdata,
                        int *first_positional);
/* The job flags' help text (one line per setting, with defaults), for usage texts. */
void cli_job_print_flags_help(FILE *fp);

/*
 * The server's wizard (SPEC §2): asks, in the original order, every setting
 * not given explicitly; defaults in brackets; numeric answers accepted; an
 * invalid answer is explained and asked again. The passphrase is read with
 * echo off (termios on in_fd) into `passphrase` (cap bytes, NUL-terminated;
 * the caller wipes it after use) unless `passphrase` is NULL or a passphrase
 * file / $DDTS_PASSPHRASE is already available. With `passphrase` NULL
 * (ddts train) the network questions (address, port, train or collect) are
 * not asked either. Returns CLI_OK, or CLI_FAIL
 * when input ends (EOF) before the questions are answered.
 */
int cli_wizard_run(struct ddts_job *job, FILE *in, FILE *out, int in_fd, char *passphrase,
                   size_t cap);

/*
 * What `ddts server` and `ddts train` call after parsing flags: when stdin
 * and stderr are terminals and a required setting is missing (or
 * `force_wizard`), runs the wizard on the terminal, then prints the
 * equivalent command line and writes the settings to `job_out` (NULL:
 * WORKDIR/job.json); otherwise checks the required settings (usage error
 * naming the flag). Then resolves the seed and name. `passphrase` as in
 * cli_wizard_run (may be NULL). Returns CLI_OK or an exit code.
 */
int cli_job_complete(const char *cmd, struct ddts_job *job, bool force_wizard, const char *job_out,
                     char *passphrase, size_t cap);

/*
 * Prints the equivalent command line of `job` for `ddts CMD` to stderr and
 * writes the settings given explicitly to `job_out` (NULL: WORKDIR/NAME/
 * job.json). With `passphrase_to_save` (may be NULL), also writes it to a
 * file "passphrase" (mode 0600) next to the job file and points
 * --passphrase-file at it. Returns CLI_OK or CLI_FAIL (message printed).
 */
int cli_job_save_wizard_result(const char *cmd, struct ddts_job *job, const char *job_out,
                               const char *passphrase_to_save);

/* ---- Progress on stderr (cli/progress.c) ---- */

/* Keras-like epoch progress and transfer lines. On a terminal the line is
 * redrawn in place (at most every 0.1 s); otherwise only finished lines are
 * printed. One per thread that prints. */
struct cli_progress {
    FILE *fp;
    bool tty;
    bool drawn; /* an unfinished line is on screen */
    double start, last;
};
void cli_progress_init(struct cli_progress *p, FILE *fp);
/* Prints "Epoch E/N" and starts the epoch's clock. */
void cli_progress_begin_epoch(struct cli_progress *p, int epoch, int epochs);
/* After each batch: samples done of total, running metrics (terminal only). */
void cli_progress_update(struct cli_progress *p, int64_t done, int64_t total,
                         const struct ddts_metric *metrics, size_t n_metrics);
/* The epoch's last line, with validation metrics among `metrics` (always printed). */
void cli_progress_end_epoch(struct cli_progress *p, int64_t total,
                            const struct ddts_metric *metrics, size_t n_metrics);
/* A transfer's progress (bytes); the line ends when done == total. */
void cli_transfer_update(struct cli_progress *p, const char *label, uint64_t done, uint64_t total);

/* The server's live table of clients: redrawn in place on a terminal (at most
 * every 0.25 s unless `force`, fitted to the terminal's width and height);
 * without a terminal printed only when `force`, next to the log lines. */
struct cli_table {
    FILE *fp;
    bool tty;
    size_t lines_drawn;
    double last;
};
void cli_table_init(struct cli_table *t, FILE *fp);
void cli_table_refresh(struct cli_table *t, const struct ddts_client_row *rows, size_t n_rows,
                       bool force);
/* Call after printing other lines (a log line) below the table, so that the
 * next refresh draws a fresh table instead of moving up over those lines. */
void cli_table_forget(struct cli_table *t);
/* Erases the table from a terminal (the cursor goes back to where it began),
 * e.g. to print a log line and then redraw the table below it. */
void cli_table_clear(struct cli_table *t);

/*
 * The live view of `ddts server` (cli/live.c): the clients the server
 * reports (on_client) in a table kept at the bottom of a terminal, log lines
 * printed above it; without a terminal, one log line per client per epoch.
 * Thread-safe: the server calls in from its connection threads.
 */
struct cli_live;
/* `inner` (copied) prints the log lines; NULL on out of memory. */
struct cli_live *cli_live_create(FILE *fp, const struct ddts_logger *inner);
void cli_live_destroy(struct cli_live *lv);
/* A logger that prints through `inner` without breaking the table. */
struct ddts_logger cli_live_logger(struct cli_live *lv);
/* The job whose snapshot the table shows (borrowed; set before serving). */
void cli_live_attach(struct cli_live *lv, struct ddts_serve *job);
/* ddts_serve_hooks.on_client and .on_epoch_end, with the cli_live as userdata. */
void cli_live_on_client(void *lv, const struct ddts_server_client *c);
void cli_live_on_epoch_end(void *lv, const struct ddts_server_client *c);
/* Call often (every 0.2 s): redraws when the table changed, or each second
 * while a client trains (its ETA counts down). */
void cli_live_tick(struct cli_live *lv);
/* Draws the table a last time and leaves it on screen; later lines go below. */
void cli_live_finish(struct cli_live *lv);

/* Without a terminal: a --model folder holding exactly one model file becomes
 * that file; none or several is a usage error listing them. A file: CLI_OK. */
int cli_job_resolve_model_folder(const char *cmd, struct ddts_job *job);

/* `ddts dashboard`: the jobs of a work folder as a web page (cli/cmd_dashboard.c). */
int cmd_dashboard(int argc, char **argv);
extern const char cli_usage_dashboard[];
/*
 * Starts the dashboard on `listen` ("[ADDR:]PORT", given with `flag`) for the jobs under
 * `workdir`, `live_job` (may be NULL) being the one this process runs with
 * `settings_json` (may be NULL); prints its URL (with the token where one is
 * needed) to stderr. CLI_OK with *out set, or an exit code after a message.
 */
int cli_dashboard_start(const char *cmd, const char *flag, const char *listen, const char *workdir,
                        const char *live_job, const char *settings_json, struct ddts_dash **out);
/* cli_dashboard_start for the live job `job` (its settings shown on the page). */
int cli_dashboard_start_job(const char *cmd, const char *listen, const struct ddts_job *job,
                            struct ddts_dash **out);
/* A logger that prints through `inner` (copied) and adds every line to the page's
 * event log; `tee` (caller's storage) must outlive the logger. */
struct cli_dash_tee {
    struct ddts_logger inner;
    struct ddts_dash *dash;
};
struct ddts_logger cli_dashboard_logger(struct cli_dash_tee *tee, const struct ddts_logger *inner,
                                        struct ddts_dash *dash);

/* `ddts wizard`: the wizard alone, writing a job file (cli/cmd_wizard.c). */
int cmd_wizard(int argc, char **argv);
extern const char cli_usage_wizard[];

/*
 * The passphrase of `ddts server` / `ddts client`: from `file` (--passphrase-file; NULL if not
 * given), else the environment variable DDTS_PASSPHRASE, else a prompt on the terminal without
 * echo (asked twice when `confirm`). Never from a plain flag value. On failure prints the error
 * and returns CLI_FAIL or CLI_USAGE; on success the caller owns *out (ddts_passphrase_destroy).
 */
int cli_passphrase(const char *cmd, const char *file, int confirm, struct ddts_passphrase **out);

#endif
