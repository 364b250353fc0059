/*
 * ddts client: joins a server, receives the model, the settings and its
 * share, trains it (averaging weights with the other clients through the
 * server when the job synchronises), uploads the results and keeps them.
 */
#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_client[] =
    "usage: ddts client --server HOST:PORT [--passphrase-file F] [--workdir DIR]\n"
    "                   [--name NAME] [--threads N] [--dataset DIR] [--retries N]\n"
    "\n"
    "Join a ddts server, receive the model, the settings and a share of the data,\n"
    "train it, upload the results (models, history.csv, train.log, plots) and\n"
    "wait for the server's receipt. Nothing is deleted: results stay in\n"
    "WORKDIR/<job>/results. A client restarted with the same --workdir keeps its\n"
    "identity and continues where it was.\n"
    "\n"
    "A client runs the server's model on the data it trains; what training\n"
    "reveals (the weights it sends) goes to the server. It takes no path from\n"
    "the server: its data come only from the share the server sends or from\n"
    "--dataset (docs/protocol.md, \"Threat model\").\n"
    "\n"
    "  --server HOST:PORT     the server (port 7878 when left out)\n"
    "  --passphrase-file F    file holding the job passphrase (else\n"
    "                         $DDTS_PASSPHRASE, else a prompt without echo)\n"
    "  --workdir DIR          identity, job, shard and results (./ddts-client)\n"
    "  --name NAME            results folder name on the server (client-<id>)\n"
    "  --threads N            compute threads (all cores)\n"
    "  --dataset DIR          this client's own X/ and Y/ (required by jobs with\n"
    "                         --data client)\n"
    "  --retries N            reconnection attempts after a lost connection (5)\n";

struct client_ctx {
    int threads;
    const char *dataset;
    struct ddts_logger log;
    struct cli_progress transfer;
};

/* Transfers (model, share, results) show progress like Keras' bar. */
static void on_transfer(void *userdata, const char *what, uint64_t done, uint64_t total)
{
    struct client_ctx *ctx = userdata;
    cli_transfer_update(&ctx->transfer, what, done, total);
}

static enum ddts_status exchange(void *userdata, float *w, size_t n, uint64_t n_samples,
                                 struct ddts_error *err)
{
    return ddts_client_sync_exchange(userdata, w, n, n_samples, err);
}

/* Training progress goes to the server's live view (the library throttles it). */
static void forward_progress(void *userdata, const struct ddts_train_progress *tp)
{
    struct ddts_wire_progress p = {
        .fold = (uint32_t)(tp->fold > 0 ? tp->fold : 0),
        .n_folds = (uint32_t)(tp->n_folds > 0 ? tp->n_folds : 0),
        .epoch = (uint32_t)(tp->epoch > 0 ? tp->epoch : 1),
        .epochs = (uint32_t)(tp->epochs > 0 ? tp->epochs : 1),
        .done = (uint64_t)(tp->done > 0 ? tp->done : 0),
        .total = (uint64_t)(tp->total > 0 ? tp->total : 0),
        .loss = tp->loss,
        .accuracy = tp->accuracy,
        .samples_per_s = tp->samples_per_s,
        .elapsed_s = tp->elapsed_s,
        .flags = tp->epoch_end ? DDTS_PROGRESS_EPOCH_END : 0,
    };
    /* Best effort: a lost connection shows at the next exchange or the upload. */
    (void)!ddts_client_send_progress(userdata, &p, NULL);
    if (tp->epoch_end && tp->epoch_logs != NULL) {
        /* The epoch's history row, validation included: the dashboard's live curves. */
        struct ddts_wire_epoch e = {
            .fold = p.fold, .n_folds = p.n_folds, .epoch = p.epoch, .epochs = p.epochs};
        for (size_t i = 0; i < tp->epoch_logs->n && e.n < DDTS_MAX_EPOCH_FIGURES; i++) {
            const char *name = tp->epoch_logs->names[i];
            if (strlen(name) > DDTS_MAX_EPOCH_NAME_BYTES)
                continue; /* not a name the protocol carries (none of Keras' is) */
            memcpy(e.names[e.n], name, strlen(name) + 1);
            e.values[e.n++] = tp->epoch_logs->values[i];
        }
        (void)!ddts_client_send_epoch(userdata, &e, NULL);
    }
}

