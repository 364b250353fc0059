/*
 * .xlsx workbooks (Office Open XML spreadsheets) to float64 (rows, columns).
 * The only user of expat; the zip container goes through zipfile.c.
 *
 *   xl/workbook.xml             <sheet name="Data" r:id="rId1"/> in order
 *   xl/_rels/workbook.xml.rels  <Relationship Id="rId1" Target="worksheets/sheet1.xml"/>
 *   xl/sharedStrings.xml        <si><t>text</t></si> or rich runs <si><r><t>..</t></r></si>
 *   xl/worksheets/sheetN.xml    <row r="2"><c r="B2" t="s|str|inlineStr|b|e|n"><f>..</f><v>..</v>
 *                               or <is><t>..</t></is></c></row>
 *
 * The sheet is streamed through expat, member bytes inflated in 64 KiB
 * chunks: pass 0 finds the rectangle of cells, the header row, checks every
 * cell and keeps the values in 1 MiB blocks; when the cells fill the
 * rectangle the blocks are copied into the array (one pass). Otherwise a
 * second pass finds the first gap, to name it. A first row holding any text is the header, and so
 * is a first row 0, 1, ..., K-1 over all K columns (pandas' column index) that no row of the next
 * thousand repeats. Errors name the row and the column by number and header text. Cells
 * are numbers, booleans (0/1) or cached formula results; inside the data rectangle an absent cell,
 * a text cell or an error cell (#DIV/0!) is an error naming it. A DOCTYPE is refused, so entity
 * expansion (billion laughs) cannot happen.
 */
#include <expat.h>
#include <stdarg.h>
#include <stdio.h>
#include <math.h>
#include <string.h>

#include "io.h"

#define XLSX_MAX_ROWS   1048576 /* Excel's own limits */
#define XLSX_MAX_COLS   16384
#define XLSX_MAX_SHEETS 4096
#define XLSX_CHUNK      (64u << 10)

/* A growable list of strings in one buffer. */
struct strlist {
    char *buf;
    size_t used, cap;
    size_t *off;
    size_t n, n_cap;
};

static void strlist_free(struct strlist *l)
{
    ddts_free(l->buf);
    ddts_free(l->off);
    memset(l, 0, sizeof *l);
}

static int strlist_reserve(struct strlist *l, size_t extra)
{
    size_t need;
    if (ddts_size_add(l->used, extra, &need) != 0 || need > DDTS_MAX_XLSX_STRINGS)
        return -1;
    if (need <= l->cap && l->buf != NULL)
        return 0;
    size_t cap = l->cap ? l->cap : 256;
    while (cap < need)
        cap *= 2;
    char *b = ddts_realloc(l->buf, cap);
    if (b == NULL)
        return -2;
    l->buf = b;
    l->cap = cap;
    return 0;
}

/* Starts a new (empty) string; returns 0, -1 over the limit, -2 out of memory. */
static int strlist_begin(struct strlist *l)
{
    if (l->n == l->n_cap) {
        size_t nc = l->n_cap ? l->n_cap * 2 : 64;
        size_t *o = ddts_realloc(l->off, nc * sizeof *o);
        if (o == NULL)
            return -2;
        l->off = o;
        l->n_cap = nc;
    }
    int r = strlist_reserve(l, 1);
    if (r != 0)
        return r;
    l->off[l->n++] = l->used;
    l->buf[l->used++] = '\0';
    return 0;
}

static int strlist_append(struct strlist *l, const char *s, size_t n)
{
    int r = strlist_reserve(l, n);
    if (r != 0)
        return r;
    memcpy(l->buf + l->used - 1, s, n);
    l->used += n;
    l->buf[l->used - 1] = '\0';
    return 0;
}

static const char *strlist_get(const struct strlist *l, size_t i)
{
    return l->buf + l->off[i];
}

/* Element and attribute names without a namespace prefix ("x:c" is "c"). */
static const char *local(const char *name)
{
    const char *c = strrchr(name, ':');
    return c ? c + 1 : name;
}

static const char *attr(const char **atts, const char *name)
{
    for (size_t i = 0; atts[i] != NULL; i += 2)
        if (strcmp(local(atts[i]), name) == 0)
            return atts[i + 1];
    return NULL;
}

/* What every handler shares: the parser and the first error. */
struct xml {
    XML_Parser p;
    enum ddts_status st;
    struct ddts_error *err;
    const char *name;
};

static void xml_fail(struct xml *x, enum ddts_status st, const char *fmt, ...) DDTS_PRINTF(3, 4);
static void xml_fail(struct xml *x, enum ddts_status st, const char *fmt, ...)
{
    if (x->st != DDTS_OK)
        return;
    va_list ap;
    va_start(ap, fmt);
    char msg[400];
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    x->st = ddts_error_set(x->err, st, "%s: %s", x->name, msg);
    XML_StopParser(x->p, XML_FALSE);
}

