/*
 * Connections: non-blocking TCP sockets driven by poll() with a deadline per
 * frame, the CPace handshake (auth.c), then encrypted typed messages in
 * length-prefixed frames (wire.c). docs/protocol.md has the format.
 *
 * Memory per connection: a receive buffer and a send buffer that grow to the
 * largest frame seen (at most DDTS_MAX_FRAME + overhead; transfers use
 * DDTS_CHUNK_BYTES chunks, so in practice about 1 MiB each). Messages are
 * sealed and opened in place: a message is built (a file chunk read)
 * straight into the send buffer at PLAIN_OFF and encrypted where it lies; a
 * received frame is decrypted where it arrived. No plaintext copy, one
 * buffer per direction.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddts/fs.h"
#include "ddts/limits.h"
#include "conn.h"
#include "netutil.h"

#define MAX_BODY_AUTH ((size_t)DDTS_MAX_FRAME + DDTS_AUTH_ABYTES)
/*
 * Where a message's plaintext starts in a frame: after the length and the
 * secretstream's encrypted tag byte (the ciphertext of the message lies
 * exactly over its plaintext, then the 16-byte MAC follows).
 */
#define PLAIN_OFF (DDTS_WIRE_HEADER_BYTES + 1)
/*
 * Data bytes per FILE_DATA message: with the type byte, messages of exactly
 * DDTS_CHUNK_BYTES (1 MiB), a length that takes the fast sealing path of
 * auth.c (a multiple of 16).
 */
#define DATA_CHUNK (DDTS_CHUNK_BYTES - 1)

struct ddts_conn {
    int fd;
    double timeout_s;
    double deadline;      /* ddts_now() by which everything must be done (0: none) */
    uint16_t version;     /* protocol version, once authenticated */
    double deadline_span; /* seconds from the start to `deadline`, for the message */
    char peer[INET6_ADDRSTRLEN + 8];
    struct ddts_channel *ch; /* NULL before authentication */
    pthread_mutex_t send_mu;
    enum ddts_status send_dead; /* sticky failure of the sending side */
    enum ddts_status recv_dead; /* sticky failure of the receiving side */
    /* Receiving (one thread). */
    uint8_t *rbuf; /* frame body; after opening, the message at rbuf + 1 */
    size_t rcap;
    /* Sending (under send_mu). */
    uint8_t *sbuf; /* frame header + ciphertext; the plaintext at PLAIN_OFF before sealing */
    size_t scap;
};

struct ddts_listener {
    int fd;
    uint16_t port;
};

static int grow(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 4096;
    while (n < need)
        n = n > SIZE_MAX / 2 ? need : n * 2;
    uint8_t *p = ddts_realloc(*buf, n);
    if (p == NULL)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void describe_peer(struct ddts_conn *c)
{
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof ss;
    snprintf(c->peer, sizeof c->peer, "socketpair");
    if (getpeername(c->fd, (struct sockaddr *)&ss, &len) != 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, c->peer, sizeof c->peer);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, c->peer, sizeof c->peer);
}

