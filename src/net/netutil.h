/* Internal helpers shared by the server and the client (not installed). */
#ifndef DDTS_NET_NETUTIL_H
#define DDTS_NET_NETUTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../crypto/crypto.h"
#include "ddts/core.h"
#include "ddts/limits.h"

/* Relative paths of the regular files under a folder, recursively (16 levels). */
struct ddts__file_list {
    char **rel;
    size_t n, cap;
};
void ddts__file_list_free(struct ddts__file_list *fl);
/* Appends the files under root/rel; each path passes ddts_wire_check_relpath. */
DDTS_NODISCARD enum ddts_status ddts__list_files(const char *root, const char *rel,
                                                 struct ddts__file_list *fl, int depth,
                                                 struct ddts_error *err);
/* ddts__hex and ddts__unhex: crypto/crypto.h. */
/* Creates the parent folder of `path`. */
DDTS_NODISCARD enum ddts_status ddts__mkdir_parent(const char *path, struct ddts_error *err);

/* The announcement of one file of a sequence (the job's files, a share's
 * results), or its end. */
struct ddts__file_begin {
    uint8_t kind;
    char rel[DDTS_MAX_PATH_BYTES + 1]; /* checked by ddts_wire_check_relpath */
    uint64_t size;
};
/*
 * Receives the next message of a file sequence after `files` files: the
 * closing FILES_DONE, whose count must be `files` (*done = 1), or a
 * FILE_BEGIN parsed into fb (*done = 0); anything else is a protocol error.
 */
struct ddts_conn;
DDTS_NODISCARD enum ddts_status ddts__recv_file_begin(struct ddts_conn *c, uint32_t files,
                                                      struct ddts__file_begin *fb, int *done,
                                                      struct ddts_error *err);

/*
 * Sets one deadline (ddts_now() time; 0: none) for everything on the
 * connection, on top of the per-read/write timeout: the server gives an
 * unauthenticated connection one deadline from its handshake turn.
 */
struct ddts_listener;
void ddts__conn_set_deadline(struct ddts_conn *c, double deadline);
/*
 * Accepts one connection as a bare socket and its peer address (nothing is
 * allocated, so a refused peer costs nothing). DDTS_ETIMEOUT when none came.
 */
DDTS_NODISCARD enum ddts_status ddts__listener_accept_fd(struct ddts_listener *l, double timeout_s,
                                                         int *fd, struct sockaddr_storage *peer,
                                                         struct ddts_error *err);
/*
 * The address a peer is counted under (bans, limits): an IPv4 address as
 * "a.b.c.d" (also when mapped into IPv6), an IPv6 address by its /64 prefix
 * ("2001:db8:1:2::/64"), since one host can hold a whole /64. `key` holds
 * at least DDTS__ADDR_KEY_BYTES.
 */
#define DDTS__ADDR_KEY_BYTES 64
void ddts__addr_key(const struct sockaddr_storage *peer, char *key);
/*
 * Copies `in` into out (capacity cap >= 1) with every control byte, DEL and
 * backslash escaped (\n, \xHH), so that text from a peer cannot move a
 * terminal's cursor or forge a line of a log; truncated to fit.
 */
void ddts__escape(const char *in, char *out, size_t cap);

/* The protocol version a handshake settled on (the client's, on the server). */
struct ddts_handshake;
uint16_t ddts__handshake_version(const struct ddts_handshake *hs);
/* A client handshake offers `version` instead of DDTS_WIRE_VERSION (call
 * before its first step): how the tests play an older client. */
void ddts__handshake_offer_version(struct ddts_handshake *hs, uint16_t version);
/* The protocol version an authenticated connection speaks (0 before). */
uint16_t ddts__conn_version(const struct ddts_conn *c);
/* ddts_conn_handshake as a client of protocol `version` (an older client, for
 * the tests; a server of another version refuses it). */
DDTS_NODISCARD enum ddts_status ddts__conn_handshake_as(struct ddts_conn *c,
                                                        const struct ddts_passphrase *pw,
                                                        uint16_t version, struct ddts_error *err);

/*
 * With on = 0, a channel seals and opens every message through libsodium
 * alone (auth.c): for tests that compare that with the OpenSSL fast path.
 */
struct ddts_channel;
void ddts__channel_set_fast(struct ddts_channel *ch, int on);

/*
 * Timed waits measure on CLOCK_MONOTONIC, so that a change of the wall clock
 * (NTP, an administrator) neither stretches nor cuts a heartbeat or a poll.
 * ddts__cond_init makes such a condition variable (0, or an errno value);
 * ddts__cond_wait_for waits on it (`mu` held) at most `seconds`.
 */
int ddts__cond_init(pthread_cond_t *cv);
void ddts__cond_wait_for(pthread_cond_t *cv, pthread_mutex_t *mu, double seconds);

#endif
