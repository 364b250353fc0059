/*
 * The ddts server: waits for n_clients clients, gives each a share of the
 * job (settings, model file, shard files), runs weight-averaging rounds,
 * collects every client's results and returns once every share's results
 * are received (docs/protocol.md).
 *
 * The server does no neural-network math and loads no data: the integrator
 * prepares the files to send, and weights travel as flat float32 vectors
 * that the server averages (weighted by sample counts).
 *
 * Layout under WORKDIR/<job>/:
 *   state              the job state (rounds, shards done, client ids), rewritten atomically
 *   global/weights.f32 the latest averaged weights (raw little-endian float32; the
 *                      integrator turns them into a model file, see on_round)
 *   clients/<name>/    each client's uploaded results
 */
#ifndef DDTS_SERVER_H
#define DDTS_SERVER_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "limits.h"
#include "passphrase.h"

#ifdef __cplusplus
extern "C" {
#endif

/* How clients' weights are combined during training (SPEC §5). */
enum ddts_sync_mode {
    DDTS_SYNC_NONE = 0,  /* each client trains its own model */
    DDTS_SYNC_EPOCH = 1, /* weighted average after every epoch */
    DDTS_SYNC_STEPS = 2, /* every sync_steps steps */
    DDTS_SYNC_STEP = 3,  /* every step (synchronous data parallel) */
};

/* What a client is doing, as the server sees it (the live view's STATE column). */
enum ddts_client_state {
    DDTS_CLIENT_WAITING = 0,   /* joined; waiting for a share or for the job to start */
    DDTS_CLIENT_SENDING = 1,   /* receiving its share from the server (JOB and files) */
    DDTS_CLIENT_TRAINING = 2,  /* training (PROGRESS reports arrive) */
    DDTS_CLIENT_SYNCING = 3,   /* its weights are in; waiting for the round to complete */
    DDTS_CLIENT_UPLOADING = 4, /* sending its results */
    DDTS_CLIENT_DONE = 5,      /* its share's results are received */
    DDTS_CLIENT_FAILED = 6,    /* its training failed (results received, TRAINED status) */
    DDTS_CLIENT_LEFT = 7,      /* disconnected */
    DDTS_CLIENT_LOST = 8,      /* silent beyond client_timeout or missed a round: dropped */
};
/* "waiting", "sending", "training", "syncing", "uploading", "done", "failed", "left", "lost"
 * (at most 9 characters); "?" for another value. */
DDTS_API const char *ddts_client_state_str(enum ddts_client_state s);

#define DDTS_CLIENT_ID_BYTES 16

/*
 * Training progress of a client's share: what ddts_client_send_progress sends
 * (a PROGRESS message, docs/protocol.md) and the server's live view shows.
 */
struct ddts_wire_progress {
    uint32_t fold, n_folds; /* 1-based fold of n_folds; both 0 without k-fold */
    uint32_t epoch, epochs; /* 1-based epoch of epochs */
    uint64_t done, total;   /* samples done in this epoch, samples in the epoch */
    double loss;            /* running mean over the epoch so far; NaN: unknown */
    double accuracy;        /* in [0, 1]; NaN: the model has no accuracy metric */
    double samples_per_s;   /* throughput of this epoch so far, >= 0 */
    double elapsed_s;       /* seconds since the epoch began, >= 0 */
    uint8_t flags;          /* DDTS_PROGRESS_EPOCH_END, other bits 0 */
};
#define DDTS_PROGRESS_EPOCH_END 1u /* the epoch is over: done == total, final figures */

/*
 * A finished epoch's history row: every figure the client's history.csv gets
 * for it (training and validation: "loss", "accuracy", "val_loss", ...).
 * What ddts_client_send_epoch sends (an EPOCH message, protocol 3,
 * docs/protocol.md) and ddts_server_config.on_epoch receives.
 */
struct ddts_wire_epoch {
    uint32_t fold, n_folds; /* 1-based fold of n_folds; both 0 without k-fold */
    uint32_t epoch, epochs; /* 1-based epoch of epochs */
    uint32_t n;             /* figures, 0..DDTS_MAX_EPOCH_FIGURES */
    /* 1..DDTS_MAX_EPOCH_NAME_BYTES of [A-Za-z0-9._-], each name once */
    char names[DDTS_MAX_EPOCH_FIGURES][DDTS_MAX_EPOCH_NAME_BYTES + 1];
    double values[DDTS_MAX_EPOCH_FIGURES]; /* any double; NaN or infinite: not a number */
};

/* One client as the server sees it: given to on_client, borrowed for the call. */
struct ddts_server_client {
    uint64_t session;  /* connection number (1, 2, ...), unique during ddts_server_run */
    const uint8_t *id; /* the client's persistent id (DDTS_CLIENT_ID_BYTES): a table's key */
    const char *name;  /* as the client announced it in JOIN */
    const char *address;
    enum ddts_client_state state;
    long share;       /* the share it holds, or -1 */
    int has_progress; /* progress holds the latest PROGRESS of the current share */
    struct ddts_wire_progress progress;
    double progress_at; /* ddts_now() when that PROGRESS arrived */
    const char *error;  /* state FAILED: the client's error text (as it sent it); else NULL */
};

/*
 * Seconds until the client finishes its share, at time `now` (ddts_now()):
 * the samples left (of this epoch, the epochs after it, and the folds after
 * this one) over its rate, less the time since the report arrived (never
 * below 0). NaN when unknown: no progress, or a rate of 0.
 */
DDTS_API double ddts_server_client_eta(const struct ddts_server_client *c, double now);

struct ddts_server_config {
    const char *host; /* listen address; NULL: 0.0.0.0 */
    uint16_t port;    /* 0: DDTS_DEFAULT_PORT */
    int any_port;     /* non-zero: ignore port, bind a free one (tests; see bound_port) */
    const struct ddts_passphrase *passphrase; /* borrowed */
    size_t n_clients;                         /* shares of the job, 1..DDTS_MAX_CLIENTS */
    const char *workdir;                      /* results and state go under workdir/job */
    const char *job;                  /* job name: 1..DDTS_MAX_NAME_BYTES of [A-Za-z0-9._-] */
    unsigned ban_after;               /* failed handshakes before an address is refused (0: 3) */
    double ban_s;                     /* how long a ban lasts; <= 0: for the life of the job */
    double client_timeout_s;          /* silence after which a client is lost (0: 60) */
    double io_timeout_s;              /* per read/write (0: DDTS_IO_TIMEOUT_S) */
    const struct ddts_logger *logger; /* may be NULL */
    const char *settings_json;        /* sent verbatim to every client (may be NULL) */
    const char *model_path;           /* sent as file "model" + its extension (may be NULL) */
    /*
     * Folder with one sub-folder per share, "shard_0" .. "shard_<n-1>"; the
     * regular files of shard_i (recursively) are sent to the client of share i.
     * NULL: no data is sent (clients load their own).
     */
    const char *shards_dir;
    /*
     * Values in the model's weight vector (ddts_train_count_weights), or 0
     * when unknown. When known, a SYNC of the weights must have exactly this
     * length and every other reduction at most this length, so that no client
     * chooses the job's vector length (nor the server's 16 bytes per value of
     * running sum).
     */
    uint64_t n_weights;
    /*
     * Samples of each share (n_clients values), or NULL when unknown (each
     * client's own data). When known, a contribution to a weighted mean counts
     * for at most its share's samples, whatever the client claims.
     */
    const uint64_t *share_samples;
    enum ddts_sync_mode sync; /* sent to clients; any mode but NONE enables rounds */
    uint32_t sync_steps;      /* K of steps:K */
    int keep_serving;         /* non-zero: do not return when the job is complete */
    /* Non-zero: collect only. The job must exist (its state file); a client is
     * only taken when it holds trained results of this job not yet received,
     * any other is told the job is done (DONE) and given nothing to train. */
    int collect;
    /* Polled every 0.2 s; a non-zero answer stops the server. May be NULL. */
    int (*should_stop)(void *userdata);
    /* Out: the port actually bound (useful with any_port); may be NULL. */
    uint16_t *bound_port;
    /* Out (may be NULL): called once the server is listening. */
    void (*on_listening)(void *userdata, uint16_t port);
    void *userdata;
    /*
     * May be NULL. Called after each weight-averaging round with the new global
     * weights (`n` float32, borrowed for the call), e.g. to save a Keras model
     * of the global state. Runs on a connection thread with the job locked: it
     * must be quick and must not block on the network.
     */
    void (*on_round)(void *userdata, uint64_t round, const float *weights, size_t n);
    /*
     * May be NULL. Called when a joined client changes state or reports
     * training progress (at most every DDTS_PROGRESS_INTERVAL_S per client,
     * plus each epoch end), and once more when it leaves (LEFT, LOST, or DONE
     * and FAILED kept). Runs on that client's connection thread, without the
     * job locked, possibly on several threads at once: it must be
     * thread-safe and quick (the live view of `ddts server` draws from it).
     */
    void (*on_client)(void *userdata, const struct ddts_server_client *c);
    /*
     * May be NULL. Called when a training client reports a finished epoch's
     * history row (EPOCH, protocol 3 clients; `e` checked by
     * ddts_wire_epoch_decode, borrowed for the call), after the PROGRESS that
     * ended the epoch. Same threads and rules as on_client.
     */
    void (*on_epoch)(void *userdata, const struct ddts_server_client *c,
                     const struct ddts_wire_epoch *e);
};

/*
 * Runs the job to completion; resumes from WORKDIR/<job>/state when present
 * (a new job's state is written once the server listens: a failed start
 * leaves none).
 * Returns DDTS_OK once every share's results are received, DDTS_ECANCELED
 * when stopped, or the status of a fatal failure (the listening socket,
 * the work folder).
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_server_run(const struct ddts_server_config *cfg,
                                                         struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
