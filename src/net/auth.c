/*
 * CPace (draft-irtf-cfrg-cpace) over ristretto255 with BLAKE2b-512, key
 * confirmation in both directions, then crypto_secretstream_xchacha20poly1305
 * in each direction. With src/crypto/crypto.c (hashing, random bytes, hex,
 * wiping), the only user of libsodium in ddts. The computation is written
 * out in docs/protocol.md ("Handshake").
 *
 * Bulk frames go through OpenSSL's ChaCha20-Poly1305 (libcrypto; this is its
 * only user in ddts), about 2.5 times faster than libsodium's on AVX-512
 * CPUs, producing the very same secretstream bytes: a secretstream message
 * is the IETF ChaCha20-Poly1305 AEAD, key k and nonce of the stream state, of
 * the plaintext (tag, 63 zero bytes) || message, of which only the first
 * byte of the first block is sent. One quirk: libsodium pads the MAC input
 * after the message with (mlen mod 16) zero bytes where the AEAD pads
 * (-mlen mod 16); they agree when mlen mod 16 is 0 or 8, so only messages of
 * those lengths take this path (file chunks do: 1 MiB - 1 bytes of data plus
 * the type byte), every other one goes through libsodium. The stream state
 * (nonce update by the MAC, counter, rekey) is libsodium's and is updated
 * exactly as crypto_secretstream_xchacha20poly1305_push/pull do;
 * tests/unit/test_net_channel.c checks both paths against each other.
 *
 * Every secret (scalars, generator, K, ISK, derived keys, stream states)
 * lives in sodium_malloc'd memory and is wiped when no longer needed; the
 * passphrase lives in read-only guarded memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <sodium.h>

#include "auth.h"
#include "ddts/limits.h"
#include "wire.h"
#include "netutil.h"

#define DSI       "CPaceRistretto255-BLAKE2b"
#define CI        "ddts/1"
#define KDF_CTX   "ddtsnet1"
#define H_BYTES   64  /* BLAKE2b-512 */
#define H_BLOCK   128 /* its input block size, for the generator's zero padding */
#define SID_BYTES (2 * DDTS_AUTH_NONCE_BYTES)

enum ddts_status ddts_auth_init(struct ddts_error *err)
{
    return ddts__crypto_init(err);
}

/* ---- passphrases ---- */

struct ddts_passphrase {
    size_t n;
    unsigned char bytes[]; /* the whole struct is sodium_malloc'd, then read-only */
};

enum ddts_status ddts_passphrase_create(const char *s, size_t n, struct ddts_passphrase **out,
                                        struct ddts_error *err)
{
    *out = NULL;
    if (n == 0)
        return ddts_error_set(err, DDTS_EINVAL, "passphrase is empty");
    if (n > DDTS_MAX_PASSPHRASE_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "passphrase of %zu bytes (max %d)", n,
                              DDTS_MAX_PASSPHRASE_BYTES);
    if (ddts_auth_init(err) != DDTS_OK)
        return DDTS_EIO;
    /* sodium_malloc places the block against a guard page: its start is only as aligned
     * as its size, so round the size up to 16. */
    size_t size = (sizeof(struct ddts_passphrase) + n + 15) & ~(size_t)15;
    struct ddts_passphrase *pw = sodium_malloc(size);
    if (pw == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "passphrase: out of guarded memory");
    pw->n = n;
    memcpy(pw->bytes, s, n);
    sodium_mprotect_readonly(pw);
    *out = pw;
    return DDTS_OK;
}

void ddts_passphrase_destroy(struct ddts_passphrase *pw)
{
    if (pw != NULL)
        sodium_free(pw); /* sodium_free wipes before unmapping */
}