enum ddts_status ddts_conn_from_fd(int fd, struct ddts_conn **out, struct ddts_error *err)
{
    *out = NULL;
    struct ddts_conn *c = ddts_calloc(1, sizeof *c);
    if (c == NULL) {
        close(fd);
        return ddts_error_set(err, DDTS_ENOMEM, "connection: out of memory");
    }
    if (set_nonblock(fd) != 0) {
        int e = errno;
        close(fd);
        ddts_free(c);
        return ddts_error_set_errno(err, DDTS_EIO, e, "connection: fcntl failed");
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    c->timeout_s = DDTS_IO_TIMEOUT_S;
    pthread_mutex_init(&c->send_mu, NULL);
    describe_peer(c);
    *out = c;
    return DDTS_OK;
}

void ddts_conn_destroy(struct ddts_conn *c)
{
    if (c == NULL)
        return;
    close(c->fd);
    ddts_channel_destroy(c->ch);
    pthread_mutex_destroy(&c->send_mu);
    /* The buffers held plaintext: wipe before freeing. */
    ddts_secure_wipe(c->rbuf, c->rcap);
    ddts_secure_wipe(c->sbuf, c->scap);
    ddts_free(c->rbuf);
    ddts_free(c->sbuf);
    ddts_free(c);
}

void ddts_conn_set_timeout(struct ddts_conn *c, double timeout_s)
{
    c->timeout_s = timeout_s > 0 ? timeout_s : DDTS_IO_TIMEOUT_S;
}

uint16_t ddts__conn_version(const struct ddts_conn *c)
{
    return c->ch != NULL ? c->version : 0;
}

void ddts__conn_set_deadline(struct ddts_conn *c, double deadline)
{
    c->deadline = deadline;
    c->deadline_span = deadline > 0 ? deadline - ddts_now() : 0;
}

const char *ddts_conn_peer(const struct ddts_conn *c)
{
    return c->peer;
}

int ddts_conn_fd(const struct ddts_conn *c)
{
    return c->fd;
}

int ddts_conn_is_authenticated(const struct ddts_conn *c)
{
    return c->ch != NULL;
}

void ddts_conn_shutdown(struct ddts_conn *c)
{
    (void)shutdown(c->fd, SHUT_RDWR);
}

/* Waits for `events` until `deadline`; DDTS_OK when ready. */
static enum ddts_status wait_fd(struct ddts_conn *c, short events, double deadline,
                                struct ddts_error *err)
{
    int overall = c->deadline > 0 && c->deadline < deadline;
    if (overall)
        deadline = c->deadline;
    for (;;) {
        double left = deadline - ddts_now();
        if (left <= 0 && overall)
            return ddts_error_set(err, DDTS_ETIMEOUT,
                                  "%s: no progress: not authenticated %.1f s after connecting",
                                  c->peer, c->deadline_span);
        if (left <= 0)
            return ddts_error_set(err, DDTS_ETIMEOUT, "%s: no progress for %.1f s", c->peer,
                                  c->timeout_s);
        struct pollfd p = {.fd = c->fd, .events = events};
        int ms = left > 1e6 ? 1000000000 : (int)(left * 1000) + 1;
        int rc = poll(&p, 1, ms);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: poll failed", c->peer);
        if (rc > 0)
            return DDTS_OK;
    }
}

static enum ddts_status write_all(struct ddts_conn *c, const uint8_t *p, size_t n,
                                  struct ddts_error *err)
{
    double deadline = ddts_now() + c->timeout_s;
    while (n > 0) {
        ssize_t w = send(c->fd, p, n, MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
            deadline = ddts_now() + c->timeout_s; /* progress: the timeout restarts */
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            enum ddts_status st = wait_fd(c, POLLOUT, deadline, err);
            if (st != DDTS_OK)
                return st;
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET))
            return ddts_error_set(err, DDTS_ECLOSED, "%s: connection closed by the peer", c->peer);
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: send failed", c->peer);
    }
    return DDTS_OK;
}

/* Reads exactly n bytes before `deadline`. `mid` says whether EOF is mid-frame. */
static enum ddts_status read_all(struct ddts_conn *c, uint8_t *p, size_t n, double deadline,
                                 int mid, struct ddts_error *err)
{
    while (n > 0) {
        ssize_t r = recv(c->fd, p, n, 0);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
            mid = 1;
            continue;
        }
        if (r == 0)
            return ddts_error_set(err, DDTS_ECLOSED, "%s: connection closed%s", c->peer,
                                  mid ? " in the middle of a frame" : " by the peer");
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            enum ddts_status st = wait_fd(c, POLLIN, deadline, err);
            if (st != DDTS_OK)
                return st;
            continue;
        }
        if (errno == ECONNRESET)
            return ddts_error_set(err, DDTS_ECLOSED, "%s: connection reset by the peer", c->peer);
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: recv failed", c->peer);
    }
    return DDTS_OK;
}