static void XMLCALL on_doctype(void *ud, const XML_Char *name, const XML_Char *sysid,
                               const XML_Char *pubid, int has_internal)
{
    (void)name, (void)sysid, (void)pubid, (void)has_internal;
    xml_fail(ud, DDTS_EFORMAT, "a DOCTYPE is not allowed in xlsx XML");
}

/* Streams member `path` of the workbook through a new expat parser with these handlers. */
static enum ddts_status parse_member(struct ddts__zip *z, const char *path, struct xml *x,
                                     XML_StartElementHandler start, XML_EndElementHandler end,
                                     XML_CharacterDataHandler text, uint8_t *chunk,
                                     struct ddts_error *err)
{
    size_t index;
    enum ddts_status st = ddts__zip_find(z, path, &index, err);
    if (st != DDTS_OK)
        return st;
    uint64_t size;
    st = ddts__zip_member_open(z, index, DDTS_MAX_XLSX_XML, &size, err);
    if (st != DDTS_OK)
        return st;
    x->p = XML_ParserCreate("UTF-8");
    if (x->p == NULL) {
        ddts__zip_member_close(z);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", x->name);
    }
    x->st = DDTS_OK;
    x->err = err;
    XML_SetUserData(x->p, x);
    XML_SetElementHandler(x->p, start, end);
    XML_SetCharacterDataHandler(x->p, text);
    XML_SetStartDoctypeDeclHandler(x->p, on_doctype);
    for (;;) {
        size_t got;
        st = ddts__zip_member_read(z, chunk, XLSX_CHUNK, &got, err);
        if (st != DDTS_OK)
            break;
        if (XML_Parse(x->p, (const char *)chunk, (int)got, got == 0) == XML_STATUS_ERROR) {
            if (x->st != DDTS_OK)
                st = x->st;
            else
                st = ddts_error_set(err, DDTS_EFORMAT, "%s: %s: XML error at line %lu: %s", x->name,
                                    path, (unsigned long)XML_GetCurrentLineNumber(x->p),
                                    XML_ErrorString(XML_GetErrorCode(x->p)));
            break;
        }
        if (x->st != DDTS_OK) {
            st = x->st;
            break;
        }
        if (got == 0)
            break;
    }
    XML_ParserFree(x->p);
    x->p = NULL;
    ddts__zip_member_close(z);
    return st;
}

/* ---- workbook.xml and its relationships --------------------------------- */

struct workbook {
    struct xml x;
    struct strlist names, rids;    /* sheets, in order */
    struct strlist rel_id, rel_to; /* relationships */
    struct strlist shared_target;  /* 0 or 1 entries */
};

static void push_pair(struct xml *x, struct strlist *a, const char *va, struct strlist *b,
                      const char *vb)
{
    if (strlist_begin(a) != 0 || strlist_append(a, va, strlen(va)) != 0 || strlist_begin(b) != 0 ||
        strlist_append(b, vb, strlen(vb)) != 0)
        xml_fail(x, DDTS_ENOMEM, "out of memory for the workbook");
}

static void XMLCALL wb_start(void *ud, const XML_Char *el, const XML_Char **atts)
{
    struct workbook *w = ud;
    const char *n = local(el);
    if (strcmp(n, "sheet") == 0) {
        const char *name = attr(atts, "name"), *rid = attr(atts, "id");
        if (name == NULL || rid == NULL)
            return xml_fail(&w->x, DDTS_EFORMAT, "a sheet without a name or an id");
        if (w->names.n >= XLSX_MAX_SHEETS)
            return xml_fail(&w->x, DDTS_ELIMIT, "more than %d sheets", XLSX_MAX_SHEETS);
        push_pair(&w->x, &w->names, name, &w->rids, rid);
    } else if (strcmp(n, "Relationship") == 0) {
        const char *id = attr(atts, "Id"), *to = attr(atts, "Target"), *type = attr(atts, "Type");
        if (id == NULL || to == NULL)
            return;
        if (w->rel_id.n >= XLSX_MAX_SHEETS * 2)
            return xml_fail(&w->x, DDTS_ELIMIT, "too many relationships");
        size_t tl = type ? strlen(type) : 0;
        if (tl >= 13 && strcmp(type + tl - 13, "sharedStrings") == 0 && w->shared_target.n == 0) {
            if (strlist_begin(&w->shared_target) != 0 ||
                strlist_append(&w->shared_target, to, strlen(to)) != 0)
                return xml_fail(&w->x, DDTS_ENOMEM, "out of memory");
        }
        push_pair(&w->x, &w->rel_id, id, &w->rel_to, to);
    }
}

static void XMLCALL no_end(void *ud, const XML_Char *el)
{
    (void)ud, (void)el;
}

static void XMLCALL no_text(void *ud, const XML_Char *s, int n)
{
    (void)ud, (void)s, (void)n;
}

static void workbook_free(struct workbook *w)
{
    strlist_free(&w->names);
    strlist_free(&w->rids);
    strlist_free(&w->rel_id);
    strlist_free(&w->rel_to);
    strlist_free(&w->shared_target);
}

