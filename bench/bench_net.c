/*
 * Transfer throughput over loopback: authenticated, encrypted ddts frames
 * (1 MiB FILE_DATA chunks, XChaCha20-Poly1305) against plain TCP send/recv
 * of the same bytes with the same chunk size, in the same run.
 *
 *     bench_net [MiB]      (default 500)
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ddts/ddts.h"
#include "../src/net/conn.h"

struct rx {
    struct ddts_listener *l;
    struct ddts_passphrase *pw;
    size_t total;
    int encrypted;
    enum ddts_status st;
};

static void *receiver(void *arg)
{
    struct rx *rx = arg;
    struct ddts_conn *c = NULL;
    rx->st = ddts_listener_accept(rx->l, 10, &c, NULL);
    if (rx->st != DDTS_OK)
        return NULL;
    size_t got = 0;
    if (rx->encrypted) {
        rx->st = ddts_conn_handshake(c, DDTS_ROLE_SERVER, rx->pw, DDTS_OK, NULL);
        while (rx->st == DDTS_OK && got < rx->total) {
            uint8_t type;
            const uint8_t *p;
            size_t n;
            rx->st = ddts_conn_recv(c, &type, &p, &n, NULL);
            got += n;
        }
    } else {
        uint8_t *buf = malloc(DDTS_CHUNK_BYTES);
        int fd = ddts_conn_fd(c);
        while (got < rx->total) {
            ssize_t r = recv(fd, buf, DDTS_CHUNK_BYTES, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue; /* the conn's socket is non-blocking: spin, like a busy reader */
            if (r <= 0)
                break;
            got += (size_t)r;
        }
        free(buf);
    }
    ddts_conn_destroy(c);
    return NULL;
}

static double run(int encrypted, size_t total, struct ddts_passphrase *pw)
{
    struct rx rx = {.pw = pw, .total = total, .encrypted = encrypted};
    if (ddts_listener_open("127.0.0.1", 0, &rx.l, NULL) != DDTS_OK)
        return -1;
    pthread_t t;
    pthread_create(&t, NULL, receiver, &rx);
    struct ddts_conn *c = NULL;
    uint8_t *buf = calloc(1, DDTS_CHUNK_BYTES);
    double t0 = 0, t1 = 0;
    if (ddts_conn_connect("127.0.0.1", ddts_listener_port(rx.l), 5, &c, NULL) == DDTS_OK &&
        (!encrypted || ddts_conn_handshake(c, DDTS_ROLE_CLIENT, pw, DDTS_OK, NULL) == DDTS_OK)) {
        t0 = ddts_now();
        for (size_t sent = 0; sent < total; sent += DDTS_CHUNK_BYTES) {
            if (encrypted) {
                if (ddts_conn_send(c, DDTS_MSG_FILE_DATA, buf, DDTS_CHUNK_BYTES, NULL) != DDTS_OK)
                    break;
            } else {
                size_t off = 0;
                while (off < DDTS_CHUNK_BYTES) {
                    ssize_t w =
                        send(ddts_conn_fd(c), buf + off, DDTS_CHUNK_BYTES - off, MSG_NOSIGNAL);
                    if (w < 0 && (errno == EAGAIN || errno == EINTR))
                        continue;
                    if (w <= 0)
                        break;
                    off += (size_t)w;
                }
            }
        }
        pthread_join(t, NULL);
        t1 = ddts_now();
    } else {
        pthread_join(t, NULL);
    }
    ddts_conn_destroy(c);
    ddts_listener_close(rx.l);
    free(buf);
    return t1 > t0 ? (double)total / (t1 - t0) / 1e6 : -1;
}

int main(int argc, char **argv)
{
    size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 500;
    size_t total = mib << 20;
    struct ddts_passphrase *pw = NULL;
    if (ddts_passphrase_create("bench", 5, &pw, NULL) != DDTS_OK)
        return 1;
    double plain = run(0, total, pw);
    double enc = run(1, total, pw);
    printf("net transfer %zu MiB loopback: ddts encrypted %.0f MB/s, plain TCP %.0f MB/s, "
           "ratio %.2f (target >= 0.70)\n",
           mib, enc, plain, plain > 0 ? enc / plain : 0);
    ddts_passphrase_destroy(pw);
    return 0;
}