/* Reads one frame body into rbuf; *n its length. */
static enum ddts_status recv_frame(struct ddts_conn *c, size_t *n, struct ddts_error *err)
{
    uint8_t hdr[DDTS_WIRE_HEADER_BYTES];
    uint32_t len;
    *n = 0;
    double deadline = ddts_now() + c->timeout_s;
    enum ddts_status st = read_all(c, hdr, sizeof hdr, deadline, 0, err);
    if (st != DDTS_OK)
        return st;
    uint32_t max = c->ch != NULL ? (uint32_t)MAX_BODY_AUTH : DDTS_MAX_FRAME_PREAUTH;
    st = ddts_wire_frame_header_decode(hdr, max, &len, err);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "%s: ", c->peer);
        return st;
    }
    if (grow(&c->rbuf, &c->rcap, len) != 0)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory for a %u-byte frame", c->peer,
                              len);
    /* The whole body must arrive within the timeout of its first byte. */
    deadline = ddts_now() + c->timeout_s;
    st = read_all(c, c->rbuf, len, deadline, 1, err);
    if (st != DDTS_OK)
        return st;
    *n = len;
    return DDTS_OK;
}

static enum ddts_status send_plain_frame(struct ddts_conn *c, const uint8_t *msg, size_t n,
                                         struct ddts_error *err)
{
    if (grow(&c->sbuf, &c->scap, n + DDTS_WIRE_HEADER_BYTES) != 0)
        return ddts_error_set(err, DDTS_ENOMEM, "connection: out of memory");
    ddts_wire_frame_header_encode(c->sbuf, (uint32_t)n);
    memcpy(c->sbuf + DDTS_WIRE_HEADER_BYTES, msg, n);
    return write_all(c, c->sbuf, n + DDTS_WIRE_HEADER_BYTES, err);
}

/*
 * Makes room in sbuf for a message of n bytes at PLAIN_OFF and its frame;
 * caller holds send_mu.
 */
static enum ddts_status reserve_locked(struct ddts_conn *c, size_t n, struct ddts_error *err)
{
    if (c->send_dead != DDTS_OK)
        return ddts_error_set(err, c->send_dead, "%s: connection is closed after an error",
                              c->peer);
    if (c->ch == NULL)
        return ddts_error_set(err, DDTS_ESTATE, "%s: not authenticated", c->peer);
    if (grow(&c->sbuf, &c->scap, DDTS_WIRE_HEADER_BYTES + n + DDTS_AUTH_ABYTES) != 0)
        return ddts_error_set(err, DDTS_ENOMEM, "connection: out of memory");
    return DDTS_OK;
}

/* Seals the message sbuf[PLAIN_OFF..PLAIN_OFF+n) in place and sends it; caller holds send_mu. */
static enum ddts_status send_sealed_locked(struct ddts_conn *c, size_t n, int final,
                                           struct ddts_error *err)
{
    enum ddts_status st;
    size_t body = n + DDTS_AUTH_ABYTES;
    size_t out_n;
    st = ddts_channel_seal(c->ch, c->sbuf + PLAIN_OFF, n, final, c->sbuf + DDTS_WIRE_HEADER_BYTES,
                           body, &out_n, err);
    if (st == DDTS_OK) {
        ddts_wire_frame_header_encode(c->sbuf, (uint32_t)out_n);
        st = write_all(c, c->sbuf, out_n + DDTS_WIRE_HEADER_BYTES, err);
    }
    if (st != DDTS_OK)
        c->send_dead = st;
    return st;
}

