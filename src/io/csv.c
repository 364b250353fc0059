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
    const uint8_t *stop; /* stop[b]: b ends an unquoted field (delimiter, CR, LF, quote) */
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
        while (p < c->end && !c->stop[(uint8_t)*p])
            p++;
        if (p < c->end && *p == '"')
            return -1;
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

/* Data rows per chunk of pass 1; chunks are parsed in parallel (OpenMP). */
#define CHUNK_ROWS 4096

/* Where a chunk of pass 1 starts: a record boundary and its row and line. */
struct chunk {
    const char *p;
    size_t row, line;
    enum ddts_status st;
    struct ddts_error err;
};

static int is_blank(const char *s, size_t n)
{
    for (size_t k = 0; k < n; k++)
        if (s[k] != ' ' && s[k] != '\t')
            return 0;
    return 1;
}

static enum ddts_status empty_error(const struct csv *c, size_t col, struct ddts_error *err)
{
    return ddts_error_set(err, DDTS_EFORMAT,
                          "%s: row %zu (line %zu), column %zu: empty cell (missing value)", c->name,
                          c->row, c->line, col);
}

static enum ddts_status field_error(const struct csv *c, int too_long, size_t col,
                                    struct ddts_error *err)
{
    if (too_long)
        return ddts_error_set(err, DDTS_ELIMIT,
                              "%s: row %zu (line %zu), column %zu: cell above %u bytes", c->name,
                              c->row, c->line, col, (unsigned)DDTS_MAX_CELL_BYTES);
    return ddts_error_set(err, DDTS_EFORMAT,
                          "%s: row %zu (line %zu), column %zu: malformed quoted field", c->name,
                          c->row, c->line, col);
}

/*
 * Pass 0: the structure. Counts columns (row 1) and data rows, checks every
 * record's field count, judges whether row 1 is a header, and records where
 * every CHUNK_ROWS-th data row starts. Numbers are parsed in pass 1 only.
 */
