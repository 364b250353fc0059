/* Unit tests of src/report: Python float repr, history.csv (byte for byte
 * against a CSVLogger fixture, and read back), logs, progress lines, the
 * live table, summary files and PNG plots (decoded with cairo). */
#include <math.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cairo.h>
#include <jansson.h>

#include "test.h"

static char *fixture(const char *name)
{
    const char *src = getenv("DDTS_SOURCE_DIR");
    char *dir = ddts_path_join(src ? src : ".", "tests/data/report");
    char *p = ddts_path_join(dir, name);
    ddts_free(dir);
    return p;
}

static char *slurp(const char *path, size_t *n)
{
    char *text = NULL;
    if (ddts_read_file(path, 1u << 26, &text, n, NULL) != DDTS_OK)
        fail_msg("cannot read %s", path);
    return text;
}

static void test_pyfloat(void **state)
{
    (void)state;
    char *path = fixture("pyfloat.txt");
    size_t n = 0;
    char *text = slurp(path, &n);
    size_t lines = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        char *sp = strchr(line, ' ');
        assert_non_null(sp);
        *sp = '\0';
        uint64_t bits = strtoull(line, NULL, 16);
        double v;
        memcpy(&v, &bits, sizeof v);
        char got[32];
        size_t len = ddts_format_pyfloat(v, got);
        if (strcmp(got, sp + 1) != 0)
            fail_msg("repr(%s): ddts '%s', Python '%s'", line, got, sp + 1);
        assert_int_equal(len, strlen(got));
        lines++;
    }
    assert_true(lines > 300);
    char buf[32];
    ddts_format_pyfloat(NAN, buf);
    assert_string_equal(buf, "nan");
    ddts_format_pyfloat(-INFINITY, buf);
    assert_string_equal(buf, "-inf");
    ddts_free(text);
    ddts_free(path);
}

/* The same logs as tests/data/report/history_keras.csv (see its README). */
static void write_keras_like(const char *path)
{
    struct ddts_history_writer *w = NULL;
    assert_int_equal(ddts_history_writer_open(path, false, &w, NULL), DDTS_OK);
    for (int e = 0; e < 3; e++) {
        struct ddts_metric m[4] = {
            {"loss", (double)(float)(0.9 / (e + 1))},
            {"accuracy", (double)(float)(0.5 + 0.1 * e)},
            {"val_loss", (double)(float)(1.1 / (e + 1))},
            {"val_accuracy", (double)(float)(0.45 + 0.12 * e)},
        };
        assert_int_equal(ddts_history_writer_row(w, e, m, e == 2 ? 3 : 4, NULL), DDTS_OK);
    }
    ddts_history_writer_close(w);
}

static void test_history_matches_csvlogger(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *path = ddts_path_join(dir, "history.csv");
    write_keras_like(path);
    size_t n1 = 0, n2 = 0;
    char *got = slurp(path, &n1);
    char *fx = fixture("history_keras.csv");
    char *want = slurp(fx, &n2);
    if (n1 != n2 || memcmp(got, want, n1) != 0)
        fail_msg("history.csv differs from CSVLogger's:\n--- ddts\n%s--- keras\n%s", got, want);

    /* Read back: columns, epochs, values, NA. */
    struct ddts_csv_history *h = NULL;
    assert_int_equal(ddts_csv_history_read(path, &h, NULL), DDTS_OK);
    assert_int_equal(h->n_keys, 4);
    assert_string_equal(h->keys[0], "accuracy");
    assert_string_equal(h->keys[3], "val_loss");
    assert_int_equal(h->n_epochs, 3);
    assert_int_equal(h->epochs[2], 2);
    long c = ddts_csv_history_column(h, "loss");
    assert_int_equal(c, 1);
    assert_true(h->values[1 * 4 + c] == (double)(float)(0.9 / 2)); /* exact round trip */
    assert_true(isnan(h->values[2 * 4 + ddts_csv_history_column(h, "val_accuracy")]));
    assert_int_equal(ddts_csv_history_column(h, "nope"), -1);
    ddts_csv_history_destroy(h);

    /* Appending continues the columns without a second header. */
    struct ddts_history_writer *w = NULL;
    assert_int_equal(ddts_history_writer_open(path, true, &w, NULL), DDTS_OK);
    struct ddts_metric extra[2] = {{"val_loss", 0.25}, {"loss", 0.125}};
    assert_int_equal(ddts_history_writer_row(w, 3, extra, 2, NULL), DDTS_OK);
    ddts_history_writer_close(w);
    assert_int_equal(ddts_csv_history_read(path, &h, NULL), DDTS_OK);
    assert_int_equal(h->n_epochs, 4);
    assert_true(h->values[3 * 4 + 1] == 0.125 && h->values[3 * 4 + 3] == 0.25);
    assert_true(isnan(h->values[3 * 4 + 0]));
    ddts_csv_history_destroy(h);
    ddts_free(got);
    got = slurp(path, &n1);
    assert_non_null(strstr(got, "\r\n3,NA,0.125,NA,0.25\r\n"));

    /* Bad metric names are refused. */
    assert_int_equal(ddts_history_writer_open(path, false, &w, NULL), DDTS_OK);
    struct ddts_error err;
    struct ddts_metric bad[1] = {{"a,b", 1}};
    assert_int_equal(ddts_history_writer_row(w, 0, bad, 1, &err), DDTS_EINVAL);
    ddts_history_writer_close(w);

    unlink(path);
    rmdir(dir);
    ddts_free(got);
    ddts_free(want);
    ddts_free(fx);
    ddts_free(path);
    ddts_free(dir);
}

