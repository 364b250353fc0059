/*
 * The ddts client (docs/protocol.md, "A client's life"): join, receive a
 * share, train it through the integrator's callback with a heartbeat thread
 * beside it, upload the results, wait for the receipt, ask for more.
 *
 * What the client holds is written to WORKDIR/current after every step, so a
 * restarted client tells the server (JOIN flags) what it already has.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ddts/client.h"
#include "ddts/fs.h"
#include "ddts/limits.h"
#include "conn.h"
#include "wire.h"
#include "netutil.h"

#define ID_BYTES    16
#define STATE_MAGIC "ddts-client-state 1"
#define F_FILES     DDTS_JOIN_HAS_FILES
#define F_TRAINED   DDTS_JOIN_TRAINED
#define F_RECEIVED  DDTS_JOIN_RECEIVED

/* What the client holds (WORKDIR/current). */
struct held {
    char job[DDTS_MAX_NAME_BYTES + 1];
    uint8_t job_id[ID_BYTES];
    uint32_t share;
    unsigned flags;
    int status;     /* training status once trained */
    char model[64]; /* model file name inside the job folder ("" if none) */
};

struct client {
    const struct ddts_client_config *cfg;
    const struct ddts_logger *log;
    uint8_t id[ID_BYTES];
    char name[DDTS_MAX_NAME_BYTES + 1];
    char *state_path;
    struct held held;
};

struct ddts_client_sync {
    struct ddts_conn *conn;
    uint64_t round;
    enum ddts_status net_failure;  /* a connection failure seen by an exchange */
    double progress_at;            /* ddts_now() of the last PROGRESS sent (0: none) */
    int progress_off;              /* a PROGRESS send failed: no more */
    const struct ddts_logger *log; /* says so when a round keeps this client waiting */
};

static enum ddts_status save_held(struct client *cl, struct ddts_error *err)
{
    char buf[512], idhex[2 * ID_BYTES + 1];
    ddts__hex(cl->held.job_id, ID_BYTES, idhex);
    int n = snprintf(buf, sizeof buf,
                     "%s\njob %s\njob_id %s\nshare %u\nflags %u\nstatus %d\nmodel %s\n",
                     STATE_MAGIC, cl->held.job[0] ? cl->held.job : "-", idhex, cl->held.share,
                     cl->held.flags, cl->held.status, cl->held.model[0] ? cl->held.model : "-");
    return ddts_write_file_atomic(cl->state_path, buf, (size_t)n, err);
}

static void load_held(struct client *cl)
{
    char *text = NULL;
    size_t len = 0;
    memset(&cl->held, 0, sizeof cl->held);
    if (ddts_read_file(cl->state_path, 1 << 16, &text, &len, NULL) != DDTS_OK)
        return;
    struct held h;
    memset(&h, 0, sizeof h);
    char job[80], idhex[80], model[80];
    if (strncmp(text, STATE_MAGIC "\n", sizeof STATE_MAGIC) == 0 &&
        /* NOLINTNEXTLINE(cert-err34-c): own state file, share validated on use */
        sscanf(text + sizeof STATE_MAGIC,
               "job %79s\njob_id %79s\nshare %u\nflags %u\nstatus %d\nmodel %79s", job, idhex,
               &h.share, &h.flags, &h.status, model) == 6 &&
        ddts__unhex(idhex, h.job_id, ID_BYTES) == 0 && ddts_wire_check_name(job, NULL) == DDTS_OK) {
        snprintf(h.job, sizeof h.job, "%.*s", (int)sizeof h.job - 1, job);
        if (strcmp(model, "-") != 0 && ddts_wire_check_relpath(model, NULL) == DDTS_OK)
            snprintf(h.model, sizeof h.model, "%.*s", (int)sizeof h.model - 1, model);
        cl->held = h;
    }
    ddts_free(text);
}

