/*
 * ddts server: the coordinator. Parses the job settings (flags, job file,
 * wizard) and the passphrase, then runs the job through the library
 * (include/ddts/serve.h: prepare, serve, report) and prints where its
 * results are.
 */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

const char cli_usage_server[] =
    "usage: ddts server [--job FILE] [--dashboard [ADDR:]PORT] [JOB SETTINGS...]\n"
    "\n"
    "Start a coordinator: split the data among --clients clients, send them the\n"
    "model, the settings and their shares, average their weights (--sync), and\n"
    "gather every trained model and log under WORKDIR/NAME/. Before it splits the\n"
    "data or listens, checks the model against the data (input, labels, loss).\n"
    "Exits 0 once every share's results are received (--keep-serving to stay up);\n"
    "1 when a share failed (summary.txt says which and why) or two clients failed\n"
    "with the same error (the job stops). Run again in the same --workdir: the same\n"
    "settings resume the job, others are refused (--name NEW: a new job; --resume:\n"
    "the job's own settings). With --collect, gathers the results not received\n"
    "yet of the job already in --workdir (several jobs: --name says which).\n"
    "When stdin is a terminal and a required setting is missing, asks for it.\n"
    "The passphrase comes from --passphrase-file F, $DDTS_PASSPHRASE, or a prompt.\n"
    "On a terminal, a table of the clients (state, fold, epoch, progress, loss,\n"
    "accuracy, samples/s, ETA) stays below the log lines, redrawn in place;\n"
    "otherwise each client's epoch ends are logged, one line each.\n"
    "With --dashboard [ADDR:]PORT (address 127.0.0.1 unless given; port 0: any),\n"
    "also serves the job as a live web page (see `ddts dashboard --help`); its\n"
    "URL is printed at start, with a token when the address is not loopback.\n"
    "Each client's curves (validation included) grow as its epochs end; with a\n"
    "test split (--data keras) and --sync, the global model is evaluated after\n"
    "each epoch during the job for the page (work the report would do anyway).\n"
    "\n"
    "Job settings (also the keys of a JSON job file given with --job FILE):\n"
    "  --host ADDR            listen address (0.0.0.0)\n"
    "  --port N               listen port (7878)\n"
    "  --collect              collect the results of the job in --workdir\n"
    "  --resume               continue the job in --workdir with its own settings\n"
    "  --passphrase-file F    file holding the passphrase (mode 0600)\n"
    "  --model PATH           Keras .h5 or .keras file, or a folder with one\n"
    "  --clients N            clients that share the data (required)\n"
    "  --epochs N             (10)      --batch-size N (32)\n"
    "  --optimizer NAME       adam, sgd, rmsprop, ... (the model's compiled one)\n"
    "  --learning-rate F      (the optimizer's default)\n"
    "  --loss NAME            (the model's compiled loss)\n"
    "  --metrics LIST         (accuracy where it applies)\n"
    "  --normalizer KIND      none, simple, minmax, zscore or 0-3 (none)\n"
    "  --method fit|kfold     (fit)     --folds K (10)\n"
    "  --data SOURCE          server (--dataset DIR/X, DIR/Y), client, keras (server)\n"
    "  --dataset DIR          folder with X/ and Y/\n"
    "  --keras-dataset NAME   mnist, fashion_mnist, cifar10, cifar100, imdb, reuters,\n"
    "                         boston_housing (imdb/reuters: --num-words, --skip-top,\n"
    "                         --maxlen; cifar100: --label-mode fine|coarse)\n"
    "  --samples N            training samples used (all)\n"
    "  --order XY|XX          XX: reconstruct X (autoencoder), DIR/X only (XY)\n"
    "  --x-key, --y-key NAME  the array of .npz files in DIR/X, DIR/Y (x/x_train, y/y_train)\n"
    "  --monitor NAME         best model by (val_accuracy with accuracy, else val_loss)\n"
    "  --validation-split F   held out on each client without a test split (0.3)\n"
    "  --sync MODE            none, epoch, steps:K, step (epoch)\n"
    "  --seed N               (random, printed)\n"
    "  --workdir DIR          job state and results (./ddts-work)\n"
    "  --name NAME            job name (the model's file name)\n"
    "  --ban-after N          failed handshakes before an address is refused (3)\n"
    "  --client-timeout S     seconds of silence before a share moves (120)\n"
    "  --io-timeout S         limit of every network read and write (30)\n"
    "  --threads N            compute threads for evaluation (all cores)\n";

static volatile sig_atomic_t stop_requested;

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

/* What the job's hooks share: the terminal's live view and the web page (each may be NULL). */
struct server_ctx {
    struct cli_live *live;
    struct ddts_dash *dash;
};

/* Polled every 0.2 s by the server: also the live view's clock. */
static int should_stop(void *userdata)
{
    cli_live_tick(((struct server_ctx *)userdata)->live);
    return stop_requested;
}

static void on_client(void *userdata, const struct ddts_server_client *c)
{
    struct server_ctx *ctx = userdata;
    if (ctx->live != NULL)
        cli_live_on_client(ctx->live, c);
    ddts_dash_on_client(ctx->dash, c);
}

static void on_epoch_end(void *userdata, const struct ddts_server_client *c)
{
    struct server_ctx *ctx = userdata;
    if (ctx->live != NULL)
        cli_live_on_epoch_end(ctx->live, c);
}

