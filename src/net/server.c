/*
 * The job server (docs/protocol.md, "A client's life").
 *
 * One thread accepts connections and watches deadlines; each connection gets
 * its own thread (a session). All job state lives in `struct server` under
 * one mutex, which is never held across network I/O, so a slow or hostile
 * client only ever blocks its own thread. Waiting sessions sleep on a
 * condition variable and wake every heartbeat period to send a heartbeat.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "ddts/client.h"
#include "ddts/fs.h"
#include "ddts/limits.h"
#include "conn.h"
#include "ddts/server.h"
#include "wire.h"
#include "netutil.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "ddts sends float32 vectors in host order, which must be little-endian"
#endif

#define ID_BYTES    16
#define RNAME_BYTES (DDTS_MAX_NAME_BYTES + 16)
#define STATE_MAGIC "ddts-server-state 1"
/* Seconds the server keeps retrying to save the global weights before it fails the job. */
#define SAVE_RETRY_S 10.0
/* Seconds the server waits, once the job is complete, for clients to leave. */
#define COMPLETE_GRACE_S 5.0

enum shard_state { SH_FREE, SH_ASSIGNED, SH_DONE };

struct result {
    float *v; /* (n) */
    uint64_t n;
    uint64_t round;
    uint64_t total_samples;
    unsigned refs; /* sessions that still have to send it */
};

struct session;

struct shard {
    enum shard_state state;
    int has_owner;
    uint8_t owner[ID_BYTES];
    char results_name[RNAME_BYTES];
    struct session *sess; /* live session holding it, or NULL */
    int training;         /* JOB sent, TRAINED not yet: a round participant */
    uint64_t first_seq;   /* required in rounds with seq >= this */
    uint64_t contrib_seq; /* seq + 1 of the last round it contributed to */
    double ready_at;
    double orphan_since;  /* its session left at this time (0: it has one or never had) */
    int lost;             /* given up by a deadline: reassignable at once */
    int status;           /* training status reported with TRAINED */
    uint64_t rounds_done; /* weight rounds contributed to, by any holder (sent in JOB) */
};

struct session {
    struct server *srv;
    struct ddts_conn *conn;
    pthread_t thread;
    int finished; /* the thread is done: the accept loop joins it */
    int joined;
    uint8_t id[ID_BYTES];
    char name[DDTS_MAX_NAME_BYTES + 1];
    char addr[64];
    char key[DDTS__ADDR_KEY_BYTES]; /* the address as counted for limits and bans */
    double deadline;                /* to get a turn by, then to authenticate by (ddts_now()) */
    long shard;
    int timed_out;      /* ended by silence: its share is reassignable at once */
    struct result *res; /* the round result to send, set when the round completes */
    struct session *next;
    /* The live view (on_client); written by the session's own thread only, except lost. */
    uint64_t number; /* connection number */
    enum ddts_client_state state;
    int lost; /* check_deadlines gave up on it (under mu) */
    /* Progress-based liveness (under mu): a client of protocol 2 or later that trains
     * reports PROGRESS; one whose training does not advance for client_timeout is lost
     * even though its heartbeats arrive. 0: not training, or waiting for a round. */
    int reports_progress;
    double alive_at;
    int has_progress;
    struct ddts_wire_progress progress;
    double progress_at;
    char failure[DDTS_ERROR_MSG_MAX]; /* the error text of its last failed share */
};

/* An address as the server counts it (ddts__addr_key): limits, failures, bans. */
struct peer {
    char key[DDTS__ADDR_KEY_BYTES];
    unsigned fails;   /* real failed attempts since the last ban */
    double until;     /* banned while ddts_now() < until (1e300: for the job) */
    int busy;         /* a handshake from this address is in progress */
    unsigned pending; /* its unauthenticated connections with a thread */
    unsigned queued;  /* its connections waiting for a turn (struct queued) */
    double warn_at;   /* rate limit of its warning lines */
    unsigned warned, suppressed;
    struct peer *next;
};

/* An accepted socket waiting for its address's turn (the accept thread's). */
struct queued {
    int fd;
    double wait_until; /* closed if its turn has not come by then (ddts_now() time) */
    char key[DDTS__ADDR_KEY_BYTES];
};

/* Refused sockets kept until the peer read its HELLO_S (see refuse_banned). */
#define LINGER_SLOTS 32

struct server {
    const struct ddts_server_config *cfg;
    const struct ddts_logger *log;
    char *jobdir;
    char *state_path;
    char *weights_path;
    double client_timeout;
    double io_timeout;
    double turn_wait; /* the bound on a connection's wait for its address's handshake turn */
    double heartbeat;
    unsigned ban_after;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    /* Job state (under mu). */
    uint8_t job_id[ID_BYTES];
    size_t n_shards;
    struct shard *shards;
    int started;
    uint64_t round;    /* weight-averaging rounds completed */
    uint64_t n_floats; /* length of the global weights (0: none yet) */
    /* What global/weights.f32 holds: the accept thread writes it off the rounds' path. */
    uint64_t saved_round, saved_n;
    struct result *pending; /* latest weights not yet written (kept until a write succeeds) */
    int state_dirty;        /* the state file lags behind saved_round */
    int save_failing;       /* the last write failed (logged once until it succeeds) */
    struct ddts_error save_err;
    pthread_mutex_t flush_mu; /* one writer of weights.f32 at a time, in round order */
    int complete;
    int stopping;
    /* The open round. */
    int open;
    uint64_t seq; /* rounds of any kind completed */
    uint8_t op, flags;
    uint64_t n;
    double *acc; /* (n, 2) running sum as hi + lo (double-double), or min/max in hi */
    uint64_t total_samples;
    unsigned n_contrib;
    double opened_at;
    /* Connections. */
    struct session *sessions;
    size_t n_sessions;
    uint64_t n_accepted; /* connections accepted so far (the accept thread's) */
    /* Before authentication (under mu). */
    struct peer *peers;
    size_t n_peers;
    unsigned n_preauth;                              /* unauthenticated connections */
    double fail_times[DDTS_MAX_FAILED_AUTH_PER_MIN]; /* last failed attempts (a ring) */
    size_t fail_next;
    char *bans_path;
    struct queued queue[DDTS_MAX_QUEUED]; /* in order of arrival */
    size_t n_queued;
    int linger_fd[LINGER_SLOTS]; /* the accept thread's */
    double linger_at[LINGER_SLOTS];
};

/* ---- small helpers ---- */

static void timed_wait(struct server *srv, double seconds)
{
    ddts__cond_wait_for(&srv->cv, &srv->mu, seconds);
}

/* ---- the live view ---- */

const char *ddts_client_state_str(enum ddts_client_state s)
{
    switch (s) {
    case DDTS_CLIENT_WAITING:
        return "waiting";
    case DDTS_CLIENT_SENDING:
        return "sending";
    case DDTS_CLIENT_TRAINING:
        return "training";
    case DDTS_CLIENT_SYNCING:
        return "syncing";
    case DDTS_CLIENT_UPLOADING:
        return "uploading";
    case DDTS_CLIENT_DONE:
        return "done";
    case DDTS_CLIENT_FAILED:
        return "failed";
    case DDTS_CLIENT_LEFT:
        return "left";
    case DDTS_CLIENT_LOST:
        return "lost";
    }
    return "?";
}

double ddts_server_client_eta(const struct ddts_server_client *c, double now)
{
    if (c == NULL || !c->has_progress)
        return NAN;
    const struct ddts_wire_progress *p = &c->progress;
    if (!isfinite(p->samples_per_s) || p->samples_per_s <= 0)
        return NAN;
    double total = (double)p->total;
    double done = p->done < p->total ? (double)p->done : total;
    double epochs_after = p->epoch < p->epochs ? (double)(p->epochs - p->epoch) : 0;
    double folds_after = p->fold < p->n_folds ? (double)(p->n_folds - p->fold) : 0;
    /* Samples left: this epoch's, the later epochs', the later folds' (each all epochs). */
    double left = total - done + epochs_after * total + folds_after * (double)p->epochs * total;
    double eta = left / p->samples_per_s - (now - c->progress_at);
    return eta > 0 ? eta : 0;
}

/* Sets the session's state and tells on_client (from the session's thread, mu not held). */
static void notify(struct session *se, enum ddts_client_state state)
{
    struct server *srv = se->srv;
    se->state = state;
    if (srv->cfg->on_client == NULL || !se->joined)
        return;
    pthread_mutex_lock(&srv->mu);
    long share = se->shard;
    pthread_mutex_unlock(&srv->mu);
    struct ddts_server_client c = {
        .session = se->number,
        .id = se->id,
        .name = se->name,
        .address = se->addr,
        .state = state,
        .share = share,
        .has_progress = se->has_progress,
        .progress = se->progress,
        .progress_at = se->progress_at,
        .error = state == DDTS_CLIENT_FAILED ? se->failure : NULL,
    };
    srv->cfg->on_client(srv->cfg->userdata, &c);
}

/* A PROGRESS report while training: checked, kept, passed on. */
static enum ddts_status handle_progress(struct session *se, const uint8_t *p, size_t n,
                                        struct ddts_error *err)
{
    struct ddts_wire_progress prog;
    enum ddts_status st = ddts_wire_progress_decode(p, n, &prog, err);
    if (st != DDTS_OK)
        return st;
    const struct ddts_wire_progress *o = &se->progress;
    int advanced = !se->has_progress || prog.fold != o->fold || prog.epoch != o->epoch ||
                   prog.done != o->done || prog.flags != o->flags;
    if (advanced) {
        pthread_mutex_lock(&se->srv->mu);
        if (se->alive_at > 0)
            se->alive_at = ddts_now();
        pthread_mutex_unlock(&se->srv->mu);
    }
    se->progress = prog;
    se->has_progress = 1;
    se->progress_at = ddts_now();
    notify(se, DDTS_CLIENT_TRAINING);
    return DDTS_OK;
}