enum ddts_status ddts_passphrase_read(const char *file, struct ddts_passphrase **out,
                                      struct ddts_error *err)
{
    *out = NULL;
    if (file == NULL) {
        const char *env = getenv("DDTS_PASSPHRASE");
        if (env == NULL || env[0] == '\0')
            return ddts_error_set(err, DDTS_ENOTFOUND,
                                  "no passphrase file and DDTS_PASSPHRASE is not set");
        return ddts_passphrase_create(env, strlen(env), out, err);
    }
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot open passphrase file", file);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ddts_error_set(err, DDTS_EINVAL, "%s: not a regular file", file);
    }
    if (sb.st_mode & S_IROTH) {
        close(fd);
        return ddts_error_set(err, DDTS_EINVAL,
                              "%s: passphrase file is readable by every user (chmod 600 it)", file);
    }
    char buf[DDTS_MAX_PASSPHRASE_BYTES + 2];
    size_t n = 0;
    enum ddts_status st = DDTS_OK;
    while (n < sizeof buf) {
        ssize_t r = read(fd, buf + n, sizeof buf - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: read failed", file);
            goto out;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    size_t line = 0;
    while (line < n && buf[line] != '\n' && buf[line] != '\r')
        line++;
    if (line > DDTS_MAX_PASSPHRASE_BYTES) {
        st = ddts_error_set(err, DDTS_ELIMIT, "%s: passphrase longer than %d bytes", file,
                            DDTS_MAX_PASSPHRASE_BYTES);
        goto out;
    }
    st = ddts_passphrase_create(buf, line, out, err);
    if (st != DDTS_OK)
        ddts_error_prefix(err, "%s: ", file);
out:
    sodium_memzero(buf, sizeof buf);
    close(fd);
    return st;
}

/* ---- handshake ---- */

enum hs_state { HS_START, HS_HELLO, HS_SHARE, HS_DONE, HS_DEAD };

struct ddts_handshake {
    enum ddts_role role;
    enum hs_state state;
    enum ddts_status refuse;
    uint16_t version; /* the protocol version the connection speaks */
    const struct ddts_passphrase *pw;
    uint8_t sid[SID_BYTES]; /* sid_s || nonce_c */
    uint8_t g[crypto_core_ristretto255_BYTES];
    uint8_t y[crypto_core_ristretto255_SCALARBYTES];
    uint8_t ya[DDTS_AUTH_SHARE_BYTES]; /* Ya: the client's share */
    uint8_t yb[DDTS_AUTH_SHARE_BYTES]; /* Yb: the server's share */
    uint8_t tag_key_c[32];             /* k2: kept by the server to check tag_c */
    uint8_t pull_key[32];              /* the peer's stream key, until its header comes */
    crypto_secretstream_xchacha20poly1305_state push;
    crypto_secretstream_xchacha20poly1305_state pull;
};

struct ddts_channel {
    crypto_secretstream_xchacha20poly1305_state push;
    crypto_secretstream_xchacha20poly1305_state pull;
    int dead;        /* a frame failed: refuse everything */
    int peer_closed; /* the peer's FINAL frame arrived */
    /* OpenSSL contexts of the fast path (NULL: libsodium only). */
    EVP_CIPHER_CTX *seal_ctx, *open_ctx, *ks_ctx;
};

enum ddts_status ddts_handshake_create(enum ddts_role role, const struct ddts_passphrase *pw,
                                       struct ddts_handshake **out, struct ddts_error *err)
{
    *out = NULL;
    if (pw == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "auth: no passphrase");
    if (ddts_auth_init(err) != DDTS_OK)
        return DDTS_EIO;
    struct ddts_handshake *hs = sodium_malloc(sizeof *hs);
    if (hs == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "auth: out of guarded memory");
    sodium_memzero(hs, sizeof *hs);
    hs->role = role;
    hs->state = HS_START;
    hs->refuse = DDTS_OK;
    hs->version = DDTS_WIRE_VERSION;
    hs->pw = pw;
    *out = hs;
    return DDTS_OK;
}

void ddts_handshake_destroy(struct ddts_handshake *hs)
{
    if (hs != NULL)
        sodium_free(hs);
}

void ddts_handshake_refuse(struct ddts_handshake *hs, enum ddts_status status)
{
    hs->refuse = status;
}

/* LEB128 length prefix as in the CPace draft's prepend_len. */
static size_t leb128(uint8_t out[10], size_t n)
{
    size_t i = 0;
    do {
        uint8_t b = (uint8_t)(n & 0x7f);
        n >>= 7;
        out[i++] = (uint8_t)(n ? (b | 0x80) : b);
    } while (n);
    return i;
}

static void h_lv(crypto_generichash_state *st, const void *p, size_t n)
{
    uint8_t pre[10];
    size_t k = leb128(pre, n);
    crypto_generichash_update(st, pre, k);
    if (n > 0)
        crypto_generichash_update(st, p, n);
}

/* g = from_hash(H(lv(DSI) || lv(PRS) || lv(zpad) || lv(CI) || lv(sid))). */
static void compute_generator(struct ddts_handshake *hs)
{
    static const uint8_t zeros[H_BLOCK];
    uint8_t pre[10];
    size_t len_prs = leb128(pre, hs->pw->n) + hs->pw->n;
    size_t len_dsi = leb128(pre, sizeof DSI - 1) + sizeof DSI - 1;
    size_t zpad = 0;
    if (H_BLOCK > len_prs + len_dsi + 1)
        zpad = H_BLOCK - len_prs - len_dsi - 1;
    uint8_t h[H_BYTES];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, H_BYTES);
    h_lv(&st, DSI, sizeof DSI - 1);
    h_lv(&st, hs->pw->bytes, hs->pw->n);
    h_lv(&st, zeros, zpad);
    h_lv(&st, CI, sizeof CI - 1);
    h_lv(&st, hs->sid, SID_BYTES);
    crypto_generichash_final(&st, h, H_BYTES);
    crypto_core_ristretto255_from_hash(hs->g, h);
    sodium_memzero(h, sizeof h);
    sodium_memzero(&st, sizeof st);
}

