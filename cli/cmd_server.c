/*
 * ddts server: the coordinator. Prepares the job (model, data split into
 * shards, global normalizer statistics), serves it to the clients through
 * the network layer, then writes the global model and the job's report.
 */
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "integ.h"

const char cli_usage_server[] =
    "usage: ddts server [--job FILE] [--dashboard [ADDR:]PORT] [JOB SETTINGS...]\n"
    "\n"
    "Start a coordinator: split the data among --clients clients, send them the\n"
    "model, the settings and their shares, average their weights (--sync), and\n"
    "gather every trained model and log under WORKDIR/NAME/. Exits 0 once every\n"
    "result is received (--keep-serving to stay up). With --collect, gathers the\n"
    "results of an earlier job in --workdir that were not received yet.\n"
    "When stdin is a terminal and a required setting is missing, asks for it.\n"
    "The passphrase comes from --passphrase-file F, $DDTS_PASSPHRASE, or a prompt.\n"
    "On a terminal, a table of the clients (state, fold, epoch, progress, loss,\n"
    "accuracy, samples/s, ETA) stays below the log lines, redrawn in place;\n"
    "otherwise each client's epoch ends are logged, one line each.\n"
    "With --dashboard [ADDR:]PORT (address 127.0.0.1 unless given; port 0: any),\n"
    "also serves the job as a live web page (see `ddts dashboard --help`); its\n"
    "URL is printed at start, with a token when the address is not loopback.\n"
    "\n"
    "Job settings (also the keys of a JSON job file given with --job FILE):\n"
    "  --host ADDR            listen address (0.0.0.0)\n"
    "  --port N               listen port (7878)\n"
    "  --collect              collect results instead of training\n"
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

/* What the server's callbacks share (ddts_server_config.userdata). */
struct server_ctx {
    struct round_saver *saver;
    struct cli_live *live;
    struct ddts_dash *dash; /* NULL without --dashboard */
};

/* Polled every 0.2 s by the server: also the live view's clock. */
static int should_stop(void *userdata)
{
    struct server_ctx *ctx = userdata;
    cli_live_tick(ctx->live);
    return stop_requested;
}

static void on_client(void *userdata, const struct ddts_server_client *c)
{
    struct server_ctx *ctx = userdata;
    if (ctx->live != NULL)
        cli_live_on_client(ctx->live, c);
    ddts_dash_on_client(ctx->dash, c);
}

static int dir_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static enum ddts_status write_part(const char *dir, const char *name, const struct ddts_array *a,
                                   const uint32_t *idx, size_t n, struct ddts_error *err)
{
    struct ddts_array *part = NULL;
    enum ddts_status st = ddts_array_take(a, idx, n, &part, err);
    if (st != DDTS_OK)
        return st;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    st = ddts_npy_write(path, part, err);
    ddts_array_destroy(part);
    return st;
}

/*
 * Writes WORKDIR/NAME/shards/shard_i/ for every client: x.npy, y.npy (the
 * share, in the stored dtype), x_test.npy and y_test.npy (a Keras dataset's
 * test split, the validation data), stats.bin (the job's normalizer
 * statistics over all training samples) and info.txt (the smallest share).
 */
