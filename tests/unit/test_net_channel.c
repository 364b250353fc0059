/*
 * Encrypted channels (src/net/auth.c): the OpenSSL fast path for messages
 * whose length is 0 or 8 mod 16 must produce exactly libsodium's
 * crypto_secretstream_xchacha20poly1305 frames. Each test runs a real CPace
 * handshake in memory, then one side is switched to libsodium alone
 * (ddts__channel_set_fast): every frame sealed by one path must open with
 * the other, over a long sequence of lengths that mixes both paths (so the
 * stream states, which chain every MAC into the next nonce, stay in step),
 * and tampered, replayed or reordered frames must fail on the fast path too.
 * Also the monotonic timed wait of src/net/netutil.c.
 */
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "net/auth.h"
#include "net/netutil.h"
#include "test.h"

struct pair {
    struct ddts_passphrase *pw;
    struct ddts_channel *client, *server;
};

static void handshake(struct pair *p)
{
    assert_int_equal(ddts_auth_init(NULL), DDTS_OK);
    assert_int_equal(ddts_passphrase_create("channel test", 12, &p->pw, NULL), DDTS_OK);
    struct ddts_handshake *c = NULL, *s = NULL;
    assert_int_equal(ddts_handshake_create(DDTS_ROLE_CLIENT, p->pw, &c, NULL), DDTS_OK);
    assert_int_equal(ddts_handshake_create(DDTS_ROLE_SERVER, p->pw, &s, NULL), DDTS_OK);
    uint8_t a[DDTS_AUTH_MSG_MAX], b[DDTS_AUTH_MSG_MAX];
    size_t an = 0, bn = 0;
    int c_done = 0, s_done = 0;
    assert_int_equal(ddts_handshake_step(c, NULL, 0, a, sizeof a, &an, &c_done, NULL), DDTS_OK);
    for (int i = 0; i < 8 && !(c_done && s_done); i++) {
        if (an > 0) {
            assert_int_equal(ddts_handshake_step(s, a, an, b, sizeof b, &bn, &s_done, NULL),
                             DDTS_OK);
            an = 0;
        }
        if (bn > 0) {
            assert_int_equal(ddts_handshake_step(c, b, bn, a, sizeof a, &an, &c_done, NULL),
                             DDTS_OK);
            bn = 0;
        }
    }
    assert_true(c_done && s_done);
    assert_int_equal(ddts_handshake_channel(c, &p->client, NULL), DDTS_OK);
    assert_int_equal(ddts_handshake_channel(s, &p->server, NULL), DDTS_OK);
    ddts_handshake_destroy(c);
    ddts_handshake_destroy(s);
}

static void pair_free(struct pair *p)
{
    ddts_channel_destroy(p->client);
    ddts_channel_destroy(p->server);
    ddts_passphrase_destroy(p->pw);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        p[i] = (uint8_t)(seed >> 24);
    }
}

#define MAX_MSG ((size_t)1 << 20)

/* Seals message i (in place unless `copy`) from `tx` and opens it in place with `rx`. */
static void one_message(struct ddts_channel *tx, struct ddts_channel *rx, size_t n, uint32_t seed,
                        int copy, int final, uint8_t *frame, uint8_t *msg)
{
    size_t out_n = 0, m_n = 0;
    int fin = -1;
    fill(msg, n, seed);
    if (copy) {
        assert_int_equal(
            ddts_channel_seal(tx, msg, n, final, frame, n + DDTS_AUTH_ABYTES, &out_n, NULL),
            DDTS_OK);
    } else {
        memcpy(frame + 1, msg, n);
        assert_int_equal(
            ddts_channel_seal(tx, frame + 1, n, final, frame, n + DDTS_AUTH_ABYTES, &out_n, NULL),
            DDTS_OK);
    }
    assert_int_equal(out_n, n + DDTS_AUTH_ABYTES);
    /* encrypted: a short ciphertext may equal its plaintext by chance (one
     * byte: 1 in 256 keys), sixteen bytes only 1 in 2^128 */
    if (n >= 16)
        assert_memory_not_equal(frame + 1, msg, n);
    assert_int_equal(ddts_channel_open(rx, frame, out_n, frame + 1, out_n - 1, &m_n, &fin, NULL),
                     DDTS_OK);
    assert_int_equal(m_n, n);
    assert_int_equal(fin, final);
    if (n > 0)
        assert_memory_equal(frame + 1, msg, n);
}

