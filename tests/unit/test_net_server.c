/*
 * Server and clients in one process (threads) over loopback, with a fake
 * train callback: weights = start + (share + 1), trained on 10 * (share + 1)
 * samples, so each round's weighted mean is known exactly.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "net/conn.h"
#include "test.h"

#define N_WEIGHTS 1000

/* ---- a logger that keeps every line ---- */

struct logbook {
    pthread_mutex_t mu;
    char text[1 << 16];
    size_t len;
};

static void log_keep(void *ud, enum ddts_log_level level, const char *msg)
{
    struct logbook *lb = ud;
    pthread_mutex_lock(&lb->mu);
    int n = snprintf(lb->text + lb->len, sizeof lb->text - lb->len, "%s: %s\n",
                     ddts_log_level_str(level), msg);
    if (n > 0 && lb->len + (size_t)n < sizeof lb->text)
        lb->len += (size_t)n;
    if (getenv("DDTS_TEST_VERBOSE"))
        fprintf(stderr, "%.3f %s: %s\n", ddts_now(), ddts_log_level_str(level), msg);
    pthread_mutex_unlock(&lb->mu);
}

static int log_count(struct logbook *lb, const char *needle)
{
    int n = 0;
    pthread_mutex_lock(&lb->mu);
    for (const char *p = lb->text; (p = strstr(p, needle)) != NULL; p++)
        n++;
    pthread_mutex_unlock(&lb->mu);
    return n;
}

static void wait_log(struct logbook *lb, const char *needle, int count, double timeout)
{
    double end = ddts_now() + timeout;
    while (log_count(lb, needle) < count) {
        if (ddts_now() > end)
            fail_msg("log never had %d x '%s'; log:\n%s", count, needle, lb->text);
        usleep(10000);
    }
}

/* ---- the server in a thread ---- */

struct server_run {
    struct ddts_server_config cfg;
    struct ddts_logger logger;
    struct logbook log;
    pthread_t thread;
    enum ddts_status st;
    struct ddts_error err;
    atomic_int port;
    atomic_int stop;
    atomic_int rounds_seen;
    float last_w0;
    char *dir;
};

static int should_stop(void *ud)
{
    struct server_run *sr = ud;
    return atomic_load(&sr->stop);
}

static void on_listening(void *ud, uint16_t port)
{
    struct server_run *sr = ud;
    atomic_store(&sr->port, port);
}

static void on_round(void *ud, uint64_t round, const float *w, size_t n)
{
    struct server_run *sr = ud;
    if (n == N_WEIGHTS && round == (uint64_t)atomic_load(&sr->rounds_seen) + 1) {
        sr->last_w0 = w[0];
        atomic_fetch_add(&sr->rounds_seen, 1);
    }
}

static void *server_main(void *arg)
{
    struct server_run *sr = arg;
    sr->st = ddts_server_run(&sr->cfg, &sr->err);
    return NULL;
}

static char *join2(const char *a, const char *b)
{
    char *p = ddts_path_join(a, b);
    assert_non_null(p);
    return p;
}

static void write_text(const char *path, const char *text)
{
    assert_int_equal(ddts_write_file_atomic(path, text, strlen(text), NULL), DDTS_OK);
}

/* Prepares a server for `n` clients with a model, settings and one shard folder per client. */
static void server_prepare(struct server_run *sr, struct ddts_passphrase *pw, size_t n,
                           enum ddts_sync_mode sync, double client_timeout)
{
    memset(sr, 0, sizeof *sr);
    pthread_mutex_init(&sr->log.mu, NULL);
    sr->dir = test_tmpdir();
    char *shards = join2(sr->dir, "shards");
    char *model = join2(sr->dir, "model.h5");
    write_text(model, "MODEL");
    for (size_t i = 0; i < n; i++) {
        char name[32], text[32];
        snprintf(name, sizeof name, "shard_%zu/sub", i);
        char *d = join2(shards, name);
        assert_int_equal(ddts_mkdir_p(d, NULL), DDTS_OK);
        char *x = join2(d, "x.npy");
        snprintf(text, sizeof text, "data %zu", i);
        write_text(x, text);
        ddts_free(x);
        ddts_free(d);
    }
    sr->logger = (struct ddts_logger){log_keep, &sr->log, DDTS_LOG_DEBUG};
    sr->cfg = (struct ddts_server_config){
        .host = "127.0.0.1",
        .port = 0,
        .passphrase = pw,
        .n_clients = n,
        .workdir = join2(sr->dir, "work"),
        .job = "job1",
        .ban_after = 3,
        .client_timeout_s = client_timeout,
        .io_timeout_s = 5,
        .logger = &sr->logger,
        .settings_json = "{\"epochs\": 2}",
        .model_path = model,
        .shards_dir = shards,
        .sync = sync,
        .should_stop = should_stop,
        .on_listening = on_listening,
        .userdata = sr,
        .on_round = on_round,
    };
    /* Any free port: ddts_server_run reports it through on_listening. */
    sr->cfg.any_port = 1;
}