/* An EPOCH report (protocol 3): checked and passed on; the server keeps nothing of it. */
static enum ddts_status handle_epoch(struct session *se, const uint8_t *p, size_t n,
                                     struct ddts_error *err)
{
    /* A version-2 client never sends it: from one it is a violation, as any
     * message its version does not have. */
    if (ddts__conn_version(se->conn) < 3)
        return ddts_error_set(err, DDTS_EPROTO, "unexpected EPOCH while training (protocol %u)",
                              (unsigned)ddts__conn_version(se->conn));
    struct ddts_wire_epoch *e = ddts_malloc(sizeof *e);
    if (e == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    enum ddts_status st = ddts_wire_epoch_decode(p, n, e, err);
    struct server *srv = se->srv;
    if (st == DDTS_OK && srv->cfg->on_epoch != NULL) {
        pthread_mutex_lock(&srv->mu);
        long share = se->shard;
        pthread_mutex_unlock(&srv->mu);
        struct ddts_server_client c = {
            .session = se->number,
            .id = se->id,
            .name = se->name,
            .address = se->addr,
            .state = se->state,
            .share = share,
            .has_progress = se->has_progress,
            .progress = se->progress,
            .progress_at = se->progress_at,
        };
        srv->cfg->on_epoch(srv->cfg->userdata, &c, e);
    }
    ddts_free(e);
    return st;
}

/* ---- persistence ---- */

/* Writes the state file atomically; caller holds mu. */
static enum ddts_status save_state(struct server *srv, struct ddts_error *err)
{
    struct ddts_atomic_file f;
    enum ddts_status st = ddts_atomic_open(&f, srv->state_path, err);
    if (st != DDTS_OK)
        return st;
    char idhex[2 * ID_BYTES + 1];
    ddts__hex(srv->job_id, ID_BYTES, idhex);
    fprintf(f.fp,
            "%s\njob_id %s\nn_shards %zu\nstarted %d\nround %" PRIu64 "\nn_floats %" PRIu64 "\n",
            STATE_MAGIC, idhex, srv->n_shards, srv->started, srv->saved_round, srv->saved_n);
    static const char *names[] = {"free", "assigned", "done"};
    for (size_t i = 0; i < srv->n_shards; i++) {
        const struct shard *s = &srv->shards[i];
        char owner[2 * ID_BYTES + 1] = "-";
        if (s->has_owner)
            ddts__hex(s->owner, ID_BYTES, owner);
        fprintf(f.fp, "shard %zu %s %s %s %d %" PRIu64 "\n", i, names[s->state], owner,
                s->results_name[0] ? s->results_name : "-", s->status, s->rounds_done);
    }
    return ddts_atomic_commit(&f, err);
}

static enum ddts_status load_state(struct server *srv, struct ddts_error *err)
{
    char *text = NULL;
    size_t len = 0;
    enum ddts_status st = ddts_read_file(srv->state_path, 64u << 20, &text, &len, err);
    if (st != DDTS_OK)
        return st;
    char *save = NULL;
    int line_no = 0;
    st = DDTS_OK;
    for (char *line = strtok_r(text, "\n", &save); line != NULL && st == DDTS_OK;
         line = strtok_r(NULL, "\n", &save)) {
        line_no++;
        char key[32], a[RNAME_BYTES], b[RNAME_BYTES], c[RNAME_BYTES];
        unsigned long long v = 0, idx = 0;
        int status = 0;
        if (line_no == 1) {
            if (strcmp(line, STATE_MAGIC) != 0)
                st = ddts_error_set(err, DDTS_EFORMAT, "%s: not a ddts server state file",
                                    srv->state_path);
            continue;
        }
        unsigned long long done_rounds = 0;
        /* Our own state file; idx is range-checked below. */
        const char *fmt = "shard %llu %79s %79s %79s %d %llu";
        int fields =
            sscanf(line, fmt, &idx, a, b, c, &status, &done_rounds); /* NOLINT(cert-err34-c) */
        if (fields >= 5) {
            if (idx >= srv->n_shards) {
                st = ddts_error_set(err, DDTS_EFORMAT, "%s:%d: share %llu out of range",
                                    srv->state_path, line_no, idx);
                break;
            }
            struct shard *s = &srv->shards[idx];
            s->state = strcmp(a, "done") == 0       ? SH_DONE
                       : strcmp(a, "assigned") == 0 ? SH_ASSIGNED
                                                    : SH_FREE;
            s->has_owner = strcmp(b, "-") != 0 && ddts__unhex(b, s->owner, ID_BYTES) == 0;
            if (strcmp(c, "-") != 0 && ddts_wire_check_name(c, NULL) == DDTS_OK)
                snprintf(s->results_name, sizeof s->results_name, "%s", c);
            s->status = status;
            s->rounds_done = fields == 6 ? (uint64_t)done_rounds : 0;
            /* Reserved for its owner for one client timeout after the restart. */
            s->orphan_since = s->state == SH_ASSIGNED ? ddts_now() : 0;
        } else if (sscanf(line, "job_id %79s", a) == 1) {
            if (ddts__unhex(a, srv->job_id, ID_BYTES) != 0)
                st = ddts_error_set(err, DDTS_EFORMAT, "%s:%d: bad job id", srv->state_path,
                                    line_no);
            /* NOLINTNEXTLINE(cert-err34-c): own state file, values checked below */
        } else if (sscanf(line, "%31s %llu", key, &v) == 2) {
            if (strcmp(key, "n_shards") == 0 && v != srv->n_shards)
                st = ddts_error_set(err, DDTS_EINVAL,
                                    "%s: the saved job has %llu shares, the configuration %zu",
                                    srv->state_path, v, srv->n_shards);
            else if (strcmp(key, "started") == 0)
                srv->started = v != 0;
            else if (strcmp(key, "round") == 0)
                srv->round = srv->saved_round = v;
            else if (strcmp(key, "n_floats") == 0)
                srv->n_floats = srv->saved_n = v;
        } else {
            st = ddts_error_set(err, DDTS_EFORMAT, "%s:%d: unreadable line", srv->state_path,
                                line_no);
        }
    }
    ddts_free(text);
    return st;
}

/* ---- shares ---- */

static int all_done(const struct server *srv)
{
    for (size_t i = 0; i < srv->n_shards; i++)
        if (srv->shards[i].state != SH_DONE)
            return 0;
    return 1;
}

static int results_name_taken(const struct server *srv, size_t i, const char *name)
{
    for (size_t k = 0; k < srv->n_shards; k++)
        if (k != i && strcmp(srv->shards[k].results_name, name) == 0)
            return 1;
    return 0;
}

/*
 * A results folder name for share i held by `name`: the name itself when no
 * other share uses it, else name-s<i>, else name-s<i>-2, -3, ...: one folder
 * per share, whatever names clients choose (a client named "x-s2" cannot make
 * two shares share a folder).
 */
static void pick_results_name(struct server *srv, size_t i, const char *name)
{
    struct shard *s = &srv->shards[i];
    char cand[RNAME_BYTES];
    snprintf(cand, sizeof cand, "%s", name);
    for (unsigned k = 1; results_name_taken(srv, i, cand); k++) {
        if (k == 1)
            snprintf(cand, sizeof cand, "%.50s-s%zu", name, i % 100000);
        else
            snprintf(cand, sizeof cand, "%.50s-s%zu-%u", name, i % 100000, k);
    }
    snprintf(s->results_name, sizeof s->results_name, "%s", cand);
}

/*
 * Makes share s a participant of the rounds from now on: required from the
 * next round if one is open, else from the coming one. It has client_timeout
 * after a round opens to download its share and catch up.
 */
static void participate(struct server *srv, struct shard *s)
{
    s->training = 1;
    s->ready_at = ddts_now();
    s->first_seq = srv->open ? srv->seq + 1 : srv->seq;
}

/*
 * Finds a share for a session (caller holds mu): its own share back, else a
 * free one, else one given up by its client. -1 when none.
 */
static long find_share(struct server *srv, struct session *se, int claims_trained)
{
    double now = ddts_now();
    for (size_t i = 0; i < srv->n_shards; i++) {
        struct shard *s = &srv->shards[i];
        if (s->has_owner && memcmp(s->owner, se->id, ID_BYTES) == 0 && s->sess == NULL &&
            (s->state == SH_ASSIGNED || (s->state == SH_DONE && claims_trained))) {
            s->sess = se;
            s->orphan_since = 0;
            s->lost = 0;
            participate(srv, s);
            return (long)i;
        }
    }
    long pick = -1;
    for (size_t i = 0; i < srv->n_shards && pick < 0; i++)
        if (srv->shards[i].state == SH_FREE)
            pick = (long)i;
    for (size_t i = 0; i < srv->n_shards && pick < 0; i++) {
        struct shard *s = &srv->shards[i];
        if (s->state == SH_ASSIGNED && s->sess == NULL &&
            (s->lost || now - s->orphan_since >= srv->client_timeout))
            pick = (long)i;
    }
    if (pick < 0)
        return -1;
    struct shard *s = &srv->shards[pick];
    if (s->state == SH_ASSIGNED)
        ddts_log(srv->log, DDTS_LOG_WARN, "share %ld: reassigned from '%s' to '%s'", pick,
                 s->results_name, se->name);
    s->state = SH_ASSIGNED;
    s->has_owner = 1;
    memcpy(s->owner, se->id, ID_BYTES);
    s->sess = se;
    s->orphan_since = 0;
    s->lost = 0;
    participate(srv, s);
    pick_results_name(srv, (size_t)pick, se->name);
    if (!srv->started) {
        int any_free = 0;
        for (size_t i = 0; i < srv->n_shards; i++)
            any_free |= srv->shards[i].state == SH_FREE;
        if (!any_free) {
            srv->started = 1;
            ddts_log(srv->log, DDTS_LOG_INFO, "all %zu shares given out: the job starts",
                     srv->n_shards);
            pthread_cond_broadcast(&srv->cv);
        }
    }
    struct ddts_error err;
    if (save_state(srv, &err) != DDTS_OK)
        ddts_log(srv->log, DDTS_LOG_ERROR, "cannot save the job state: %s", err.msg);
    return pick;
}

/* ---- rounds ---- */

static void close_round(struct server *srv)
{
    srv->open = 0;
    ddts_free(srv->acc);
    srv->acc = NULL;
    srv->n_contrib = 0;
    srv->total_samples = 0;
    srv->seq++;
}

/* Completes the open round when every required participant contributed. Caller holds mu. */
static void maybe_complete(struct server *srv)
{
    if (!srv->open)
        return;
    for (size_t i = 0; i < srv->n_shards; i++) {
        const struct shard *s = &srv->shards[i];
        if (s->training && s->sess != NULL && s->first_seq <= srv->seq &&
            s->contrib_seq != srv->seq + 1)
            return;
    }
    struct result *res = ddts_calloc(1, sizeof *res);
    float *v = ddts_mallocarray(srv->n, sizeof *v);
    if (res == NULL || v == NULL) {
        ddts_free(res);
        ddts_free(v);
        ddts_log(srv->log, DDTS_LOG_ERROR, "round %" PRIu64 ": out of memory", srv->seq);
        srv->stopping = 1;
        pthread_cond_broadcast(&srv->cv);
        return;
    }
    double total = (double)srv->total_samples;
    for (uint64_t i = 0; i < srv->n; i++) /* DDTS_REDUCE_MEAN divides by the samples */
        v[i] = (float)(srv->op == DDTS_REDUCE_MEAN ? (srv->acc[2 * i] + srv->acc[2 * i + 1]) / total
                                                   : srv->acc[2 * i] + srv->acc[2 * i + 1]);
    res->v = v;
    res->n = srv->n;
    res->total_samples = srv->total_samples;
    int weights = (srv->flags & DDTS_SYNC_WEIGHTS) != 0;
    if (weights) {
        srv->round++;
        for (size_t i = 0; i < srv->n_shards; i++)
            if (srv->shards[i].contrib_seq == srv->seq + 1)
                srv->shards[i].rounds_done++;
        srv->n_floats = srv->n;
        if (srv->cfg->on_round != NULL)
            srv->cfg->on_round(srv->cfg->userdata, srv->round, v, (size_t)srv->n);
        /* The accept thread writes it to disk (flush_weights), coalescing fast rounds. */
        if (srv->pending != NULL && --srv->pending->refs == 0) {
            ddts_free(srv->pending->v);
            ddts_free(srv->pending);
        }
        srv->pending = res;
        res->refs++;
    }
    res->round = srv->round;
    ddts_log(srv->log, DDTS_LOG_INFO,
             "%s %" PRIu64 " complete: %u contributions, %" PRIu64 " samples, %" PRIu64 " values",
             weights ? "round" : "reduction", weights ? srv->round : srv->seq, srv->n_contrib,
             srv->total_samples, srv->n);
    for (size_t i = 0; i < srv->n_shards; i++) {
        struct shard *s = &srv->shards[i];
        if (s->sess != NULL && s->contrib_seq == srv->seq + 1) {
            s->sess->res = res;
            res->refs++;
        }
    }
    if (res->refs == 0) {
        ddts_free(res->v);
        ddts_free(res);
    }
    close_round(srv);
    pthread_cond_broadcast(&srv->cv);
}

/*
 * Writes the latest global weights and the state (caller does not hold mu):
 * disk I/O stays off the path of the rounds, and rounds that complete faster
 * than the accept loop ticks are saved only once. A write that fails (a full
 * disk) keeps the round's weights in memory and is retried at the next tick;
 * the job does not end successfully until they are on disk. Returns whether
 * everything is saved.
 */
static int flush_weights(struct server *srv)
{
    pthread_mutex_lock(&srv->flush_mu);
    pthread_mutex_lock(&srv->mu);
    struct result *p = srv->pending;
    srv->pending = NULL;
    pthread_mutex_unlock(&srv->mu);
    struct ddts_error err;
    if (p != NULL) {
        enum ddts_status st =
            ddts_write_file_atomic(srv->weights_path, p->v, (size_t)p->n * sizeof *p->v, &err);
        pthread_mutex_lock(&srv->mu);
        if (st == DDTS_OK) {
            srv->saved_round = p->round;
            srv->saved_n = p->n;
            srv->state_dirty = 1;
            if (srv->save_failing)
                ddts_log(srv->log, DDTS_LOG_INFO, "round %" PRIu64 ": global weights saved",
                         p->round);
            srv->save_failing = 0;
        } else {
            if (!srv->save_failing)
                ddts_log(srv->log, DDTS_LOG_ERROR,
                         "round %" PRIu64 ": cannot save the global weights (kept in memory, "
                         "retrying): %s",
                         p->round, err.msg);
            srv->save_failing = 1;
            srv->save_err = err;
            if (srv->pending == NULL) { /* no newer round: keep this one for the retry */
                srv->pending = p;
                p = NULL;
            }
        }
        if (p != NULL && --p->refs == 0) {
            ddts_free(p->v);
            ddts_free(p);
        }
        pthread_mutex_unlock(&srv->mu);
    }
    pthread_mutex_lock(&srv->mu);
    if (srv->state_dirty) {
        if (save_state(srv, &err) == DDTS_OK) {
            srv->state_dirty = 0;
        } else if (!srv->save_failing) {
            ddts_log(srv->log, DDTS_LOG_ERROR, "cannot save the job state (retrying): %s", err.msg);
            srv->save_failing = 1;
            srv->save_err = err;
        }
    }
    int saved = srv->pending == NULL && !srv->state_dirty;
    pthread_mutex_unlock(&srv->mu);
    pthread_mutex_unlock(&srv->flush_mu);
    return saved;
}

/* Gives up the share of a training client (deadline or no progress). Caller holds mu. */
static void lose(struct server *srv, size_t i, double now)
{
    struct shard *s = &srv->shards[i];
    ddts_conn_shutdown(s->sess->conn);
    s->sess->lost = 1;
    s->sess->alive_at = 0;
    s->training = 0;
    s->lost = 1;
    s->sess->shard = -1;
    s->sess = NULL;
    s->orphan_since = now;
}

/*
 * Marks as lost the training clients whose training made no progress (no
 * advancing PROGRESS, no SYNC) for client_timeout, whatever the sync mode:
 * heartbeats alone do not keep a stuck client. Caller holds mu.
 */
static void check_progress(struct server *srv)
{
    double now = ddts_now();
    for (size_t i = 0; i < srv->n_shards; i++) {
        struct shard *s = &srv->shards[i];
        if (!s->training || s->sess == NULL || s->sess->alive_at <= 0 ||
            now - s->sess->alive_at < srv->client_timeout)
            continue;
        ddts_log(srv->log, DDTS_LOG_WARN,
                 "client '%s' (%s) made no training progress for %.1f s: marked lost, share %zu "
                 "released",
                 s->sess->name, s->sess->addr, srv->client_timeout, i);
        lose(srv, i, now);
    }
}

/* Marks participants that missed the round's deadline as lost. Caller holds mu. */
static void check_deadlines(struct server *srv)
{
    check_progress(srv);
    if (!srv->open)
        return;
    double now = ddts_now();
    for (size_t i = 0; i < srv->n_shards; i++) {
        struct shard *s = &srv->shards[i];
        if (!s->training || s->sess == NULL || s->first_seq > srv->seq ||
            s->contrib_seq == srv->seq + 1)
            continue;
        double since = s->ready_at > srv->opened_at ? s->ready_at : srv->opened_at;
        if (now - since < srv->client_timeout)
            continue;
        ddts_log(srv->log, DDTS_LOG_WARN,
                 "client '%s' (%s) missed the round deadline (%.1f s): marked lost, share %zu "
                 "released",
                 s->sess->name, s->sess->addr, srv->client_timeout, i);
        lose(srv, i, now);
    }
    maybe_complete(srv);
}

/* Releases the share a session holds (disconnect). Caller holds mu. */
static void release_share(struct server *srv, struct session *se)
{
    if (se->shard < 0)
        return;
    struct shard *s = &srv->shards[se->shard];
    if (s->sess == se) {
        s->sess = NULL;
        s->training = 0;
        if (s->state == SH_ASSIGNED && se->timed_out) {
            s->lost = 1;
            s->orphan_since = ddts_now();
            ddts_log(srv->log, DDTS_LOG_WARN,
                     "client '%s' (%s) silent for %.1f s: marked lost, share %ld released",
                     se->name, se->addr, srv->client_timeout, se->shard);
        } else if (s->state == SH_ASSIGNED) {
            s->orphan_since = ddts_now();
            ddts_log(srv->log, DDTS_LOG_WARN,
                     "client '%s' (%s) left holding share %ld; kept for it for %.1f s", se->name,
                     se->addr, se->shard, srv->client_timeout);
        }
    }
    se->shard = -1;
    maybe_complete(srv);
    pthread_cond_broadcast(&srv->cv);
}

/* ---- peers: limits before authentication, failures, bans ---- */

static struct peer *peer_find(struct server *srv, const char *key, int create)
{
    for (struct peer *p = srv->peers; p != NULL; p = p->next)
        if (strcmp(p->key, key) == 0)
            return p;
    if (!create)
        return NULL;
    if (srv->n_peers >= DDTS_MAX_PEERS) {
        /* Forget an idle address that is not banned to make room. */
        double now = ddts_now();
        for (struct peer **pp = &srv->peers; *pp != NULL; pp = &(*pp)->next) {
            struct peer *o = *pp;
            if (o->pending == 0 && o->queued == 0 && !o->busy && o->until <= now) {
                *pp = o->next;
                ddts_free(o);
                srv->n_peers--;
                break;
            }
        }
        if (srv->n_peers >= DDTS_MAX_PEERS)
            return NULL;
    }
    struct peer *p = ddts_calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    snprintf(p->key, sizeof p->key, "%s", key);
    p->next = srv->peers;
    srv->peers = p;
    srv->n_peers++;
    return p;
}

/*
 * Logs a warning about an address, at most DDTS_WARN_BURST lines per
 * DDTS_WARN_INTERVAL_S per address; the next line that passes says how many
 * were left out. Caller does not hold mu.
 */
DDTS_PRINTF(3, 4)
static void peer_warn(struct server *srv, const char *key, const char *fmt, ...)
{
    pthread_mutex_lock(&srv->mu);
    struct peer *p = peer_find(srv, key, 0);
    unsigned suppressed = 0;
    int ok = 1;
    if (p != NULL) {
        double now = ddts_now();
        if (now - p->warn_at >= DDTS_WARN_INTERVAL_S) {
            suppressed = p->suppressed;
            p->suppressed = 0;
            p->warned = 0;
            p->warn_at = now;
        }
        ok = p->warned < DDTS_WARN_BURST;
        if (ok)
            p->warned++;
        else
            p->suppressed++;
    }
    pthread_mutex_unlock(&srv->mu);
    if (!ok)
        return;
    char msg[DDTS_ERROR_MSG_MAX + 128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (suppressed > 0)
        ddts_log(srv->log, DDTS_LOG_WARN, "%s (and %u more from %s in the last %.0f s)", msg,
                 suppressed, key, DDTS_WARN_INTERVAL_S);
    else
        ddts_log(srv->log, DDTS_LOG_WARN, "%s", msg);
}

/* Failed authentication attempts of the whole job in the last minute. Caller holds mu. */
static size_t recent_failures(const struct server *srv, double now)
{
    size_t n = 0;
    for (size_t i = 0; i < DDTS_MAX_FAILED_AUTH_PER_MIN; i++)
        n += srv->fail_times[i] > 0 && now - srv->fail_times[i] < 60;
    return n;
}

enum admit { ADMIT_OK, ADMIT_QUEUE, ADMIT_BANNED, ADMIT_ADDR_FULL, ADMIT_FULL, ADMIT_GUESSES };

/*
 * Decides at accept, before any thread or allocation for the connection,
 * whether an unauthenticated connection from `key` may proceed; counts it
 * when it may. Caller holds mu.
 */
static enum admit admit(struct server *srv, const char *key)
{
    double now = ddts_now();
    struct peer *p = peer_find(srv, key, 1);
    if (p != NULL && p->until > now)
        return ADMIT_BANNED;
    if (recent_failures(srv, now) >= DDTS_MAX_FAILED_AUTH_PER_MIN)
        return ADMIT_GUESSES;
    if (p == NULL)
        return ADMIT_FULL;
    if (p->pending < DDTS_MAX_PREAUTH_PER_ADDR && srv->n_preauth < DDTS_MAX_PREAUTH) {
        p->pending++;
        srv->n_preauth++;
        return ADMIT_OK;
    }
    if (p->queued >= DDTS_MAX_QUEUED_PER_ADDR)
        return ADMIT_ADDR_FULL;
    if (srv->n_queued >= DDTS_MAX_QUEUED)
        return ADMIT_FULL;
    p->queued++;
    return ADMIT_QUEUE;
}

/* Writes WORKDIR/<job>/bans: the bans outlive a restart of the server. */
static void save_bans(struct server *srv)
{
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int oom = 0;
    pthread_mutex_lock(&srv->mu);
    double now = ddts_now();
    double wall = (double)time(NULL);
    for (struct peer *p = srv->peers; p != NULL && !oom; p = p->next) {
        if (p->until <= now)
            continue;
        char line[DDTS__ADDR_KEY_BYTES + 40];
        int n = p->until >= 1e299
                    ? snprintf(line, sizeof line, "%s forever\n", p->key)
                    : snprintf(line, sizeof line, "%s %.0f\n", p->key, wall + (p->until - now) + 1);
        if (len + (size_t)n + 1 > cap) {
            size_t ncap = cap ? 2 * cap : 1024;
            char *nb = ddts_realloc(buf, ncap);
            oom = nb == NULL;
            if (oom)
                break;
            buf = nb;
            cap = ncap;
        }
        memcpy(buf + len, line, (size_t)n);
        len += (size_t)n;
    }
    pthread_mutex_unlock(&srv->mu);
    struct ddts_error err;
    if (!oom && ddts_write_file_atomic(srv->bans_path, len ? buf : "", len, &err) != DDTS_OK)
        ddts_log(srv->log, DDTS_LOG_ERROR, "cannot save the bans: %s", err.msg);
    ddts_free(buf);
}

static enum ddts_status load_bans(struct server *srv, struct ddts_error *err)
{
    char *text = NULL;
    size_t len = 0;
    if (access(srv->bans_path, F_OK) != 0)
        return DDTS_OK;
    enum ddts_status st = ddts_read_file(srv->bans_path, 16u << 20, &text, &len, err);
    if (st != DDTS_OK)
        return st;
    double now = ddts_now(), wall = (double)time(NULL);
    char *save = NULL;
    size_t n = 0;
    for (char *line = strtok_r(text, "\n", &save); line != NULL;
         line = strtok_r(NULL, "\n", &save)) {
        char key[DDTS__ADDR_KEY_BYTES], when[32];
        /* Our own file: a malformed line is skipped. */
        if (sscanf(line, "%63s %31s", key, when) != 2)
            continue;
        char *end = NULL;
        double until = strcmp(when, "forever") == 0 ? 1e300 : strtod(when, &end);
        if (until < 1e299 && (end == NULL || *end != '\0' || !(until > wall)))
            continue;
        struct peer *p = peer_find(srv, key, 1);
        if (p == NULL)
            break;
        p->until = until >= 1e299 ? 1e300 : now + (until - wall);
        n++;
    }
    ddts_free(text);
    if (n > 0)
        ddts_log(srv->log, DDTS_LOG_INFO, "%zu addresses still banned (%s)", n, srv->bans_path);
    return DDTS_OK;
}

/*
 * Handshakes from one address run one at a time, so that parallel
 * connections cannot try more passphrases than ban_after before the ban
 * (each one is a few milliseconds). The wait does not count against the
 * connection's handshake deadline (which starts with its turn), only
 * against `wait_until`, the bound on the wait itself. Returns 1 when the
 * address is banned, -1 when wait_until passed while waiting, 0 to go ahead.
 */
static int handshake_begin(struct server *srv, const char *key, double wait_until)
{
    pthread_mutex_lock(&srv->mu);
    struct peer *p = peer_find(srv, key, 0);
    while (p != NULL && p->busy && !srv->stopping && ddts_now() < wait_until)
        timed_wait(srv, 0.2);
    int r = p != NULL && p->busy ? -1 : 0;
    if (p != NULL && r == 0) {
        p->busy = 1;
        r = p->until > ddts_now();
    }
    pthread_mutex_unlock(&srv->mu);
    return r;
}

/*
 * The end of an unauthenticated connection's life: `ran` when it held the
 * address's handshake turn, `failed` for a real failed attempt (a wrong
 * passphrase, or a stall past the deadline; garbage does not count).
 */
static void handshake_end(struct server *srv, const char *key, int ran, int failed)
{
    int banned = 0;
    pthread_mutex_lock(&srv->mu);
    struct peer *p = peer_find(srv, key, 0);
    double now = ddts_now();
    if (p != NULL) {
        if (ran)
            p->busy = 0;
        p->pending--;
    }
    srv->n_preauth--;
    pthread_cond_broadcast(&srv->cv);
    if (failed) {
        srv->fail_times[srv->fail_next] = now;
        srv->fail_next = (srv->fail_next + 1) % DDTS_MAX_FAILED_AUTH_PER_MIN;
    }
    if (p != NULL && failed && ++p->fails >= srv->ban_after && p->until <= now) {
        double len = srv->cfg->ban_s > 0 ? srv->cfg->ban_s : 1e300;
        p->until = srv->cfg->ban_s > 0 ? now + len : 1e300;
        p->fails = 0;
        banned = 1;
        if (srv->cfg->ban_s > 0)
            ddts_log(srv->log, DDTS_LOG_WARN,
                     "address %s banned for %.1f s after %u failed handshakes", key,
                     srv->cfg->ban_s, srv->ban_after);
        else
            ddts_log(srv->log, DDTS_LOG_WARN,
                     "address %s banned for the rest of the job after %u failed handshakes", key,
                     srv->ban_after);
    }
    pthread_mutex_unlock(&srv->mu);
    if (banned)
        save_bans(srv);
}

/*
 * Refuses a banned address at accept: a HELLO_S with status DDTS_EBANNED is
 * written without waiting (no thread, no allocation), and the socket is kept
 * only until the peer closes or 2 s pass, so the refusal is not lost to a
 * reset.
 */
static void refuse_banned(struct server *srv, int fd)
{
    uint8_t m[64];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m + DDTS_WIRE_HEADER_BYTES, sizeof m - DDTS_WIRE_HEADER_BYTES);
    ddts_wire_put_u8(&w, DDTS_MSG_HELLO_S);
    ddts_wire_put_raw(&w, DDTS_WIRE_MAGIC, DDTS_WIRE_MAGIC_BYTES);
    ddts_wire_put_u16(&w, DDTS_WIRE_VERSION);
    ddts_wire_put_u8(&w, (uint8_t)DDTS_EBANNED);
    ddts_wire_put_raw(&w, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    ddts_wire_frame_header_encode(m, (uint32_t)w.len);
    (void)!send(fd, m, w.len + DDTS_WIRE_HEADER_BYTES, MSG_NOSIGNAL | MSG_DONTWAIT);
    (void)shutdown(fd, SHUT_WR);
    for (size_t i = 0; i < LINGER_SLOTS; i++)
        if (srv->linger_fd[i] < 0) {
            srv->linger_fd[i] = fd;
            srv->linger_at[i] = ddts_now();
            return;
        }
    close(fd);
}

/* Closes refused sockets whose peer has gone, or that waited long enough. */
static void drain_refused(struct server *srv, int all)
{
    double now = ddts_now();
    for (size_t i = 0; i < LINGER_SLOTS; i++) {
        int fd = srv->linger_fd[i];
        if (fd < 0)
            continue;
        uint8_t junk[256];
        ssize_t r;
        while ((r = recv(fd, junk, sizeof junk, MSG_DONTWAIT)) > 0) {
        }
        if (all || r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ||
            now - srv->linger_at[i] > 2.0) {
            close(fd);
            srv->linger_fd[i] = -1;
        }
    }
}

/* ---- a session ---- */

/* Sends a heartbeat without holding mu; returns with mu held. */
static enum ddts_status heartbeat_unlocked(struct session *se, struct ddts_error *err)
{
    pthread_mutex_unlock(&se->srv->mu);
    enum ddts_status st = ddts_conn_heartbeat(se->conn, err);
    pthread_mutex_lock(&se->srv->mu);
    return st;
}

struct join {
    uint8_t id[ID_BYTES];
    char name[DDTS_MAX_NAME_BYTES + 1];
    char job[DDTS_MAX_NAME_BYTES + 1];
    uint8_t job_id[ID_BYTES];
    uint32_t share;
    uint8_t flags; /* enum ddts_join_flags */
};

static enum ddts_status recv_join(struct session *se, struct join *j, struct ddts_error *err)
{
    const uint8_t *p;
    size_t n;
    enum ddts_status st = ddts_conn_expect(se->conn, DDTS_MSG_JOIN, &p, &n, err);
    if (st != DDTS_OK)
        return st;
    struct ddts_wire_reader r;
    ddts_wire_reader_init(&r, p, n);
    ddts_wire_get_raw(&r, j->id, ID_BYTES);
    ddts_wire_get_str(&r, DDTS_MAX_NAME_BYTES, j->name, sizeof j->name);
    ddts_wire_get_str(&r, DDTS_MAX_NAME_BYTES, j->job, sizeof j->job);
    ddts_wire_get_raw(&r, j->job_id, ID_BYTES);
    ddts_wire_get_u32(&r, &j->share);
    ddts_wire_get_u8(&r, &j->flags);
    st = ddts_wire_reader_end(&r, "JOIN", err);
    if (st == DDTS_OK)
        st = ddts_wire_check_name(j->name, err);
    return st;
}

static char *shard_dir(const struct server *srv, size_t i)
{
    char name[32];
    snprintf(name, sizeof name, "shard_%zu", i);
    return ddts_path_join(srv->cfg->shards_dir, name);
}

static const char *model_remote_name(const char *path, char *buf, size_t cap)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    snprintf(buf, cap, "model%s", dot != NULL && strlen(dot) < 16 ? dot : "");
    if (ddts_wire_check_relpath(buf, NULL) != DDTS_OK)
        snprintf(buf, cap, "model");
    return buf;
}

/* Sends JOB and the share's files. */
static enum ddts_status send_job(struct session *se, long i, int client_has_files,
                                 struct ddts_error *err)
{
    struct server *srv = se->srv;
    const struct ddts_server_config *cfg = srv->cfg;
    size_t settings_n = cfg->settings_json ? strlen(cfg->settings_json) : 0;
    size_t cap = settings_n + 512;
    uint8_t *buf = ddts_malloc(cap);
    if (buf == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    flush_weights(srv); /* a share taken over mid-job starts from the latest weights */
    pthread_mutex_lock(&srv->mu);
    uint64_t round = srv->saved_round, n_floats = srv->saved_n;
    uint64_t share_rounds = srv->shards[i].rounds_done;
    char rname[RNAME_BYTES];
    snprintf(rname, sizeof rname, "%s", srv->shards[i].results_name);
    pthread_mutex_unlock(&srv->mu);
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, buf, cap);
    ddts_wire_put_u8(&w, DDTS_MSG_JOB);
    ddts_wire_put_str(&w, cfg->job);
    ddts_wire_put_raw(&w, srv->job_id, ID_BYTES);
    ddts_wire_put_str(&w, rname);
    ddts_wire_put_u32(&w, (uint32_t)i);
    ddts_wire_put_u32(&w, (uint32_t)srv->n_shards);
    ddts_wire_put_u8(&w, (uint8_t)cfg->sync);
    ddts_wire_put_u32(&w, cfg->sync_steps);
    ddts_wire_put_u64(&w, round);
    ddts_wire_put_f64(&w, srv->heartbeat);
    ddts_wire_put_str(&w, cfg->settings_json);
    ddts_wire_put_u64(&w, share_rounds);
    enum ddts_status st = ddts_conn_send_w(se->conn, &w, err);
    ddts_free(buf);
    uint32_t count = 0;
    if (st == DDTS_OK && !client_has_files && cfg->model_path != NULL) {
        char remote[32];
        st = ddts_conn_send_file(se->conn, DDTS_FILE_MODEL, cfg->model_path,
                                 model_remote_name(cfg->model_path, remote, sizeof remote), NULL,
                                 NULL, err);
        count++;
    }
    if (st == DDTS_OK && !client_has_files && cfg->shards_dir != NULL) {
        struct ddts__file_list fl = {0};
        char *dir = shard_dir(srv, (size_t)i);
        st = dir == NULL ? ddts_error_set(err, DDTS_ENOMEM, "out of memory")
                         : ddts__list_files(dir, "", &fl, 0, err);
        for (size_t k = 0; st == DDTS_OK && k < fl.n; k++) {
            char *path = ddts_path_join(dir, fl.rel[k]);
            st = path == NULL ? ddts_error_set(err, DDTS_ENOMEM, "out of memory")
                              : ddts_conn_send_file(se->conn, DDTS_FILE_SHARD, path, fl.rel[k],
                                                    NULL, NULL, err);
            ddts_free(path);
            count++;
        }
        ddts__file_list_free(&fl);
        ddts_free(dir);
    }
    if (st == DDTS_OK && cfg->sync != DDTS_SYNC_NONE && n_floats > 0) {
        st = ddts_conn_send_file(se->conn, DDTS_FILE_INIT_WEIGHTS, srv->weights_path,
                                 "init_weights.f32", NULL, NULL, err);
        count++;
    }
    if (st == DDTS_OK) {
        uint8_t m[8];
        ddts_wire_writer_init(&w, m, sizeof m);
        ddts_wire_put_u8(&w, DDTS_MSG_FILES_DONE);
        ddts_wire_put_u32(&w, count);
        st = ddts_conn_send_w(se->conn, &w, err);
    }
    return st;
}

/* A SYNC frame's header: the reduction, its flags and its length, checked
 * against the model, the open round and the client's share before anything
 * is allocated (with the model's length known, no client sets it). */
struct sync_head {
    uint8_t op, flags;
    uint64_t samples, count;
};

static enum ddts_status sync_head_read(struct session *se, const uint8_t *p, size_t n,
                                       struct sync_head *h, struct ddts_error *err)
{
    struct server *srv = se->srv;
    struct ddts_wire_reader r;
    ddts_wire_reader_init(&r, p, n);
    ddts_wire_get_u8(&r, &h->op);
    ddts_wire_get_u8(&r, &h->flags);
    ddts_wire_get_u64(&r, &h->samples);
    ddts_wire_get_u64(&r, &h->count);
    enum ddts_status st = ddts_wire_reader_end(&r, "SYNC", err);
    if (st != DDTS_OK)
        return st;
    if (h->op > DDTS_REDUCE_MAX || h->count == 0 || h->count > DDTS_MAX_SYNC_FLOATS ||
        (h->op == DDTS_REDUCE_MEAN && h->samples == 0))
        return ddts_error_set(err, DDTS_EPROTO,
                              "SYNC: op %u, %" PRIu64 " values, %" PRIu64 " samples is invalid",
                              h->op, h->count, h->samples);
    uint64_t model_n = srv->cfg->n_weights;
    if (model_n > 0 && (h->flags & DDTS_SYNC_WEIGHTS) && h->count != model_n)
        return ddts_error_set(err, DDTS_EPROTO,
                              "SYNC of %" PRIu64 " weights where the model has %" PRIu64, h->count,
                              model_n);
    if (model_n > 0 && h->count > model_n)
        return ddts_error_set(err, DDTS_EPROTO,
                              "SYNC of %" PRIu64 " values: more than the model's %" PRIu64,
                              h->count, model_n);
    pthread_mutex_lock(&srv->mu);
    uint64_t expect = srv->open ? srv->n : (h->flags & DDTS_SYNC_WEIGHTS) ? srv->n_floats : 0;
    uint64_t cap = UINT64_MAX;
    if (srv->cfg->share_samples != NULL && se->shard >= 0)
        cap = srv->cfg->share_samples[se->shard];
    pthread_mutex_unlock(&srv->mu);
    if (expect != 0 && h->count != expect)
        return ddts_error_set(err, DDTS_EPROTO,
                              "SYNC of %" PRIu64 " values where the job has %" PRIu64, h->count,
                              expect);
    if (h->op == DDTS_REDUCE_MEAN && h->samples > cap) {
        peer_warn(srv, se->key,
                  "client '%s' (%s) claims %" PRIu64 " samples for share %ld of %" PRIu64
                  ": counted as %" PRIu64,
                  se->name, se->addr, h->samples, se->shard, cap, cap);
        h->samples = cap > 0 ? cap : 1;
    }
    return DDTS_OK;
}

/* The contribution's values, all finite; *out is the caller's to free. */
static enum ddts_status sync_values_read(struct session *se, uint64_t count, float **out,
                                         struct ddts_error *err)
{
    float *v = ddts_mallocarray((size_t)count, sizeof *v);
    if (v == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "SYNC: out of memory for %" PRIu64 " values",
                              count);
    enum ddts_status st = ddts_conn_recv_data(se->conn, v, (size_t)count * sizeof *v, err);
    for (uint64_t i = 0; st == DDTS_OK && i < count; i++)
        if (!isfinite(v[i]))
            st = ddts_error_set(err, DDTS_ENUMERIC, "SYNC: value %" PRIu64 " is not finite", i);
    if (st != DDTS_OK) {
        ddts_free(v);
        return st;
    }
    *out = v;
    return DDTS_OK;
}

/* Adds one contribution to the round, opening it if it is the first.
 * Called with srv->mu held. */
static enum ddts_status round_add_unlocked(struct session *se, const struct sync_head *h,
                                           const float *v, struct ddts_error *err)
{
    struct server *srv = se->srv;
    struct shard *s = se->shard >= 0 ? &srv->shards[se->shard] : NULL;
    if (s == NULL || !s->training || s->sess != se)
        return ddts_error_set(err, DDTS_EPROTO, "SYNC from a client that is not training");
    if (srv->open && (srv->op != h->op || srv->flags != h->flags || srv->n != h->count))
        return ddts_error_set(err, DDTS_EPROTO,
                              "SYNC of %" PRIu64 " values (op %u) in a round of %" PRIu64
                              " values (op %u)",
                              h->count, h->op, srv->n, srv->op);
    if (s->contrib_seq == srv->seq + 1)
        return ddts_error_set(err, DDTS_EPROTO, "two SYNC in one round");
    uint8_t op = h->op;
    if (!srv->open) {
        srv->acc = ddts_mallocarray((size_t)h->count, 2 * sizeof *srv->acc);
        if (srv->acc == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "round: out of memory");
        srv->open = 1;
        srv->op = op;
        srv->flags = h->flags;
        srv->n = h->count;
        srv->opened_at = ddts_now();
        for (uint64_t i = 0; i < h->count; i++) {
            srv->acc[2 * i] = op == DDTS_REDUCE_MIN ? 1e300 : op == DDTS_REDUCE_MAX ? -1e300 : 0.0;
            srv->acc[2 * i + 1] = 0.0;
        }
    }
    /*
     * The running reduction: memory of one model, whatever the number of clients.
     * Sums are double-double (Knuth's TwoSum keeps each addition's rounding error in
     * lo), so the result does not depend on the order in which clients arrive: the
     * float it rounds to is the same unless the exact mean lies within ~2^-100 of a
     * rounding boundary. samples * x is exact in double for samples < 2^29.
     */
    double w = op == DDTS_REDUCE_MEAN ? (double)h->samples : 1.0;
    for (uint64_t i = 0; i < h->count; i++) {
        double x = v[i];
        double *hi = &srv->acc[2 * i], *lo = &srv->acc[2 * i + 1];
        if (op == DDTS_REDUCE_MEAN || op == DDTS_REDUCE_SUM) {
            double t = w * x;
            double sum = *hi + t;
            double bv = sum - *hi;
            *lo += (*hi - (sum - bv)) + (t - bv);
            *hi = sum;
        } else if (op == DDTS_REDUCE_MIN) {
            *hi = x < *hi ? x : *hi;
        } else {
            *hi = x > *hi ? x : *hi;
        }
    }
    srv->total_samples += h->samples;
    srv->n_contrib++;
    s->contrib_seq = srv->seq + 1;
    /* Waiting for the round is not a lack of progress: the round's deadline applies. */
    if (se->alive_at > 0)
        se->alive_at = -1;
    maybe_complete(srv);
    return DDTS_OK;
}

/* Waits for the round's result, sending heartbeats, and sends it; after a
 * failed contribution (st) it only releases a result. Called with srv->mu
 * held; returns with it released. */
static enum ddts_status sync_answer_unlocked(struct session *se, enum ddts_status st,
                                             struct ddts_error *err)
{
    struct server *srv = se->srv;
    double last_hb = ddts_now();
    while (st == DDTS_OK && se->res == NULL && !srv->stopping) {
        timed_wait(srv, srv->heartbeat / 2);
        if (se->res == NULL && ddts_now() - last_hb >= srv->heartbeat) {
            st = heartbeat_unlocked(se, err);
            last_hb = ddts_now();
        }
    }
    struct result *res = se->res;
    se->res = NULL;
    pthread_mutex_unlock(&srv->mu);
    if (st == DDTS_OK && res == NULL)
        st = ddts_error_set(err, DDTS_ECANCELED, "server stopping");
    if (res == NULL)
        return st;
    if (st == DDTS_OK) {
        uint8_t m[32];
        struct ddts_wire_writer w;
        ddts_wire_writer_init(&w, m, sizeof m);
        ddts_wire_put_u8(&w, DDTS_MSG_SYNC_RESULT);
        ddts_wire_put_u64(&w, res->round);
        ddts_wire_put_u64(&w, res->total_samples);
        ddts_wire_put_u64(&w, res->n);
        st = ddts_conn_send_w(se->conn, &w, err);
        if (st == DDTS_OK)
            st = ddts_conn_send_data(se->conn, res->v, (size_t)res->n * sizeof(float), err);
    }
    pthread_mutex_lock(&srv->mu);
    if (--res->refs == 0) {
        ddts_free(res->v);
        ddts_free(res);
    }
    pthread_mutex_unlock(&srv->mu);
    return st;
}

/* Receives one SYNC contribution, waits for the round and sends the result. */
static enum ddts_status handle_sync(struct session *se, const uint8_t *p, size_t n,
                                    struct ddts_error *err)
{
    struct server *srv = se->srv;
    struct sync_head h;
    float *v = NULL;
    enum ddts_status st = sync_head_read(se, p, n, &h, err);
    if (st == DDTS_OK)
        st = sync_values_read(se, h.count, &v, err);
    if (st != DDTS_OK)
        return st;
    pthread_mutex_lock(&srv->mu);
    st = round_add_unlocked(se, &h, v, err);
    ddts_free(v);
    int waits = st == DDTS_OK && se->res == NULL && !srv->stopping;
    if (waits) {
        pthread_mutex_unlock(&srv->mu);
        notify(se, DDTS_CLIENT_SYNCING);
        pthread_mutex_lock(&srv->mu);
    }
    st = sync_answer_unlocked(se, st, err);
    pthread_mutex_lock(&srv->mu);
    if (se->alive_at != 0)
        se->alive_at = ddts_now();
    pthread_mutex_unlock(&srv->mu);
    if (waits && st == DDTS_OK)
        notify(se, DDTS_CLIENT_TRAINING);
    return st;
}

/* Receives TRAINED's files into clients/<results name>/ and answers RECEIPT. */
static enum ddts_status receive_results(struct session *se, long i, struct ddts_error *err)
{
    struct server *srv = se->srv;
    char rname[RNAME_BYTES];
    pthread_mutex_lock(&srv->mu);
    snprintf(rname, sizeof rname, "%s", srv->shards[i].results_name);
    pthread_mutex_unlock(&srv->mu);
    char *clients = ddts_path_join(srv->jobdir, "clients");
    char *dest = clients ? ddts_path_join(clients, rname) : NULL;
    ddts_free(clients);
    if (dest == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    enum ddts_status st = DDTS_OK;
    uint32_t files = 0;
    uint64_t bytes = 0;
    while (st == DDTS_OK) {
        struct ddts__file_begin fb;
        int done;
        st = ddts__recv_file_begin(se->conn, files, &fb, &done, err);
        if (st != DDTS_OK || done)
            break;
        const char *rel = fb.rel;
        uint64_t size = fb.size;
        if (fb.kind != DDTS_FILE_RESULT)
            st = ddts_error_set(err, DDTS_EPROTO, "result file of kind %u", fb.kind);
        if (st == DDTS_OK && ++files > DDTS_MAX_UPLOAD_FILES)
            st = ddts_error_set(err, DDTS_ELIMIT, "more than %d result files",
                                DDTS_MAX_UPLOAD_FILES);
        /* The folder is opened below the job folder without following any symbolic link
         * (ddts_open_dir_beneath), and the file written through that descriptor. */
        char reldir[DDTS_MAX_PATH_BYTES + RNAME_BYTES + 16], path[64];
        const char *base = strrchr(rel, '/');
        int dirfd = -1;
        if (st == DDTS_OK) {
            snprintf(reldir, sizeof reldir, "clients/%s/%.*s", rname, base ? (int)(base - rel) : 0,
                     rel);
            st = ddts_open_dir_beneath(srv->jobdir, reldir, &dirfd, err);
        }
        if (st == DDTS_OK) {
            snprintf(path, sizeof path, "/proc/self/fd/%d", dirfd);
            char *full = ddts_path_join(path, base ? base + 1 : rel);
            st = full == NULL ? ddts_error_set(err, DDTS_ENOMEM, "out of memory")
                              : ddts_conn_recv_file_data(se->conn, full, size, NULL, NULL, err);
            ddts_free(full);
        }
        if (dirfd >= 0)
            close(dirfd);
        bytes += size;
    }
    if (st == DDTS_OK) {
        uint8_t m[16];
        struct ddts_wire_writer w;
        ddts_wire_writer_init(&w, m, sizeof m);
        ddts_wire_put_u8(&w, DDTS_MSG_RECEIPT);
        ddts_wire_put_u32(&w, files);
        ddts_wire_put_u64(&w, bytes);
        st = ddts_conn_send_w(se->conn, &w, err);
    }
    if (st == DDTS_OK)
        ddts_log(srv->log, DDTS_LOG_INFO,
                 "share %ld: %u result files (%" PRIu64 " bytes) received from '%s' into %s", i,
                 files, bytes, se->name, dest);
    ddts_free(dest);
    return st;
}

/* Records a JOIN's id and name; a second session with the same id is refused. */
static enum ddts_status register_join(struct session *se, const struct join *j,
                                      struct ddts_error *err)
{
    struct server *srv = se->srv;
    enum ddts_status st = DDTS_OK;
    pthread_mutex_lock(&srv->mu);
    for (struct session *o = srv->sessions; o != NULL; o = o->next)
        if (o != se && o->joined && memcmp(o->id, j->id, ID_BYTES) == 0)
            st = DDTS_EEXIST;
    if (st == DDTS_OK) {
        memcpy(se->id, j->id, ID_BYTES);
        snprintf(se->name, sizeof se->name, "%s", j->name);
        se->joined = 1;
        se->reports_progress = ddts__conn_version(se->conn) >= 2;
    }
    pthread_mutex_unlock(&srv->mu);
    if (st == DDTS_EEXIST) {
        ddts_conn_send_error(se->conn, DDTS_EEXIST, "a client with this id is already connected");
        return ddts_error_set(err, DDTS_EEXIST, "'%s': a client with this id is already connected",
                              j->name);
    }
    ddts_log(srv->log, DDTS_LOG_INFO, "client '%s' joined from %s", se->name, se->addr);
    return DDTS_OK;
}

/* Waits, sending heartbeats, for a share and the job's start: *share is the
 * share, or -1 when the job is complete or the server stops (*stopping). */
static enum ddts_status wait_for_share(struct session *se, int claims_trained, long *share,
                                       int *stopping, struct ddts_error *err)
{
    struct server *srv = se->srv;
    enum ddts_status st = DDTS_OK;
    long i = -1;
    double last_hb = ddts_now();
    pthread_mutex_lock(&srv->mu);
    while (st == DDTS_OK && !srv->stopping) {
        if (i < 0 && !srv->complete)
            i = find_share(srv, se, claims_trained);
        if (i >= 0)
            se->shard = i;
        if ((i >= 0 && srv->started) || (i < 0 && srv->complete))
            break;
        timed_wait(srv, srv->heartbeat / 2);
        if (ddts_now() - last_hb >= srv->heartbeat) {
            st = heartbeat_unlocked(se, err);
            last_hb = ddts_now();
        }
    }
    *stopping = srv->stopping;
    pthread_mutex_unlock(&srv->mu);
    *share = i;
    return st;
}

/* Sends share i and serves its training (SYNC, PROGRESS) until TRAINED,
 * whose status and message (the client's error text) it returns. */
static enum ddts_status train_share(struct session *se, long i, int has_files, uint32_t *status,
                                    char *msg, size_t msg_cap, struct ddts_error *err)
{
    struct server *srv = se->srv;
    se->has_progress = 0;
    notify(se, DDTS_CLIENT_SENDING);
    enum ddts_status st = send_job(se, i, has_files, err);
    const uint8_t *p;
    size_t n;
    if (st == DDTS_OK)
        st = ddts_conn_expect(se->conn, DDTS_MSG_READY, &p, &n, err);
    if (st != DDTS_OK)
        return st;
    /* Training: rounds until TRAINED. Silence beyond client_timeout loses the client,
     * and so does training that makes no progress for as long (check_deadlines). */
    ddts_conn_set_timeout(se->conn, srv->client_timeout);
    pthread_mutex_lock(&srv->mu);
    se->alive_at = se->reports_progress ? ddts_now() : 0;
    pthread_mutex_unlock(&srv->mu);
    notify(se, DDTS_CLIENT_TRAINING);
    uint8_t type = 0;
    while (st == DDTS_OK) {
        st = ddts_conn_recv(se->conn, &type, &p, &n, err);
        if (st != DDTS_OK || type == DDTS_MSG_TRAINED)
            break;
        if (type == DDTS_MSG_SYNC)
            st = handle_sync(se, p, n, err);
        else if (type == DDTS_MSG_PROGRESS)
            st = handle_progress(se, p, n, err);
        else if (type == DDTS_MSG_EPOCH)
            st = handle_epoch(se, p, n, err);
        else
            st = ddts_error_set(err, DDTS_EPROTO, "unexpected %s while training",
                                ddts_msg_str(type));
    }
    ddts_conn_set_timeout(se->conn, srv->io_timeout);
    pthread_mutex_lock(&srv->mu);
    se->alive_at = 0;
    pthread_mutex_unlock(&srv->mu);
    if (st != DDTS_OK)
        return st;
    struct ddts_wire_reader r;
    ddts_wire_reader_init(&r, p, n);
    ddts_wire_get_u32(&r, status);
    ddts_wire_get_str(&r, DDTS_ERROR_MSG_MAX - 1, msg, msg_cap);
    return ddts_wire_reader_end(&r, "TRAINED", err);
}

/* After TRAINED: receives share i's results and records it done (or
 * failed, with the client's reason). */
static enum ddts_status finish_share(struct session *se, long i, uint32_t status, const char *msg,
                                     struct ddts_error *err)
{
    struct server *srv = se->srv;
    struct shard *s = &srv->shards[i];
    pthread_mutex_lock(&srv->mu);
    int ours = se->shard == i;
    if (ours)
        s->training = 0;
    maybe_complete(srv);
    pthread_mutex_unlock(&srv->mu);
    if (!ours)
        return ddts_error_set(err, DDTS_ETIMEOUT, "share %ld was given up meanwhile", i);
    if (status != 0) {
        char safe[DDTS_ERROR_MSG_MAX];
        ddts__escape(msg, safe, sizeof safe); /* the client's words: control bytes escaped */
        ddts_log(srv->log, DDTS_LOG_ERROR, "share %ld: client '%s' failed: %s", i, se->name, safe);
        snprintf(se->failure, sizeof se->failure, "%s", safe[0] ? safe : "failed");
    }
    notify(se, DDTS_CLIENT_UPLOADING);
    enum ddts_status st = receive_results(se, i, err);
    if (st != DDTS_OK)
        return st;
    pthread_mutex_lock(&srv->mu);
    s->state = SH_DONE;
    s->status = (int)status;
    s->training = 0;
    if (s->sess == se)
        s->sess = NULL;
    se->shard = -1;
    struct ddts_error e2;
    if (save_state(srv, &e2) != DDTS_OK)
        ddts_log(srv->log, DDTS_LOG_ERROR, "cannot save the job state: %s", e2.msg);
    if (all_done(srv) && !srv->complete) {
        srv->complete = 1;
        ddts_log(srv->log, DDTS_LOG_INFO, "every share's results are received");
    }
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    notify(se, status != 0 ? DDTS_CLIENT_FAILED : DDTS_CLIENT_DONE);
    return DDTS_OK;
}

static enum ddts_status serve_client(struct session *se, struct ddts_error *err)
{
    struct server *srv = se->srv;
    struct join j;
    enum ddts_status st = recv_join(se, &j, err);
    if (st == DDTS_OK)
        st = register_join(se, &j, err);
    if (st != DDTS_OK)
        return st;
    int same_job = memcmp(j.job_id, srv->job_id, ID_BYTES) == 0;
    int claims_trained =
        same_job && (j.flags & DDTS_JOIN_TRAINED) && !(j.flags & DDTS_JOIN_RECEIVED);
    if (srv->cfg->collect && !claims_trained) {
        /* Collecting: nothing to train, and its pointer to its own job stays. */
        ddts_log(srv->log, DDTS_LOG_INFO, "client '%s' holds no results of this job", se->name);
        st = ddts_conn_send(se->conn, DDTS_MSG_DONE, NULL, 0, err);
        return st != DDTS_OK ? st : DDTS_ECLOSED;
    }
    for (;;) {
        /* After a share, it stays "done" while it waits for another. */
        if (se->state != DDTS_CLIENT_DONE && se->state != DDTS_CLIENT_FAILED)
            notify(se, DDTS_CLIENT_WAITING);
        long i = -1;
        int stopping = 0;
        st = wait_for_share(se, claims_trained, &i, &stopping, err);
        if (st != DDTS_OK)
            return st;
        if (i < 0 || stopping) {
            if (!stopping)
                st = ddts_conn_send(se->conn, DDTS_MSG_DONE, NULL, 0, err);
            return st != DDTS_OK ? st : DDTS_ECLOSED;
        }
        int has_files = same_job && (j.flags & DDTS_JOIN_HAS_FILES) && j.share == (uint32_t)i;
        ddts_log(srv->log, DDTS_LOG_INFO, "share %ld -> client '%s'%s", i, se->name,
                 has_files ? " (it has the files)" : "");
        uint32_t status = 0;
        char msg[DDTS_ERROR_MSG_MAX];
        st = train_share(se, i, has_files, &status, msg, sizeof msg, err);
        if (st == DDTS_OK)
            st = finish_share(se, i, status, msg, err);
        if (st != DDTS_OK)
            return st;
        claims_trained = 0;
        /* NEXT asks for more work; anything else ends the session. */
        const uint8_t *p;
        size_t n;
        st = ddts_conn_expect(se->conn, DDTS_MSG_NEXT, &p, &n, err);
        if (st != DDTS_OK)
            return st;
    }
}

static void *session_main(void *arg)
{
    struct session *se = arg;
    struct server *srv = se->srv;
    struct ddts_error err;
    ddts_error_clear(&err);
    int turn = handshake_begin(srv, se->key, se->deadline);
    enum ddts_status st;
    if (turn < 0) {
        st = ddts_error_set(&err, DDTS_ETIMEOUT,
                            "%s: no turn to authenticate within %.1f s: other handshakes from "
                            "the address took the time",
                            se->addr, srv->turn_wait);
    } else {
        /* Its own deadline counts from its turn, not from accept. */
        se->deadline = ddts_now() + srv->io_timeout;
        ddts__conn_set_deadline(se->conn, se->deadline);
        st = ddts_conn_handshake(se->conn, DDTS_ROLE_SERVER, srv->cfg->passphrase,
                                 turn ? DDTS_EBANNED : DDTS_OK, &err);
    }
    if (st == DDTS_EBANNED)
        peer_warn(srv, se->key, "refused banned address %s", se->addr);
    else if (st != DDTS_OK)
        peer_warn(srv, se->key, "handshake with %s failed: %s", se->addr, err.msg);
    /* Only real attempts count toward a ban: a wrong passphrase, or a stall past the
     * deadline (which held a slot); garbage and unknown versions cost nothing. */
    handshake_end(srv, se->key, turn >= 0, turn >= 0 && (st == DDTS_EAUTH || st == DDTS_ETIMEOUT));
    ddts__conn_set_deadline(se->conn, 0);
    if (st == DDTS_OK) {
        st = serve_client(se, &err);
        if (st != DDTS_OK && st != DDTS_ECLOSED && st != DDTS_EEXIST) {
            ddts_log(srv->log, DDTS_LOG_WARN, "client '%s' (%s): %s", se->name, se->addr, err.msg);
            /* Tell the peer why, unless the connection itself is gone or untrusted. */
            if (st != DDTS_ETIMEOUT && st != DDTS_EIO && st != DDTS_EAUTH)
                ddts_conn_send_error(se->conn, st, err.msg);
        } else if (st == DDTS_EEXIST) {
            ddts_log(srv->log, DDTS_LOG_WARN, "refused %s: %s", se->addr, err.msg);
        }
    }
    if (se->joined && se->state != DDTS_CLIENT_DONE && se->state != DDTS_CLIENT_FAILED) {
        pthread_mutex_lock(&srv->mu);
        int lost = se->lost || st == DDTS_ETIMEOUT;
        pthread_mutex_unlock(&srv->mu);
        notify(se, lost ? DDTS_CLIENT_LOST : DDTS_CLIENT_LEFT);
    } else if (se->joined) {
        notify(se, se->state);
    }
    pthread_mutex_lock(&srv->mu);
    se->timed_out = st == DDTS_ETIMEOUT;
    release_share(srv, se);
    if (se->res != NULL && --se->res->refs == 0) {
        ddts_free(se->res->v);
        ddts_free(se->res);
    }
    se->res = NULL;
    se->joined = 0;
    se->finished = 1;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    return NULL;
}

/* Joins finished sessions (all of them when `all`). */
static void reap(struct server *srv, int all)
{
    for (;;) {
        struct session *done = NULL;
        pthread_mutex_lock(&srv->mu);
        for (struct session **pp = &srv->sessions; *pp != NULL; pp = &(*pp)->next) {
            if ((*pp)->finished) {
                done = *pp;
                *pp = done->next;
                srv->n_sessions--;
                break;
            }
        }
        if (done == NULL && all && srv->sessions != NULL) {
            for (struct session *s = srv->sessions; s != NULL; s = s->next)
                ddts_conn_shutdown(s->conn);
            timed_wait(srv, 0.1);
            pthread_mutex_unlock(&srv->mu);
            continue;
        }
        pthread_mutex_unlock(&srv->mu);
        if (done == NULL)
            return;
        pthread_join(done->thread, NULL);
        ddts_conn_close(done->conn);
        ddts_free(done);
    }
}

/* Gives up an unauthenticated connection that was counted as pending. Caller holds mu. */
static void unpend(struct server *srv, const char *key)
{
    struct peer *p = peer_find(srv, key, 0);
    if (p != NULL)
        p->pending--;
    srv->n_preauth--;
}

/* Starts the session thread of an admitted socket, which must get its address's
 * handshake turn by `wait_until` (session_main then gives it the I/O timeout). */
static void start_session(struct server *srv, int fd, const char *key, double wait_until)
{
    struct ddts_conn *c = NULL;
    struct session *se = NULL;
    struct ddts_error err;
    if (ddts_conn_from_fd(fd, &c, &err) != DDTS_OK || (se = ddts_calloc(1, sizeof *se)) == NULL) {
        ddts_conn_destroy(c);
        pthread_mutex_lock(&srv->mu);
        unpend(srv, key);
        pthread_mutex_unlock(&srv->mu);
        return;
    }
    se->srv = srv;
    se->conn = c;
    se->shard = -1;
    se->number = ++srv->n_accepted;
    snprintf(se->addr, sizeof se->addr, "%s", ddts_conn_peer(c));
    snprintf(se->key, sizeof se->key, "%s", key);
    snprintf(se->name, sizeof se->name, "?");
    ddts_conn_set_timeout(c, srv->io_timeout);
    se->deadline = wait_until;
    ddts__conn_set_deadline(c, wait_until); /* nothing is read before its turn */
    pthread_mutex_lock(&srv->mu);
    se->next = srv->sessions;
    srv->sessions = se;
    srv->n_sessions++;
    if (pthread_create(&se->thread, NULL, session_main, se) != 0) {
        srv->sessions = se->next;
        srv->n_sessions--;
        unpend(srv, key);
        pthread_mutex_unlock(&srv->mu);
        ddts_log(srv->log, DDTS_LOG_WARN, "refused %s: cannot start a thread", se->addr);
        ddts_conn_destroy(c);
        ddts_free(se);
        return;
    }
    pthread_mutex_unlock(&srv->mu);
}

/*
 * Admits one accepted socket: refused at once (no thread, no allocation)
 * when its address is banned or over its limits, queued as a bare socket
 * when its address has DDTS_MAX_PREAUTH_PER_ADDR handshakes going, else a
 * session thread. Either way it waits at most srv->turn_wait from now for its
 * address's handshake turn, then has the I/O timeout to authenticate.
 */
static void accept_one(struct server *srv, int fd, const struct sockaddr_storage *peer,
                       size_t n_sessions)
{
    char key[DDTS__ADDR_KEY_BYTES];
    ddts__addr_key(peer, key);
    double wait_until = ddts_now() + srv->turn_wait;
    pthread_mutex_lock(&srv->mu);
    enum admit a = n_sessions >= DDTS_MAX_CLIENTS ? ADMIT_FULL : admit(srv, key);
    if (a == ADMIT_QUEUE) {
        struct queued *q = &srv->queue[srv->n_queued++];
        q->fd = fd;
        q->wait_until = wait_until;
        snprintf(q->key, sizeof q->key, "%s", key);
    }
    unsigned n_preauth = srv->n_preauth;
    pthread_mutex_unlock(&srv->mu);
    switch (a) {
    case ADMIT_OK:
        start_session(srv, fd, key, wait_until);
        break;
    case ADMIT_QUEUE:
        break;
    case ADMIT_BANNED:
        refuse_banned(srv, fd);
        peer_warn(srv, key, "refused banned address %s", key);
        break;
    case ADMIT_ADDR_FULL:
        close(fd);
        peer_warn(srv, key, "refused %s: %d connections from it wait to authenticate", key,
                  DDTS_MAX_PREAUTH_PER_ADDR + DDTS_MAX_QUEUED_PER_ADDR);
        break;
    case ADMIT_GUESSES:
        close(fd);
        peer_warn(srv, key,
                  "refused %s: %d failed handshakes in the last minute (from any address)", key,
                  DDTS_MAX_FAILED_AUTH_PER_MIN);
        break;
    case ADMIT_FULL:
        close(fd);
        peer_warn(srv, key, "refused %s: %zu connections, %u of them not authenticated", key,
                  n_sessions, n_preauth);
        break;
    }
}

/* Starts the queued sockets whose address has a free turn; closes expired ones. */
static void promote_queued(struct server *srv)
{
    double now = ddts_now();
    size_t k = 0;
    struct queued start[DDTS_MAX_PREAUTH];
    size_t n_start = 0;
    pthread_mutex_lock(&srv->mu);
    for (size_t i = 0; i < srv->n_queued; i++) {
        struct queued q = srv->queue[i];
        struct peer *p = peer_find(srv, q.key, 0);
        int expired = now >= q.wait_until || srv->stopping || p == NULL || p->until > now;
        int go = !expired && p->pending < DDTS_MAX_PREAUTH_PER_ADDR &&
                 srv->n_preauth < DDTS_MAX_PREAUTH && n_start < DDTS_MAX_PREAUTH;
        if (expired || go) {
            if (p != NULL)
                p->queued--;
            if (expired) {
                close(q.fd);
            } else {
                p->pending++;
                srv->n_preauth++;
                start[n_start++] = q;
            }
            continue;
        }
        srv->queue[k++] = q;
    }
    srv->n_queued = k;
    pthread_mutex_unlock(&srv->mu);
    for (size_t i = 0; i < n_start; i++)
        start_session(srv, start[i].fd, start[i].key, start[i].wait_until);
}

static enum ddts_status check_config(const struct ddts_server_config *cfg, struct ddts_error *err)
{
    if (cfg->passphrase == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "server: no passphrase");
    if (cfg->n_clients < 1 || cfg->n_clients > DDTS_MAX_CLIENTS)
        return ddts_error_set(err, DDTS_EINVAL, "--clients %zu: must be 1..%d", cfg->n_clients,
                              DDTS_MAX_CLIENTS);
    if (cfg->workdir == NULL || cfg->job == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "server: workdir and job name are required");
    enum ddts_status st = ddts_wire_check_name(cfg->job, err);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "job: ");
        return st;
    }
    if (cfg->settings_json != NULL && strlen(cfg->settings_json) > DDTS_MAX_SETTINGS_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "settings: %zu bytes (max %u)",
                              strlen(cfg->settings_json), DDTS_MAX_SETTINGS_BYTES);
    if (cfg->model_path != NULL && access(cfg->model_path, R_OK) != 0)
        return ddts_error_set_errno(err, DDTS_ENOTFOUND, errno, "%s: cannot read the model",
                                    cfg->model_path);
    if (cfg->sync == DDTS_SYNC_STEPS && cfg->sync_steps == 0)
        return ddts_error_set(err, DDTS_EINVAL, "--sync steps:K needs K >= 1");
    return DDTS_OK;
}

