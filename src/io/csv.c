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
 * the records, the second parses numbers into the array, allocated once,
 * in chunks of CHUNK_ROWS rows on every OpenMP thread. A file without
 * quotes takes a fast path (see pass0_fast): pass 0 only finds lines, and
 * pass 1 parses numbers in place and checks the field counts.
 */
#include <math.h>
#include <stdio.h>
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
    const char *start1;  /* where row 1 starts (fast path) */
    char **names;        /* the header's fields (shortened), or NULL: messages name columns */
    int finite;          /* NaN and infinities are errors (DDTS_LOAD_FINITE) */
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

/* "column 4" or, in a file with a header, "column 4 ('species')". */
static const char *col_text(const struct csv *c, size_t col, char *buf, size_t cap)
{
    size_t k = 0; /* names ends with NULL; a record may have more fields than the header */
    while (c->names != NULL && k + 1 < col && c->names[k] != NULL)
        k++;
    if (c->names != NULL && k + 1 == col && c->names[k] != NULL)
        snprintf(buf, cap, "column %zu ('%s')", col, c->names[k]);
    else
        snprintf(buf, cap, "column %zu", col);
    return buf;
}

#define COL_TEXT_MAX 96

static enum ddts_status empty_error(const struct csv *c, size_t col, struct ddts_error *err)
{
    char ct[COL_TEXT_MAX];
    return ddts_error_set(err, DDTS_EFORMAT,
                          "%s: row %zu (line %zu), %s: empty cell (missing value)", c->name, c->row,
                          c->line, col_text(c, col, ct, sizeof ct));
}

/* A number that was parsed: an error when it is NaN or infinite and c->finite. */
static enum ddts_status finite_check(const struct csv *c, size_t col, double v, const char *s,
                                     size_t n, struct ddts_error *err)
{
    if (!c->finite || isfinite(v))
        return DDTS_OK;
    char shown[48], ct[COL_TEXT_MAX];
    show(s, n, shown, sizeof shown);
    return ddts_error_set(err, DDTS_EFORMAT,
                          "%s: row %zu (line %zu), %s: '%s' is not a finite number (training data "
                          "must not hold NaN or infinities)",
                          c->name, c->row, c->line, col_text(c, col, ct, sizeof ct), shown);
}

static enum ddts_status field_error(const struct csv *c, int too_long, size_t col,
                                    struct ddts_error *err)
{
    char ct[COL_TEXT_MAX];
    col_text(c, col, ct, sizeof ct);
    if (too_long)
        return ddts_error_set(err, DDTS_ELIMIT, "%s: row %zu (line %zu), %s: cell above %u bytes",
                              c->name, c->row, c->line, ct, (unsigned)DDTS_MAX_CELL_BYTES);
    return ddts_error_set(err, DDTS_EFORMAT, "%s: row %zu (line %zu), %s: malformed quoted field",
                          c->name, c->row, c->line, ct);
}

/*
 * Whether the record at rec is the column index 0,1,...,K-1 (K >= 2) that
 * pandas.DataFrame.to_csv writes as the header of unnamed columns: the
 * exact bytes, and no other record among the next INDEX_LOOKAHEAD lines is
 * the same text (one-hot rows "0,1" of a 2-column file are data then).
 */
#define INDEX_LOOKAHEAD 1000

static int is_index_header(const char *rec, const char *end, char delim, size_t n_cols)
{
    if (n_cols < 2)
        return 0;
    const char *p = rec;
    for (size_t k = 0; k < n_cols; k++) {
        char num[24];
        int w = snprintf(num, sizeof num, "%zu", k);
        if (w <= 0 || end - p < w || memcmp(p, num, (size_t)w) != 0)
            return 0;
        p += w;
        if (k + 1 < n_cols) {
            if (p >= end || *p != delim)
                return 0;
            p++;
        }
    }
    if (p < end && *p != '\r' && *p != '\n')
        return 0;
    size_t len = (size_t)(p - rec);
    for (int l = 0; l < INDEX_LOOKAHEAD && p < end; l++) {
        const char *q = memchr(p, '\n', (size_t)(end - p));
        p = q ? q + 1 : end;
        const char *e = memchr(p, '\n', (size_t)(end - p));
        size_t n = (size_t)((e ? e : end) - p);
        if (n > 0 && p[n - 1] == '\r')
            n--;
        if (n == len && memcmp(p, rec, len) == 0)
            return 0;
    }
    return 1;
}