static void server_go(struct server_run *sr)
{
    assert_int_equal(pthread_create(&sr->thread, NULL, server_main, sr), 0);
    double end = ddts_now() + 10;
    while (atomic_load(&sr->port) == 0 && ddts_now() < end)
        usleep(5000);
    if (atomic_load(&sr->port) == 0)
        fail_msg("server did not start: %s", sr->err.msg);
}

static void server_start(struct server_run *sr, struct ddts_passphrase *pw, size_t n,
                         enum ddts_sync_mode sync, double client_timeout)
{
    server_prepare(sr, pw, n, sync, client_timeout);
    server_go(sr);
}

static void server_join(struct server_run *sr, enum ddts_status expect)
{
    pthread_join(sr->thread, NULL);
    if (sr->st != expect)
        fail_msg("server: %s (%s), expected %s; log:\n%s", ddts_status_str(sr->st), sr->err.msg,
                 ddts_status_str(expect), sr->log.text);
}

static void server_free(struct server_run *sr)
{
    ddts_free((char *)sr->cfg.workdir);
    ddts_free((char *)sr->cfg.model_path);
    ddts_free((char *)sr->cfg.shards_dir);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", sr->dir);
    if (system(cmd) != 0)
        fprintf(stderr, "cleanup of %s failed\n", sr->dir);
    ddts_free(sr->dir);
    pthread_mutex_destroy(&sr->log.mu);
}

/* ---- clients ---- */

struct client_run {
    struct ddts_client_config cfg;
    struct ddts_logger logger;
    pthread_t thread;
    enum ddts_status st;
    struct ddts_error err;
    char *workdir;
    int rounds;      /* exchanges per share */
    int check_exact; /* every share takes part in every round: check the means */
    size_t n_shares;
    atomic_int trained; /* shares trained */
    atomic_int calls;   /* train callbacks started */
    int no_files;       /* the server sends no model and no data */
    int pause;          /* first call: after round 1, wait for `resume` */
    atomic_int paused, resume;
    atomic_int progress_calls;
    atomic_int failures; /* checks that failed inside train */
    char failure[256];
};

static float expected_mean(size_t n_shares, float start)
{
    /* sum_s 10(s+1) (start + s + 1) / sum_s 10(s+1) */
    double num = 0, den = 0;
    for (size_t s = 0; s < n_shares; s++) {
        num += 10.0 * (double)(s + 1) * ((double)start + (double)(s + 1));
        den += 10.0 * (double)(s + 1);
    }
    return (float)(num / den);
}

static enum ddts_status fake_train(void *ud, const struct ddts_client_job *job,
                                   struct ddts_client_sync *sync, struct ddts_error *err)
{
    struct client_run *cr = ud;
    atomic_fetch_add(&cr->calls, 1);
#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            snprintf(cr->failure, sizeof cr->failure, "share %u: %s", job->shard, #cond);          \
            atomic_fetch_add(&cr->failures, 1);                                                    \
        }                                                                                          \
    } while (0)
    char *text = NULL;
    size_t n = 0;
    CHECK(strcmp(job->settings_json, "{\"epochs\": 2}") == 0);
    if (cr->no_files) {
        CHECK(job->model_path == NULL && job->shard_dir == NULL);
        atomic_fetch_add(&cr->trained, 1);
        return DDTS_OK;
    }
    CHECK(job->model_path != NULL &&
          ddts_read_file(job->model_path, 100, &text, &n, NULL) == DDTS_OK &&
          strcmp(text, "MODEL") == 0);
    ddts_free(text);
    text = NULL;
    char *x = job->shard_dir ? ddts_path_join(job->shard_dir, "sub/x.npy") : NULL;
    char expect[32];
    snprintf(expect, sizeof expect, "data %u", job->shard);
    CHECK(x != NULL && ddts_read_file(x, 100, &text, &n, NULL) == DDTS_OK &&
          strcmp(text, expect) == 0);
    ddts_free(x);
    ddts_free(text);
    float *w = ddts_calloc(N_WEIGHTS, sizeof *w);
    if (job->init_weights_path != NULL) {
        text = NULL;
        CHECK(ddts_read_file(job->init_weights_path, 1 << 20, &text, &n, NULL) == DDTS_OK &&
              n == N_WEIGHTS * sizeof(float));
        if (text != NULL && n == N_WEIGHTS * sizeof(float))
            memcpy(w, text, n);
        ddts_free(text);
    }
    enum ddts_status st = DDTS_OK;
    if (cr->check_exact) {
        /* Normalizer-style reductions before training: max and min over the shares. */
        float v[4] = {(float)job->shard, -(float)job->shard, 1, 2};
        st = ddts_client_sync_reduce(sync, DDTS_REDUCE_MAX, v, 4, 1, err);
        CHECK(st == DDTS_OK && v[0] == (float)(cr->n_shares - 1) && v[1] == 0 && v[3] == 2);
        float u[2] = {(float)job->shard, 1};
        if (st == DDTS_OK)
            st = ddts_client_sync_reduce(sync, DDTS_REDUCE_SUM, u, 2, 1, err);
        CHECK(st == DDTS_OK && u[1] == (float)cr->n_shares &&
              u[0] == (float)(cr->n_shares * (cr->n_shares - 1) / 2));
    }
    for (int r = 0; job->sync != DDTS_SYNC_NONE && r < cr->rounds && st == DDTS_OK; r++) {
        float start = w[0];
        for (size_t i = 0; i < N_WEIGHTS; i++)
            w[i] += (float)(job->shard + 1);
        st = ddts_client_sync_exchange(sync, w, N_WEIGHTS, 10 * (job->shard + 1), err);
        if (r == 0 && cr->pause && atomic_load(&cr->calls) == 1) {
            atomic_store(&cr->paused, 1);
            while (!atomic_load(&cr->resume))
                usleep(5000);
        }
        if (st == DDTS_OK && cr->check_exact) {
            float e = expected_mean(cr->n_shares, start);
            for (size_t i = 0; i < N_WEIGHTS; i++)
                if (w[i] != e) {
                    snprintf(cr->failure, sizeof cr->failure,
                             "share %u round %d: weight %zu = %.9g, expected %.9g", job->shard, r,
                             i, w[i], e);
                    atomic_fetch_add(&cr->failures, 1);
                    break;
                }
        }
    }
    if (st == DDTS_OK) {
        char *h = ddts_path_join(job->result_dir, "history.csv");
        char *plots = ddts_path_join(job->result_dir, "plots");
        char *p = ddts_path_join(plots, "loss.png");
        char line[64];
        snprintf(line, sizeof line, "share,%u\nw0,%.6f\n", job->shard, w[0]);
        (void)!ddts_mkdir_p(plots, NULL);
        st = ddts_write_file_atomic(h, line, strlen(line), err);
        if (st == DDTS_OK)
            st = ddts_write_file_atomic(p, "PNG", 3, err);
        ddts_free(h);
        ddts_free(plots);
        ddts_free(p);
        atomic_fetch_add(&cr->trained, 1);
    }
    ddts_free(w);
    return st;
