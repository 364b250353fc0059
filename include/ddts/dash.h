/*
 * The dashboard: a read-only web page of the jobs in a work folder, served
 * over HTTP by an embedded server (libmicrohttpd) on its own thread.
 *
 *   struct ddts_dash_config cfg = {.address = "127.0.0.1", .port = 7880,
 *                                  .workdir = "ddts-work", .live_job = "mnist"};
 *   struct ddts_dash *d;
 *   ddts_dash_create(&cfg, &d, &err);        // listening from here on
 *   ...  ddts_dash_on_client(d, c);          // from ddts_serve_hooks.on_client
 *   ...  ddts_dash_on_round(d, round);       // from ddts_serve_hooks.on_round
 *   ...  ddts_dash_on_epoch(d, c, e);        // from ddts_serve_hooks.on_epoch
 *   ...  ddts_dash_on_global(d, epoch, loss, acc);  // from ddts_serve_hooks.on_global
 *   ...  ddts_dash_on_log(d, level, msg);    // from the server's logger
 *   ddts_dash_destroy(d);
 *
 * Jobs are the sub-folders of `workdir`. One of them may be live (`live_job`):
 * its clients, rounds and events come from the calls above, which copy a few
 * hundred bytes under the dashboard's own mutex and never wait on the
 * network; the HTTP thread copies that state out under the same mutex and
 * renders outside it. Everything else (results, histories, summaries) is
 * read from the job folder on request. The page and the JSON API it polls
 * are described in docs/cli.md ("ddts dashboard").
 *
 * Access: on a loopback address (127.0.0.0/8, ::1) anyone on the machine may
 * read the page. On any other address each request must carry
 * `?token=<token>` (32 hex digits from the system CSPRNG, made at creation);
 * without it the answer is 403. Only GET and HEAD are served.
 */
#ifndef DDTS_DASH_H
#define DDTS_DASH_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "server.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ddts_dash; /* opaque; every function below is thread-safe */

struct ddts_dash_config {
    const char *address;       /* numeric IPv4 or IPv6 address to listen on; NULL: 127.0.0.1 */
    uint16_t port;             /* 0: any free port (ddts_dash_port says which) */
    const char *workdir;       /* the work folder whose sub-folders are the jobs (borrowed) */
    const char *live_job;      /* the job this process runs, or NULL (all read from disk) */
    const char *settings_json; /* the live job's settings as JSON (copied; may be NULL) */
};

/*
 * Starts serving. DDTS_EINVAL for an address that is not numeric or a
 * live_job that is not a valid name, DDTS_EIO when the address cannot be
 * bound (the message says why), DDTS_ENOMEM. *out is NULL on failure.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_dash_create(const struct ddts_dash_config *cfg,
                                                          struct ddts_dash **out,
                                                          struct ddts_error *err);
/* Stops the HTTP thread (open connections are closed) and frees everything. NULL: no-op. */
DDTS_API void ddts_dash_destroy(struct ddts_dash *d);

/* The port it listens on. */
DDTS_API uint16_t ddts_dash_port(const struct ddts_dash *d);
/* The page's full URL, "http://ADDR:PORT/" with "?token=..." where a token is required. */
DDTS_API const char *ddts_dash_url(const struct ddts_dash *d);

/* The live job's feed (see the top of this header); `d` may be NULL (no-op). */
DDTS_API void ddts_dash_on_client(struct ddts_dash *d, const struct ddts_server_client *c);
DDTS_API void ddts_dash_on_round(struct ddts_dash *d, uint64_t round);
/* A client's finished epoch's history row (its live curves get every column,
 * validation included; names already checked by the protocol). */
DDTS_API void ddts_dash_on_epoch(struct ddts_dash *d, const struct ddts_server_client *c,
                                 const struct ddts_wire_epoch *e);
/* The global model's figures on the test data after epoch `epoch` (1-based): the
 * live `@global` curve, until the job's global/history.csv exists. */
DDTS_API void ddts_dash_on_global(struct ddts_dash *d, uint64_t epoch, double loss,
                                  double accuracy);
/* Every log line is an event, except the server's "round N complete: ..." lines
 * (the rounds are on the page's timeline, from ddts_dash_on_round). */
DDTS_API void ddts_dash_on_log(struct ddts_dash *d, enum ddts_log_level level, const char *msg);
/* The live job's status as the page shows it (at most 15 characters, copied):
 * "running" initially; `ddts server` sets "finishing" while it evaluates the
 * global model and writes the report. */
DDTS_API void ddts_dash_set_status(struct ddts_dash *d, const char *status);

/*
 * Parses "[ADDR:]PORT" ("7880", "0.0.0.0:7880", "[::1]:7880") into `addr`
 * (cap bytes; "127.0.0.1" when absent) and `*port` (0..65535). DDTS_EINVAL
 * naming what is wrong.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_dash_parse_listen(const char *text, char *addr,
                                                                size_t cap, uint16_t *port,
                                                                struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