static void on_round(void *userdata, uint64_t round)
{
    ddts_dash_on_round(((struct server_ctx *)userdata)->dash, round);
}

static void on_epoch(void *userdata, const struct ddts_server_client *c,
                     const struct ddts_wire_epoch *e)
{
    ddts_dash_on_epoch(((struct server_ctx *)userdata)->dash, c, e);
}

static void on_global(void *userdata, uint64_t epoch, double loss, double accuracy)
{
    ddts_dash_on_global(((struct server_ctx *)userdata)->dash, epoch, loss, accuracy);
}

/* The passphrase: typed in the wizard, or from a file, $DDTS_PASSPHRASE or a prompt. */
static int get_passphrase(const struct ddts_job *job, char *typed, size_t typed_cap,
                          struct ddts_passphrase **pw)
{
    if (typed[0] == '\0')
        return cli_passphrase("server", job->passphrase_file[0] ? job->passphrase_file : NULL, 1,
                              pw);
    struct ddts_error err;
    enum ddts_status st = ddts_passphrase_create(typed, strlen(typed), pw, &err);
    ddts_secure_wipe(typed, typed_cap);
    return st == DDTS_OK ? CLI_OK : cli_fail("server", &err);
}

/* Prepares, serves and reports the job (include/ddts/serve.h). */
static enum ddts_status serve_job(const struct ddts_job *job, const struct ddts_passphrase *pw,
                                  struct ddts_dash *dash, struct ddts_error *err)
{
    struct ddts_logger log = cli_logger(DDTS_LOG_INFO);
    /* Log lines go through the live view, which keeps its table below them. */
    struct cli_live *live = cli_live_create(stderr, &log);
    if (live != NULL)
        log = cli_live_logger(live);
    /* ... and to the web page's event log. */
    struct cli_dash_tee tee;
    if (dash != NULL)
        log = cli_dashboard_logger(&tee, &log, dash);
    struct server_ctx ctx = {live, dash};
    struct ddts_serve *sv = NULL;
    enum ddts_status st = ddts_serve_create(job, &log, &sv, err);
    if (st == DDTS_OK)
        st = ddts_serve_prepare(sv, err);
    if (st == DDTS_OK) {
        cli_live_attach(live, sv);
        struct ddts_serve_hooks hooks = {
            .passphrase = pw,
            .should_stop = should_stop,
            .on_client = on_client,
            .on_epoch_end = on_epoch_end,
            .on_round = on_round,
            .on_epoch = on_epoch,
            /* The global model's live curve costs an evaluation per epoch during the
             * job (the report would make it after): only for a page that shows it. */
            .on_global = dash != NULL ? on_global : NULL,
            .userdata = &ctx,
        };
        st = ddts_serve_run(sv, &hooks, err);
        cli_live_finish(live);
        ddts_dash_set_status(dash, "finishing");
    }
    struct ddts_serve_result res;
    if (st == DDTS_OK)
        st = ddts_serve_report(sv, &res, err);
    if (sv != NULL)
        job = ddts_serve_job(sv);
    if (st == DDTS_OK && res.n_failed > 0)
        st = ddts_error_set(err, DDTS_EINVAL,
                            "%zu of %zu shares failed: their training produced no results (the "
                            "reasons are in %s/summary.txt)",
                            res.n_failed, res.n_shares, res.job_dir);
    else if (st == DDTS_OK) {
        printf("job: %s\nresults: %s\n", job->name, res.job_dir);
        if (res.global_model[0])
            printf("global model: %s\n", res.global_model);
        if (isfinite(res.test_accuracy))
            printf("test accuracy: %.4f\ntest loss: %.4f\n", res.test_accuracy, res.test_loss);
    }
    cli_live_finish(live);
    ddts_serve_destroy(sv);
    cli_live_destroy(live);
    return st;
}

static int server_flag(void *userdata, int val, const char *arg)
{
    (void)val;
    *(const char **)userdata = arg; /* --dashboard, checked when the page starts */
    return CLI_OK;
}

int cmd_server(int argc, char **argv)
{
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    int first = 0;
    const char *dash_listen = NULL;
    static const struct option extra[] = {{"dashboard", required_argument, NULL, 1000},
                                          {NULL, 0, NULL, 0}};
    int rc =
        cli_job_parse_flags("server", argc, argv, &job, extra, server_flag, &dash_listen, &first);
    if (rc != CLI_OK)
        return rc;
    if (first < argc)
        return cli_usage_error("server", "unexpected argument '%s'", argv[first]);
    char typed[1024] = "";
    rc = cli_job_complete("server", &job, false, NULL, typed, sizeof typed);
    if (rc != CLI_OK)
        return rc;
    struct ddts_dash *dash = NULL;
    if (dash_listen != NULL) {
        rc = cli_dashboard_start_job("server", dash_listen, &job, &dash);
        if (rc != CLI_OK) {
            ddts_secure_wipe(typed, sizeof typed);
            return rc;
        }
    }
    struct ddts_passphrase *pw = NULL;
    rc = get_passphrase(&job, typed, sizeof typed, &pw);
    if (rc != CLI_OK) {
        ddts_dash_destroy(dash);
        return rc;
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    struct ddts_error err;
    ddts_error_clear(&err);
    enum ddts_status st = serve_job(&job, pw, dash, &err);
    ddts_dash_destroy(dash);
    ddts_passphrase_destroy(pw);
    return st == DDTS_OK ? CLI_OK : cli_fail("server", &err);
}
