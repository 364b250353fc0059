/*
 * One training run of a job on one machine (ddts train, and each client's
 * share): load the Keras file, build the engine's model, normalise the data,
 * fit (or k-fold), synchronise through the exchange callback, and write the
 * results of SPEC §5.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ddts/fs.h"
#include "ddts/report.h"
#include "ddts/trainer.h"

/* The state of one run (or fold) shared with the engine's callbacks. */
struct run {
    const struct ddts_train_request *req;
    struct ddts_model *model;
    struct ddts_history_writer *history;
    struct ddts_textlog *textlog;
    int epochs;
    int fold, n_folds; /* 1-based fold, 0 for fit */
    size_t n_train;
    size_t last_samples_done; /* samples_done at the previous batch */
    uint64_t since_sync;      /* samples trained since the last exchange */
    double epoch_t0, last_draw;
    int tty;
    enum ddts_status status; /* a callback's failure, reported after fit */
    struct ddts_error error;
    double epoch_start; /* the end of the previous epoch's callback (or fit's start) */
    double train_end;   /* the end of the epoch's last training step */
    double epoch_start_cpu, train_end_cpu; /* the same in process CPU seconds */
    double run_t0;                         /* the run's start, after the data load (prepared.t0) */
    double first_step_s; /* from run_t0 to the end of the first training step; < 0 before */
};

static void to_metrics(const struct ddts_logs *logs, struct ddts_metric *out, size_t *n)
{
    *n = 0;
    for (size_t i = 0; i < logs->n && i < DDTS_LOGS_MAX; i++) {
        out[*n].name = logs->names[i];
        out[*n].value = logs->values[i];
        (*n)++;
    }
}

static int exchange_now(struct run *r)
{
    size_t n = 0;
    float *w = ddts_model_weights_flat(r->model, &n);
    enum ddts_status st =
        r->req->exchange(r->req->exchange_userdata, w, n, r->since_sync, &r->error);
    r->since_sync = 0;
    if (st != DDTS_OK) {
        r->status = st;
        return 1;
    }
    return 0;
}

/* The training accuracy of `logs` ("accuracy", "acc", "sparse_categorical_accuracy", ...). */
static double logs_accuracy(const struct ddts_logs *logs)
{
    for (size_t i = 0; i < logs->n && i < DDTS_LOGS_MAX; i++) {
        const char *name = logs->names[i];
        size_t len = strlen(name);
        if (strncmp(name, "val_", 4) != 0 &&
            ((len >= 3 && strcmp(name + len - 3, "acc") == 0) ||
             (len >= 8 && strcmp(name + len - 8, "accuracy") == 0)))
            return logs->values[i];
    }
    return NAN;
}

/* Tells req->on_progress where the run is. */
static void report_progress(struct run *r, int epoch, size_t done, const struct ddts_logs *logs,
                            int epoch_end)
{
    if (r->req->on_progress == NULL)
        return;
    double elapsed = ddts_now() - r->epoch_t0, loss = NAN;
    if (ddts_logs_get(logs, "loss", &loss) != 0)
        loss = NAN;
    struct ddts_train_progress p = {
        .fold = r->n_folds > 0 ? r->fold : 0,
        .n_folds = r->n_folds,
        .epoch = epoch + 1,
        .epochs = r->epochs,
        .done = (int64_t)done,
        .total = (int64_t)r->n_train,
        .loss = loss,
        .accuracy = logs_accuracy(logs),
        .samples_per_s = elapsed > 0 ? (double)done / elapsed : 0,
        .elapsed_s = elapsed,
        .epoch_end = epoch_end,
        .epoch_logs = epoch_end ? logs : NULL,
    };
    r->req->on_progress(r->req->progress_userdata, &p);
}

static void draw_progress(struct run *r, int64_t done, const struct ddts_logs *logs, int final)
{
    FILE *fp = r->req->progress;
    if (fp == NULL)
        return;
    struct ddts_metric metrics[DDTS_LOGS_MAX];
    size_t n_metrics;
    to_metrics(logs, metrics, &n_metrics);
    char line[1024];
    ddts_progress_format(line, sizeof line, done, (int64_t)r->n_train, ddts_now() - r->epoch_t0,
                         metrics, n_metrics);
    if (r->tty)
        fprintf(fp, "\r%s\033[K%s", line, final ? "\n" : "");
    else if (final)
        fprintf(fp, "%s\n", line);
    fflush(fp);
}

static void epoch_header(struct run *r, int epoch)
{
    FILE *fp = r->req->progress;
    if (fp == NULL)
        return;
    char head[64];
    ddts_progress_epoch_header(head, sizeof head, epoch + 1, r->epochs);
    if (r->n_folds > 0)
        fprintf(fp, "Fold %d/%d - %s\n", r->fold, r->n_folds, head);
    else
        fprintf(fp, "%s\n", head);
}

static int on_batch_end(void *userdata, struct ddts_model *m, int epoch, size_t batch,
                        size_t n_batches, size_t samples_done, const struct ddts_logs *running)
{
    (void)m;
    (void)n_batches;
    struct run *r = userdata;
    if (r->first_step_s < 0)
        r->first_step_s = ddts_now() - r->run_t0;
    if (batch == 0) {
        r->epoch_t0 = ddts_now();
        r->last_samples_done = 0;
        if (r->tty)
            epoch_header(r, epoch);
    }
    r->since_sync += samples_done - r->last_samples_done;
    r->last_samples_done = samples_done;
    double now = ddts_now();
    r->train_end = now;
    r->train_end_cpu = ddts_cpu_now();
    if (r->tty && now - r->last_draw > 0.2) {
        draw_progress(r, (int64_t)samples_done, running, 0);
        r->last_draw = now;
    }
    report_progress(r, epoch, samples_done, running, 0);
    uint32_t k = r->req->sync_steps;
    if (r->req->exchange != NULL && k > 0 && (batch + 1) % k == 0 &&
        batch + 1 <= r->req->sync_batch_limit)
        return exchange_now(r);
    return 0;
}