/* y random, own share = y·g; -1 in the (negligible) identity case. */
static int make_share(struct ddts_handshake *hs, uint8_t share[DDTS_AUTH_SHARE_BYTES])
{
    crypto_core_ristretto255_scalar_random(hs->y);
    int rc = crypto_scalarmult_ristretto255(share, hs->y, hs->g);
    sodium_memzero(hs->g, sizeof hs->g);
    return rc;
}

struct keys {
    uint8_t k[4][32]; /* tag_s, tag_c, stream s->c, stream c->s */
};

/*
 * K = y·Y_peer, ISK = H(lv(DSI||"_ISK") || lv(sid) || lv(K) || lv(Ya) || lv("")
 * || lv(Yb) || lv("")), keys from BLAKE2b-256(ISK) through crypto_kdf.
 * Wipes y. -1 when the peer's share is invalid or K is the identity.
 */
static int derive_keys(struct ddts_handshake *hs, const uint8_t *peer, struct keys *keys)
{
    uint8_t k[crypto_scalarmult_ristretto255_BYTES];
    uint8_t isk[H_BYTES];
    uint8_t mk[crypto_kdf_KEYBYTES];
    int rc = -1;
    if (crypto_core_ristretto255_is_valid_point(peer) != 1)
        goto out;
    if (crypto_scalarmult_ristretto255(k, hs->y, peer) != 0)
        goto out;
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, H_BYTES);
    h_lv(&st, DSI "_ISK", sizeof DSI "_ISK" - 1);
    h_lv(&st, hs->sid, SID_BYTES);
    h_lv(&st, k, sizeof k);
    h_lv(&st, hs->ya, sizeof hs->ya);
    h_lv(&st, NULL, 0);
    h_lv(&st, hs->yb, sizeof hs->yb);
    h_lv(&st, NULL, 0);
    crypto_generichash_final(&st, isk, sizeof isk);
    sodium_memzero(&st, sizeof st);
    crypto_generichash(mk, sizeof mk, isk, sizeof isk, NULL, 0);
    for (int i = 0; i < 4; i++)
        crypto_kdf_derive_from_key(keys->k[i], 32, (uint64_t)i + 1, KDF_CTX, mk);
    rc = 0;
out:
    sodium_memzero(hs->y, sizeof hs->y);
    sodium_memzero(k, sizeof k);
    sodium_memzero(isk, sizeof isk);
    sodium_memzero(mk, sizeof mk);
    return rc;
}

static void make_tag(const uint8_t key[32], char who, const struct ddts_handshake *hs,
                     uint8_t tag[DDTS_AUTH_TAG_BYTES])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, key, 32, DDTS_AUTH_TAG_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)&who, 1);
    crypto_generichash_update(&st, hs->sid, SID_BYTES);
    crypto_generichash_update(&st, hs->ya, sizeof hs->ya);
    crypto_generichash_update(&st, hs->yb, sizeof hs->yb);
    crypto_generichash_final(&st, tag, DDTS_AUTH_TAG_BYTES);
    sodium_memzero(&st, sizeof st);
}

static void put_hello(struct ddts_wire_writer *w, uint8_t type, uint16_t version)
{
    ddts_wire_put_u8(w, type);
    ddts_wire_put_raw(w, DDTS_WIRE_MAGIC, DDTS_WIRE_MAGIC_BYTES);
    ddts_wire_put_u16(w, version);
}

/* Reads magic and version of a hello. */
static enum ddts_status get_hello(struct ddts_wire_reader *r, uint16_t *version,
                                  struct ddts_error *err)
{
    char magic[DDTS_WIRE_MAGIC_BYTES];
    ddts_wire_get_raw(r, magic, sizeof magic);
    ddts_wire_get_u16(r, version);
    if (r->status != DDTS_OK)
        return ddts_error_set(err, DDTS_EPROTO, "handshake: hello is truncated");
    if (memcmp(magic, DDTS_WIRE_MAGIC, sizeof magic) != 0)
        return ddts_error_set(err, DDTS_EPROTO, "handshake: not a ddts peer (bad magic)");
    return DDTS_OK;
}

