/*
 * history.csv as Keras' CSVLogger writes it, and read back.
 *
 * CSVLogger (keras/src/callbacks/csv_logger.py, and tf.keras 2.x) sorts the
 * first epoch's log keys, writes "epoch" plus those keys with csv.DictWriter
 * in the csv.excel dialect (so lines end in "\r\n"), and each value with
 * str(), which for a Python float is its shortest round-trip repr. Missing
 * values are "NA". The file is flushed after every row.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ddts/fs.h"
#include "ddts/limits.h"
#include "ddts/report.h"

size_t ddts_format_pyfloat(double v, char buf[32])
{
    if (isnan(v))
        return (size_t)snprintf(buf, 32, "nan");
    if (isinf(v))
        return (size_t)snprintf(buf, 32, v < 0 ? "-inf" : "inf");
    /* Shortest "%.Ne" that reads back as v: the digits Python's repr uses. */
    char tmp[40];
    for (int p = 0; p <= 16; p++) {
        snprintf(tmp, sizeof tmp, "%.*e", p, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    /* tmp is "[-]D[.DDD]e[+-]XX": collect sign, digits and exponent. */
    const char *s = tmp;
    bool neg = *s == '-';
    if (neg)
        s++;
    char digits[24];
    size_t nd = 0;
    for (; *s != 'e' && *s != '\0'; s++)
        if (*s >= '0' && *s <= '9' && nd < sizeof digits - 1)
            digits[nd++] = *s;
    int exp10 = *s == 'e' ? (int)strtol(s + 1, NULL, 10) : 0;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int decpt = exp10 + 1; /* digits[0] sits at 10^(decpt - 1) */
    size_t o = 0;
    char out[40];
    if (neg)
        out[o++] = '-';
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int k = 0; k < -decpt; k++)
                out[o++] = '0';
            memcpy(out + o, digits, nd);
            o += nd;
        } else if ((size_t)decpt >= nd) {
            memcpy(out + o, digits, nd);
            o += nd;
            for (size_t k = nd; k < (size_t)decpt; k++)
                out[o++] = '0';
            out[o++] = '.';
            out[o++] = '0';
        } else {
            memcpy(out + o, digits, (size_t)decpt);
            o += (size_t)decpt;
            out[o++] = '.';
            memcpy(out + o, digits + decpt, nd - (size_t)decpt);
            o += nd - (size_t)decpt;
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            memcpy(out + o, digits + 1, nd - 1);
            o += nd - 1;
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    }
    return (size_t)snprintf(buf, 32, "%s", out);
}

struct ddts_history_writer {
    FILE *fp;
    char *path;
    size_t n_keys; /* 0 until the columns are known */
    char **keys;
    bool header_done;
};

