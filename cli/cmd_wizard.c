/* ddts wizard: the server's questions alone, ending in a job file. */
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "job_help.h"

const char cli_usage_wizard[] =
    "usage: ddts wizard [--job-out FILE] [--for server|train] [JOB SETTINGS...]\n"
    "\n"
    "Ask, on a terminal, every job setting not given as a flag (the questions\n"
    "'ddts server' asks), then print the equivalent command line and write the\n"
    "settings to a job file (default WORKDIR/NAME/job.json). The passphrase is\n"
    "read without echo and written next to the job file as 'passphrase' (mode\n"
    "0600), so that 'ddts server --job FILE' then runs without questions.\n"
    "Without a terminal, checks the settings given (an error names a missing\n"
    "flag) and writes the job file.\n"
    "\n"
    "Options:\n"
    "  --job-out FILE             where to write the job file\n"
    "  --for server|train         the command the printed command line runs [server]\n"
    "\n"
    "Job settings (the same as 'ddts server'; see docs/cli.md):\n" CLI_JOB_FLAGS_HELP;

enum { OPT_JOB_OUT = 1000, OPT_FOR, OPT_LIST, OPT_SELFTEST };

struct wizard_opts {
    const char *job_out;
    const char *for_cmd;
    bool listed;
    bool selftest;
};

/*
 * Hidden: prints two short fake epochs, a transfer and the client table with
 * the printers of cli/progress.c, so that tests/integration/test_wizard.py
 * can check what a terminal and a pipe get.
 */
static int progress_selftest(void)
{
    struct cli_progress p;
    cli_progress_init(&p, stderr);
    struct ddts_metric m[4] = {
        {"loss", 0.5}, {"accuracy", 0.8}, {"val_loss", 0.6}, {"val_accuracy", 0.75}};
    for (int e = 1; e <= 2; e++) {
        cli_progress_begin_epoch(&p, e, 2);
        for (int64_t done = 100; done < 1000; done += 100) {
            m[0].value = 0.5 / e - (double)done * 1e-5;
            cli_progress_update(&p, done, 1000, m, 2);
            usleep(30000);
        }
        cli_progress_end_epoch(&p, 1000, m, 4);
    }
    for (uint64_t b = 0; b <= 4u << 20; b += 1u << 20) {
        cli_transfer_update(&p, "model.h5", b, 4u << 20);
        usleep(30000);
    }
    struct ddts_client_row rows[2] = {
        {"alpha", "127.0.0.1:5000", "training", 0, 0, 1, 2, 500, 1000, 0.4, 0.8, 1000, 1},
        {"beta", "127.0.0.1:5001", "training", 0, 0, 1, 2, 250, 1000, 0.5, 0.7, 900, 2},
    };
    struct cli_table t;
    cli_table_init(&t, stderr);
    cli_table_refresh(&t, rows, 2, true);
    rows[0].done = 1000;
    rows[0].state = "done";
    cli_table_refresh(&t, rows, 2, true);
    return CLI_OK;
}

static int on_extra(void *userdata, int val, const char *arg)
{
    struct wizard_opts *o = userdata;
    if (val == OPT_LIST) {
        /* Hidden: the settings table as help lines, to check job_help.h. */
        cli_job_print_flags_help(stdout);
        o->listed = true;
        return CLI_OK;
    }
    if (val == OPT_SELFTEST) {
        o->selftest = true;
        return CLI_OK;
    }
    if (val == OPT_JOB_OUT) {
        o->job_out = arg;
        return CLI_OK;
    }
    if (strcmp(arg, "server") != 0 && strcmp(arg, "train") != 0)
        return cli_usage_error("wizard", "--for: '%s' is not server or train", arg);
    o->for_cmd = arg;
    return CLI_OK;
}

int cmd_wizard(int argc, char **argv)
{
    static const struct option extra[] = {
        {"job-out", required_argument, NULL, OPT_JOB_OUT},
        {"for", required_argument, NULL, OPT_FOR},
        {"list-settings", no_argument, NULL, OPT_LIST},
        {"selftest-progress", no_argument, NULL, OPT_SELFTEST},
        {NULL, 0, NULL, 0},
    };
    struct wizard_opts o = {NULL, "server", false, false};
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    int rc = cli_job_parse_flags("wizard", argc, argv, &job, extra, on_extra, &o, NULL);
    if (rc != CLI_OK || o.listed)
        return rc;
    if (o.selftest)
        return progress_selftest();
    char pass[512] = {0};
    bool server = strcmp(o.for_cmd, "server") == 0;
    struct ddts_error err;
    ddts_error_clear(&err);
    if (isatty(STDIN_FILENO)) {
        rc = cli_wizard_run(&job, stdin, stderr, STDIN_FILENO, server ? pass : NULL, sizeof pass);
        if (rc != CLI_OK)
            goto out;
    } else {
        rc = cli_job_resolve_model_folder("wizard", &job);
        if (rc != CLI_OK)
            goto out;
    }
    if (job.passphrase_file[0] != '\0') {
        /* A job file must not point at a passphrase file that `ddts server`
         * would refuse: read it with the server's and client's reader. */
        struct ddts_passphrase *pw = NULL;
        if (ddts_passphrase_read(job.passphrase_file, &pw, &err) != DDTS_OK) {
            rc = cli_fail("wizard", &err);
            goto out;
        }
        ddts_passphrase_destroy(pw);
    }
    if (ddts_job_check_required(&job, &err) != DDTS_OK) {
        rc = cli_usage_error("wizard", "%s", err.msg);
        goto out;
    }
    if (ddts_job_resolve(&job, &err) != DDTS_OK) {
        rc = cli_fail("wizard", &err);
        goto out;
    }
    rc = cli_job_save_wizard_result(o.for_cmd, &job, o.job_out, pass);
out:
    explicit_bzero(pass, sizeof pass);
    return rc;
}
