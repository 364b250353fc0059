/* Unit tests of src/dash: the [ADDR:]PORT parser, the result-path rule, and
 * the dashboard over real HTTP on 127.0.0.1 (the live feed as the JSON API
 * returns it, hostile text escaped, rings bounded, the token, links refused,
 * every allocation failure of creation, idle connections that cannot lock
 * the page out). */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dash/dash_int.h"
#include "test.h"

/* GET `path` from 127.0.0.1:port; returns the status, the body in *body (ddts_free). */
static int http_get(uint16_t port, const char *path, char **body)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    char req[2048];
    int n =
        snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = ddts_malloc(cap);
    for (;;) {
        if (len + 4096 > cap) {
            cap *= 2;
            buf = ddts_realloc(buf, cap);
        }
        ssize_t r = read(fd, buf + len, cap - len - 1);
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    buf[len] = '\0';
    int status = 0;
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d", &status), 1);
    char *start = strstr(buf, "\r\n\r\n");
    assert_non_null(start);
    *body = ddts_strdup(start + 4);
    ddts_free(buf);
    return status;
}

static json_t *get_json(uint16_t port, const char *path)
{
    char *body = NULL;
    assert_int_equal(http_get(port, path, &body), 200);
    json_error_t e;
    json_t *j = json_loads(body, 0, &e);
    if (j == NULL)
        fail_msg("%s: not JSON (%s): %.200s", path, e.text, body);
    ddts_free(body);
    return j;
}

static void test_parse_listen(void **state)
{
    (void)state;
    char addr[64];
    uint16_t port = 1;
    assert_int_equal(ddts_dash_parse_listen("7880", addr, sizeof addr, &port, NULL), DDTS_OK);
    assert_string_equal(addr, "127.0.0.1");
    assert_int_equal(port, 7880);
    assert_int_equal(ddts_dash_parse_listen("0.0.0.0:80", addr, sizeof addr, &port, NULL), DDTS_OK);
    assert_string_equal(addr, "0.0.0.0");
    assert_int_equal(port, 80);
    assert_int_equal(ddts_dash_parse_listen("[::1]:0", addr, sizeof addr, &port, NULL), DDTS_OK);
    assert_string_equal(addr, "::1");
    assert_int_equal(port, 0);
    assert_int_equal(ddts_dash_parse_listen("65535", addr, sizeof addr, &port, NULL), DDTS_OK);
    assert_int_equal(port, 65535);
    static const char *const bad[] = {"",         "abc", "65536", "123456", "::1:80",      ":80",
                                      "1.2.3.4:", "-1",  "80a",   "[]:80",  "1.2.3.4:+80", NULL};
    struct ddts_error err;
    for (size_t i = 0; bad[i] != NULL; i++) {
        port = 7;
        assert_int_equal(ddts_dash_parse_listen(bad[i], addr, sizeof addr, &port, &err),
                         DDTS_EINVAL);
        assert_int_equal(port, 0);
        assert_non_null(strstr(err.msg, "listen address"));
    }
    /* An address longer than the caller's buffer. */
    assert_int_equal(ddts_dash_parse_listen("100.100.100.100:1", addr, 8, &port, &err),
                     DDTS_EINVAL);
}