static enum ddts_status send_msg(struct ddts_conn *c, uint8_t type, const void *payload, size_t n,
                                 int final, struct ddts_error *err)
{
    if (n >= DDTS_MAX_FRAME)
        return ddts_error_set(err, DDTS_ELIMIT, "%s: message of %zu bytes (max %u)", c->peer, n,
                              DDTS_MAX_FRAME - 1);
    pthread_mutex_lock(&c->send_mu);
    enum ddts_status st = reserve_locked(c, n + 1, err);
    if (st == DDTS_OK) {
        c->sbuf[PLAIN_OFF] = type;
        if (n > 0)
            memcpy(c->sbuf + PLAIN_OFF + 1, payload, n);
        st = send_sealed_locked(c, n + 1, final, err);
    }
    pthread_mutex_unlock(&c->send_mu);
    return st;
}

enum ddts_status ddts_conn_send(struct ddts_conn *c, uint8_t type, const void *payload, size_t n,
                                struct ddts_error *err)
{
    return send_msg(c, type, payload, n, 0, err);
}

enum ddts_status ddts_conn_send_w(struct ddts_conn *c, const struct ddts_wire_writer *w,
                                  struct ddts_error *err)
{
    if (w->status != DDTS_OK || w->len == 0)
        return ddts_error_set(err, DDTS_ELIMIT, "%s: message does not fit its buffer", c->peer);
    return send_msg(c, w->buf[0], w->buf + 1, w->len - 1, 0, err);
}

void ddts_conn_send_error(struct ddts_conn *c, enum ddts_status status, const char *msg)
{
    uint8_t buf[DDTS_ERROR_MSG_MAX + 16];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, buf, sizeof buf);
    ddts_wire_put_u8(&w, DDTS_MSG_ERROR);
    ddts_wire_put_u32(&w, (uint32_t)status);
    ddts_wire_put_str(&w, msg);
    if (c->ch != NULL && w.status == DDTS_OK && ddts_conn_send_w(c, &w, NULL) != DDTS_OK) {
        /* Best effort: the connection is closed next anyway. */
    }
}

enum ddts_status ddts_conn_heartbeat(struct ddts_conn *c, struct ddts_error *err)
{
    return send_msg(c, DDTS_MSG_HEARTBEAT, NULL, 0, 0, err);
}

void ddts_conn_close(struct ddts_conn *c)
{
    if (c == NULL)
        return;
    if (c->ch != NULL && c->send_dead == DDTS_OK) {
        c->timeout_s = c->timeout_s < 2 ? c->timeout_s : 2;
        if (send_msg(c, DDTS_MSG_BYE, NULL, 0, 1, NULL) != DDTS_OK) {
            /* Best effort: the peer may be gone already. */
        }
    }
    ddts_conn_destroy(c);
}