/*
 * The header's fields from rec (n_cols of them), shortened to 40 bytes for
 * messages: one allocation (pointers, then the strings); NULL when out of
 * memory (messages then give numbers only).
 */
static char **header_names(const struct csv *c0, const char *rec, size_t n_cols, char *scratch,
                           size_t scratch_n)
{
    struct csv c = *c0;
    c.p = rec;
    size_t total;
    if (__builtin_mul_overflow(n_cols + 1, sizeof(char *) + 48, &total))
        return NULL;
    char **v = ddts_malloc(total);
    if (v == NULL)
        return NULL;
    v[n_cols] = NULL;
    char *text = (char *)(v + n_cols + 1);
    int last = 0;
    for (size_t k = 0; k < n_cols; k++) {
        const char *s = "";
        size_t n = 0;
        int too_long = 0;
        if (!last && next_field(&c, scratch, scratch_n, &s, &n, &last, &too_long) != 0) {
            s = "";
            n = 0;
            last = 1;
        }
        v[k] = text + k * 48;
        show(s, n, v[k], 48);
        for (char *q = v[k]; *q != '\0'; q++)
            if ((unsigned char)*q < 0x20)
                *q = ' ';
    }
    return v;
}

/*
 * One record's fields from c->p: their count and, with want_text, whether a
 * non-empty field is not a number (row 1 is then a header); with no_blank an
 * empty field is an error.
 */
static enum ddts_status read_record(struct csv *c, char *scratch, size_t scratch_n, void **loc,
                                    int want_text, int no_blank, size_t *n_cols, int *any_text,
                                    struct ddts_error *err)
{
    size_t col = 0;
    int last = 0;
    *any_text = 0;
    const char *rec = c->p;
    while (!last) {
        const char *s;
        size_t n;
        int too_long;
        if (next_field(c, scratch, scratch_n, &s, &n, &last, &too_long) != 0)
            return field_error(c, too_long, col + 1, err);
        if (++col > DDTS_MAX_COLUMNS)
            return ddts_error_set(err, DDTS_ELIMIT, "%s: row %zu: more than %u columns", c->name,
                                  c->row, (unsigned)DDTS_MAX_COLUMNS);
        double v;
        if (want_text && n > 0 && ddts__parse_double(s, n, &v, loc) != 0)
            *any_text = 1;
        if (no_blank && is_blank(s, n))
            return empty_error(c, col, err);
    }
    *n_cols = col;
    if (want_text && !*any_text)
        *any_text = is_index_header(rec, c->end, c->delim, col);
    if (want_text && *any_text) {
        ddts_free(c->names);
        c->names = header_names(c, rec, col, scratch, scratch_n);
    }
    return DDTS_OK;
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
        size_t col;
        int any_text;
        /* Empty cells are refused here already, so that a file of delimiters
         * cannot make us allocate 8 bytes per byte of input. */
        enum ddts_status st =
            read_record(c, scratch, scratch_n, loc, c->row == 1, c->row > 1, &col, &any_text, err);
        if (st != DDTS_OK)
            return st;
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
                char shown[48], ct[COL_TEXT_MAX];
                show(s, n, shown, sizeof shown);
                st = is_blank(s, n) ? empty_error(c, col, err)
                                    : ddts_error_set(err, DDTS_EFORMAT,
                                                     "%s: row %zu (line %zu), %s: '%s' is not a "
                                                     "number",
                                                     c->name, c->row, c->line,
                                                     col_text(c, col, ct, sizeof ct), shown);
                goto out;
            }
            st = finite_check(c, col, v, s, n, err);
            if (st != DDTS_OK)
                goto out;
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

/*
 * The quote-free fast path. Most numeric CSV files hold no '"' and no lone
 * CR: then every record is one line, so pass 0 only finds line starts
 * (memchr) and counts the non-blank ones, and pass 1 parses each number
 * straight from the bytes with fast_number, which stops at the delimiter.
 * Anything fast_number does not take (spaces, "inf", more than 19 digits,
 * exponents outside the exact range) is handed to next_field's rules and
 * ddts__parse_double, so results and messages are those of the general path.
 */