static void test_check_path(void **state)
{
    (void)state;
    static const char *const good[] = {"report.png",
                                       "summary.json",
                                       "summary.txt",
                                       "events.log",
                                       "global/model.h5",
                                       "global/model.keras",
                                       "global/history.csv",
                                       "clients/alpha/history.csv",
                                       "clients/a-b.c_d/fold_3/history.csv",
                                       NULL};
    for (size_t i = 0; good[i] != NULL; i++)
        assert_int_equal(ddts__dash_check_path(good[i]), 0);
    static const char *const bad[] = {"",
                                      "state",
                                      "x.png",
                                      "/etc/passwd",
                                      "../summary.json",
                                      "clients/../summary.json",
                                      "clients/./a/x.csv",
                                      "clients//x.csv",
                                      "clients/a/",
                                      "clients/a",
                                      "report.png/",
                                      "shards/shard_0/x.npy",
                                      "shards/shard_0/y.json",
                                      "global/weights.f32",
                                      "global/round_000001.f32",
                                      "global/a/b.csv",
                                      "clients/a b/x.csv",
                                      "clients/a/x.csv\n",
                                      "clients/a/b/c/d.csv",
                                      "clients/%2e%2e/x.csv",
                                      "clients/a/x.CSV",
                                      NULL};
    for (size_t i = 0; bad[i] != NULL; i++)
        if (ddts__dash_check_path(bad[i]) == 0)
            fail_msg("accepted '%s'", bad[i]);
    char longp[DDTS_DASH_MAX_URL_BYTES + 16];
    memset(longp, 'a', sizeof longp);
    memcpy(longp, "clients/", 8);
    memcpy(longp + sizeof longp - 5, ".csv", 5);
    assert_int_not_equal(ddts__dash_check_path(longp), 0);
}

struct fixture {
    char *dir;
    struct ddts_dash *d;
    uint16_t port;
};

static void start(struct fixture *f, const char *address)
{
    f->dir = test_tmpdir();
    assert_non_null(f->dir);
    struct ddts_dash_config cfg = {.address = address,
                                   .workdir = f->dir,
                                   .live_job = "job1",
                                   .settings_json = "{\"epochs\": 2, \"name\": \"job1\"}"};
    struct ddts_error err;
    assert_int_equal(ddts_dash_create(&cfg, &f->d, &err), DDTS_OK);
    f->port = ddts_dash_port(f->d);
    assert_true(f->port > 0);
}

static void stop(struct fixture *f)
{
    ddts_dash_destroy(f->d);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    ddts_free(f->dir);
}

static void report(struct ddts_dash *d, const uint8_t *id, const char *name, uint32_t epoch,
                   double loss, int end)
{
    struct ddts_server_client c = {
        .session = 1,
        .id = id,
        .name = name,
        .address = "127.0.0.1",
        .state = DDTS_CLIENT_TRAINING,
        .share = 0,
        .has_progress = 1,
        .progress = {.epoch = epoch,
                     .epochs = 2,
                     .done = end ? 100 : 50,
                     .total = 100,
                     .loss = loss,
                     .accuracy = 0.5,
                     .samples_per_s = 1000,
                     .elapsed_s = 0.1,
                     .flags = end ? DDTS_PROGRESS_EPOCH_END : 0},
        .progress_at = ddts_now(),
    };
    ddts_dash_on_client(d, &c);
}

