/*
 * The server's live view: the PROGRESS and EPOCH messages (encode, decode,
 * hostile encodings refused), the ETA, the table's exact text, and a server
 * and a client in one process whose progress reaches on_client, throttled,
 * and whose epoch rows reach on_epoch.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "net/conn.h"
#include "net/netutil.h"
#include "test.h"

static struct ddts_wire_progress sample(void)
{
    return (struct ddts_wire_progress){
        .fold = 2,
        .n_folds = 5,
        .epoch = 3,
        .epochs = 10,
        .done = 450,
        .total = 1000,
        .loss = 0.41234,
        .accuracy = 0.85,
        .samples_per_s = 1234.5,
        .elapsed_s = 0.36,
        .flags = 0,
    };
}

/* Encodes p; returns the message length (the type byte first). */
static size_t encode(const struct ddts_wire_progress *p, uint8_t *buf, size_t cap)
{
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, buf, cap);
    ddts_wire_progress_encode(&w, p);
    assert_int_equal(w.status, DDTS_OK);
    return w.len;
}

static void test_round_trip(void **state)
{
    (void)state;
    uint8_t buf[128];
    struct ddts_wire_progress in = sample(), out;
    size_t n = encode(&in, buf, sizeof buf);
    assert_int_equal(n, DDTS_WIRE_PROGRESS_BYTES);
    assert_int_equal(buf[0], DDTS_MSG_PROGRESS);
    assert_string_equal(ddts_msg_str(buf[0]), "PROGRESS");
    /* Little-endian fields at their documented offsets: fold at 1, done at 17. */
    assert_int_equal(buf[1], 2);
    assert_int_equal(buf[17] | buf[18] << 8, 450);
    assert_int_equal(ddts_wire_progress_decode(buf + 1, n - 1, &out, NULL), DDTS_OK);
    assert_int_equal(out.fold, 2);
    assert_int_equal(out.n_folds, 5);
    assert_int_equal(out.epoch, 3);
    assert_int_equal(out.epochs, 10);
    assert_int_equal(out.done, 450);
    assert_int_equal(out.total, 1000);
    assert_true(out.loss == in.loss && out.accuracy == in.accuracy);
    assert_true(out.samples_per_s == in.samples_per_s && out.elapsed_s == in.elapsed_s);
    assert_int_equal(out.flags, 0);

    /* No folds, no accuracy (NaN), no loss yet (NaN), an epoch end. */
    in = (struct ddts_wire_progress){
        0, 0, 10, 10, 1000, 1000, NAN, NAN, 0, 0, DDTS_PROGRESS_EPOCH_END};
    n = encode(&in, buf, sizeof buf);
    assert_int_equal(ddts_wire_progress_decode(buf + 1, n - 1, &out, NULL), DDTS_OK);
    assert_true(isnan(out.loss) && isnan(out.accuracy));
    assert_int_equal(out.flags, DDTS_PROGRESS_EPOCH_END);
    assert_int_equal(out.fold, 0);

    /* A writer too small keeps a sticky ELIMIT. */
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, buf, DDTS_WIRE_PROGRESS_BYTES - 1);
    ddts_wire_progress_encode(&w, &in);
    assert_int_equal(w.status, DDTS_ELIMIT);
}

/* A hostile variant of the sample: what it changes, and what the error names. */
struct hostile {
    const char *what;
    void (*mutate)(struct ddts_wire_progress *p);
    const char *needle;
};

#define MUT(name, body)                                                                            \
    static void name(struct ddts_wire_progress *p)                                                 \
    {                                                                                              \
        body;                                                                                      \
    }
MUT(fold_zero, p->fold = 0)
MUT(fold_past, p->fold = 6)
MUT(folds_huge, p->n_folds = p->fold = 4000000000u)
MUT(fold_no_folds, p->n_folds = 0)
MUT(epoch_zero, p->epoch = 0)
MUT(epoch_past, p->epoch = 11)
MUT(epochs_huge, p->epochs = p->epoch = DDTS_MAX_PROGRESS_EPOCHS + 1)
MUT(done_past, p->done = 1001)
MUT(total_huge, p->total = p->done = DDTS_MAX_PROGRESS_SAMPLES + 1)
MUT(total_max, p->total = p->done = UINT64_MAX)
MUT(loss_inf, p->loss = INFINITY)
MUT(acc_neg, p->accuracy = -0.5)
MUT(acc_big, p->accuracy = 1.5)
MUT(acc_inf, p->accuracy = INFINITY)
MUT(rate_neg, p->samples_per_s = -1)
MUT(rate_nan, p->samples_per_s = NAN)
MUT(rate_huge, p->samples_per_s = 1e300)
MUT(elapsed_inf, p->elapsed_s = INFINITY)
MUT(elapsed_neg, p->elapsed_s = -3)
MUT(flags_unknown, p->flags = 0x82)

