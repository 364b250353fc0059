/*
 * The job's report: the global model's curve (global/history.csv), the
 * clients' final figures, the combined plot, summary.json and summary.txt.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ddts/fs.h"
#include "ddts/trainer.h"
#include "serve.h"

/* "samples" of a client's summary.json (written by the trainer), or -1. */
static int64_t client_samples(const char *clients_dir, const char *name)
{
    char path[4400];
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

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- the global curve while the job runs ---------------------------------- */

/* The figures of round R's snapshot on the test data (*loss finite on success). */
static enum ddts_status eval_round(const struct ddts_serve *sv, uint64_t round, double *loss,
                                   double *acc, struct ddts_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/global/round_%06llu.f32", sv->job_dir,
             (unsigned long long)round);
    float *w = NULL;
    size_t n_w = 0;
    *loss = *acc = NAN;
    enum ddts_status st = ddts__serve_read_f32(path, &w, &n_w, err);
    if (st == DDTS_OK) {
        struct ddts_global_request g = {&sv->job,   sv->model_path, w,    n_w, sv->stats,
                                        sv->x_test, sv->y_test,     NULL, NULL};
        st = ddts_train_global(&g, loss, acc, err);
    }
    ddts_free(w);
    if (st == DDTS_OK && !isfinite(*loss))
        st = ddts_error_set(err, DDTS_ENUMERIC, "%s: the loss is not finite", path);
    return st;
}

static void *eval_main(void *arg)
{
    struct ddts_serve *sv = arg;
    pthread_mutex_lock(&sv->mu);
    for (;;) {
        while (sv->n_eval_queue == 0 && !sv->eval_stop)
            pthread_cond_wait(&sv->eval_cv, &sv->mu);
        if (sv->eval_stop)
            break;
        uint64_t round = sv->eval_queue[0];
        memmove(sv->eval_queue, sv->eval_queue + 1, --sv->n_eval_queue * sizeof *sv->eval_queue);
        pthread_mutex_unlock(&sv->mu);
        double loss, acc;
        struct ddts_error err;
        ddts_error_clear(&err);
        enum ddts_status st = eval_round(sv, round, &loss, &acc, &err);
        if (st != DDTS_OK)
            ddts_log(&sv->log, DDTS_LOG_WARN, "global curve (live): %s", err.msg);
        pthread_mutex_lock(&sv->mu);
        if (st != DDTS_OK)
            continue; /* ddts__serve_global_history tries again after the job */
        if (sv->n_global_rows == sv->cap_global_rows) {
            size_t cap = sv->cap_global_rows ? 2 * sv->cap_global_rows : 64;
            struct ddts__serve_global_row *bigger =
                ddts_realloc(sv->global_rows, cap * sizeof *bigger);
            if (bigger == NULL)
                continue;
            sv->global_rows = bigger;
            sv->cap_global_rows = cap;
        }
        sv->global_rows[sv->n_global_rows++] = (struct ddts__serve_global_row){round, loss, acc};
        const struct ddts_serve_hooks *h = sv->hooks;
        pthread_mutex_unlock(&sv->mu);
        if (h->on_global != NULL)
            h->on_global(h->userdata, round / sv->rounds_per_epoch, loss, acc);
        pthread_mutex_lock(&sv->mu);
    }
    pthread_mutex_unlock(&sv->mu);
    return NULL;
}

void ddts__serve_eval_start(struct ddts_serve *sv)
{
    if (sv->hooks->on_global == NULL || sv->x_test == NULL || sv->y_test == NULL ||
        sv->model_path[0] == '\0' || sv->rounds_per_epoch == 0)
        return;
    sv->eval_stop = false;
    sv->eval_running = pthread_create(&sv->eval_thread, NULL, eval_main, sv) == 0;
}