/* A relationship target relative to xl/ ("worksheets/sheet1.xml") or absolute. */
static void resolve(const char *target, char *out, size_t n)
{
    if (target[0] == '/')
        snprintf(out, n, "%s", target + 1);
    else
        snprintf(out, n, "xl/%s", target);
}

static enum ddts_status read_workbook(struct ddts__zip *z, const char *name, struct workbook *w,
                                      uint8_t *chunk, struct ddts_error *err)
{
    memset(w, 0, sizeof *w);
    w->x.name = name;
    enum ddts_status st =
        parse_member(z, "xl/workbook.xml", &w->x, wb_start, no_end, no_text, chunk, err);
    if (st == DDTS_ENOTFOUND)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: not an xlsx workbook (no xl/workbook.xml)",
                              name);
    if (st != DDTS_OK)
        return st;
    st =
        parse_member(z, "xl/_rels/workbook.xml.rels", &w->x, wb_start, no_end, no_text, chunk, err);
    if (st == DDTS_ENOTFOUND) {
        ddts_error_clear(err);
        st = DDTS_OK;
    }
    return st;
}

/* ---- sharedStrings.xml --------------------------------------------------- */

struct shared {
    struct xml x;
    struct strlist s;
    int in_t, in_si, in_ph;
};

static void XMLCALL ss_start(void *ud, const XML_Char *el, const XML_Char **atts)
{
    (void)atts;
    struct shared *s = ud;
    const char *n = local(el);
    if (strcmp(n, "si") == 0) {
        int r = strlist_begin(&s->s);
        if (r != 0)
            return xml_fail(&s->x, r == -1 ? DDTS_ELIMIT : DDTS_ENOMEM,
                            "shared strings above %llu bytes",
                            (unsigned long long)DDTS_MAX_XLSX_STRINGS);
        s->in_si = 1;
    } else if (strcmp(n, "rPh") == 0) {
        s->in_ph = 1; /* phonetic runs are not part of the text */
    } else if (strcmp(n, "t") == 0 && s->in_si && !s->in_ph) {
        s->in_t = 1;
    }
}

static void XMLCALL ss_end(void *ud, const XML_Char *el)
{
    struct shared *s = ud;
    const char *n = local(el);
    if (strcmp(n, "si") == 0)
        s->in_si = 0;
    else if (strcmp(n, "rPh") == 0)
        s->in_ph = 0;
    else if (strcmp(n, "t") == 0)
        s->in_t = 0;
}

static void XMLCALL ss_text(void *ud, const XML_Char *t, int n)
{
    struct shared *s = ud;
    if (!s->in_t)
        return;
    int r = strlist_append(&s->s, t, (size_t)n);
    if (r != 0)
        xml_fail(&s->x, r == -1 ? DDTS_ELIMIT : DDTS_ENOMEM, "shared strings above %llu bytes",
                 (unsigned long long)DDTS_MAX_XLSX_STRINGS);
}

/* ---- the sheet ----------------------------------------------------------- */

enum cell_type {
    CELL_NUMBER,
    CELL_SHARED,
    CELL_STR,
    CELL_INLINE,
    CELL_BOOL,
    CELL_ERROR,
    CELL_DATE
};

struct sheet {
    struct xml x;
    const struct strlist *shared;
    int pass;
    /* The current row and cell. */
    long row, col, prev_col;
    enum cell_type type;
    int in_c, in_v, in_is_t, have_v, in_f_seen;
    char *text;
    size_t text_n;
    void *loc; /* the number parser's cached "C" locale */
    /* Pass 0 findings. */
    long first_row, last_row, c_min, c_max;
    int header;
    int index_row;     /* row 1 so far holds 0, 1, ... in adjacent columns (pandas' column index) */
    long first_row_c0; /* row 1's first column */
    int index_repeat;  /* a later row (of the next INDEX_LOOKAHEAD) holds row 1's values */
    long match_row;    /* the row being compared with row 1 ... */
    size_t row_cells;  /* ... its cells so far ... */
    int row_match;     /* ... and whether they equal row 1's */
    size_t n_cells, first_row_cells; /* data cells after the first row; cells of the first */
    long data_first, n_data_rows;
    /* Pass 0 keeps every cell's value, in order, in blocks of VAL_BLOCK. */
    double **blocks;
    size_t n_blocks, n_vals;
    /* Pass 1: where rows go. */
    double *data;
    size_t n_cols;
    long expect_row, expect_col;
    /* The first row's texts, HDR_TEXT bytes per column (from column 0), for
     * messages when it is the header; finite: DDTS_LOAD_FINITE. */
    char *hdr;
    long hdr_cols;
    int finite;
};

#define HDR_TEXT 44