/* The live feed, as the API gives it back. */
static void test_live_api(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, NULL);
    assert_null(strstr(ddts_dash_url(f.d), "token"));
    uint8_t id1[DDTS_CLIENT_ID_BYTES] = {1}, id2[DDTS_CLIENT_ID_BYTES] = {2};
    report(f.d, id1, "alpha", 1, 0.9, 0);
    report(f.d, id1, "alpha", 1, 0.8, 1);
    report(f.d, id1, "alpha", 1, 0.8, 1); /* repeated while syncing: one point */
    report(f.d, id1, "alpha", 2, 0.6, 0);
    report(f.d, id1, "alpha", 2, 0.5, 1);
    /* The library takes any name it is given; the page must cope. */
    report(f.d, id2, "<img src=x onerror=\"alert(1)\">\\", 1, NAN, 0);
    const char hostile[] = "client 'x': <script>alert(\"1\")</script> \x01\x1f\xc3\xa9";
    ddts_dash_on_log(f.d, DDTS_LOG_WARN, hostile);
    ddts_dash_on_log(f.d, DDTS_LOG_INFO, "round 3 complete: 2 contributions, 10 samples");
    ddts_dash_on_log(f.d, DDTS_LOG_WARN, "name '\xff\xfe<b>' refused");
    for (uint64_t r = 1; r <= 3; r++)
        ddts_dash_on_round(f.d, r);

    json_t *c = get_json(f.port, "/api/clients");
    json_t *list = json_object_get(c, "clients");
    assert_int_equal(json_array_size(list), 2);
    json_t *a = json_array_get(list, 0);
    assert_string_equal(json_string_value(json_object_get(a, "name")), "alpha");
    assert_string_equal(json_string_value(json_object_get(a, "state")), "training");
    assert_int_equal(json_integer_value(json_object_get(a, "epoch")), 2);
    assert_int_equal(json_integer_value(json_object_get(a, "epochs")), 2);
    assert_close(json_real_value(json_object_get(a, "loss")), 0.5, 1e-12);
    assert_close(json_real_value(json_object_get(a, "progress")), 1.0, 1e-12);
    assert_true(json_is_null(json_object_get(a, "fold")));
    json_t *b = json_array_get(list, 1);
    assert_string_equal(json_string_value(json_object_get(b, "name")),
                        "<img src=x onerror=\"alert(1)\">\\");
    assert_true(json_is_null(json_object_get(b, "loss"))); /* NaN is null, not invalid JSON */
    assert_true(json_is_null(json_object_get(b, "error")));
    json_decref(c);

    /* A failed client's own words, as it sent them. */
    uint8_t id3[DDTS_CLIENT_ID_BYTES] = {3};
    struct ddts_server_client failed = {.session = 3,
                                        .id = id3,
                                        .name = "gamma",
                                        .address = "127.0.0.1",
                                        .state = DDTS_CLIENT_FAILED,
                                        .share = 1,
                                        .error = "data: <b>x.npy</b> \xff is not a npy file"};
    ddts_dash_on_client(f.d, &failed);
    c = get_json(f.port, "/api/clients");
    json_t *g = json_array_get(json_object_get(c, "clients"), 2);
    assert_string_equal(json_string_value(json_object_get(g, "state")), "failed");
    assert_string_equal(json_string_value(json_object_get(g, "error")),
                        "data: <b>x.npy</b> ? is not a npy file");
    json_decref(c);

    json_t *h = get_json(f.port, "/api/history?client=alpha");
    assert_string_equal(json_string_value(json_object_get(h, "source")), "live");
    json_t *cols = json_object_get(json_array_get(json_object_get(h, "folds"), 0), "columns");
    json_t *ep = json_object_get(cols, "epoch"), *loss = json_object_get(cols, "loss");
    assert_int_equal(json_array_size(ep), 2);
    assert_int_equal(json_integer_value(json_array_get(ep, 0)), 1);
    assert_int_equal(json_integer_value(json_array_get(ep, 1)), 2);
    assert_close(json_real_value(json_array_get(loss, 0)), 0.8, 1e-12);
    assert_close(json_real_value(json_array_get(loss, 1)), 0.5, 1e-12);
    /* Before any EPOCH row (a protocol-2 client): PROGRESS's loss and accuracy only. */
    assert_null(json_object_get(cols, "val_loss"));
    assert_close(json_real_value(json_array_get(json_object_get(cols, "accuracy"), 1)), 0.5, 1e-12);
    json_decref(h);
    /* The global model: no curve until an epoch is evaluated. */
    h = get_json(f.port, "/api/history?client=@global");
    assert_string_equal(json_string_value(json_object_get(h, "source")), "none");
    json_decref(h);

    /* EPOCH rows: every column of history.csv, validation included, per epoch. */
    struct ddts_server_client ca = {.id = id1, .name = "alpha", .state = DDTS_CLIENT_TRAINING};
    struct ddts_wire_epoch row = {.epoch = 1, .epochs = 2, .n = 3};
    snprintf(row.names[0], sizeof row.names[0], "loss");
    snprintf(row.names[1], sizeof row.names[1], "val_loss");
    snprintf(row.names[2], sizeof row.names[2], "val_accuracy");
    row.values[0] = 0.8;
    row.values[1] = 0.85;
    row.values[2] = NAN;
    ddts_dash_on_epoch(f.d, &ca, &row);
    row.epoch = 2;
    row.n = 2; /* a row without val_accuracy, val_loss before loss: columns keep their order */
    snprintf(row.names[0], sizeof row.names[0], "val_loss");
    snprintf(row.names[1], sizeof row.names[1], "loss");
    row.values[0] = 0.55;
    row.values[1] = 0.5;
    ddts_dash_on_epoch(f.d, &ca, &row);
    /* Epoch 3's row before its PROGRESS (a reconnect can reorder them): a point of its own. */
    row.epoch = 3;
    row.epochs = 3;
    row.n = 1;
    row.values[0] = 0.45;
    ddts_dash_on_epoch(f.d, &ca, &row);
    h = get_json(f.port, "/api/history?client=alpha");
    assert_string_equal(json_string_value(json_object_get(h, "source")), "live");
    cols = json_object_get(json_array_get(json_object_get(h, "folds"), 0), "columns");
    /* The rows' columns only (PROGRESS's accuracy is one of them, under its own name). */
    const char *want_keys[] = {"epoch", "loss", "val_loss", "val_accuracy"};
    assert_int_equal(json_object_size(cols), 4);
    for (size_t i = 0; i < 4; i++)
        if (json_object_get(cols, want_keys[i]) == NULL)
            fail_msg("live columns lack %s", want_keys[i]);
    ep = json_object_get(cols, "epoch");
    assert_int_equal(json_array_size(ep), 3);
    assert_int_equal(json_integer_value(json_array_get(ep, 2)), 3);
    json_t *vl = json_object_get(cols, "val_loss"), *va = json_object_get(cols, "val_accuracy");
    assert_close(json_real_value(json_array_get(vl, 0)), 0.85, 1e-12);
    assert_close(json_real_value(json_array_get(vl, 1)), 0.55, 1e-12);
    assert_close(json_real_value(json_array_get(vl, 2)), 0.45, 1e-12);
    assert_true(json_is_null(json_array_get(va, 0))); /* NaN */
    assert_true(json_is_null(json_array_get(va, 1))); /* not in that row */
    loss = json_object_get(cols, "loss");
    assert_close(json_real_value(json_array_get(loss, 1)), 0.5, 1e-12);
    assert_true(json_is_null(json_array_get(loss, 2))); /* row 3 has val_loss only */
    json_decref(h);

    /* The global model's live curve: global/history.csv's columns. */
    ddts_dash_on_global(f.d, 1, 1.25, 0.5);
    ddts_dash_on_global(f.d, 2, 0.75, NAN);
    h = get_json(f.port, "/api/history?client=@global");
    assert_string_equal(json_string_value(json_object_get(h, "source")), "live");
    cols = json_object_get(json_array_get(json_object_get(h, "folds"), 0), "columns");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(cols, "epoch"), 1)), 2);
    assert_close(json_real_value(json_array_get(json_object_get(cols, "val_loss"), 0)), 1.25,
                 1e-12);
    assert_close(json_real_value(json_array_get(json_object_get(cols, "val_loss"), 1)), 0.75,
                 1e-12);
    assert_close(json_real_value(json_array_get(json_object_get(cols, "val_accuracy"), 0)), 0.5,
                 1e-12);
    assert_true(json_is_null(json_array_get(json_object_get(cols, "val_accuracy"), 1)));
    json_decref(h);
    h = get_json(f.port, "/api/history?client=nobody");
    assert_string_equal(json_string_value(json_object_get(h, "source")), "none");
    json_decref(h);
    char *body = NULL;
    assert_int_equal(http_get(f.port, "/api/history?client=%3Cimg%3E", &body), 400);
    ddts_free(body);

    /* The raw answer escapes quotes, control and non-ASCII characters. */
    assert_int_equal(http_get(f.port, "/api/job", &body), 200);
    for (const char *p = body; *p; p++)
        assert_true((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f);
    assert_non_null(strstr(body, "<script>alert(\\\"1\\\")</script> \\u0001\\u001F\\u00E9"));
    json_t *j = json_loads(body, 0, NULL);
    ddts_free(body);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "name")), "job1");
    assert_true(json_is_true(json_object_get(j, "live")));
    assert_string_equal(json_string_value(json_object_get(j, "status")), "running");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "settings"), "epochs")),
                     2);
    json_t *rounds = json_object_get(j, "rounds");
    assert_int_equal(json_integer_value(json_object_get(rounds, "count")), 3);
    assert_int_equal(json_array_size(json_object_get(rounds, "recent")), 3);
    json_t *events = json_object_get(j, "events");
    assert_int_equal(json_array_size(events), 2); /* the round line is not an event */
    json_t *e = json_array_get(events, 0);
    assert_string_equal(json_string_value(json_object_get(e, "msg")), hostile);
    assert_string_equal(json_string_value(json_object_get(e, "level")), "warn");
    /* Bytes that are not UTF-8 (a refused name, echoed) are kept as '?'. */
    e = json_array_get(events, 1);
    assert_string_equal(json_string_value(json_object_get(e, "msg")), "name '?"
                                                                      "?<b>' refused");
    json_decref(j);

    ddts_dash_set_status(f.d, "finished");
    j = get_json(f.port, "/api/jobs");
    json_t *first = json_array_get(json_object_get(j, "jobs"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "status")), "finished");
    json_decref(j);
    stop(&f);
}

