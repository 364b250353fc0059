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

#include "auth.h"
#include "core.h"

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

struct ddts_server_config {
    const char *host; /* listen address; NULL: 0.0.0.0 */
    uint16_t port;    /* 0: DDTS_DEFAULT_PORT */
    int any_port;     /* non-zero: ignore port, bind a free one (tests; see bound_port) */
    const struct ddts_passphrase *passphrase; /* borrowed */
    size_t n_clients;                         /* shares of the job, 1..DDTS_MAX_CLIENTS */
    const char *workdir;                      /* results and state go under workdir/job */
    const char *job;                          /* job name: a valid name (ddts_wire_check_name) */
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
    enum ddts_sync_mode sync; /* sent to clients; any mode but NONE enables rounds */
    uint32_t sync_steps;      /* K of steps:K */
    int keep_serving;         /* non-zero: do not return when the job is complete */
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
};

/*
 * Runs the job to completion; resumes from WORKDIR/<job>/state when present.
 * Returns DDTS_OK once every share's results are received, DDTS_ECANCELED
 * when stopped, or the status of a fatal failure (the listening socket,
 * the work folder).
 */
DDTS_NODISCARD enum ddts_status ddts_server_run(const struct ddts_server_config *cfg,
                                                struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