/* Keeps the first row's text of column col (shortened) for messages. */
static void keep_header_text(struct sheet *s, long col, const char *text)
{
    if (col >= s->hdr_cols) {
        long n = col + 16;
        char *g = ddts_realloc(s->hdr, (size_t)n * HDR_TEXT);
        if (g == NULL)
            return; /* messages then give the column letter only */
        memset(g + (size_t)s->hdr_cols * HDR_TEXT, 0, (size_t)(n - s->hdr_cols) * HDR_TEXT);
        s->hdr = g;
        s->hdr_cols = n;
    }
    char *d = s->hdr + (size_t)col * HDR_TEXT;
    size_t k = 0;
    for (; text[k] != '\0' && k + 1 < HDR_TEXT; k++)
        d[k] = (unsigned char)text[k] < 0x20 || text[k] == '\'' ? ' ' : text[k];
    d[k] = '\0';
}

static void col_name(long col, char *buf);

/*
 * Whether row 1 (numbers only) is the column index 0, 1, ..., K-1 (K >= 2)
 * that pandas.DataFrame.to_excel(index=False) writes as the header of
 * unnamed columns: in every column of the sheet, and no row among the next
 * INDEX_LOOKAHEAD rows holds the same values (one-hot rows 0, 1 of a
 * 2-column sheet are data then), as CSV decides (csv.c). While pass 0 runs
 * (`final` 0) the sheet's last column is not known yet: messages name the
 * columns by the index that row 1 holds so far.
 */
#define INDEX_LOOKAHEAD 1000

static int is_index_header(const struct sheet *s, int final)
{
    size_t k = s->first_row_cells;
    if (s->header || !s->index_row || s->index_repeat || k < 2 || s->first_row_c0 != s->c_min)
        return 0;
    return !final || (long)k == s->c_max - s->c_min + 1;
}

/* Pass 0, a cell of a row after row 1: whether the row repeats row 1 so far. */
static void match_first_row(struct sheet *s, double v)
{
    if (s->row != s->match_row) {
        s->match_row = s->row;
        s->row_cells = 0;
        s->row_match = 1;
    }
    s->row_match =
        s->row_match && s->col == s->first_row_c0 + (long)s->row_cells && v == (double)s->row_cells;
    s->row_cells++;
    if (s->row_match && s->row_cells == s->first_row_cells &&
        s->row - s->first_row <= INDEX_LOOKAHEAD)
        s->index_repeat = 1;
}

/* "3 (cell C7)" or, when the sheet has a header, "3 ('species') (cell C7)": the
 * column's number (1-based, A = 1) and header text, as CSV messages name a column. */
static const char *col_label(const struct sheet *s, long col, long row, char *buf, size_t cap)
{
    char cn[8];
    col_name(col, cn);
    if (s->header && col < s->hdr_cols && s->hdr[(size_t)col * HDR_TEXT] != '\0')
        snprintf(buf, cap, "%ld ('%s') (cell %s%ld)", col + 1, s->hdr + (size_t)col * HDR_TEXT, cn,
                 row);
    else if (s->pass == 0 && row > s->first_row && is_index_header(s, 0) &&
             col >= s->first_row_c0 && col < s->first_row_c0 + (long)s->first_row_cells)
        snprintf(buf, cap, "%ld ('%ld') (cell %s%ld)", col + 1, col - s->first_row_c0, cn, row);
    else
        snprintf(buf, cap, "%ld (cell %s%ld)", col + 1, cn, row);
    return buf;
}

/* "AB12" to column 27 (0-based) and row 12 (1-based). */
static int parse_ref(const char *r, long *row, long *col)
{
    long c = 0, rw = 0;
    const char *p = r;
    while (*p >= 'A' && *p <= 'Z') {
        c = c * 26 + (*p - 'A' + 1);
        if (c > XLSX_MAX_COLS)
            return -1;
        p++;
    }
    if (p == r)
        return -1;
    const char *digits = p;
    while (*p >= '0' && *p <= '9') {
        rw = rw * 10 + (*p - '0');
        if (rw > XLSX_MAX_ROWS)
            return -1;
        p++;
    }
    if (p == digits || *p != '\0' || rw == 0)
        return -1;
    *row = rw;
    *col = c - 1;
    return 0;
}