enum ddts_status ddts_conn_recv(struct ddts_conn *c, uint8_t *type, const uint8_t **payload,
                                size_t *n, struct ddts_error *err)
{
    *type = 0;
    *payload = NULL;
    *n = 0;
    if (c->recv_dead != DDTS_OK)
        return ddts_error_set(err, c->recv_dead, "%s: connection is closed after an error",
                              c->peer);
    if (c->ch == NULL)
        return ddts_error_set(err, DDTS_ESTATE, "%s: not authenticated", c->peer);
    for (;;) {
        size_t len, mlen = 0;
        int final;
        enum ddts_status st = recv_frame(c, &len, err);
        /* Decrypted in place: the message lies over its ciphertext, at rbuf + 1. */
        uint8_t *msg = NULL;
        if (st == DDTS_OK) {
            msg = c->rbuf + 1;
            st = ddts_channel_open(c->ch, c->rbuf, len, msg, len - 1, &mlen, &final, err);
        }
        if (st == DDTS_OK && mlen == 0)
            st = ddts_error_set(err, DDTS_EPROTO, "%s: empty message", c->peer);
        if (st != DDTS_OK) {
            if (st == DDTS_EAUTH)
                ddts_error_prefix(err, "%s: ", c->peer);
            c->recv_dead = st;
            return st;
        }
        uint8_t t = msg[0];
        if (final || t == DDTS_MSG_BYE) {
            c->recv_dead = DDTS_ECLOSED;
            return ddts_error_set(err, DDTS_ECLOSED, "%s: the peer said goodbye", c->peer);
        }
        if (t == DDTS_MSG_HEARTBEAT && mlen == 1)
            continue;
        if (t == DDTS_MSG_ERROR) {
            struct ddts_wire_reader r;
            uint32_t status = 0;
            char text[DDTS_ERROR_MSG_MAX];
            ddts_wire_reader_init(&r, msg + 1, mlen - 1);
            ddts_wire_get_u32(&r, &status);
            ddts_wire_get_str(&r, DDTS_ERROR_MSG_MAX - 1, text, sizeof text);
            c->recv_dead = DDTS_ECLOSED;
            if (ddts_wire_reader_end(&r, "ERROR", err) != DDTS_OK)
                return DDTS_EPROTO;
            if (status == 0 || status > DDTS_ESTATE)
                status = DDTS_EPROTO;
            /* The peer's words reach logs and terminals: control bytes escaped. */
            char safe[DDTS_ERROR_MSG_MAX];
            ddts__escape(text, safe, sizeof safe);
            return ddts_error_set(err, (enum ddts_status)status, "%s: peer reports: %s", c->peer,
                                  safe);
        }
        *type = t;
        *payload = msg + 1;
        *n = mlen - 1;
        return DDTS_OK;
    }
}

enum ddts_status ddts_conn_expect(struct ddts_conn *c, uint8_t expect, const uint8_t **payload,
                                  size_t *n, struct ddts_error *err)
{
    uint8_t type;
    enum ddts_status st = ddts_conn_recv(c, &type, payload, n, err);
    if (st != DDTS_OK)
        return st;
    if (type != expect) {
        c->recv_dead = DDTS_EPROTO;
        *payload = NULL;
        *n = 0;
        return ddts_error_set(err, DDTS_EPROTO, "%s: expected %s, got %s", c->peer,
                              ddts_msg_str(expect), ddts_msg_str(type));
    }
    return DDTS_OK;
}

/* The handshake; a client offers protocol `version` (0: DDTS_WIRE_VERSION). */
static enum ddts_status handshake(struct ddts_conn *c, enum ddts_role role,
                                  const struct ddts_passphrase *pw, enum ddts_status refuse,
                                  uint16_t version, struct ddts_error *err)
{
    struct ddts_handshake *hs = NULL;
    uint8_t out[DDTS_AUTH_MSG_MAX];
    size_t out_n = 0, in_n = 0;
    int done = 0, sent_share = 0;
    if (c->ch != NULL)
        return ddts_error_set(err, DDTS_ESTATE, "%s: already authenticated", c->peer);
    enum ddts_status st = ddts_handshake_create(role, pw, &hs, err);
    if (st != DDTS_OK)
        return st;
    if (role == DDTS_ROLE_SERVER && refuse != DDTS_OK)
        ddts_handshake_refuse(hs, refuse);
    if (role == DDTS_ROLE_CLIENT && version != 0)
        ddts__handshake_offer_version(hs, version);
    if (role == DDTS_ROLE_CLIENT) {
        st = ddts_handshake_step(hs, NULL, 0, out, sizeof out, &out_n, &done, err);
        if (st == DDTS_OK)
            st = send_plain_frame(c, out, out_n, err);
    }
    while (st == DDTS_OK && !done) {
        st = recv_frame(c, &in_n, err);
        if (st != DDTS_OK) {
            /* A client that leaves after seeing our share failed to authenticate. */
            if (role == DDTS_ROLE_SERVER && sent_share &&
                (st == DDTS_ECLOSED || st == DDTS_ETIMEOUT))
                st = ddts_error_set(err, DDTS_EAUTH,
                                    "%s: client left during key confirmation (wrong passphrase?)",
                                    c->peer);
            break;
        }
        st = ddts_handshake_step(hs, c->rbuf, in_n, out, sizeof out, &out_n, &done, err);
        if (out_n > 0) {
            struct ddts_error e2;
            enum ddts_status st2 = send_plain_frame(c, out, out_n, st == DDTS_OK ? err : &e2);
            if (st == DDTS_OK)
                st = st2;
            if (out[0] == DDTS_MSG_SHARE_S)
                sent_share = 1;
        }
    }
    if (st == DDTS_OK)
        st = ddts_handshake_channel(hs, &c->ch, err);
    if (st == DDTS_OK)
        c->version = ddts__handshake_version(hs);
    ddts_handshake_destroy(hs);
    ddts_secure_wipe(c->rbuf, c->rcap);
    if (st != DDTS_OK)
        c->recv_dead = c->send_dead = st;
    return st;
}

