/*
 * A job served from this machine (include/ddts/serve.h): its settings, the
 * data it splits, and the steps `ddts server` takes — prepare, serve,
 * report. The network layer (src/net/server.c) does the serving; this
 * module gives it the files and turns its results into the job's report.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ddts/data.h"
#include "ddts/fs.h"
#include "ddts/keras.h"
#include "ddts/trainer.h"
#include "serve.h"

static enum ddts_status take_first(struct ddts_array **a, size_t n, struct ddts_error *err)
{
    if (*a == NULL || (*a)->rank == 0 || (size_t)(*a)->shape[0] <= n)
        return DDTS_OK;
    uint32_t *idx = ddts_mallocarray(n ? n : 1, sizeof(uint32_t));
    if (idx == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    struct ddts_array *out = NULL;
    enum ddts_status st = ddts_array_take(*a, idx, n, &out, err);
    ddts_free(idx);
    if (st != DDTS_OK)
        return st;
    ddts_array_destroy(*a);
    *a = out;
    return DDTS_OK;
}

static void release(struct ddts_array **a)
{
    if (a != NULL) {
        ddts_array_destroy(*a);
        *a = NULL;
    }
}

enum ddts_status ddts_serve_load_xy(const struct ddts_job *job, const char *dir,
                                    struct ddts_array **x, struct ddts_array **y,
                                    struct ddts_error *err)
{
    /* Training data: NaN and infinities are refused where they are (file,
     * row, column); --order XX needs no Y/. */
    struct ddts_xy_options o = {job->x_key[0] ? job->x_key : NULL,
                                job->y_key[0] ? job->y_key : NULL, DDTS_LOAD_FINITE,
                                job->order == DDTS_JOB_ORDER_XX};
    return ddts_data_load_xy_ex(dir, &o, x, y, err);
}

enum ddts_status ddts_serve_load_data(const struct ddts_job *job, struct ddts_array **x,
                                      struct ddts_array **y, struct ddts_array **x_test,
                                      struct ddts_array **y_test, struct ddts_error *err)
{
    *x = *y = NULL;
    if (x_test != NULL)
        *x_test = NULL;
    if (y_test != NULL)
        *y_test = NULL;
    enum ddts_status st;
    if (job->data == DDTS_JOB_DATA_KERAS) {
        struct ddts_keras_dataset_options ko = {job->num_words, job->skip_top, job->maxlen,
                                                job->label_mode[0] ? job->label_mode : NULL};
        st = ddts_keras_dataset_load_ex(job->keras_dataset, &ko, x, y, x_test, y_test, err);
    } else {
        st = ddts_serve_load_xy(job, job->dataset, x, y, err);
    }
    if (st == DDTS_OK && job->samples > 0 && *x != NULL && (*x)->rank > 0 &&
        job->samples > (*x)->shape[0])
        st = ddts_error_set(err, DDTS_EINVAL,
                            "--samples %lld: the data (%s) holds only %lld training samples",
                            (long long)job->samples,
                            job->data == DDTS_JOB_DATA_KERAS ? job->keras_dataset : job->dataset,
                            (long long)(*x)->shape[0]);
    if (st == DDTS_OK && job->samples > 0) {
        st = take_first(x, (size_t)job->samples, err);
        if (st == DDTS_OK)
            st = take_first(y, (size_t)job->samples, err);
    }
    if (st != DDTS_OK) {
        release(x);
        release(y);
        release(x_test);
        release(y_test);
    }
    return st;
}

const char *ddts_serve_phase_str(enum ddts_serve_phase p)
{
    static const char *const names[] = {"created",   "preparing", "ready", "serving",
                                        "reporting", "done",      "failed"};
    return (unsigned)p < sizeof names / sizeof names[0] ? names[p] : "?";
}

/*
 * Failures and reassignments: the server's warnings about lost clients,
 * reassigned shares and failed training are also appended to
 * WORKDIR/NAME/events.log (which survives a restart) and listed at the end
 * of summary.txt.
 */