static void col_name(long col, char *buf)
{
    char tmp[8];
    int n = 0;
    col++;
    while (col > 0 && n < 7) {
        long r = (col - 1) % 26;
        tmp[n++] = (char)('A' + r);
        col = (col - 1) / 26;
    }
    for (int i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
}

static void XMLCALL sh_start(void *ud, const XML_Char *el, const XML_Char **atts)
{
    struct sheet *s = ud;
    const char *n = local(el);
    if (strcmp(n, "row") == 0) {
        const char *r = attr(atts, "r");
        long row = s->row + 1;
        if (r != NULL) {
            char *end;
            row = strtol(r, &end, 10);
            if (*end != '\0' || row < 1 || row > XLSX_MAX_ROWS)
                return xml_fail(&s->x, DDTS_EFORMAT, "bad row number '%.20s'", r);
        }
        if (row <= s->row)
            return xml_fail(&s->x, DDTS_EFORMAT, "row %ld after row %ld", row, s->row);
        if (row > XLSX_MAX_ROWS)
            return xml_fail(&s->x, DDTS_ELIMIT, "more than %d rows", XLSX_MAX_ROWS);
        s->row = row;
        s->prev_col = -1;
    } else if (strcmp(n, "c") == 0) {
        if (s->row == 0)
            return xml_fail(&s->x, DDTS_EFORMAT, "a cell outside a row");
        const char *r = attr(atts, "r"), *t = attr(atts, "t");
        long row = s->row, col = s->prev_col + 1;
        if (r != NULL && parse_ref(r, &row, &col) != 0)
            return xml_fail(&s->x, DDTS_EFORMAT, "row %ld: bad cell reference '%.20s'", s->row, r);
        if (row != s->row)
            return xml_fail(&s->x, DDTS_EFORMAT, "cell %.20s inside row %ld", r, s->row);
        if (col <= s->prev_col)
            return xml_fail(&s->x, DDTS_EFORMAT, "row %ld: cells out of order", s->row);
        if (col >= XLSX_MAX_COLS)
            return xml_fail(&s->x, DDTS_ELIMIT, "more than %d columns", XLSX_MAX_COLS);
        s->col = col;
        s->prev_col = col;
        s->type = CELL_NUMBER;
        if (t != NULL) {
            if (strcmp(t, "s") == 0)
                s->type = CELL_SHARED;
            else if (strcmp(t, "str") == 0)
                s->type = CELL_STR;
            else if (strcmp(t, "inlineStr") == 0)
                s->type = CELL_INLINE;
            else if (strcmp(t, "b") == 0)
                s->type = CELL_BOOL;
            else if (strcmp(t, "e") == 0)
                s->type = CELL_ERROR;
            else if (strcmp(t, "d") == 0)
                s->type = CELL_DATE;
            else if (strcmp(t, "n") != 0)
                return xml_fail(&s->x, DDTS_EFORMAT, "cell type '%.10s'", t);
        }
        s->in_c = 1;
        s->have_v = 0;
        s->in_f_seen = 0;
        s->text_n = 0;
    } else if (s->in_c && strcmp(n, "f") == 0) {
        s->in_f_seen = 1;
    } else if (s->in_c && strcmp(n, "v") == 0) {
        s->in_v = 1;
        s->have_v = 1;
        s->text_n = 0;
    } else if (s->in_c && s->type == CELL_INLINE && strcmp(n, "t") == 0) {
        s->in_is_t = 1;
        s->have_v = 1;
    }
}

static void XMLCALL sh_text(void *ud, const XML_Char *t, int n)
{
    struct sheet *s = ud;
    if (!s->in_v && !s->in_is_t)
        return;
    if (s->text_n + (size_t)n > DDTS_MAX_CELL_BYTES) {
        char cn[8];
        col_name(s->col, cn);
        return xml_fail(&s->x, DDTS_ELIMIT, "cell %s%ld above %u bytes", cn, s->row,
                        (unsigned)DDTS_MAX_CELL_BYTES);
    }
    memcpy(s->text + s->text_n, t, (size_t)n);
    s->text_n += (size_t)n;
}

/* Values per block of pass 0 (1 MiB): blocks, not one growing buffer, so
 * that copying them into the array holds at most one block twice. */
#define VAL_BLOCK ((size_t)1 << 17)

static void keep_value(struct sheet *s, double v)
{
    if (s->x.st != DDTS_OK)
        return; /* expat may still call after a failure */
    if (s->n_vals % VAL_BLOCK == 0) {
        size_t nb = s->n_vals / VAL_BLOCK;
        if ((nb + 1) * VAL_BLOCK * sizeof(double) > DDTS_MAX_ARRAY_BYTES)
            return xml_fail(&s->x, DDTS_ELIMIT, "more than %llu bytes of cells",
                            (unsigned long long)DDTS_MAX_ARRAY_BYTES);
        if ((nb & (nb - 1)) == 0) { /* 0, 1, 2, 4, ...: grow the list */
            double **g = ddts_realloc(s->blocks, (nb ? 2 * nb : 1) * sizeof *g);
            if (g == NULL)
                return xml_fail(&s->x, DDTS_ENOMEM, "out of memory");
            s->blocks = g;
        }
        s->blocks[nb] = ddts_malloc(VAL_BLOCK * sizeof(double));
        if (s->blocks[nb] == NULL)
            return xml_fail(&s->x, DDTS_ENOMEM, "out of memory");
        s->n_blocks = nb + 1;
    }
    s->blocks[s->n_vals / VAL_BLOCK][s->n_vals % VAL_BLOCK] = v;
    s->n_vals++;
}

static void free_blocks(struct sheet *s)
{
    for (size_t i = 0; i < s->n_blocks; i++)
        ddts_free(s->blocks[i]);
    ddts_free(s->blocks);
    s->blocks = NULL;
    s->n_blocks = s->n_vals = 0;
}

/* Row 1 becomes the header: its numbers are the columns' names in messages. */
static void use_index_header(struct sheet *s)
{
    s->header = 1;
    for (size_t j = 0; j < s->first_row_cells; j++) {
        char t[24];
        snprintf(t, sizeof t, "%zu", j);
        keep_header_text(s, s->first_row_c0 + (long)j, t);
    }
}

/* A finished cell: judge it (pass 0) or store it (pass 1). */
static void end_cell(struct sheet *s)
{
    char cl[80];
    s->text[s->text_n] = '\0';
    if (!s->have_v ||
        (s->text_n == 0 && !s->in_f_seen && (s->type == CELL_NUMBER || s->type == CELL_BOOL)))
        return; /* a styled but empty cell (no <v>, or <v/>) is an absent cell */
    const char *str = NULL;
    double v = 0;
    switch (s->type) {
    case CELL_SHARED: {
        char *end;
        unsigned long i = strtoul(s->text, &end, 10);
        if (end == s->text || *end != '\0' || i >= s->shared->n)
            return xml_fail(&s->x, DDTS_EFORMAT,
                            "row %ld, column %s: shared string %.20s out of range", s->row,
                            col_label(s, s->col, s->row, cl, sizeof cl), s->text);
        str = strlist_get(s->shared, i);
        break;
    }
    case CELL_STR:
    case CELL_INLINE:
        str = s->text;
        break;
    case CELL_ERROR:
        return xml_fail(&s->x, DDTS_EFORMAT, "row %ld, column %s holds the error %.20s", s->row,
                        col_label(s, s->col, s->row, cl, sizeof cl), s->text);
    case CELL_DATE:
        return xml_fail(&s->x, DDTS_EUNSUPPORTED, "row %ld, column %s: ISO dates are not supported",
                        s->row, col_label(s, s->col, s->row, cl, sizeof cl));
    case CELL_BOOL:
    case CELL_NUMBER:
        if (s->text_n == 0 && s->in_f_seen)
            return xml_fail(&s->x, DDTS_EFORMAT,
                            "row %ld, column %s: a formula without a cached value (open and save "
                            "the file in a spreadsheet program to compute it)",
                            s->row, col_label(s, s->col, s->row, cl, sizeof cl));
        if (ddts__parse_double(s->text, s->text_n, &v, &s->loc) != 0)
            return xml_fail(&s->x, DDTS_EFORMAT, "row %ld, column %s: '%.40s' is not a number",
                            s->row, col_label(s, s->col, s->row, cl, sizeof cl), s->text);
        break;
    }
    if (s->pass == 0) {
        if (s->first_row == 0)
            s->first_row = s->row;
        if (s->c_min < 0 || s->col < s->c_min)
            s->c_min = s->col;
        if (s->col > s->c_max)
            s->c_max = s->col;
        if (s->row == s->first_row) {
            /* Whether row 1 is a header is known at its end; count it apart. */
            if (str != NULL) {
                s->header = 1;
                keep_header_text(s, s->col, str);
            }
            if (s->first_row_cells == 0) {
                s->first_row_c0 = s->col;
                s->index_row = 1;
            }
            s->index_row = s->index_row && str == NULL && !s->in_f_seen &&
                           s->col == s->first_row_c0 + (long)s->first_row_cells &&
                           v == (double)s->first_row_cells;
            s->first_row_cells++;
            return keep_value(s, v);
        }
        if (str != NULL)
            return xml_fail(&s->x, DDTS_EFORMAT, "row %ld, column %s: text '%.40s' is not a number",
                            s->row, col_label(s, s->col, s->row, cl, sizeof cl), str);
        if (s->finite && !isfinite(v))
            return xml_fail(&s->x, DDTS_EFORMAT,
                            "row %ld, column %s: '%.40s' is not a finite number "
                            "(training data must not hold NaN or infinities)",
                            s->row, col_label(s, s->col, s->row, cl, sizeof cl), s->text);
        match_first_row(s, v);
        if (s->data_first == 0)
            s->data_first = s->row;
        if (s->row != s->last_row)
            s->n_data_rows++;
        s->last_row = s->row;
        s->n_cells++;
        return keep_value(s, v);
    }
    /* Pass 1: cells arrive row by row in column order; any skip is a gap. */
    if (s->header && s->row == s->first_row)
        return;
    if (s->row != s->expect_row || s->col != s->expect_col)
        return xml_fail(&s->x, DDTS_EFORMAT, "row %ld, column %s: empty cell (missing value)",
                        s->expect_row, col_label(s, s->expect_col, s->expect_row, cl, sizeof cl));
    if (s->data != NULL)
        s->data[(size_t)(s->row - s->data_first) * s->n_cols + (size_t)(s->col - s->c_min)] = v;
    s->expect_col++;
    if ((size_t)(s->expect_col - s->c_min) == s->n_cols) {
        s->expect_col = s->c_min;
        s->expect_row++;
    }
}

static void XMLCALL sh_end(void *ud, const XML_Char *el)
{
    struct sheet *s = ud;
    const char *n = local(el);
    if (strcmp(n, "v") == 0) {
        s->in_v = 0;
    } else if (strcmp(n, "t") == 0) {
        s->in_is_t = 0;
    } else if (strcmp(n, "c") == 0 && s->in_c) {
        s->in_c = 0;
        end_cell(s);
    } else if (strcmp(n, "row") == 0 && s->pass == 1 && s->expect_row == s->row &&
               s->expect_col != s->c_min) {
        /* The row ended before its last column. */
        char cl[80];
        xml_fail(&s->x, DDTS_EFORMAT, "row %ld, column %s: empty cell (missing value)", s->row,
                 col_label(s, s->expect_col, s->row, cl, sizeof cl));
    }
}

/* The index of sheet `want` (NULL: the first), or DDTS_ENOTFOUND listing the sheets. */
static enum ddts_status find_sheet(const struct workbook *w, const char *name, const char *want,
                                   size_t *si, struct ddts_error *err)
{
    *si = 0;
    if (want == NULL)
        return DDTS_OK;
    for (*si = 0; *si < w->names.n; (*si)++)
        if (strcmp(strlist_get(&w->names, *si), want) == 0)
            return DDTS_OK;
    char list[300];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < w->names.n && used + 1 < sizeof list; i++) {
        int k = snprintf(list + used, sizeof list - used, "%s'%s'", i ? ", " : "",
                         strlist_get(&w->names, i));
        if (k < 0)
            break;
        used += (size_t)k;
    }
    return ddts_error_set(err, DDTS_ENOTFOUND, "%s: no sheet '%s' (sheets: %s)", name, want, list);
}