static void server_deinit(struct server *srv)
{
    ddts_free(srv->jobdir);
    ddts_free(srv->state_path);
    ddts_free(srv->weights_path);
    ddts_free(srv->shards);
    ddts_free(srv->acc);
    ddts_free(srv->bans_path);
    if (srv->pending != NULL && --srv->pending->refs == 0) {
        ddts_free(srv->pending->v);
        ddts_free(srv->pending);
    }
    while (srv->peers != NULL) {
        struct peer *p = srv->peers;
        srv->peers = p->next;
        ddts_free(p);
    }
    pthread_mutex_destroy(&srv->mu);
    pthread_mutex_destroy(&srv->flush_mu);
    pthread_cond_destroy(&srv->cv);
}

/* The server's state before it listens: its job folder, every share's
 * folder checked, the bans read. On failure server_deinit releases it. */
static enum ddts_status server_init(struct server *srv, const struct ddts_server_config *cfg,
                                    struct ddts_error *err)
{
    srv->cfg = cfg;
    srv->log = cfg->logger;
    srv->client_timeout = cfg->client_timeout_s > 0 ? cfg->client_timeout_s : 60;
    srv->io_timeout = cfg->io_timeout_s > 0 ? cfg->io_timeout_s : DDTS_IO_TIMEOUT_S;
    srv->turn_wait = srv->io_timeout * DDTS_TURN_WAIT_FACTOR;
    srv->heartbeat =
        srv->client_timeout / 4 < DDTS_HEARTBEAT_S ? srv->client_timeout / 4 : DDTS_HEARTBEAT_S;
    srv->ban_after = cfg->ban_after > 0 ? cfg->ban_after : 3;
    srv->n_shards = cfg->n_clients;
    srv->shards = ddts_calloc(srv->n_shards, sizeof *srv->shards);
    srv->jobdir = ddts_path_join(cfg->workdir, cfg->job);
    char *global = srv->jobdir ? ddts_path_join(srv->jobdir, "global") : NULL;
    srv->state_path = srv->jobdir ? ddts_path_join(srv->jobdir, "state") : NULL;
    srv->weights_path = global ? ddts_path_join(global, "weights.f32") : NULL;
    srv->bans_path = srv->jobdir ? ddts_path_join(srv->jobdir, "bans") : NULL;
    for (size_t i = 0; i < LINGER_SLOTS; i++)
        srv->linger_fd[i] = -1;
    enum ddts_status st = DDTS_OK;
    if (srv->shards == NULL || global == NULL || srv->state_path == NULL ||
        srv->weights_path == NULL || srv->bans_path == NULL)
        st = ddts_error_set(err, DDTS_ENOMEM, "server: out of memory");
    if (st == DDTS_OK)
        st = ddts_mkdir_p(global, err);
    ddts_free(global);
    if (st != DDTS_OK)
        return st;
    (void)chmod(srv->jobdir, 0700); /* the job's shares and results are private */
    /* Every share's folder must exist before anyone is served. */
    for (size_t i = 0; cfg->shards_dir != NULL && i < srv->n_shards; i++) {
        struct ddts__file_list fl = {0};
        char *dir = shard_dir(srv, i);
        st = dir == NULL ? ddts_error_set(err, DDTS_ENOMEM, "out of memory")
                         : ddts__list_files(dir, "", &fl, 0, err);
        ddts__file_list_free(&fl);
        ddts_free(dir);
        if (st != DDTS_OK)
            return st;
    }
    return load_bans(srv, err);
}

