/*
 * Hashing and secrets (src/crypto/crypto.c), on libsodium: one home for the
 * primitives that several modules need. The downloader checks datasets with
 * SHA-256 (src/io/download.c); the protocol (src/net/auth.c, which keeps the
 * CPace exchange and the encrypted channel to itself) initialises libsodium
 * here and draws its random bytes from here. ddts_secure_wipe and
 * ddts_secure_compare are public (include/ddts/passphrase.h).
 * Private to the library; not installed.
 */
#ifndef DDTS_CRYPTO_CRYPTO_H
#define DDTS_CRYPTO_CRYPTO_H

#include <stddef.h>
#include <stdint.h>

#include "ddts/core.h"

/* Initialises libsodium (idempotent, thread-safe). DDTS_EIO if it fails. */
DDTS_NODISCARD enum ddts_status ddts__crypto_init(struct ddts_error *err);

/* Fills `buf` with `n` bytes from the system CSPRNG (libsodium initialised). */
void ddts_secure_random(void *buf, size_t n);

/* Lower-case hex of n bytes into out (2n + 1 bytes) (libsodium's sodium_bin2hex). */
void ddts__hex(const uint8_t *p, size_t n, char *out);
/* Parses exactly 2n hex digits (either case) into out; 0 on success, -1 otherwise. */
int ddts__unhex(const char *s, uint8_t *out, size_t n);

#define DDTS_SHA256_BYTES 32
/*
 * SHA-256 (FIPS 180-4) of a stream: libsodium's crypto_hash_sha256, whose
 * state lives in this opaque block so that includers need no sodium.h.
 */
struct ddts__sha256 {
    _Alignas(16) unsigned char state[128];
};
/* DDTS_EIO when libsodium cannot be initialised. */
DDTS_NODISCARD enum ddts_status ddts__sha256_init(struct ddts__sha256 *s, struct ddts_error *err);
void ddts__sha256_update(struct ddts__sha256 *s, const void *data, size_t n);
void ddts__sha256_final(struct ddts__sha256 *s, uint8_t out[DDTS_SHA256_BYTES]);
/* Finishes and writes the 64 lowercase hex digits and a NUL. */
void ddts__sha256_hex(struct ddts__sha256 *s, char out[2 * DDTS_SHA256_BYTES + 1]);

#endif