static enum ddts_status fail(struct ddts_handshake *hs, enum ddts_status st)
{
    hs->state = HS_DEAD;
    sodium_memzero(hs->y, sizeof hs->y);
    sodium_memzero(hs->g, sizeof hs->g);
    sodium_memzero(hs->tag_key_c, sizeof hs->tag_key_c);
    sodium_memzero(hs->pull_key, sizeof hs->pull_key);
    return st;
}

static enum ddts_status client_step(struct ddts_handshake *hs, struct ddts_wire_reader *r,
                                    uint8_t type, struct ddts_wire_writer *w, int *done,
                                    struct ddts_error *err)
{
    enum ddts_status st;
    switch (hs->state) {
    case HS_START:
        randombytes_buf(hs->sid + DDTS_AUTH_NONCE_BYTES, DDTS_AUTH_NONCE_BYTES);
        put_hello(w, DDTS_MSG_HELLO_C, hs->version);
        ddts_wire_put_raw(w, hs->sid + DDTS_AUTH_NONCE_BYTES, DDTS_AUTH_NONCE_BYTES);
        hs->state = HS_HELLO;
        return DDTS_OK;
    case HS_HELLO: {
        if (type != DDTS_MSG_HELLO_S)
            return ddts_error_set(err, DDTS_EPROTO, "handshake: expected HELLO_S, got %s",
                                  ddts_msg_str(type));
        uint16_t version;
        uint8_t status;
        if ((st = get_hello(r, &version, err)) != DDTS_OK)
            return st;
        ddts_wire_get_u8(r, &status);
        ddts_wire_get_raw(r, hs->sid, DDTS_AUTH_NONCE_BYTES);
        if ((st = ddts_wire_reader_end(r, "HELLO_S", err)) != DDTS_OK)
            return st;
        if (status == DDTS_EBANNED)
            return ddts_error_set(err, DDTS_EBANNED,
                                  "server refused this address after failed handshakes");
        if (status != 0 || version != hs->version)
            return ddts_error_set(err, status == 0 ? DDTS_EUNSUPPORTED : (enum ddts_status)status,
                                  "server refused the connection (protocol version %u, ours %u): "
                                  "%s",
                                  version, hs->version, ddts_status_str((enum ddts_status)status));
        compute_generator(hs);
        if (make_share(hs, hs->ya) != 0)
            return ddts_error_set(err, DDTS_EAUTH, "handshake: degenerate share");
        ddts_wire_put_u8(w, DDTS_MSG_SHARE_C);
        ddts_wire_put_raw(w, hs->ya, sizeof hs->ya);
        hs->state = HS_SHARE;
        return DDTS_OK;
    }
    case HS_SHARE: {
        if (type != DDTS_MSG_SHARE_S)
            return ddts_error_set(err, DDTS_EPROTO, "handshake: expected SHARE_S, got %s",
                                  ddts_msg_str(type));
        uint8_t tag_s[DDTS_AUTH_TAG_BYTES], hdr_s[DDTS_AUTH_HEADER_BYTES];
        ddts_wire_get_raw(r, hs->yb, sizeof hs->yb);
        ddts_wire_get_raw(r, tag_s, sizeof tag_s);
        ddts_wire_get_raw(r, hdr_s, sizeof hdr_s);
        if ((st = ddts_wire_reader_end(r, "SHARE_S", err)) != DDTS_OK)
            return st;
        struct keys *keys = sodium_malloc(sizeof *keys);
        if (keys == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "auth: out of guarded memory");
        st = DDTS_OK;
        uint8_t expect[DDTS_AUTH_TAG_BYTES], hdr_c[DDTS_AUTH_HEADER_BYTES];
        if (derive_keys(hs, hs->yb, keys) != 0) {
            st = ddts_error_set(err, DDTS_EAUTH, "handshake: authentication failed");
        } else {
            make_tag(keys->k[0], 'S', hs, expect);
            if (sodium_memcmp(expect, tag_s, sizeof expect) != 0)
                st = ddts_error_set(err, DDTS_EAUTH,
                                    "handshake: authentication failed (wrong passphrase?)");
        }
        if (st != DDTS_OK) {
            sodium_free(keys);
            w->len = 0;
            ddts_wire_put_u8(w, DDTS_MSG_AUTH_FAIL);
            return st;
        }
        crypto_secretstream_xchacha20poly1305_init_pull(&hs->pull, hdr_s, keys->k[2]);
        crypto_secretstream_xchacha20poly1305_init_push(&hs->push, hdr_c, keys->k[3]);
        make_tag(keys->k[1], 'C', hs, expect);
        sodium_free(keys);
        ddts_wire_put_u8(w, DDTS_MSG_CONFIRM_C);
        ddts_wire_put_raw(w, expect, sizeof expect);
        ddts_wire_put_raw(w, hdr_c, sizeof hdr_c);
        hs->state = HS_DONE;
        *done = 1;
        return DDTS_OK;
    }
    default:
        return ddts_error_set(err, DDTS_ESTATE, "handshake: already finished");
    }
}