static int on_epoch_end(void *userdata, struct ddts_model *m, int epoch,
                        const struct ddts_logs *logs)
{
    (void)m;
    struct run *r = userdata;
    if (!r->tty)
        epoch_header(r, epoch);
    draw_progress(r, (int64_t)r->n_train, logs, 1);
    report_progress(r, epoch, r->n_train, logs, 1);
    struct ddts_metric metrics[DDTS_LOGS_MAX];
    size_t n_metrics;
    to_metrics(logs, metrics, &n_metrics);
    enum ddts_status st = DDTS_OK;
    if (r->history != NULL)
        st = ddts_history_writer_row(r->history, epoch, metrics, n_metrics, &r->error);
    if (st != DDTS_OK) {
        r->status = st;
        return 1;
    }
    char line[1024];
    size_t used = (size_t)snprintf(line, sizeof line, "epoch %d/%d", epoch + 1, r->epochs);
    for (size_t i = 0; i < n_metrics && used < sizeof line; i++)
        used += (size_t)snprintf(line + used, sizeof line - used, " %s=%.6g", metrics[i].name,
                                 metrics[i].value);
    ddts_textlog_printf(r->textlog, "%s", line);
    ddts_log(r->req->logger, DDTS_LOG_DEBUG, "%s: %s", r->req->run_name ? r->req->run_name : "",
             line);
    /* Where the epoch's time went: its training steps (with the per-batch
     * callback) and the validation pass after them (bench/run.sh compares
     * both with the engine's own loop). */
    double now = ddts_now(), cpu = ddts_cpu_now();
    ddts_textlog_printf(r->textlog,
                        "timing of epoch %d: training %.3f s, validation %.3f s; CPU (all "
                        "threads): training %.3f s, validation %.3f s",
                        epoch + 1, r->train_end - r->epoch_start, now - r->train_end,
                        r->train_end_cpu - r->epoch_start_cpu, cpu - r->train_end_cpu);
    if (r->req->exchange != NULL && r->req->merge_sums == NULL && exchange_now(r) != 0)
        return 1;
    if (r->req->on_epoch_done != NULL) {
        st = r->req->on_epoch_done(r->req->epoch_done_userdata, m, epoch, &r->error);
        if (st != DDTS_OK) {
            r->status = st;
            return 1;
        }
    }
    r->epoch_start = ddts_now();
    r->epoch_start_cpu = ddts_cpu_now();
    return 0;
}

static int on_gradients(void *userdata, struct ddts_model *m, float *grads, size_t n,
                        size_t batch_samples)
{
    (void)m;
    struct run *r = userdata;
    enum ddts_status st =
        r->req->grad_exchange(r->req->grad_exchange_userdata, grads, n, batch_samples, &r->error);
    if (st != DDTS_OK) {
        r->status = st;
        return 1;
    }
    return 0;
}

static int on_gradients_ready(void *userdata, struct ddts_model *m, const float *grads, size_t n,
                              size_t from, size_t batch_samples)
{
    (void)m;
    struct run *r = userdata;
    enum ddts_status st = r->req->grad_ready(r->req->grad_exchange_userdata, grads, n, from,
                                             batch_samples, &r->error);
    if (st != DDTS_OK) {
        r->status = st;
        return 1;
    }
    return 0;
}

/* Data-parallel workers (merge_sums): the epoch-end exchange comes before
 * the validation pass and the best-model choice, so that every worker
 * validates its slice with the same (averaged) weights, the combined figures
 * are that model's, and the best weights are averaged ones, like the model
 * written at the end. */
static int on_epoch_trained(void *userdata, struct ddts_model *m, int epoch)
{
    (void)m;
    (void)epoch;
    return exchange_now(userdata);
}

/* on_training_sums (validation 0) and on_validation_sums (1) through req->merge_sums. */
static int merge_sums(struct run *r, int validation, double *sums, size_t n, size_t n_samples)
{
    enum ddts_status st =
        r->req->merge_sums(r->req->merge_sums_userdata, validation, sums, n, n_samples, &r->error);
    if (st != DDTS_OK) {
        r->status = st;
        return 1;
    }
    return 0;
}

static int on_training_sums(void *userdata, struct ddts_model *m, double *sums, size_t n,
                            size_t n_samples)
{
    (void)m;
    return merge_sums(userdata, 0, sums, n, n_samples);
}

static int on_validation_sums(void *userdata, struct ddts_model *m, double *sums, size_t n,
                              size_t n_samples)
{
    (void)m;
    return merge_sums(userdata, 1, sums, n, n_samples);
}

static const char *model_ext(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot != NULL && strcmp(dot, ".keras") == 0 ? ".keras" : ".h5";
}

/* The model as `k` (in place, k's format) or, with a normalizer, as a new
 * tf.keras 2.x .h5 file with a Normalization layer at its input. */
