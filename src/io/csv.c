/*
 * CSV (RFC 4180) to a float64 (rows, columns) array.
 *
 * Fields are separated by the detected delimiter and records by CRLF, LF or
 * CR; a quoted field may hold delimiters, newlines and doubled quotes. A
 * UTF-8 BOM is skipped and blank records are ignored (as pandas does). The
 * first record is a header when any of its fields is not a number. Every
 * other field must be a number in the "C" locale's syntax (ddts__parse_double);
 * an empty or non-numeric field is an error naming the row and column.
 *
 * Two passes over the bytes: the first validates the structure and counts
 * the records, the second parses numbers into the array, allocated once.
 */
#include <string.h>

#include "io.h"

struct csv {
    const char *p, *end;
    char delim;
    const char *name;
    size_t row;  /* 1-based record number, header included */
    size_t line; /* 1-based line number of the record's start */
    size_t cur_line;
};

/* Reads one field starting at c->p. Sets [*s, *s + *n) to the raw field
 * (quotes removed when the field is quoted without doubled quotes; otherwise
 * the unescaped copy in scratch), *last when the record ends after it.
 * Returns 0, or -1 for a malformed quoted field. */
static int next_field(struct csv *c, char *scratch, size_t scratch_n, const char **s, size_t *n,
                      int *last, int *too_long)
{
    *too_long = 0;
    const char *p = c->p;
    if (p < c->end && *p == '"') {
        p++;
        size_t out = 0;
        const char *start = p;
        int escaped = 0;
        for (;;) {
            if (p >= c->end)
                return -1;
            if (*p == '"') {
                if (p + 1 < c->end && p[1] == '"') {
                    if (!escaped) {
                        /* Switch to the scratch copy from here on. */
                        size_t k = (size_t)(p - start);
                        if (k > scratch_n) {
                            *too_long = 1;
                            return -1;
                        }
                        memcpy(scratch, start, k);
                        out = k;
                        escaped = 1;
                    }
                    if (out >= scratch_n) {
                        *too_long = 1;
                        return -1;
                    }
                    scratch[out++] = '"';
                    p += 2;
                    continue;
                }
                break;
            }
            if (*p == '\n')
                c->cur_line++;
            if (escaped) {
                if (out >= scratch_n) {
                    *too_long = 1;
                    return -1;
                }
                scratch[out++] = *p;
            }
            p++;
        }
        if (escaped) {
            *s = scratch;
            *n = out;
        } else {
            *s = start;
            *n = (size_t)(p - start);
        }
        p++; /* closing quote */
        /* Only spaces may follow a closing quote before the delimiter. */
        while (p < c->end && *p == ' ')
            p++;
        if (p < c->end && *p != c->delim && *p != '\n' && *p != '\r')
            return -1;
    } else {
        const char *start = p;
        while (p < c->end && *p != c->delim && *p != '\n' && *p != '\r') {
            if (*p == '"')
                return -1;
            p++;
        }
        *s = start;
        *n = (size_t)(p - start);
    }
    if (p < c->end && *p == c->delim) {
        c->p = p + 1;
        *last = 0;
    } else {
        if (p < c->end && *p == '\r')
            p++;
        if (p < c->end && *p == '\n')
            p++;
        c->cur_line++;
        c->p = p;
        *last = 1;
    }
    return 0;
}

/* True when the record at p is blank (only spaces, then a newline or the end). */
static int skip_blank(struct csv *c)
{
    const char *p = c->p;
    while (p < c->end && (*p == ' ' || *p == '\t'))
        p++;
    if (p >= c->end) {
        c->p = p;
        return 1;
    }
    if (*p == '\n' || *p == '\r') {
        if (*p == '\r')
            p++;
        if (p < c->end && *p == '\n')
            p++;
        c->p = p;
        c->cur_line++;
        return 1;
    }
    return 0;
}

/* Counts delimiter candidates outside quotes on the first few lines and picks
 * the one whose count is the same, and non-zero, on every line. */
static char detect_delim(const char *p, const char *end)
{
    static const char cands[4] = {',', ';', '\t', '|'};
    size_t counts[8][4] = {{0}};
    int lines = 0, inq = 0;
    for (; p < end && lines < 8; p++) {
        if (*p == '"')
            inq = !inq;
        else if (!inq && (*p == '\n' || *p == '\r')) {
            if (*p == '\r' && p + 1 < end && p[1] == '\n')
                p++;
            lines++;
        } else if (!inq) {
            for (int k = 0; k < 4; k++)
                if (*p == cands[k])
                    counts[lines][k]++;
        }
    }
    if (p >= end && lines < 8)
        lines++; /* the last line without a newline */
    int best = -1;
    for (int k = 0; k < 4; k++) {
        int ok = counts[0][k] > 0;
        for (int l = 1; l < lines && ok; l++)
            if (counts[l][k] != counts[0][k] && !(l == lines - 1 && counts[l][k] == 0))
                ok = 0;
        if (ok && (best < 0 || counts[0][k] > counts[0][best]))
            best = k;
    }
    if (best < 0)
        for (int k = 0; k < 4; k++)
            if (counts[0][k] > 0 && (best < 0 || counts[0][k] > counts[0][best]))
                best = k;
    return best < 0 ? ',' : cands[best];
}