static enum ddts_status server_step(struct ddts_handshake *hs, struct ddts_wire_reader *r,
                                    uint8_t type, struct ddts_wire_writer *w, int *done,
                                    struct ddts_error *err)
{
    enum ddts_status st;
    switch (hs->state) {
    case HS_START: {
        if (type != DDTS_MSG_HELLO_C)
            return ddts_error_set(err, DDTS_EPROTO, "handshake: expected HELLO_C, got %s",
                                  ddts_msg_str(type));
        uint16_t version;
        if ((st = get_hello(r, &version, err)) != DDTS_OK)
            return st;
        ddts_wire_get_raw(r, hs->sid + DDTS_AUTH_NONCE_BYTES, DDTS_AUTH_NONCE_BYTES);
        if ((st = ddts_wire_reader_end(r, "HELLO_C", err)) != DDTS_OK)
            return st;
        enum ddts_status refuse = hs->refuse;
        /* The server speaks every version from DDTS_WIRE_VERSION_MIN and answers
         * in the client's, so that older clients keep working. */
        int known = version >= DDTS_WIRE_VERSION_MIN && version <= DDTS_WIRE_VERSION;
        if (known)
            hs->version = version;
        if (refuse == DDTS_OK && !known)
            refuse = DDTS_EUNSUPPORTED;
        randombytes_buf(hs->sid, DDTS_AUTH_NONCE_BYTES);
        put_hello(w, DDTS_MSG_HELLO_S, known ? version : DDTS_WIRE_VERSION);
        ddts_wire_put_u8(w, (uint8_t)refuse);
        ddts_wire_put_raw(w, refuse == DDTS_OK ? hs->sid : (const uint8_t[16]){0},
                          DDTS_AUTH_NONCE_BYTES);
        if (refuse == DDTS_EUNSUPPORTED)
            return ddts_error_set(err, refuse, "handshake: client speaks protocol version %u",
                                  version);
        if (refuse != DDTS_OK)
            return ddts_error_set(err, refuse, "handshake: connection refused (%s)",
                                  ddts_status_str(refuse));
        hs->state = HS_HELLO;
        return DDTS_OK;
    }
    case HS_HELLO: {
        if (type != DDTS_MSG_SHARE_C)
            return ddts_error_set(err, DDTS_EPROTO, "handshake: expected SHARE_C, got %s",
                                  ddts_msg_str(type));
        ddts_wire_get_raw(r, hs->ya, sizeof hs->ya);
        if ((st = ddts_wire_reader_end(r, "SHARE_C", err)) != DDTS_OK)
            return st;
        compute_generator(hs);
        if (make_share(hs, hs->yb) != 0)
            return ddts_error_set(err, DDTS_EAUTH, "handshake: degenerate share");
        struct keys *keys = sodium_malloc(sizeof *keys);
        if (keys == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "auth: out of guarded memory");
        if (derive_keys(hs, hs->ya, keys) != 0) {
            sodium_free(keys);
            return ddts_error_set(err, DDTS_EAUTH, "handshake: client share is invalid");
        }
        uint8_t tag_s[DDTS_AUTH_TAG_BYTES], hdr_s[DDTS_AUTH_HEADER_BYTES];
        make_tag(keys->k[0], 'S', hs, tag_s);
        memcpy(hs->tag_key_c, keys->k[1], 32);
        memcpy(hs->pull_key, keys->k[3], 32);
        crypto_secretstream_xchacha20poly1305_init_push(&hs->push, hdr_s, keys->k[2]);
        sodium_free(keys);
        ddts_wire_put_u8(w, DDTS_MSG_SHARE_S);
        ddts_wire_put_raw(w, hs->yb, sizeof hs->yb);
        ddts_wire_put_raw(w, tag_s, sizeof tag_s);
        ddts_wire_put_raw(w, hdr_s, sizeof hdr_s);
        hs->state = HS_SHARE;
        return DDTS_OK;
    }
    case HS_SHARE: {
        if (type == DDTS_MSG_AUTH_FAIL)
            return ddts_error_set(err, DDTS_EAUTH,
                                  "handshake: client failed to authenticate us "
                                  "(wrong passphrase?)");
        if (type != DDTS_MSG_CONFIRM_C)
            return ddts_error_set(err, DDTS_EAUTH, "handshake: expected CONFIRM_C, got %s",
                                  ddts_msg_str(type));
        uint8_t tag_c[DDTS_AUTH_TAG_BYTES], hdr_c[DDTS_AUTH_HEADER_BYTES];
        uint8_t expect[DDTS_AUTH_TAG_BYTES];
        ddts_wire_get_raw(r, tag_c, sizeof tag_c);
        ddts_wire_get_raw(r, hdr_c, sizeof hdr_c);
        if (ddts_wire_reader_end(r, "CONFIRM_C", err) != DDTS_OK)
            return ddts_error_set(err, DDTS_EAUTH, "handshake: malformed CONFIRM_C");
        make_tag(hs->tag_key_c, 'C', hs, expect);
        if (sodium_memcmp(expect, tag_c, sizeof expect) != 0)
            return ddts_error_set(err, DDTS_EAUTH,
                                  "handshake: authentication failed (wrong passphrase?)");
        crypto_secretstream_xchacha20poly1305_init_pull(&hs->pull, hdr_c, hs->pull_key);
        sodium_memzero(hs->pull_key, sizeof hs->pull_key);
        sodium_memzero(hs->tag_key_c, sizeof hs->tag_key_c);
        hs->state = HS_DONE;
        *done = 1;
        return DDTS_OK;
    }
    default:
        return ddts_error_set(err, DDTS_ESTATE, "handshake: already finished");
    }
}