static void test_hostile(void **state)
{
    (void)state;
    static const struct hostile cases[] = {
        {"fold 0 of 5", fold_zero, "fold 0 of 5"},
        {"fold 6 of 5", fold_past, "fold 6 of 5"},
        {"4e9 folds", folds_huge, "fold"},
        {"fold without folds", fold_no_folds, "fold 2 of 0"},
        {"epoch 0", epoch_zero, "epoch 0 of 10"},
        {"epoch 11 of 10", epoch_past, "epoch 11 of 10"},
        {"too many epochs", epochs_huge, "epoch"},
        {"done > total", done_past, "1001 of 1000"},
        {"2^40 + 1 samples", total_huge, "samples"},
        {"2^64 - 1 samples", total_max, "samples"},
        {"infinite loss", loss_inf, "loss"},
        {"accuracy -0.5", acc_neg, "accuracy"},
        {"accuracy 1.5", acc_big, "accuracy"},
        {"accuracy inf", acc_inf, "accuracy"},
        {"negative rate", rate_neg, "samples/s"},
        {"NaN rate", rate_nan, "samples/s"},
        {"1e300 samples/s", rate_huge, "samples/s"},
        {"infinite elapsed", elapsed_inf, "elapsed"},
        {"negative elapsed", elapsed_neg, "elapsed"},
        {"unknown flags", flags_unknown, "flags 0x82"},
    };
    uint8_t buf[128];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct ddts_wire_progress p = sample(), out;
        cases[i].mutate(&p);
        size_t n = encode(&p, buf, sizeof buf);
        memset(&out, 0xff, sizeof out);
        struct ddts_error err;
        ddts_error_clear(&err);
        enum ddts_status st = ddts_wire_progress_decode(buf + 1, n - 1, &out, &err);
        if (st != DDTS_EPROTO || strstr(err.msg, cases[i].needle) == NULL)
            fail_msg("%s: status %s, message '%s' (expected EPROTO naming '%s')", cases[i].what,
                     ddts_status_str(st), err.msg, cases[i].needle);
        /* Nothing of a refused message reaches the caller. */
        assert_int_equal(out.epochs, 0);
        assert_int_equal(out.total, 0);
    }
    /* Every truncation, and a trailing byte. */
    struct ddts_wire_progress p = sample(), out;
    size_t n = encode(&p, buf, sizeof buf);
    for (size_t len = 0; len < n - 1; len++) {
        struct ddts_error err;
        ddts_error_clear(&err);
        if (ddts_wire_progress_decode(buf + 1, len, &out, &err) != DDTS_EPROTO ||
            strstr(err.msg, "truncated") == NULL)
            fail_msg("a PROGRESS of %zu payload bytes: '%s'", len, err.msg);
    }
    buf[n] = 0;
    struct ddts_error err;
    ddts_error_clear(&err);
    assert_int_equal(ddts_wire_progress_decode(buf + 1, n, &out, &err), DDTS_EPROTO);
    assert_non_null(strstr(err.msg, "trailing"));
}

/* ---- EPOCH: a finished epoch's history row ---- */

static struct ddts_wire_epoch epoch_sample(void)
{
    struct ddts_wire_epoch e = {.fold = 0, .n_folds = 0, .epoch = 3, .epochs = 6, .n = 4};
    static const char *const names[] = {"loss", "accuracy", "val_loss", "val_accuracy"};
    static const double values[] = {0.5123, 0.75, 0.6125, 0.6875};
    for (size_t i = 0; i < 4; i++) {
        snprintf(e.names[i], sizeof e.names[i], "%s", names[i]);
        e.values[i] = values[i];
    }
    return e;
}

/* Raw EPOCH payload bytes (no type byte), written field by field: what a hostile peer sends. */
struct raw {
    uint8_t buf[4096];
    struct ddts_wire_writer w;
};
static void raw_head(struct raw *r, uint32_t fold, uint32_t n_folds, uint32_t epoch,
                     uint32_t epochs, uint16_t n)
{
    ddts_wire_writer_init(&r->w, r->buf, sizeof r->buf);
    ddts_wire_put_u32(&r->w, fold);
    ddts_wire_put_u32(&r->w, n_folds);
    ddts_wire_put_u32(&r->w, epoch);
    ddts_wire_put_u32(&r->w, epochs);
    ddts_wire_put_u16(&r->w, n);
}
static void raw_fig(struct raw *r, const void *name, size_t len, double v)
{
    ddts_wire_put_bytes(&r->w, name, len);
    ddts_wire_put_f64(&r->w, v);
}

/* Decodes r; fails the test unless it is EPROTO naming `needle`, with nothing left in out. */
static void refused(struct raw *r, const char *what, const char *needle)
{
    assert_int_equal(r->w.status, DDTS_OK);
    struct ddts_wire_epoch out;
    memset(&out, 0xab, sizeof out);
    struct ddts_error err;
    ddts_error_clear(&err);
    enum ddts_status st = ddts_wire_epoch_decode(r->buf, r->w.len, &out, &err);
    if (st != DDTS_EPROTO || strstr(err.msg, needle) == NULL)
        fail_msg("EPOCH %s: status %s, message '%s' (expected EPROTO naming '%s')", what,
                 ddts_status_str(st), err.msg, needle);
    assert_int_equal(out.n, 0);
    assert_int_equal(out.epoch, 0);
    assert_int_equal(out.names[0][0], 0);
}

