/*
 * Connections: a TCP socket, the CPace handshake, then typed encrypted
 * messages in length-prefixed frames (docs/protocol.md). Private to the
 * library (src/net/); the public API is server.h and client.h.
 *
 *     struct ddts_conn *c;
 *     ddts_conn_connect("10.0.0.2", 7878, 10.0, &c, err);
 *     ddts_conn_handshake(c, DDTS_ROLE_CLIENT, pw, err);
 *     ddts_conn_send(c, DDTS_MSG_NEXT, NULL, 0, err);
 *     ddts_conn_recv(c, &type, &payload, &n, err);
 *     ddts_conn_destroy(c);
 *
 * Every read and write waits at most the connection's timeout (poll); a
 * frame longer than the limit of the connection's phase
 * (DDTS_MAX_FRAME_PREAUTH before authentication, DDTS_MAX_FRAME + overhead
 * after) is refused before anything is allocated. The first violation makes
 * the connection dead: later calls return the same status. Sends use
 * MSG_NOSIGNAL, so a closed peer never raises SIGPIPE.
 *
 * Threads: one thread receives; ddts_conn_send and its variants may be called
 * from several threads at once (they serialise on a mutex), e.g. a heartbeat
 * thread beside the main one.
 */
#ifndef DDTS_NET_CONN_H
#define DDTS_NET_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "ddts/core.h"
#include "wire.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ddts_conn;
struct ddts_listener;

/*
 * Resolves `host` (name or address) and connects within `timeout_s` seconds.
 * DDTS_ETIMEOUT, DDTS_EIO (refused, unreachable; errno kept), DDTS_ENOTFOUND
 * (unknown host).
 */
DDTS_NODISCARD enum ddts_status ddts_conn_connect(const char *host, uint16_t port, double timeout_s,
                                                  struct ddts_conn **out, struct ddts_error *err);
/* Wraps a connected stream socket (takes ownership of `fd`, also on failure). */
DDTS_NODISCARD enum ddts_status ddts_conn_from_fd(int fd, struct ddts_conn **out,
                                                  struct ddts_error *err);
/* Closes the socket (without a goodbye) and frees; accepts NULL. */
void ddts_conn_destroy(struct ddts_conn *c);
/* Sends BYE with the stream's final tag when authenticated, then destroys. */
void ddts_conn_close(struct ddts_conn *c);

/* Per-read and per-write timeout in seconds (default DDTS_IO_TIMEOUT_S). */
void ddts_conn_set_timeout(struct ddts_conn *c, double timeout_s);
/* The peer's address as text ("127.0.0.1", "::1", "socketpair"). */
const char *ddts_conn_peer(const struct ddts_conn *c);
/* The socket (for tests that play a hostile peer). */
int ddts_conn_fd(const struct ddts_conn *c);
/* Shuts the socket down (any thread): the owner's pending I/O fails at once. */
void ddts_conn_shutdown(struct ddts_conn *c);
/* Non-zero once the handshake succeeded. */
int ddts_conn_is_authenticated(const struct ddts_conn *c);

/*
 * Runs the handshake in `role` with `pw` (borrowed). A server that refuses the
 * peer passes `refuse` (DDTS_EBANNED ...), else DDTS_OK. Returns DDTS_EAUTH
 * for a wrong passphrase (on both sides), DDTS_EBANNED on a refused client,
 * DDTS_EPROTO, DDTS_ELIMIT, DDTS_ETIMEOUT, DDTS_ECLOSED, DDTS_EIO.
 */
DDTS_NODISCARD enum ddts_status ddts_conn_handshake(struct ddts_conn *c, enum ddts_role role,
                                                    const struct ddts_passphrase *pw,
                                                    enum ddts_status refuse,
                                                    struct ddts_error *err);

/*
 * Sends one message: `type` followed by `n` payload bytes (n + 1 <=
 * DDTS_MAX_FRAME, else DDTS_ELIMIT). Requires an authenticated connection.
 */
DDTS_NODISCARD enum ddts_status ddts_conn_send(struct ddts_conn *c, uint8_t type,
                                               const void *payload, size_t n,
                                               struct ddts_error *err);