/* The rings keep the newest entries and stay bounded; a long curve keeps one point an
 * epoch. */
static void test_rings(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, NULL);
    for (unsigned i = 0; i < DDTS_DASH_MAX_EVENTS + 500; i++) {
        char msg[32];
        snprintf(msg, sizeof msg, "event %u", i);
        ddts_dash_on_log(f.d, DDTS_LOG_INFO, msg);
    }
    for (uint64_t r = 1; r <= DDTS_DASH_MAX_ROUNDS + 10; r++)
        ddts_dash_on_round(f.d, r);
    json_t *j = get_json(f.port, "/api/job");
    json_t *ev = json_object_get(j, "events");
    assert_int_equal(json_array_size(ev), DDTS_DASH_MAX_EVENTS);
    assert_string_equal(json_string_value(json_object_get(json_array_get(ev, 0), "msg")),
                        "event 500");
    char last[32];
    snprintf(last, sizeof last, "event %u", DDTS_DASH_MAX_EVENTS + 499);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(ev, DDTS_DASH_MAX_EVENTS - 1), "msg")),
        last);
    json_t *rounds = json_object_get(j, "rounds");
    assert_int_equal(json_integer_value(json_object_get(rounds, "count")),
                     DDTS_DASH_MAX_ROUNDS + 10);
    json_t *recent = json_object_get(rounds, "recent");
    assert_int_equal(json_array_size(recent), DDTS_DASH_MAX_ROUNDS);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(recent, 0), "round")), 11);
    json_decref(j);
    /* A client's curve of 3000 epochs, then the same share trained again (its epochs
     * repeat): one point per epoch, in the order they came, with the newest figures. */
    uint8_t id[DDTS_CLIENT_ID_BYTES] = {9};
    for (int pass = 1; pass <= 2; pass++)
        for (uint32_t e = 1; e <= 3000; e++)
            report(f.d, id, "long", e, pass * 1e-3 * e, 1);
    j = get_json(f.port, "/api/history?client=long");
    json_t *cols = json_object_get(json_array_get(json_object_get(j, "folds"), 0), "columns");
    json_t *ep = json_object_get(cols, "epoch"), *loss = json_object_get(cols, "loss");
    assert_int_equal(json_array_size(ep), 3000);
    assert_int_equal(json_array_size(loss), 3000);
    for (size_t i = 0; i < 3000; i++) {
        assert_int_equal(json_integer_value(json_array_get(ep, i)), (json_int_t)i + 1);
        assert_close(json_real_value(json_array_get(loss, i)), 2e-3 * (double)(i + 1), 1e-12);
    }
    json_decref(j);
    stop(&f);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* Result files: served from the job folder only, never through a link. */