enum ddts_status ddts_conn_handshake(struct ddts_conn *c, enum ddts_role role,
                                     const struct ddts_passphrase *pw, enum ddts_status refuse,
                                     struct ddts_error *err)
{
    return handshake(c, role, pw, refuse, 0, err);
}

enum ddts_status ddts__conn_handshake_as(struct ddts_conn *c, const struct ddts_passphrase *pw,
                                         uint16_t version, struct ddts_error *err)
{
    return handshake(c, DDTS_ROLE_CLIENT, pw, DDTS_OK, version, err);
}

/* ---- streamed transfers ---- */

enum ddts_status ddts_conn_send_data(struct ddts_conn *c, const void *data, size_t n,
                                     struct ddts_error *err)
{
    const uint8_t *p = data;
    while (n > 0) {
        size_t k = n < DATA_CHUNK ? n : DATA_CHUNK;
        enum ddts_status st = ddts_conn_send(c, DDTS_MSG_FILE_DATA, p, k, err);
        if (st != DDTS_OK)
            return st;
        p += k;
        n -= k;
    }
    return DDTS_OK;
}

enum ddts_status ddts_conn_recv_data(struct ddts_conn *c, void *out, size_t n,
                                     struct ddts_error *err)
{
    uint8_t *p = out;
    while (n > 0) {
        const uint8_t *chunk;
        size_t k;
        enum ddts_status st = ddts_conn_expect(c, DDTS_MSG_FILE_DATA, &chunk, &k, err);
        if (st != DDTS_OK)
            return st;
        if (k > n) {
            c->recv_dead = DDTS_EPROTO;
            return ddts_error_set(err, DDTS_EPROTO, "%s: %zu bytes of data beyond the %zu expected",
                                  c->peer, k - n, n);
        }
        memcpy(p, chunk, k);
        p += k;
        n -= k;
    }
    return DDTS_OK;
}

/* Reads up to n bytes (fewer only at the end of the file or on an error). */
static size_t read_full(int fd, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    return got;
}