static void test_epoch_round_trip(void **state)
{
    (void)state;
    uint8_t buf[DDTS_WIRE_EPOCH_MAX_BYTES];
    struct ddts_wire_writer w;
    struct ddts_wire_epoch in = epoch_sample(), out;
    ddts_wire_writer_init(&w, buf, sizeof buf);
    ddts_wire_epoch_encode(&w, &in);
    assert_int_equal(w.status, DDTS_OK);
    /* 1 + 4 x 4 + 2, then 4 + len + 8 per figure. */
    assert_int_equal(w.len, 19 + (4 + 4 + 8) + (4 + 8 + 8) + (4 + 8 + 8) + (4 + 12 + 8));
    assert_int_equal(buf[0], DDTS_MSG_EPOCH);
    assert_string_equal(ddts_msg_str(buf[0]), "EPOCH");
    assert_int_equal(buf[9], 3);  /* epoch at 9 */
    assert_int_equal(buf[17], 4); /* the count at 17 */
    assert_int_equal(ddts_wire_epoch_decode(buf + 1, w.len - 1, &out, NULL), DDTS_OK);
    assert_int_equal(out.n, 4);
    assert_int_equal(out.epoch, 3);
    assert_int_equal(out.epochs, 6);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(out.names[i], in.names[i]);
        assert_true(out.values[i] == in.values[i]);
    }
    /* The largest message fits its bound: 16 figures of 64-byte names, k-fold. */
    in = (struct ddts_wire_epoch){.fold = 1000,
                                  .n_folds = 1000,
                                  .epoch = 1000000,
                                  .epochs = 1000000,
                                  .n = DDTS_MAX_EPOCH_FIGURES};
    for (size_t i = 0; i < DDTS_MAX_EPOCH_FIGURES; i++) {
        memset(in.names[i], 'a' + (int)i, DDTS_MAX_EPOCH_NAME_BYTES);
        in.values[i] = i == 0 ? NAN : i == 1 ? -INFINITY : (double)i;
    }
    ddts_wire_writer_init(&w, buf, sizeof buf);
    ddts_wire_epoch_encode(&w, &in);
    assert_int_equal(w.status, DDTS_OK);
    assert_int_equal(w.len, DDTS_WIRE_EPOCH_MAX_BYTES);
    assert_int_equal(ddts_wire_epoch_decode(buf + 1, w.len - 1, &out, NULL), DDTS_OK);
    assert_int_equal(out.n, DDTS_MAX_EPOCH_FIGURES);
    /* Figures are not judged: NaN and infinities come through as sent. */
    assert_true(isnan(out.values[0]) && out.values[1] == -INFINITY && out.values[15] == 15);
    assert_int_equal(strlen(out.names[15]), DDTS_MAX_EPOCH_NAME_BYTES);
    /* No figure at all is a row too (a model without metrics has a loss, but the
     * protocol does not insist). */
    in = (struct ddts_wire_epoch){.epoch = 1, .epochs = 1};
    ddts_wire_writer_init(&w, buf, sizeof buf);
    ddts_wire_epoch_encode(&w, &in);
    assert_int_equal(ddts_wire_epoch_decode(buf + 1, w.len - 1, &out, NULL), DDTS_OK);
    assert_int_equal(out.n, 0);
    /* The encoder refuses a count the decoder would, and a buffer too small. */
    in.n = DDTS_MAX_EPOCH_FIGURES + 1;
    ddts_wire_writer_init(&w, buf, sizeof buf);
    ddts_wire_epoch_encode(&w, &in);
    assert_int_equal(w.status, DDTS_ELIMIT);
    in = epoch_sample();
    ddts_wire_writer_init(&w, buf, 40);
    ddts_wire_epoch_encode(&w, &in);
    assert_int_equal(w.status, DDTS_ELIMIT);
}