static void test_history_parse_errors(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum ddts_status status;
        const char *msg;
    } cases[] = {
        {"", DDTS_EFORMAT, "row 1: the header"},
        {"epochs,loss\n", DDTS_EFORMAT, "row 1"},
        {"epoch,loss\n0,0.5,1\n", DDTS_EFORMAT, "row 2: 3 fields, the header has 2"},
        {"epoch,loss\n0,0.5\n1,abc\n", DDTS_EFORMAT, "row 3, column 2 (loss): 'abc'"},
        {"epoch,loss\n-1,0.5\n", DDTS_EFORMAT, "row 2, column 1 (epoch)"},
        {"epoch,,loss\n", DDTS_EFORMAT, "empty column name"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        struct ddts_csv_history *h = (struct ddts_csv_history *)1;
        struct ddts_error err;
        ddts_error_clear(&err);
        enum ddts_status st =
            ddts_csv_history_parse("h.csv", cases[k].text, strlen(cases[k].text), &h, &err);
        if (st != cases[k].status || strstr(err.msg, cases[k].msg) == NULL)
            fail_msg("'%s': %d '%s', want %d '%s'", cases[k].text, st, err.msg, cases[k].status,
                     cases[k].msg);
        assert_null(h);
    }
    /* Any line ending, a final line without one, "epoch" alone. */
    struct ddts_csv_history *h = NULL;
    const char *ok = "epoch,loss\n0,1.5\r\n1,NA";
    assert_int_equal(ddts_csv_history_parse("h.csv", ok, strlen(ok), &h, NULL), DDTS_OK);
    assert_int_equal(h->n_epochs, 2);
    assert_true(h->values[0] == 1.5 && isnan(h->values[1]));
    ddts_csv_history_destroy(h);
    assert_int_equal(ddts_csv_history_parse("h.csv", "epoch\n0\n", 8, &h, NULL), DDTS_OK);
    assert_int_equal(h->n_keys, 0);
    assert_int_equal(h->n_epochs, 1);
    ddts_csv_history_destroy(h);
    /* Every allocation failing in turn gives ENOMEM and no leak. */
    const char *text = "epoch,accuracy,loss\n0,0.5,0.7\n1,0.6,0.5\n";
    for (long k = 0; k < 20; k++) {
        ddts_alloc_fail_after(k);
        enum ddts_status st = ddts_csv_history_parse("h.csv", text, strlen(text), &h, NULL);
        ddts_alloc_fail_after(-1);
        if (st == DDTS_OK) {
            ddts_csv_history_destroy(h);
            break;
        }
        assert_int_equal(st, DDTS_ENOMEM);
        assert_null(h);
    }
}

