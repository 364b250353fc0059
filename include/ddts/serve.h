/*
 * A job served from this machine: what `ddts server` does, as a library, so
 * that every front end (the CLI, an MPI launcher, a web dashboard) runs the
 * same job the same way.
 *
 *   struct ddts_serve *sv = NULL;
 *   ddts_serve_create(&job, &logger, &sv, &err);   // nothing done yet
 *   ddts_serve_prepare(sv, &err);   // data loaded, normalizer statistics, shares written
 *   ddts_serve_run(sv, &hooks, &err);  // serves the clients until every share is back
 *   ddts_serve_report(sv, &result, &err);  // global model, its test figures, summary.*
 *   ddts_serve_destroy(sv);
 *
 * While the job runs (from any thread, as often as wanted), ddts_serve_snapshot
 * copies what the server knows of it: the phase, the averaging rounds, and one
 * row per client (keyed by the client's persistent id, so a client that
 * reconnects keeps its row) with its state and latest progress. The live table
 * of `ddts server` draws from it; a dashboard polls it.
 *
 * Layout under WORKDIR/NAME/ (besides the network layer's, server.h):
 *   shards/shard_i/   the share of client i (x.npy, y.npy, x_test.npy, y_test.npy,
 *                     stats.bin, info.txt) and shards/READY once all are written
 *   global/           round_<R>.f32 (the averaged weights at each epoch end),
 *                     history.csv (their test figures), model.h5 or model.keras
 *   events.log        failures and reassignments (survives restarts)
 *   summary.json, summary.txt, report.png
 */
#ifndef DDTS_SERVE_H
#define DDTS_SERVE_H

#include <stddef.h>
#include <stdint.h>

#include "array.h"
#include "passphrase.h"
#include "core.h"
#include "job.h"
#include "limits.h"
#include "report.h"
#include "server.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ddts_serve;

/* Where a job is (ddts_serve_snapshot). */
enum ddts_serve_phase {
    DDTS_SERVE_CREATED = 0,   /* ddts_serve_create done */
    DDTS_SERVE_PREPARING = 1, /* loading data, writing shares */
    DDTS_SERVE_READY = 2,     /* prepared, not serving yet */
    DDTS_SERVE_SERVING = 3,   /* ddts_serve_run: clients train */
    DDTS_SERVE_REPORTING = 4, /* the global model and the report */
    DDTS_SERVE_DONE = 5,      /* the report is written */
    DDTS_SERVE_FAILED = 6,    /* a step returned an error (ddts_serve_snapshot's message) */
};
/* "created", "preparing", "ready", "serving", "reporting", "done", "failed"; "?" otherwise. */
DDTS_API const char *ddts_serve_phase_str(enum ddts_serve_phase p);

/*
 * Loads a job's training data on this machine: DIR/X and DIR/Y (--dataset)
 * or a Keras dataset (--keras-dataset, with its test split in *x_test,
 * *y_test when those are not NULL), cut to job->samples. On failure every
 * output is NULL.
 */
/*
 * DIR/X and DIR/Y as the job's settings say: the .npz keys (--x-key,
 * --y-key), X alone for --order XX; NaN and infinities are refused with
 * file, row and column. What `--data client` reads on each client.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_serve_load_xy(const struct ddts_job *job,
                                                            const char *dir, struct ddts_array **x,
                                                            struct ddts_array **y,
                                                            struct ddts_error *err);

DDTS_API DDTS_NODISCARD enum ddts_status
ddts_serve_load_data(const struct ddts_job *job, struct ddts_array **x, struct ddts_array **y,
                     struct ddts_array **x_test, struct ddts_array **y_test,
                     struct ddts_error *err);

/*
 * A job to serve with the settings `job` (copied; already completed and
 * validated, e.g. by ddts_job_validate, with a model file when not
 * collecting). Log lines go to `logger` (borrowed; may be NULL); warnings
 * about lost clients, reassigned shares and failures are also appended to
 * WORKDIR/NAME/events.log.
 *
 * An existing job: WORKDIR/NAME/job.json records a job's settings once it
 * is served. A rerun whose settings differ from it (model, clients, epochs,
 * data, seed, ...: every setting that makes the job) is DDTS_EEXIST naming
 * each difference, unless job->resume (then the recorded settings are used);
 * identical settings resume the job. A seed not given explicitly is the
 * job's. With job->collect the job must exist: job->name when given, else
 * the one job of WORKDIR (several: DDTS_EINVAL listing them; none:
 * DDTS_ENOTFOUND), with its recorded settings.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_serve_create(const struct ddts_job *job,
                                                           const struct ddts_logger *logger,
                                                           struct ddts_serve **out,
                                                           struct ddts_error *err);
DDTS_API void ddts_serve_destroy(struct ddts_serve *sv);

/* WORKDIR/NAME: where the job's state and results are (borrowed from sv). */
DDTS_API const char *ddts_serve_dir(const struct ddts_serve *sv);
/* The job's settings as served (after --collect or --resume took the recorded ones). */
DDTS_API const struct ddts_job *ddts_serve_job(const struct ddts_serve *sv);