/* An earlier run's state, when the job folder has one (resume, collect). */
static enum ddts_status server_load_job(struct server *srv, struct ddts_error *err)
{
    const struct ddts_server_config *cfg = srv->cfg;
    if (access(srv->state_path, F_OK) != 0)
        return cfg->collect ? ddts_error_set(err, DDTS_ENOTFOUND,
                                             "%s: no job to collect (no state file)", srv->jobdir)
                            : DDTS_OK;
    enum ddts_status st = load_state(srv, err);
    if (st != DDTS_OK)
        return st;
    size_t done = 0;
    for (size_t i = 0; i < srv->n_shards; i++)
        done += srv->shards[i].state == SH_DONE;
    ddts_log(srv->log, DDTS_LOG_INFO, "resuming job '%s': %zu of %zu shares done, round %" PRIu64,
             cfg->job, done, srv->n_shards, srv->round);
    if (cfg->n_weights > 0 && srv->n_floats > 0 && srv->n_floats != cfg->n_weights) {
        ddts_log(srv->log, DDTS_LOG_WARN,
                 "the saved global weights hold %" PRIu64 " values, the model %" PRIu64
                 ": not used",
                 srv->n_floats, cfg->n_weights);
        srv->n_floats = srv->saved_n = 0;
    }
    srv->complete = all_done(srv);
    return DDTS_OK;
}