static enum ddts_status save(struct ddts_model *m, struct ddts_keras_model *k,
                             const struct ddts_norm_layer *norm, const char *path,
                             struct ddts_error *err)
{
    if (norm == NULL)
        return ddts_bridge_write(m, k, path, err);
    return ddts_surgery_write_normalized(m, k, norm, path, err);
}

/* Writes the model's current weights, or `weights` when not NULL, as DIR/NAME<ext>. */
static enum ddts_status write_model(struct ddts_model *m, struct ddts_keras_model *k,
                                    const float *weights, const char *dir, const char *name,
                                    const char *ext, const struct ddts_norm_layer *norm,
                                    struct ddts_error *err)
{
    char path[4096];
    enum ddts_status fst = ddts_format(path, sizeof path, err, "%s/%s%s", dir, name, ext);
    if (fst != DDTS_OK)
        return fst;
    if (weights == NULL)
        return save(m, k, norm, path, err);
    size_t n = 0;
    float *flat = ddts_model_weights_flat(m, &n);
    float *saved = ddts_mallocarray(n, sizeof(float));
    if (saved == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    memcpy(saved, flat, n * sizeof(float));
    memcpy(flat, weights, n * sizeof(float));
    enum ddts_status st = save(m, k, norm, path, err);
    memcpy(flat, saved, n * sizeof(float));
    ddts_free(saved);
    return st;
}

/* The job's normalizer as a Normalization layer's mean and variance (*mean, *var: ddts_free). */
static enum ddts_status norm_layer(const struct ddts_job *job, const struct ddts_stats *stats,
                                   size_t n_features, float **mean, float **var,
                                   struct ddts_norm_layer *out, struct ddts_error *err)
{
    out->invert_output = job->order == DDTS_JOB_ORDER_XX;
    *mean = ddts_mallocarray(n_features ? n_features : 1, sizeof(float));
    *var = ddts_mallocarray(n_features ? n_features : 1, sizeof(float));
    if (*mean == NULL || *var == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    enum ddts_status st =
        ddts_normalizer_from_stats((enum ddts_normalizer)job->normalizer, stats, *mean, *var, err);
    if (st != DDTS_OK)
        return st;
    out->mean = *mean;
    out->variance = *var;
    out->n_features = n_features;
    out->count = ddts_stats_count(stats);
    return DDTS_OK;
}

/* "DIR/model.keras" -> "DIR/model.h5": a model with a normalizer layer is a new .h5 file. */
static enum ddts_status h5_path(const char *path, char *out, size_t cap, struct ddts_error *err)
{
    enum ddts_status st = ddts_format(out, cap, err, "%s", path);
    if (st != DDTS_OK)
        return st;
    char *dot = strrchr(out, '.');
    char *slash = strrchr(out, '/');
    if (dot != NULL && (slash == NULL || dot > slash) && strcmp(dot, ".keras") == 0 &&
        (size_t)(dot - out) + 4 < cap)
        memcpy(dot, ".h5", 4);
    return DDTS_OK;
}

static double log_value(const struct ddts_history *h, const char *name)
{
    for (size_t c = 0; c < h->n_columns; c++)
        if (strcmp(h->columns[c], name) == 0 && h->n_epochs > 0)
            return h->values[(h->n_epochs - 1) * h->n_columns + c];
    return NAN;
}

/* The monitor fit chose for the best model ("auto" resolved as fit does). */
static const char *best_monitor_name(const struct ddts_history *h, const struct ddts_job *job,
                                     int has_val)
{
    if (job->monitor[0] != '\0' && strcmp(job->monitor, "auto") != 0)
        return job->monitor;
    const char *acc = has_val ? "val_accuracy" : "accuracy";
    return !isnan(log_value(h, acc)) ? acc : has_val ? "val_loss" : "loss";
}

/* A finished run's files in dir: model and best model (with the
 * normalizer as a layer), and history.png drawn from history.csv. */
static enum ddts_status write_outputs(const struct ddts_train_request *req, struct ddts_model *m,
                                      struct ddts_keras_model *k,
                                      const struct ddts_norm_layer *norm,
                                      const struct ddts_history *hist, int has_val, const char *dir,
                                      int fold, int n_folds, struct ddts_textlog *textlog,
                                      struct ddts_error *err)
{
    struct ddts_csv_history *csv = NULL;
    char path[4096];
    enum ddts_status st = DDTS_OK;
    /* With a normalizer the model changes structure: always a new .h5 file. */
    const char *ext = norm != NULL ? ".h5" : model_ext(req->model_path);
    st = write_model(m, k, NULL, dir, "model", ext, norm, err);
    if (st != DDTS_OK)
        goto out;
    int best_epoch = -1;
    const float *best = ddts_model_best_weights(m, &best_epoch);
    st = write_model(m, k, best, dir, "best_model", ext, norm, err);
    if (st != DDTS_OK)
        goto out;
    if (best != NULL)
        ddts_textlog_printf(textlog, "best model: epoch %d by %s", best_epoch + 1,
                            best_monitor_name(hist, req->job, has_val));
    st = ddts_format(path, sizeof path, err, "%s/history.csv", dir);
    if (st == DDTS_OK)
        st = ddts_csv_history_read(path, &csv, err);
    if (st == DDTS_OK)
        st = ddts_format(path, sizeof path, err, "%s/history.png", dir);
    if (st != DDTS_OK)
        goto out;
    char title[256];
    if (n_folds > 0)
        snprintf(title, sizeof title, "%s - fold %d/%d", req->run_name ? req->run_name : "train",
                 fold, n_folds);
    else
        snprintf(title, sizeof title, "%s", req->run_name ? req->run_name : "train");
    st = ddts_plot_history(path, title, csv, err);
out:
    ddts_csv_history_destroy(csv);
    return st;
}

/* One fit (a whole run, or one fold) into `dir`. */
static enum ddts_status run_one(const struct ddts_train_request *req, struct ddts_model *m,
                                struct ddts_keras_model *k, const struct ddts_norm_layer *norm,
                                const struct ddts_dataset *train, const struct ddts_dataset *val,
                                const char *dir, int fold, int n_folds, double run_t0,
                                struct ddts_train_result *res, struct ddts_error *err)
{
    const struct ddts_job *job = req->job;
    struct run r;
    memset(&r, 0, sizeof r);
    r.run_t0 = run_t0;
    r.first_step_s = -1;
    r.req = req;
    r.model = m;
    r.epochs = job->epochs;
    r.fold = fold;
    r.n_folds = n_folds;
    r.n_train = train->n;
    r.tty = req->progress != NULL && isatty(fileno(req->progress));
    struct ddts_history *hist = NULL;
    char path[4096];
    int initial_epoch = n_folds > 0 || req->initial_epoch < 0 ? 0
                        : req->initial_epoch < job->epochs    ? req->initial_epoch
                                                              : job->epochs - 1;
    enum ddts_status st = DDTS_OK;
    if (dir != NULL) {
        st = ddts_mkdir_p(dir, err);
        if (st != DDTS_OK)
            return st;
        st = ddts_format(path, sizeof path, err, "%s/history.csv", dir);
        /* Resumed at epoch E: the rows of epochs 0..E-1 stay, the new ones follow them. */
        if (st == DDTS_OK && initial_epoch > 0)
            st = ddts_history_keep_epochs(path, initial_epoch, err);
        if (st == DDTS_OK)
            st = ddts_history_writer_open(path, initial_epoch > 0 || req->append_history,
                                          &r.history, err);
        if (st != DDTS_OK)
            goto out;
        st = ddts_format(path, sizeof path, err, "%s/train.log", dir);
        if (st == DDTS_OK)
            st = ddts_textlog_open(path, &r.textlog, err);
        if (st != DDTS_OK)
            goto out;
    }
    ddts_textlog_printf(r.textlog,
                        "run %s: %zu training samples, %zu validation samples, %d "
                        "epochs, batch size %d, loss %s, optimizer %s (lr %g)",
                        req->run_name ? req->run_name : "train", train->n, val ? val->n : 0,
                        job->epochs, job->batch_size, ddts_model_loss_name(m),
                        ddts_model_optimizer_name(m), ddts_model_learning_rate(m));
    if (initial_epoch > 0)
        ddts_textlog_printf(r.textlog, "resumed at epoch %d (epochs 1-%d were trained before)",
                            initial_epoch + 1, initial_epoch);