static void test_textlog(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *path = ddts_path_join(dir, "train.log");
    struct ddts_textlog *log = NULL;
    assert_int_equal(ddts_textlog_open(path, &log, NULL), DDTS_OK);
    assert_int_equal(ddts_textlog_printf(log, "Epoch %d/%d", 1, 3), DDTS_OK);
    assert_int_equal(ddts_textlog_printf(log, "two\nlines"), DDTS_OK);
    struct ddts_logger lg = ddts_textlog_logger(log, DDTS_LOG_INFO);
    ddts_log(&lg, DDTS_LOG_DEBUG, "dropped");
    ddts_log(&lg, DDTS_LOG_WARN, "loss went up");
    ddts_textlog_close(log);
    size_t n = 0;
    char *text = slurp(path, &n);
    /* "YYYY-MM-DD HH:MM:SS message" */
    int lines = 0;
    for (char *line = strtok(text, "\n"); line != NULL; line = strtok(NULL, "\n")) {
        assert_true(strlen(line) > 20 && line[4] == '-' && line[10] == ' ' && line[13] == ':');
        lines++;
    }
    assert_int_equal(lines, 4);
    ddts_free(text);
    text = slurp(path, &n);
    assert_non_null(strstr(text, " Epoch 1/3\n"));
    assert_non_null(strstr(text, " two\n"));
    assert_non_null(strstr(text, " lines\n"));
    assert_non_null(strstr(text, " WARNING loss went up\n"));
    assert_null(strstr(text, "dropped"));
    ddts_free(text);
    unlink(path);
    rmdir(dir);
    ddts_free(path);
    ddts_free(dir);
}

static void test_progress(void **state)
{
    (void)state;
    char buf[256];
    assert_int_equal(ddts_progress_epoch_header(buf, sizeof buf, 3, 10), 10);
    assert_string_equal(buf, "Epoch 3/10");
    struct ddts_metric m[2] = {{"loss", 0.41234}, {"accuracy", 0.85119}};
    size_t n = ddts_progress_format(buf, sizeof buf, 1200, 60000, 12, m, 2);
    assert_string_equal(buf, " 1200/60000 [..............................] - 12s - ETA: 9:48 - "
                             "loss: 0.4123 - accuracy: 0.8512");
    assert_int_equal(n, strlen(buf));
    ddts_progress_format(buf, sizeof buf, 30000, 60000, 30, m, 2);
    assert_non_null(strstr(buf, "[==============>...............] - 30s - ETA: 30s"));
    struct ddts_metric end[4] = {
        {"loss", 0.3}, {"accuracy", 0.9}, {"val_loss", 0.00012}, {"val_accuracy", 0.88}};
    ddts_progress_format(buf, sizeof buf, 60000, 60000, 72, end, 4);
    assert_string_equal(buf, "60000/60000 [==============================] - 1:12 1ms/sample - "
                             "loss: 0.3000 - accuracy: 0.9000 - val_loss: 1.2000e-04 - "
                             "val_accuracy: 0.8800");
    /* snprintf-like: a small buffer is cut but the full length is returned. */
    char small[8];
    size_t full = ddts_progress_format(small, sizeof small, 60000, 60000, 72, end, 4);
    assert_int_equal(full, strlen(buf));
    assert_int_equal(strlen(small), 7);
    ddts_format_duration(buf, sizeof buf, 3723);
    assert_string_equal(buf, "1:02:03");
    ddts_format_duration(buf, sizeof buf, NAN);
    assert_string_equal(buf, "-");
}

static void test_transfer(void **state)
{
    (void)state;
    char buf[160];
    ddts_format_bytes(buf, sizeof buf, 512);
    assert_string_equal(buf, "512 B");
    ddts_format_bytes(buf, sizeof buf, 1536);
    assert_string_equal(buf, "1.50 KiB");
    ddts_format_bytes(buf, sizeof buf, 12.34 * 1048576);
    assert_string_equal(buf, "12.3 MiB");
    ddts_format_bytes(buf, sizeof buf, 3.0 * 1073741824.0);
    assert_string_equal(buf, "3.00 GiB");
    uint64_t mib = 1048576;
    size_t n = ddts_transfer_format(buf, sizeof buf, "model.h5", 10 * mib, 40 * mib, 4);
    assert_int_equal(n, strlen(buf));
    assert_string_equal(
        buf, "model.h5  10.0 MiB/40.0 MiB [====>...............]  25% 2.50 MiB/s ETA 12s");
    ddts_transfer_format(buf, sizeof buf, "shard", 40 * mib, 40 * mib, 16);
    assert_string_equal(buf, "shard  40.0 MiB [====================] 100% 2.50 MiB/s 16s");
    ddts_transfer_format(buf, sizeof buf, "x", 100, 0, 0);
    assert_string_equal(buf, "x  100 B -/s");
}