enum ddts_status ddts_handshake_step(struct ddts_handshake *hs, const uint8_t *in, size_t in_n,
                                     uint8_t *out, size_t out_cap, size_t *out_n, int *done,
                                     struct ddts_error *err)
{
    struct ddts_wire_writer w;
    struct ddts_wire_reader r;
    uint8_t type = 0;
    *out_n = 0;
    *done = 0;
    if (hs->state == HS_DEAD || hs->state == HS_DONE)
        return ddts_error_set(err, DDTS_ESTATE, "handshake: already finished");
    if (out_cap < DDTS_AUTH_MSG_MAX)
        return ddts_error_set(err, DDTS_EINVAL, "handshake: output buffer of %zu bytes", out_cap);
    ddts_wire_writer_init(&w, out, out_cap);
    ddts_wire_reader_init(&r, in, in == NULL ? 0 : in_n);
    int first = hs->role == DDTS_ROLE_CLIENT && hs->state == HS_START;
    if (!first) {
        if (in == NULL || in_n == 0)
            return fail(hs, ddts_error_set(err, DDTS_EPROTO, "handshake: empty message"));
        ddts_wire_get_u8(&r, &type);
    }
    enum ddts_status st = hs->role == DDTS_ROLE_CLIENT ? client_step(hs, &r, type, &w, done, err)
                                                       : server_step(hs, &r, type, &w, done, err);
    if (w.status != DDTS_OK && st == DDTS_OK)
        st = ddts_error_set(err, DDTS_ELIMIT, "handshake: message does not fit");
    *out_n = w.len;
    if (st != DDTS_OK)
        return fail(hs, st);
    return DDTS_OK;
}

enum ddts_status ddts_handshake_channel(struct ddts_handshake *hs, struct ddts_channel **out,
                                        struct ddts_error *err)
{
    *out = NULL;
    if (hs->state != HS_DONE)
        return ddts_error_set(err, DDTS_ESTATE, "handshake: not finished");
    struct ddts_channel *ch = sodium_malloc(sizeof *ch);
    if (ch == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "auth: out of guarded memory");
    memcpy(&ch->push, &hs->push, sizeof ch->push);
    memcpy(&ch->pull, &hs->pull, sizeof ch->pull);
    ch->dead = 0;
    ch->peer_closed = 0;
    ch->seal_ctx = EVP_CIPHER_CTX_new();
    ch->open_ctx = EVP_CIPHER_CTX_new();
    ch->ks_ctx = EVP_CIPHER_CTX_new();
    if (ch->seal_ctx == NULL || ch->open_ctx == NULL || ch->ks_ctx == NULL)
        ddts__channel_set_fast(ch, 0); /* libsodium alone still works */
    sodium_memzero(&hs->push, sizeof hs->push);
    sodium_memzero(&hs->pull, sizeof hs->pull);
    hs->state = HS_DEAD;
    *out = ch;
    return DDTS_OK;
}