void ddts__serve_eval_push(struct ddts_serve *sv, uint64_t round)
{
    pthread_mutex_lock(&sv->mu);
    if (sv->eval_running && sv->n_eval_queue == sv->cap_eval_queue) {
        size_t cap = sv->cap_eval_queue ? 2 * sv->cap_eval_queue : 64;
        uint64_t *bigger = ddts_realloc(sv->eval_queue, cap * sizeof *bigger);
        if (bigger != NULL) {
            sv->eval_queue = bigger;
            sv->cap_eval_queue = cap;
        }
    }
    /* Without room the round waits for the report (ddts__serve_global_history). */
    if (sv->eval_running && sv->n_eval_queue < sv->cap_eval_queue) {
        sv->eval_queue[sv->n_eval_queue++] = round;
        pthread_cond_signal(&sv->eval_cv);
    }
    pthread_mutex_unlock(&sv->mu);
}

void ddts__serve_eval_stop(struct ddts_serve *sv)
{
    pthread_mutex_lock(&sv->mu);
    bool running = sv->eval_running;
    sv->eval_stop = true;
    sv->n_eval_queue = 0;
    pthread_cond_broadcast(&sv->eval_cv);
    pthread_mutex_unlock(&sv->mu);
    if (running)
        pthread_join(sv->eval_thread, NULL);
    sv->eval_running = false;
}

/* Round R's figures if the live thread evaluated them (it has stopped: no lock). */
static bool evaluated(const struct ddts_serve *sv, uint64_t round, double *loss, double *acc)
{
    for (size_t i = 0; i < sv->n_global_rows; i++)
        if (sv->global_rows[i].round == round) {
            *loss = sv->global_rows[i].loss;
            *acc = sv->global_rows[i].accuracy;
            return true;
        }
    return false;
}

/*
 * Evaluates every global/round_*.f32 on the test data (or takes the figures
 * the live thread found), writes
 * global/history.csv (epoch,val_loss,val_accuracy, one row per epoch-end
 * round) and returns it read back, or NULL.
 */