static enum ddts_status load_opt(const char *dir, const char *name, struct ddts_array **out,
                                 struct ddts_error *err)
{
    *out = NULL;
    char path[4096];
    enum ddts_status st = ddts_format(path, sizeof path, err, "%s/%s", dir, name);
    if (st != DDTS_OK || access(path, R_OK) != 0)
        return st;
    return ddts_data_load(path, NULL, out, err);
}

/* The share the server sent: x.npy, y.npy, the test split when there is
 * one, the normalizer statistics and the smallest share's size (info.txt),
 * which fixes the rounds every client exchanges. xy: x, y, x_test, y_test. */
static enum ddts_status load_share(const char *dir, struct ddts_array **xy[4],
                                   struct ddts_stats **stats, size_t *min_share,
                                   struct ddts_error *err)
{
    static const char *const names[] = {"x.npy", "y.npy", "x_test.npy", "y_test.npy"};
    enum ddts_status st = DDTS_OK;
    for (int i = 0; i < 4 && st == DDTS_OK; i++)
        st = load_opt(dir, names[i], xy[i], err);
    if (st == DDTS_OK && *xy[0] == NULL)
        st = ddts_error_set(err, DDTS_ENOTFOUND, "the share from the server has no x.npy");
    char path[4096];
    if (st == DDTS_OK)
        st = ddts_format(path, sizeof path, err, "%s/stats.bin", dir);
    char *buf = NULL;
    size_t nbytes = 0;
    if (st == DDTS_OK && access(path, R_OK) == 0) {
        st = ddts_read_file(path, (size_t)1 << 30, &buf, &nbytes, err);
        if (st == DDTS_OK)
            st = ddts_stats_decode((const uint8_t *)buf, nbytes, stats, err);
        ddts_free(buf);
    }
    if (st == DDTS_OK)
        st = ddts_format(path, sizeof path, err, "%s/info.txt", dir);
    if (st == DDTS_OK && access(path, R_OK) == 0) {
        st = ddts_read_file(path, 4096, &buf, &nbytes, err);
        if (st == DDTS_OK) {
            char *end = NULL;
            const char *p = strstr(buf, "min_share ");
            if (p != NULL)
                *min_share = (size_t)strtoull(p + 10, &end, 10);
        }
        ddts_free(buf);
    }
    return st;
}

/* A share taken over (or resumed) mid-job skips the epochs it already
 * contributed to the rounds: rounds per epoch as trainer.c exchanges. */
static int first_epoch(struct client_ctx *ctx, const struct ddts_client_job *cj,
                       const struct ddts_job *job, size_t min_share, int has_val)
{
    if (job->method != DDTS_JOB_FIT || cj->share_rounds == 0)
        return 0;
    uint64_t per_epoch = ddts_train_rounds_per_epoch(job, min_share, has_val);
    uint64_t e = cj->share_rounds / per_epoch;
    int initial_epoch = e >= (uint64_t)job->epochs ? job->epochs - 1 : (int)e;
    ddts_log(&ctx->log, DDTS_LOG_INFO,
             "share %u already contributed %llu rounds: training from epoch %d of %d", cj->shard,
             (unsigned long long)cj->share_rounds, initial_epoch + 1, job->epochs);
    return initial_epoch;
}

