/*
 * Passphrase-authenticated key exchange and the encrypted channel.
 *
 * CPace (draft-irtf-cfrg-cpace) over ristretto255 with BLAKE2b-512 as the
 * hash, then one crypto_secretstream_xchacha20poly1305 stream per direction.
 * The exchange is a pure state machine over messages (no sockets), so each
 * message can be unit-tested and fuzzed (fuzz/fuzz_handshake.c):
 *
 *     client                                  server
 *     step(NULL)        -> HELLO_C    ->      step(HELLO_C)   -> HELLO_S
 *     step(HELLO_S)     -> SHARE_C    ->      step(SHARE_C)   -> SHARE_S
 *     step(SHARE_S)     -> CONFIRM_C  ->      step(CONFIRM_C) -> (done)
 *     (done)
 *
 * When the client finds the server's confirmation tag wrong, step returns
 * DDTS_EAUTH and still produces an AUTH_FAIL message to send, so that both
 * sides end with DDTS_EAUTH. Nothing in a failure tells an attacker more than
 * "this one guess was wrong" (see docs/protocol.md).
 *
 * Private to the library (src/net/). Passphrases, which the integrator
 * creates, are public: include/ddts/passphrase.h. src/net/auth.c is the only
 * user of libsodium.
 */
#ifndef DDTS_AUTH_H
#define DDTS_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "../crypto/crypto.h" /* ddts_secure_random */
#include "ddts/core.h"
#include "ddts/passphrase.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DDTS_AUTH_NONCE_BYTES  16 /* client nonce and server session id halves */
#define DDTS_AUTH_SHARE_BYTES  32 /* a ristretto255 element */
#define DDTS_AUTH_TAG_BYTES    32 /* key confirmation tags */
#define DDTS_AUTH_HEADER_BYTES 24 /* crypto_secretstream header */
#define DDTS_AUTH_ABYTES       17 /* crypto_secretstream per-message overhead */
/* Largest handshake message, type byte included (SHARE_S). */
#define DDTS_AUTH_MSG_MAX 96

/* Initialises libsodium (idempotent, thread-safe). DDTS_EIO if it fails. */
DDTS_NODISCARD enum ddts_status ddts_auth_init(struct ddts_error *err);

enum ddts_role {
    DDTS_ROLE_CLIENT = 0, /* CPace initiator */
    DDTS_ROLE_SERVER = 1, /* CPace responder */
};

/* One run of the handshake (its secrets live in guarded memory). */
struct ddts_handshake;
/* Borrows `pw` for the life of the handshake. */
DDTS_NODISCARD enum ddts_status ddts_handshake_create(enum ddts_role role,
                                                      const struct ddts_passphrase *pw,
                                                      struct ddts_handshake **out,
                                                      struct ddts_error *err);
void ddts_handshake_destroy(struct ddts_handshake *hs);
/*
 * Server only, before the first step: answer the client's hello with
 * `status` (DDTS_EBANNED, DDTS_EUNSUPPORTED ...) instead of a session id.
 */
void ddts_handshake_refuse(struct ddts_handshake *hs, enum ddts_status status);
/*
 * Advances the exchange with the peer's message `in` (`in_n` bytes; NULL for
 * the client's first step) and writes the next message to send into `out`
 * (capacity `out_cap` >= DDTS_AUTH_MSG_MAX; `*out_n` = 0 when there is none).
 * `*done` becomes 1 when the channel is ready (ddts_handshake_channel).
 * Returns DDTS_EPROTO for a malformed or unexpected message, DDTS_EUNSUPPORTED
 * for another protocol version, DDTS_EAUTH for a wrong passphrase or an
 * invalid share, DDTS_EBANNED (or the refusal status) when the server refused.
 * After a failure the handshake is dead; when *out_n > 0, `out` still holds
 * a message to send before closing (the client's AUTH_FAIL, the server's
 * refusing HELLO_S).
 */
DDTS_NODISCARD enum ddts_status ddts_handshake_step(struct ddts_handshake *hs, const uint8_t *in,
                                                    size_t in_n, uint8_t *out, size_t out_cap,
                                                    size_t *out_n, int *done,
                                                    struct ddts_error *err);

/* The two encrypted streams of an authenticated connection. */
struct ddts_channel;
/* Moves the stream states out of a finished handshake (DDTS_ESTATE if not done). */
DDTS_NODISCARD enum ddts_status ddts_handshake_channel(struct ddts_handshake *hs,
                                                       struct ddts_channel **out,
                                                       struct ddts_error *err);
void ddts_channel_destroy(struct ddts_channel *ch);
/*
 * Encrypts message `msg` (`n` bytes) into `out` (`n` + DDTS_AUTH_ABYTES
 * bytes; `out_cap` must allow it, else DDTS_ELIMIT). `final` marks the last
 * message of the stream. `msg` may be `out` + 1: sealed in place (the fast
 * way for large messages); otherwise the two must not overlap.
 */
DDTS_NODISCARD enum ddts_status ddts_channel_seal(struct ddts_channel *ch, const uint8_t *msg,
                                                  size_t n, int final, uint8_t *out, size_t out_cap,
                                                  size_t *out_n, struct ddts_error *err);
/*
 * Decrypts one frame body `in` (`in_n` bytes) into `out` (capacity at least
 * in_n - DDTS_AUTH_ABYTES). DDTS_EAUTH when the frame was tampered with,
 * replayed, reordered or comes after the final one; `*final` is set when the
 * peer ended its stream. After a failure the channel refuses everything.
 * `out` may be `in` + 1: opened in place (the fast way; `in` is then
 * overwritten, also when authentication fails); otherwise no overlap.
 */
DDTS_NODISCARD enum ddts_status ddts_channel_open(struct ddts_channel *ch, const uint8_t *in,
                                                  size_t in_n, uint8_t *out, size_t out_cap,
                                                  size_t *out_n, int *final,
                                                  struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