enum ddts_status ddts_conn_send_file(struct ddts_conn *c, uint8_t kind, const char *path,
                                     const char *remote, ddts_progress_fn progress, void *userdata,
                                     struct ddts_error *err)
{
    enum ddts_status st = ddts_wire_check_relpath(remote, err);
    if (st != DDTS_OK)
        return st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ddts_error_set(err, DDTS_EIO, "%s: not a regular file", path);
    }
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
    uint64_t size = (uint64_t)sb.st_size, done = 0;
    uint8_t head[DDTS_MAX_PATH_BYTES + 32];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, head, sizeof head);
    ddts_wire_put_u8(&w, DDTS_MSG_FILE_BEGIN);
    ddts_wire_put_u8(&w, kind);
    ddts_wire_put_str(&w, remote);
    ddts_wire_put_u64(&w, size);
    st = ddts_conn_send_w(c, &w, err);
    while (st == DDTS_OK && done < size) {
        /* Read straight into the frame, encrypted where it lies: one copy per chunk. */
        pthread_mutex_lock(&c->send_mu);
        st = reserve_locked(c, 1 + DATA_CHUNK, err);
        if (st == DDTS_OK) {
            uint64_t left = size - done;
            size_t want = left < DATA_CHUNK ? (size_t)left : DATA_CHUNK;
            size_t got = read_full(fd, c->sbuf + PLAIN_OFF + 1, want);
            if (got != want) {
                st = ddts_error_set(err, DDTS_EIO, "%s: file changed or unreadable while sending",
                                    path);
            } else {
                c->sbuf[PLAIN_OFF] = DDTS_MSG_FILE_DATA;
                st = send_sealed_locked(c, got + 1, 0, err);
                done += got;
            }
        }
        pthread_mutex_unlock(&c->send_mu);
        if (st == DDTS_OK && progress != NULL && progress(userdata, done, size) != 0)
            st = ddts_error_set(err, DDTS_ECANCELED, "%s: transfer canceled", path);
    }
    close(fd);
    if (st == DDTS_OK)
        st = ddts_conn_send(c, DDTS_MSG_FILE_END, NULL, 0, err);
    return st;
}

enum ddts_status ddts_conn_recv_file_data(struct ddts_conn *c, const char *path, uint64_t size,
                                          ddts_progress_fn progress, void *userdata,
                                          struct ddts_error *err)
{
    if (size > DDTS_MAX_FILE_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "%s: file of %llu bytes (max %llu)", path,
                              (unsigned long long)size, (unsigned long long)DDTS_MAX_FILE_BYTES);
    struct ddts_atomic_file f;
    enum ddts_status st = ddts_atomic_open(&f, path, err);
    if (st != DDTS_OK)
        return st;
    uint64_t done = 0;
    while (st == DDTS_OK && done < size) {
        const uint8_t *chunk;
        size_t k;
        st = ddts_conn_expect(c, DDTS_MSG_FILE_DATA, &chunk, &k, err);
        if (st != DDTS_OK)
            break;
        if (k > size - done) {
            c->recv_dead = DDTS_EPROTO;
            st = ddts_error_set(err, DDTS_EPROTO, "%s: more data than the announced %llu bytes",
                                path, (unsigned long long)size);
            break;
        }
        if (fwrite(chunk, 1, k, f.fp) != k) {
            st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: write failed", path);
            break;
        }
        done += k;
        if (progress != NULL && progress(userdata, done, size) != 0)
            st = ddts_error_set(err, DDTS_ECANCELED, "%s: transfer canceled", path);
    }
    if (st == DDTS_OK) {
        const uint8_t *p;
        size_t k;
        st = ddts_conn_expect(c, DDTS_MSG_FILE_END, &p, &k, err);
    }
    if (st != DDTS_OK) {
        ddts_atomic_abort(&f);
        return st;
    }
    return ddts_atomic_commit(&f, err);
}

/* ---- connecting and listening ---- */

enum ddts_status ddts_conn_connect(const char *host, uint16_t port, double timeout_s,
                                   struct ddts_conn **out, struct ddts_error *err)
{
    *out = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0)
        return ddts_error_set(err, DDTS_ENOTFOUND, "%s: cannot resolve: %s", host,
                              gai_strerror(rc));
    enum ddts_status st = DDTS_EIO;
    int last_errno = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            last_errno = errno;
            continue;
        }
        if (set_nonblock(fd) != 0) {
            last_errno = errno;
            close(fd);
            continue;
        }
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int ms = timeout_s > 0 ? (int)(timeout_s * 1000) : DDTS_IO_TIMEOUT_S * 1000;
            int pr;
            do {
                pr = poll(&p, 1, ms);
            } while (pr < 0 && errno == EINTR);
            if (pr == 0) {
                close(fd);
                st = DDTS_ETIMEOUT;
                continue;
            }
            int soerr = 0;
            socklen_t len = sizeof soerr;
            if (pr < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
                soerr = errno;
            if (soerr != 0) {
                last_errno = soerr;
                close(fd);
                continue;
            }
            rc = 0;
        }
        if (rc != 0) {
            last_errno = errno;
            close(fd);
            continue;
        }
        freeaddrinfo(res);
        return ddts_conn_from_fd(fd, out, err);
    }
    freeaddrinfo(res);
    if (st == DDTS_ETIMEOUT)
        return ddts_error_set(err, DDTS_ETIMEOUT, "%s:%u: connection timed out after %.1f s", host,
                              (unsigned)port, timeout_s);
    return ddts_error_set_errno(err, DDTS_EIO, last_errno, "%s:%u: cannot connect", host,
                                (unsigned)port);
}