/* Accepts and serves clients until the job is complete (and the stragglers
 * had their grace), the caller asks to stop, or an internal failure. */
static enum ddts_status serve_loop(struct server *srv, struct ddts_listener *l,
                                   struct ddts_error *err)
{
    const struct ddts_server_config *cfg = srv->cfg;
    double complete_at = 0;
    for (;;) {
        pthread_mutex_lock(&srv->mu);
        check_deadlines(srv);
        int complete = srv->complete, stopping = srv->stopping;
        size_t n_sessions = srv->n_sessions;
        pthread_mutex_unlock(&srv->mu);
        if (stopping)
            return ddts_error_set(err, DDTS_ENOMEM, "server: stopped after an internal failure");
        if (cfg->should_stop != NULL && cfg->should_stop(cfg->userdata))
            return ddts_error_set(err, DDTS_ECANCELED, "server: stopped on request");
        if (complete && complete_at == 0)
            complete_at = ddts_now();
        /* Once complete, stragglers get a few seconds to say goodbye. */
        if (complete && !cfg->keep_serving &&
            (n_sessions == 0 || ddts_now() - complete_at > COMPLETE_GRACE_S))
            return DDTS_OK;
        reap(srv, 0);
        flush_weights(srv);
        drain_refused(srv, 0);
        promote_queued(srv);
        int fd = -1;
        struct sockaddr_storage peer;
        struct ddts_error aerr;
        enum ddts_status ast =
            ddts__listener_accept_fd(l, srv->n_queued > 0 ? 0.01 : 0.2, &fd, &peer, &aerr);
        if (ast == DDTS_ETIMEOUT)
            continue;
        if (ast != DDTS_OK) {
            ddts_log(srv->log, DDTS_LOG_WARN, "accept: %s", aerr.msg);
            continue;
        }
        accept_one(srv, fd, &peer, n_sessions);
    }
}