static int cmp_key(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_keys(char **keys, size_t n)
{
    for (size_t i = 0; keys != NULL && i < n; i++)
        ddts_free(keys[i]);
    ddts_free(keys);
}

void ddts_history_writer_close(struct ddts_history_writer *w)
{
    if (w == NULL)
        return;
    if (w->fp != NULL)
        fclose(w->fp);
    free_keys(w->keys, w->n_keys);
    ddts_free(w->path);
    ddts_free(w);
}

enum ddts_status ddts_history_writer_open(const char *path, bool append,
                                          struct ddts_history_writer **out, struct ddts_error *err)
{
    *out = NULL;
    enum ddts_status st = DDTS_OK;
    struct ddts_history_writer *w = ddts_calloc(1, sizeof *w);
    if (w == NULL || (w->path = ddts_strdup(path)) == NULL) {
        ddts_free(w);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
    }
    if (append) {
        /* Continue an earlier history: its header fixes the columns. */
        struct ddts_csv_history *h = NULL;
        char *text = NULL;
        size_t n = 0;
        st = ddts_read_file(path, DDTS_MAX_HISTORY_BYTES, &text, &n, err);
        if (st == DDTS_ENOTFOUND) {
            st = DDTS_OK; /* no file yet: start afresh */
            ddts_error_clear(err);
        } else if (st == DDTS_OK && n > 0) {
            st = ddts_csv_history_parse(path, text, n, &h, err);
            if (st == DDTS_OK) {
                w->keys = h->keys;
                w->n_keys = h->n_keys;
                h->keys = NULL;
                h->n_keys = 0;
                w->header_done = true;
            }
            ddts_csv_history_destroy(h);
        }
        ddts_free(text);
        if (st != DDTS_OK)
            goto fail;
    }
    w->fp = fopen(path, w->header_done ? "ab" : "wb");
    if (w->fp == NULL) {
        st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot open for writing", path);
        goto fail;
    }
    *out = w;
    return DDTS_OK;
fail:
    ddts_history_writer_close(w);
    return st;
}

static bool valid_key(const char *k)
{
    if (k == NULL || k[0] == '\0')
        return false;
    for (const char *p = k; *p != '\0'; p++)
        if (*p == ',' || *p == '"' || *p == '\n' || *p == '\r')
            return false;
    return true;
}

enum ddts_status ddts_history_writer_row(struct ddts_history_writer *w, int64_t epoch,
                                         const struct ddts_metric *metrics, size_t n_metrics,
                                         struct ddts_error *err)
{
    for (size_t i = 0; i < n_metrics; i++)
        if (!valid_key(metrics[i].name))
            return ddts_error_set(err, DDTS_EINVAL, "%s: metric name '%s' cannot be a column",
                                  w->path, metrics[i].name ? metrics[i].name : "(null)");
    if (!w->header_done) {
        if (n_metrics > DDTS_MAX_HISTORY_COLUMNS)
            return ddts_error_set(err, DDTS_ELIMIT, "%s: %zu metrics (max %d)", w->path, n_metrics,
                                  DDTS_MAX_HISTORY_COLUMNS);
        char **keys = ddts_calloc(n_metrics ? n_metrics : 1, sizeof *keys);
        if (keys == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", w->path);
        for (size_t i = 0; i < n_metrics; i++) {
            keys[i] = ddts_strdup(metrics[i].name);
            if (keys[i] == NULL) {
                free_keys(keys, n_metrics);
                return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", w->path);
            }
        }
        qsort(keys, n_metrics, sizeof *keys, cmp_key);
        free_keys(w->keys, w->n_keys);
        w->keys = keys;
        w->n_keys = n_metrics;
        fputs("epoch", w->fp);
        for (size_t i = 0; i < n_metrics; i++)
            fprintf(w->fp, ",%s", keys[i]);
        fputs("\r\n", w->fp);
        w->header_done = true;
    }
    fprintf(w->fp, "%lld", (long long)epoch);
    for (size_t k = 0; k < w->n_keys; k++) {
        const struct ddts_metric *m = NULL;
        for (size_t i = 0; i < n_metrics && m == NULL; i++)
            if (strcmp(metrics[i].name, w->keys[k]) == 0)
                m = &metrics[i];
        char num[32];
        if (m != NULL)
            ddts_format_pyfloat(m->value, num);
        fprintf(w->fp, ",%s", m != NULL ? num : "NA");
    }
    fputs("\r\n", w->fp);
    if (fflush(w->fp) != 0 || ferror(w->fp))
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: write failed", w->path);
    return DDTS_OK;
}

void ddts_csv_history_destroy(struct ddts_csv_history *h)
{
    if (h == NULL)
        return;
    free_keys(h->keys, h->n_keys);
    ddts_free(h->epochs);
    ddts_free(h->values);
    ddts_free(h);
}

long ddts_csv_history_column(const struct ddts_csv_history *h, const char *key)
{
    for (size_t i = 0; h != NULL && i < h->n_keys; i++)
        if (strcmp(h->keys[i], key) == 0)
            return (long)i;
    return -1;
}

/* One line of the buffer: [*pos, end of line), without "\r\n". */
static bool next_line(const char *text, size_t n, size_t *pos, size_t *start, size_t *len)
{
    if (*pos >= n)
        return false;
    *start = *pos;
    const char *nl = memchr(text + *pos, '\n', n - *pos);
    size_t stop = nl != NULL ? (size_t)(nl - text) : n;
    *pos = nl != NULL ? stop + 1 : n;
    size_t l = stop - *start;
    if (l > 0 && text[*start + l - 1] == '\r')
        l--;
    *len = l;
    return true;
}

/* Counts the fields of a line (commas + 1). */
static size_t count_fields(const char *s, size_t len)
{
    size_t c = 1;
    for (size_t i = 0; i < len; i++)
        c += s[i] == ',';
    return c;
}

enum ddts_status ddts_csv_history_parse(const char *name, const char *text, size_t nbytes,
                                        struct ddts_csv_history **out, struct ddts_error *err)
{
    *out = NULL;
    enum ddts_status st = DDTS_OK;
    struct ddts_csv_history *h = ddts_calloc(1, sizeof *h);
    if (h == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
    size_t pos = 0, start = 0, len = 0;
    if (!next_line(text, nbytes, &pos, &start, &len) || len < 5 ||
        memcmp(text + start, "epoch", 5) != 0 || (len > 5 && text[start + 5] != ',')) {
        st = ddts_error_set(err, DDTS_EFORMAT, "%s: row 1: the header does not start with 'epoch'",
                            name);
        goto fail;
    }
    size_t n_fields = count_fields(text + start, len);
    if (n_fields - 1 > DDTS_MAX_HISTORY_COLUMNS) {
        st = ddts_error_set(err, DDTS_ELIMIT, "%s: %zu columns (max %d)", name, n_fields - 1,
                            DDTS_MAX_HISTORY_COLUMNS);
        goto fail;
    }
    h->n_keys = n_fields - 1;
    h->keys = ddts_calloc(h->n_keys ? h->n_keys : 1, sizeof *h->keys);
    if (h->keys == NULL)
        goto oom;
    const char *p = text + start + 5;
    const char *line_end = text + start + len;
    for (size_t k = 0; k < h->n_keys; k++) {
        p++; /* the comma */
        const char *q = memchr(p, ',', (size_t)(line_end - p));
        if (q == NULL)
            q = line_end;
        if (q == p) {
            st = ddts_error_set(err, DDTS_EFORMAT, "%s: row 1, column %zu: empty column name", name,
                                k + 2);
            goto fail;
        }
        h->keys[k] = ddts_strndup(p, (size_t)(q - p));
        if (h->keys[k] == NULL)
            goto oom;
        p = q;
    }
    /* Rows: at most one per line; count the lines for one allocation. */
    size_t max_rows = 0;
    for (size_t i = pos; i < nbytes; i++)
        max_rows += text[i] == '\n';
    max_rows += 1;
    size_t n_values;
    if (ddts_size_mul(max_rows, h->n_keys ? h->n_keys : 1, &n_values) != 0)
        goto oom;
    h->epochs = ddts_mallocarray(max_rows, sizeof *h->epochs);
    h->values = ddts_mallocarray(n_values, sizeof *h->values);
    if (h->epochs == NULL || h->values == NULL)
        goto oom;
    size_t row = 1;
    while (next_line(text, nbytes, &pos, &start, &len)) {
        row++;
        if (len == 0)
            continue; /* a blank line (the end of the file) */
        const char *s = text + start, *e = s + len;
        if (count_fields(s, len) != n_fields) {
            st = ddts_error_set(err, DDTS_EFORMAT, "%s: row %zu: %zu fields, the header has %zu",
                                name, row, count_fields(s, len), n_fields);
            goto fail;
        }
        double *vals = h->values + h->n_epochs * h->n_keys;
        for (size_t c = 0; c < n_fields; c++) {
            const char *q = memchr(s, ',', (size_t)(e - s));
            if (q == NULL)
                q = e;
            char cell[64];
            size_t cl = (size_t)(q - s);
            if (cl >= sizeof cell) {
                st = ddts_error_set(err, DDTS_EFORMAT, "%s: row %zu, column %zu: cell too long",
                                    name, row, c + 1);
                goto fail;
            }
            memcpy(cell, s, cl);
            cell[cl] = '\0';
            char *end = NULL;
            if (c == 0) {
                errno = 0;
                long long ep = strtoll(cell, &end, 10);
                if (cl == 0 || *end != '\0' || errno != 0 || ep < 0) {
                    st = ddts_error_set(err, DDTS_EFORMAT,
                                        "%s: row %zu, column 1 (epoch): '%s' is not an epoch", name,
                                        row, cell);
                    goto fail;
                }
                h->epochs[h->n_epochs] = ep;
            } else if (cl == 0 || strcmp(cell, "NA") == 0) {
                vals[c - 1] = NAN;
            } else {
                double v = strtod(cell, &end);
                if (*end != '\0') {
                    st = ddts_error_set(err, DDTS_EFORMAT,
                                        "%s: row %zu, column %zu (%s): '%s' is not a number", name,
                                        row, c + 1, h->keys[c - 1], cell);
                    goto fail;
                }
                vals[c - 1] = v;
            }
            s = q + 1;
        }
        h->n_epochs++;
    }
    *out = h;
    return DDTS_OK;
oom:
    st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
fail:
    ddts_csv_history_destroy(h);
    return st;
}

enum ddts_status ddts_csv_history_read(const char *path, struct ddts_csv_history **out,
                                       struct ddts_error *err)
{
    *out = NULL;
    char *text = NULL;
    size_t n = 0;
    enum ddts_status st = ddts_read_file(path, DDTS_MAX_HISTORY_BYTES, &text, &n, err);
    if (st == DDTS_OK)
        st = ddts_csv_history_parse(path, text, n, out, err);
    ddts_free(text);
    return st;
}

enum ddts_status ddts_history_keep_epochs(const char *path, long n_epochs, struct ddts_error *err)
{
    char *text = NULL;
    size_t n = 0;
    if (access(path, F_OK) != 0)
        return DDTS_OK;
    enum ddts_status st = ddts_read_file(path, (size_t)1 << 30, &text, &n, err);
    if (st != DDTS_OK)
        return st;
    /* The header, then each row while its epoch (the first field) is below n_epochs. */
    size_t keep = 0;
    for (size_t line = 0; keep < n; line++) {
        const char *eol = memchr(text + keep, '\n', n - keep);
        size_t end = eol != NULL ? (size_t)(eol - text) + 1 : n;
        if (line > 0) {
            char *stop = NULL;
            long epoch = strtol(text + keep, &stop, 10);
            if (stop == text + keep || *stop != ',' || epoch < 0 || epoch >= n_epochs)
                break;
        }
        keep = end;
    }
    if (keep < n)
        st = ddts_write_file_atomic(path, text, keep, err);
    ddts_free(text);
    return st;
}