#undef CHECK
}

static void count_progress(void *ud, const char *what, uint64_t done, uint64_t total)
{
    struct client_run *cr = ud;
    if (what != NULL && done <= total)
        atomic_fetch_add(&cr->progress_calls, 1);
}

static void *client_main(void *arg)
{
    struct client_run *cr = arg;
    cr->st = ddts_client_run(&cr->cfg, &cr->err);
    return NULL;
}

static void client_start(struct client_run *cr, struct server_run *sr, struct ddts_passphrase *pw,
                         const char *name, const char *workdir)
{
    memset(cr, 0, sizeof *cr);
    cr->workdir = workdir ? ddts_strdup(workdir) : join2(sr->dir, name);
    cr->rounds = 2;
    cr->n_shares = sr->cfg.n_clients;
    cr->logger = sr->logger;
    cr->cfg = (struct ddts_client_config){
        .host = "127.0.0.1",
        .port = (uint16_t)atomic_load(&sr->port),
        .passphrase = pw,
        .workdir = cr->workdir,
        .name = name,
        .logger = &cr->logger,
        .train = fake_train,
        .userdata = cr,
        .progress = count_progress,
        .connect_timeout_s = 5,
        .io_timeout_s = 5,
    };
}

static void client_go(struct client_run *cr)
{
    assert_int_equal(pthread_create(&cr->thread, NULL, client_main, cr), 0);
}

static void client_join(struct client_run *cr, enum ddts_status expect)
{
    pthread_join(cr->thread, NULL);
    if (cr->st != expect)
        fail_msg("client %s: %s (%s), expected %s", cr->cfg.name, ddts_status_str(cr->st),
                 cr->err.msg, ddts_status_str(expect));
    if (atomic_load(&cr->failures) != 0)
        fail_msg("client %s: %s", cr->cfg.name, cr->failure);
}

static void client_free(struct client_run *cr)
{
    ddts_free(cr->workdir);
}

static struct ddts_passphrase *pass(const char *s)
{
    struct ddts_passphrase *pw = NULL;
    assert_int_equal(ddts_passphrase_create(s, strlen(s), &pw, NULL), DDTS_OK);
    return pw;
}

static char *read_text(const char *a, const char *b, const char *c)
{
    char *ab = join2(a, b);
    char *p = join2(ab, c);
    char *text = NULL;
    size_t n;
    if (ddts_read_file(p, 1 << 20, &text, &n, NULL) != DDTS_OK)
        text = NULL;
    ddts_free(ab);
    ddts_free(p);
    return text;
}

/* ---- tests ---- */