static enum ddts_status pass0(struct csv *c, char *scratch, size_t scratch_n, void **loc,
                              size_t *n_rows, size_t *n_cols, int *header, struct chunk **chunks,
                              size_t *n_chunks, struct ddts_error *err)
{
    size_t cap = 16;
    *n_rows = 0;
    *n_cols = 0;
    *header = 0;
    *n_chunks = 1;
    *chunks = ddts_calloc(cap, sizeof **chunks);
    if (*chunks == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", c->name);
    (*chunks)[0].p = c->p;
    (*chunks)[0].row = 0;
    (*chunks)[0].line = 1;
    while (c->p < c->end) {
        if (skip_blank(c))
            continue;
        if (*n_rows > 0 && *n_rows % CHUNK_ROWS == 0) {
            if (*n_chunks == cap) {
                struct chunk *g = ddts_realloc(*chunks, 2 * cap * sizeof *g);
                if (g == NULL)
                    return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", c->name);
                memset(g + cap, 0, cap * sizeof *g);
                *chunks = g;
                cap *= 2;
            }
            struct chunk *k = &(*chunks)[(*n_chunks)++];
            k->p = c->p;
            k->row = c->row;
            k->line = c->cur_line;
        }
        c->row++;
        c->line = c->cur_line;
        size_t col = 0;
        int last = 0, any_text = 0;
        while (!last) {
            const char *s;
            size_t n;
            int too_long;
            if (next_field(c, scratch, scratch_n, &s, &n, &last, &too_long) != 0)
                return field_error(c, too_long, col + 1, err);
            if (++col > DDTS_MAX_COLUMNS)
                return ddts_error_set(err, DDTS_ELIMIT, "%s: row %zu: more than %u columns",
                                      c->name, c->row, (unsigned)DDTS_MAX_COLUMNS);
            double v;
            if (c->row == 1 && n > 0 && ddts__parse_double(s, n, &v, loc) != 0)
                any_text = 1;
            /* Empty cells are refused here already, so that a file of delimiters
             * cannot make us allocate 8 bytes per byte of input. */
            if (c->row > 1 && is_blank(s, n))
                return empty_error(c, col, err);
        }
        if (c->row == 1) {
            *n_cols = col;
            *header = any_text;
        } else if (col != *n_cols) {
            return ddts_error_set(err, DDTS_EFORMAT,
                                  "%s: row %zu (line %zu) has %zu columns, row 1 has %zu", c->name,
                                  c->row, c->line, col, *n_cols);
        }
        if (!(c->row == 1 && *header))
            (*n_rows)++;
    }
    if (*n_rows == 0)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: no data rows", c->name);
    return DDTS_OK;
}

/* Pass 1 over one chunk: parses `max_rows` data rows into data (n_cols wide),
 * skipping row 1 when it is the header. */
static enum ddts_status pass1(struct csv *c, int header, size_t n_cols, double *data,
                              size_t max_rows, size_t scratch_n, struct ddts_error *err)
{
    char *scratch = NULL;
    void *loc = NULL;
    enum ddts_status st = DDTS_OK;
    size_t r = 0;
    scratch = ddts_malloc(scratch_n + 1);
    if (scratch == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", c->name);
    while (c->p < c->end && r < max_rows) {
        if (skip_blank(c))
            continue;
        c->row++;
        c->line = c->cur_line;
        int is_header = header && c->row == 1;
        size_t col = 0;
        int last = 0;
        while (!last) {
            const char *s;
            size_t n;
            int too_long;
            if (next_field(c, scratch, scratch_n, &s, &n, &last, &too_long) != 0) {
                st = field_error(c, too_long, col + 1, err);
                goto out;
            }
            col++;
            if (is_header || col > n_cols)
                continue; /* a wrong field count was reported in pass 0 */
            double v;
            if (ddts__parse_double(s, n, &v, &loc) != 0) {
                char shown[48];
                show(s, n, shown, sizeof shown);
                st = is_blank(s, n) ? empty_error(c, col, err)
                                    : ddts_error_set(err, DDTS_EFORMAT,
                                                     "%s: row %zu (line %zu), column %zu: '%s' is "
                                                     "not a number",
                                                     c->name, c->row, c->line, col, shown);
                goto out;
            }
            data[r * n_cols + col - 1] = v;
        }
        if (!is_header)
            r++;
    }
out:
    ddts__parse_locale_free(loc);
    ddts_free(scratch);
    return st;
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
    struct chunk *chunks = NULL;
    struct ddts_array *a = NULL;
    void *loc = NULL; /* the "C" locale of the number parser's slow path */
    enum ddts_status st;
    if (scratch == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
    char delim = detect_delim(text, text + nbytes);
    size_t n_rows, n_cols, n_chunks = 0;
    int header;
    uint8_t stop[256] = {0};
    stop[(uint8_t)delim] = stop['\n'] = stop['\r'] = stop['"'] = 1;
    struct csv c0 = {text, text + nbytes, delim, name, 0, 1, 1, stop};
    st = pass0(&c0, scratch, scratch_n, &loc, &n_rows, &n_cols, &header, &chunks, &n_chunks, err);
    if (st != DDTS_OK)
        goto out;
    int64_t shape[2] = {(int64_t)n_rows, (int64_t)n_cols};
    st = ddts_array_create(DDTS_F64, 2, shape, &a, err);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "%s: ", name);
        goto out;
    }
    /* Chunks are independent: each starts at a record boundary found in pass 0
     * with its own row and line numbers, so messages are the same as serially;
     * the first failing chunk in file order reports. */
    double *data = a->data;
#pragma omp parallel for schedule(dynamic, 1) if (n_chunks > 1)
    for (size_t k = 0; k < n_chunks; k++) {
        struct chunk *ch = &chunks[k];
        struct csv c = {ch->p, text + nbytes, delim, name, ch->row, ch->line, ch->line, stop};
        size_t r0 = k * CHUNK_ROWS;
        size_t max_rows = n_rows - r0 < CHUNK_ROWS ? n_rows - r0 : CHUNK_ROWS;
        ch->st = pass1(&c, header, n_cols, data + r0 * n_cols, max_rows, scratch_n, &ch->err);
    }
    for (size_t k = 0; k < n_chunks; k++) {
        if (chunks[k].st != DDTS_OK) {
            st = chunks[k].st;
            if (err != NULL)
                *err = chunks[k].err;
            break;
        }
    }
out:
    ddts__parse_locale_free(loc);
    ddts_free(scratch);
    ddts_free(chunks);
    if (st != DDTS_OK) {
        ddts_array_destroy(a);
        return st;
    }
    *out = a;
    return DDTS_OK;
}