/* Stops every session and saves the global weights; a job that ended well
 * (st) fails if they cannot be saved. */
static enum ddts_status server_stop(struct server *srv, enum ddts_status st, struct ddts_error *err)
{
    const struct ddts_server_config *cfg = srv->cfg;
    pthread_mutex_lock(&srv->mu);
    srv->stopping = 1;
    pthread_cond_broadcast(&srv->cv);
    pthread_mutex_unlock(&srv->mu);
    reap(srv, 1);
    /* The global weights must be on disk before the job ends well: retry a while. */
    for (double t0 = ddts_now(); !flush_weights(srv) && ddts_now() - t0 < SAVE_RETRY_S;) {
        struct timespec ts = {0, 250000000L};
        nanosleep(&ts, NULL);
    }
    if (!flush_weights(srv) && st == DDTS_OK)
        st = ddts_error_set(err, DDTS_EIO,
                            "job '%s': the global weights of round %" PRIu64
                            " could not be saved: %s",
                            cfg->job, srv->round, srv->save_err.msg);
    promote_queued(srv); /* stopping: closes them all */
    drain_refused(srv, 1);
    for (struct peer *p = srv->peers; p != NULL; p = p->next)
        if (p->suppressed > 0)
            ddts_log(srv->log, DDTS_LOG_WARN, "%u more warnings about %s were left out",
                     p->suppressed, p->key);
    if (st == DDTS_OK)
        ddts_log(srv->log, DDTS_LOG_INFO, "job '%s' complete: results in %s", cfg->job,
                 srv->jobdir);
    return st;
}