/* Lengths of both paths: 0 and 8 mod 16 are fast, the others libsodium's. */
static const size_t lengths[] = {4,     12,    20,     1036,         0,      1,    7,    8,
                                 15,    16,    17,     24,           31,     32,   40,   63,
                                 64,    1000,  1024,   1032,         4095,   4096, 4104, 65535,
                                 65536, 65544, 100001, MAX_MSG - 16, MAX_MSG};

static void run_sequence(int fast_tx, int fast_rx)
{
    struct pair p;
    handshake(&p);
    if (!fast_tx)
        ddts__channel_set_fast(p.client, 0);
    if (!fast_rx)
        ddts__channel_set_fast(p.server, 0);
    uint8_t *frame = ddts_malloc(MAX_MSG + DDTS_AUTH_ABYTES);
    uint8_t *msg = ddts_malloc(MAX_MSG);
    assert_non_null(frame);
    assert_non_null(msg);
    size_t n_len = sizeof lengths / sizeof lengths[0];
    for (size_t i = 0; i < 3 * n_len; i++)
        one_message(p.client, p.server, lengths[i % n_len], (uint32_t)i, i % 5 == 4, 0, frame, msg);
    /* The end of the stream on a fast length: FINAL (which also rekeys) arrives as such. */
    one_message(p.client, p.server, 48, 99, 0, 1, frame, msg);
    ddts_free(frame);
    ddts_free(msg);
    pair_free(&p);
}

static void test_fast_seal_opens_with_libsodium(void **state)
{
    (void)state;
    run_sequence(1, 0);
}

static void test_libsodium_seal_opens_fast(void **state)
{
    (void)state;
    run_sequence(0, 1);
}

static void test_fast_both_ways(void **state)
{
    (void)state;
    run_sequence(1, 1);
    run_sequence(0, 0);
}

/* Seals a fast-path message of n bytes in place into frame; returns the frame length. */
static size_t seal(struct ddts_channel *tx, uint8_t *frame, size_t n, uint32_t seed)
{
    size_t out_n = 0;
    fill(frame + 1, n, seed);
    assert_int_equal(
        ddts_channel_seal(tx, frame + 1, n, 0, frame, n + DDTS_AUTH_ABYTES, &out_n, NULL), DDTS_OK);
    return out_n;
}

static enum ddts_status open_copy(struct ddts_channel *rx, const uint8_t *frame, size_t len)
{
    uint8_t buf[4096 + DDTS_AUTH_ABYTES];
    size_t m_n;
    int fin;
    memcpy(buf, frame, len);
    return ddts_channel_open(rx, buf, len, buf + 1, len - 1, &m_n, &fin, NULL);
}

static void test_fast_tamper(void **state)
{
    (void)state;
    /* A flipped bit in the tag byte, the ciphertext, the MAC; a truncated frame. */
    size_t where[] = {0, 1, 2000, 4096, 4096 + 16, 0};
    for (size_t k = 0; k < sizeof where / sizeof where[0]; k++) {
        struct pair p;
        handshake(&p);
        uint8_t frame[4096 + DDTS_AUTH_ABYTES];
        size_t len = seal(p.client, frame, 4096, 7);
        if (k == sizeof where / sizeof where[0] - 1)
            len -= 16; /* still a fast length, shorter than sealed */
        else
            frame[where[k]] ^= 0x20;
        struct ddts_error err;
        uint8_t buf[4096 + DDTS_AUTH_ABYTES];
        size_t m_n;
        int fin;
        memcpy(buf, frame, len);
        assert_int_equal(ddts_channel_open(p.server, buf, len, buf + 1, len - 1, &m_n, &fin, &err),
                         DDTS_EAUTH);
        assert_non_null(strstr(err.msg, "authentication"));
        /* The channel is dead afterwards, even for a genuine frame. */
        len = seal(p.client, frame, 4096, 8);
        assert_int_equal(open_copy(p.server, frame, len), DDTS_EAUTH);
        pair_free(&p);
    }
}