/* The jobs of a work folder (its sub-folders that hold a served job's state), sorted;
 * release with ddts_serve_jobs_free. DDTS_ENOTFOUND when the folder does not exist. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_serve_list_jobs(const char *workdir, char ***names,
                                                              size_t *n, struct ddts_error *err);
DDTS_API void ddts_serve_jobs_free(char **names, size_t n);

/*
 * Loads the data (--data server or keras), computes the job-wide normalizer
 * statistics and writes one share per client under shards/ (kept when a
 * previous run finished writing them: a resumed job gets the same shares).
 * Nothing to do for --data client and for --collect.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_serve_prepare(struct ddts_serve *sv,
                                                            struct ddts_error *err);

/* What a front end hooks into ddts_serve_run; every member may be 0/NULL. */
struct ddts_serve_hooks {
    const struct ddts_passphrase *passphrase; /* required; borrowed */
    int any_port;                             /* bind a free port (tests); see bound_port */
    uint16_t *bound_port;                     /* out: the port bound */
    /* Polled every 0.2 s; non-zero stops the server (ddts_serve_run returns DDTS_ECANCELED). */
    int (*should_stop)(void *userdata);
    /* Called once listening. */
    void (*on_listening)(void *userdata, uint16_t port);
    /* After the snapshot took in a change of client `c` (ddts_server_config.on_client:
     * any connection thread, quick, thread-safe). */
    void (*on_client)(void *userdata, const struct ddts_server_client *c);
    /* Once for each epoch that a client reports finished (same threads as on_client). */
    void (*on_epoch_end)(void *userdata, const struct ddts_server_client *c);
    /* After each weight-averaging round (`round` 1, 2, ...): on a connection thread
     * with the job locked, so it must be quick (the dashboard's timeline). */
    void (*on_round)(void *userdata, uint64_t round);
    /* A client's finished epoch's history row, validation figures included
     * (ddts_server_config.on_epoch: protocol 3 clients; same threads as on_client). */
    void (*on_epoch)(void *userdata, const struct ddts_server_client *c,
                     const struct ddts_wire_epoch *e);
    /*
     * The global model's curve while the job runs: after each epoch's last
     * weight round, a thread of the job's own (never a connection thread)
     * evaluates those weights on the test split, the figures that
     * global/history.csv gets at the end (`epoch` 1-based; loss, and
     * accuracy or NaN). Only for a job with a test split (--data keras) and
     * rounds (--sync), and only when this hook is set (NULL: the report
     * computes them all after the job, as before). The report reuses these
     * figures instead of computing them again.
     */
    void (*on_global)(void *userdata, uint64_t epoch, double loss, double accuracy);
    void *userdata;
};

/*
 * Serves the job until every share's results are received (ddts_server_run).
 * When two clients' training fails with the same error (but for its
 * numbers), the failure is deterministic: the job stops at once, its summary
 * says "failed" with that error, and DDTS_EINVAL is returned with it.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_serve_run(struct ddts_serve *sv, const struct ddts_serve_hooks *hooks, struct ddts_error *err);

/* What ddts_serve_report produced. */
struct ddts_serve_result {
    char job_dir[4096];      /* WORKDIR/NAME */
    char global_model[4096]; /* global/model.h5 or .keras; "" when none was written */
    double test_loss;        /* the global model on the test data; NaN without */
    double test_accuracy;    /* NaN without test data or an accuracy metric */
    size_t n_shares;         /* the job's shares */
    size_t n_failed;         /* shares whose training failed (no results): see summary.txt */
};

/*
 * Writes the global model from the last averaged weights (with a normalizer:
 * a tf.keras 2.x .h5 with a Normalization layer first), evaluates it and
 * every epoch's global weights on the test data (global/history.csv), and
 * writes summary.json, summary.txt (with events.log) and report.png. The
 * summary's status is "ok" when every share produced results, "partial" when
 * some failed, "failed" when all did; each failed share is listed with the
 * client's error text (its error.log). out->n_failed counts them: a front
 * end reports the job as failed unless it is 0.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_serve_report(struct ddts_serve *sv, struct ddts_serve_result *out, struct ddts_error *err);

/* One client in a snapshot. */
struct ddts_serve_client_info {
    uint8_t id[DDTS_CLIENT_ID_BYTES];
    char name[DDTS_MAX_NAME_BYTES + 1];
    char address[64];
    enum ddts_client_state state;
    long share;       /* the share it holds, or -1 */
    int has_progress; /* progress is its latest report of its current (or last) share */
    struct ddts_wire_progress progress;
    double progress_at; /* ddts_now() when that report arrived */
    double eta_s;       /* seconds to the end of its share, when training; NaN otherwise */
};

/* A copy of a job's state (ddts_serve_snapshot); the caller owns `clients`. */
struct ddts_serve_snapshot {
    enum ddts_serve_phase phase;
    char message[DDTS_ERROR_MSG_MAX];       /* the error of a failed phase; "" otherwise */
    uint64_t rounds;                        /* averaging rounds completed in this run */
    size_t n_shares;                        /* the job's shares (--clients) */
    struct ddts_serve_client_info *clients; /* every client seen, in order of arrival */
    size_t n_clients;
    double taken_at; /* ddts_now() */
};

/* Copies the job's state now (thread-safe, any time between create and destroy).
 * Release with ddts_serve_snapshot_deinit. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_serve_snapshot(struct ddts_serve *sv, struct ddts_serve_snapshot *out, struct ddts_error *err);
DDTS_API void ddts_serve_snapshot_deinit(struct ddts_serve_snapshot *s);

/* The live table's row of a snapshot's client (strings borrowed from `c`). */
DDTS_API void ddts_serve_client_row(const struct ddts_serve_client_info *c,
                                    struct ddts_client_row *row);

#ifdef __cplusplus
}
#endif
#endif