static void test_client_table(void **state)
{
    (void)state;
    struct ddts_client_row rows[2] = {
        {"alpha", "10.0.0.2:51234", "training", 2, 5, 3, 10, 450, 1000, 0.41234, 0.85, 1234.4, 75},
        {"a-very-long-client-name", "10.0.0.3:40000", "lost", 0, 0, 0, 0, 0, 0, NAN, NAN, NAN, NAN},
    };
    char buf[1024];
    size_t lines = 0;
    size_t n = ddts_client_table_format(buf, sizeof buf, rows, 2, &lines);
    assert_int_equal(n, strlen(buf));
    assert_int_equal(lines, 3);
    char *l1 = strchr(buf, '\n') + 1;
    char *l2 = strchr(l1, '\n') + 1;
    /* Columns align: every line has the same length. */
    assert_int_equal(l1 - buf, l2 - l1);
    assert_non_null(strstr(buf, "NAME"));
    assert_non_null(strstr(buf, "SMP/S"));
    assert_non_null(strstr(l1, "alpha "));
    assert_non_null(strstr(l1, "2/5"));
    assert_non_null(strstr(l1, "3/10"));
    assert_non_null(strstr(l1, " 45% "));
    assert_non_null(strstr(l1, "0.4123"));
    assert_non_null(strstr(l1, "1234"));
    assert_non_null(strstr(l1, "1:15"));
    /* Cut in the middle (tests/unit/test_live_view.c checks the whole text). */
    assert_non_null(strstr(l2, "a-ve~-name "));
    assert_non_null(strstr(l2, "lost"));
}

static void test_summary(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *path = ddts_path_join(dir, "summary.json");
    char *tpath = ddts_path_join(dir, "summary.txt");
    struct ddts_metric fin[2] = {{"loss", 0.25}, {"val_loss", NAN}};
    struct ddts_summary_client cl[2] = {
        {"alpha", "10.0.0.2:5000", "done", 30000, 10, fin, 2, "clients/alpha", NULL},
        {"b\"eta", NULL, "failed", 30000, 4, NULL, 0, NULL, "bad\nlabel \x1b[2J\"x\""},
    };
    struct ddts_summary s = {
        "mnist", "ok", NULL, "{\"epochs\": 10}\n", 42,         1.7e9, 1.7e9 + 75, cl,
        2,       fin,  1,    "global/model.h5",    "plots.png"};
    assert_int_equal(ddts_summary_write_json(path, &s, NULL), DDTS_OK);
    assert_int_equal(ddts_summary_write_text(tpath, &s, NULL), DDTS_OK);
    size_t n = 0;
    char *text = slurp(path, &n);
    assert_non_null(strstr(text, "\"settings\": {\"epochs\": 10},"));
    assert_non_null(strstr(text, "\"val_loss\": null"));
    assert_non_null(strstr(text, "\"name\": \"b\\\"eta\""));
    assert_non_null(strstr(text, "\"duration_s\": 75.0"));
    /* A JSON parser agrees. */
    json_error_t jerr;
    json_t *root = json_loads(text, 0, &jerr);
    if (root == NULL)
        fail_msg("summary.json does not parse: line %d: %s\n%s", jerr.line, jerr.text, text);
    assert_string_equal(json_string_value(json_object_get(root, "job")), "mnist");
    assert_int_equal(json_integer_value(json_object_get(root, "seed")), 42);
    json_t *clients = json_object_get(root, "clients");
    assert_int_equal(json_array_size(clients), 2);
    json_t *c0 = json_array_get(clients, 0);
    assert_int_equal(json_integer_value(json_object_get(c0, "samples")), 30000);
    assert_true(json_real_value(json_object_get(json_object_get(c0, "final"), "loss")) == 0.25);
    assert_true(json_is_null(json_object_get(json_object_get(c0, "final"), "val_loss")));
    assert_string_equal(json_string_value(json_object_get(json_array_get(clients, 1), "name")),
                        "b\"eta");
    /* A client's error text comes back exactly from the JSON, and is absent when none. */
    assert_string_equal(json_string_value(json_object_get(json_array_get(clients, 1), "error")),
                        "bad\nlabel \x1b[2J\"x\"");
    assert_null(json_object_get(c0, "error"));
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(root, "settings"), "epochs")), 10);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(root, "global"), "model")),
        "global/model.h5");
    json_decref(root);
    ddts_free(text);
    text = slurp(tpath, &n);
    assert_non_null(strstr(text, "Job        mnist"));
    assert_non_null(strstr(text, "alpha"));
    /* In summary.txt the error is one line, its control characters escaped. */
    assert_non_null(strstr(text, "failed: bad\\nlabel \\x1b[2J\"x\"\n"));
    assert_null(strchr(text, 0x1b));
    ddts_free(text);
    s.settings_json = "not json";
    assert_int_equal(ddts_summary_write_json(path, &s, NULL), DDTS_EINVAL);
    unlink(path);
    unlink(tpath);
    rmdir(dir);
    ddts_free(path);
    ddts_free(tpath);
    ddts_free(dir);
}