static void test_happy_path(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = pass("open sesame");
    struct server_run sr;
    server_start(&sr, pw, 3, DDTS_SYNC_EPOCH, 3.0);
    struct client_run cr[3];
    static const char *names[] = {"alice", "bob", "carol"};
    for (int i = 0; i < 3; i++) {
        client_start(&cr[i], &sr, pw, names[i], NULL);
        cr[i].check_exact = 1;
        client_go(&cr[i]);
    }
    for (int i = 0; i < 3; i++)
        client_join(&cr[i], DDTS_OK);
    server_join(&sr, DDTS_OK);
    int trained = 0;
    for (int i = 0; i < 3; i++)
        trained += atomic_load(&cr[i].trained);
    assert_int_equal(trained, 3);
    /* Progress: model, shard file and results, for each client. */
    for (int i = 0; i < 3; i++)
        assert_true(atomic_load(&cr[i].progress_calls) >= 4);
    /* Results under WORKDIR/job1/clients/<name>/, receipts given. */
    char *jobdir = join2(sr.cfg.workdir, "job1");
    char *clients = join2(jobdir, "clients");
    for (int i = 0; i < 3; i++) {
        char *h = read_text(clients, names[i], "history.csv");
        char *p = read_text(clients, names[i], "plots/loss.png");
        if (h == NULL || p == NULL)
            fail_msg("results of %s missing; log:\n%s", names[i], sr.log.text);
        assert_non_null(strstr(h, "share,"));
        assert_string_equal(p, "PNG");
        ddts_free(h);
        ddts_free(p);
        char *cur = read_text(cr[i].workdir, ".", "current");
        assert_non_null(cur);
        assert_non_null(strstr(cur, "flags 7")); /* files, trained, receipt */
        ddts_free(cur);
    }
    /* The global weights after two rounds: mean(mean(0) + ...) computed independently. */
    char *gw = read_text(jobdir, "global", "weights.f32");
    assert_non_null(gw);
    float g;
    memcpy(&g, gw + 4 * 17, 4);
    float e = expected_mean(3, expected_mean(3, 0));
    assert_close(g, e, 1e-6);
    assert_int_equal(atomic_load(&sr.rounds_seen), 2);
    assert_close(sr.last_w0, e, 1e-6);
    ddts_free(gw);
    char *st = read_text(jobdir, ".", "state");
    assert_non_null(strstr(st, "round 2\n"));
    assert_int_equal(log_count(&sr.log, " done "), 0);
    ddts_free(st);
    assert_int_equal(log_count(&sr.log, "round 2 complete: 3 contributions, 60 samples"), 1);
    ddts_free(clients);
    ddts_free(jobdir);
    for (int i = 0; i < 3; i++)
        client_free(&cr[i]);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
}

static void test_wrong_passphrase_ban(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = pass("hunter2-good"), *bad = pass("xyzzy-bad");
    struct server_run sr;
    server_start(&sr, pw, 1, DDTS_SYNC_NONE, 3.0);
    struct client_run cr;
    for (int i = 0; i < 4; i++) {
        client_start(&cr, &sr, i < 3 ? bad : pw, "mallory", NULL);
        client_go(&cr);
        client_join(&cr, i < 3 ? DDTS_EAUTH : DDTS_EBANNED);
        client_free(&cr);
    }
    /* The ban is logged with the address; the 4th attempt was refused, not counted. */
    wait_log(&sr.log, "refused banned address 127.0.0.1", 1, 5);
    assert_int_equal(log_count(&sr.log, "address 127.0.0.1 banned"), 1);
    assert_int_equal(log_count(&sr.log, "handshake with 127.0.0.1 failed"), 3);
    /* The passphrase never reaches the log. */
    assert_int_equal(log_count(&sr.log, "hunter2"), 0);
    assert_int_equal(log_count(&sr.log, "xyzzy"), 0);
    atomic_store(&sr.stop, 1);
    server_join(&sr, DDTS_ECANCELED);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
    ddts_passphrase_destroy(bad);
}

static void test_duplicate_client(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = pass("pw");
    struct server_run sr;
    server_start(&sr, pw, 2, DDTS_SYNC_EPOCH, 3.0);
    struct client_run a, dup, b;
    client_start(&a, &sr, pw, "a", NULL);
    client_go(&a);
    wait_log(&sr.log, "client 'a' joined", 1, 5);
    /* Same work folder, hence same id, while `a` is connected. */
    client_start(&dup, &sr, pw, "a2", a.workdir);
    client_go(&dup);
    client_join(&dup, DDTS_EEXIST);
    client_start(&b, &sr, pw, "b", NULL);
    client_go(&b);
    client_join(&a, DDTS_OK);
    client_join(&b, DDTS_OK);
    server_join(&sr, DDTS_OK);
    assert_int_equal(atomic_load(&a.trained) + atomic_load(&b.trained), 2);
    client_free(&a);
    client_free(&dup);
    client_free(&b);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
}

/* A hand-driven client that takes a share, says READY, then goes silent or drops. */
struct rogue {
    uint16_t port;
    struct ddts_passphrase *pw;
    int drop; /* 1: close at once after READY; 0: stay silent until the server gives up */
    enum ddts_status st;
    double silent_s;
};