    struct ddts_fit_callbacks cbs = {
        .userdata = &r,
        .on_batch_end = on_batch_end,
        .on_epoch_end = on_epoch_end,
        .on_gradients = req->grad_exchange != NULL ? on_gradients : NULL,
        .on_gradients_ready =
            req->grad_exchange != NULL && req->grad_ready != NULL ? on_gradients_ready : NULL,
        .on_epoch_trained =
            req->exchange != NULL && req->merge_sums != NULL ? on_epoch_trained : NULL,
        .on_validation_sums = req->merge_sums != NULL ? on_validation_sums : NULL,
        .on_training_sums = req->merge_sums != NULL ? on_training_sums : NULL,
    };
    struct ddts_fit_options fo = {
        .epochs = job->epochs,
        .initial_epoch = initial_epoch,
        .batch_size = job->batch_size,
        .shuffle = 1,
        .seed = job->seed + (uint64_t)fold + req->seed_offset,
        .validation = val,
        .callbacks = &cbs,
        .checkpoint_monitor = job->monitor[0] ? job->monitor : "auto",
    };
    double t0 = ddts_now();
    r.epoch_start = r.train_end = t0;
    r.epoch_start_cpu = r.train_end_cpu = ddts_cpu_now();
    st = ddts_model_fit(m, train, &fo, &hist, err);
    double seconds = ddts_now() - t0;
    if (st == DDTS_ECANCELED && r.status != DDTS_OK) {
        st = r.status;
        if (err != NULL)
            *err = r.error;
    }
    if (st != DDTS_OK) {
        ddts_textlog_printf(r.textlog, "training failed: %s", err ? err->msg : "");
        goto out;
    }
    res->n_samples = train->n;
    res->seconds += seconds;
    res->samples_per_s =
        seconds > 0 ? (double)train->n * (job->epochs - initial_epoch) / seconds : 0;
    res->loss = log_value(hist, "loss");
    res->accuracy = log_value(hist, "accuracy");
    res->val_loss = log_value(hist, "val_loss");
    res->val_accuracy = log_value(hist, "val_accuracy");
    ddts_textlog_printf(r.textlog, "done in %.1f s (%.0f samples/s)", seconds, res->samples_per_s);
    /* Start-up: reading the model, building and compiling it, the normalizer's
     * statistics and planning, up to the end of the first training step. */
    if (r.first_step_s >= 0)
        ddts_textlog_printf(r.textlog, "first training step done %.1f ms after the run started",
                            r.first_step_s * 1e3);
    if (dir == NULL)
        goto out;

