/*
 * Passphrases for the server and the client (struct ddts_server_config and
 * struct ddts_client_config borrow one), held in libsodium's guarded memory,
 * and the two helpers a program needs for its own copies of secrets.
 *
 *     struct ddts_passphrase *pw;
 *     if (ddts_passphrase_read(file, &pw, err) == DDTS_ENOTFOUND) ... prompt,
 *         then ddts_passphrase_create(buf, len, &pw, err) and ddts_secure_wipe(buf, len)
 *     ...
 *     ddts_passphrase_destroy(pw);
 */
#ifndef DDTS_PASSPHRASE_H
#define DDTS_PASSPHRASE_H

#include <stddef.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Overwrites `n` bytes at `p` with zeros in a way the compiler keeps. */
DDTS_API void ddts_secure_wipe(void *p, size_t n);
/* Constant-time comparison of two `n`-byte buffers: 0 when equal, -1 otherwise. */
DDTS_API int ddts_secure_compare(const void *a, const void *b, size_t n);

/* A passphrase held in guarded memory (sodium_malloc, read-only after creation). */
struct ddts_passphrase;
/*
 * Copies `n` bytes of `s` into guarded memory. DDTS_EINVAL for an empty
 * passphrase, DDTS_ELIMIT beyond DDTS_MAX_PASSPHRASE_BYTES, DDTS_ENOMEM.
 * The caller remains responsible for wiping its own copy.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_passphrase_create(const char *s, size_t n,
                                                                struct ddts_passphrase **out,
                                                                struct ddts_error *err);
/* Wipes and frees; accepts NULL. */
DDTS_API void ddts_passphrase_destroy(struct ddts_passphrase *pw);
/*
 * Reads the passphrase from `file` (when not NULL: its first line, without
 * the line end; DDTS_EINVAL if the file is readable by every user) or else
 * from the environment variable
 * DDTS_PASSPHRASE. DDTS_ENOTFOUND when neither is given (the CLI then
 * prompts without echo), DDTS_EIO when the file cannot be read.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_passphrase_read(const char *file, struct ddts_passphrase **out, struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
