/*
 * Connections over socketpairs: handshake, wrong passphrase, and a hostile
 * peer that tampers with, replays, reorders, truncates or oversizes frames.
 * The test reads the raw frames sent by one end and writes (modified) bytes
 * into the other end's socket, which delivers them to the receiver.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/conn.h"
#include "test.h"

struct side {
    struct ddts_conn *conn;
    enum ddts_role role;
    const struct ddts_passphrase *pw;
    enum ddts_status refuse;
    enum ddts_status st;
    struct ddts_error err;
};

static void *run_handshake(void *arg)
{
    struct side *s = arg;
    s->st = ddts_conn_handshake(s->conn, s->role, s->pw, s->refuse, &s->err);
    return NULL;
}

static struct ddts_passphrase *pass(const char *s)
{
    struct ddts_passphrase *pw = NULL;
    assert_int_equal(ddts_passphrase_create(s, strlen(s), &pw, NULL), DDTS_OK);
    return pw;
}

/* Two connected conns; runs the handshake; returns both statuses. */
static void pair(const char *pc, const char *ps, enum ddts_status refuse, struct side *c,
                 struct side *s)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    memset(c, 0, sizeof *c);
    memset(s, 0, sizeof *s);
    assert_int_equal(ddts_conn_from_fd(sv[0], &c->conn, NULL), DDTS_OK);
    assert_int_equal(ddts_conn_from_fd(sv[1], &s->conn, NULL), DDTS_OK);
    ddts_conn_set_timeout(c->conn, 5);
    ddts_conn_set_timeout(s->conn, 5);
    c->role = DDTS_ROLE_CLIENT;
    s->role = DDTS_ROLE_SERVER;
    c->pw = pass(pc);
    s->pw = pass(ps);
    s->refuse = refuse;
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, run_handshake, s), 0);
    run_handshake(c);
    pthread_join(t, NULL);
}

static void unpair(struct side *c, struct side *s)
{
    ddts_conn_destroy(c->conn);
    ddts_conn_destroy(s->conn);
    ddts_passphrase_destroy((struct ddts_passphrase *)c->pw);
    ddts_passphrase_destroy((struct ddts_passphrase *)s->pw);
}

static void test_handshake_ok(void **state)
{
    (void)state;
    struct side c, s;
    pair("correct horse", "correct horse", DDTS_OK, &c, &s);
    if (c.st != DDTS_OK || s.st != DDTS_OK)
        fail_msg("client: %s (%s); server: %s (%s)", ddts_status_str(c.st), c.err.msg,
                 ddts_status_str(s.st), s.err.msg);
    assert_true(ddts_conn_is_authenticated(c.conn));
    /* Messages both ways, heartbeats skipped by recv. */
    uint8_t type;
    const uint8_t *p;
    size_t n;
    assert_int_equal(ddts_conn_heartbeat(c.conn, NULL), DDTS_OK);
    assert_int_equal(ddts_conn_send(c.conn, DDTS_MSG_NEXT, "abc", 3, NULL), DDTS_OK);
    assert_int_equal(ddts_conn_recv(s.conn, &type, &p, &n, NULL), DDTS_OK);
    assert_int_equal(type, DDTS_MSG_NEXT);
    assert_int_equal(n, 3);
    assert_memory_equal(p, "abc", 3);
    assert_int_equal(ddts_conn_send(s.conn, DDTS_MSG_DONE, NULL, 0, NULL), DDTS_OK);
    assert_int_equal(ddts_conn_recv(c.conn, &type, &p, &n, NULL), DDTS_OK);
    assert_int_equal(type, DDTS_MSG_DONE);
    /* An ERROR from the peer becomes its status. */
    struct ddts_error err;
    ddts_conn_send_error(s.conn, DDTS_EEXIST, "duplicate id");
    assert_int_equal(ddts_conn_recv(c.conn, &type, &p, &n, &err), DDTS_EEXIST);
    assert_non_null(strstr(err.msg, "duplicate id"));
    unpair(&c, &s);
}

static void test_wrong_passphrase(void **state)
{
    (void)state;
    struct side c, s;
    pair("correct horse", "battery staple", DDTS_OK, &c, &s);
    assert_int_equal(c.st, DDTS_EAUTH);
    assert_int_equal(s.st, DDTS_EAUTH);
    /* No oracle: the messages say only that authentication failed. */
    assert_null(strstr(c.err.msg, "horse"));
    assert_null(strstr(s.err.msg, "battery"));
    uint8_t type;
    const uint8_t *p;
    size_t n;
    assert_int_equal(ddts_conn_recv(s.conn, &type, &p, &n, NULL), DDTS_EAUTH);
    unpair(&c, &s);
}