static void *rogue_main(void *arg)
{
    struct rogue *rg = arg;
    struct ddts_conn *c = NULL;
    rg->st = ddts_conn_connect("127.0.0.1", rg->port, 5, &c, NULL);
    if (rg->st == DDTS_OK)
        rg->st = ddts_conn_handshake(c, DDTS_ROLE_CLIENT, rg->pw, DDTS_OK, NULL);
    uint8_t m[128];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_put_u8(&w, DDTS_MSG_JOIN);
    ddts_wire_put_raw(&w, "rogue-id-0123456", 16);
    ddts_wire_put_str(&w, "rogue");
    ddts_wire_put_str(&w, "");
    ddts_wire_put_raw(&w, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    ddts_wire_put_u32(&w, 0);
    ddts_wire_put_u8(&w, 0);
    if (rg->st == DDTS_OK)
        rg->st = ddts_conn_send_w(c, &w, NULL);
    uint8_t type = 0;
    const uint8_t *p;
    size_t n;
    /* Skip JOB and its files. */
    while (rg->st == DDTS_OK && type != DDTS_MSG_FILES_DONE)
        rg->st = ddts_conn_recv(c, &type, &p, &n, NULL);
    if (rg->st == DDTS_OK)
        rg->st = ddts_conn_send(c, DDTS_MSG_READY, NULL, 0, NULL);
    if (rg->st == DDTS_OK && !rg->drop) {
        /* Silent: the server must give up on us (closing the connection). */
        ddts_conn_set_timeout(c, 30);
        double t0 = ddts_now();
        rg->st = ddts_conn_recv(c, &type, &p, &n, NULL);
        rg->silent_s = ddts_now() - t0;
    }
    ddts_conn_destroy(c);
    return NULL;
}

static void run_lost_client(int drop)
{
    struct ddts_passphrase *pw = pass("pw");
    struct server_run sr;
    server_start(&sr, pw, 3, DDTS_SYNC_EPOCH, 1.0);
    struct rogue rg = {.port = (uint16_t)atomic_load(&sr.port), .pw = pw, .drop = drop};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, rogue_main, &rg), 0);
    wait_log(&sr.log, "client 'rogue' joined", 1, 5);
    struct client_run a, b;
    client_start(&a, &sr, pw, "a", NULL);
    client_start(&b, &sr, pw, "b", NULL);
    client_go(&a);
    client_go(&b);
    pthread_join(t, NULL);
    client_join(&a, DDTS_OK);
    client_join(&b, DDTS_OK);
    server_join(&sr, DDTS_OK);
    /* Three shares trained by the two honest clients: the rogue's share was reassigned. */
    assert_int_equal(atomic_load(&a.trained) + atomic_load(&b.trained), 3);
    assert_int_equal(log_count(&sr.log, "reassigned from 'rogue'"), 1);
    if (!drop) {
        assert_int_equal(log_count(&sr.log, "marked lost"), 1);
        /* Given up after about the client timeout (1 s), not the I/O timeout. */
        if (!(rg.silent_s < 4.0))
            fail_msg("silent client held for %.2f s", rg.silent_s);
    }
    assert_int_equal(log_count(&sr.log, "every share's results are received"), 1);
    client_free(&a);
    client_free(&b);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
}

static void test_silent_client(void **state)
{
    (void)state;
    run_lost_client(0);
}

static void test_dropped_client(void **state)
{
    (void)state;
    run_lost_client(1);
}

/* ---- restart ---- */

static atomic_int release_b;

static enum ddts_status blocking_train(void *ud, const struct ddts_client_job *job,
                                       struct ddts_client_sync *sync, struct ddts_error *err)
{
    while (!atomic_load(&release_b))
        usleep(10000);
    return fake_train(ud, job, sync, err);
}

static void test_server_restart(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = pass("pw");
    struct server_run sr;
    server_start(&sr, pw, 2, DDTS_SYNC_NONE, 3.0);
    uint16_t port = (uint16_t)atomic_load(&sr.port);
    struct client_run a, b;
    atomic_store(&release_b, 0);
    client_start(&a, &sr, pw, "a", NULL);
    a.cfg.one_share = 1;
    client_start(&b, &sr, pw, "b", NULL);
    b.cfg.train = blocking_train;
    b.cfg.retries = 100;
    b.cfg.retry_s = 0.1;
    client_go(&a);
    client_go(&b);
    client_join(&a, DDTS_OK);
    /* Stop the server while b trains, then let b finish: it cannot report. */
    atomic_store(&sr.stop, 1);
    server_join(&sr, DDTS_ECANCELED);
    atomic_store(&release_b, 1);
    /* A new server on the same work folder and port resumes the job. */
    char *jobdir = join2(sr.cfg.workdir, "job1");
    char *st = read_text(jobdir, ".", "state");
    assert_non_null(strstr(st, " done "));
    ddts_free(st);
    sr.cfg.any_port = 0;
    sr.cfg.port = port;
    atomic_store(&sr.stop, 0);
    atomic_store(&sr.port, 0);
    assert_int_equal(pthread_create(&sr.thread, NULL, server_main, &sr), 0);
    client_join(&b, DDTS_OK);
    server_join(&sr, DDTS_OK);
    assert_int_equal(log_count(&sr.log, "resuming job 'job1': 1 of 2 shares done"), 1);
    /* b trained once: its work folder said "trained" when it reconnected. */
    assert_int_equal(atomic_load(&a.trained), 1);
    assert_int_equal(atomic_load(&b.trained), 1);
    assert_int_equal(atomic_load(&b.calls), 1);
    assert_int_equal(log_count(&sr.log, "marked lost"), 0);
    char *clients = join2(jobdir, "clients");
    char *ha = read_text(clients, "a", "history.csv"), *hb = read_text(clients, "b", "history.csv");
    assert_non_null(ha);
    assert_non_null(hb);
    ddts_free(ha);
    ddts_free(hb);
    ddts_free(clients);
    ddts_free(jobdir);
    client_free(&a);
    client_free(&b);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
}