static void test_files(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, NULL);
    char path[1024], secret[1024];
    snprintf(path, sizeof path, "%s/job1/global", f.dir);
    assert_int_equal(ddts_mkdir_p(path, NULL), DDTS_OK);
    snprintf(path, sizeof path, "%s/job1/clients/alpha", f.dir);
    assert_int_equal(ddts_mkdir_p(path, NULL), DDTS_OK);
    snprintf(path, sizeof path, "%s/job1/report.png", f.dir);
    write_file(path, "PNG bytes");
    snprintf(path, sizeof path, "%s/job1/clients/alpha/history.csv", f.dir);
    write_file(path, "epoch,loss\n0,0.5\n1,0.25\n");
    snprintf(secret, sizeof secret, "%s/secret.txt", f.dir);
    write_file(secret, "secret");
    snprintf(path, sizeof path, "%s/job1/global/model.h5", f.dir);
    assert_int_equal(symlink(secret, path), 0);
    snprintf(path, sizeof path, "%s/job1/clients/linked", f.dir);
    assert_int_equal(symlink(f.dir, path), 0);

    char *body = NULL;
    assert_int_equal(http_get(f.port, "/files/report.png", &body), 200);
    assert_string_equal(body, "PNG bytes");
    ddts_free(body);
    static const char *const refused[] = {
        "/files/global/model.h5",
        "/files/clients/linked/secret.txt",
        "/files/../secret.txt",
        "/files/clients/alpha/../../../secret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/summary.json",
        "/files/clients/alpha/history.csv?job=../x",
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        int st = http_get(f.port, refused[i], &body);
        if (st != 404 || strstr(body, "secret") == body)
            fail_msg("%s: HTTP %d %.80s", refused[i], st, body);
        ddts_free(body);
    }
    /* The listing shows the real files only; history from disk is 1-based. */
    json_t *j = get_json(f.port, "/api/job");
    json_t *files = json_object_get(j, "files");
    assert_int_equal(json_array_size(files), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(files, 0), "path")),
                        "clients/alpha/history.csv");
    assert_string_equal(json_string_value(json_object_get(json_array_get(files, 1), "path")),
                        "report.png");
    json_decref(j);
    j = get_json(f.port, "/api/history?client=alpha");
    assert_string_equal(json_string_value(json_object_get(j, "source")), "history.csv");
    json_t *cols = json_object_get(json_array_get(json_object_get(j, "folds"), 0), "columns");
    assert_int_equal(json_integer_value(json_array_get(json_object_get(cols, "epoch"), 1)), 2);
    assert_close(json_real_value(json_array_get(json_object_get(cols, "loss"), 1)), 0.25, 0);
    json_decref(j);
    stop(&f);
}