void ddts__channel_set_fast(struct ddts_channel *ch, int on)
{
    if (on)
        return; /* only switching off is offered (tests compare both paths) */
    /* EVP_CIPHER_CTX_free cleanses the key schedule. */
    EVP_CIPHER_CTX_free(ch->seal_ctx);
    EVP_CIPHER_CTX_free(ch->open_ctx);
    EVP_CIPHER_CTX_free(ch->ks_ctx);
    ch->seal_ctx = ch->open_ctx = ch->ks_ctx = NULL;
}

void ddts_channel_destroy(struct ddts_channel *ch)
{
    if (ch == NULL)
        return;
    ddts__channel_set_fast(ch, 0);
    sodium_free(ch);
}

#define SS_TAG_BLOCK 64 /* the block that carries the tag */
/* The stream state's nonce: a 4-byte counter, then 8 bytes that the MACs update (libsodium's
 * crypto_secretstream/xchacha20poly1305 layout: k[32], nonce[12], pad[8]). */
#define SS_COUNTER_BYTES 4
#define SS_INONCE_BYTES  8
_Static_assert(sizeof(((crypto_secretstream_xchacha20poly1305_state *)0)->nonce) ==
                   SS_COUNTER_BYTES + SS_INONCE_BYTES,
               "secretstream state layout");
_Static_assert(sizeof(((crypto_secretstream_xchacha20poly1305_state *)0)->k) == 32,
               "secretstream state layout");

/* Whether a message of n bytes can take the fast path (see the top of this file). */
static int fast_ok(const EVP_CIPHER_CTX *ctx, size_t n)
{
    return ctx != NULL && ((n & 15) == 0 || (n & 15) == 8) && n <= (size_t)INT32_MAX;
}

/* What push and pull do after a message: the MAC into the nonce, counter + 1, rekey. */
static void ss_advance(crypto_secretstream_xchacha20poly1305_state *st, const uint8_t *mac,
                       uint8_t tag)
{
    for (size_t i = 0; i < SS_INONCE_BYTES; i++)
        st->nonce[SS_COUNTER_BYTES + i] ^= mac[i];
    sodium_increment(st->nonce, SS_COUNTER_BYTES);
    if ((tag & crypto_secretstream_xchacha20poly1305_TAG_REKEY) != 0 ||
        sodium_is_zero(st->nonce, SS_COUNTER_BYTES))
        crypto_secretstream_xchacha20poly1305_rekey(st);
}

/* crypto_secretstream_xchacha20poly1305_push of out[1..1+n) in place, through OpenSSL. */
static int fast_push(struct ddts_channel *ch, uint8_t *out, size_t n, uint8_t tag)
{
    uint8_t block[SS_TAG_BLOCK] = {tag};
    int len = 0, ok;
    EVP_CIPHER_CTX *ctx = ch->seal_ctx;
    ok = EVP_EncryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, ch->push.k, ch->push.nonce) == 1 &&
         EVP_EncryptUpdate(ctx, block, &len, block, (int)sizeof block) == 1 &&
         len == (int)sizeof block;
    out[0] = block[0];
    ok = ok && EVP_EncryptUpdate(ctx, out + 1, &len, out + 1, (int)n) == 1 && len == (int)n &&
         EVP_EncryptFinal_ex(ctx, block, &len) == 1 &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, crypto_onetimeauth_poly1305_BYTES,
                             out + 1 + n) == 1;
    sodium_memzero(block, sizeof block);
    if (!ok)
        return -1;
    ss_advance(&ch->push, out + 1 + n, tag);
    return 0;
}

/*
 * crypto_secretstream_xchacha20poly1305_pull of a frame in place (message at
 * in + 1), through OpenSSL. -1: OpenSSL failed; -2: authentication failed.
 */
static int fast_pull(struct ddts_channel *ch, uint8_t *in, size_t in_n, uint8_t *tag_p)
{
    size_t n = in_n - DDTS_AUTH_ABYTES;
    uint8_t block[SS_TAG_BLOCK] = {0}, iv[16] = {1, 0, 0, 0};
    int len = 0;
    /* The tag block's ciphertext: the tag byte received, then keystream block 1 (of zeros). */
    memcpy(iv + 4, ch->pull.nonce, sizeof ch->pull.nonce);
    int ok = EVP_EncryptInit_ex(ch->ks_ctx, EVP_chacha20(), NULL, ch->pull.k, iv) == 1 &&
             EVP_EncryptUpdate(ch->ks_ctx, block, &len, block, (int)sizeof block) == 1 &&
             len == (int)sizeof block;
    block[0] = in[0];
    EVP_CIPHER_CTX *ctx = ch->open_ctx;
    ok = ok &&
         EVP_DecryptInit_ex(ctx, EVP_chacha20_poly1305(), NULL, ch->pull.k, ch->pull.nonce) == 1 &&
         EVP_DecryptUpdate(ctx, block, &len, block, (int)sizeof block) == 1 &&
         len == (int)sizeof block;
    uint8_t tag = block[0];
    ok = ok && EVP_DecryptUpdate(ctx, in + 1, &len, in + 1, (int)n) == 1 && len == (int)n &&
         EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, crypto_onetimeauth_poly1305_BYTES,
                             in + 1 + n) == 1;
    if (!ok) {
        sodium_memzero(block, sizeof block);
        return -1;
    }
    /* The MAC is checked here (constant time, by OpenSSL); the message was decrypted
     * in place before, and on failure the caller discards it and the channel dies. */
    ok = EVP_DecryptFinal_ex(ctx, block, &len) == 1;
    sodium_memzero(block, sizeof block);
    if (!ok)
        return -2;
    ss_advance(&ch->pull, in + 1 + n, tag);
    *tag_p = tag;
    return 0;
}