static void test_64_clients(void **state)
{
    (void)state;
    enum { N = 64 };
    struct ddts_passphrase *pw = pass("many");
    struct server_run sr;
    server_start(&sr, pw, N, DDTS_SYNC_EPOCH, 10.0);
    struct client_run *cr = ddts_calloc(N, sizeof *cr);
    char names[N][16];
    for (int i = 0; i < N; i++) {
        snprintf(names[i], sizeof names[i], "c%02d", i);
        client_start(&cr[i], &sr, pw, names[i], NULL);
        cr[i].check_exact = 1;
        cr[i].cfg.io_timeout_s = 20;
        client_go(&cr[i]);
    }
    int trained = 0;
    for (int i = 0; i < N; i++) {
        client_join(&cr[i], DDTS_OK);
        trained += atomic_load(&cr[i].trained);
        client_free(&cr[i]);
    }
    server_join(&sr, DDTS_OK);
    assert_int_equal(trained, N);
    assert_int_equal(log_count(&sr.log, "round 2 complete: 64 contributions"), 1);
    ddts_free(cr);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
}

/* Raw TCP to the server: returns the fd. */
static int raw_connect(uint16_t port)
{
    struct ddts_conn *c = NULL;
    assert_int_equal(ddts_conn_connect("127.0.0.1", port, 5, &c, NULL), DDTS_OK);
    int fd = dup(ddts_conn_fd(c));
    ddts_conn_destroy(c);
    return fd;
}

/* Waits until the server closes fd (reads return 0 or fail); returns seconds waited. */
static double wait_closed(int fd)
{
    double t0 = ddts_now();
    char buf[256];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof buf, 0);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
            break;
        if (r < 0)
            usleep(1000);
        if (ddts_now() - t0 > 20)
            break;
    }
    close(fd);
    return ddts_now() - t0;
}