enum ddts_status ddts_server_run(const struct ddts_server_config *cfg, struct ddts_error *err)
{
    enum ddts_status st = check_config(cfg, err);
    if (st != DDTS_OK)
        return st;
    if ((st = ddts_auth_init(err)) != DDTS_OK)
        return st;
    struct server srv;
    memset(&srv, 0, sizeof srv);
    pthread_mutex_init(&srv.mu, NULL);
    pthread_mutex_init(&srv.flush_mu, NULL);
    if (ddts__cond_init(&srv.cv) != 0) {
        pthread_mutex_destroy(&srv.flush_mu);
        pthread_mutex_destroy(&srv.mu);
        return ddts_error_set(err, DDTS_ENOMEM, "server: cannot create a condition variable");
    }
    struct ddts_listener *l = NULL;
    st = server_init(&srv, cfg, err);
    if (st == DDTS_OK)
        st = server_load_job(&srv, err);
    if (st == DDTS_OK)
        st = ddts_listener_open(cfg->host,
                                cfg->any_port ? 0
                                : cfg->port   ? cfg->port
                                              : DDTS_DEFAULT_PORT,
                                &l, err);
    /* A new job exists once the server listens: a failed start leaves no state. */
    if (st == DDTS_OK && access(srv.state_path, F_OK) != 0) {
        ddts_secure_random(srv.job_id, ID_BYTES);
        st = save_state(&srv, err);
    }
    if (st == DDTS_OK) {
        uint16_t port = ddts_listener_port(l);
        if (cfg->bound_port != NULL)
            *cfg->bound_port = port;
        ddts_log(srv.log, DDTS_LOG_INFO, "job '%s': waiting for %zu clients on %s:%u", cfg->job,
                 srv.n_shards, cfg->host ? cfg->host : "0.0.0.0", (unsigned)port);
        if (cfg->on_listening != NULL)
            cfg->on_listening(cfg->userdata, port);
        st = serve_loop(&srv, l, err);
        st = server_stop(&srv, st, err);
    }
    ddts_listener_close(l);
    server_deinit(&srv);
    return st;
}