enum ddts_status ddts_channel_seal(struct ddts_channel *ch, const uint8_t *msg, size_t n, int final,
                                   uint8_t *out, size_t out_cap, size_t *out_n,
                                   struct ddts_error *err)
{
    *out_n = 0;
    if (n > SIZE_MAX - DDTS_AUTH_ABYTES || n + DDTS_AUTH_ABYTES > out_cap)
        return ddts_error_set(err, DDTS_ELIMIT, "channel: message of %zu bytes does not fit", n);
    unsigned long long clen = 0;
    uint8_t tag = final ? crypto_secretstream_xchacha20poly1305_TAG_FINAL
                        : crypto_secretstream_xchacha20poly1305_TAG_MESSAGE;
    if (msg == out + 1 && fast_ok(ch->seal_ctx, n)) {
        if (fast_push(ch, out, n, tag) != 0)
            return ddts_error_set(err, DDTS_EINVAL, "channel: encryption failed");
        *out_n = n + DDTS_AUTH_ABYTES;
        return DDTS_OK;
    }
    if (crypto_secretstream_xchacha20poly1305_push(&ch->push, out, &clen, msg, n, NULL, 0, tag) !=
        0)
        return ddts_error_set(err, DDTS_EINVAL, "channel: encryption failed");
    *out_n = (size_t)clen;
    return DDTS_OK;
}

enum ddts_status ddts_channel_open(struct ddts_channel *ch, const uint8_t *in, size_t in_n,
                                   uint8_t *out, size_t out_cap, size_t *out_n, int *final,
                                   struct ddts_error *err)
{
    *out_n = 0;
    *final = 0;
    if (ch->dead || ch->peer_closed)
        return ddts_error_set(err, DDTS_EAUTH, "channel: frame after the end of the stream");
    if (in_n < DDTS_AUTH_ABYTES) {
        ch->dead = 1;
        return ddts_error_set(err, DDTS_EAUTH, "channel: frame of %zu bytes is too short", in_n);
    }
    if (in_n - DDTS_AUTH_ABYTES > out_cap)
        return ddts_error_set(err, DDTS_ELIMIT, "channel: frame of %zu bytes does not fit", in_n);
    unsigned long long mlen = in_n - DDTS_AUTH_ABYTES;
    uint8_t tag = 0;
    int rc;
    if (out == in + 1 && fast_ok(ch->open_ctx, (size_t)mlen)) {
        rc = fast_pull(ch, out - 1, in_n, &tag);
        if (rc == -1) {
            ch->dead = 1;
            return ddts_error_set(err, DDTS_EINVAL, "channel: decryption failed");
        }
    } else {
        rc = crypto_secretstream_xchacha20poly1305_pull(&ch->pull, out, &mlen, &tag, in, in_n, NULL,
                                                        0);
    }
    if (rc != 0) {
        ch->dead = 1;
        return ddts_error_set(err, DDTS_EAUTH,
                              "channel: frame failed authentication (tampered, replayed or "
                              "reordered)");
    }
    if (tag == crypto_secretstream_xchacha20poly1305_TAG_FINAL) {
        ch->peer_closed = 1;
        *final = 1;
    } else if (tag != crypto_secretstream_xchacha20poly1305_TAG_MESSAGE) {
        ch->dead = 1;
        return ddts_error_set(err, DDTS_EPROTO, "channel: unexpected stream tag %u", tag);
    }
    *out_n = (size_t)mlen;
    return DDTS_OK;
}

uint16_t ddts__handshake_version(const struct ddts_handshake *hs)
{
    return hs->version;
}

void ddts__handshake_offer_version(struct ddts_handshake *hs, uint16_t version)
{
    hs->version = version;
}