static void test_hostile_peers(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = pass("pw");
    struct server_run sr;
    server_start(&sr, pw, 1, DDTS_SYNC_EPOCH, 3.0);
    uint16_t port = (uint16_t)atomic_load(&sr.port);
    /* Garbage before authentication: an HTTP request (two failures: below the ban). */
    int fd = raw_connect(port);
    const char http[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(send(fd, http, sizeof http - 1, MSG_NOSIGNAL), (ssize_t)(sizeof http - 1));
    assert_true(wait_closed(fd) < 5);
    /* An oversized length before authentication. */
    fd = raw_connect(port);
    uint8_t hdr[4];
    ddts_wire_frame_header_encode(hdr, 0x7fffffffu);
    assert_int_equal(send(fd, hdr, 4, MSG_NOSIGNAL), 4);
    assert_true(wait_closed(fd) < 5);
    /* Authenticated, then a JOIN with a hostile name: an ERROR, then the connection closes. */
    struct ddts_conn *c = NULL;
    assert_int_equal(ddts_conn_connect("127.0.0.1", port, 5, &c, NULL), DDTS_OK);
    assert_int_equal(ddts_conn_handshake(c, DDTS_ROLE_CLIENT, pw, DDTS_OK, NULL), DDTS_OK);
    uint8_t m[128];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_put_u8(&w, DDTS_MSG_JOIN);
    ddts_wire_put_raw(&w, "hostile-id-01234", 16);
    ddts_wire_put_str(&w, "../../etc");
    ddts_wire_put_str(&w, "");
    ddts_wire_put_raw(&w, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0", 16);
    ddts_wire_put_u32(&w, 0);
    ddts_wire_put_u8(&w, 0);
    assert_int_equal(ddts_conn_send_w(c, &w, NULL), DDTS_OK);
    uint8_t type;
    const uint8_t *p;
    size_t n;
    struct ddts_error err;
    assert_int_equal(ddts_conn_recv(c, &type, &p, &n, &err), DDTS_EINVAL);
    assert_non_null(strstr(err.msg, "name"));
    ddts_conn_destroy(c);
    /* Authenticated, then an oversized frame: closed. */
    assert_int_equal(ddts_conn_connect("127.0.0.1", port, 5, &c, NULL), DDTS_OK);
    assert_int_equal(ddts_conn_handshake(c, DDTS_ROLE_CLIENT, pw, DDTS_OK, NULL), DDTS_OK);
    fd = dup(ddts_conn_fd(c));
    ddts_conn_destroy(c);
    ddts_wire_frame_header_encode(hdr, DDTS_MAX_FRAME + 1000);
    assert_int_equal(send(fd, hdr, 4, MSG_NOSIGNAL), 4);
    assert_true(wait_closed(fd) < 5);
    /* The server still serves an honest client to the end of the job. */
    struct client_run a;
    client_start(&a, &sr, pw, "honest", NULL);
    client_go(&a);
    client_join(&a, DDTS_OK);
    server_join(&sr, DDTS_OK);
    assert_int_equal(atomic_load(&a.trained), 1);
    assert_int_equal(log_count(&sr.log, "frame of 2147483647 bytes (max 1024)"), 1);
    client_free(&a);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
}

static void test_no_data_sent(void **state)
{
    (void)state;
    /* --data client|keras: the server sends settings only; results may be empty. */
    struct ddts_passphrase *pw = pass("pw");
    struct server_run sr;
    server_start(&sr, pw, 2, DDTS_SYNC_NONE, 3.0);
    atomic_store(&sr.stop, 1);
    server_join(&sr, DDTS_ECANCELED);
    ddts_free((char *)sr.cfg.model_path);
    ddts_free((char *)sr.cfg.shards_dir);
    sr.cfg.model_path = NULL;
    sr.cfg.shards_dir = NULL;
    atomic_store(&sr.stop, 0);
    atomic_store(&sr.port, 0);
    assert_int_equal(pthread_create(&sr.thread, NULL, server_main, &sr), 0);
    while (atomic_load(&sr.port) == 0)
        usleep(5000);
    struct client_run a, b;
    client_start(&a, &sr, pw, "a", NULL);
    client_start(&b, &sr, pw, "b", NULL);
    a.no_files = b.no_files = 1;
    client_go(&a);
    client_go(&b);
    client_join(&a, DDTS_OK);
    client_join(&b, DDTS_OK);
    server_join(&sr, DDTS_OK);
    assert_int_equal(atomic_load(&a.trained) + atomic_load(&b.trained), 2);
    assert_int_equal(log_count(&sr.log, ": 0 result files (0 bytes) received"), 2);
    client_free(&a);
    client_free(&b);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
}

/* ---- a TCP proxy that can cut its connections, for a dropped-and-back client ---- */

struct proxy {
    struct ddts_listener *l;
    uint16_t target;
    atomic_int generation; /* cut: connections of older generations close */
    atomic_int stop;
    pthread_t thread;
};

struct pipe_pair {
    struct proxy *px;
    int a, b, gen;
};

static void *pipe_main(void *arg)
{
    struct pipe_pair *pp = arg;
    char buf[65536];
    for (;;) {
        if (atomic_load(&pp->px->generation) != pp->gen || atomic_load(&pp->px->stop))
            break;
        struct pollfd fds[2] = {{.fd = pp->a, .events = POLLIN}, {.fd = pp->b, .events = POLLIN}};
        if (poll(fds, 2, 20) <= 0)
            continue;
        int stop = 0;
        for (int i = 0; i < 2 && !stop; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = recv(fds[i].fd, buf, sizeof buf, 0);
            if (r < 0 && (errno == EAGAIN || errno == EINTR))
                continue;
            if (r <= 0) {
                stop = 1;
                break;
            }
            int out = i == 0 ? pp->b : pp->a;
            for (ssize_t off = 0; off < r;) {
                ssize_t w = send(out, buf + off, (size_t)(r - off), MSG_NOSIGNAL);
                if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
                    usleep(100);
                    continue;
                }
                if (w <= 0) {
                    stop = 1;
                    break;
                }
                off += w;
            }
        }
        if (stop)
            break;
    }
    close(pp->a);
    close(pp->b);
    ddts_free(pp);
    return NULL;
}

static void *proxy_main(void *arg)
{
    struct proxy *px = arg;
    while (!atomic_load(&px->stop)) {
        struct ddts_conn *in = NULL, *out = NULL;
        if (ddts_listener_accept(px->l, 0.05, &in, NULL) != DDTS_OK)
            continue;
        if (ddts_conn_connect("127.0.0.1", px->target, 5, &out, NULL) != DDTS_OK) {
            ddts_conn_destroy(in);
            continue;
        }
        struct pipe_pair *pp = ddts_calloc(1, sizeof *pp);
        pp->px = px;
        pp->a = dup(ddts_conn_fd(in));
        pp->b = dup(ddts_conn_fd(out));
        pp->gen = atomic_load(&px->generation);
        ddts_conn_destroy(in);
        ddts_conn_destroy(out);
        pthread_t t;
        pthread_create(&t, NULL, pipe_main, pp);
        pthread_detach(t);
    }
    return NULL;
}

static void test_dropped_and_back(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = pass("pw");
    struct server_run sr;
    server_start(&sr, pw, 2, DDTS_SYNC_EPOCH, 3.0);
    struct proxy px = {.target = (uint16_t)atomic_load(&sr.port)};
    assert_int_equal(ddts_listener_open("127.0.0.1", 0, &px.l, NULL), DDTS_OK);
    assert_int_equal(pthread_create(&px.thread, NULL, proxy_main, &px), 0);
    struct client_run a, b;
    client_start(&a, &sr, pw, "a", NULL);
    client_start(&b, &sr, pw, "b", NULL);
    a.cfg.port = ddts_listener_port(px.l); /* a goes through the proxy */
    a.cfg.retries = 100;
    a.cfg.retry_s = 0.05;
    a.rounds = b.rounds = 3;
    a.pause = 1;
    client_go(&a);
    client_go(&b);
    double end = ddts_now() + 10;
    while (!atomic_load(&a.paused) && ddts_now() < end)
        usleep(5000);
    assert_true(atomic_load(&a.paused));
    atomic_fetch_add(&px.generation, 1); /* cut a's connection between two rounds */
    usleep(100000);
    atomic_store(&a.resume, 1);
    client_join(&a, DDTS_OK);
    client_join(&b, DDTS_OK);
    server_join(&sr, DDTS_OK);
    atomic_store(&px.stop, 1);
    pthread_join(px.thread, NULL);
    ddts_listener_close(px.l);
    /* a came back, got its own share without downloading it again, and trained it. */
    assert_int_equal(log_count(&sr.log, "client 'a' joined"), 2);
    assert_int_equal(log_count(&sr.log, "-> client 'a' (it has the files)"), 1);
    assert_int_equal(log_count(&sr.log, "reassigned"), 0);
    assert_int_equal(atomic_load(&a.calls), 2);
    assert_int_equal(atomic_load(&a.trained) + atomic_load(&b.trained), 2);
    client_free(&a);
    client_free(&b);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
}

static void test_bad_state_file(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = pass("pw");
    char *dir = test_tmpdir();
    char *jobdir = join2(dir, "job1");
    char *path = join2(jobdir, "state");
    assert_int_equal(ddts_mkdir_p(jobdir, NULL), DDTS_OK);
    static const struct {
        const char *text;
        enum ddts_status st;
        const char *msg;
    } cases[] = {
        {"hello\n", DDTS_EFORMAT, "not a ddts server state file"},
        {"ddts-server-state 1\nn_shards 5\n", DDTS_EINVAL, "5 shares"},
        {"ddts-server-state 1\nshard 9 done - - 0\n", DDTS_EFORMAT, "out of range"},
        {"ddts-server-state 1\njob_id xyz\n", DDTS_EFORMAT, "bad job id"},
        {"ddts-server-state 1\n%%%\n", DDTS_EFORMAT, "unreadable line"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_text(path, cases[i].text);
        struct ddts_server_config cfg = {.host = "127.0.0.1",
                                         .any_port = 1,
                                         .passphrase = pw,
                                         .n_clients = 2,
                                         .workdir = dir,
                                         .job = "job1"};
        struct ddts_error err;
        enum ddts_status st = ddts_server_run(&cfg, &err);
        if (st != cases[i].st || strstr(err.msg, cases[i].msg) == NULL)
            fail_msg("state '%s': %s (%s), expected %s (%s)", cases[i].text, ddts_status_str(st),
                     err.msg, ddts_status_str(cases[i].st), cases[i].msg);
    }
    unlink(path);
    rmdir(jobdir);
    char *g = join2(jobdir, "global");
    rmdir(g);
    rmdir(jobdir);
    rmdir(dir);
    ddts_free(g);
    ddts_free(path);
    ddts_free(jobdir);
    ddts_free(dir);
    ddts_passphrase_destroy(pw);
}

static void test_ban_expires(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = pass("good-pw"), *bad = pass("bad-pw");
    struct server_run sr;
    server_prepare(&sr, pw, 1, DDTS_SYNC_NONE, 3.0);
    sr.cfg.ban_s = 0.5;
    server_go(&sr);
    struct client_run cr;
    for (int i = 0; i < 3; i++) {
        client_start(&cr, &sr, bad, "x", NULL);
        client_go(&cr);
        client_join(&cr, DDTS_EAUTH);
        client_free(&cr);
    }
    client_start(&cr, &sr, pw, "x", NULL);
    client_go(&cr);
    client_join(&cr, DDTS_EBANNED);
    client_free(&cr);
    usleep(700000);
    /* The ban is over: the right passphrase gets in and the job completes. */
    client_start(&cr, &sr, pw, "x", NULL);
    client_go(&cr);
    client_join(&cr, DDTS_OK);
    client_free(&cr);
    server_join(&sr, DDTS_OK);
    assert_int_equal(log_count(&sr.log, "banned for 0.5 s"), 1);
    assert_int_equal(log_count(&sr.log, "address 127.0.0.1 banned for"), 1);
    server_free(&sr);
    ddts_passphrase_destroy(pw);
    ddts_passphrase_destroy(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path),       cmocka_unit_test(test_wrong_passphrase_ban),
        cmocka_unit_test(test_duplicate_client), cmocka_unit_test(test_silent_client),
        cmocka_unit_test(test_dropped_client),   cmocka_unit_test(test_server_restart),
        cmocka_unit_test(test_64_clients),       cmocka_unit_test(test_hostile_peers),
        cmocka_unit_test(test_no_data_sent),     cmocka_unit_test(test_dropped_and_back),
        cmocka_unit_test(test_bad_state_file),   cmocka_unit_test(test_ban_expires),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
