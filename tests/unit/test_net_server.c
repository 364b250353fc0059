/*
 * Server and clients in one process (threads) over loopback, with a fake
 * train callback: weights = start + (share + 1), trained on 10 * (share + 1)
 * samples, so each round's weighted mean is known exactly.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
        fprintf(stderr, "%s: %s\n", ddts_log_level_str(level), msg);
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

/* Starts a server for `n` clients with a model, settings and one shard folder per client. */
static void server_start(struct server_run *sr, struct ddts_passphrase *pw, size_t n,
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
    };
    /* Port 0 picks a free port: ddts_server_run reports it through on_listening. */
    sr->cfg.port = 0;
    assert_int_equal(pthread_create(&sr->thread, NULL, server_main, sr), 0);
    double end = ddts_now() + 10;
    while (atomic_load(&sr->port) == 0 && ddts_now() < end)
        usleep(5000);
    assert_true(atomic_load(&sr->port) != 0);
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
    atomic_int trained;  /* shares trained */
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
    for (int r = 0; r < cr->rounds && st == DDTS_OK; r++) {
        float start = w[0];
        for (size_t i = 0; i < N_WEIGHTS; i++)
            w[i] += (float)(job->shard + 1);
        st = ddts_client_sync_exchange(sync, w, N_WEIGHTS, 10 * (job->shard + 1), err);
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
    wait_log(&sr.log, "address 127.0.0.1 banned", 1, 5);
    assert_int_equal(log_count(&sr.log, "handshake with 127.0.0.1 failed"), 3);
    /* The passphrase never reaches the log. */
    assert_null(strstr(sr.log.text, "hunter2"));
    assert_null(strstr(sr.log.text, "xyzzy"));
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_happy_path),       cmocka_unit_test(test_wrong_passphrase_ban),
        cmocka_unit_test(test_duplicate_client), cmocka_unit_test(test_silent_client),
        cmocka_unit_test(test_dropped_client),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