/* As ddts_conn_send with the payload of a writer (its status is checked). */
DDTS_NODISCARD enum ddts_status
ddts_conn_send_w(struct ddts_conn *c, const struct ddts_wire_writer *w, struct ddts_error *err);
/* Sends an ERROR message (status and text) so the peer can report it. */
void ddts_conn_send_error(struct ddts_conn *c, enum ddts_status status, const char *msg);
/*
 * Receives the next message other than HEARTBEAT. `*payload` (n bytes,
 * after the type byte) points into the connection's buffer and is valid until
 * the next receive. An ERROR message from the peer becomes its status and
 * text in `err` (returned as is, or DDTS_EPROTO if unknown); BYE becomes
 * DDTS_ECLOSED. Frame violations: DDTS_ELIMIT (too long), DDTS_EAUTH
 * (tampered/replayed/reordered), DDTS_ECLOSED (EOF, also mid-frame),
 * DDTS_ETIMEOUT.
 */
DDTS_NODISCARD enum ddts_status ddts_conn_recv(struct ddts_conn *c, uint8_t *type,
                                               const uint8_t **payload, size_t *n,
                                               struct ddts_error *err);
/* As ddts_conn_recv, failing with DDTS_EPROTO unless the type is `expect`. */
DDTS_NODISCARD enum ddts_status ddts_conn_expect(struct ddts_conn *c, uint8_t expect,
                                                 const uint8_t **payload, size_t *n,
                                                 struct ddts_error *err);
/* Sends an empty HEARTBEAT. */
DDTS_NODISCARD enum ddts_status ddts_conn_heartbeat(struct ddts_conn *c, struct ddts_error *err);

/* Called after each chunk: bytes done and total; return non-zero to cancel. */
typedef int (*ddts_progress_fn)(void *userdata, uint64_t done, uint64_t total);

/* Largest FILE_DATA chunk (bounded memory for streamed transfers). */
#define DDTS_CHUNK_BYTES (1u << 20)

/*
 * Streams the file at `path` as FILE_BEGIN(kind, `remote`, size), FILE_DATA
 * chunks, FILE_END. Memory: one chunk. `remote` must pass
 * ddts_wire_check_relpath. `progress` may be NULL.
 */
DDTS_NODISCARD enum ddts_status ddts_conn_send_file(struct ddts_conn *c, uint8_t kind,
                                                    const char *path, const char *remote,
                                                    ddts_progress_fn progress, void *userdata,
                                                    struct ddts_error *err);
/*
 * After FILE_BEGIN was received and parsed (size `size`), receives the data
 * into `path` atomically (temporary name, fsync, rename) and consumes
 * FILE_END. DDTS_ELIMIT when `size` exceeds DDTS_MAX_FILE_BYTES, DDTS_EPROTO
 * when the peer sends more data than announced or another message.
 */
DDTS_NODISCARD enum ddts_status ddts_conn_recv_file_data(struct ddts_conn *c, const char *path,
                                                         uint64_t size, ddts_progress_fn progress,
                                                         void *userdata, struct ddts_error *err);
/* Streams `n` bytes of memory as FILE_DATA chunks (no BEGIN/END). */
DDTS_NODISCARD enum ddts_status ddts_conn_send_data(struct ddts_conn *c, const void *data, size_t n,
                                                    struct ddts_error *err);
/* Receives exactly `n` bytes of FILE_DATA chunks into `out`. */
DDTS_NODISCARD enum ddts_status ddts_conn_recv_data(struct ddts_conn *c, void *out, size_t n,
                                                    struct ddts_error *err);

/*
 * Listens on `host` (NULL or "0.0.0.0": every IPv4 address; "::": IPv6) and
 * `port` (0: any free port, see ddts_listener_port), SO_REUSEADDR set.
 */
DDTS_NODISCARD enum ddts_status ddts_listener_open(const char *host, uint16_t port,
                                                   struct ddts_listener **out,
                                                   struct ddts_error *err);
void ddts_listener_close(struct ddts_listener *l);
uint16_t ddts_listener_port(const struct ddts_listener *l);
/* Waits up to `timeout_s` for a connection: DDTS_ETIMEOUT when none came. */
DDTS_NODISCARD enum ddts_status ddts_listener_accept(struct ddts_listener *l, double timeout_s,
                                                     struct ddts_conn **out,
                                                     struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