static enum ddts_status train(void *userdata, const struct ddts_client_job *cj,
                              struct ddts_client_sync *sync, struct ddts_error *err)
{
    struct client_ctx *ctx = userdata;
    struct ddts_job job;
    ddts_job_init_defaults(&job);
    enum ddts_status st =
        ddts_job_from_server_json(&job, cj->settings_json, strlen(cj->settings_json), err);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "settings from the server: ");
        return st;
    }
    if (ctx->threads > 0)
        job.threads = ctx->threads;
    /* A new attempt (a retry after a lost connection): an earlier error.log is stale. */
    ddts_error_log_remove(cj->result_dir);
    struct ddts_array *x = NULL, *y = NULL, *xt = NULL, *yt = NULL;
    struct ddts_stats *stats = NULL;
    float *init = NULL;
    size_t n_init = 0, min_share = 0;
    if (cj->shard_dir != NULL) {
        struct ddts_array **xy[4] = {&x, &y, &xt, &yt};
        st = load_share(cj->shard_dir, xy, &stats, &min_share, err);
    } else if (job.data != DDTS_JOB_DATA_CLIENT) {
        st = ddts_error_set(err, DDTS_EPROTO,
                            "the server sent no share of the data (a job with --data %s must)",
                            job.data == DDTS_JOB_DATA_KERAS ? "keras" : "server");
    } else if (ctx->dataset == NULL) {
        st = ddts_error_set(err, DDTS_EINVAL,
                            "this job trains on each client's own data: give --dataset DIR "
                            "(a client never takes a folder from the server)");
    } else {
        /* --data client: this machine's own X/ and Y/, named on this machine only. */
        st = ddts_serve_load_xy(&job, ctx->dataset, &x, &y, err);
    }
    if (st == DDTS_OK && cj->init_weights_path != NULL) {
        char *buf = NULL;
        size_t nbytes = 0;
        st = ddts_read_file(cj->init_weights_path, (size_t)4 << 30, &buf, &nbytes, err);
        init = (float *)(void *)buf;
        n_init = nbytes / sizeof(float);
    }
    if (st != DDTS_OK)
        goto out;
    if (min_share == 0 && x != NULL)
        min_share = (size_t)x->shape[0];
    int syncing = cj->sync != DDTS_SYNC_NONE;
    char run_name[256];
    snprintf(run_name, sizeof run_name, "%s %s (share %u/%u)", cj->job, cj->client_name,
             cj->shard + 1, cj->n_shards);
    /* Every client exchanges at the same points (src/train/syncplan.c). */
    int has_val = job.method == DDTS_JOB_FIT && xt != NULL && yt != NULL;
    int initial_epoch = syncing ? first_epoch(ctx, cj, &job, min_share, has_val) : 0;
    struct ddts_train_request req = {
        .job = &job,
        .model_path = cj->model_path,
        .x = x,
        .y = y,
        /* a share was checked by the server; this machine's own data is checked here */
        .x_inputs = job.data == DDTS_JOB_DATA_CLIENT && ctx->dataset != NULL
                        ? ddts_data_n_inputs(ctx->dataset)
                        : 0,
        .x_val = job.method == DDTS_JOB_FIT ? xt : NULL,
        .y_val = job.method == DDTS_JOB_FIT ? yt : NULL,
        .norm_stats = stats,
        .init_weights = init,
        .n_init_weights = n_init,
        .out_dir = cj->result_dir,
        .exchange = syncing ? exchange : NULL,
        .exchange_userdata = sync,
        .sync_steps = cj->sync == DDTS_SYNC_STEPS || cj->sync == DDTS_SYNC_STEP
                          ? (cj->sync_steps > 0 ? cj->sync_steps : 1)
                          : 0,
        .sync_batch_limit = ddts_train_sync_batch_limit(&job, min_share, has_val),
        .initial_epoch = initial_epoch,
        .run_name = run_name,
        .logger = &ctx->log,
        .progress = stderr,
        .on_progress = forward_progress,
        .progress_userdata = sync,
    };
    struct ddts_train_result res;
    st = ddts_train_run(&req, &res, err);
    if (st == DDTS_OK)
        ddts_log(&ctx->log, DDTS_LOG_INFO,
                 "trained %zu samples in %.1f s (%.0f samples/s): loss %.4f, val_accuracy %.4f",
                 res.n_samples, res.seconds, res.samples_per_s, res.loss, res.val_accuracy);
out:
    if (st != DDTS_OK) {
        /* error.log beside train.log, uploaded with the results: the full error and context. */
        char context[512];
        snprintf(context, sizeof context, "job %s, share %u of %u, client %s, model %s", cj->job,
                 cj->shard + 1, cj->n_shards, cj->client_name,
                 cj->model_path != NULL ? cj->model_path : "-");
        struct ddts_error e2;
        const char *settings = cj->settings_json[0] ? cj->settings_json : NULL;
        if (ddts_error_log_write(cj->result_dir, err, context, settings, &e2) != DDTS_OK)
            ddts_log(&ctx->log, DDTS_LOG_WARN, "error.log: %s", e2.msg);
    }
    ddts_free(init);
    ddts_stats_destroy(stats);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_array_destroy(xt);
    ddts_array_destroy(yt);
    return st;
}