struct ddts_csv_history *ddts__serve_global_history(const struct ddts_serve *sv)
{
    const char *job_dir = sv->job_dir, *model_path = sv->model_path;
    const struct ddts_array *xt = sv->x_test, *yt = sv->y_test;
    const struct ddts_logger *log = &sv->log;
    enum { MAXR = 10000 };
    if (xt == NULL || yt == NULL || model_path[0] == 0)
        return NULL;
    char dir[4300];
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
        double loss = NAN, acc = NAN;
        if (!evaluated(sv, rounds[i], &loss, &acc) &&
            eval_round(sv, rounds[i], &loss, &acc, &err) != DDTS_OK) {
            ddts_log(log, DDTS_LOG_WARN, "global curve: %s", err.msg);
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
    char path[4400];
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
static int client_folds(const char *clients_dir, const char *name, double *vals, int max,
                        char *metric, size_t metric_cap)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/summary.json", clients_dir, name);
    char *text = NULL;
    size_t n = 0;
    if (ddts_read_file(path, 1 << 20, &text, &n, NULL) != DDTS_OK)
        return 0;
    int k = 0;
    const char *m = strstr(text, "\"fold_metric\": \"");
    if (m != NULL && metric_cap > 0) {
        m += 16;
        size_t len = strcspn(m, "\"");
        snprintf(metric, metric_cap, "%.*s", (int)(len < metric_cap ? len : metric_cap - 1), m);
    }
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

/* The clients whose history.csv is in clients/ (at most DDTS_MAX_CLIENTS). */
struct client_table {
    char **names;
    char **errors; /* why its training failed, or NULL */
    char **dirs;   /* "clients/<name>" */
    struct ddts_csv_history **hist;
    struct ddts_summary_client *rows;
    struct ddts_metric *finals; /* 8 per client */
    size_t n;
};

enum { MAXC = DDTS_MAX_CLIENTS, MAX_FINALS = 8 };

static void table_free(struct client_table *t)
{
    for (size_t i = 0; i < t->n; i++) {
        ddts_free(t->names[i]);
        ddts_free(t->dirs[i]);
        ddts_free(t->errors[i]);
        ddts_csv_history_destroy(t->hist[i]);
    }
    ddts_free(t->errors);
    ddts_free(t->names);
    ddts_free(t->dirs);
    ddts_free(t->hist);
    ddts_free(t->rows);
    ddts_free(t->finals);
}

/*
 * Why the client in clients/<name> failed: its error.log, else what it told
 * the server in this run, else the missing history; NULL when it did not.
 */
static char *failure_of(const struct ddts_serve *sv, const char *clients_dir, const char *name,
                        const struct ddts_csv_history *h)
{
    char dir[4400], reason[DDTS_ERROR_MSG_MAX];
    snprintf(dir, sizeof dir, "%s/%s", clients_dir, name);
    if (ddts_error_log_reason(dir, reason, sizeof reason))
        return ddts_strdup(reason);
    for (size_t i = 0; i < sv->n_failures; i++)
        if (strncmp(name, sv->failures[i].name, strlen(sv->failures[i].name)) == 0)
            return ddts_strdup(sv->failures[i].msg);
    return h == NULL ? ddts_strdup("no results (no history.csv)") : NULL;
}

/* Adds client `name` (its history `h`, taken; NULL when it has none) to the table; 0 on
 * out of memory. */
static int table_add(struct client_table *t, const struct ddts_serve *sv, const char *clients_dir,
                     const char *name, struct ddts_csv_history *h)
{
    size_t n = t->n;
    t->names[n] = ddts_strdup(name);
    t->dirs[n] = ddts_malloc(strlen(name) + 16);
    if (t->names[n] == NULL || t->dirs[n] == NULL) {
        ddts_free(t->names[n]);
        ddts_free(t->dirs[n]);
        ddts_csv_history_destroy(h);
        return 0;
    }
    snprintf(t->dirs[n], strlen(name) + 16, "clients/%s", name);
    t->hist[n] = h;
    t->errors[n] = failure_of(sv, clients_dir, name, h);
    struct ddts_summary_client *r = &t->rows[n];
    r->name = t->names[n];
    r->state = t->errors[n] != NULL ? "failed" : "done";
    r->error = t->errors[n];
    r->samples = client_samples(clients_dir, name);
    r->epochs_done = h != NULL ? (int)h->n_epochs : 0;
    r->final = &t->finals[n * MAX_FINALS];
    r->dir = t->dirs[n];
    for (size_t k = 0; h != NULL && k < h->n_keys && k < MAX_FINALS && h->n_epochs > 0; k++) {
        t->finals[n * MAX_FINALS + k].name = h->keys[k];
        t->finals[n * MAX_FINALS + k].value = h->values[(h->n_epochs - 1) * h->n_keys + k];
        r->n_final++;
    }
    t->n++;
    return 1;
}

/* Reads every client's history.csv (fit) or fold_1/history.csv (k-fold). */
static int table_read(struct client_table *t, const struct ddts_serve *sv, const char *clients_dir)
{
    memset(t, 0, sizeof *t);
    t->names = ddts_calloc(MAXC, sizeof *t->names);
    t->errors = ddts_calloc(MAXC, sizeof *t->errors);
    t->dirs = ddts_calloc(MAXC, sizeof *t->dirs);
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): sizeof *p of a pointer array is the idiom */
    t->hist = ddts_calloc(MAXC, sizeof *t->hist);
    t->rows = ddts_calloc(MAXC, sizeof *t->rows);
    t->finals = ddts_calloc((size_t)MAXC * MAX_FINALS, sizeof *t->finals);
    if (t->names == NULL || t->hist == NULL || t->rows == NULL || t->finals == NULL ||
        t->dirs == NULL || t->errors == NULL)
        return 0;
    DIR *d = opendir(clients_dir);
    struct dirent *e;
    struct ddts_error err;
    while (d != NULL && (e = readdir(d)) != NULL && t->n < MAXC) {
        if (e->d_name[0] == '.')
            continue;
        char path[4400];
        if (ddts_format(path, sizeof path, &err, "%s/%s/history.csv", clients_dir, e->d_name) !=
            DDTS_OK)
            continue;
        if (access(path, R_OK) != 0 &&
            ddts_format(path, sizeof path, &err, "%s/%s/fold_1/history.csv", clients_dir,
                        e->d_name) != DDTS_OK)
            continue;
        struct ddts_csv_history *h = NULL;
        if (ddts_csv_history_read(path, &h, &err) != DDTS_OK)
            h = NULL;
        if (!table_add(t, sv, clients_dir, e->d_name, h))
            break;
    }
    if (d != NULL)
        closedir(d);
    return 1;
}

/* The global figures of summary.json: names kept here (the metrics borrow them). */
struct global_figures {
    struct ddts_metric m[DDTS_LOGS_MAX + 2 + 2 * 16];
    char names[DDTS_LOGS_MAX + 2 + 2 * 16][64];
    size_t n;
};

static void add_figure(struct global_figures *g, const char *prefix, const char *name, double v)
{
    if (g->n >= sizeof g->m / sizeof g->m[0])
        return;
    snprintf(g->names[g->n], sizeof g->names[g->n], "%s%s", prefix, name);
    g->m[g->n] = (struct ddts_metric){g->names[g->n], v};
    g->n++;
}

/*
 * k-fold: per fold, the sample-weighted mean of the clients' fold values
 * (each client's validation fold, as its summary.json gives them, with the
 * metric it names); then the mean and the standard deviation over the folds.
 * Figures "fold_<i>_<metric>" (up to 16 folds), "kfold_mean_<metric>" and
 * "kfold_std_<metric>".
 */
static void kfold_figures(const struct ddts_serve *sv, const char *clients_dir,
                          const struct client_table *t, struct global_figures *g)
{
    const struct ddts_job *job = &sv->job;
    if (job->method != DDTS_JOB_KFOLD || job->folds <= 0 || job->folds > 1000)
        return;
    double *sum = ddts_calloc((size_t)job->folds, sizeof *sum);
    double *vals = ddts_calloc((size_t)job->folds, sizeof *vals);
    double weight = 0;
    char metric[32] = "val_loss";
    for (size_t c = 0; sum != NULL && vals != NULL && c < t->n; c++) {
        if (client_folds(clients_dir, t->names[c], vals, job->folds, metric, sizeof metric) !=
            job->folds)
            continue;
        double w = t->rows[c].samples > 0 ? (double)t->rows[c].samples : 1;
        for (int f = 0; f < job->folds; f++)
            sum[f] += w * vals[f];
        weight += w;
    }
    if (weight > 0 && sum != NULL) {
        double mean = 0, var = 0;
        for (int f = 0; f < job->folds; f++) {
            mean += sum[f] / weight;
            if (f < 16) {
                char prefix[32];
                snprintf(prefix, sizeof prefix, "fold_%d_", f + 1);
                add_figure(g, prefix, metric, sum[f] / weight);
            }
        }
        mean /= job->folds;
        for (int f = 0; f < job->folds; f++)
            var += (sum[f] / weight - mean) * (sum[f] / weight - mean);
        add_figure(g, "kfold_mean_", metric, mean);
        add_figure(g, "kfold_std_", metric, sqrt(var / job->folds));
        ddts_log(&sv->log, DDTS_LOG_INFO, "%d-fold %s over the clients: %.4f +/- %.4f", job->folds,
                 metric, mean, sqrt(var / job->folds));
    }
    ddts_free(sum);
    ddts_free(vals);
}

/* The combined plot of the clients that have a history (and the global curve). */
static int write_plot(const struct ddts_serve *sv, const struct client_table *t,
                      const struct ddts_csv_history *curve)
{
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): sizeof *p of a pointer array is the idiom */
    const struct ddts_csv_history **hist = ddts_calloc(t->n ? t->n : 1, sizeof *hist);
    const char **names = ddts_calloc(t->n ? t->n : 1, sizeof *names);
    size_t n = 0;
    for (size_t i = 0; hist != NULL && names != NULL && i < t->n; i++) {
        if (t->hist[i] == NULL)
            continue;
        hist[n] = t->hist[i];
        names[n++] = t->names[i];
    }
    char plot[4200];
    snprintf(plot, sizeof plot, "%s/report.png", sv->job_dir);
    struct ddts_error err;
    int ok =
        n > 0 && ddts_plot_combined(plot, sv->job.name, hist, names, n, curve, &err) == DDTS_OK;
    if (n > 0 && !ok)
        ddts_log(&sv->log, DDTS_LOG_WARN, "combined plot: %s", err.msg);
    ddts_free(hist);
    ddts_free(names);
    return ok;
}