enum ddts_status ddts_listener_open(const char *host, uint16_t port, struct ddts_listener **out,
                                    struct ddts_error *err)
{
    *out = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host != NULL ? host : "0.0.0.0", service, &hints, &res);
    if (rc != 0)
        return ddts_error_set(err, DDTS_ENOTFOUND, "%s: cannot resolve: %s",
                              host != NULL ? host : "0.0.0.0", gai_strerror(rc));
    int fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
    int e = errno;
    if (fd >= 0) {
        int one = 1;
        (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 128) != 0 ||
            set_nonblock(fd) != 0) {
            e = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return ddts_error_set_errno(err, DDTS_EIO, e, "cannot listen on %s:%u",
                                    host != NULL ? host : "0.0.0.0", (unsigned)port);
    struct ddts_listener *l = ddts_calloc(1, sizeof *l);
    if (l == NULL) {
        close(fd);
        return ddts_error_set(err, DDTS_ENOMEM, "listener: out of memory");
    }
    struct sockaddr_storage ss = {0};
    socklen_t len = sizeof ss;
    l->fd = fd;
    l->port = port;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        /* NOLINTNEXTLINE(clang-analyzer-core.CallAndMessage): ss is zeroed, then filled */
        l->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                 : ((struct sockaddr_in *)&ss)->sin_port);
    *out = l;
    return DDTS_OK;
}

void ddts_listener_close(struct ddts_listener *l)
{
    if (l == NULL)
        return;
    close(l->fd);
    ddts_free(l);
}

uint16_t ddts_listener_port(const struct ddts_listener *l)
{
    return l->port;
}

enum ddts_status ddts__listener_accept_fd(struct ddts_listener *l, double timeout_s, int *fd,
                                          struct sockaddr_storage *peer, struct ddts_error *err)
{
    *fd = -1;
    memset(peer, 0, sizeof *peer);
    struct pollfd p = {.fd = l->fd, .events = POLLIN};
    int rc = poll(&p, 1, timeout_s > 0 ? (int)(timeout_s * 1000) : 0);
    if (rc < 0 && errno != EINTR)
        return ddts_error_set_errno(err, DDTS_EIO, errno, "accept: poll failed");
    if (rc <= 0)
        return ddts_error_set(err, DDTS_ETIMEOUT, "accept: no connection");
    socklen_t len = sizeof *peer;
    int s = accept4(l->fd, (struct sockaddr *)peer, &len, SOCK_CLOEXEC);
    if (s < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR || errno == ECONNABORTED)
            return ddts_error_set(err, DDTS_ETIMEOUT, "accept: no connection");
        return ddts_error_set_errno(err, DDTS_EIO, errno, "accept failed");
    }
    *fd = s;
    return DDTS_OK;
}

enum ddts_status ddts_listener_accept(struct ddts_listener *l, double timeout_s,
                                      struct ddts_conn **out, struct ddts_error *err)
{
    *out = NULL;
    int fd;
    struct sockaddr_storage peer;
    enum ddts_status st = ddts__listener_accept_fd(l, timeout_s, &fd, &peer, err);
    return st != DDTS_OK ? st : ddts_conn_from_fd(fd, out, err);
}