static void test_epoch_hostile(void **state)
{
    (void)state;
    struct raw r;
    char name65[65];
    memset(name65, 'x', sizeof name65);
    /* Counts: one beyond the limit, the u16 maximum (with nothing behind it). */
    raw_head(&r, 0, 0, 1, 2, DDTS_MAX_EPOCH_FIGURES + 1);
    for (unsigned i = 0; i < DDTS_MAX_EPOCH_FIGURES + 1; i++)
        raw_fig(&r, "a", 1, 1.0);
    refused(&r, "17 figures", "17 figures (at most 16)");
    raw_head(&r, 0, 0, 1, 2, 65535);
    refused(&r, "65535 figures", "65535 figures");
    /* Names: empty, 65 bytes, markup, a slash, a space, a NUL inside, non-ASCII, twice. */
    raw_head(&r, 0, 0, 1, 2, 1);
    raw_fig(&r, "", 0, 1.0);
    refused(&r, "empty name", "figure 1's name is empty");
    raw_head(&r, 0, 0, 1, 2, 1);
    raw_fig(&r, name65, sizeof name65, 1.0);
    refused(&r, "65-byte name", "exceeds its limit");
    raw_head(&r, 0, 0, 1, 2, 2);
    raw_fig(&r, "loss", 4, 1.0);
    raw_fig(&r, "<script>", 8, 1.0);
    refused(&r, "markup", "figure 2's name");
    static const char *const bad[] = {"val/loss", "val loss", "l\xc3\xa9oss", "a\"b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        raw_head(&r, 0, 0, 1, 2, 1);
        raw_fig(&r, bad[i], strlen(bad[i]), 1.0);
        refused(&r, bad[i], "[A-Za-z0-9._-]");
    }
    raw_head(&r, 0, 0, 1, 2, 1);
    raw_fig(&r, "lo\0ss", 5, 1.0);
    refused(&r, "NUL in a name", "truncated");
    raw_head(&r, 0, 0, 1, 2, 3);
    raw_fig(&r, "loss", 4, 1.0);
    raw_fig(&r, "val_loss", 8, 2.0);
    raw_fig(&r, "loss", 4, 3.0);
    refused(&r, "a name twice", "'loss' given twice");
    /* A name's length beyond the message (4 GiB), and beyond the limit. */
    raw_head(&r, 0, 0, 1, 2, 1);
    ddts_wire_put_u32(&r.w, UINT32_MAX);
    refused(&r, "4 GiB name", "exceeds its limit");
    /* Positions, as PROGRESS checks them. */
    raw_head(&r, 0, 0, 0, 2, 0);
    refused(&r, "epoch 0", "epoch 0 of 2");
    raw_head(&r, 0, 0, 3, 2, 0);
    refused(&r, "epoch 3 of 2", "epoch 3 of 2");
    raw_head(&r, 0, 0, 1, DDTS_MAX_PROGRESS_EPOCHS + 1, 0);
    refused(&r, "too many epochs", "epoch 1 of 1000001");
    raw_head(&r, 4, 3, 1, 2, 0);
    refused(&r, "fold 4 of 3", "fold 4 of 3");
    raw_head(&r, 1, 0, 1, 2, 0);
    refused(&r, "fold without folds", "fold 1 of 0");
    raw_head(&r, 1, DDTS_MAX_PROGRESS_FOLDS + 1, 1, 2, 0);
    refused(&r, "too many folds", "fold 1 of 1001");
    /* Every truncation of a good row, and a trailing byte. */
    uint8_t buf[DDTS_WIRE_EPOCH_MAX_BYTES + 1];
    struct ddts_wire_writer w;
    struct ddts_wire_epoch in = epoch_sample(), out;
    ddts_wire_writer_init(&w, buf, sizeof buf);
    ddts_wire_epoch_encode(&w, &in);
    for (size_t len = 0; len < w.len - 1; len++) {
        struct ddts_error err;
        ddts_error_clear(&err);
        if (ddts_wire_epoch_decode(buf + 1, len, &out, &err) != DDTS_EPROTO ||
            strstr(err.msg, "truncated") == NULL)
            fail_msg("an EPOCH of %zu payload bytes: '%s'", len, err.msg);
        assert_int_equal(out.n, 0);
    }
    buf[w.len] = 0;
    struct ddts_error err;
    ddts_error_clear(&err);
    assert_int_equal(ddts_wire_epoch_decode(buf + 1, w.len, &out, &err), DDTS_EPROTO);
    assert_non_null(strstr(err.msg, "trailing"));
}

static void test_eta(void **state)
{
    (void)state;
    struct ddts_server_client c = {.has_progress = 1, .progress = sample(), .progress_at = 100};
    /* Left: 550 of this epoch + 7 epochs x 1000 + 3 folds x 10 epochs x 1000 = 37550. */
    assert_close(ddts_server_client_eta(&c, 100), 37550 / 1234.5, 1e-12);
    /* It counts down between reports, never below 0. */
    assert_close(ddts_server_client_eta(&c, 110), 37550 / 1234.5 - 10, 1e-12);
    assert_true(ddts_server_client_eta(&c, 1e9) == 0);
    c.progress.n_folds = c.progress.fold = 0;
    assert_close(ddts_server_client_eta(&c, 100), 7550 / 1234.5, 1e-12);
    /* Unknown: no rate yet, no progress at all. */
    c.progress.samples_per_s = 0;
    assert_true(isnan(ddts_server_client_eta(&c, 100)));
    c.progress.samples_per_s = 10;
    c.has_progress = 0;
    assert_true(isnan(ddts_server_client_eta(&c, 100)));
    assert_true(isnan(ddts_server_client_eta(NULL, 100)));
    assert_string_equal(ddts_client_state_str(DDTS_CLIENT_UPLOADING), "uploading");
    assert_string_equal(ddts_client_state_str(DDTS_CLIENT_LOST), "lost");
    assert_string_equal(ddts_client_state_str((enum ddts_client_state)99), "?");
}