/* Decodes a PNG and checks size, colours and that it is not blank. */
static void check_png(const char *path, int want_w, int want_h, int min_colours)
{
    cairo_surface_t *s = cairo_image_surface_create_from_png(path);
    if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS)
        fail_msg("%s does not decode: %s", path, cairo_status_to_string(cairo_surface_status(s)));
    int w = cairo_image_surface_get_width(s), h = cairo_image_surface_get_height(s);
    if (w != want_w || h != want_h)
        fail_msg("%s is %dx%d, want %dx%d", path, w, h, want_w, want_h);
    const unsigned char *d = cairo_image_surface_get_data(s);
    int stride = cairo_image_surface_get_stride(s);
    /* Distinct colours (in a 4096-bucket histogram) and non-white pixels. */
    static unsigned char seen[1 << 12];
    memset(seen, 0, sizeof seen);
    long non_white = 0, distinct = 0, dark = 0;
    for (int y = 0; y < h; y++) {
        const uint32_t *row = (const uint32_t *)(d + (size_t)y * (size_t)stride);
        for (int x = 0; x < w; x++) {
            uint32_t px = row[x] & 0xffffff;
            unsigned r = px >> 16 & 255, g = px >> 8 & 255, b = px & 255;
            unsigned key = (r >> 4) << 8 | (g >> 4) << 4 | (b >> 4);
            if (!seen[key]) {
                seen[key] = 1;
                distinct++;
            }
            non_white += px != 0xffffff;
            dark += r + g + b < 150;
        }
    }
    double frac = (double)non_white / ((double)w * h);
    print_message("%s: %dx%d, %ld colour buckets, %.1f%% non-white, %ld dark pixels\n", path, w, h,
                  distinct, 100 * frac, dark);
    if (distinct < min_colours)
        fail_msg("%s: only %ld distinct colours", path, distinct);
    if (frac < 0.02 || frac > 0.6)
        fail_msg("%s: %.1f%% of pixels are not white", path, 100 * frac);
    if (dark < 2000)
        fail_msg("%s: only %ld dark pixels (no text or axes?)", path, dark);
    cairo_surface_destroy(s);
}