/* `ddts dashboard`: the jobs of a work folder, finished or interrupted. */
static void test_jobs_on_disk(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char path[1024];
    static const char *const folders[] = {"done", "cut", "failed", "notajob"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, folders[i]);
        assert_int_equal(ddts_mkdir_p(path, NULL), DDTS_OK);
    }
    snprintf(path, sizeof path, "%s/done/summary.json", dir);
    write_file(path, "{\"status\": \"ok\", \"settings\": {\"epochs\": 3}}");
    snprintf(path, sizeof path, "%s/cut/state", dir);
    write_file(path, "ddts-server-state 1\njob_id 00\nn_shards 2\nstarted 1\nround 17\n");
    snprintf(path, sizeof path, "%s/failed/summary.json", dir);
    write_file(path, "{\"status\": \"failed\"}");
    char target[1024];
    snprintf(target, sizeof target, "%s/done", dir);
    snprintf(path, sizeof path, "%s/linked", dir);
    assert_int_equal(symlink(target, path), 0);
    struct ddts_dash_config cfg = {.workdir = dir};
    struct ddts_dash *d = NULL;
    assert_int_equal(ddts_dash_create(&cfg, &d, NULL), DDTS_OK);
    uint16_t port = ddts_dash_port(d);
    json_t *j = get_json(port, "/api/jobs");
    json_t *jobs = json_object_get(j, "jobs");
    assert_int_equal(json_array_size(jobs), 3); /* not the empty folder, not the link */
    for (size_t i = 0; i < 3; i++) {
        json_t *e = json_array_get(jobs, i);
        const char *name = json_string_value(json_object_get(e, "name"));
        const char *st = json_string_value(json_object_get(e, "status"));
        assert_true(json_is_false(json_object_get(e, "live")));
        if (strcmp(name, "done") == 0)
            assert_string_equal(st, "finished");
        else if (strcmp(name, "cut") == 0)
            assert_string_equal(st, "interrupted");
        else if (strcmp(name, "failed") == 0)
            assert_string_equal(st, "failed");
        else
            fail_msg("listed '%s'", name);
    }
    json_decref(j);
    j = get_json(port, "/api/job?job=cut");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "rounds"), "count")),
                     17);
    assert_true(json_is_null(json_object_get(j, "settings")));
    json_decref(j);
    j = get_json(port, "/api/job?job=done");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "settings"), "epochs")),
                     3);
    json_decref(j);
    char *body = NULL;
    assert_int_equal(http_get(port, "/api/job?job=linked", &body), 404);
    ddts_free(body);
    assert_int_equal(http_get(port, "/api/job?job=notajob", &body), 404);
    ddts_free(body);
    ddts_dash_destroy(d);
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    assert_int_equal(system(path), 0);
    ddts_free(dir);
}