/* The zip paths of sheet si (through the workbook's relationships) and of
 * the shared strings, each into a buffer of cap bytes. */
static void sheet_paths(const struct workbook *w, size_t si, char *path, char *ss_path, size_t cap)
{
    const char *rid = strlist_get(&w->rids, si);
    const char *target = NULL;
    for (size_t i = 0; i < w->rel_id.n; i++)
        if (strcmp(strlist_get(&w->rel_id, i), rid) == 0)
            target = strlist_get(&w->rel_to, i);
    if (target != NULL)
        resolve(target, path, cap);
    else
        snprintf(path, cap, "xl/worksheets/sheet%zu.xml", si + 1);
    if (w->shared_target.n > 0)
        resolve(strlist_get(&w->shared_target, 0), ss_path, cap);
    else
        snprintf(ss_path, cap, "xl/sharedStrings.xml");
}

/* Pass 0 kept every value, row by row, in blocks: into out, the header's
 * values left out; the blocks are freed. */
static void take_values(struct sheet *s, double *out)
{
    size_t skip = s->header ? s->first_row_cells : 0, at = 0;
    for (size_t b = 0; b < s->n_blocks; b++) {
        size_t lo = b * VAL_BLOCK, hi = lo + VAL_BLOCK < s->n_vals ? lo + VAL_BLOCK : s->n_vals;
        if (hi > skip) {
            size_t from = lo > skip ? lo : skip;
            memcpy(out + at, s->blocks[b] + (from - lo), (hi - from) * sizeof(double));
            at += hi - from;
        }
        ddts_free(s->blocks[b]);
        s->blocks[b] = NULL;
    }
}