static void test_plots(void **state)
{
    (void)state;
    char *dir = test_tmpdir();
    char *csv = ddts_path_join(dir, "history.csv");
    struct ddts_history_writer *w = NULL;
    assert_int_equal(ddts_history_writer_open(csv, false, &w, NULL), DDTS_OK);
    for (int e = 0; e < 12; e++) {
        struct ddts_metric m[4] = {{"loss", 1.2 * exp(-0.2 * e) + 0.1},
                                   {"accuracy", 0.95 - 0.5 * exp(-0.3 * e)},
                                   {"val_loss", 1.3 * exp(-0.15 * e) + 0.2},
                                   {"val_accuracy", 0.9 - 0.5 * exp(-0.25 * e)}};
        assert_int_equal(ddts_history_writer_row(w, e, m, 4, NULL), DDTS_OK);
    }
    ddts_history_writer_close(w);
    struct ddts_csv_history *h = NULL;
    assert_int_equal(ddts_csv_history_read(csv, &h, NULL), DDTS_OK);
    char *png = ddts_path_join(dir, "history.png");
    struct ddts_error err;
    if (ddts_plot_history(png, "client alpha, fold 1", h, &err) != DDTS_OK)
        fail_msg("%s", err.msg);
    check_png(png, DDTS_PLOT_WIDTH, DDTS_PLOT_HEIGHT, 12);

    /* Combined: three clients (shifted curves) and the global model. */
    struct ddts_csv_history copy[3];
    double *vals[3];
    const struct ddts_csv_history *hs[3];
    for (int k = 0; k < 3; k++) {
        copy[k] = *h;
        vals[k] = ddts_mallocarray(h->n_epochs * h->n_keys, sizeof(double));
        for (size_t i = 0; i < h->n_epochs * h->n_keys; i++)
            vals[k][i] = h->values[i] * (1 + 0.07 * k);
        copy[k].values = vals[k];
        hs[k] = &copy[k];
    }
    const char *names[3] = {"alpha", "beta", "gamma"};
    char *comb = ddts_path_join(dir, "combined.png");
    if (ddts_plot_combined(comb, "job mnist: 3 clients", hs, names, 3, h, &err) != DDTS_OK)
        fail_msg("%s", err.msg);
    check_png(comb, DDTS_PLOT_WIDTH, DDTS_PLOT_HEIGHT, 16);

    /* A history without accuracy: one panel, narrower. */
    const char *lonly = "epoch,loss\n0,1.0\n1,0.5\n2,NA\n3,0.3\n";
    struct ddts_csv_history *h2 = NULL;
    assert_int_equal(ddts_csv_history_parse("l.csv", lonly, strlen(lonly), &h2, NULL), DDTS_OK);
    char *png2 = ddts_path_join(dir, "loss.png");
    assert_int_equal(ddts_plot_history(png2, "loss only", h2, NULL), DDTS_OK);
    check_png(png2, DDTS_PLOT_WIDTH / 2 + 100, DDTS_PLOT_HEIGHT, 6);

    /* Errors: bad size, history without loss. */
    struct ddts_plot_panel p = {"t", "x", "y", NULL, 0};
    assert_int_equal(ddts_plot_write_png(png2, "t", &p, 1, 10, 10, &err), DDTS_EINVAL);
    const char *noloss = "epoch,accuracy\n0,0.5\n";
    struct ddts_csv_history *h3 = NULL;
    assert_int_equal(ddts_csv_history_parse("n.csv", noloss, strlen(noloss), &h3, NULL), DDTS_OK);
    assert_int_equal(ddts_plot_history(png2, "t", h3, &err), DDTS_EINVAL);
    char *missing = ddts_path_join(dir, "no/such/dir/x.png");
    assert_int_equal(ddts_plot_history(missing, "t", h, &err), DDTS_EIO);

    for (int k = 0; k < 3; k++)
        ddts_free(vals[k]);
    ddts_csv_history_destroy(h);
    ddts_csv_history_destroy(h2);
    ddts_csv_history_destroy(h3);
    unlink(csv);
    unlink(png);
    unlink(png2);
    unlink(comb);
    rmdir(dir);
    ddts_free(missing);
    ddts_free(csv);
    ddts_free(png);
    ddts_free(png2);
    ddts_free(comb);
    ddts_free(dir);
}

/* fontconfig (loaded by cairo for text) keeps its configuration for the
 * life of the process and frees it only in FcFini, which cairo never calls:
 * LeakSanitizer would report it at exit. That memory is not ours. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void)
{
    return "leak:libfontconfig\n";
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pyfloat),
        cmocka_unit_test(test_history_matches_csvlogger),
        cmocka_unit_test(test_history_parse_errors),
        cmocka_unit_test(test_textlog),
        cmocka_unit_test(test_progress),
        cmocka_unit_test(test_transfer),
        cmocka_unit_test(test_client_table),
        cmocka_unit_test(test_summary),
        cmocka_unit_test(test_plots),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    cairo_debug_reset_static_data();
    return rc;
}
