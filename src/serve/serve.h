/* The serve module's internals (include/ddts/serve.h is its API). */
#ifndef DDTS_SRC_SERVE_H
#define DDTS_SRC_SERVE_H

#include <pthread.h>
#include <stdbool.h>

#include "ddts/nn.h"
#include "ddts/serve.h"

/* Failures and reassignments go to the caller's logger and to events.log. */
struct ddts__serve_events {
    struct ddts_logger inner;
    char path[4200];
};

struct ddts_serve {
    struct ddts_job job;
    char job_dir[4096];    /* WORKDIR/NAME */
    char shards_dir[4200]; /* WORKDIR/NAME/shards */
    char model_path[4096]; /* the job's model file; "" when collecting */
    struct ddts__serve_events events;
    struct ddts_logger log; /* the caller's logger and events.log */
    double started;         /* time(NULL) at create */
    /* Prepared data: the test split evaluates the global model. */
    struct ddts_array *x, *y, *x_test, *y_test;
    struct ddts_stats *stats;
    uint64_t rounds_per_epoch;    /* global/round_<R>.f32 snapshots every R rounds (0: none) */
    struct ddts_logs global_logs; /* the global model's figures on the test data (n 0: none) */
    const struct ddts_serve_hooks *hooks; /* during ddts_serve_run */

    /* The snapshot (src/serve/status.c), under mu. */
    pthread_mutex_t mu;
    enum ddts_serve_phase phase;
    char message[DDTS_ERROR_MSG_MAX];
    uint64_t rounds;
    struct ddts__serve_row *rows;
    size_t n_rows, cap_rows;
    /* Failed shares reported in this run, and why the job stops early ("": it does not). */
    struct ddts__serve_failure *failures;
    size_t n_failures;
    char stop_reason[DDTS_ERROR_MSG_MAX];
    /* The global curve during ddts_serve_run (report.c), under mu: epoch-end
     * rounds saved but not evaluated yet, and the figures of those evaluated. */
    pthread_cond_t eval_cv;
    pthread_t eval_thread;
    bool eval_running, eval_stop;
    uint64_t *eval_queue;
    size_t n_eval_queue, cap_eval_queue;
    struct ddts__serve_global_row *global_rows;
    size_t n_global_rows, cap_global_rows;
};

/* One epoch-end round of the global model evaluated on the test data. */
struct ddts__serve_global_row {
    uint64_t round;
    double loss, accuracy;
};

/* A share whose training failed, as the client reported it. */
struct ddts__serve_failure {
    long share;
    uint8_t id[DDTS_CLIENT_ID_BYTES];
    char name[DDTS_MAX_NAME_BYTES + 1];
    char msg[DDTS_ERROR_MSG_MAX];
};

/* The logger that also appends failures to events.log (sv->log's sink). */
void ddts__serve_event_sink(void *userdata, enum ddts_log_level level, const char *msg);

/* The snapshot: phase changes and client reports (status.c). */
void ddts__serve_set_phase(struct ddts_serve *sv, enum ddts_serve_phase p,
                           const struct ddts_error *err);
void ddts__serve_round(struct ddts_serve *sv);
/* Takes in a client's change; true when it reports a new epoch end. */
bool ddts__serve_on_client(struct ddts_serve *sv, const struct ddts_server_client *c);
void ddts__serve_rows_free(struct ddts_serve *sv);

/* Checks the model against the settings and the loaded data, before anything is split (check.c). */
enum ddts_status ddts__serve_check(const struct ddts_serve *sv, struct ddts_error *err);

/* An existing job (rerun.c): found for --collect (name and recorded settings), compared
 * with a rerun's settings, recorded once the server listens. */
enum ddts_status ddts__serve_find_collect(struct ddts_job *job, struct ddts_error *err);
enum ddts_status ddts__serve_check_rerun(struct ddts_job *job, struct ddts_error *err);
void ddts__serve_record(const struct ddts_serve *sv);

/* Shares (shards.c). */
enum ddts_status ddts__serve_write_shards(struct ddts_serve *sv, struct ddts_error *err);
/* The samples of each share as ddts__serve_write_shards splits n samples (job->clients values;
 * ddts_free it): the server's sample cap, so that no client chooses its share's size. */
enum ddts_status ddts__serve_share_sizes(const struct ddts_job *job, size_t n, uint64_t **out,
                                         struct ddts_error *err);
uint64_t ddts__serve_rounds_per_epoch(const struct ddts_job *job, const char *shards_dir,
                                      int has_val_data);

/* Raw little-endian float32 weights. */
enum ddts_status ddts__serve_read_f32(const char *path, float **out, size_t *n,
                                      struct ddts_error *err);
/* The global curve while the job runs (report.c): a thread evaluates each epoch-end
 * round's snapshot as on_round queues it (ddts__serve_eval_push, quick: the job is
 * locked), and tells hooks->on_global. Started and stopped by ddts_serve_run; a
 * stop leaves the rounds not evaluated yet to ddts__serve_global_history. */
void ddts__serve_eval_start(struct ddts_serve *sv);
void ddts__serve_eval_push(struct ddts_serve *sv, uint64_t round);
void ddts__serve_eval_stop(struct ddts_serve *sv);
/* The global curve: global/history.csv from global/round_*.f32, read back, or NULL (report.c). */
struct ddts_csv_history *ddts__serve_global_history(const struct ddts_serve *sv);
/* summary.json, summary.txt, report.png (report.c); `stopped`: why the job stopped early,
 * or NULL. *n_failed: the shares without results (failed). */
void ddts__serve_write_summary(struct ddts_serve *sv, double loss, double accuracy,
                               const char *global_rel, const struct ddts_csv_history *curve,
                               const char *stopped, size_t *n_failed);
/* The stop reason, if any, into buf (under mu); false when the job goes on. */
bool ddts__serve_stopping(struct ddts_serve *sv, char *buf, size_t cap);

#endif