static void test_refused(void **state)
{
    (void)state;
    struct side c, s;
    pair("pw", "pw", DDTS_EBANNED, &c, &s);
    assert_int_equal(c.st, DDTS_EBANNED);
    assert_int_equal(s.st, DDTS_EBANNED);
    unpair(&c, &s);
}

/* Reads one raw frame (header + body) from fd into buf; returns its length. */
static size_t raw_frame(int fd, uint8_t *buf, size_t cap)
{
    size_t got = 0, want = 4;
    while (got < want) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        assert_true(poll(&p, 1, 5000) == 1);
        ssize_t r = recv(fd, buf + got, want - got, 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        assert_true(r > 0);
        got += (size_t)r;
        if (got == 4 && want == 4) {
            want = 4 + ((size_t)buf[0] | (size_t)buf[1] << 8 | (size_t)buf[2] << 16 |
                        (size_t)buf[3] << 24);
            assert_true(want <= cap);
        }
    }
    return got;
}

static void raw_write(int fd, const void *p, size_t n)
{
    assert_int_equal(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

enum attack { TAMPER, REPLAY, REORDER, TRUNCATE, OVERSIZE, ZERO };

static void run_attack(enum attack a, enum ddts_status expect)
{
    struct side c, s;
    pair("pw", "pw", DDTS_OK, &c, &s);
    assert_int_equal(c.st, DDTS_OK);
    assert_int_equal(s.st, DDTS_OK);
    int cfd = ddts_conn_fd(c.conn), sfd = ddts_conn_fd(s.conn);
    uint8_t f1[256], f2[256];
    /* The client sends two frames; we take them off the server's socket. */
    assert_int_equal(ddts_conn_send(c.conn, DDTS_MSG_NEXT, "one", 3, NULL), DDTS_OK);
    assert_int_equal(ddts_conn_send(c.conn, DDTS_MSG_NEXT, "two", 3, NULL), DDTS_OK);
    size_t n1 = raw_frame(sfd, f1, sizeof f1), n2 = raw_frame(sfd, f2, sizeof f2);
    uint8_t type;
    const uint8_t *p;
    size_t n;
    struct ddts_error err;
    switch (a) {
    case TAMPER:
        f1[n1 - 1] ^= 1;
        raw_write(cfd, f1, n1);
        break;
    case REPLAY:
        raw_write(cfd, f1, n1);
        assert_int_equal(ddts_conn_recv(s.conn, &type, &p, &n, NULL), DDTS_OK);
        assert_memory_equal(p, "one", 3);
        raw_write(cfd, f1, n1);
        break;
    case REORDER:
        raw_write(cfd, f2, n2);
        raw_write(cfd, f1, n1);
        break;
    case TRUNCATE:
        raw_write(cfd, f1, n1 - 5);
        shutdown(cfd, SHUT_WR);
        break;
    case OVERSIZE: {
        uint8_t h[4];
        ddts_wire_frame_header_encode(h, DDTS_MAX_FRAME + DDTS_AUTH_ABYTES + 1);
        raw_write(cfd, h, 4);
        break;
    }
    case ZERO:
        raw_write(cfd, "\0\0\0\0", 4);
        break;
    }
    enum ddts_status st = ddts_conn_recv(s.conn, &type, &p, &n, &err);
    if (st != expect)
        fail_msg("attack %d: got %s (%s), expected %s", (int)a, ddts_status_str(st), err.msg,
                 ddts_status_str(expect));
    /* Dead after the first violation. */
    assert_int_equal(ddts_conn_recv(s.conn, &type, &p, &n, NULL), expect);
    unpair(&c, &s);
}

static void test_tampered(void **state)
{
    (void)state;
    run_attack(TAMPER, DDTS_EAUTH);
}
static void test_replayed(void **state)
{
    (void)state;
    run_attack(REPLAY, DDTS_EAUTH);
}
static void test_reordered(void **state)
{
    (void)state;
    run_attack(REORDER, DDTS_EAUTH);
}
static void test_truncated(void **state)
{
    (void)state;
    run_attack(TRUNCATE, DDTS_ECLOSED);
}
static void test_oversized(void **state)
{
    (void)state;
    run_attack(OVERSIZE, DDTS_ELIMIT);
}
static void test_zero_frame(void **state)
{
    (void)state;
    run_attack(ZERO, DDTS_EPROTO);
}

struct preauth {
    struct ddts_conn *conn;
    struct ddts_passphrase *pw;
    enum ddts_status st;
};

static void *server_only(void *arg)
{
    struct preauth *pa = arg;
    pa->st = ddts_conn_handshake(pa->conn, DDTS_ROLE_SERVER, pa->pw, DDTS_OK, NULL);
    return NULL;
}

static void test_preauth_limit(void **state)
{
    (void)state;
    static const uint32_t lens[] = {DDTS_MAX_FRAME_PREAUTH + 1, 5, 23};
    static const enum ddts_status expect[] = {DDTS_ELIMIT, DDTS_EPROTO, DDTS_EPROTO};
    for (int i = 0; i < 3; i++) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
        struct preauth pa = {.pw = pass("pw")};
        assert_int_equal(ddts_conn_from_fd(sv[1], &pa.conn, NULL), DDTS_OK);
        ddts_conn_set_timeout(pa.conn, 5);
        pthread_t t;
        assert_int_equal(pthread_create(&t, NULL, server_only, &pa), 0);
        uint8_t buf[4 + 23];
        memset(buf, 'A', sizeof buf); /* garbage: bad type / bad magic */
        ddts_wire_frame_header_encode(buf, lens[i]);
        size_t n = lens[i] <= 23 ? 4 + lens[i] : 4;
        raw_write(sv[0], buf, n);
        pthread_join(t, NULL);
        if (pa.st != expect[i])
            fail_msg("pre-auth frame of %u bytes: got %s, expected %s", lens[i],
                     ddts_status_str(pa.st), ddts_status_str(expect[i]));
        close(sv[0]);
        ddts_conn_destroy(pa.conn);
        ddts_passphrase_destroy(pa.pw);
    }
}

static int count_progress(void *ud, uint64_t done, uint64_t total)
{
    uint64_t *calls = ud;
    (*calls)++;
    assert_true(done <= total);
    return 0;
}

struct file_rx {
    struct ddts_conn *conn;
    const char *path;
    enum ddts_status st;
    struct ddts_error err;
    char name[64];
};

static void *recv_file(void *arg)
{
    struct file_rx *rx = arg;
    const uint8_t *p;
    size_t n;
    rx->st = ddts_conn_expect(rx->conn, DDTS_MSG_FILE_BEGIN, &p, &n, &rx->err);
    if (rx->st != DDTS_OK)
        return NULL;
    struct ddts_wire_reader r;
    uint8_t kind;
    uint64_t size;
    ddts_wire_reader_init(&r, p, n);
    ddts_wire_get_u8(&r, &kind);
    ddts_wire_get_str(&r, 63, rx->name, sizeof rx->name);
    ddts_wire_get_u64(&r, &size);
    rx->st = ddts_wire_reader_end(&r, "FILE_BEGIN", &rx->err);
    if (rx->st == DDTS_OK)
        rx->st = ddts_conn_recv_file_data(rx->conn, rx->path, size, NULL, NULL, &rx->err);
    return NULL;
}

static void test_file_transfer(void **state)
{
    (void)state;
    struct side c, s;
    pair("pw", "pw", DDTS_OK, &c, &s);
    assert_int_equal(c.st, DDTS_OK);
    char *dir = test_tmpdir();
    char *src = ddts_path_join(dir, "src.bin"), *dst = ddts_path_join(dir, "dst.bin");
    size_t size = 3 * DDTS_CHUNK_BYTES + 12345;
    uint8_t *data = ddts_malloc(size);
    struct ddts_rng rng;
    ddts_rng_seed(&rng, 7);
    for (size_t i = 0; i < size; i++)
        data[i] = (uint8_t)ddts_rng_u64(&rng);
    assert_int_equal(ddts_write_file_atomic(src, data, size, NULL), DDTS_OK);
    struct file_rx rx = {.conn = s.conn, .path = dst};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, recv_file, &rx), 0);
    uint64_t calls = 0;
    struct ddts_error err;
    assert_int_equal(
        ddts_conn_send_file(c.conn, 2, src, "shard/x.npy", count_progress, &calls, &err), DDTS_OK);
    pthread_join(t, NULL);
    if (rx.st != DDTS_OK)
        fail_msg("receive: %s", rx.err.msg);
    assert_string_equal(rx.name, "shard/x.npy");
    assert_int_equal(calls, 4); /* one per chunk */
    char *back = NULL;
    size_t back_n = 0;
    assert_int_equal(ddts_read_file(dst, size + 1, &back, &back_n, NULL), DDTS_OK);
    assert_int_equal(back_n, size);
    assert_memory_equal(back, data, size);
    /* A hostile path is refused before anything is sent. */
    assert_int_equal(ddts_conn_send_file(c.conn, 2, src, "../evil", NULL, NULL, NULL), DDTS_EPROTO);
    ddts_free(back);
    ddts_free(data);
    unlink(src);
    unlink(dst);
    rmdir(dir);
    ddts_free(src);
    ddts_free(dst);
    ddts_free(dir);
    unpair(&c, &s);
}