static const double pow10_tab[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* Clinger's fast path on [p, end) up to a field end: *e is where it stopped.
 * Returns 1 and *out when the decimal is exact in one IEEE operation (the
 * same arithmetic as ddts__parse_double's fast path, so the same bits),
 * 0 when the general parser must decide. */
static inline int fast_number(const char *p, const char *end, char delim, double *out,
                              const char **e)
{
    const char *s = p;
    int neg = 0;
    if (s < end && (*s == '-' || *s == '+')) {
        neg = *s == '-';
        s++;
    }
    uint64_t m = 0;
    const char *d0 = s;
    while (s < end && (unsigned)(*s - '0') < 10u) {
        m = m * 10 + (uint64_t)(*s - '0');
        s++;
    }
    size_t n_int = (size_t)(s - d0), n_frac = 0;
    if (s < end && *s == '.') {
        s++;
        const char *f0 = s;
        while (s < end && (unsigned)(*s - '0') < 10u) {
            m = m * 10 + (uint64_t)(*s - '0');
            s++;
        }
        n_frac = (size_t)(s - f0);
    }
    /* 19 digits always fit in 64 bits; counting leading zeros only sends a
     * few more strings to the general parser. */
    if (n_int + n_frac == 0 || n_int + n_frac > 19)
        return 0;
    int exp10 = -(int)n_frac;
    if (s < end && (*s == 'e' || *s == 'E')) {
        s++;
        int eneg = 0, x = 0;
        if (s < end && (*s == '-' || *s == '+')) {
            eneg = *s == '-';
            s++;
        }
        const char *x0 = s;
        while (s < end && (unsigned)(*s - '0') < 10u && s - x0 < 4) {
            x = x * 10 + (*s - '0');
            s++;
        }
        if (s == x0)
            return 0;
        exp10 += eneg ? -x : x;
    }
    if (s < end && *s != delim && *s != '\n' && *s != '\r')
        return 0;
    double v;
    if (m == 0)
        v = 0.0;
    else if (m <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22)
        v = exp10 >= 0 ? (double)m * pow10_tab[exp10] : (double)m / pow10_tab[-exp10];
    else
        return 0;
    *out = neg ? -v : v;
    *e = s;
    return 1;
}

#ifdef __SSE2__
#include <emmintrin.h>

static const uint64_t pow10_u64[9] = {1,      10,      100,      1000,     10000,
                                      100000, 1000000, 10000000, 100000000};

/* The value of the n (1..8) ASCII digits at q, 8 bytes readable: one load,
 * no loop. Bytes past the digits may borrow in the subtraction, but only
 * into higher bytes, which the shift drops; then the three multiply steps
 * of simdjson's parse_eight_digits, byte 0 most significant. */
static inline uint64_t swar_digits(const char *q, unsigned n)
{
    uint64_t v;
    memcpy(&v, q, 8);
    v -= 0x3030303030303030ULL;
    v <<= 8 * (8 - n);
    v = v * 10 + (v >> 8);
    v = ((v & 0x000000FF000000FFULL) * (100 + (1000000ULL << 32)) +
         ((v >> 16) & 0x000000FF000000FFULL) * (1 + (10000ULL << 32))) >>
        32;
    return v;
}

/*
 * fast_number without a branch per digit, for decimals of at most 8 + 8
 * digits with no exponent, when 32 bytes are readable at p: one 16-byte
 * compare finds the digit runs, swar_digits converts them. The mantissa
 * and exponent are those fast_number computes, so the result is the same;
 * anything else returns 0 and fast_number decides.
 */
static inline int fast_number_sse(const char *p, char delim, double *out, const char **e)
{
    int neg = *p == '-';
    const char *s = p + (neg | (*p == '+'));
    __m128i v = _mm_loadu_si128((const __m128i *)(const void *)s);
    __m128i d = _mm_and_si128(_mm_cmpgt_epi8(v, _mm_set1_epi8('0' - 1)),
                              _mm_cmplt_epi8(v, _mm_set1_epi8('9' + 1)));
    unsigned mask = (unsigned)_mm_movemask_epi8(d);
    unsigned n_int = (unsigned)__builtin_ctz(~mask), n_frac = 0, pos = n_int;
    if (n_int > 8)
        return 0;
    if (s[pos] == '.') {
        n_frac = (unsigned)__builtin_ctz(~(mask >> (pos + 1)));
        if (n_frac > 8)
            return 0;
        pos += 1 + n_frac;
    }
    char t = s[pos];
    if (n_int + n_frac == 0 || (t != delim && t != '\n' && t != '\r'))
        return 0;
    uint64_t m = n_int ? swar_digits(s, n_int) : 0;
    if (n_frac)
        m = m * pow10_u64[n_frac] + swar_digits(s + n_int + 1, n_frac);
    if (m > (1ULL << 53))
        return 0;
    double x = m == 0 ? 0.0 : (double)m / pow10_tab[n_frac];
    *out = neg ? -x : x;
    *e = s + pos;
    return 1;
}
#endif

/* True when the file can take the fast path: no quotes, every CR before a LF. */
static int quote_free(const char *p, const char *end)
{
    if (memchr(p, '"', (size_t)(end - p)) != NULL)
        return 0;
    const char *q = p;
    while ((q = memchr(q, '\r', (size_t)(end - q))) != NULL) {
        if (q + 1 >= end || q[1] != '\n')
            return 0;
        q++;
    }
    return 1;
}

/* The start of the next line after the one at p (or end). */
static const char *next_line(const char *p, const char *end)
{
    const char *q = memchr(p, '\n', (size_t)(end - p));
    return q ? q + 1 : end;
}

/* Blank: only spaces and tabs before the line's end. */
static int blank_line(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t'))
        p++;
    return p >= end || *p == '\n' || *p == '\r';
}

/* Pass 0 of the fast path from c->p, just after row 1 (already read by the
 * caller): counts the data rows and records every CHUNK_ROWS-th. */
static enum ddts_status pass0_fast(struct csv *c, size_t *n_rows, struct chunk **chunks,
                                   size_t *n_chunks, struct ddts_error *err)
{
    size_t cap = 16, rows = 0, line = c->cur_line;
    const char *p = c->p, *end = c->end;
    *n_rows = 0;
    *n_chunks = 1;
    *chunks = ddts_calloc(cap, sizeof **chunks);
    if (*chunks == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", c->name);
    (*chunks)[0].p = p;
    (*chunks)[0].row = c->row;
    (*chunks)[0].line = line;
    while (p < end) {
        if (blank_line(p, end)) {
            p = next_line(p, end);
            line++;
            continue;
        }
        if (rows > 0 && rows % CHUNK_ROWS == 0) {
            if (*n_chunks == cap) {
                struct chunk *g = ddts_realloc(*chunks, 2 * cap * sizeof *g);
                if (g == NULL)
                    return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", c->name);
                memset(g + cap, 0, cap * sizeof *g);
                *chunks = g;
                cap *= 2;
            }
            struct chunk *k = &(*chunks)[(*n_chunks)++];
            k->p = p;
            k->row = c->row;
            k->line = line;
        }
        c->row++;
        rows++;
        p = next_line(p, end);
        line++;
    }
    if (rows == 0)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: no data rows", c->name);
    *n_rows = rows;
    return DDTS_OK;
}

/* The general rules for one unquoted field at p (spaces, "inf", long
 * mantissas): *v, or the error the general path would give. */
static enum ddts_status slow_field(const struct csv *c, const char *p, size_t col, double *v,
                                   const char **e, void **loc, struct ddts_error *err)
{
    const char *q = p;
    while (q < c->end && !c->stop[(uint8_t)*q])
        q++;
    *e = q;
    size_t n = (size_t)(q - p);
    if (ddts__parse_double(p, n, v, loc) == 0)
        return finite_check(c, col, *v, p, n, err);
    if (is_blank(p, n))
        return empty_error(c, col, err);
    char shown[48], ct[COL_TEXT_MAX];
    show(p, n, shown, sizeof shown);
    return ddts_error_set(err, DDTS_EFORMAT, "%s: row %zu (line %zu), %s: '%s' is not a number",
                          c->name, c->row, c->line, col_text(c, col, ct, sizeof ct), shown);
}

/* Pass 1 of the fast path over one chunk: `max_rows` data rows from c->p. */
static enum ddts_status pass1_fast(struct csv *c, size_t n_cols, double *data, size_t max_rows,
                                   struct ddts_error *err)
{
    void *loc = NULL;
    enum ddts_status st = DDTS_OK;
    const char *p = c->p, *end = c->end;
    const char delim = c->delim;
    for (size_t r = 0; r < max_rows && p < end;) {
        if (blank_line(p, end)) {
            p = next_line(p, end);
            c->cur_line++;
            continue;
        }
        c->row++;
        c->line = c->cur_line;
        double *dst = data + r * n_cols;
        for (size_t col = 0;; col++) {
            double v;
            const char *e;
            int got = 0;
#ifdef __SSE2__
            if (end - p >= 32)
                got = fast_number_sse(p, delim, &v, &e);
#endif
            if (!got && !fast_number(p, end, delim, &v, &e)) {
                st = slow_field(c, p, col + 1, &v, &e, &loc, err);
                if (st != DDTS_OK)
                    goto out;
            }
            dst[col] = v;
            int more = e < end && *e == delim;
            if (col + 1 == n_cols || !more) {
                if (col + 1 != n_cols || more) {
                    size_t n = col + 1;
                    for (const char *q = e; q < end && *q != '\n' && *q != '\r'; q++)
                        n += *q == delim;
                    st = ddts_error_set(err, DDTS_EFORMAT,
                                        "%s: row %zu (line %zu) has %zu columns, row 1 has %zu",
                                        c->name, c->row, c->line, n, n_cols);
                    goto out;
                }
                p = e;
                break;
            }
            p = e + 1;
        }
        if (p < end && *p == '\r')
            p++;
        if (p < end && *p == '\n')
            p++;
        c->cur_line++;
        r++;
    }
out:
    ddts__parse_locale_free(loc);
    return st;
}

/* Row 1 with the general rules: its field count and whether it is a header. */
static enum ddts_status read_row1(struct csv *c, char *scratch, size_t scratch_n, void **loc,
                                  size_t *n_cols, int *header, struct ddts_error *err)
{
    while (c->p < c->end && skip_blank(c))
        ;
    if (c->p >= c->end)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: no data rows", c->name);
    c->start1 = c->p;
    c->row = 1;
    c->line = c->cur_line;
    return read_record(c, scratch, scratch_n, loc, 1, 0, n_cols, header, err);
}

enum ddts_status ddts_csv_parse(const void *buf, size_t nbytes, const char *name,
                                struct ddts_array **out, struct ddts_error *err)
{
    return ddts__csv_parse(buf, nbytes, name, 0, out, err);
}

enum ddts_status ddts__csv_parse(const void *buf, size_t nbytes, const char *name, unsigned flags,
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
    int finite = (flags & DDTS_LOAD_FINITE) != 0;
    struct csv c0 = {text, text + nbytes, delim, name, 0, 1, 1, stop, NULL, NULL, finite};
    int fast = quote_free(text, text + nbytes);
    if (fast) {
        st = read_row1(&c0, scratch, scratch_n, &loc, &n_cols, &header, err);
        if (st != DDTS_OK)
            goto out;
        if (!header) {
            c0.p = c0.start1;
            c0.row = 0;
            c0.cur_line = c0.line;
        }
        st = pass0_fast(&c0, &n_rows, &chunks, &n_chunks, err);
        if (st != DDTS_OK)
            goto out;
        /* Valid rows hold at least 2 bytes per cell: when the lines are too
         * short for row 1's width, the file is malformed, and the general
         * pass 0 finds the error before we allocate 8 bytes per cell. */
        if (n_rows > nbytes / 2 / n_cols) {
            fast = 0;
            ddts_free(chunks);
            chunks = NULL;
            ddts_free(c0.names);
            c0 = (struct csv){text, text + nbytes, delim, name, 0, 1, 1, stop, NULL, NULL, finite};
        }
    }
    if (!fast) {
        st = pass0(&c0, scratch, scratch_n, &loc, &n_rows, &n_cols, &header, &chunks, &n_chunks,
                   err);
        if (st != DDTS_OK)
            goto out;
    }
    int64_t shape[2] = {(int64_t)n_rows, (int64_t)n_cols};
    st = ddts_array_create_uninit(DDTS_F64, 2, shape, &a, err);
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
        struct csv c = {ch->p,    text + nbytes, delim, name,     ch->row, ch->line,
                        ch->line, stop,          NULL,  c0.names, finite};
        size_t r0 = k * CHUNK_ROWS;
        size_t max_rows = n_rows - r0 < CHUNK_ROWS ? n_rows - r0 : CHUNK_ROWS;
        if (fast)
            ch->st = pass1_fast(&c, n_cols, data + r0 * n_cols, max_rows, &ch->err);
        else
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
    ddts_free(c0.names);
    if (st != DDTS_OK) {
        ddts_array_destroy(a);
        return st;
    }
    *out = a;
    return DDTS_OK;
}