static enum ddts_status prepare_shards(const struct ddts_job *job, const char *shards_dir,
                                       const struct ddts_array *x, const struct ddts_array *y,
                                       const struct ddts_array *xt, const struct ddts_array *yt,
                                       const struct ddts_stats *stats, struct ddts_error *err)
{
    size_t n = (size_t)x->shape[0];
    size_t n_clients = (size_t)job->clients;
    uint32_t *idx = NULL, *all = NULL;
    size_t *counts = ddts_calloc(n_clients, sizeof *counts);
    uint8_t *enc = NULL;
    if (counts == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    enum ddts_status st = ddts_split_shards(n, n_clients, job->seed, NULL, &idx, counts, err);
    if (st != DDTS_OK)
        goto out;
    size_t enc_n = ddts_stats_encoded_size(stats);
    enc = ddts_malloc(enc_n);
    if (enc == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        goto out;
    }
    st = ddts_stats_encode(stats, enc, enc_n, err);
    if (st != DDTS_OK)
        goto out;
    size_t n_min = counts[0];
    for (size_t c = 0; c < n_clients; c++)
        n_min = counts[c] < n_min ? counts[c] : n_min;
    size_t n_test = xt != NULL ? (size_t)xt->shape[0] : 0;
    all = ddts_mallocarray(n_test ? n_test : 1, sizeof(uint32_t));
    if (all == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_test; i++)
        all[i] = (uint32_t)i;
    size_t offset = 0;
    for (size_t c = 0; c < n_clients; c++) {
        char dir[4096], path[4096];
        snprintf(dir, sizeof dir, "%s/shard_%zu", shards_dir, c);
        st = ddts_mkdir_p(dir, err);
        if (st == DDTS_OK)
            st = write_part(dir, "x.npy", x, idx + offset, counts[c], err);
        if (st == DDTS_OK && y != NULL)
            st = write_part(dir, "y.npy", y, idx + offset, counts[c], err);
        if (st == DDTS_OK && xt != NULL && yt != NULL) {
            st = write_part(dir, "x_test.npy", xt, all, n_test, err);
            if (st == DDTS_OK)
                st = write_part(dir, "y_test.npy", yt, all, n_test, err);
        }
        if (st == DDTS_OK) {
            snprintf(path, sizeof path, "%s/stats.bin", dir);
            st = ddts_write_file_atomic(path, enc, enc_n, err);
        }
        if (st == DDTS_OK) {
            char info[128];
            int len = snprintf(info, sizeof info, "min_share %zu\n", n_min);
            snprintf(path, sizeof path, "%s/info.txt", dir);
            st = ddts_write_file_atomic(path, info, (size_t)len, err);
        }
        if (st != DDTS_OK)
            goto out;
        offset += counts[c];
    }
out:
    ddts_free(enc);
    ddts_free(all);
    ddts_free(idx);
    ddts_free(counts);
    return st;
}

/* Reads raw little-endian float32 weights. */
static enum ddts_status read_f32(const char *path, float **out, size_t *n, struct ddts_error *err)
{
    char *buf = NULL;
    size_t nbytes = 0;
    enum ddts_status st = ddts_read_file(path, (size_t)4 << 30, &buf, &nbytes, err);
    if (st != DDTS_OK)
        return st;
    if (nbytes % 4 != 0) {
        ddts_free(buf);
        return ddts_error_set(err, DDTS_EFORMAT, "%s: %zu bytes is not whole float32 values", path,
                              nbytes);
    }
    *out = (float *)(void *)buf;
    *n = nbytes / 4;
    return DDTS_OK;
}

/* "samples" of a client's summary.json (written by the trainer), or -1. */
static int64_t client_samples(const char *clients_dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/summary.json", clients_dir, name);
    char *text = NULL;
    size_t n = 0;
    if (ddts_read_file(path, 1 << 20, &text, &n, NULL) != DDTS_OK)
        return -1;
    int64_t samples = -1;
    const char *p = strstr(text, "\"samples\": ");
    if (p != NULL)
        samples = strtoll(p + 11, NULL, 10);
    ddts_free(text);
    return samples;
}

/*
 * The global model's curve: the weights of every epoch-end round are saved as
 * global/round_<R>.f32 (on_round), evaluated on the test data after the job
 * into global/history.csv, and drawn in the combined plot.
 */
struct round_saver {
    char dir[4096]; /* WORKDIR/NAME/global */
    uint64_t every; /* rounds per epoch (0: no snapshots) */
    const struct ddts_logger *log;
};

static void on_round(void *userdata, uint64_t round, const float *w, size_t n)
{
    const struct round_saver *rs = ((const struct server_ctx *)userdata)->saver;
    ddts_dash_on_round(((const struct server_ctx *)userdata)->dash, round);
    if (rs->every == 0 || round % rs->every != 0)
        return;
    char path[4200];
    snprintf(path, sizeof path, "%s/round_%06llu.f32", rs->dir, (unsigned long long)round);
    struct ddts_error err;
    if (ddts_write_file_atomic(path, w, n * sizeof *w, &err) != DDTS_OK)
        ddts_log(rs->log, DDTS_LOG_WARN, "global snapshot: %s", err.msg);
}

/* "min_share" of a share's info.txt (0: unknown). */
static size_t read_min_share(const char *shards_dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/shard_0/info.txt", shards_dir);
    char *text = NULL;
    size_t n = 0;
    if (ddts_read_file(path, 4096, &text, &n, NULL) != DDTS_OK)
        return 0;
    size_t v = 0;
    const char *p = strstr(text, "min_share ");
    if (p != NULL)
        v = (size_t)strtoull(p + 10, NULL, 10);
    ddts_free(text);
    return v;
}

/* Rounds per epoch of a job: the client's exchanges (trainer.c) every K batches
 * up to the smallest share's whole batches, plus one at the end of the epoch. */
static uint64_t rounds_per_epoch(const struct ddts_job *job, size_t min_share)
{
    if (job->method != DDTS_JOB_FIT || job->sync == DDTS_JOB_SYNC_NONE)
        return 0;
    if (job->sync == DDTS_JOB_SYNC_EPOCH)
        return 1;
    size_t batch = job->batch_size > 0 ? (size_t)job->batch_size : 32;
    size_t k = job->sync_steps > 0 ? (size_t)job->sync_steps : 1;
    if (min_share == 0)
        return 0;
    return (uint64_t)(min_share / batch / k) + 1;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/*
 * Evaluates every global/round_*.f32 on the test data, writes
 * global/history.csv (epoch,val_loss,val_accuracy, one row per epoch-end
 * round) and returns it read back, or NULL.
 */
static struct ddts_csv_history *
global_history(const struct ddts_job *job, const char *job_dir, const char *model_path,
               const struct ddts_stats *stats, const struct ddts_array *xt,
               const struct ddts_array *yt, const struct ddts_logger *log)
{
    enum { MAXR = 10000 };
    if (xt == NULL || yt == NULL || model_path[0] == 0)
        return NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/global", job_dir);
    uint64_t *rounds = ddts_mallocarray(MAXR, sizeof *rounds);
    size_t nr = 0, used = 0, cap = 64;
    char *csv = ddts_malloc(cap);
    struct ddts_csv_history *h = NULL;
    struct ddts_error err;
    ddts_error_clear(&err);
    DIR *d = rounds != NULL && csv != NULL ? opendir(dir) : NULL;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && nr < MAXR) {
        /* Snapshots are named round_<R>.f32 by the server. */
        if (strncmp(e->d_name, "round_", 6) != 0)
            continue;
        char *end = NULL;
        unsigned long long r = strtoull(e->d_name + 6, &end, 10);
        if (end != e->d_name + 6 && strcmp(end, ".f32") == 0)
            rounds[nr++] = (uint64_t)r;
    }
    if (d != NULL)
        closedir(d);
    if (nr == 0)
        goto out;
    qsort(rounds, nr, sizeof *rounds, cmp_u64);
    used = (size_t)snprintf(csv, cap, "epoch,val_loss,val_accuracy\n");
    for (size_t i = 0; i < nr; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/round_%06llu.f32", dir, (unsigned long long)rounds[i]);
        float *w = NULL;
        size_t n_w = 0;
        double loss = NAN, acc = NAN;
        enum ddts_status st = read_f32(path, &w, &n_w, &err);
        if (st == DDTS_OK) {
            struct ddts_global_request g = {job, model_path, w, n_w, stats, xt, yt, NULL};
            st = ddts_train_global(&g, &loss, &acc, &err);
        }
        ddts_free(w);
        if (st != DDTS_OK || !isfinite(loss)) {
            ddts_log(log, DDTS_LOG_WARN, "global curve: %s", st != DDTS_OK ? err.msg : path);
            goto out;
        }
        char row[128];
        int len = isfinite(acc) ? snprintf(row, sizeof row, "%zu,%.9g,%.9g\n", i, loss, acc)
                                : snprintf(row, sizeof row, "%zu,%.9g,\n", i, loss);
        if (used + (size_t)len + 1 > cap) {
            char *bigger = ddts_realloc(csv, cap * 2 + (size_t)len);
            if (bigger == NULL)
                goto out;
            csv = bigger;
            cap = cap * 2 + (size_t)len;
        }
        memcpy(csv + used, row, (size_t)len + 1);
        used += (size_t)len;
    }
    char path[4200];
    snprintf(path, sizeof path, "%s/history.csv", dir);
    if (ddts_write_file_atomic(path, csv, used, &err) != DDTS_OK ||
        ddts_csv_history_parse(path, csv, used, &h, &err) != DDTS_OK) {
        ddts_log(log, DDTS_LOG_WARN, "global curve: %s", err.msg);
        h = NULL;
    }
out:
    ddts_free(rounds);
    ddts_free(csv);
    return h;
}

/*
 * "fold_values" of a client's summary.json (k-fold jobs) into vals (at most
 * max); the count, 0 when absent.
 */
static int client_folds(const char *clients_dir, const char *name, double *vals, int max)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/summary.json", clients_dir, name);
    char *text = NULL;
    size_t n = 0;
    if (ddts_read_file(path, 1 << 20, &text, &n, NULL) != DDTS_OK)
        return 0;
    int k = 0;
    const char *p = strstr(text, "\"fold_values\": [");
    if (p != NULL) {
        p += 16;
        while (k < max) {
            char *end = NULL;
            double v = strtod(p, &end);
            if (end == p)
                break;
            vals[k++] = v;
            p = end;
            while (*p == ' ' || *p == ',')
                p++;
        }
    }
    ddts_free(text);
    return k;
}

