/*
 * ddts dashboard: serves the jobs of a work folder (finished or interrupted)
 * as the read-only web page that `ddts server --dashboard` serves live
 * (src/dash/, include/ddts/dash.h). Also the helper that starts the page
 * for `ddts server`.
 */
#include <getopt.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

const char cli_usage_dashboard[] =
    "usage: ddts dashboard [--workdir DIR] [--listen [ADDR:]PORT]\n"
    "\n"
    "Serve the jobs in a work folder (each sub-folder a server's job, finished or\n"
    "interrupted) as a read-only web page: settings, clients, curves, events and\n"
    "the result files to download. Runs until interrupted (Ctrl-C).\n"
    "`ddts server --dashboard [ADDR:]PORT` serves the same page while a job runs.\n"
    "\n"
    "  --workdir DIR          the work folder (./ddts-work)\n"
    "  --listen [ADDR:]PORT   numeric address and port (127.0.0.1:7880; port 0: any\n"
    "                         free port). On an address other than loopback every\n"
    "                         request needs a random token: the full URL with it\n"
    "                         is printed at start; without it the answer is 403.\n"
    "\n"
    "The page polls a JSON API that scripts can use too: /api/jobs, /api/job,\n"
    "/api/clients, /api/history?client=NAME (client=@global: the global model on\n"
    "the test data) (docs/cli.md).\n";

int cli_dashboard_start(const char *cmd, const char *flag, const char *listen, const char *workdir,
                        const char *live_job, const char *settings_json, struct ddts_dash **out)
{
    char addr[128];
    uint16_t port = 0;
    struct ddts_error err;
    ddts_error_clear(&err);
    *out = NULL;
    if (ddts_dash_parse_listen(listen, addr, sizeof addr, &port, &err) != DDTS_OK)
        return cli_usage_error(cmd, "%s: %s", flag, err.msg);
    struct ddts_dash_config cfg = {
        .address = addr,
        .port = port,
        .workdir = workdir,
        .live_job = live_job,
        .settings_json = settings_json,
    };
    enum ddts_status st = ddts_dash_create(&cfg, out, &err);
    if (st == DDTS_EINVAL)
        return cli_usage_error(cmd, "%s: %s", flag, err.msg);
    if (st != DDTS_OK)
        return cli_fail(cmd, &err);
    /* On stderr, not through the logger: the token must not reach the logs or the page. */
    fprintf(stderr, "dashboard: %s\n", ddts_dash_url(*out));
    fflush(stderr);
    return CLI_OK;
}

int cli_dashboard_start_job(const char *cmd, const char *listen, const struct ddts_job *job,
                            struct ddts_dash **out)
{
    char *settings = NULL;
    struct ddts_error err;
    *out = NULL;
    if (ddts_job_to_json(job, DDTS_JOB_JSON_ALL | DDTS_JOB_JSON_COMPACT, &settings, &err) !=
        DDTS_OK)
        return cli_fail(cmd, &err);
    int rc =
        cli_dashboard_start(cmd, "--dashboard", listen, job->workdir, job->name, settings, out);
    ddts_free(settings);
    return rc;
}

static void tee_sink(void *userdata, enum ddts_log_level level, const char *msg)
{
    struct cli_dash_tee *tee = userdata;
    if (tee->inner.fn != NULL)
        tee->inner.fn(tee->inner.userdata, level, msg);
    ddts_dash_on_log(tee->dash, level, msg);
}

struct ddts_logger cli_dashboard_logger(struct cli_dash_tee *tee, const struct ddts_logger *inner,
                                        struct ddts_dash *dash)
{
    tee->inner = *inner;
    tee->dash = dash;
    struct ddts_logger l = {tee_sink, tee, inner->min};
    return l;
}

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

int cmd_dashboard(int argc, char **argv)
{
    const char *workdir = "ddts-work", *listen = "127.0.0.1:7880";
    static const struct option opts[] = {
        {"workdir", required_argument, NULL, 'w'},
        {"listen", required_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'w':
            workdir = optarg;
            break;
        case 'l':
            listen = optarg;
            break;
        case 'h':
            return cli_print_help("dashboard");
        default:
            return cli_usage_error("dashboard", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("dashboard", "unexpected argument '%s'", argv[optind]);
    if (access(workdir, R_OK | X_OK) != 0)
        return cli_usage_error("dashboard", "--workdir %s: not a readable folder", workdir);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    struct ddts_dash *dash = NULL;
    int rc = cli_dashboard_start("dashboard", "--listen", listen, workdir, NULL, NULL, &dash);
    if (rc != CLI_OK)
        return rc;
    while (!stop_requested)
        usleep(200 * 1000);
    ddts_dash_destroy(dash);
    return CLI_OK;
}