static void test_table(void **state)
{
    (void)state;
    struct ddts_client_row rows[2] = {
        {"alpha", "10.0.0.2", "training", 2, 5, 3, 10, 450, 1000, 0.41234, 0.85, 1234.4, 75},
        {"client-1a2b3c4d", "192.168.100.200", "waiting", 0, 0, 0, 0, 0, 0, NAN, NAN, NAN, NAN},
    };
    char buf[1024];
    size_t lines = 0;
    size_t n = ddts_client_table_format(buf, sizeof buf, rows, 2, &lines);
    const char *expect =
        "NAME       ADDRESS         STATE      FOLD  EPOCH PROG   LOSS   ACC SMP/S   ETA\n"
        "alpha      10.0.0.2        training    2/5   3/10  45% 0.4123 0.850  1234  1:15\n"
        "clie~b3c4d 192.168.100.200 waiting       -      -    -      -     -     -     -\n";
    assert_string_equal(buf, expect);
    assert_int_equal(n, strlen(expect));
    assert_int_equal(lines, 3);
    /* Every line fits an 80-column terminal without wrapping. */
    for (const char *p = buf; *p; p = strchr(p, '\n') + 1)
        assert_true(strchr(p, '\n') - p <= 79);
    /* snprintf-like: the length without a buffer, a cut buffer stays terminated. */
    assert_int_equal(ddts_client_table_format(NULL, 0, rows, 2, NULL), n);
    char small[40];
    assert_int_equal(ddts_client_table_format(small, sizeof small, rows, 2, NULL), n);
    assert_int_equal(strlen(small), sizeof small - 1);
    /* A wider terminal gives the names room; large figures, long durations. */
    rows[0] = (struct ddts_client_row){"alpha", "10.0.0.2", "syncing",  0,   0,     100, 100,
                                       7,       9,          123.456789, 1.0, 2.5e5, 4000};
    rows[1].state = "done";
    ddts_client_table_format_width(buf, sizeof buf, rows, 2, 100, &lines);
    assert_string_equal(
        buf, "NAME                           ADDRESS         STATE      FOLD  EPOCH PROG   LOSS   "
             "ACC SMP/S   ETA\n"
             "alpha                          10.0.0.2        syncing       - 100/100  77% 123.46 "
             "1.000  250k 1h06m\n"
             "client-1a2b3c4d                192.168.100.200 done          -      -    -      -   "
             "  -     -     -\n");
}

/* ---- protocol versions ---- */

struct handshake_side {
    struct ddts_conn *conn;
    const struct ddts_passphrase *pw;
    enum ddts_status st;
};

static void *server_handshake(void *arg)
{
    struct handshake_side *h = arg;
    h->st = ddts_conn_handshake(h->conn, DDTS_ROLE_SERVER, h->pw, DDTS_OK, NULL);
    return NULL;
}

/* Sends a HELLO_C of `version` to a server handshake; returns HELLO_S's version and status. */
static void hello_with(const struct ddts_passphrase *pw, uint16_t version, uint16_t *got_version,
                       uint8_t *got_status)
{
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
    struct handshake_side h = {.pw = pw};
    assert_int_equal(ddts_conn_from_fd(fds[0], &h.conn, NULL), DDTS_OK);
    ddts_conn_set_timeout(h.conn, 5);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, server_handshake, &h), 0);
    uint8_t msg[4 + 23] = {23,
                           0,
                           0,
                           0,
                           DDTS_MSG_HELLO_C,
                           'D',
                           'D',
                           'T',
                           'S',
                           (uint8_t)version,
                           (uint8_t)(version >> 8)};
    assert_int_equal(write(fds[1], msg, sizeof msg), (ssize_t)sizeof msg);
    /* HELLO_S: u32 length, type, magic, u16 version, u8 status, sid[16]. */
    uint8_t in[4 + 24];
    size_t got = 0;
    while (got < sizeof in) {
        ssize_t n = read(fds[1], in + got, sizeof in - got);
        assert_true(n > 0);
        got += (size_t)n;
    }
    assert_int_equal(in[4], DDTS_MSG_HELLO_S);
    *got_version = (uint16_t)(in[9] | in[10] << 8);
    *got_status = in[11];
    close(fds[1]);
    pthread_join(th, NULL);
    assert_int_not_equal(h.st, DDTS_OK); /* the fake client went away */
    ddts_conn_destroy(h.conn);
}