/* Off loopback, job data needs the token; the page's code does not. */
static void test_token(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, "0.0.0.0");
    const char *url = ddts_dash_url(f.d);
    const char *t = strstr(url, "?token=");
    assert_non_null(t);
    t += 7;
    assert_int_equal(strlen(t), 32);
    char path[128], *body = NULL;
    static const char *const guarded[] = {"/", "/api/jobs", "/api/job", "/api/clients"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(http_get(f.port, guarded[i], &body), 403);
        ddts_free(body);
        snprintf(path, sizeof path, "%s?token=%.31s", guarded[i], t);
        assert_int_equal(http_get(f.port, path, &body), 403);
        ddts_free(body);
        snprintf(path, sizeof path, "%s?token=%s", guarded[i], t);
        assert_int_equal(http_get(f.port, path, &body), 200);
        ddts_free(body);
    }
    assert_int_equal(http_get(f.port, "/assets/app.js", &body), 200);
    assert_null(strstr(body, "innerHTML"));
    ddts_free(body);
    stop(&f);

    /* A second dashboard draws a different token. */
    struct fixture g;
    start(&g, "0.0.0.0");
    start(&f, "0.0.0.0");
    assert_string_not_equal(strstr(ddts_dash_url(f.d), "?token="),
                            strstr(ddts_dash_url(g.d), "?token="));
    stop(&f);
    stop(&g);
}

/* A TCP connection from `src` (a 127.0.0.0/8 address) to 127.0.0.1:port. */
static int connect_from(const char *src, uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, src, &sa.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return fd;
}

/* 1 when the server has closed fd (EOF or reset) within `seconds`. */
static int closed_within(int fd, double seconds)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, (int)(seconds * 1000)) != 1)
        return 0;
    char c;
    return read(fd, &c, 1) <= 0;
}

/* Idle connections cannot lock the page out: at most DDTS_DASH_MAX_PER_IP from
 * one address are kept (the rest closed at once), a silent one is closed after
 * DDTS_DASH_REQUEST_TIMEOUT_S, and one that made its request may then be
 * idle for longer (DDTS_DASH_TIMEOUT_S: a slow reader of a large file). */