/* The job's report: per-client final figures, combined plot, summary.json/.txt. */
void ddts__serve_write_summary(struct ddts_serve *sv, double loss, double accuracy,
                               const char *global_rel, const struct ddts_csv_history *curve,
                               const char *stopped, size_t *n_failed)
{
    const struct ddts_job *job = &sv->job;
    const struct ddts_logger *log = &sv->log;
    struct ddts_error err;
    char clients_dir[4200];
    snprintf(clients_dir, sizeof clients_dir, "%s/clients", sv->job_dir);
    struct client_table t;
    *n_failed = 0;
    if (!table_read(&t, sv, clients_dir))
        goto out;
    size_t n_ok = 0;
    for (size_t i = 0; i < t.n; i++)
        n_ok += t.errors[i] == NULL;
    *n_failed = t.n - n_ok;
    int have_plot = write_plot(sv, &t, curve);
    char *settings = NULL;
    if (ddts_job_to_json(job, DDTS_JOB_JSON_ALL | DDTS_JOB_JSON_COMPACT, &settings, &err) !=
        DDTS_OK)
        settings = NULL;
    /* Every figure of the global model on the test data (loss, accuracy, mae, ...). */
    struct global_figures g = {.n = 0};
    for (size_t i = 0; i < sv->global_logs.n && i < DDTS_LOGS_MAX; i++)
        add_figure(&g, "test_", sv->global_logs.names[i], sv->global_logs.values[i]);
    if (sv->global_logs.n == 0 && isfinite(loss))
        add_figure(&g, "test_", "loss", loss);
    if (sv->global_logs.n == 0 && isfinite(accuracy))
        add_figure(&g, "test_", "accuracy", accuracy);
    kfold_figures(sv, clients_dir, &t, &g);
    char why[DDTS_ERROR_MSG_MAX + 64] = "";
    if (stopped != NULL)
        snprintf(why, sizeof why, "stopped: %s", stopped);
    else if (*n_failed > 0)
        snprintf(why, sizeof why, "%zu of %zu shares failed (see each client's error)", *n_failed,
                 t.n);
    struct ddts_summary s = {
        .job = job->name,
        .status = stopped != NULL || n_ok == 0 ? "failed" : (*n_failed > 0 ? "partial" : "ok"),
        .error = why[0] ? why : NULL,
        .settings_json = settings,
        .seed = job->seed,
        .started = sv->started,
        .finished = (double)time(NULL),
        .clients = t.rows,
        .n_clients = t.n,
        .global_final = g.m,
        .n_global_final = g.n,
        .global_model = global_rel,
        .plot = have_plot ? "report.png" : NULL,
    };
    char path[4400];
    snprintf(path, sizeof path, "%s/summary.json", sv->job_dir);
    if (ddts_summary_write_json(path, &s, &err) != DDTS_OK)
        ddts_log(log, DDTS_LOG_WARN, "summary.json: %s", err.msg);
    snprintf(path, sizeof path, "%s/summary.txt", sv->job_dir);
    if (ddts_summary_write_text(path, &s, &err) != DDTS_OK)
        ddts_log(log, DDTS_LOG_WARN, "summary.txt: %s", err.msg);
    else
        summary_events(sv->job_dir, log);
    ddts_free(settings);
out:
    table_free(&t);
}
