/*
 * Terminal text: Keras-like progress lines and the server's table of
 * clients. Pure functions over caller buffers, snprintf-like.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "ddts/report.h"

/* Appends to buf at *len (the length the full text needs), never overrunning cap. */
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...) DDTS_PRINTF(4, 5);
static void put(char *buf, size_t cap, size_t *len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    size_t room = *len < cap ? cap - *len : 0;
    int n = vsnprintf(room ? buf + *len : NULL, room, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len += (size_t)n;
}

size_t ddts_progress_epoch_header(char *buf, size_t cap, int epoch, int epochs)
{
    size_t len = 0;
    if (cap > 0)
        buf[0] = '\0';
    put(buf, cap, &len, "Epoch %d/%d", epoch, epochs);
    return len;
}

size_t ddts_format_duration(char *buf, size_t cap, double s)
{
    size_t len = 0;
    if (cap > 0)
        buf[0] = '\0';
    if (!isfinite(s) || s < 0 || s > 1e9) {
        put(buf, cap, &len, "-");
        return len;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        put(buf, cap, &len, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else if (t >= 60)
        put(buf, cap, &len, "%ld:%02ld", t / 60, t % 60);
    else
        put(buf, cap, &len, "%lds", t);
    return len;
}

/* Keras: "%.4f", or "%.4e" for tiny values. */
static void put_metric(char *buf, size_t cap, size_t *len, const struct ddts_metric *m)
{
    if (!isfinite(m->value))
        put(buf, cap, len, " - %s: %s", m->name, isnan(m->value) ? "nan" : "inf");
    else if (fabs(m->value) > 1e-3 || m->value == 0)
        put(buf, cap, len, " - %s: %.4f", m->name, m->value);
    else
        put(buf, cap, len, " - %s: %.4e", m->name, m->value);
}

#define BAR_WIDTH 30

size_t ddts_progress_format(char *buf, size_t cap, int64_t done, int64_t total, double elapsed_s,
                            const struct ddts_metric *metrics, size_t n_metrics)
{
    size_t len = 0;
    if (cap > 0)
        buf[0] = '\0';
    if (total < 1)
        total = 1;
    if (done < 0)
        done = 0;
    if (done > total)
        done = total;
    int digits = 1;
    for (int64_t t = total; t >= 10; t /= 10)
        digits++;
    put(buf, cap, &len, "%*lld/%lld [", digits, (long long)done, (long long)total);
    /* Keras' bar: '=' for the part done, '>' at its head while running. */
    int filled = (int)((double)BAR_WIDTH * (double)done / (double)total);
    char bar[BAR_WIDTH + 1];
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < filled - 1 ? '=' : '.';
    if (filled > 0)
        bar[filled - 1] = done < total ? '>' : '=';
    bar[BAR_WIDTH] = '\0';
    put(buf, cap, &len, "%s]", bar);
    char d[32];
    ddts_format_duration(d, sizeof d, elapsed_s);
    if (done < total) {
        put(buf, cap, &len, " - %s", d);
        if (done > 0 && elapsed_s > 0) {
            char eta[32];
            ddts_format_duration(eta, sizeof eta,
                                 elapsed_s / (double)done * (double)(total - done));
            put(buf, cap, &len, " - ETA: %s", eta);
        }
    } else {
        double per = elapsed_s / (double)total;
        if (per >= 1)
            put(buf, cap, &len, " - %s %.0fs/sample", d, per);
        else if (per >= 1e-3)
            put(buf, cap, &len, " - %s %.0fms/sample", d, per * 1e3);
        else
            put(buf, cap, &len, " - %s %.0fus/sample", d, per * 1e6);
    }
    for (size_t i = 0; i < n_metrics; i++)
        put_metric(buf, cap, &len, &metrics[i]);
    return len;
}

/*
 * Copies s into a column of `width`; a longer s is cut in the middle with
 * '~' (its head and its tail kept: client names often differ at the end).
 */
static void put_col(char *buf, size_t cap, size_t *len, const char *s, int width)
{
    if (s == NULL || s[0] == '\0')
        s = "-";
    size_t n = strlen(s);
    if (n > (size_t)width) {
        int head = (width - 1) / 2, tail = width - 1 - head;
        put(buf, cap, len, "%.*s~%s", head, s, s + n - (size_t)tail);
    } else {
        put(buf, cap, len, "%-*s", width, s);
    }
}

/* A number in at most `width` characters: "%.4f", fewer decimals when it
 * does not fit, then "%.0e"; "-" when not finite. */
static void fmt_fit(char *out, size_t cap, double v, int width)
{
    if (!isfinite(v)) {
        snprintf(out, cap, "-");
        return;
    }
    for (int prec = 4; prec >= 0; prec--) {
        int n = snprintf(out, cap, "%.*f", prec, v);
        if (n > 0 && n <= width)
            return;
    }
    snprintf(out, cap, "%.0e", v);
}

/* Samples per second in 5 characters: "12345", "123k", "4567M". */
static void fmt_rate(char *out, size_t cap, double v)
{
    if (!isfinite(v) || v < 0)
        snprintf(out, cap, "-");
    else if (v < 99999.5)
        snprintf(out, cap, "%.0f", v);
    else if (v < 9999.5e3)
        snprintf(out, cap, "%.0fk", v / 1e3);
    else if (v < 9999.5e6)
        snprintf(out, cap, "%.0fM", v / 1e6);
    else
        snprintf(out, cap, "%.0e", v);
}

/* A duration in 5 characters: "42s", "12:34", "1h02m", "31h", "12d"; "-" when unknown. */
static void fmt_eta(char *out, size_t cap, double s)
{
    if (!isfinite(s) || s < 0 || s > 1e9) {
        snprintf(out, cap, "-");
        return;
    }
    long t = (long)(s + 0.5);
    if (t < 60)
        snprintf(out, cap, "%lds", t);
    else if (t < 3600)
        snprintf(out, cap, "%ld:%02ld", t / 60, t % 60);
    else if (t < 36000)
        snprintf(out, cap, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else if (t < 100 * 3600)
        snprintf(out, cap, "%ldh", t / 3600);
    else
        snprintf(out, cap, "%ldd", t / 86400);
}

/*
 * Column widths of the live table. NAME takes what the others leave of the
 * line (width - 1 characters, so that a terminal never wraps): 10 at 80.
 */
enum {
    COL_ADDR = 15, /* "255.255.255.255" */
    COL_STATE = 9, /* "uploading" */
    COL_FOLD = 5,  /* "10/10" */
    COL_EPOCH = 6, /* "99/100" */
    COL_PROG = 4,  /* "100%" */
    COL_LOSS = 6,  /* "0.4123" */
    COL_ACC = 5,   /* "0.851" */
    COL_RATE = 5,  /* "12345" */
    COL_ETA = 5,   /* "12:34" */
    COLS_FIXED = COL_ADDR + COL_STATE + COL_FOLD + COL_EPOCH + COL_PROG + COL_LOSS + COL_ACC +
                 COL_RATE + COL_ETA + 9, /* nine separating spaces */
    COL_NAME_MIN = 8,
    COL_NAME_MAX = 40,
};

size_t ddts_client_table_format_width(char *buf, size_t cap, const struct ddts_client_row *rows,
                                      size_t n_rows, int width, size_t *n_lines_out)
{
    size_t len = 0;
    if (cap > 0)
        buf[0] = '\0';
    int wn = width - 1 - COLS_FIXED;
    wn = wn < COL_NAME_MIN ? COL_NAME_MIN : wn > COL_NAME_MAX ? COL_NAME_MAX : wn;
    put(buf, cap, &len, "%-*s %-*s %-*s %*s %*s %*s %*s %*s %*s %*s\n", wn, "NAME", COL_ADDR,
        "ADDRESS", COL_STATE, "STATE", COL_FOLD, "FOLD", COL_EPOCH, "EPOCH", COL_PROG, "PROG",
        COL_LOSS, "LOSS", COL_ACC, "ACC", COL_RATE, "SMP/S", COL_ETA, "ETA");
    for (size_t i = 0; i < n_rows; i++) {
        const struct ddts_client_row *r = &rows[i];
        char t[64];
        put_col(buf, cap, &len, r->name, wn);
        put(buf, cap, &len, " ");
        put_col(buf, cap, &len, r->address, COL_ADDR);
        put(buf, cap, &len, " ");
        put_col(buf, cap, &len, r->state, COL_STATE);
        /* Figures wider than their column are not cut (a misaligned row is
         * better than a wrong number): they push the rest of the line right. */
        if (r->n_folds > 0)
            snprintf(t, sizeof t, "%d/%d", r->fold, r->n_folds);
        else
            snprintf(t, sizeof t, "-");
        put(buf, cap, &len, " %*s", COL_FOLD, t);
        if (r->epochs > 0)
            snprintf(t, sizeof t, "%d/%d", r->epoch, r->epochs);
        else
            snprintf(t, sizeof t, "-");
        put(buf, cap, &len, " %*s", COL_EPOCH, t);
        if (r->total > 0) {
            int64_t done = r->done < 0 ? 0 : r->done > r->total ? r->total : r->done;
            snprintf(t, sizeof t, "%d%%", (int)(100.0 * (double)done / (double)r->total));
        } else {
            snprintf(t, sizeof t, "-");
        }
        put(buf, cap, &len, " %*s", COL_PROG, t);
        fmt_fit(t, sizeof t, r->loss, COL_LOSS);
        put(buf, cap, &len, " %*s", COL_LOSS, t);
        fmt_fit(t, sizeof t, r->accuracy, COL_ACC);
        put(buf, cap, &len, " %*s", COL_ACC, t);
        fmt_rate(t, sizeof t, r->samples_per_s);
        put(buf, cap, &len, " %*s", COL_RATE, t);
        fmt_eta(t, sizeof t, r->eta_s);
        put(buf, cap, &len, " %*s\n", COL_ETA, t);
    }
    if (n_lines_out != NULL)
        *n_lines_out = n_rows + 1;
    return len;
}

size_t ddts_client_table_format(char *buf, size_t cap, const struct ddts_client_row *rows,
                                size_t n_rows, size_t *n_lines_out)
{
    return ddts_client_table_format_width(buf, cap, rows, n_rows, 80, n_lines_out);
}

size_t ddts_format_bytes(char *buf, size_t cap, double n)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    size_t len = 0;
    if (cap > 0)
        buf[0] = '\0';
    if (!isfinite(n) || n < 0)
        n = 0;
    int u = 0;
    while (n >= 1024 && u < 5) {
        n /= 1024;
        u++;
    }
    if (u == 0)
        put(buf, cap, &len, "%.0f B", n);
    else if (n < 10)
        put(buf, cap, &len, "%.2f %s", n, units[u]);
    else if (n < 100)
        put(buf, cap, &len, "%.1f %s", n, units[u]);
    else
        put(buf, cap, &len, "%.0f %s", n, units[u]);
    return len;
}

#define TRANSFER_BAR 20

size_t ddts_transfer_format(char *buf, size_t cap, const char *label, uint64_t done, uint64_t total,
                            double elapsed_s)
{
    size_t len = 0;
    if (cap > 0)
        buf[0] = '\0';
    char a[32], b[32], rate[32], t[32];
    ddts_format_bytes(a, sizeof a, (double)done);
    ddts_format_bytes(b, sizeof b, (double)total);
    double r = elapsed_s > 0 ? (double)done / elapsed_s : NAN;
    if (isfinite(r))
        ddts_format_bytes(rate, sizeof rate, r);
    else
        snprintf(rate, sizeof rate, "-");
    bool finished = total > 0 && done >= total;
    if (label != NULL && label[0] != '\0')
        put(buf, cap, &len, "%s  ", label);
    if (total == 0) {
        put(buf, cap, &len, "%s %s/s", a, rate);
        return len;
    }
    if (finished)
        put(buf, cap, &len, "%s [", b);
    else
        put(buf, cap, &len, "%s/%s [", a, b);
    double frac = done >= total ? 1.0 : (double)done / (double)total;
    int filled = (int)(TRANSFER_BAR * frac);
    for (int i = 0; i < TRANSFER_BAR; i++)
        put(buf, cap, &len, "%c",
            i < filled - 1 || (finished && i < filled) ? '='
            : i == filled - 1                          ? '>'
                                                       : '.');
    put(buf, cap, &len, "] %3d%% %s/s", (int)(100 * frac), rate);
    if (finished) {
        ddts_format_duration(t, sizeof t, elapsed_s);
        put(buf, cap, &len, " %s", t);
    } else if (done > 0 && elapsed_s > 0) {
        ddts_format_duration(t, sizeof t, elapsed_s / (double)done * (double)(total - done));
        put(buf, cap, &len, " ETA %s", t);
    }
    return len;
}