static void test_idle_connections(void **state)
{
    (void)state;
    struct fixture f;
    start(&f, "127.0.0.1");
    enum { N = DDTS_DASH_MAX_PER_IP + 40 };
    int fds[N];
    double t0 = ddts_now();
    for (int i = 0; i < N; i++)
        fds[i] = connect_from("127.0.0.2", f.port);
    /* Within the request timeout only the per-address limit closes any: wait
     * for those (the server's thread may be slow on a loaded machine). */
    struct pollfd p[N];
    for (int i = 0; i < N; i++)
        p[i] = (struct pollfd){.fd = fds[i], .events = POLLIN};
    int closed = 0;
    while ((closed = poll(p, N, 0)) < N - (int)DDTS_DASH_MAX_PER_IP &&
           ddts_now() - t0 < DDTS_DASH_REQUEST_TIMEOUT_S - 1.0)
        usleep(50 * 1000);
    assert_int_equal(closed, N - (int)DDTS_DASH_MAX_PER_IP);
    char *body = NULL;
    assert_int_equal(http_get(f.port, "/api/jobs", &body), 200); /* from 127.0.0.1 */
    ddts_free(body);
    for (int i = 0; i < N; i++)
        close(fds[i]);

    /* A silent connection is closed after the request timeout; a slow reader
     * of a large download (its request made) may stall longer than that. */
    char path[1024];
    snprintf(path, sizeof path, "%s/job1/global", f.dir);
    assert_int_equal(ddts_mkdir_p(path, NULL), DDTS_OK);
    snprintf(path, sizeof path, "%s/job1/global/model.h5", f.dir);
    int file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const off_t size = (off_t)64 << 20; /* far beyond the socket buffers */
    assert_true(file >= 0 && ftruncate(file, size) == 0);
    close(file);
    int idle = connect_from("127.0.0.1", f.port), slow = connect_from("127.0.0.1", f.port);
    static const char req[] = "GET /files/global/model.h5 HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_int_equal(write(slow, req, sizeof req - 1), (ssize_t)(sizeof req - 1));
    char *buf = ddts_malloc(1 << 16);
    ssize_t got = read(slow, buf, 1024);
    assert_true(got > 0);
    t0 = ddts_now();
    assert_true(closed_within(idle, DDTS_DASH_REQUEST_TIMEOUT_S + 3.0));
    assert_true(ddts_now() - t0 > DDTS_DASH_REQUEST_TIMEOUT_S - 1.0);
    sleep(2); /* the slow reader has stalled past the request timeout */
    long long total = got;
    for (ssize_t r; (r = read(slow, buf, 1 << 16)) > 0;)
        total += r;
    assert_true(total > (long long)size);
    assert_true(total < (long long)size + 1024); /* the headers */
    ddts_free(buf);
    close(slow);
    close(idle);
    stop(&f);
}

static void test_bad_config(void **state)
{
    (void)state;
    struct ddts_dash *d = (struct ddts_dash *)1;
    struct ddts_error err;
    struct ddts_dash_config cfg = {.address = "localhost", .workdir = "/tmp"};
    assert_int_equal(ddts_dash_create(&cfg, &d, &err), DDTS_EINVAL);
    assert_null(d);
    assert_non_null(strstr(err.msg, "numeric"));
    cfg.address = NULL;
    cfg.live_job = "../x";
    assert_int_equal(ddts_dash_create(&cfg, &d, &err), DDTS_EINVAL);
    cfg.live_job = NULL;
    cfg.workdir = NULL;
    assert_int_equal(ddts_dash_create(&cfg, &d, &err), DDTS_EINVAL);
    ddts_dash_destroy(NULL);
}

/* Every allocation of creation may fail: DDTS_ENOMEM, nothing leaked (ASan). */
static void test_enomem(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    struct ddts_dash_config cfg = {.workdir = dir, .live_job = "j", .settings_json = "{}"};
    int ok = 0;
    for (long k = 0; k < 100 && !ok; k++) {
        struct ddts_dash *d = NULL;
        ddts_alloc_fail_after(k);
        enum ddts_status st = ddts_dash_create(&cfg, &d, NULL);
        ddts_alloc_fail_after(-1);
        if (st == DDTS_OK) {
            ok = 1;
            assert_true(k > 0);
        } else {
            assert_int_equal(st, DDTS_ENOMEM);
            assert_null(d);
        }
        ddts_dash_destroy(d);
    }
    assert_true(ok);
    rmdir(dir);
    ddts_free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_listen), cmocka_unit_test(test_check_path),
        cmocka_unit_test(test_live_api),     cmocka_unit_test(test_rings),
        cmocka_unit_test(test_files),        cmocka_unit_test(test_jobs_on_disk),
        cmocka_unit_test(test_token),        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_enomem),       cmocka_unit_test(test_idle_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
