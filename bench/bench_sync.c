/*
 * Coordination overhead of averaging rounds: N clients (threads) and a server
 * on loopback, a tiny model (1000 float32) unless told otherwise, R exchanges
 * each and no compute: the time per round is pure protocol cost (encryption,
 * framing, waiting for the slowest, averaging), plus the transfer of the
 * model for larger sizes (the peer of bench_mpi's exchanges, bench/run.sh).
 *
 *     bench_sync [clients] [rounds] [floats]   (default 32 clients, 200 rounds, 1000)
 *     bench_sync CLIENTS ROUNDS FLOATS --serve HOST:PORT   the server alone
 *     bench_sync CLIENTS ROUNDS FLOATS --join HOST:PORT    the clients alone
 *
 * The last two put the server and its clients in different network
 * namespaces (bench/netem.sh). Each client times its rounds after the first
 * (connection and job set-up excluded); the slowest client's mean is the
 * time per round.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ddts/ddts.h"

static int rounds = 200;
static size_t n_weights = 1000;
static atomic_int port;
static double round_s[256]; /* per client (shard): mean seconds per round after the first */

static enum ddts_status train(void *ud, const struct ddts_client_job *job,
                              struct ddts_client_sync *sync, struct ddts_error *err)
{
    (void)ud;
    float *w = ddts_mallocarray(n_weights, sizeof(float));
    if (w == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_weights; i++)
        w[i] = (float)job->shard;
    enum ddts_status st = DDTS_OK;
    double t_first = 0;
    for (int r = 0; r < rounds && st == DDTS_OK; r++) {
        st = ddts_client_sync_exchange(sync, w, n_weights, 1, err);
        if (r == 0)
            t_first = ddts_now();
    }
    if (st == DDTS_OK && rounds > 1 && job->shard < 256)
        round_s[job->shard] = (ddts_now() - t_first) / (rounds - 1);
    ddts_free(w);
    return st;
}

static void on_listening(void *ud, uint16_t p)
{
    (void)ud;
    atomic_store(&port, p);
}

static void *server_main(void *arg)
{
    struct ddts_server_config *cfg = arg;
    struct ddts_error err;
    if (ddts_server_run(cfg, &err) != DDTS_OK)
        fprintf(stderr, "server: %s\n", err.msg);
    return NULL;
}

struct client_arg {
    struct ddts_client_config cfg;
    char dir[64];
};

static void *client_main(void *arg)
{
    struct client_arg *ca = arg;
    struct ddts_error err;
    if (ddts_client_run(&ca->cfg, &err) != DDTS_OK)
        fprintf(stderr, "client: %s\n", err.msg);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = argc > 1 ? (int)strtol(argv[1], NULL, 10) : 32;
    rounds = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 200;
    long nw = argc > 3 ? strtol(argv[3], NULL, 10) : 1000;
    if (n < 1 || n > 256 || rounds < 1 || nw < 1 || nw > (1L << 28))
        return 2;
    n_weights = (size_t)nw;
    /* --serve / --join HOST:PORT: one side only. */
    int serve = argc > 5 && strcmp(argv[4], "--serve") == 0;
    int join = argc > 5 && strcmp(argv[4], "--join") == 0;
    char host[64] = "127.0.0.1";
    long fixed_port = 0;
    if (serve || join) {
        const char *colon = strrchr(argv[5], ':');
        if (colon == NULL || (size_t)(colon - argv[5]) >= sizeof host)
            return 2;
        memcpy(host, argv[5], (size_t)(colon - argv[5]));
        host[colon - argv[5]] = '\0';
        fixed_port = strtol(colon + 1, NULL, 10);
        if (fixed_port < 1 || fixed_port > 65535)
            return 2;
        atomic_store(&port, (int)fixed_port);
    }
    char tmpl[] = "/tmp/ddts-bench-sync-XXXXXX";
    char *dir = mkdtemp(tmpl);
    struct ddts_passphrase *pw = NULL;
    if (dir == NULL || ddts_passphrase_create("bench", 5, &pw, NULL) != DDTS_OK)
        return 1;
    struct ddts_server_config sc = {
        .host = host,
        .port = (uint16_t)fixed_port,
        .any_port = fixed_port == 0,
        .passphrase = pw,
        .n_clients = (size_t)n,
        .workdir = dir,
        .job = "bench",
        .client_timeout_s = 60,
        .sync = DDTS_SYNC_STEP,
        .on_listening = on_listening,
    };
    pthread_t st;
    if (!join && pthread_create(&st, NULL, server_main, &sc) != 0) {
        fprintf(stderr, "bench_sync: cannot start the server thread\n");
        return 1;
    }
    if (serve && !join) {
        pthread_join(st, NULL);
        printf("sync server on %s:%ld: job done\n", host, fixed_port);
        ddts_passphrase_destroy(pw);
        return 0;
    }
    while (atomic_load(&port) == 0)
        usleep(1000);
    struct client_arg *ca = calloc((size_t)n, sizeof *ca);
    pthread_t *ct = calloc((size_t)n, sizeof *ct);
    double t0 = ddts_now();
    for (int i = 0; i < n; i++) {
        snprintf(ca[i].dir, sizeof ca[i].dir, "%s/c%d", dir, i);
        ca[i].cfg = (struct ddts_client_config){
            .host = host,
            .port = (uint16_t)atomic_load(&port),
            .passphrase = pw,
            .workdir = ca[i].dir,
            .train = train,
            .one_share = 1,
        };
        pthread_create(&ct[i], NULL, client_main, &ca[i]);
    }
    for (int i = 0; i < n; i++)
        pthread_join(ct[i], NULL);
    double t1 = ddts_now();
    if (!join)
        pthread_join(st, NULL);
    double slowest = 0;
    for (int i = 0; i < n && i < 256; i++)
        slowest = round_s[i] > slowest ? round_s[i] : slowest;
    printf("sync rounds: %d clients x %d rounds of %zu floats (%.2f MB) to %s: %.1f s in all "
           "(setup included), %.2f ms per round after the first\n",
           n, rounds, n_weights, (double)n_weights * 4 / 1e6, host, t1 - t0, slowest * 1e3);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", dir);
    free(ca);
    free(ct);
    ddts_passphrase_destroy(pw);
    return 0;
}