int cmd_client(int argc, char **argv)
{
    const char *server = NULL, *pass_file = NULL, *workdir = "ddts-client", *name = NULL;
    struct client_ctx ctx = {.threads = 0, .dataset = NULL, .log = cli_logger(DDTS_LOG_INFO)};
    long threads = 0, retries = 5;
    static const struct option opts[] = {
        {"server", required_argument, NULL, 's'},
        {"passphrase-file", required_argument, NULL, 'p'},
        {"workdir", required_argument, NULL, 'w'},
        {"name", required_argument, NULL, 'n'},
        {"threads", required_argument, NULL, 't'},
        {"dataset", required_argument, NULL, 'd'},
        {"retries", required_argument, NULL, 'r'},
        {NULL, 0, NULL, 0},
    };
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's':
            server = optarg;
            break;
        case 'p':
            pass_file = optarg;
            break;
        case 'w':
            workdir = optarg;
            break;
        case 'n':
            name = optarg;
            break;
        case 'd':
            ctx.dataset = optarg;
            break;
        case 't':
            if (cli_parse_long("client", "--threads", optarg, 0, 1024, &threads) != CLI_OK)
                return CLI_USAGE;
            break;
        case 'r':
            if (cli_parse_long("client", "--retries", optarg, 0, 1000000, &retries) != CLI_OK)
                return CLI_USAGE;
            break;
        default:
            return cli_usage_error("client", "unknown option '%s' (see 'ddts help client')",
                                   argv[optind - 1]);
        }
    }
    if (optind < argc)
        return cli_usage_error("client", "unexpected argument '%s'", argv[optind]);
    if (server == NULL)
        return cli_usage_error("client", "--server HOST:PORT is required");
    ctx.threads = (int)threads;
    cli_progress_init(&ctx.transfer, stderr);
    char host[256];
    long port = DDTS_DEFAULT_PORT;
    const char *colon = strrchr(server, ':');
    if (colon != NULL) {
        if (cli_parse_long("client", "--server", colon + 1, 1, 65535, &port) != CLI_OK)
            return CLI_USAGE;
        if (ddts_format(host, sizeof host, NULL, "%.*s", (int)(colon - server), server) != DDTS_OK)
            return cli_usage_error("client", "--server: host name longer than 255 bytes");
    } else if (ddts_format(host, sizeof host, NULL, "%s", server) != DDTS_OK) {
        return cli_usage_error("client", "--server: host name longer than 255 bytes");
    }
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_passphrase *pw = NULL;
    int rc = cli_passphrase("client", pass_file, 0, &pw);
    if (rc != CLI_OK)
        return rc;
    enum ddts_status st;
    signal(SIGPIPE, SIG_IGN);
    struct ddts_client_config cfg = {
        .host = host,
        .port = (uint16_t)port,
        .passphrase = pw,
        .workdir = workdir,
        .name = name,
        .logger = &ctx.log,
        .train = train,
        .userdata = &ctx,
        .progress = on_transfer,
        .retries = (unsigned)retries,
        .retry_s = 2.0,
    };
    st = ddts_client_run(&cfg, &err);
    ddts_passphrase_destroy(pw);
    if (st != DDTS_OK) {
        /* Retries spent (or a failure they cannot fix): what was done is kept here. */
        ddts_log(&ctx.log, DDTS_LOG_INFO,
                 "this client's results (if any) are kept in %s: when the server runs again "
                 "with 'ddts server --collect --workdir DIR' (DIR: the job's work folder), run "
                 "this client again with the same --workdir to hand them over",
                 workdir);
        return cli_fail("client", &err);
    }
    ddts_log(&ctx.log, DDTS_LOG_INFO, "done: results kept in %s", workdir);
    return CLI_OK;
}