static enum ddts_status load_sheet(struct ddts__zip *z, const char *name, const char *want,
                                   unsigned flags, struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    struct workbook w;
    struct shared ss;
    struct sheet s;
    struct ddts_array *a = NULL;
    memset(&ss, 0, sizeof ss);
    memset(&s, 0, sizeof s);
    uint8_t *chunk = ddts_malloc(XLSX_CHUNK);
    s.text = ddts_malloc(DDTS_MAX_CELL_BYTES + 1);
    enum ddts_status st;
    if (chunk == NULL || s.text == NULL) {
        memset(&w, 0, sizeof w);
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
        goto out;
    }
    st = read_workbook(z, name, &w, chunk, err);
    if (st != DDTS_OK)
        goto out;
    if (w.names.n == 0) {
        st = ddts_error_set(err, DDTS_EFORMAT, "%s: the workbook has no sheets", name);
        goto out;
    }
    size_t si = 0;
    char path[512], ss_path[512];
    st = find_sheet(&w, name, want, &si, err);
    if (st != DDTS_OK)
        goto out;
    sheet_paths(&w, si, path, ss_path, sizeof path);
    ss.x.name = name;
    st = parse_member(z, ss_path, &ss.x, ss_start, ss_end, ss_text, chunk, err);
    if (st == DDTS_ENOTFOUND) {
        ddts_error_clear(err);
        st = DDTS_OK;
    }
    if (st != DDTS_OK)
        goto out;
    s.x.name = name;
    s.shared = &ss.s;
    s.finite = (flags & DDTS_LOAD_FINITE) != 0;
    s.c_min = -1;
    s.c_max = -1;
    st = parse_member(z, path, &s.x, sh_start, sh_end, sh_text, chunk, err);
    if (st != DDTS_OK)
        goto out;
    if (s.first_row != 0 && is_index_header(&s, 1))
        use_index_header(&s);
    if (!s.header && s.first_row != 0) {
        s.n_cells += s.first_row_cells;
        s.n_data_rows++;
        s.data_first = s.first_row;
        if (s.last_row == 0)
            s.last_row = s.first_row;
    }
    if (s.n_data_rows == 0) {
        st = ddts_error_set(err, DDTS_EFORMAT, "%s: sheet '%s' has no data rows", name,
                            strlist_get(&w.names, si));
        goto out;
    }
    s.n_cols = (size_t)(s.c_max - s.c_min + 1);
    size_t n_rows = (size_t)(s.last_row - s.data_first + 1);
    /* Allocate only when every cell of the rectangle is present (bounded by the
     * sheet's size); otherwise pass 1 runs without an array to name the gap. */
    int complete = s.n_cells == n_rows * s.n_cols;
    if (complete) {
        /* n_rows * n_cols distinct cells, in row-major order, inside the
         * rectangle: they are all of its cells, and pass 0 kept their values
         * in that order (after the header's, if any). */
        int64_t shape[2] = {(int64_t)n_rows, (int64_t)s.n_cols};
        st = ddts_array_create_uninit(DDTS_F64, 2, shape, &a, err);
        if (st != DDTS_OK)
            goto out;
        take_values(&s, (double *)a->data);
        goto out;
    }
    free_blocks(&s);
    s.pass = 1;
    s.row = 0;
    s.expect_row = s.data_first;
    s.expect_col = s.c_min;
    st = parse_member(z, path, &s.x, sh_start, sh_end, sh_text, chunk, err);
    if (st == DDTS_OK && !complete) {
        /* A missing last row part or a missing row at the end. */
        char cl[80];
        st = ddts_error_set(err, DDTS_EFORMAT, "%s: row %ld, column %s: empty cell (missing value)",
                            name, s.expect_row,
                            col_label(&s, s.expect_col, s.expect_row, cl, sizeof cl));
    }
out:
    if (st != DDTS_OK) {
        ddts_array_destroy(a);
        a = NULL;
    }
    free_blocks(&s);
    workbook_free(&w);
    strlist_free(&ss.s);
    ddts__parse_locale_free(s.loc);
    ddts_free(s.text);
    ddts_free(s.hdr);
    ddts_free(chunk);
    *out = a;
    return st;
}