void ddts__serve_event_sink(void *userdata, enum ddts_log_level level, const char *msg)
{
    struct ddts__serve_events *ev = userdata;
    if (ev->inner.fn != NULL && level >= ev->inner.min)
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

enum ddts_status ddts_serve_create(const struct ddts_job *job, const struct ddts_logger *logger,
                                   struct ddts_serve **out, struct ddts_error *err)
{
    *out = NULL;
    if (job->name[0] == '\0' || job->workdir[0] == '\0')
        return ddts_error_set(err, DDTS_EINVAL, "the job has no name or no work folder");
    if (!job->collect && job->model[0] == '\0')
        return ddts_error_set(err, DDTS_EINVAL, "the job has no model (--model)");
    struct ddts_job settled = *job;
    enum ddts_status st = job->collect ? ddts__serve_find_collect(&settled, err)
                                       : ddts__serve_check_rerun(&settled, err);
    if (st != DDTS_OK)
        return st;
    struct ddts_serve *sv = ddts_calloc(1, sizeof *sv);
    if (sv == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    sv->job = settled;
    job = &sv->job;
    snprintf(sv->job_dir, sizeof sv->job_dir, "%s/%s", job->workdir, job->name);
    snprintf(sv->shards_dir, sizeof sv->shards_dir, "%s/shards", sv->job_dir);
    if (!job->collect)
        snprintf(sv->model_path, sizeof sv->model_path, "%s", job->model);
    if (logger != NULL)
        sv->events.inner = *logger;
    snprintf(sv->events.path, sizeof sv->events.path, "%s/events.log", sv->job_dir);
    sv->log = (struct ddts_logger){ddts__serve_event_sink, &sv->events, DDTS_LOG_DEBUG};
    sv->started = (double)time(NULL);
    pthread_mutex_init(&sv->mu, NULL);
    pthread_cond_init(&sv->eval_cv, NULL);
    *out = sv;
    return DDTS_OK;
}

void ddts_serve_destroy(struct ddts_serve *sv)
{
    if (sv == NULL)
        return;
    ddts_array_destroy(sv->x);
    ddts_array_destroy(sv->y);
    ddts_array_destroy(sv->x_test);
    ddts_array_destroy(sv->y_test);
    ddts_stats_destroy(sv->stats);
    ddts__serve_rows_free(sv);
    ddts_free(sv->eval_queue);
    ddts_free(sv->global_rows);
    pthread_cond_destroy(&sv->eval_cv);
    pthread_mutex_destroy(&sv->mu);
    ddts_free(sv);
}

const char *ddts_serve_dir(const struct ddts_serve *sv)
{
    return sv->job_dir;
}

const struct ddts_job *ddts_serve_job(const struct ddts_serve *sv)
{
    return &sv->job;
}

static enum ddts_status prepare_data(struct ddts_serve *sv, struct ddts_error *err)
{
    const struct ddts_job *job = &sv->job;
    enum ddts_status st = ddts_serve_load_data(job, &sv->x, &sv->y, &sv->x_test, &sv->y_test, err);
    if (st != DDTS_OK)
        return st;
    if (sv->x == NULL || sv->x->rank == 0)
        return ddts_error_set(err, DDTS_EFORMAT, "the job's data has no samples");
    if ((size_t)sv->x->shape[0] < (size_t)job->clients)
        return ddts_error_set(err, DDTS_EINVAL, "--clients %d: only %lld samples", job->clients,
                              (long long)sv->x->shape[0]);
    st = ddts__serve_check(sv, err);
    if (st != DDTS_OK)
        return st;
    st = ddts_stats_create(ddts_array_sample_count(sv->x), &sv->stats, err);
    if (st == DDTS_OK)
        st = ddts_stats_update(sv->stats, sv->x, NULL, (size_t)sv->x->shape[0], err);
    if (st != DDTS_OK)
        return st;
    char ready[4300], state[4300];
    snprintf(ready, sizeof ready, "%s/READY", sv->shards_dir);
    snprintf(state, sizeof state, "%s/state", sv->job_dir);
    /* Shares are kept only for a job that was served (a failed start's are made again). */
    if (access(ready, F_OK) == 0 && access(state, F_OK) == 0) {
        ddts_log(&sv->log, DDTS_LOG_INFO, "resuming: shares already in %s", sv->shards_dir);
        return DDTS_OK;
    }
    ddts_log(&sv->log, DDTS_LOG_INFO, "splitting %lld samples into %d shares",
             (long long)sv->x->shape[0], job->clients);
    (void)unlink(ready);
    /* The shares are training data: their job folder is private before the first is
     * written (issue 14 item 15; the server makes it so again when it starts). */
    st = ddts_mkdir_p(sv->job_dir, err);
    if (st == DDTS_OK && chmod(sv->job_dir, 0700) != 0)
        st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot make the folder private",
                                  sv->job_dir);
    if (st == DDTS_OK)
        st = ddts__serve_write_shards(sv, err);
    if (st == DDTS_OK)
        st = ddts_write_file_atomic(ready, "", 0, err);
    return st;
}

enum ddts_status ddts_serve_prepare(struct ddts_serve *sv, struct ddts_error *err)
{
    const struct ddts_job *job = &sv->job;
    if (job->collect)
        return DDTS_OK;
    ddts__serve_set_phase(sv, DDTS_SERVE_PREPARING, NULL);
    ddts_log(&sv->log, DDTS_LOG_INFO, "job %s: model %s, %d clients, seed %llu", job->name,
             sv->model_path, job->clients, (unsigned long long)job->seed);
    enum ddts_status st = DDTS_OK;
    if (job->data != DDTS_JOB_DATA_CLIENT)
        st = prepare_data(sv, err);
    else
        st = ddts__serve_check(sv, err); /* the model alone: the data is the clients' */
    if (st == DDTS_OK) {
        sv->rounds_per_epoch =
            ddts__serve_rounds_per_epoch(job, sv->shards_dir, sv->x_test != NULL);
        char global[4200];
        snprintf(global, sizeof global, "%s/global", sv->job_dir);
        if (sv->rounds_per_epoch > 0 && ddts_mkdir_p(global, NULL) != DDTS_OK)
            sv->rounds_per_epoch = 0;
    }
    ddts__serve_set_phase(sv, st == DDTS_OK ? DDTS_SERVE_READY : DDTS_SERVE_FAILED,
                          st == DDTS_OK ? NULL : err);
    return st;
}

/* The global model's curve: the weights of every epoch-end round are saved as
 * global/round_<R>.f32 and evaluated on the test data while the job goes on
 * (report.c's thread; after the job, ddts__serve_global_history does the rest). */
static void on_round(void *userdata, uint64_t round, const float *w, size_t n)
{
    struct ddts_serve *sv = userdata;
    ddts__serve_round(sv);
    if (sv->hooks->on_round != NULL)
        sv->hooks->on_round(sv->hooks->userdata, round);
    if (sv->rounds_per_epoch == 0 || round % sv->rounds_per_epoch != 0)
        return;
    char path[4300];
    snprintf(path, sizeof path, "%s/global/round_%06llu.f32", sv->job_dir,
             (unsigned long long)round);
    struct ddts_error err;
    if (ddts_write_file_atomic(path, w, n * sizeof *w, &err) != DDTS_OK)
        ddts_log(&sv->log, DDTS_LOG_WARN, "global snapshot: %s", err.msg);
    else
        ddts__serve_eval_push(sv, round);
}

static void on_epoch(void *userdata, const struct ddts_server_client *c,
                     const struct ddts_wire_epoch *e)
{
    const struct ddts_serve *sv = userdata;
    if (sv->hooks->on_epoch != NULL)
        sv->hooks->on_epoch(sv->hooks->userdata, c, e);
}

static void on_client(void *userdata, const struct ddts_server_client *c)
{
    struct ddts_serve *sv = userdata;
    bool epoch_end = ddts__serve_on_client(sv, c);
    const struct ddts_serve_hooks *h = sv->hooks;
    if (h->on_client != NULL)
        h->on_client(h->userdata, c);
    if (epoch_end && h->on_epoch_end != NULL)
        h->on_epoch_end(h->userdata, c);
}

static int should_stop(void *userdata)
{
    struct ddts_serve *sv = userdata;
    if (ddts__serve_stopping(sv, NULL, 0))
        return 1;
    return sv->hooks->should_stop != NULL ? sv->hooks->should_stop(sv->hooks->userdata) : 0;
}

static void on_listening(void *userdata, uint16_t port)
{
    const struct ddts_serve *sv = userdata;
    if (!sv->job.collect)
        ddts__serve_record(sv); /* the job exists from now on */
    if (sv->hooks->on_listening != NULL)
        sv->hooks->on_listening(sv->hooks->userdata, port);
}

static int dir_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

enum ddts_status ddts_serve_run(struct ddts_serve *sv, const struct ddts_serve_hooks *hooks,
                                struct ddts_error *err)
{
    const struct ddts_job *job = &sv->job;
    char *settings = NULL;
    enum ddts_status st =
        ddts_job_to_json(job, DDTS_JOB_JSON_FOR_CLIENT | DDTS_JOB_JSON_COMPACT, &settings, err);
    if (st != DDTS_OK)
        return st;
    /* What no client may choose: the weight vector's length and each share's size. */
    size_t n_model_weights = 0;
    uint64_t *share_samples = NULL;
    if (!job->collect && sv->model_path[0] != '\0')
        st = ddts_train_count_weights(sv->model_path, &n_model_weights, err);
    if (st == DDTS_OK && !job->collect && sv->x != NULL)
        st = ddts__serve_share_sizes(job, (size_t)sv->x->shape[0], &share_samples, err);
    if (st != DDTS_OK) {
        ddts_free(settings);
        return st;
    }
    sv->hooks = hooks;
    struct ddts_server_config cfg = {
        .host = job->host,
        .port = (uint16_t)job->port,
        .any_port = hooks->any_port,
        .passphrase = hooks->passphrase,
        .n_clients = job->collect && job->clients <= 0 ? 1 : (size_t)job->clients,
        .workdir = job->workdir,
        .job = job->name,
        .ban_after = (unsigned)job->ban_after,
        .client_timeout_s = job->client_timeout,
        .io_timeout_s = job->io_timeout,
        .logger = &sv->log,
        .settings_json = settings,
        .model_path = sv->model_path[0] ? sv->model_path : NULL,
        .shards_dir = dir_exists(sv->shards_dir) ? sv->shards_dir : NULL,
        .n_weights = n_model_weights,
        .share_samples = share_samples,
        .sync = (enum ddts_sync_mode)job->sync,
        .sync_steps = (uint32_t)job->sync_steps,
        .keep_serving = job->keep_serving,
        .collect = job->collect,
        .should_stop = should_stop,
        .bound_port = hooks->bound_port,
        .on_listening = on_listening,
        .userdata = sv,
        .on_round = on_round,
        .on_client = on_client,
        .on_epoch = on_epoch,
    };
    ddts__serve_set_phase(sv, DDTS_SERVE_SERVING, NULL);
    ddts__serve_eval_start(sv);
    st = ddts_server_run(&cfg, err);
    ddts__serve_eval_stop(sv);
    ddts_free(share_samples);
    ddts_free(settings);
    char why[DDTS_ERROR_MSG_MAX];
    if (st == DDTS_ECANCELED && ddts__serve_stopping(sv, why, sizeof why)) {
        /* A deterministic failure: the report says so, the job ends with it. */
        size_t n_failed = 0;
        ddts__serve_write_summary(sv, NAN, NAN, NULL, NULL, why, &n_failed);
        st = ddts_error_set(err, DDTS_EINVAL, "the job is stopped: %s", why);
    }
    ddts__serve_set_phase(sv, st == DDTS_OK ? DDTS_SERVE_REPORTING : DDTS_SERVE_FAILED,
                          st == DDTS_OK ? NULL : err);
    return st;
}

/* Writes and evaluates global/model.* from global/weights.f32; *have: one was written. */
static enum ddts_status global_model(struct ddts_serve *sv, struct ddts_serve_result *out,
                                     int *have, struct ddts_error *err)
{
    const struct ddts_job *job = &sv->job;
    char wpath[4300];
    snprintf(wpath, sizeof wpath, "%s/global/weights.f32", sv->job_dir);
    *have = 0;
    if (sv->model_path[0] == '\0' || access(wpath, R_OK) != 0)
        return DDTS_OK;
    /* With a normalizer the model gains a Normalization layer and is written as a
     * new tf.keras 2.x .h5 file (src/train/surgery.c); otherwise in its source format. */
    int keep_keras =
        strstr(sv->model_path, ".keras") != NULL && job->normalizer == DDTS_JOB_NORM_NONE;
    enum ddts_status st =
        ddts_format(out->global_model, sizeof out->global_model, err, "%s/global/model%s",
                    sv->job_dir, keep_keras ? ".keras" : ".h5");
    if (st != DDTS_OK)
        return st;
    float *weights = NULL;
    size_t n_w = 0;
    st = ddts__serve_read_f32(wpath, &weights, &n_w, err);
    if (st == DDTS_OK) {
        struct ddts_global_request g = {.job = job,
                                        .model_path = sv->model_path,
                                        .weights = weights,
                                        .n_weights = n_w,
                                        .norm_stats = sv->stats,
                                        .x_test = sv->x_test,
                                        .y_test = sv->y_test,
                                        .out_path = out->global_model,
                                        .logs = &sv->global_logs};
        st = ddts_train_global(&g, &out->test_loss, &out->test_accuracy, err);
    }
    ddts_free(weights);
    if (st != DDTS_OK) {
        out->global_model[0] = '\0';
        return st;
    }
    *have = 1;
    ddts_log(&sv->log, DDTS_LOG_INFO, "global model: %s", out->global_model);
    if (isfinite(out->test_accuracy))
        ddts_log(&sv->log, DDTS_LOG_INFO, "global model on the test data: loss %.4f, accuracy %.4f",
                 out->test_loss, out->test_accuracy);
    return DDTS_OK;
}

enum ddts_status ddts_serve_report(struct ddts_serve *sv, struct ddts_serve_result *out,
                                   struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    snprintf(out->job_dir, sizeof out->job_dir, "%s", sv->job_dir);
    out->test_loss = out->test_accuracy = NAN;
    ddts__serve_set_phase(sv, DDTS_SERVE_REPORTING, NULL);
    int have = 0;
    enum ddts_status st = global_model(sv, out, &have, err);
    if (st != DDTS_OK) {
        ddts__serve_set_phase(sv, DDTS_SERVE_FAILED, err);
        return st;
    }
    struct ddts_csv_history *curve = have ? ddts__serve_global_history(sv) : NULL;
    out->n_shares = sv->job.clients > 0 ? (size_t)sv->job.clients : 0;
    ddts__serve_write_summary(sv, out->test_loss, out->test_accuracy,
                              have ? strstr(out->global_model, "global/model") : NULL, curve, NULL,
                              &out->n_failed);
    ddts_csv_history_destroy(curve);
    ddts__serve_set_phase(sv, DDTS_SERVE_DONE, NULL);
    return DDTS_OK;
}