static void show(const char *s, size_t n, char *buf, size_t bn)
{
    size_t k = n < bn - 4 ? n : bn - 4;
    memcpy(buf, s, k);
    if (k < n)
        memcpy(buf + k, "...", 3), k += 3;
    buf[k] = '\0';
}

enum ddts_status ddts_csv_parse(const void *buf, size_t nbytes, const char *name,
                                struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if (name == NULL)
        name = "csv";
    const char *text = buf;
    if (nbytes >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3;
        nbytes -= 3;
    }
    size_t scratch_n = DDTS_MAX_CELL_BYTES < nbytes ? DDTS_MAX_CELL_BYTES : nbytes;
    char *scratch = ddts_malloc(scratch_n + 1);
    struct ddts_array *a = NULL;
    enum ddts_status st = DDTS_OK;
    if (scratch == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
    char delim = detect_delim(text, text + nbytes);
    size_t n_cols = 0, n_rows = 0;
    int header = 0;
    double *data = NULL;
    void *loc = NULL; /* the "C" locale of the number parser's slow path */
    for (int pass = 0; pass < 2; pass++) {
        struct csv c = {text, text + nbytes, delim, name, 0, 1, 1};
        size_t r = 0;
        while (c.p < c.end) {
            if (skip_blank(&c))
                continue;
            c.row++;
            c.line = c.cur_line;
            size_t col = 0;
            int last = 0;
            int is_header = pass == 0 ? c.row == 1 : (header && c.row == 1);
            int any_text = 0;
            while (!last) {
                const char *s;
                size_t n;
                int too_long;
                if (next_field(&c, scratch, scratch_n, &s, &n, &last, &too_long) != 0) {
                    st = too_long ? ddts_error_set(err, DDTS_ELIMIT,
                                                   "%s: row %zu (line %zu), column %zu: cell "
                                                   "above %u bytes",
                                                   name, c.row, c.line, col + 1,
                                                   (unsigned)DDTS_MAX_CELL_BYTES)
                                  : ddts_error_set(err, DDTS_EFORMAT,
                                                   "%s: row %zu (line %zu), column %zu: "
                                                   "malformed quoted field",
                                                   name, c.row, c.line, col + 1);
                    goto out;
                }
                col++;
                if (col > DDTS_MAX_COLUMNS) {
                    st = ddts_error_set(err, DDTS_ELIMIT, "%s: row %zu: more than %u columns", name,
                                        c.row, (unsigned)DDTS_MAX_COLUMNS);
                    goto out;
                }
                if (n > DDTS_MAX_CELL_BYTES) {
                    st = ddts_error_set(err, DDTS_ELIMIT,
                                        "%s: row %zu, column %zu: cell above %u bytes", name, c.row,
                                        col, (unsigned)DDTS_MAX_CELL_BYTES);
                    goto out;
                }
                double v;
                if (pass == 0) {
                    /* Numbers are parsed once, in pass 1; here only the header is judged. */
                    if (is_header && n > 0 && ddts__parse_double(s, n, &v, &loc) != 0)
                        any_text = 1;
                    continue;
                }
                if (is_header)
                    continue;
                if (col > n_cols)
                    break; /* reported in pass 0 */
                int ok = ddts__parse_double(s, n, &v, &loc) == 0;
                if (!ok) {
                    char shown[48];
                    show(s, n, shown, sizeof shown);
                    int empty = 1;
                    for (size_t k = 0; k < n; k++)
                        if (s[k] != ' ' && s[k] != '\t')
                            empty = 0;
                    st = empty ? ddts_error_set(err, DDTS_EFORMAT,
                                                "%s: row %zu (line %zu), column %zu: empty cell "
                                                "(missing value)",
                                                name, c.row, c.line, col)
                               : ddts_error_set(err, DDTS_EFORMAT,
                                                "%s: row %zu (line %zu), column %zu: '%s' is not "
                                                "a number",
                                                name, c.row, c.line, col, shown);
                    goto out;
                }
                data[r * n_cols + col - 1] = v;
            }
            if (pass == 0) {
                if (c.row == 1) {
                    n_cols = col;
                    header = any_text;
                } else if (col != n_cols) {
                    st = ddts_error_set(err, DDTS_EFORMAT,
                                        "%s: row %zu (line %zu) has %zu columns, row 1 has %zu",
                                        name, c.row, c.line, col, n_cols);
                    goto out;
                }
                if (!(c.row == 1 && header))
                    n_rows++;
            } else if (!(c.row == 1 && header)) {
                r++;
            }
        }
        if (pass == 0) {
            if (n_rows == 0) {
                st = ddts_error_set(err, DDTS_EFORMAT, "%s: no data rows", name);
                goto out;
            }
            int64_t shape[2] = {(int64_t)n_rows, (int64_t)n_cols};
            st = ddts_array_create(DDTS_F64, 2, shape, &a, err);
            if (st != DDTS_OK) {
                ddts_error_prefix(err, "%s: ", name);
                goto out;
            }
            data = a->data;
        }
    }
out:
    ddts__parse_locale_free(loc);
    ddts_free(scratch);
    if (st != DDTS_OK) {
        ddts_array_destroy(a);
        return st;
    }
    *out = a;
    return DDTS_OK;
}
