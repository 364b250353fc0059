/*
 * Hashing and secrets on libsodium (crypto.h). Error mapping: sodium_init is
 * the only call that can fail (DDTS_EIO); the rest cannot.
 */
#include <string.h>

#include <sodium.h>

#include "crypto/crypto.h"
#include "ddts/passphrase.h"

_Static_assert(sizeof(crypto_hash_sha256_state) <= sizeof(((struct ddts__sha256 *)0)->state),
               "crypto.h: struct ddts__sha256 too small for libsodium's state");
_Static_assert(_Alignof(crypto_hash_sha256_state) <= 16,
               "crypto.h: struct ddts__sha256 not aligned enough for libsodium's state");

enum ddts_status ddts__crypto_init(struct ddts_error *err)
{
    if (sodium_init() < 0)
        return ddts_error_set(err, DDTS_EIO, "crypto: libsodium failed to initialise");
    return DDTS_OK;
}

void ddts_secure_wipe(void *p, size_t n)
{
    if (p != NULL && n > 0)
        sodium_memzero(p, n);
}

int ddts_secure_compare(const void *a, const void *b, size_t n)
{
    return sodium_memcmp(a, b, n) == 0 ? 0 : -1;
}

void ddts_secure_random(void *buf, size_t n)
{
    randombytes_buf(buf, n);
}

void ddts__hex(const uint8_t *p, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
}

int ddts__unhex(const char *s, uint8_t *out, size_t n)
{
    size_t got = 0;
    const char *end = NULL;
    if (strlen(s) != 2 * n || sodium_hex2bin(out, n, s, 2 * n, NULL, &got, &end) != 0 || got != n ||
        *end != '\0')
        return -1;
    return 0;
}

static crypto_hash_sha256_state *sha_state(struct ddts__sha256 *s)
{
    return (crypto_hash_sha256_state *)(void *)s->state;
}

enum ddts_status ddts__sha256_init(struct ddts__sha256 *s, struct ddts_error *err)
{
    enum ddts_status st = ddts__crypto_init(err);
    if (st != DDTS_OK)
        return st;
    crypto_hash_sha256_init(sha_state(s));
    return DDTS_OK;
}

void ddts__sha256_update(struct ddts__sha256 *s, const void *data, size_t n)
{
    crypto_hash_sha256_update(sha_state(s), data, n);
}

void ddts__sha256_final(struct ddts__sha256 *s, uint8_t out[DDTS_SHA256_BYTES])
{
    crypto_hash_sha256_final(sha_state(s), out);
}

void ddts__sha256_hex(struct ddts__sha256 *s, char out[2 * DDTS_SHA256_BYTES + 1])
{
    uint8_t h[DDTS_SHA256_BYTES];
    ddts__sha256_final(s, h);
    sodium_bin2hex(out, 2 * DDTS_SHA256_BYTES + 1, h, sizeof h);
}
