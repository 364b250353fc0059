/*
 * Transfer benchmark (issue 6): streams one large shard file over loopback
 * from a sender (the server's path: ddts_conn_send_file after a CPace
 * handshake, so every byte is encrypted with XChaCha20-Poly1305) to a
 * receiver in a child process (ddts_conn_recv of every FILE_DATA frame,
 * decrypted and authenticated, then discarded), and the same file through a
 * plain TCP socket (read 1 MiB, write; read, discard: what `cat | nc` does).
 * Alternates the two `repeats` times and prints the medians.
 *
 *   bench_transfer [--size MB] [--repeats N] [--file PATH]
 *
 * The file (default: $TMPDIR/ddts-bench-shard.bin) is created with
 * pseudo-random bytes when it is missing or of another size and is kept, so
 * that bench/run.sh can send the same file with socat.
 *
 * Output (parsed by bench/run.sh):
 *   transfer N MB: ddts encrypted X MB/s, plain TCP Y MB/s (medians of R), ratio Z
 *   transfer CPU s/GB (sender + receiver): ddts encrypted A, plain TCP B (medians)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddts/ddts.h"
#include "../src/net/conn.h"

#define BUF_BYTES (1u << 20)

/* ddts connections use non-blocking sockets with poll; plain copies block. */
static int blocking(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int make_file(const char *path, size_t bytes)
{
    struct stat sb;
    if (stat(path, &sb) == 0 && (size_t)sb.st_size == bytes)
        return 0;
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "%s: %s\n", path, strerror(errno));
        return -1;
    }
    uint64_t *buf = malloc(BUF_BYTES);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (size_t done = 0; buf && done < bytes;) {
        for (size_t i = 0; i < BUF_BYTES / 8; i++) {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            buf[i] = s;
        }
        size_t k = bytes - done < BUF_BYTES ? bytes - done : BUF_BYTES;
        if (fwrite(buf, 1, k, f) != k)
            break;
        done += k;
    }
    free(buf);
    return fclose(f) == 0 ? 0 : -1;
}

/* Receiver (child): connects, authenticates, counts FILE_DATA bytes until FILE_END. */
static int recv_ddts(uint16_t port, const struct ddts_passphrase *pw, uint64_t expect)
{
    struct ddts_error err = {0};
    struct ddts_conn *c = NULL;
    if (ddts_conn_connect("127.0.0.1", port, 10, &c, &err) != DDTS_OK ||
        ddts_conn_handshake(c, DDTS_ROLE_CLIENT, pw, DDTS_OK, &err) != DDTS_OK) {
        fprintf(stderr, "receiver: %s\n", err.msg);
        ddts_conn_destroy(c);
        return 1;
    }
    uint64_t got = 0;
    for (;;) {
        uint8_t type;
        const uint8_t *p;
        size_t n;
        if (ddts_conn_recv(c, &type, &p, &n, &err) != DDTS_OK) {
            fprintf(stderr, "receiver: %s\n", err.msg);
            ddts_conn_destroy(c);
            return 1;
        }
        if (type == DDTS_MSG_FILE_DATA)
            got += n;
        else if (type == DDTS_MSG_FILE_END)
            break;
    }
    ddts_conn_close(c);
    return got == expect ? 0 : 1;
}

static int recv_plain(uint16_t port, uint64_t expect)
{
    struct ddts_error err = {0};
    struct ddts_conn *c = NULL;
    if (ddts_conn_connect("127.0.0.1", port, 10, &c, &err) != DDTS_OK) {
        fprintf(stderr, "receiver: %s\n", err.msg);
        return 1;
    }
    char *buf = malloc(BUF_BYTES);
    uint64_t got = 0;
    (void)blocking(ddts_conn_fd(c));
    ssize_t k;
    while (buf && (k = read(ddts_conn_fd(c), buf, BUF_BYTES)) > 0)
        got += (uint64_t)k;
    free(buf);
    ddts_conn_destroy(c);
    return got == expect ? 0 : 1;
}

static int send_plain(int fd, const char *path)
{
    int in = open(path, O_RDONLY);
    char *buf = malloc(BUF_BYTES);
    ssize_t k;
    int rc = in >= 0 && buf && blocking(fd) == 0 ? 0 : -1;
    while (rc == 0 && (k = read(in, buf, BUF_BYTES)) > 0) {
        for (ssize_t off = 0; off < k;) {
            ssize_t w = write(fd, buf + off, (size_t)(k - off));
            if (w <= 0) {
                rc = -1;
                break;
            }
            off += w;
        }
    }
    free(buf);
    if (in >= 0)
        close(in);
    return rc;
}