static void test_versions(void **state)
{
    (void)state;
    struct ddts_passphrase *pw = NULL;
    assert_int_equal(ddts_auth_init(NULL), DDTS_OK);
    assert_int_equal(ddts_passphrase_create("versions", 8, &pw, NULL), DDTS_OK);
    uint16_t v;
    uint8_t status;
    /* A version-1 client (before PROGRESS) is served, in its own version. */
    hello_with(pw, 1, &v, &status);
    assert_int_equal(status, 0);
    assert_int_equal(v, 1);
    /* A version-2 client (before EPOCH) too. */
    hello_with(pw, 2, &v, &status);
    assert_int_equal(status, 0);
    assert_int_equal(v, 2);
    assert_int_equal(DDTS_WIRE_VERSION, 3);
    hello_with(pw, DDTS_WIRE_VERSION, &v, &status);
    assert_int_equal(status, 0);
    assert_int_equal(v, DDTS_WIRE_VERSION);
    /* A newer client, or version 0, is refused, the answer naming ours. */
    hello_with(pw, DDTS_WIRE_VERSION + 1, &v, &status);
    assert_int_equal(status, DDTS_EUNSUPPORTED);
    assert_int_equal(v, DDTS_WIRE_VERSION);
    hello_with(pw, 0, &v, &status);
    assert_int_equal(status, DDTS_EUNSUPPORTED);
    ddts_passphrase_destroy(pw);
}

/* ---- a server and a client in one process ---- */

#define MAX_EVENTS 256

struct live_events {
    pthread_mutex_t mu;
    int n;
    enum ddts_client_state states[MAX_EVENTS];
    int has_progress[MAX_EVENTS];
    struct ddts_wire_progress progress[MAX_EVENTS];
    char name[64];
    atomic_int port;
    int n_epochs; /* on_epoch calls */
    struct ddts_wire_epoch epoch;
    enum ddts_client_state epoch_state;
    atomic_int stop; /* should_stop's answer */
};

static void on_listening(void *ud, uint16_t port)
{
    struct live_events *ev = ud;
    atomic_store(&ev->port, port);
}

static void on_client(void *ud, const struct ddts_server_client *c)
{
    struct live_events *ev = ud;
    pthread_mutex_lock(&ev->mu);
    if (ev->n < MAX_EVENTS) {
        ev->states[ev->n] = c->state;
        ev->has_progress[ev->n] = c->has_progress;
        ev->progress[ev->n] = c->progress;
        ev->n++;
    }
    snprintf(ev->name, sizeof ev->name, "%s", c->name);
    pthread_mutex_unlock(&ev->mu);
}

static void on_epoch(void *ud, const struct ddts_server_client *c, const struct ddts_wire_epoch *e)
{
    struct live_events *ev = ud;
    pthread_mutex_lock(&ev->mu);
    ev->n_epochs++;
    ev->epoch = *e;
    ev->epoch_state = c->state;
    pthread_mutex_unlock(&ev->mu);
}

struct server_thread {
    struct ddts_server_config cfg;
    enum ddts_status st;
    struct ddts_error err;
};

static void *server_main(void *arg)
{
    struct server_thread *s = arg;
    s->st = ddts_server_run(&s->cfg, &s->err);
    return NULL;
}

/* should_stop: the flag a test raises once it has what it needs. */
static int stop_when_told(void *ud)
{
    return atomic_load(&((struct live_events *)ud)->stop);
}

/* A 1-client server for job `job` in `work` on 127.0.0.1 (any port), run in
 * thread *th and reporting to *ev (cleared here); returns once it listens. */
static void serve_in_thread(struct server_thread *s, pthread_t *th, struct live_events *ev,
                            struct ddts_passphrase *pw, const char *work, const char *job)
{
    memset(ev, 0, sizeof *ev);
    pthread_mutex_init(&ev->mu, NULL);
    *s = (struct server_thread){
        .cfg = {.host = "127.0.0.1",
                .any_port = 1,
                .passphrase = pw,
                .n_clients = 1,
                .workdir = work,
                .job = job,
                .io_timeout_s = 5,
                .client_timeout_s = 10,
                .on_listening = on_listening,
                .on_client = on_client,
                .on_epoch = on_epoch,
                .should_stop = stop_when_told,
                .userdata = ev},
    };
    assert_int_equal(pthread_create(th, NULL, server_main, s), 0);
    double end = ddts_now() + 10;
    while (atomic_load(&ev->port) == 0 && ddts_now() < end)
        usleep(5000);
    assert_int_not_equal(atomic_load(&ev->port), 0);
}

/* Removes the test's folder `dir`. */
static void remove_dir(char *dir)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    ddts_free(dir);
}