    ddts_history_writer_close(r.history);
    r.history = NULL;
    if (dir != NULL)
        st = write_outputs(req, m, k, norm, hist, val != NULL, dir, fold, n_folds, r.textlog, err);
out:
    ddts_history_destroy(hist);
    ddts_history_writer_close(r.history);
    ddts_textlog_close(r.textlog);
    return st;
}

/* A number, or null when it is not finite (JSON has no NaN). */
static int put_num(json_t *o, const char *name, double v)
{
    return json_object_set_new(o, name, isfinite(v) ? json_real(v) : json_null());
}

/* The run's summary.json through jansson (names escaped, numbers to 10
 * significant digits, keys in this order). */
static enum ddts_status write_summary(const struct ddts_train_request *req,
                                      const struct ddts_train_result *res, const double *fold_vals,
                                      struct ddts_error *err)
{
    json_t *o = json_object();
    int bad = o == NULL;
    bad =
        bad || json_object_set_new(o, "run", json_string(req->run_name ? req->run_name : "train"));
    bad = bad || json_object_set_new(o, "samples", json_integer((json_int_t)res->n_samples));
    bad = bad || json_object_set_new(o, "epochs", json_integer(req->job->epochs));
    if (req->n_ranks > 0) {
        bad = bad || json_object_set_new(o, "ranks", json_integer(req->n_ranks));
        bad = bad || json_object_set_new(o, "sync",
                                         json_string(req->sync_name != NULL ? req->sync_name : ""));
    }
    bad = bad || put_num(o, "seconds", res->seconds);
    bad = bad || put_num(o, "samples_per_second", res->samples_per_s);
    bad = bad || put_num(o, "loss", res->loss);
    bad = bad || put_num(o, "accuracy", res->accuracy);
    bad = bad || put_num(o, "val_loss", res->val_loss);
    bad = bad || put_num(o, "val_accuracy", res->val_accuracy);
    if (res->n_folds > 0 && fold_vals != NULL) {
        json_t *vals = json_array();
        bad = bad || vals == NULL;
        for (int i = 0; !bad && i < res->n_folds; i++)
            bad = json_array_append_new(vals, json_real(fold_vals[i])) != 0;
        bad = bad || json_object_set_new(o, "folds", json_integer(res->n_folds));
        bad = bad || json_object_set_new(o, "fold_metric", json_string(res->fold_metric));
        bad = bad || json_object_set_new(o, "fold_values", vals);
        bad = bad || put_num(o, "fold_mean", res->fold_mean);
        bad = bad || put_num(o, "fold_std", res->fold_std);
    }
    char *text =
        bad ? NULL : json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
    json_decref(o);
    if (text == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "summary.json: out of memory");
    char *path = ddts_path_join(req->out_dir, "summary.json");
    struct ddts_atomic_file f;
    enum ddts_status st = path == NULL ? ddts_error_set(err, DDTS_ENOMEM, "out of memory")
                                       : ddts_atomic_open(&f, path, err);
    if (st == DDTS_OK) {
        fputs(text, f.fp);
        fputc('\n', f.fp);
        st = ddts_atomic_commit(&f, err);
    }
    free(text);
    ddts_free(path);
    return st;
}

/* A resumed run's optimizer state and step count (req->init_opt_state). */
static enum ddts_status import_opt_state(struct ddts_model *m, const struct ddts_train_request *req,
                                         struct ddts_error *err)
{
    size_t n_state = 0;
    float *state = ddts_model_optimizer_state(m, &n_state);
    if (n_state != req->n_init_opt_state)
        return ddts_error_set(err, DDTS_ESHAPE,
                              "the saved optimizer state holds %zu values, the optimizer %zu",
                              req->n_init_opt_state, n_state);
    if (n_state > 0)
        memcpy(state, req->init_opt_state, n_state * sizeof(float));
    ddts_model_set_iterations(m, req->init_iterations);
    return DDTS_OK;
}

/* What ddts_train_run and ddts_train_global both set up: the model read,
 * built and given its starting weights, and the job's compile options. */
struct prepared {
    struct ddts_keras_model *k;
    struct ddts_model *m;
    float *flat; /* the model's weights */
    size_t n_weights;
    struct ddts_compile_options co;
    double t0; /* when the model began to be read: the run's start, after the data load */
};

static enum ddts_status prepare_model(const char *path, const struct ddts_job *job,
                                      const float *weights, size_t n_weights, const char *what,
                                      struct prepared *p, struct ddts_error *err)
{
    memset(p, 0, sizeof *p);
    p->t0 = ddts_now();
    enum ddts_status st = ddts_keras_read(path, &p->k, err);
    if (st != DDTS_OK)
        return st;
    st = ddts_bridge_load(p->k, job->seed, &p->m, err);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "%s: ", path);
        return st;
    }
    p->flat = ddts_model_weights_flat(p->m, &p->n_weights);
    if (weights != NULL) {
        if (n_weights != p->n_weights)
            return ddts_error_set(err, DDTS_ESHAPE, "%s weights hold %zu values, the model %zu",
                                  what, n_weights, p->n_weights);
        memcpy(p->flat, weights, n_weights * sizeof(float));
    }
    p->co = (struct ddts_compile_options){
        .loss = job->loss[0] ? job->loss : NULL,
        .optimizer = job->optimizer[0] ? job->optimizer : NULL,
        .learning_rate = job->learning_rate,
        .metrics = job->metrics[0] ? job->metrics : NULL,
        .training_config_json = p->k->training_config,
        .threads = job->threads > 0 ? job->threads : (int)sysconf(_SC_NPROCESSORS_ONLN),
    };
    return DDTS_OK;
}