static double cpu_s(int who)
{
    struct rusage ru;
    if (getrusage(who, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/*
 * One transfer; returns MB/s or a negative value on failure. *cpu gets the
 * CPU seconds of sender and receiver together (user + system), a figure
 * that depends much less on the machine's load than the rate.
 */
static double one(int encrypted, const char *path, uint64_t bytes, const struct ddts_passphrase *pw,
                  double *cpu)
{
    struct ddts_error err = {0};
    struct ddts_listener *l = NULL;
    if (ddts_listener_open("127.0.0.1", 0, &l, &err) != DDTS_OK) {
        fprintf(stderr, "listen: %s\n", err.msg);
        return -1;
    }
    uint16_t port = ddts_listener_port(l);
    fflush(NULL);
    double c0 = cpu_s(RUSAGE_SELF) + cpu_s(RUSAGE_CHILDREN);
    double t0 = ddts_now();
    pid_t pid = fork();
    if (pid == 0) {
        ddts_listener_close(l);
        _exit(encrypted ? recv_ddts(port, pw, bytes) : recv_plain(port, bytes));
    }
    struct ddts_conn *c = NULL;
    int ok = pid > 0 && ddts_listener_accept(l, 10, &c, &err) == DDTS_OK;
    if (ok && encrypted)
        ok = ddts_conn_handshake(c, DDTS_ROLE_SERVER, pw, DDTS_OK, &err) == DDTS_OK &&
             ddts_conn_send_file(c, 1, path, "shard.bin", NULL, NULL, &err) == DDTS_OK;
    else if (ok)
        ok = send_plain(ddts_conn_fd(c), path) == 0;
    if (!ok)
        fprintf(stderr, "sender: %s (%s)\n", err.msg, ddts_status_str(err.status));
    if (encrypted && ok)
        ddts_conn_close(c);
    else
        ddts_conn_destroy(c);
    int status = 0;
    if (pid > 0)
        waitpid(pid, &status, 0);
    double dt = ddts_now() - t0;
    *cpu = cpu_s(RUSAGE_SELF) + cpu_s(RUSAGE_CHILDREN) - c0;
    ddts_listener_close(l);
    if (!ok || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "transfer failed (receiver status %d)\n", status);
        return -1;
    }
    return (double)bytes / 1e6 / dt;
}

int main(int argc, char **argv)
{
    long mb = 500;
    int repeats = 3;
    char def[512];
    const char *tmp = getenv("TMPDIR");
    snprintf(def, sizeof def, "%s/ddts-bench-shard.bin", tmp && *tmp ? tmp : "/tmp");
    const char *path = def;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--size") == 0 && i + 1 < argc)
            mb = strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc)
            repeats = (int)strtol(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--file") == 0 && i + 1 < argc)
            path = argv[++i];
        else {
            fprintf(stderr, "usage: bench_transfer [--size MB] [--repeats N] [--file PATH]\n");
            return 2;
        }
    }
    if (mb < 1 || mb > 4096 || repeats < 1 || repeats > 50)
        return 2;
    uint64_t bytes = (uint64_t)mb * 1000000u;
    if (make_file(path, bytes) != 0)
        return 1;
    struct ddts_error err = {0};
    struct ddts_passphrase *pw = NULL;
    if (ddts_auth_init(&err) != DDTS_OK ||
        ddts_passphrase_create("bench passphrase", 16, &pw, &err) != DDTS_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    double enc[50], plain[50], enc_cpu[50] = {0}, plain_cpu[50] = {0};
    for (int r = 0; r < repeats; r++) {
        enc[r] = one(1, path, bytes, pw, &enc_cpu[r]);
        plain[r] = one(0, path, bytes, pw, &plain_cpu[r]);
        if (enc[r] < 0 || plain[r] < 0)
            return 1;
        /* CPU seconds per GB, both processes together. */
        enc_cpu[r] *= 1e9 / (double)bytes;
        plain_cpu[r] *= 1e9 / (double)bytes;
        fprintf(stderr,
                "  repeat %d: ddts %.0f MB/s (%.2f CPU s/GB), plain %.0f MB/s (%.2f CPU s/GB)\n",
                r + 1, enc[r], enc_cpu[r], plain[r], plain_cpu[r]);
    }
    ddts_passphrase_destroy(pw);
    qsort(enc, (size_t)repeats, sizeof enc[0], cmp_double);
    qsort(plain, (size_t)repeats, sizeof plain[0], cmp_double);
    qsort(enc_cpu, (size_t)repeats, sizeof enc_cpu[0], cmp_double);
    qsort(plain_cpu, (size_t)repeats, sizeof plain_cpu[0], cmp_double);
    double me = repeats % 2 ? enc[repeats / 2] : 0.5 * (enc[repeats / 2 - 1] + enc[repeats / 2]);
    double mp =
        repeats % 2 ? plain[repeats / 2] : 0.5 * (plain[repeats / 2 - 1] + plain[repeats / 2]);
    printf("transfer %ld MB: ddts encrypted %.0f MB/s, plain TCP %.0f MB/s (medians of %d), "
           "ratio %.2f\n",
           mb, me, mp, repeats, me / mp);
    printf("transfer CPU s/GB (sender + receiver): ddts encrypted %.2f, plain TCP %.2f (medians)\n",
           enc_cpu[repeats / 2], plain_cpu[repeats / 2]);
    return 0;
}