/* Ten reports within a few milliseconds (one goes out), then an epoch end (always). */
static enum ddts_status progress_train(void *ud, const struct ddts_client_job *job,
                                       struct ddts_client_sync *sync, struct ddts_error *err)
{
    (void)ud;
    (void)job;
    struct ddts_wire_progress p = {0, 0, 1, 2, 0, 100, 0.9, NAN, 1000, 0.01, 0};
    for (int i = 0; i < 10; i++) {
        p.done = (uint64_t)(10 * (i + 1));
        enum ddts_status st = ddts_client_send_progress(sync, &p, err);
        if (st != DDTS_OK)
            return st;
    }
    /* Out-of-range figures are clamped, not refused by the server. */
    p = (struct ddts_wire_progress){
        0, 0, 1, 2, 150, 100, INFINITY, 2.0, -5, NAN, DDTS_PROGRESS_EPOCH_END | 0x40};
    enum ddts_status st = ddts_client_send_progress(sync, &p, err);
    if (st != DDTS_OK)
        return st;
    /* The epoch's row: a name the protocol refuses and a repeated one are left
     * out by the client, the epoch clamped, the rest arrives as sent. */
    struct ddts_wire_epoch e = {.epoch = 7, .epochs = 2, .n = 5};
    static const char *const names[] = {"loss", "val/loss", "val_loss", "loss", "val_accuracy"};
    for (size_t i = 0; i < 5; i++) {
        snprintf(e.names[i], sizeof e.names[i], "%s", names[i]);
        e.values[i] = 0.25 * (double)(i + 1);
    }
    e.values[4] = NAN;
    return ddts_client_send_epoch(sync, &e, err);
}

static void test_server_reports(void **state)
{
    (void)state;
    struct ddts_error err;
    struct ddts_passphrase *pw = NULL;
    assert_int_equal(ddts_passphrase_create("live view", 9, &pw, &err), DDTS_OK);
    char *dir = test_tmpdir();
    char *work = ddts_path_join(dir, "server");
    char *cwork = ddts_path_join(dir, "client");
    struct live_events ev;
    struct server_thread s;
    pthread_t th;
    serve_in_thread(&s, &th, &ev, pw, work, "live");
    struct ddts_client_config cc = {
        .host = "127.0.0.1",
        .port = (uint16_t)atomic_load(&ev.port),
        .passphrase = pw,
        .workdir = cwork,
        .name = "alpha",
        .train = progress_train,
        .io_timeout_s = 5,
    };
    assert_int_equal(ddts_client_run(&cc, &err), DDTS_OK);
    pthread_join(th, NULL);
    if (s.st != DDTS_OK)
        fail_msg("server: %s", s.err.msg);

    /* The client's life as on_client saw it, and exactly two PROGRESS reports. */
    static const enum ddts_client_state life[] = {
        DDTS_CLIENT_WAITING,  DDTS_CLIENT_SENDING,   DDTS_CLIENT_TRAINING, DDTS_CLIENT_TRAINING,
        DDTS_CLIENT_TRAINING, DDTS_CLIENT_UPLOADING, DDTS_CLIENT_DONE,     DDTS_CLIENT_DONE,
    };
    char seen[512] = "";
    for (int i = 0; i < ev.n; i++)
        snprintf(seen + strlen(seen), sizeof seen - strlen(seen), "%s%s",
                 ddts_client_state_str(ev.states[i]), ev.has_progress[i] ? "+p " : " ");
    if (ev.n != (int)(sizeof life / sizeof life[0]))
        fail_msg("%d events: %s", ev.n, seen);
    for (int i = 0; i < ev.n; i++)
        if (ev.states[i] != life[i])
            fail_msg("event %d: %s", i, seen);
    assert_string_equal(ev.name, "alpha");
    assert_false(ev.has_progress[2]);
    assert_true(ev.has_progress[3] && ev.has_progress[4]);
    /* The first report of the burst went out, the other nine were throttled. */
    assert_int_equal(ev.progress[3].done, 10);
    assert_int_equal(ev.progress[3].flags, 0);
    assert_true(ev.progress[3].loss == 0.9 && isnan(ev.progress[3].accuracy));
    /* The epoch end, clamped into what the decoder accepts. */
    const struct ddts_wire_progress *q = &ev.progress[4];
    assert_int_equal(q->flags, DDTS_PROGRESS_EPOCH_END);
    assert_int_equal(q->done, 100);
    assert_true(isnan(q->loss) && isnan(q->accuracy));
    assert_true(q->samples_per_s == 0 && q->elapsed_s == 0);
    /* The final state keeps the last figures. */
    assert_true(ev.has_progress[7] && ev.progress[7].done == 100);
    /* One EPOCH row, during training, as the client cleaned it. */
    assert_int_equal(ev.n_epochs, 1);
    assert_int_equal(ev.epoch_state, DDTS_CLIENT_TRAINING);
    assert_int_equal(ev.epoch.epoch, 2);
    assert_int_equal(ev.epoch.epochs, 2);
    assert_int_equal(ev.epoch.n, 3);
    assert_string_equal(ev.epoch.names[0], "loss");
    assert_string_equal(ev.epoch.names[1], "val_loss");
    assert_string_equal(ev.epoch.names[2], "val_accuracy");
    assert_true(ev.epoch.values[0] == 0.25 && ev.epoch.values[1] == 0.75);
    assert_true(isnan(ev.epoch.values[2]));

    pthread_mutex_destroy(&ev.mu);
    ddts_passphrase_destroy(pw);
    remove_dir(dir);
    ddts_free(work);
    ddts_free(cwork);
}