static void prepared_destroy(struct prepared *p)
{
    ddts_model_destroy(p->m);
    ddts_keras_destroy(p->k);
    memset(p, 0, sizeof *p);
}

/* The per-feature affine map of the job's normalizer (offset and scale
 * arrays of in_size values each, the caller frees both). */
static enum ddts_status normalizer_affine(const struct ddts_job *job,
                                          const struct ddts_stats *stats, size_t in_size,
                                          float **offset, float **scale, struct ddts_error *err)
{
    *offset = ddts_mallocarray(in_size, sizeof(float));
    *scale = ddts_mallocarray(in_size, sizeof(float));
    if (*offset == NULL || *scale == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    return ddts_normalizer_affine((enum ddts_normalizer)job->normalizer, stats, *offset, *scale,
                                  err);
}

/* The data must fit the model's input, reshaped when element counts agree. */
static enum ddts_status bind_input(struct ddts_model *m, const struct ddts_array *x,
                                   struct ddts_error *err)
{
    enum ddts_status st = ddts_model_bind_input(m, x, err);
    if (st != DDTS_OK)
        return st;
    size_t in_size = ddts_model_input_size(m);
    if (ddts_array_sample_count(x) == in_size)
        return DDTS_OK;
    int64_t shape[DDTS_MAX_RANK];
    int rank = ddts_model_input_shape(m, shape);
    char a[128], b[128];
    ddts_array_shape_str(x, a, sizeof a);
    struct ddts_array tmp = {.rank = rank};
    memcpy(tmp.shape, shape, sizeof(int64_t) * (size_t)rank);
    ddts_array_shape_str(&tmp, b, sizeof b);
    return ddts_error_set(err, DDTS_ESHAPE,
                          "X has shape %s (%zu values per sample), the model's input is %s (%zu "
                          "values)",
                          a, ddts_array_sample_count(x), b, in_size);
}

/* A training run's data: the samples with their normalizer applied per
 * batch, and the Normalization layer the written models get. */
struct train_data {
    const struct ddts_array *x, *y, *xv, *yv;
    size_t n;
    float *offset, *scale; /* NULL without a normalizer */
    /* XX: the target is the normalized input; the figures (loss, metrics) are in the
     * data's own units, those of the saved model, whose output undoes the
     * normalization (ddts evaluate on it gives the same) */
    const float *yo, *ys;
    struct ddts_stats *stats; /* this run's own statistics, when none were given */
    float *nmean, *nvar;
    struct ddts_norm_layer norm, *normp;
};

/* A model with several inputs: the data gives as many (X/, X2/, ...; a
 * share's count is not known here, its server checked it), and the settings
 * that assume a single input are refused. */
static enum ddts_status check_inputs(const struct ddts_train_request *req,
                                     const struct ddts_model *m, struct ddts_error *err)
{
    const struct ddts_job *job = req->job;
    size_t n_in = ddts_model_n_inputs(m);
    if (req->x_inputs > 0) {
        enum ddts_status st =
            ddts_model_check_n_inputs(m, req->x_inputs, "the data (X/, X2/, ...)", err);
        if (st != DDTS_OK)
            return st;
    }
    if (n_in > 1 && job->order == DDTS_JOB_ORDER_XX)
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "--order XX (reconstruct X) with a model of %zu inputs is not "
                              "supported",
                              n_in);
    if (n_in > 1 && job->normalizer != DDTS_JOB_NORM_NONE)
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "--normalizer with a model of %zu inputs is not supported (the "
                              "Normalization layer is inserted after a single input)",
                              n_in);
    return DDTS_OK;
}

static enum ddts_status train_data_init(const struct ddts_train_request *req, struct ddts_model *m,
                                        struct train_data *d, struct ddts_error *err)
{
    const struct ddts_job *job = req->job;
    memset(d, 0, sizeof *d);
    d->x = req->x;
    d->xv = req->x_val;
    d->n = d->x->rank > 0 ? (size_t)d->x->shape[0] : 0;
    enum ddts_status st = check_inputs(req, m, err);
    if (st != DDTS_OK)
        return st;
    st = bind_input(m, d->x, err);
    if (st != DDTS_OK)
        return st;
    size_t in_size = ddts_model_input_size(m);
    if (job->normalizer != DDTS_JOB_NORM_NONE) {
        const struct ddts_stats *use = req->norm_stats;
        if (use == NULL) {
            st = ddts_stats_create(in_size, &d->stats, err);
            if (st == DDTS_OK)
                st = ddts_stats_update(d->stats, d->x, NULL, d->n, err);
            if (st != DDTS_OK)
                return st;
            use = d->stats;
        }
        st = normalizer_affine(job, use, in_size, &d->offset, &d->scale, err);
        if (st == DDTS_OK)
            st = norm_layer(job, use, in_size, &d->nmean, &d->nvar, &d->norm, err);
        if (st != DDTS_OK)
            return st;
        d->normp = &d->norm;
        /* Applied per batch as fit gathers samples: the data stays in its
         * stored dtype (no float32 copy of the whole shard). */
        ddts_log(req->logger, DDTS_LOG_INFO, "normalizer %s over %zu features",
                 ddts_job_normalizer_name(job->normalizer), in_size);
    }
    int xx = job->order == DDTS_JOB_ORDER_XX;
    d->y = xx ? d->x : req->y;
    d->yv = xx ? d->xv : req->y_val;
    d->yo = xx ? d->offset : NULL;
    d->ys = xx ? d->scale : NULL;
    if (d->y == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "no Y data for order XY");
    size_t ny = d->y->rank > 0 ? (size_t)d->y->shape[0] : 0;
    if (ny != d->n)
        return ddts_error_set(err, DDTS_ESHAPE, "X holds %zu samples but Y holds %zu", d->n, ny);
    return DDTS_OK;
}