static void test_passphrase_read(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *f = ddts_path_join(dir, "pass");
    struct ddts_passphrase *pw = NULL;
    assert_int_equal(ddts_write_file_atomic(f, "s3cret\nignored\n", 15, NULL), DDTS_OK);
    /* World-readable: refused. */
    chmod(f, 0644);
    assert_int_equal(ddts_passphrase_read(f, &pw, NULL), DDTS_EINVAL);
    chmod(f, 0600);
    assert_int_equal(ddts_passphrase_read(f, &pw, NULL), DDTS_OK);
    /* Same passphrase as a created one: a handshake between them succeeds. */
    struct side c, s;
    pair("s3cret", "s3cret", DDTS_OK, &c, &s);
    assert_int_equal(c.st, DDTS_OK);
    unpair(&c, &s);
    ddts_passphrase_destroy(pw);
    unsetenv("DDTS_PASSPHRASE");
    assert_int_equal(ddts_passphrase_read(NULL, &pw, NULL), DDTS_ENOTFOUND);
    setenv("DDTS_PASSPHRASE", "from-env", 1);
    assert_int_equal(ddts_passphrase_read(NULL, &pw, NULL), DDTS_OK);
    ddts_passphrase_destroy(pw);
    unsetenv("DDTS_PASSPHRASE");
    unlink(f);
    rmdir(dir);
    ddts_free(f);
    ddts_free(dir);
}

