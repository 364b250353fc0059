/*
 * libFuzzer target: each handshake message as received by each role, at each
 * step. The first input byte picks the role and how many honest steps run
 * before the fuzzed message replaces the peer's.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ddts/ddts.h"
#include "net/auth.h"
#include "net/wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct ddts_passphrase *pw;
    struct ddts_error err;
    if (pw == NULL && ddts_passphrase_create("fuzz", 4, &pw, &err) != DDTS_OK)
        return 0;
    if (size < 1)
        return 0;
    int target = data[0] & 1; /* 0: the client receives, 1: the server receives */
    int step = (data[0] >> 1) % 3;
    data++;
    size--;

    struct ddts_handshake *c = NULL, *s = NULL;
    if (ddts_handshake_create(DDTS_ROLE_CLIENT, pw, &c, &err) != DDTS_OK ||
        ddts_handshake_create(DDTS_ROLE_SERVER, pw, &s, &err) != DDTS_OK)
        goto out;
    uint8_t m1[DDTS_AUTH_MSG_MAX], m2[DDTS_AUTH_MSG_MAX];
    size_t n1 = 0, n2 = 0;
    int done = 0;
    /* Honest messages up to the chosen step, then the fuzzed one. */
    if (ddts_handshake_step(c, NULL, 0, m1, sizeof m1, &n1, &done, &err) != DDTS_OK)
        goto out;
    for (int i = 0; i < step; i++) {
        if (ddts_handshake_step(s, m1, n1, m2, sizeof m2, &n2, &done, &err) != DDTS_OK)
            goto out;
        if (ddts_handshake_step(c, m2, n2, m1, sizeof m1, &n1, &done, &err) != DDTS_OK)
            goto out;
    }
    if (target == 1) {
        (void)!ddts_handshake_step(s, data, size, m2, sizeof m2, &n2, &done, &err);
    } else {
        if (ddts_handshake_step(s, m1, n1, m2, sizeof m2, &n2, &done, &err) != DDTS_OK)
            goto out;
        (void)!ddts_handshake_step(c, data, size, m1, sizeof m1, &n1, &done, &err);
    }
    if (done) {
        struct ddts_channel *ch = NULL;
        if (ddts_handshake_channel(target ? s : c, &ch, &err) == DDTS_OK) {
            uint8_t out[256];
            size_t on;
            int fin;
            (void)!ddts_channel_open(ch, data, size, out, sizeof out, &on, &fin, &err);
            ddts_channel_destroy(ch);
        }
    }
out:
    ddts_handshake_destroy(c);
    ddts_handshake_destroy(s);
    return 0;
}