static void train_data_destroy(struct train_data *d)
{
    ddts_free(d->offset);
    ddts_free(d->scale);
    ddts_free(d->nmean);
    ddts_free(d->nvar);
    ddts_stats_destroy(d->stats);
}

static struct ddts_dataset subset(const struct train_data *d, const uint32_t *idx, size_t n)
{
    return (struct ddts_dataset){d->x,  d->y,  idx,          n, d->offset, d->scale,
                                 d->yo, d->ys, d->yo != NULL};
}

/* k-fold: every fold from the same initial weights and a fresh optimizer,
 * into out_dir/fold_K; out gets the last fold's figures and the folds'
 * mean and spread of val_accuracy (else val_loss). */
static enum ddts_status run_kfold(const struct ddts_train_request *req, struct prepared *p,
                                  const struct train_data *d, struct ddts_train_result *out,
                                  double **fold_vals, struct ddts_error *err)
{
    size_t kf = (size_t)req->job->folds;
    uint32_t *tr = NULL, *va = NULL;
    float *init = ddts_mallocarray(p->n_weights, sizeof(float));
    *fold_vals = ddts_calloc(kf, sizeof(double));
    enum ddts_status st = DDTS_OK;
    if (init == NULL || *fold_vals == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(init, p->flat, p->n_weights * sizeof(float));
    out->n_folds = (int)kf;
    for (size_t f = 0; f < kf && st == DDTS_OK; f++) {
        size_t ntr = 0, nva = 0;
        st = ddts_kfold(d->n, kf, req->job->seed, f, &tr, &ntr, &va, &nva, err);
        if (st != DDTS_OK)
            break;
        memcpy(p->flat, init, p->n_weights * sizeof(float));
        st = ddts_model_compile(p->m, &p->co, err);
        struct ddts_dataset dtr = subset(d, tr, ntr), dva = subset(d, va, nva);
        char dir[4096];
        struct ddts_train_result fr;
        memset(&fr, 0, sizeof fr);
        if (st == DDTS_OK && req->out_dir != NULL)
            st = ddts_format(dir, sizeof dir, err, "%s/fold_%zu", req->out_dir, f + 1);
        if (st == DDTS_OK)
            st = run_one(req, p->m, p->k, d->normp, &dtr, &dva, req->out_dir != NULL ? dir : NULL,
                         (int)f + 1, (int)kf, p->t0, &fr, err);
        if (st == DDTS_OK) {
            int acc = isfinite(fr.val_accuracy);
            snprintf(out->fold_metric, sizeof out->fold_metric, "%s",
                     acc ? "val_accuracy" : "val_loss");
            (*fold_vals)[f] = acc ? fr.val_accuracy : fr.val_loss;
            out->seconds += fr.seconds;
            out->n_samples = fr.n_samples;
            out->samples_per_s = fr.samples_per_s;
            out->loss = fr.loss;
            out->accuracy = fr.accuracy;
            out->val_loss = fr.val_loss;
            out->val_accuracy = fr.val_accuracy;
        }
        ddts_free(tr);
        ddts_free(va);
        tr = va = NULL;
    }
    if (st != DDTS_OK)
        goto out;
    double mean = 0, var = 0;
    for (size_t f = 0; f < kf; f++)
        mean += (*fold_vals)[f];
    mean /= (double)kf;
    for (size_t f = 0; f < kf; f++)
        var += ((*fold_vals)[f] - mean) * ((*fold_vals)[f] - mean);
    out->fold_mean = mean;
    out->fold_std = sqrt(var / (double)kf);
    ddts_log(req->logger, DDTS_LOG_INFO, "%zu-fold %s: %.4f +/- %.4f", kf, out->fold_metric,
             out->fold_mean, out->fold_std);
out:
    ddts_free(init);
    return st;
}

/* One fit on all samples: validation on x_val/y_val when given, else on the
 * last validation_split of the samples, as Keras takes it. */
static enum ddts_status run_fit(const struct ddts_train_request *req, struct prepared *p,
                                const struct train_data *d, struct ddts_train_result *out,
                                struct ddts_error *err)
{
    struct ddts_dataset dtr = subset(d, NULL, d->n), dva = subset(d, NULL, 0);
    const struct ddts_dataset *val = NULL;
    uint32_t *idx = NULL;
    enum ddts_status st = DDTS_OK;
    if (d->xv != NULL) {
        dva.x = d->xv;
        dva.y = d->yv;
        dva.n = d->xv->rank > 0 ? (size_t)d->xv->shape[0] : 0;
        val = &dva;
    } else if (req->job->validation_split > 0) {
        size_t ntr = 0, nva = 0;
        st = ddts_validation_split(d->n, req->job->validation_split, &ntr, &nva, err);
        if (st != DDTS_OK)
            return st;
        idx = ddts_mallocarray(d->n ? d->n : 1, sizeof(uint32_t));
        if (idx == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        for (size_t i = 0; i < d->n; i++)
            idx[i] = (uint32_t)i;
        dtr = subset(d, idx, ntr);
        dva = subset(d, idx + ntr, nva);
        val = nva > 0 ? &dva : NULL;
    }
    st = run_one(req, p->m, p->k, d->normp, &dtr, val, req->out_dir, 0, 0, p->t0, out, err);
    ddts_free(idx);
    return st;
}

enum ddts_status ddts_train_run(const struct ddts_train_request *req, struct ddts_train_result *out,
                                struct ddts_error *err)
{
    const struct ddts_job *job = req->job;
    memset(out, 0, sizeof *out);
    out->loss = out->accuracy = out->val_loss = out->val_accuracy = NAN;
    struct prepared p;
    struct train_data d;
    memset(&d, 0, sizeof d);
    double *fold_vals = NULL;

    enum ddts_status st = prepare_model(req->model_path, job, req->init_weights,
                                        req->n_init_weights, "initial", &p, err);
    if (st == DDTS_OK && (st = ddts_model_compile(p.m, &p.co, err)) != DDTS_OK)
        ddts_error_prefix(err, "%s: ", req->model_path);
    if (st == DDTS_OK && req->init_opt_state != NULL && job->method != DDTS_JOB_KFOLD)
        st = import_opt_state(p.m, req, err);
    if (st == DDTS_OK && req->init_best != NULL && job->method != DDTS_JOB_KFOLD)
        st = ddts_model_set_best_state(p.m, req->init_best, err);
    if (st == DDTS_OK)
        st = train_data_init(req, p.m, &d, err);
    if (st == DDTS_OK && req->out_dir != NULL)
        st = ddts_mkdir_p(req->out_dir, err);
    if (st == DDTS_OK)
        st = job->method == DDTS_JOB_KFOLD ? run_kfold(req, &p, &d, out, &fold_vals, err)
                                           : run_fit(req, &p, &d, out, err);
    if (st == DDTS_OK && req->out_dir != NULL)
        st = write_summary(req, out, fold_vals, err);
    ddts_free(fold_vals);
    train_data_destroy(&d);
    prepared_destroy(&p);
    return st;
}

enum ddts_status ddts_train_global(const struct ddts_global_request *req, double *loss,
                                   double *accuracy, struct ddts_error *err)
{
    const struct ddts_job *job = req->job;
    *loss = *accuracy = NAN;
    if (req->logs != NULL)
        req->logs->n = 0;
    struct prepared p;
    float *offset = NULL, *scale = NULL, *nmean = NULL, *nvar = NULL;
    enum ddts_status st =
        prepare_model(req->model_path, job, req->weights, req->n_weights, "global", &p, err);
    if (st != DDTS_OK)
        goto out;
    if (req->out_path != NULL) {
        if (job->normalizer != DDTS_JOB_NORM_NONE && req->norm_stats != NULL) {
            struct ddts_norm_layer norm;
            char path[4096];
            st = h5_path(req->out_path, path, sizeof path, err);
            if (st == DDTS_OK)
                st = norm_layer(job, req->norm_stats, ddts_model_input_size(p.m), &nmean, &nvar,
                                &norm, err);
            if (st == DDTS_OK)
                st = ddts_surgery_write_normalized(p.m, p.k, &norm, path, err);
        } else {
            st = ddts_bridge_write(p.m, p.k, req->out_path, err);
        }
        if (st != DDTS_OK)
            goto out;
    }
    if (req->x_test == NULL || req->y_test == NULL)
        goto out;
    st = ddts_model_compile(p.m, &p.co, err);
    if (st != DDTS_OK)
        goto out;
    const struct ddts_array *x = req->x_test;
    st = ddts_model_bind_input(p.m, x, err);
    if (st != DDTS_OK)
        goto out;
    if (job->normalizer != DDTS_JOB_NORM_NONE && req->norm_stats != NULL) {
        st = normalizer_affine(job, req->norm_stats, ddts_model_input_size(p.m), &offset, &scale,
                               err);
        if (st != DDTS_OK)
            goto out;
    }
    int xx = job->order == DDTS_JOB_ORDER_XX;
    const struct ddts_array *y = xx ? x : req->y_test;
    struct ddts_dataset d = {x, y, NULL, x->rank > 0 ? (size_t)x->shape[0] : 0, offset, scale,
                             xx ? offset : NULL, xx ? scale : NULL,
                             /* the saved global model's figures: raw units */
                             xx};
    struct ddts_logs logs;
    st = ddts_model_evaluate(p.m, &d, job->batch_size > 0 ? job->batch_size : 32, &logs, err);
    if (st != DDTS_OK)
        goto out;
    if (req->logs != NULL)
        *req->logs = logs;
    double v;
    if (ddts_logs_get(&logs, "loss", &v) == 0)
        *loss = v;
    if (ddts_logs_get(&logs, "accuracy", &v) == 0)
        *accuracy = v;
out:
    ddts_free(offset);
    ddts_free(scale);
    ddts_free(nmean);
    ddts_free(nvar);
    prepared_destroy(&p);
    return st;
}

enum ddts_status ddts_train_count_weights(const char *model_path, size_t *n, struct ddts_error *err)
{
    *n = 0;
    struct ddts_keras_model *k = NULL;
    struct ddts_model *m = NULL;
    enum ddts_status st = ddts_keras_read(model_path, &k, err);
    if (st == DDTS_OK && (st = ddts_bridge_load(k, 0, &m, err)) != DDTS_OK)
        ddts_error_prefix(err, "%s: ", model_path);
    if (st == DDTS_OK)
        (void)ddts_model_weights_flat(m, n);
    ddts_model_destroy(m);
    ddts_keras_destroy(k);
    return st;
}
