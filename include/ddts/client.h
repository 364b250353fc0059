/*
 * The ddts client: joins a server, receives its share of a job, trains it
 * through the integrator's callback (which may average weights with the
 * other clients through ddts_client_sync_exchange), uploads the result
 * folder and waits for the server's receipt. It deletes nothing.
 *
 * Work folder layout (a restarted client with the same folder continues):
 *   id                      the client's random identity (32 hex digits)
 *   <job>/job.state         job id, share, progress (downloaded, trained, received)
 *   <job>/settings.json     settings from the server
 *   <job>/model.<ext>       the model file from the server
 *   <job>/shard/            the share's data files
 *   <job>/init_weights.f32  global weights to start from (a share taken over mid-job)
 *   <job>/results/          what train writes; uploaded when it returns
 */
#ifndef DDTS_CLIENT_H
#define DDTS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "passphrase.h"
#include "server.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What the train callback is given (all borrowed for the callback's duration). */
struct ddts_client_job {
    const char *job;               /* job name */
    const char *client_name;       /* this client's name (results folder on the server) */
    const char *settings_json;     /* NUL-terminated, as the server sent it ("" if none) */
    const char *model_path;        /* the received model file, or NULL */
    const char *shard_dir;         /* the received shard folder, or NULL when no data was sent */
    const char *result_dir;        /* write results here (exists, maybe with earlier output) */
    const char *init_weights_path; /* global weights to start from (float32), or NULL */
    uint32_t shard;                /* this share's index */
    uint32_t n_shards;             /* number of shares */
    enum ddts_sync_mode sync;      /* when to call ddts_client_sync_exchange */
    uint32_t sync_steps;           /* K of steps:K */
    uint64_t round;                /* averaging rounds completed before this share started */
    /*
     * Weight rounds this share already contributed to (0 for a fresh share):
     * a share taken over from a lost client, or resumed after a restart, can
     * skip the epochs they cover and start from the global weights.
     */
    uint64_t share_rounds;
};

/* The averaging handle given to train (valid during the callback only). */
struct ddts_client_sync;

/* Reductions for ddts_client_sync_reduce. */
enum ddts_reduce_op {
    DDTS_REDUCE_MEAN = 0, /* sample-weighted mean */
    DDTS_REDUCE_SUM = 1,
    DDTS_REDUCE_MIN = 2,
    DDTS_REDUCE_MAX = 3,
};

/*
 * Sends `weights` (`n` float32, trained on `n_samples` samples since the last
 * exchange) and blocks until the round's sample-weighted average arrives,
 * written over `weights`. Every client of a round must pass the same `n`.
 * The server saves the average as the job's global weights. Returns
 * DDTS_ECLOSED / DDTS_ETIMEOUT / DDTS_EPROTO when the server is gone or
 * refuses (e.g. a mismatched `n`); train should then return that status.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_client_sync_exchange(struct ddts_client_sync *sync,
                                                                   float *weights, size_t n,
                                                                   uint64_t n_samples,
                                                                   struct ddts_error *err);
/*
 * As exchange, with another reduction and without touching the global
 * weights: e.g. merging normalizer statistics before training (MEAN of
 * per-feature means and of means of squares; MIN/MAX of minima/maxima).
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_client_sync_reduce(struct ddts_client_sync *sync, enum ddts_reduce_op op, float *values,
                        size_t n, uint64_t n_samples, struct ddts_error *err);

/*
 * Reports training progress to the server (a PROGRESS message, for its live
 * view), from the thread that calls the exchanges. Throttled: sent only when
 * `p` ends an epoch (DDTS_PROGRESS_EPOCH_END) or DDTS_PROGRESS_INTERVAL_S
 * passed since the last one; otherwise nothing happens and DDTS_OK is
 * returned. Out-of-range figures are clamped (an infinite loss or rate is
 * sent as NaN / 0). Best effort: a send waits at most the connection's I/O
 * timeout, and after a failure later reports are skipped, so training goes
 * on and the broken connection is reported by the next exchange or the
 * upload. Returns DDTS_OK, DDTS_EINVAL (sync or p NULL), or the send's
 * failure.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_client_send_progress(struct ddts_client_sync *sync, const struct ddts_wire_progress *p,
                          struct ddts_error *err);

/*
 * Reports a finished epoch's history row to the server (an EPOCH message,
 * protocol 3: every figure history.csv gets, training and validation, so
 * that the server's dashboard draws validation curves while the job runs).
 * Call it after the epoch-end ddts_client_send_progress, from the same
 * thread. Not throttled (one per epoch). Figures whose name the protocol
 * does not accept (docs/protocol.md) are left out, and the fold and epoch
 * are clamped as for PROGRESS. Best effort, like ddts_client_send_progress:
 * after a failed send no more reports are sent. Returns DDTS_OK,
 * DDTS_EINVAL (sync or e NULL), or the send's failure.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_client_send_epoch(struct ddts_client_sync *sync,
                                                                const struct ddts_wire_epoch *e,
                                                                struct ddts_error *err);

/* Trains one share; returns DDTS_OK or a failure status (err filled). */
typedef enum ddts_status (*ddts_train_fn)(void *userdata, const struct ddts_client_job *job,
                                          struct ddts_client_sync *sync, struct ddts_error *err);

/* Called after each chunk of a transfer: what ("model", "shard/x.npy", "results"), done, total. */
typedef void (*ddts_client_progress_fn)(void *userdata, const char *what, uint64_t done,
                                        uint64_t total);

struct ddts_client_config {
    const char *host;                         /* server address */
    uint16_t port;                            /* 0: DDTS_DEFAULT_PORT */
    const struct ddts_passphrase *passphrase; /* borrowed */
    const char *workdir;                      /* created if missing */
    const char *name; /* results folder name on the server; NULL: "client-<id prefix>" */
    const struct ddts_logger *logger; /* may be NULL */
    ddts_train_fn train;
    void *userdata;                   /* given to train and progress */
    ddts_client_progress_fn progress; /* may be NULL */
    double connect_timeout_s;         /* 0: 10 */
    double io_timeout_s; /* 0: DDTS_IO_TIMEOUT_S (the server heartbeats during waits) */
    /* Reconnect attempts after a lost connection (0: none), pausing retry_s between. */
    unsigned retries;
    double retry_s;
    /* Non-zero: train one share and return, instead of asking for more work. */
    int one_share;
};

/*
 * Runs until the server says the job is complete (or, with one_share, after
 * this client's share is received). DDTS_EAUTH for a wrong passphrase,
 * DDTS_EBANNED, DDTS_EEXIST when this client's id is already connected,
 * the train callback's status, or a connection failure after the retries.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_client_run(const struct ddts_client_config *cfg,
                                                         struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