static void test_loopback_connect(void **state)
{
    (void)state;
    struct ddts_listener *l = NULL;
    assert_int_equal(ddts_listener_open("127.0.0.1", 0, &l, NULL), DDTS_OK);
    uint16_t port = ddts_listener_port(l);
    assert_true(port != 0);
    struct ddts_conn *c = NULL, *s = NULL;
    assert_int_equal(ddts_conn_connect("127.0.0.1", port, 2, &c, NULL), DDTS_OK);
    assert_int_equal(ddts_listener_accept(l, 2, &s, NULL), DDTS_OK);
    assert_string_equal(ddts_conn_peer(s), "127.0.0.1");
    ddts_conn_destroy(s);
    assert_int_equal(ddts_listener_accept(l, 0.05, &s, NULL), DDTS_ETIMEOUT);
    ddts_conn_destroy(c);
    ddts_listener_close(l);
    /* Nobody listens there any more. */
    assert_int_equal(ddts_conn_connect("127.0.0.1", port, 2, &c, NULL), DDTS_EIO);
}

static void test_send_out_of_memory(void **state)
{
    (void)state;
    struct side c, s;
    pair("pw", "pw", DDTS_OK, &c, &s);
    assert_int_equal(c.st, DDTS_OK);
    size_t n = 200000; /* bigger than the buffers so far: sending must grow them */
    uint8_t *big = ddts_calloc(1, n);
    /* Fail each allocation in turn: ENOMEM, nothing sent, the connection stays usable. */
    int ok = 0;
    for (long k = 0; k < 8 && !ok; k++) {
        ddts_alloc_fail_after(k);
        enum ddts_status st = ddts_conn_send(c.conn, DDTS_MSG_FILE_DATA, big, n, NULL);
        ddts_alloc_fail_after(-1);
        if (st == DDTS_OK)
            ok = 1;
        else
            assert_int_equal(st, DDTS_ENOMEM);
    }
    assert_true(ok);
    uint8_t type;
    const uint8_t *p;
    size_t got;
    assert_int_equal(ddts_conn_recv(s.conn, &type, &p, &got, NULL), DDTS_OK);
    assert_int_equal(type, DDTS_MSG_FILE_DATA);
    assert_int_equal(got, n);
    ddts_free(big);
    unpair(&c, &s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_handshake_ok),     cmocka_unit_test(test_wrong_passphrase),
        cmocka_unit_test(test_refused),          cmocka_unit_test(test_tampered),
        cmocka_unit_test(test_replayed),         cmocka_unit_test(test_reordered),
        cmocka_unit_test(test_truncated),        cmocka_unit_test(test_oversized),
        cmocka_unit_test(test_zero_frame),       cmocka_unit_test(test_preauth_limit),
        cmocka_unit_test(test_file_transfer),    cmocka_unit_test(test_passphrase_read),
        cmocka_unit_test(test_loopback_connect), cmocka_unit_test(test_send_out_of_memory),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