/*
 * Failures and reassignments: the server's warnings about lost clients and
 * reassigned shares are also appended to WORKDIR/NAME/events.log (which
 * survives a restart) and listed at the end of summary.txt.
 */
struct event_log {
    struct ddts_logger inner;
    char path[4200];
};

static void event_sink(void *userdata, enum ddts_log_level level, const char *msg)
{
    struct event_log *ev = userdata;
    if (ev->inner.fn != NULL)
        ev->inner.fn(ev->inner.userdata, level, msg);
    if (level < DDTS_LOG_WARN ||
        (strstr(msg, "marked lost") == NULL && strstr(msg, "reassigned") == NULL &&
         strstr(msg, "left holding") == NULL && strstr(msg, "failed:") == NULL))
        return;
    char line[1200], stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ", &tm);
    int len = snprintf(line, sizeof line, "%s %s\n", stamp, msg);
    if (len <= 0)
        return;
    if ((size_t)len >= sizeof line)
        len = (int)sizeof line - 1;
    int fd = open(ev->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    ssize_t w = write(fd, line, (size_t)len); /* one short append: not interleaved */
    (void)w;
    close(fd);
}

/* Appends events.log to summary.txt (rewritten atomically). */
static void summary_events(const char *job_dir, const struct ddts_logger *log)
{
    char path[4200], spath[4200];
    snprintf(path, sizeof path, "%s/events.log", job_dir);
    snprintf(spath, sizeof spath, "%s/summary.txt", job_dir);
    char *ev = NULL, *sum = NULL, *both = NULL;
    size_t n_ev = 0, n_sum = 0;
    struct ddts_error err;
    if (ddts_read_file(path, 16 << 20, &ev, &n_ev, NULL) != DDTS_OK || n_ev == 0 ||
        ddts_read_file(spath, 16 << 20, &sum, &n_sum, NULL) != DDTS_OK)
        goto out;
    static const char head[] = "\nFailures and reassignments (events.log):\n";
    both = ddts_malloc(n_sum + sizeof head + n_ev);
    if (both == NULL)
        goto out;
    memcpy(both, sum, n_sum);
    memcpy(both + n_sum, head, sizeof head - 1);
    memcpy(both + n_sum + sizeof head - 1, ev, n_ev);
    if (ddts_write_file_atomic(spath, both, n_sum + sizeof head - 1 + n_ev, &err) != DDTS_OK)
        ddts_log(log, DDTS_LOG_WARN, "summary.txt: %s", err.msg);
out:
    ddts_free(ev);
    ddts_free(sum);
    ddts_free(both);
}

/* The job's report: per-client final figures, combined plot, summary.json/.txt. */
static void write_report(const struct ddts_job *job, const char *job_dir, double started,
                         double loss, double accuracy, const char *global_rel,
                         const struct ddts_csv_history *global_curve, const struct ddts_logger *log)
{
    struct ddts_error err;
    char clients_dir[4096];
    snprintf(clients_dir, sizeof clients_dir, "%s/clients", job_dir);
    enum { MAXC = DDTS_MAX_CLIENTS };
    char **names = ddts_calloc(MAXC, sizeof *names);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): sizeof *p of a pointer array is the idiom */
    struct ddts_csv_history **hist = ddts_calloc(MAXC, sizeof *hist);
    struct ddts_summary_client *rows = ddts_calloc(MAXC, sizeof *rows);
    struct ddts_metric *finals = ddts_calloc((size_t)MAXC * 8, sizeof *finals);
    char **dirs = ddts_calloc(MAXC, sizeof *dirs);
    size_t n = 0;
    if (names == NULL || hist == NULL || rows == NULL || finals == NULL || dirs == NULL)
        goto out;
    DIR *d = opendir(clients_dir);
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL && n < MAXC) {
        if (e->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s/history.csv", clients_dir, e->d_name);
        if (access(path, R_OK) != 0)
            snprintf(path, sizeof path, "%s/%s/fold_1/history.csv", clients_dir, e->d_name);
        struct ddts_csv_history *h = NULL;
        if (ddts_csv_history_read(path, &h, &err) != DDTS_OK)
            continue;
        names[n] = ddts_strdup(e->d_name);
        dirs[n] = ddts_malloc(strlen(e->d_name) + 16);
        if (names[n] == NULL || dirs[n] == NULL) {
            ddts_csv_history_destroy(h);
            break;
        }
        snprintf(dirs[n], strlen(e->d_name) + 16, "clients/%s", e->d_name);
        hist[n] = h;
        struct ddts_summary_client *r = &rows[n];
        r->name = names[n];
        r->state = "done";
        r->samples = client_samples(clients_dir, e->d_name);
        r->epochs_done = (int)h->n_epochs;
        r->final = &finals[n * 8];
        r->dir = dirs[n];
        for (size_t kcol = 0; kcol < h->n_keys && kcol < 8 && h->n_epochs > 0; kcol++) {
            finals[n * 8 + kcol].name = h->keys[kcol];
            finals[n * 8 + kcol].value = h->values[(h->n_epochs - 1) * h->n_keys + kcol];
            r->n_final++;
        }
        n++;
    }
    if (d != NULL)
        closedir(d);
    char plot[4096];
    snprintf(plot, sizeof plot, "%s/report.png", job_dir);
    int have_plot =
        n > 0 && ddts_plot_combined(plot, job->name, (const struct ddts_csv_history *const *)hist,
                                    (const char *const *)names, n, global_curve, &err) == DDTS_OK;
    if (n > 0 && !have_plot)
        ddts_log(log, DDTS_LOG_WARN, "combined plot: %s", err.msg);
    char *settings = NULL;
    if (ddts_job_to_json(job, DDTS_JOB_JSON_ALL | DDTS_JOB_JSON_COMPACT, &settings, &err) !=
        DDTS_OK)
        settings = NULL;
    /* k-fold: per fold, the sample-weighted mean of the clients' fold values
     * (each client's validation fold, as its summary.json gives them); then
     * the mean and the standard deviation over the folds. */
    struct ddts_metric global[4] = {{"test_loss", loss}, {"test_accuracy", accuracy}};
    size_t n_global = isfinite(accuracy) ? 2 : (isfinite(loss) ? 1 : 0);
    if (job->method == DDTS_JOB_KFOLD && job->folds > 0 && job->folds <= 1000) {
        double *sum = ddts_calloc((size_t)job->folds, sizeof *sum);
        double *vals = ddts_calloc((size_t)job->folds, sizeof *vals);
        double weight = 0;
        for (size_t c = 0; sum != NULL && vals != NULL && c < n; c++) {
            if (client_folds(clients_dir, names[c], vals, job->folds) != job->folds)
                continue;
            double w = rows[c].samples > 0 ? (double)rows[c].samples : 1;
            for (int f = 0; f < job->folds; f++)
                sum[f] += w * vals[f];
            weight += w;
        }
        if (weight > 0 && sum != NULL) {
            double mean = 0, var = 0;
            for (int f = 0; f < job->folds; f++)
                mean += sum[f] / weight;
            mean /= job->folds;
            for (int f = 0; f < job->folds; f++)
                var += (sum[f] / weight - mean) * (sum[f] / weight - mean);
            global[n_global++] = (struct ddts_metric){"kfold_mean", mean};
            global[n_global++] = (struct ddts_metric){"kfold_std", sqrt(var / job->folds)};
            ddts_log(log, DDTS_LOG_INFO, "%d-fold result over the clients: %.4f +/- %.4f",
                     job->folds, mean, sqrt(var / job->folds));
        }
        ddts_free(sum);
        ddts_free(vals);
    }
    struct ddts_summary s = {
        .job = job->name,
        .status = "ok",
        .settings_json = settings,
        .seed = job->seed,
        .started = started,
        .finished = (double)time(NULL),
        .clients = rows,
        .n_clients = n,
        .global_final = global,
        .n_global_final = n_global,
        .global_model = global_rel,
        .plot = have_plot ? "report.png" : NULL,
    };
    char path[4096];
    snprintf(path, sizeof path, "%s/summary.json", job_dir);
    if (ddts_summary_write_json(path, &s, &err) != DDTS_OK)
        ddts_log(log, DDTS_LOG_WARN, "summary.json: %s", err.msg);
    snprintf(path, sizeof path, "%s/summary.txt", job_dir);
    if (ddts_summary_write_text(path, &s, &err) != DDTS_OK)
        ddts_log(log, DDTS_LOG_WARN, "summary.txt: %s", err.msg);
    else
        summary_events(job_dir, log);
    ddts_free(settings);
out:
    for (size_t i = 0; i < n; i++) {
        ddts_free(names[i]);
        ddts_free(dirs[i]);
        ddts_csv_history_destroy(hist[i]);
    }
    ddts_free(names);
    ddts_free(dirs);
    ddts_free(hist);
    ddts_free(rows);
    ddts_free(finals);
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
    struct ddts_logger log = cli_logger(DDTS_LOG_INFO);
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_dash *dash = NULL;
    if (dash_listen != NULL) {
        rc = cli_dashboard_start_job("server", dash_listen, &job, &dash);
        if (rc != CLI_OK)
            return rc;
    }
    struct ddts_passphrase *pw = NULL;
    enum ddts_status st = DDTS_OK;
    if (typed[0] != '\0') {
        st = ddts_passphrase_create(typed, strlen(typed), &pw, &err);
        ddts_secure_wipe(typed, sizeof typed);
        if (st != DDTS_OK) {
            ddts_dash_destroy(dash);
            return cli_fail("server", &err);
        }
    } else {
        rc = cli_passphrase("server", job.passphrase_file[0] ? job.passphrase_file : NULL, 1, &pw);
        if (rc != CLI_OK) {
            ddts_dash_destroy(dash);
            return rc;
        }
    }
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGPIPE, SIG_IGN);
    double started = (double)time(NULL);

    struct ddts_array *x = NULL, *y = NULL, *xt = NULL, *yt = NULL;
    struct ddts_stats *stats = NULL;
    float *weights = NULL;
    char *settings = NULL;
    char job_dir[4096], shards_dir[4096], model_path[4096] = "";
    snprintf(job_dir, sizeof job_dir, "%s/%s", job.workdir, job.name);
    /* Log lines go through the live view, which keeps its table below them. */
    struct cli_live *live = cli_live_create(stderr, &log);
    struct event_log events = {.inner = live != NULL ? cli_live_logger(live) : log};
    /* Every line also goes to the web page's event log. */
    struct cli_dash_tee tee;
    if (dash != NULL)
        events.inner = cli_dashboard_logger(&tee, &events.inner, dash);
    snprintf(events.path, sizeof events.path, "%s/events.log", job_dir);
    log.fn = event_sink;
    log.userdata = &events;
    snprintf(shards_dir, sizeof shards_dir, "%s/shards", job_dir);
    if (!job.collect) {
        /* cli_job_complete already turned a --model folder into its one model file. */
        snprintf(model_path, sizeof model_path, "%s", job.model);
        ddts_log(&log, DDTS_LOG_INFO, "job %s: model %s, %d clients, seed %llu", job.name,
                 model_path, job.clients, (unsigned long long)job.seed);
        if (job.data != DDTS_JOB_DATA_CLIENT) {
            st = cli_load_job_data(&job, &x, &y, &xt, &yt, &err);
            if (st != DDTS_OK)
                goto out;
            if ((size_t)x->shape[0] < (size_t)job.clients) {
                st = ddts_error_set(&err, DDTS_EINVAL, "--clients %d: only %lld samples",
                                    job.clients, (long long)x->shape[0]);
                goto out;
            }
            st = ddts_stats_create(ddts_array_sample_count(x), &stats, &err);
            if (st == DDTS_OK)
                st = ddts_stats_update(stats, x, NULL, (size_t)x->shape[0], &err);
            if (st != DDTS_OK)
                goto out;
            char ready[4096];
            snprintf(ready, sizeof ready, "%s/READY", shards_dir);
            if (access(ready, F_OK) != 0) {
                ddts_log(&log, DDTS_LOG_INFO, "splitting %lld samples into %d shares",
                         (long long)x->shape[0], job.clients);
                st = prepare_shards(&job, shards_dir, x, y, xt, yt, stats, &err);
                if (st == DDTS_OK)
                    st = ddts_write_file_atomic(ready, "", 0, &err);
                if (st != DDTS_OK)
                    goto out;
            } else {
                ddts_log(&log, DDTS_LOG_INFO, "resuming: shares already in %s", shards_dir);
            }
        }
    }
    st = ddts_job_to_json(&job, DDTS_JOB_JSON_FOR_CLIENT | DDTS_JOB_JSON_COMPACT, &settings, &err);
    if (st != DDTS_OK)
        goto out;
    struct round_saver saver = {.every = 0, .log = &log};
    snprintf(saver.dir, sizeof saver.dir, "%s/global", job_dir);
    if (!job.collect && model_path[0])
        saver.every = rounds_per_epoch(&job, read_min_share(shards_dir));
    if (saver.every > 0 && ddts_mkdir_p(saver.dir, NULL) != DDTS_OK)
        saver.every = 0;
    struct server_ctx ctx = {&saver, live, dash};
    struct ddts_server_config cfg = {
        .host = job.host,
        .port = (uint16_t)job.port,
        .passphrase = pw,
        .n_clients = job.collect && job.clients <= 0 ? 1 : (size_t)job.clients,
        .workdir = job.workdir,
        .job = job.name,
        .ban_after = (unsigned)job.ban_after,
        .client_timeout_s = job.client_timeout,
        .io_timeout_s = job.io_timeout,
        .logger = &log,
        .settings_json = settings,
        .model_path = model_path[0] ? model_path : NULL,
        .shards_dir = dir_exists(shards_dir) ? shards_dir : NULL,
        .sync = (enum ddts_sync_mode)job.sync,
        .sync_steps = (uint32_t)job.sync_steps,
        .keep_serving = job.keep_serving,
        .should_stop = should_stop,
        .on_round = on_round,
        .on_client = on_client,
        .userdata = &ctx,
    };
    st = ddts_server_run(&cfg, &err);
    cli_live_finish(live);
    if (st != DDTS_OK)
        goto out;
    ddts_dash_set_status(dash, "finishing");

    /* The global model and the report. */
    double loss = NAN, accuracy = NAN;
    int have_global = 0;
    char wpath[4096], gpath[4096];
    snprintf(wpath, sizeof wpath, "%s/global/weights.f32", job_dir);
    /* With a normalizer the model gains a Normalization layer and is written as a
     * new tf.keras 2.x .h5 file (src/train/surgery.c); otherwise in its source format. */
    int keep_keras = strstr(model_path, ".keras") != NULL && job.normalizer == DDTS_JOB_NORM_NONE;
    snprintf(gpath, sizeof gpath, "%s/global/model%s", job_dir, keep_keras ? ".keras" : ".h5");
    if (model_path[0] && access(wpath, R_OK) == 0) {
        size_t n_w = 0;
        st = read_f32(wpath, &weights, &n_w, &err);
        if (st == DDTS_OK) {
            struct ddts_global_request g = {&job, model_path, weights, n_w, stats, xt, yt, gpath};
            st = ddts_train_global(&g, &loss, &accuracy, &err);
        }
        if (st != DDTS_OK)
            goto out;
        have_global = 1;
        ddts_log(&log, DDTS_LOG_INFO, "global model: %s", gpath);
        if (isfinite(accuracy))
            ddts_log(&log, DDTS_LOG_INFO,
                     "global model on the test data: loss %.4f, accuracy "
                     "%.4f",
                     loss, accuracy);
    }
    struct ddts_csv_history *curve =
        have_global ? global_history(&job, job_dir, model_path, stats, xt, yt, &log) : NULL;
    write_report(&job, job_dir, started, loss, accuracy,
                 have_global ? strstr(gpath, "global/model") : NULL, curve, &log);
    ddts_csv_history_destroy(curve);
    printf("job: %s\nresults: %s\n", job.name, job_dir);
    if (have_global)
        printf("global model: %s\n", gpath);
    if (isfinite(accuracy))
        printf("test accuracy: %.4f\ntest loss: %.4f\n", accuracy, loss);
out:
    cli_live_finish(live);
    ddts_free(weights);
    ddts_free(settings);
    ddts_stats_destroy(stats);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_array_destroy(xt);
    ddts_array_destroy(yt);
    ddts_passphrase_destroy(pw);
    int rc_out = st == DDTS_OK ? CLI_OK : cli_fail("server", &err);
    ddts_dash_destroy(dash);
    cli_live_destroy(live);
    return rc_out;
}