/*
 * Protocol 3 added EPOCH: a connection of protocol 2 (a client that
 * handshook as version 2) that sends one commits a violation, answered with
 * ERROR EPROTO naming it, while the PROGRESS its version has is taken as
 * before; on_epoch never sees the row.
 */
static void test_epoch_refused_on_v2(void **state)
{
    (void)state;
    struct ddts_error err;
    struct ddts_passphrase *pw = NULL;
    assert_int_equal(ddts_passphrase_create("version 2", 9, &pw, &err), DDTS_OK);
    char *dir = test_tmpdir();
    char *work = ddts_path_join(dir, "server");
    struct live_events ev;
    struct server_thread s;
    pthread_t th;
    serve_in_thread(&s, &th, &ev, pw, work, "v2");

    struct ddts_conn *c = NULL;
    assert_int_equal(ddts_conn_connect("127.0.0.1", (uint16_t)atomic_load(&ev.port), 5, &c, &err),
                     DDTS_OK);
    ddts_conn_set_timeout(c, 5);
    if (ddts__conn_handshake_as(c, pw, 2, &err) != DDTS_OK)
        fail_msg("handshake as version 2: %s", err.msg);
    assert_int_equal(ddts__conn_version(c), 2);
    /* JOIN as a new client, as the real one does; then JOB and FILES_DONE (no files). */
    uint8_t m[DDTS_WIRE_EPOCH_MAX_BYTES];
    struct ddts_wire_writer w;
    ddts_wire_writer_init(&w, m, sizeof m);
    uint8_t id[DDTS_CLIENT_ID_BYTES] = {7}, job_id[DDTS_CLIENT_ID_BYTES] = {0};
    ddts_wire_put_u8(&w, DDTS_MSG_JOIN);
    ddts_wire_put_raw(&w, id, sizeof id);
    ddts_wire_put_str(&w, "old");
    ddts_wire_put_str(&w, "");
    ddts_wire_put_raw(&w, job_id, sizeof job_id);
    ddts_wire_put_u32(&w, 0);
    ddts_wire_put_u8(&w, 0);
    assert_int_equal(ddts_conn_send_w(c, &w, &err), DDTS_OK);
    uint8_t type = 0;
    const uint8_t *p;
    size_t n;
    assert_int_equal(ddts_conn_recv(c, &type, &p, &n, &err), DDTS_OK);
    assert_int_equal(type, DDTS_MSG_JOB);
    assert_int_equal(ddts_conn_recv(c, &type, &p, &n, &err), DDTS_OK);
    assert_int_equal(type, DDTS_MSG_FILES_DONE);
    assert_int_equal(ddts_conn_send(c, DDTS_MSG_READY, NULL, 0, &err), DDTS_OK);
    /* PROGRESS (version 2 has it) is taken ... */
    struct ddts_wire_progress pr = {
        0, 0, 1, 2, 100, 100, 0.5, NAN, 1000, 0.1, DDTS_PROGRESS_EPOCH_END};
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_progress_encode(&w, &pr);
    assert_int_equal(ddts_conn_send_w(c, &w, &err), DDTS_OK);
    /* ... a well-formed EPOCH row (version 3) is refused. */
    struct ddts_wire_epoch e = {.epoch = 1, .epochs = 2, .n = 1};
    snprintf(e.names[0], sizeof e.names[0], "loss");
    e.values[0] = 0.5;
    ddts_wire_writer_init(&w, m, sizeof m);
    ddts_wire_epoch_encode(&w, &e);
    assert_int_equal(ddts_conn_send_w(c, &w, &err), DDTS_OK);
    enum ddts_status st = ddts_conn_recv(c, &type, &p, &n, &err);
    assert_int_not_equal(st, DDTS_OK);
    if (strstr(err.msg, "unexpected EPOCH while training (protocol 2)") == NULL)
        fail_msg("the server's answer to EPOCH on protocol 2: %s (%s)", err.msg,
                 ddts_status_str(st));
    ddts_conn_destroy(c);
    /* The PROGRESS arrived (a training state with figures), the row did not. */
    pthread_mutex_lock(&ev.mu);
    int saw_progress = 0;
    for (int i = 0; i < ev.n; i++)
        saw_progress |= ev.states[i] == DDTS_CLIENT_TRAINING && ev.has_progress[i] &&
                        ev.progress[i].flags == DDTS_PROGRESS_EPOCH_END;
    int n_epochs = ev.n_epochs;
    pthread_mutex_unlock(&ev.mu);
    assert_true(saw_progress);
    assert_int_equal(n_epochs, 0);
    atomic_store(&ev.stop, 1);
    pthread_join(th, NULL);

    pthread_mutex_destroy(&ev.mu);
    ddts_passphrase_destroy(pw);
    remove_dir(dir);
    ddts_free(work);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_hostile),
        cmocka_unit_test(test_eta),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_versions),
        cmocka_unit_test(test_server_reports),
        cmocka_unit_test(test_epoch_refused_on_v2),
        cmocka_unit_test(test_epoch_round_trip),
        cmocka_unit_test(test_epoch_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