static void test_fast_replay_reorder(void **state)
{
    (void)state;
    struct pair p;
    handshake(&p);
    uint8_t f1[4096 + DDTS_AUTH_ABYTES], f2[4096 + DDTS_AUTH_ABYTES];
    size_t l1 = seal(p.client, f1, 4096, 1);
    size_t l2 = seal(p.client, f2, 4096, 2);
    assert_int_equal(open_copy(p.server, f1, l1), DDTS_OK);
    assert_int_equal(open_copy(p.server, f1, l1), DDTS_EAUTH); /* replayed */
    pair_free(&p);

    handshake(&p);
    l1 = seal(p.client, f1, 4096, 1);
    l2 = seal(p.client, f2, 4096, 2);
    assert_int_equal(open_copy(p.server, f2, l2), DDTS_EAUTH); /* reordered */
    pair_free(&p);

    /* A frame of another connection (other keys) fails as well. */
    struct pair q;
    handshake(&p);
    handshake(&q);
    l1 = seal(p.client, f1, 4096, 1);
    assert_int_equal(open_copy(q.server, f1, l1), DDTS_EAUTH);
    pair_free(&p);
    pair_free(&q);
}

struct signaller {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
};

static void *signal_later(void *arg)
{
    struct signaller *sg = arg;
    usleep(50000);
    pthread_mutex_lock(&sg->mu);
    sg->done = 1;
    pthread_cond_signal(&sg->cv);
    pthread_mutex_unlock(&sg->mu);
    return NULL;
}

/* The monotonic timed wait (heartbeats, the server's polls): it times out
 * after the period when nothing signals, and a signal ends it early. */
static void test_cond_wait_for(void **state)
{
    (void)state;
    struct signaller sg = {.done = 0};
    pthread_mutex_init(&sg.mu, NULL);
    assert_int_equal(ddts__cond_init(&sg.cv), 0);
    pthread_mutex_lock(&sg.mu);
    double t0 = ddts_now();
    ddts__cond_wait_for(&sg.cv, &sg.mu, 0.1);
    double waited = ddts_now() - t0;
    assert_true(waited >= 0.099);
    assert_true(waited < 5.0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, signal_later, &sg), 0);
    t0 = ddts_now();
    while (!sg.done && ddts_now() - t0 < 30)
        ddts__cond_wait_for(&sg.cv, &sg.mu, 30.0);
    waited = ddts_now() - t0;
    pthread_mutex_unlock(&sg.mu);
    pthread_join(th, NULL);
    assert_true(sg.done);
    assert_true(waited < 10.0);
    pthread_cond_destroy(&sg.cv);
    pthread_mutex_destroy(&sg.mu);
}

/* Client and job ids in state files: hex through libsodium (src/crypto). */
static void test_hex(void **state)
{
    (void)state;
    const uint8_t id[4] = {0x00, 0x9f, 0xa0, 0xff};
    char hex[9];
    ddts__hex(id, sizeof id, hex);
    assert_string_equal(hex, "009fa0ff");
    uint8_t back[4] = {0};
    assert_int_equal(ddts__unhex("009fa0ff", back, 4), 0);
    assert_memory_equal(back, id, 4);
    assert_int_equal(ddts__unhex("009FA0FF", back, 4), 0);
    assert_memory_equal(back, id, 4);
    assert_int_equal(ddts__unhex("009fa0f", back, 4), -1);   /* too short */
    assert_int_equal(ddts__unhex("009fa0ff0", back, 4), -1); /* too long */
    assert_int_equal(ddts__unhex("009fa0fg", back, 4), -1);  /* not a digit */
    assert_int_equal(ddts__unhex("009f a0f", back, 4), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fast_seal_opens_with_libsodium),
        cmocka_unit_test(test_libsodium_seal_opens_fast),
        cmocka_unit_test(test_fast_both_ways),
        cmocka_unit_test(test_fast_tamper),
        cmocka_unit_test(test_fast_replay_reorder),
        cmocka_unit_test(test_cond_wait_for),
        cmocka_unit_test(test_hex),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