static enum ddts_status load_or_create_id(struct client *cl, struct ddts_error *err)
{
    char *path = ddts_path_join(cl->cfg->workdir, "id");
    if (path == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    char *text = NULL;
    size_t len = 0;
    enum ddts_status st = ddts_read_file(path, 256, &text, &len, NULL);
    if (st == DDTS_OK) {
        while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r'))
            text[--len] = '\0';
        if (ddts__unhex(text, cl->id, ID_BYTES) != 0)
            st = ddts_error_set(err, DDTS_EFORMAT, "%s: not a client id (32 hex digits)", path);
        ddts_free(text);
    } else {
        char hexid[2 * ID_BYTES + 2];
        ddts_secure_random(cl->id, ID_BYTES);
        ddts__hex(cl->id, ID_BYTES, hexid);
        hexid[2 * ID_BYTES] = '\n';
        hexid[2 * ID_BYTES + 1] = '\0';
        st = ddts_write_file_atomic(path, hexid, 2 * ID_BYTES + 1, err);
    }
    ddts_free(path);
    return st;
}

/* ---- sync ---- */

static int is_net_failure(enum ddts_status st)
{
    /* EAUTH after the handshake: a damaged or tampered frame, a connection error too. */
    return st == DDTS_ECLOSED || st == DDTS_ETIMEOUT || st == DDTS_EIO || st == DDTS_EAUTH;
}

static enum ddts_status sync_run(struct ddts_client_sync *sync, unsigned op, unsigned flags,
                                 float *values, size_t n, uint64_t n_samples,
                                 struct ddts_error *err)
{
    if (sync == NULL || values == NULL || n == 0 || n > DDTS_MAX_SYNC_FLOATS ||
        op > DDTS_REDUCE_MAX)
        return ddts_error_set(err, DDTS_EINVAL, "sync: %zu values (1..%llu) or op %u invalid", n,
                              (unsigned long long)DDTS_MAX_SYNC_FLOATS, op);
    if (op == DDTS_REDUCE_MEAN && n_samples == 0)
        return ddts_error_set(err, DDTS_EINVAL, "sync: a weighted mean needs n_samples >= 1");
    if (sync->net_failure != DDTS_OK)
        return ddts_error_set(err, sync->net_failure, "sync: the connection is lost");
    for (size_t i = 0; i < n; i++)
        if (!isfinite(values[i]))
            return ddts_error_set(err, DDTS_ENUMERIC, "sync: value %zu is not finite", i);
    uint8_t m[32];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_put_u8(&w, DDTS_MSG_SYNC);
    ddts_wire_put_u8(&w, (uint8_t)op);
    ddts_wire_put_u8(&w, (uint8_t)flags);
    ddts_wire_put_u64(&w, n_samples);
    ddts_wire_put_u64(&w, n);
    enum ddts_status st = ddts_conn_send_w(sync->conn, &w, err);
    if (st == DDTS_OK)
        st = ddts_conn_send_data(sync->conn, values, n * sizeof *values, err);
    /* The server answers once every client has sent its part of the round:
     * a wait longer than a moment is said, not left silent. */
    if (st == DDTS_OK && sync->log != NULL) {
        struct pollfd pfd = {.fd = ddts_conn_fd(sync->conn), .events = POLLIN};
        int ready;
        do
            ready = poll(&pfd, 1, (int)(DDTS_SYNC_WAIT_NOTE_S * 1000));
        while (ready < 0 && errno == EINTR);
        if (ready == 0)
            ddts_log(sync->log, DDTS_LOG_INFO,
                     "round %" PRIu64 ": sent; waiting for the other clients (the server "
                     "averages once every client has sent its part)",
                     sync->round + 1);
    }
    const uint8_t *p;
    size_t pn;
    if (st == DDTS_OK)
        st = ddts_conn_expect(sync->conn, DDTS_MSG_SYNC_RESULT, &p, &pn, err);
    uint64_t round = 0, total = 0, count = 0;
    if (st == DDTS_OK) {
        struct ddts_wire_reader r;
        ddts_wire_reader_init(&r, p, pn);
        ddts_wire_get_u64(&r, &round);
        ddts_wire_get_u64(&r, &total);
        ddts_wire_get_u64(&r, &count);
        st = ddts_wire_reader_end(&r, "SYNC_RESULT", err);
        if (st == DDTS_OK && count != n)
            st = ddts_error_set(err, DDTS_EPROTO, "SYNC_RESULT has %" PRIu64 " values, sent %zu",
                                count, n);
    }
    if (st == DDTS_OK)
        st = ddts_conn_recv_data(sync->conn, values, n * sizeof *values, err);
    if (st == DDTS_OK && (flags & DDTS_SYNC_WEIGHTS))
        sync->round = round;
    if (st != DDTS_OK)
        sync->net_failure = is_net_failure(st) ? st : DDTS_EPROTO;
    return st;
}

enum ddts_status ddts_client_sync_exchange(struct ddts_client_sync *sync, float *weights, size_t n,
                                           uint64_t n_samples, struct ddts_error *err)
{
    return sync_run(sync, DDTS_REDUCE_MEAN, DDTS_SYNC_WEIGHTS, weights, n, n_samples, err);
}

enum ddts_status ddts_client_sync_reduce(struct ddts_client_sync *sync, enum ddts_reduce_op op,
                                         float *values, size_t n, uint64_t n_samples,
                                         struct ddts_error *err)
{
    return sync_run(sync, (unsigned)op, 0, values, n, n_samples, err);
}

static double clamp_figure(double v, double max)
{
    return isfinite(v) && v > 0 ? (v < max ? v : max) : 0;
}

enum ddts_status ddts_client_send_progress(struct ddts_client_sync *sync,
                                           const struct ddts_wire_progress *p,
                                           struct ddts_error *err)
{
    if (sync == NULL || p == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "progress: no connection or no report");
    if (sync->progress_off || sync->net_failure != DDTS_OK)
        return DDTS_OK;
    double now = ddts_now();
    int epoch_end = (p->flags & DDTS_PROGRESS_EPOCH_END) != 0;
    if (!epoch_end && sync->progress_at > 0 && now - sync->progress_at < DDTS_PROGRESS_INTERVAL_S)
        return DDTS_OK;
    /* What the server's decoder accepts: figures clamped into their ranges. */
    struct ddts_wire_progress q = *p;
    q.flags &= DDTS_PROGRESS_EPOCH_END;
    if (q.n_folds > DDTS_MAX_PROGRESS_FOLDS || q.fold > q.n_folds || (q.n_folds > 0 && q.fold == 0))
        q.fold = q.n_folds = 0;
    if (q.epochs > DDTS_MAX_PROGRESS_EPOCHS)
        q.epochs = DDTS_MAX_PROGRESS_EPOCHS;
    if (q.epochs == 0)
        q.epochs = 1;
    if (q.epoch < 1 || q.epoch > q.epochs)
        q.epoch = q.epoch < 1 ? 1 : q.epochs;
    if (q.total > DDTS_MAX_PROGRESS_SAMPLES)
        q.total = DDTS_MAX_PROGRESS_SAMPLES;
    if (q.done > q.total)
        q.done = q.total;
    if (isinf(q.loss))
        q.loss = NAN;
    if (!(q.accuracy >= 0 && q.accuracy <= 1))
        q.accuracy = NAN;
    q.samples_per_s = clamp_figure(q.samples_per_s, DDTS_MAX_PROGRESS_RATE);
    q.elapsed_s = clamp_figure(q.elapsed_s, DDTS_MAX_PROGRESS_SECONDS);
    uint8_t m[DDTS_WIRE_PROGRESS_BYTES];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_progress_encode(&w, &q);
    enum ddts_status st = ddts_conn_send_w(sync->conn, &w, err);
    sync->progress_at = now;
    if (st != DDTS_OK)
        sync->progress_off = 1;
    return st;
}

enum ddts_status ddts_client_send_epoch(struct ddts_client_sync *sync,
                                        const struct ddts_wire_epoch *e, struct ddts_error *err)
{
    if (sync == NULL || e == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "epoch report: no connection or no report");
    if (sync->progress_off || sync->net_failure != DDTS_OK)
        return DDTS_OK;
    /* What the server's decoder accepts: the position clamped as for PROGRESS,
     * figures with names it refuses (or given twice) left out. */
    struct ddts_wire_epoch qs; /* 1.2 KB */
    struct ddts_wire_epoch *q = &qs;
    memset(q, 0, sizeof *q);
    q->fold = e->fold;
    q->n_folds = e->n_folds;
    if (q->n_folds > DDTS_MAX_PROGRESS_FOLDS || q->fold > q->n_folds ||
        (q->n_folds > 0 && q->fold == 0))
        q->fold = q->n_folds = 0;
    q->epochs = e->epochs < 1                          ? 1
                : e->epochs > DDTS_MAX_PROGRESS_EPOCHS ? DDTS_MAX_PROGRESS_EPOCHS
                                                       : e->epochs;
    q->epoch = e->epoch < 1 ? 1 : e->epoch > q->epochs ? q->epochs : e->epoch;
    for (uint32_t i = 0; i < e->n && i < DDTS_MAX_EPOCH_FIGURES; i++) {
        /* A slot filled without a NUL reads as a 65-byte name, which name_ok refuses. */
        char name[DDTS_MAX_EPOCH_NAME_BYTES + 2] = "";
        memcpy(name, e->names[i], strnlen(e->names[i], sizeof e->names[i]));
        int dup = ddts_wire_epoch_name_ok(name) != 0;
        for (uint32_t j = 0; !dup && j < q->n; j++)
            dup = strcmp(q->names[j], name) == 0;
        if (dup)
            continue;
        memcpy(q->names[q->n], name, strlen(name) + 1);
        q->values[q->n++] = e->values[i];
    }
    uint8_t m[DDTS_WIRE_EPOCH_MAX_BYTES];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_epoch_encode(&w, q);
    enum ddts_status st = ddts_conn_send_w(sync->conn, &w, err);
    if (st != DDTS_OK)
        sync->progress_off = 1;
    return st;
}

/* ---- heartbeats while training ---- */

struct heartbeat {
    struct ddts_conn *conn;
    double period;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    pthread_t thread;
};

static void *heartbeat_main(void *arg)
{
    struct heartbeat *hb = arg;
    pthread_mutex_lock(&hb->mu);
    while (!hb->stop) {
        ddts__cond_wait_for(&hb->cv, &hb->mu, hb->period);
        if (hb->stop)
            break;
        pthread_mutex_unlock(&hb->mu);
        enum ddts_status st = ddts_conn_heartbeat(hb->conn, NULL);
        pthread_mutex_lock(&hb->mu);
        if (st != DDTS_OK)
            break; /* the exchange or the upload will report the failure */
    }
    pthread_mutex_unlock(&hb->mu);
    return NULL;
}

/* ---- one connection ---- */

struct progress_ctx {
    const struct ddts_client_config *cfg;
    const char *what;
};

static int progress_cb(void *ud, uint64_t done, uint64_t total)
{
    struct progress_ctx *pc = ud;
    if (pc->cfg->progress != NULL)
        pc->cfg->progress(pc->cfg->userdata, pc->what, done, total);
    return 0;
}

struct job_msg {
    char job[DDTS_MAX_NAME_BYTES + 1];
    uint8_t job_id[ID_BYTES];
    char results_name[DDTS_MAX_NAME_BYTES + 17];
    uint32_t share, n_shares, sync_steps;
    uint8_t sync;
    uint64_t round;
    uint64_t share_rounds;
    double heartbeat;
    char *settings; /* owned */
};

static enum ddts_status parse_job(const uint8_t *p, size_t n, struct job_msg *j,
                                  struct ddts_error *err)
{
    struct ddts_wire_reader r;
    const uint8_t *set;
    size_t set_n;
    memset(j, 0, sizeof *j);
    ddts_wire_reader_init(&r, p, n);
    ddts_wire_get_str(&r, DDTS_MAX_NAME_BYTES, j->job, sizeof j->job);
    ddts_wire_get_raw(&r, j->job_id, ID_BYTES);
    ddts_wire_get_str(&r, sizeof j->results_name - 1, j->results_name, sizeof j->results_name);
    ddts_wire_get_u32(&r, &j->share);
    ddts_wire_get_u32(&r, &j->n_shares);
    ddts_wire_get_u8(&r, &j->sync);
    ddts_wire_get_u32(&r, &j->sync_steps);
    ddts_wire_get_u64(&r, &j->round);
    ddts_wire_get_f64(&r, &j->heartbeat);
    ddts_wire_get_bytes(&r, DDTS_MAX_SETTINGS_BYTES, &set, &set_n);
    ddts_wire_get_u64(&r, &j->share_rounds);
    enum ddts_status st = ddts_wire_reader_end(&r, "JOB", err);
    if (st == DDTS_OK && (ddts_wire_check_name(j->job, err) != DDTS_OK ||
                          ddts_wire_check_name(j->results_name, err) != DDTS_OK))
        st = DDTS_EPROTO;
    /* WORKDIR holds the job folders beside the client's own files: a job cannot be named
     * after one of them. */
    if (st == DDTS_OK && (strcmp(j->job, "current") == 0 || strcmp(j->job, "id") == 0 ||
                          strncmp(j->job, "current.", 8) == 0 || strncmp(j->job, "id.", 3) == 0))
        st = ddts_error_set(err, DDTS_EPROTO,
                            "JOB: job name '%s' is one of this client's own files", j->job);
    if (st == DDTS_OK && (j->share >= j->n_shares || j->sync > DDTS_SYNC_STEP ||
                          !(j->heartbeat > 0.01 && j->heartbeat < 3600)))
        st = ddts_error_set(err, DDTS_EPROTO, "JOB: share %u of %u, sync %u, heartbeat %g",
                            j->share, j->n_shares, j->sync, j->heartbeat);
    if (st == DDTS_OK && set_n > 0 && memchr(set, '\0', set_n) != NULL)
        st = ddts_error_set(err, DDTS_EPROTO, "JOB: settings contain a NUL byte");
    if (st == DDTS_OK) {
        j->settings = ddts_strndup(set_n ? (const char *)set : "", set_n);
        if (j->settings == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    return st;
}

/* Paths of one share: WORKDIR/<job>/ and WORKDIR/<job>/share_<i>/. */
struct share_paths {
    char *jobdir, *sharedir, *shard, *results, *init, *settings;
};

static void share_paths_free(struct share_paths *sp)
{
    ddts_free(sp->jobdir);
    ddts_free(sp->sharedir);
    ddts_free(sp->shard);
    ddts_free(sp->results);
    ddts_free(sp->init);
    ddts_free(sp->settings);
    memset(sp, 0, sizeof *sp);
}

static enum ddts_status share_paths_make(const char *workdir, const struct job_msg *j,
                                         struct share_paths *sp, struct ddts_error *err)
{
    char name[32];
    snprintf(name, sizeof name, "share_%u", j->share);
    memset(sp, 0, sizeof *sp);
    sp->jobdir = ddts_path_join(workdir, j->job);
    sp->sharedir = sp->jobdir ? ddts_path_join(sp->jobdir, name) : NULL;
    sp->shard = sp->sharedir ? ddts_path_join(sp->sharedir, "shard") : NULL;
    sp->results = sp->sharedir ? ddts_path_join(sp->sharedir, "results") : NULL;
    sp->init = sp->sharedir ? ddts_path_join(sp->sharedir, "init_weights.f32") : NULL;
    sp->settings = sp->jobdir ? ddts_path_join(sp->jobdir, "settings.json") : NULL;
    if (sp->settings == NULL || sp->init == NULL || sp->results == NULL || sp->shard == NULL) {
        share_paths_free(sp);
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    enum ddts_status st = ddts_mkdir_p(sp->results, err);
    if (st == DDTS_OK)
        (void)chmod(sp->jobdir, 0700); /* the share holds training data */
    if (st != DDTS_OK)
        share_paths_free(sp);
    return st;
}

/* Receives the files after JOB until FILES_DONE. */
static enum ddts_status recv_files(struct client *cl, struct ddts_conn *c,
                                   const struct share_paths *sp, int *got_init, int *got_shard,
                                   struct ddts_error *err)
{
    uint32_t files = 0;
    for (;;) {
        struct ddts__file_begin fb;
        int done;
        enum ddts_status st = ddts__recv_file_begin(c, files, &fb, &done, err);
        if (st != DDTS_OK || done)
            return st;
        uint8_t kind = fb.kind;
        const char *rel = fb.rel;
        uint64_t size = fb.size;
        char *path = NULL;
        if (kind == DDTS_FILE_MODEL && strchr(rel, '/') == NULL && strncmp(rel, "model", 5) == 0 &&
            strlen(rel) < sizeof cl->held.model) {
            path = ddts_path_join(sp->jobdir, rel);
            snprintf(cl->held.model, sizeof cl->held.model, "%.*s", (int)sizeof cl->held.model - 1,
                     rel);
        } else if (kind == DDTS_FILE_SHARD) {
            path = ddts_path_join(sp->shard, rel);
            *got_shard = 1;
        } else if (kind == DDTS_FILE_INIT_WEIGHTS && strcmp(rel, "init_weights.f32") == 0) {
            path = ddts_strdup(sp->init);
            *got_init = 1;
        } else {
            return ddts_error_set(err, DDTS_EPROTO, "file '%s' of kind %u is not expected", rel,
                                  kind);
        }
        if (path == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        struct progress_ctx pc = {cl->cfg, rel};
        st = ddts__mkdir_parent(path, err);
        if (st == DDTS_OK)
            st = ddts_conn_recv_file_data(c, path, size, progress_cb, &pc, err);
        ddts_free(path);
        if (st != DDTS_OK)
            return st;
        files++;
    }
}

static enum ddts_status upload_results(struct client *cl, struct ddts_conn *c, const char *dir,
                                       struct ddts_error *err)
{
    struct ddts__file_list fl = {0};
    enum ddts_status st = ddts__list_files(dir, "", &fl, 0, err);
    struct progress_ctx pc = {cl->cfg, "results"};
    for (size_t i = 0; st == DDTS_OK && i < fl.n; i++) {
        char *path = ddts_path_join(dir, fl.rel[i]);
        pc.what = fl.rel[i];
        st = path == NULL
                 ? ddts_error_set(err, DDTS_ENOMEM, "out of memory")
                 : ddts_conn_send_file(c, DDTS_FILE_RESULT, path, fl.rel[i], progress_cb, &pc, err);
        ddts_free(path);
    }
    if (st == DDTS_OK) {
        uint8_t m[8];
        struct ddts_wire_writer w;
        ddts_wire_writer_init(&w, m, sizeof m);
        ddts_wire_put_u8(&w, DDTS_MSG_FILES_DONE);
        ddts_wire_put_u32(&w, (uint32_t)fl.n);
        st = ddts_conn_send_w(c, &w, err);
    }
    const uint8_t *p;
    size_t n;
    if (st == DDTS_OK)
        st = ddts_conn_expect(c, DDTS_MSG_RECEIPT, &p, &n, err);
    if (st == DDTS_OK) {
        struct ddts_wire_reader r;
        uint32_t files;
        uint64_t bytes;
        ddts_wire_reader_init(&r, p, n);
        ddts_wire_get_u32(&r, &files);
        ddts_wire_get_u64(&r, &bytes);
        st = ddts_wire_reader_end(&r, "RECEIPT", err);
        if (st == DDTS_OK && files != fl.n)
            st = ddts_error_set(err, DDTS_EPROTO, "receipt for %u files, %zu sent", files, fl.n);
        if (st == DDTS_OK)
            ddts_log(cl->log, DDTS_LOG_INFO,
                     "server confirmed receipt of %u result files (%" PRIu64 " bytes)", files,
                     bytes);
    }
    ddts__file_list_free(&fl);
    return st;
}

/*
 * Runs one share on an authenticated connection, from JOB to RECEIPT.
 * *train_status receives the callback's status when it ran.
 */
static enum ddts_status run_share(struct client *cl, struct ddts_conn *c, const uint8_t *p,
                                  size_t n, enum ddts_status *train_status,
                                  struct ddts_error *train_err, struct ddts_error *err)
{
    const struct ddts_client_config *cfg = cl->cfg;
    struct job_msg j;
    struct share_paths sp = {0};
    enum ddts_status st = parse_job(p, n, &j, err);
    if (st == DDTS_OK)
        st = share_paths_make(cfg->workdir, &j, &sp, err);
    if (st != DDTS_OK)
        goto out;
    int same = strcmp(cl->held.job, j.job) == 0 &&
               memcmp(cl->held.job_id, j.job_id, ID_BYTES) == 0 && cl->held.share == j.share;
    if (!same) {
        char keep_model[sizeof cl->held.model];
        int same_job = memcmp(cl->held.job_id, j.job_id, ID_BYTES) == 0;
        snprintf(keep_model, sizeof keep_model, "%s", same_job ? cl->held.model : "");
        memset(&cl->held, 0, sizeof cl->held);
        snprintf(cl->held.job, sizeof cl->held.job, "%s", j.job);
        memcpy(cl->held.job_id, j.job_id, ID_BYTES);
        cl->held.share = j.share;
        snprintf(cl->held.model, sizeof cl->held.model, "%s", keep_model);
    }
    ddts_log(cl->log, DDTS_LOG_INFO, "job '%s': share %u of %u, round %" PRIu64 "%s", j.job,
             j.share, j.n_shares, j.round,
             (cl->held.flags & F_TRAINED) ? " (already trained)" : "");
    if ((st = ddts_write_file_atomic(sp.settings, j.settings, strlen(j.settings), err)) != DDTS_OK)
        goto out;
    int got_init = 0, got_shard = 0;
    if ((st = recv_files(cl, c, &sp, &got_init, &got_shard, err)) != DDTS_OK)
        goto out;
    cl->held.flags |= F_FILES;
    cl->held.flags &= ~F_RECEIVED;
    if ((st = save_held(cl, err)) != DDTS_OK)
        goto out;
    if ((st = ddts_conn_send(c, DDTS_MSG_READY, NULL, 0, err)) != DDTS_OK)
        goto out;
    if (!(cl->held.flags & F_TRAINED)) {
        struct stat sb;
        char *model = cl->held.model[0] ? ddts_path_join(sp.jobdir, cl->held.model) : NULL;
        struct ddts_client_job job = {
            .job = j.job,
            .client_name = j.results_name,
            .settings_json = j.settings,
            .model_path = model,
            .shard_dir = (got_shard || stat(sp.shard, &sb) == 0) ? sp.shard : NULL,
            .result_dir = sp.results,
            .init_weights_path = got_init ? sp.init : NULL,
            .shard = j.share,
            .n_shards = j.n_shares,
            .sync = (enum ddts_sync_mode)j.sync,
            .sync_steps = j.sync_steps,
            .round = j.round,
            .share_rounds = j.share_rounds,
        };
        struct ddts_client_sync sync = {
            .conn = c, .round = j.round, .net_failure = DDTS_OK, .log = cl->log};
        struct heartbeat hb = {.conn = c, .period = j.heartbeat};
        pthread_mutex_init(&hb.mu, NULL);
        /* Without the heartbeat thread (it could not start), training still runs. */
        int hb_cv = ddts__cond_init(&hb.cv) == 0;
        int hb_running = hb_cv && pthread_create(&hb.thread, NULL, heartbeat_main, &hb) == 0;
        ddts_error_clear(train_err);
        enum ddts_status ts = cfg->train(cfg->userdata, &job, &sync, train_err);
        if (hb_running) {
            pthread_mutex_lock(&hb.mu);
            hb.stop = 1;
            pthread_cond_signal(&hb.cv);
            pthread_mutex_unlock(&hb.mu);
            pthread_join(hb.thread, NULL);
        }
        pthread_mutex_destroy(&hb.mu);
        if (hb_cv)
            pthread_cond_destroy(&hb.cv);
        ddts_free(model);
        if (sync.net_failure != DDTS_OK) {
            /* The connection broke during an exchange: reconnect and train again. */
            st = ddts_error_set(err, sync.net_failure, "connection lost during training: %s",
                                train_err->msg);
            goto out;
        }
        if (ts != DDTS_OK && train_err->status == DDTS_OK)
            ddts_error_set(train_err, ts, "training failed (%s)", ddts_status_str(ts));
        cl->held.flags |= F_TRAINED;
        cl->held.status = (int)ts;
        if ((st = save_held(cl, err)) != DDTS_OK)
            goto out;
        if (ts != DDTS_OK)
            ddts_log(cl->log, DDTS_LOG_ERROR, "training failed: %s", train_err->msg);
    } else if (cl->held.status != 0) {
        ddts_error_set(train_err, (enum ddts_status)cl->held.status, "training failed earlier (%s)",
                       ddts_status_str((enum ddts_status)cl->held.status));
    }
    *train_status = (enum ddts_status)cl->held.status;
    uint8_t m[DDTS_ERROR_MSG_MAX + 16];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_put_u8(&w, DDTS_MSG_TRAINED);
    ddts_wire_put_u32(&w, (uint32_t)cl->held.status);
    ddts_wire_put_str(&w, cl->held.status ? train_err->msg : "");
    if ((st = ddts_conn_send_w(c, &w, err)) != DDTS_OK)
        goto out;
    if ((st = upload_results(cl, c, sp.results, err)) != DDTS_OK)
        goto out;
    cl->held.flags |= F_RECEIVED;
    st = save_held(cl, err);
out:
    ddts_free(j.settings);
    share_paths_free(&sp);
    return st;
}

/* One connection's life. *fatal is set for failures that retrying cannot fix. */
static enum ddts_status run_connection(struct client *cl, int *fatal,
                                       enum ddts_status *train_status, struct ddts_error *train_err,
                                       struct ddts_error *err)
{
    const struct ddts_client_config *cfg = cl->cfg;
    struct ddts_conn *c = NULL;
    uint16_t port = cfg->port ? cfg->port : DDTS_DEFAULT_PORT;
    enum ddts_status st = ddts_conn_connect(
        cfg->host, port, cfg->connect_timeout_s > 0 ? cfg->connect_timeout_s : 10, &c, err);
    if (st != DDTS_OK) {
        *fatal = st == DDTS_ENOTFOUND;
        return st;
    }
    ddts_conn_set_timeout(c, cfg->io_timeout_s > 0 ? cfg->io_timeout_s : DDTS_IO_TIMEOUT_S);
    st = ddts_conn_handshake(c, DDTS_ROLE_CLIENT, cfg->passphrase, DDTS_OK, err);
    if (st != DDTS_OK) {
        *fatal = st == DDTS_EAUTH || st == DDTS_EBANNED || st == DDTS_EUNSUPPORTED;
        ddts_conn_destroy(c);
        return st;
    }
    uint8_t m[128];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_put_u8(&w, DDTS_MSG_JOIN);
    ddts_wire_put_raw(&w, cl->id, ID_BYTES);
    ddts_wire_put_str(&w, cl->name);
    ddts_wire_put_str(&w, cl->held.job);
    ddts_wire_put_raw(&w, cl->held.job_id, ID_BYTES);
    ddts_wire_put_u32(&w, cl->held.share);
    ddts_wire_put_u8(&w, (uint8_t)cl->held.flags);
    st = ddts_conn_send_w(c, &w, err);
    if (st == DDTS_OK)
        ddts_log(cl->log, DDTS_LOG_INFO,
                 "joined: waiting for a share (a job starts once every client has joined)");
    while (st == DDTS_OK) {
        uint8_t type;
        const uint8_t *p;
        size_t n;
        st = ddts_conn_recv(c, &type, &p, &n, err);
        if (st != DDTS_OK)
            break;
        if (type == DDTS_MSG_DONE) {
            ddts_log(cl->log, DDTS_LOG_INFO, "the server says the job is complete");
            *fatal = 1; /* nothing to retry: done */
            break;
        }
        if (type != DDTS_MSG_JOB) {
            st = ddts_error_set(err, DDTS_EPROTO, "expected JOB or DONE, got %s",
                                ddts_msg_str(type));
            break;
        }
        st = run_share(cl, c, p, n, train_status, train_err, err);
        if (st != DDTS_OK)
            break;
        if (*train_status != DDTS_OK || cfg->one_share) {
            *fatal = 1;
            break;
        }
        st = ddts_conn_send(c, DDTS_MSG_NEXT, NULL, 0, err);
        if (st == DDTS_OK)
            ddts_log(cl->log, DDTS_LOG_INFO,
                     "waiting for another share or the end of the job (the other clients)");
    }
    /* EEXIST is worth retrying: after a drop, the server keeps our old session until it
     * times out. */
    /* After the handshake, a frame that fails authentication (EAUTH) was damaged or
     * tampered with on the way: a connection error like a drop, worth a reconnect. */
    if (st == DDTS_EPROTO || st == DDTS_ELIMIT || st == DDTS_ENOMEM || st == DDTS_EINVAL ||
        st == DDTS_EFORMAT)
        *fatal = 1;
    if (st == DDTS_OK || st == DDTS_ECLOSED)
        ddts_conn_close(c);
    else
        ddts_conn_destroy(c);
    return st;
}

enum ddts_status ddts_client_run(const struct ddts_client_config *cfg, struct ddts_error *err)
{
    if (cfg->host == NULL || cfg->passphrase == NULL || cfg->workdir == NULL || cfg->train == NULL)
        return ddts_error_set(err, DDTS_EINVAL,
                              "client: server address, passphrase, workdir and train are required");
    enum ddts_status st = ddts_auth_init(err);
    if (st != DDTS_OK)
        return st;
    if ((st = ddts_mkdir_p(cfg->workdir, err)) != DDTS_OK)
        return st;
    struct client cl;
    memset(&cl, 0, sizeof cl);
    cl.cfg = cfg;
    cl.log = cfg->logger;
    if ((st = load_or_create_id(&cl, err)) != DDTS_OK)
        return st;
    if (cfg->name != NULL) {
        if ((st = ddts_wire_check_name(cfg->name, err)) != DDTS_OK) {
            ddts_error_prefix(err, "client name: ");
            return st;
        }
        snprintf(cl.name, sizeof cl.name, "%s", cfg->name);
    } else {
        char hexid[2 * ID_BYTES + 1];
        ddts__hex(cl.id, ID_BYTES, hexid);
        snprintf(cl.name, sizeof cl.name, "client-%.8s", hexid);
    }
    cl.state_path = ddts_path_join(cfg->workdir, "current");
    if (cl.state_path == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    load_held(&cl);
    struct ddts_error train_err;
    ddts_error_clear(&train_err);
    enum ddts_status train_status = DDTS_OK;
    for (unsigned attempt = 0;; attempt++) {
        int fatal = 0;
        st = run_connection(&cl, &fatal, &train_status, &train_err, err);
        if (fatal || attempt >= cfg->retries)
            break;
        ddts_log(cl.log, DDTS_LOG_WARN,
                 "%s; waiting for the server: reconnecting in %.1f s (attempt %u of %u)",
                 err ? err->msg : ddts_status_str(st), cfg->retry_s, attempt + 1, cfg->retries);
        if (cfg->retry_s > 0) {
            struct timespec ts = {(time_t)cfg->retry_s,
                                  (long)((cfg->retry_s - (double)(time_t)cfg->retry_s) * 1e9)};
            nanosleep(&ts, NULL);
        }
    }
    ddts_free(cl.state_path);
    if (st == DDTS_OK && train_status != DDTS_OK) {
        if (err != NULL)
            *err = train_err;
        return train_status;
    }
    return st;
}