enum ddts_status ddts_xlsx_parse(const void *buf, size_t nbytes, const char *name,
                                 const char *sheet, struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if (name == NULL)
        name = "xlsx";
    struct ddts__zip *z;
    enum ddts_status st = ddts__zip_open_buffer(buf, nbytes, name, &z, err);
    if (st != DDTS_OK)
        return st;
    st = load_sheet(z, name, sheet, 0, out, err);
    ddts__zip_close(z);
    return st;
}

enum ddts_status ddts__xlsx_load(const char *path, const char *sheet, unsigned flags,
                                 struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    struct ddts__zip *z;
    enum ddts_status st = ddts__zip_open_file(path, &z, err);
    if (st != DDTS_OK)
        return st;
    st = load_sheet(z, path, sheet, flags, out, err);
    ddts__zip_close(z);
    return st;
}

/* Copies a strlist into the layout ddts_data_keys promises. */
static enum ddts_status to_keys(const struct strlist *l, int strip_npy, char ***names,
                                size_t *n_names, struct ddts_error *err)
{
    size_t total = l->n * sizeof(char *) + l->used;
    char **v = ddts_malloc(total ? total : 1);
    if (v == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    char *p = (char *)(v + l->n);
    for (size_t i = 0; i < l->n; i++) {
        const char *s = strlist_get(l, i);
        size_t n = strlen(s);
        if (strip_npy && n > 4 && strcmp(s + n - 4, ".npy") == 0)
            n -= 4;
        memcpy(p, s, n);
        p[n] = '\0';
        v[i] = p;
        p += n + 1;
    }
    *names = v;
    *n_names = l->n;
    return DDTS_OK;
}

enum ddts_status ddts__zip_keys(const char *path, int xlsx, char ***names, size_t *n_names,
                                struct ddts_error *err)
{
    *names = NULL;
    *n_names = 0;
    struct ddts__zip *z;
    enum ddts_status st = ddts__zip_open_file(path, &z, err);
    if (st != DDTS_OK)
        return st;
    if (xlsx) {
        struct workbook w;
        uint8_t *chunk = ddts_malloc(XLSX_CHUNK);
        if (chunk == NULL) {
            ddts__zip_close(z);
            return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
        }
        st = read_workbook(z, path, &w, chunk, err);
        if (st == DDTS_OK)
            st = to_keys(&w.names, 0, names, n_names, err);
        workbook_free(&w);
        ddts_free(chunk);
    } else {
        struct strlist l;
        memset(&l, 0, sizeof l);
        size_t n = ddts__zip_count(z);
        for (size_t i = 0; i < n && st == DDTS_OK; i++) {
            const char *m = ddts__zip_name(z, i);
            if (strlist_begin(&l) != 0 || strlist_append(&l, m, strlen(m)) != 0)
                st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
        }
        if (st == DDTS_OK)
            st = to_keys(&l, 1, names, n_names, err);
        strlist_free(&l);
    }
    ddts__zip_close(z);
    return st;
}
