/*
 * A restricted unpickler: exactly what numpy and Python write for the Keras
 * datasets (imdb.npz and reuters.npz object arrays of word-index lists, the
 * CIFAR batch dictionaries), and nothing else. Never a general pickle VM:
 *
 *   - globals: only numpy's array reconstruction (numpy.core.multiarray /
 *     numpy._core.multiarray _reconstruct, numpy.ndarray, numpy.dtype) and
 *     the two ways Python 3 writes bytes at protocol 2 (_codecs.encode with
 *     latin1, and bytes() for b''); any other global is an error naming it;
 *   - REDUCE calls only those, with the argument shapes numpy writes; BUILD
 *     only sets an array's or a dtype's state; no INST, OBJ, NEWOBJ,
 *     persistent ids, extensions or text-protocol opcodes;
 *   - values: None, bools, ints (at most 64 bits), floats, bytes, str,
 *     tuples, lists, dicts, arrays. Strings are read where they lie in the
 *     buffer (no copy) unless they must be converted.
 *
 * Bounds: every length is checked against the bytes left; the stack, the
 * memo and the items of lists and dicts grow only by values the input
 * pushed (each takes at least one input byte, so at most 16 bytes of values
 * per input byte), memo indices are at most the memo's length (as
 * Python numbers them: 0, 1, 2...), and objects are counted
 * (DDTS_MAX_PICKLE_OBJECTS).
 * All objects live in one chain freed with the result: aliasing through the
 * memo needs no reference counts, and freeing never recurses.
 */
#include <stdio.h>
#include <string.h>

#include "io.h"
#include "pickle.h"

/* Containers, strings and arrays of one pickle (imdb: 25,000 lists per
 * array; an object costs about 200 bytes, so at most ~200 MB of them). */
#define DDTS_MAX_PICKLE_OBJECTS (1u << 20)

enum { G_RECONSTRUCT = 1, G_NDARRAY, G_DTYPE, G_ENCODE, G_BYTES };

struct ddts__pickle {
    struct ddts__pk_obj *chain;
    size_t n_objs;
};

static enum ddts_status fail(struct ddts_error *err, const char *name, size_t at, const char *fmt,
                             const char *detail)
{
    /* Room for the longest literal fmt and an 81-byte detail: nothing is cut
     * (the whole message is then bounded by DDTS_ERROR_MSG_MAX). */
    char what[256];
    snprintf(what, sizeof what, fmt, detail != NULL ? detail : "");
    return ddts_error_set(err, DDTS_EFORMAT, "%s: pickle byte %zu: %s", name, at, what);
}

/* realloc of count * size bytes, overflow-checked. */
static void *grow(void *p, size_t count, size_t size)
{
    size_t n;
    if (__builtin_mul_overflow(count, size, &n))
        return NULL;
    return ddts_realloc(p, n);
}

static struct ddts__pk_obj *new_obj(struct ddts__pickle *p, enum ddts__pk_kind kind)
{
    if (p->n_objs >= DDTS_MAX_PICKLE_OBJECTS)
        return NULL;
    struct ddts__pk_obj *o = ddts_calloc(1, sizeof *o);
    if (o == NULL)
        return NULL;
    o->kind = kind;
    o->next = p->chain;
    p->chain = o;
    p->n_objs++;
    return o;
}

static int push_item(struct ddts__pk_obj *o, struct ddts__pk_value v)
{
    if (o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 8;
        struct ddts__pk_value *g = grow(o->items, cap, sizeof *g);
        if (g == NULL)
            return -1;
        o->items = g;
        o->cap = cap;
    }
    o->items[o->n++] = v;
    return 0;
}

void ddts__pickle_destroy(struct ddts__pickle *p)
{
    if (p == NULL)
        return;
    struct ddts__pk_obj *o = p->chain;
    while (o != NULL) {
        struct ddts__pk_obj *next = o->next;
        ddts_free(o->items);
        ddts_free(o->owned);
        ddts_free(o);
        o = next;
    }
    ddts_free(p);
}

static struct ddts__pk_value val_obj(struct ddts__pk_obj *o)
{
    struct ddts__pk_value v = {0};
    v.kind = o->kind;
    v.o = o;
    return v;
}

static struct ddts__pk_value val_int(int64_t i, enum ddts__pk_kind kind)
{
    struct ddts__pk_value v = {0};
    v.kind = kind;
    v.i = i;
    return v;
}

/* The VM's state while it runs. */
struct vm {
    struct ddts__pickle *p;
    const uint8_t *b;
    size_t n, at, op_at;
    const char *name;
    struct ddts__pk_value *stack;
    size_t sp, stack_cap;
    size_t *marks; /* stack heights of MARKs */
    size_t n_marks, marks_cap;
    struct ddts__pk_value *memo;
    size_t memo_cap, n_memo; /* slots [0, n_memo) are filled */
    struct ddts_error *err;
};

static enum ddts_status oom(struct vm *m)
{
    return ddts_error_set(m->err, DDTS_ENOMEM, "%s: out of memory (or more than %u pickle objects)",
                          m->name, DDTS_MAX_PICKLE_OBJECTS);
}

static enum ddts_status bad(struct vm *m, const char *fmt, const char *detail)
{
    return fail(m->err, m->name, m->op_at, fmt, detail);
}

static enum ddts_status push(struct vm *m, struct ddts__pk_value v)
{
    if (m->sp == m->stack_cap) {
        size_t cap = m->stack_cap ? m->stack_cap * 2 : 64;
        struct ddts__pk_value *g = grow(m->stack, cap, sizeof *g);
        if (g == NULL)
            return oom(m);
        m->stack = g;
        m->stack_cap = cap;
    }
    m->stack[m->sp++] = v;
    return DDTS_OK;
}

static int take(struct vm *m, size_t k, const uint8_t **out)
{
    if (m->n - m->at < k)
        return -1;
    *out = m->b + m->at;
    m->at += k;
    return 0;
}

static uint64_t le(const uint8_t *s, size_t k)
{
    uint64_t v = 0;
    for (size_t i = 0; i < k; i++)
        v |= (uint64_t)s[i] << (8 * i);
    return v;
}

/* The items pushed since the last MARK (popped with it): [*first, sp). */
static enum ddts_status pop_mark(struct vm *m, size_t *first)
{
    if (m->n_marks == 0)
        return bad(m, "no MARK before this opcode%s", NULL);
    *first = m->marks[--m->n_marks];
    return DDTS_OK;
}

static enum ddts_status make_seq(struct vm *m, enum ddts__pk_kind kind, size_t first)
{
    struct ddts__pk_obj *o = new_obj(m->p, kind);
    if (o == NULL)
        return oom(m);
    for (size_t i = first; i < m->sp; i++)
        if (push_item(o, m->stack[i]) != 0)
            return oom(m);
    m->sp = first;
    return push(m, val_obj(o));
}

static enum ddts_status string_value(struct vm *m, size_t len, enum ddts__pk_kind kind)
{
    const uint8_t *s;
    if (take(m, len, &s) != 0)
        return bad(m, "a string runs past the end%s", NULL);
    struct ddts__pk_obj *o = new_obj(m->p, kind);
    if (o == NULL)
        return oom(m);
    o->bytes = s;
    o->nbytes = len;
    return push(m, val_obj(o));
}

static int is_text(const struct ddts__pk_value *v)
{
    return v->kind == PK_STR || v->kind == PK_BYTES;
}

static int text_is(const struct ddts__pk_value *v, const char *s)
{
    size_t n = strlen(s);
    return is_text(v) && v->o->nbytes == n && memcmp(v->o->bytes, s, n) == 0;
}

/* GLOBAL / STACK_GLOBAL: only the whitelist. */
static enum ddts_status global(struct vm *m, const char *mod, size_t mod_n, const char *name,
                               size_t name_n)
{
    static const struct {
        const char *mod, *name;
        int id;
    } ok[] = {
        {"numpy.core.multiarray", "_reconstruct", G_RECONSTRUCT},
        {"numpy._core.multiarray", "_reconstruct", G_RECONSTRUCT},
        {"numpy", "ndarray", G_NDARRAY},
        {"numpy", "dtype", G_DTYPE},
        {"_codecs", "encode", G_ENCODE},
        {"__builtin__", "bytes", G_BYTES},
        {"builtins", "bytes", G_BYTES},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (strlen(ok[i].mod) == mod_n && memcmp(ok[i].mod, mod, mod_n) == 0 &&
            strlen(ok[i].name) == name_n && memcmp(ok[i].name, name, name_n) == 0)
            return push(m, val_int(ok[i].id, PK_GLOBAL));
    char what[96];
    snprintf(what, sizeof what, "%.*s.%.*s", (int)(mod_n < 40 ? mod_n : 40), mod,
             (int)(name_n < 40 ? name_n : 40), name);
    for (char *q = what; *q != '\0'; q++)
        if ((unsigned char)*q < 0x20 || (unsigned char)*q >= 0x7f)
            *q = '?';
    return bad(m,
               "global '%s' is not allowed (only numpy arrays, lists, dicts, numbers and "
               "strings are read)",
               what);
}

/* UTF-8 text of code points < 256 to latin1 bytes (Python 3 writes bytes
 * at protocol 2 as _codecs.encode(text, 'latin1')). */
static enum ddts_status latin1(struct vm *m, const struct ddts__pk_obj *str)
{
    struct ddts__pk_obj *o = new_obj(m->p, PK_BYTES);
    if (o == NULL)
        return oom(m);
    o->owned = ddts_malloc(str->nbytes ? str->nbytes : 1);
    if (o->owned == NULL)
        return oom(m);
    size_t k = 0;
    for (size_t i = 0; i < str->nbytes; i++) {
        uint8_t c = str->bytes[i];
        if (c < 0x80) {
            o->owned[k++] = c;
        } else if ((c == 0xC2 || c == 0xC3) && i + 1 < str->nbytes &&
                   (str->bytes[i + 1] & 0xC0) == 0x80) {
            o->owned[k++] = (uint8_t)(((c & 0x03) << 6) | (str->bytes[i + 1] & 0x3F));
            i++;
        } else {
            return bad(m, "_codecs.encode: text is not latin1%s", NULL);
        }
    }
    o->bytes = o->owned;
    o->nbytes = k;
    return push(m, val_obj(o));
}

/* REDUCE: callable and argument tuple on the stack. */
static enum ddts_status reduce(struct vm *m)
{
    if (m->sp < 2)
        return bad(m, "REDUCE on an empty stack%s", NULL);
    struct ddts__pk_value fn = m->stack[m->sp - 2], args = m->stack[m->sp - 1];
    m->sp -= 2;
    if (fn.kind != PK_GLOBAL || args.kind != PK_TUPLE)
        return bad(m, "REDUCE of something that is not an allowed global%s", NULL);
    const struct ddts__pk_value *a = args.o->items;
    size_t na = args.o->n;
    switch (fn.i) {
    case G_RECONSTRUCT: {
        /* _reconstruct(ndarray, (0,), b'b'): an empty array, BUILD fills it. */
        if (na != 3 || a[0].kind != PK_GLOBAL || a[0].i != G_NDARRAY)
            return bad(m, "_reconstruct: arguments are not (ndarray, shape, code)%s", NULL);
        struct ddts__pk_obj *o = new_obj(m->p, PK_ARRAY);
        if (o == NULL)
            return oom(m);
        return push(m, val_obj(o));
    }
    case G_DTYPE: {
        /* dtype('u1', False, True): numpy's type string ('O8', 'u1', 'f8', 'i8'). */
        if (na < 1 || !is_text(&a[0]) || a[0].o->nbytes == 0 || a[0].o->nbytes > 6)
            return bad(m, "dtype: arguments are not (type, align, copy)%s", NULL);
        struct ddts__pk_obj *o = new_obj(m->p, PK_DTYPE);
        if (o == NULL)
            return oom(m);
        memcpy(o->dtype, a[0].o->bytes, a[0].o->nbytes);
        o->dtype[a[0].o->nbytes] = '\0';
        o->order = '|';
        return push(m, val_obj(o));
    }
    case G_ENCODE:
        if (na != 2 || a[0].kind != PK_STR ||
            !(text_is(&a[1], "latin1") || text_is(&a[1], "latin-1")))
            return bad(m, "_codecs.encode: arguments are not (text, 'latin1')%s", NULL);
        return latin1(m, a[0].o);
    case G_BYTES: {
        if (na != 0)
            return bad(m, "bytes(): arguments are not allowed%s", NULL);
        struct ddts__pk_obj *o = new_obj(m->p, PK_BYTES);
        if (o == NULL)
            return oom(m);
        o->bytes = (const uint8_t *)"";
        return push(m, val_obj(o));
    }
    default:
        return bad(m, "REDUCE of numpy.ndarray itself is not allowed%s", NULL);
    }
}

/* BUILD: a dtype's state (version, byte order, ...) or an array's
 * (version, shape, dtype, fortran, data). */
static enum ddts_status build(struct vm *m)
{
    if (m->sp < 2)
        return bad(m, "BUILD on an empty stack%s", NULL);
    struct ddts__pk_value obj = m->stack[m->sp - 2], st = m->stack[m->sp - 1];
    m->sp -= 1;
    if (st.kind != PK_TUPLE || (obj.kind != PK_DTYPE && obj.kind != PK_ARRAY))
        return bad(m, "BUILD is allowed on numpy arrays and dtypes only%s", NULL);
    const struct ddts__pk_value *s = st.o->items;
    size_t ns = st.o->n;
    struct ddts__pk_obj *o = obj.o;
    if (obj.kind == PK_DTYPE) {
        if (ns < 2 || !is_text(&s[1]) || s[1].o->nbytes != 1)
            return bad(m, "dtype state is not (version, byte order, ...)%s", NULL);
        o->order = (char)s[1].o->bytes[0];
        return DDTS_OK;
    }
    if (o->built)
        return bad(m, "an array is built twice%s", NULL);
    size_t k = ns == 5 ? 1 : ns == 4 ? 0 : 9;
    if (k == 9 || s[k].kind != PK_TUPLE || s[k + 1].kind != PK_DTYPE)
        return bad(m, "array state is not (version, shape, dtype, fortran, data)%s", NULL);
    const struct ddts__pk_obj *shape = s[k].o;
    if (shape->n > DDTS_MAX_ARRAY_RANK)
        return bad(m, "array rank above the limit%s", NULL);
    o->rank = (int)shape->n;
    for (size_t i = 0; i < shape->n; i++) {
        if (shape->items[i].kind != PK_INT || shape->items[i].i < 0)
            return bad(m, "array shape is not a tuple of sizes%s", NULL);
        o->shape[i] = shape->items[i].i;
    }
    memcpy(o->dtype, s[k + 1].o->dtype, sizeof o->dtype);
    o->order = s[k + 1].o->order;
    o->fortran = s[k + 2].kind == PK_BOOL || s[k + 2].kind == PK_INT ? s[k + 2].i != 0 : 1;
    o->data = s[k + 3];
    if (o->data.kind != PK_BYTES && o->data.kind != PK_STR && o->data.kind != PK_LIST)
        return bad(m, "array data is neither bytes nor a list%s", NULL);
    o->built = 1;
    return DDTS_OK;
}

static enum ddts_status memo_put(struct vm *m, uint64_t idx)
{
    if (m->sp == 0)
        return bad(m, "PUT on an empty stack%s", NULL);
    if (idx > m->n_memo)
        return bad(m, "memo index beyond the memo (Python numbers them in order)%s", NULL);
    if (idx >= m->memo_cap) {
        size_t cap = m->memo_cap ? m->memo_cap : 64;
        while (cap <= idx)
            cap *= 2;
        struct ddts__pk_value *g = grow(m->memo, cap, sizeof *g);
        if (g == NULL)
            return oom(m);
        memset(g + m->memo_cap, 0, (cap - m->memo_cap) * sizeof *g);
        m->memo = g;
        m->memo_cap = cap;
    }
    m->memo[idx] = m->stack[m->sp - 1];
    if (idx == m->n_memo)
        m->n_memo++;
    return DDTS_OK;
}

static enum ddts_status memo_get(struct vm *m, uint64_t idx)
{
    if (idx >= m->memo_cap || m->memo[idx].kind == PK_NONE_SLOT)
        return bad(m, "GET of an empty memo slot%s", NULL);
    return push(m, m->memo[idx]);
}

/* APPEND(S) and SETITEM(S): items [first, sp) into the container below. */
static enum ddts_status add_items(struct vm *m, size_t first, int dict)
{
    if (first == 0)
        return bad(m, "no container to add to%s", NULL);
    struct ddts__pk_value c = m->stack[first - 1];
    if (c.kind != (dict ? PK_DICT : PK_LIST))
        return bad(m,
                   dict ? "SETITEMS on something that is not a dict%s"
                        : "APPENDS on something that is not a list%s",
                   NULL);
    if (dict && (m->sp - first) % 2 != 0)
        return bad(m, "SETITEMS with a key but no value%s", NULL);
    for (size_t i = first; i < m->sp; i++)
        if (push_item(c.o, m->stack[i]) != 0)
            return oom(m);
    m->sp = first;
    return DDTS_OK;
}

/* The opcodes of step() that take more than a few lines. */

/* MARK: remembers where the next TUPLE, LIST, DICT, APPENDS, SETITEMS starts. */
static enum ddts_status op_mark(struct vm *m)
{
    if (m->n_marks == m->marks_cap) {
        size_t cap = m->marks_cap ? m->marks_cap * 2 : 16;
        size_t *g = grow(m->marks, cap, sizeof *g);
        if (g == NULL)
            return oom(m);
        m->marks = g;
        m->marks_cap = cap;
    }
    m->marks[m->n_marks++] = m->sp;
    return DDTS_OK;
}

/* TUPLE 't', LIST 'l', DICT 'd': the items since the last MARK. */
static enum ddts_status op_from_mark(struct vm *m, uint8_t op)
{
    size_t first = 0;
    enum ddts_status st = pop_mark(m, &first);
    if (st != DDTS_OK)
        return st;
    if (op != 'd')
        return make_seq(m, op == 't' ? PK_TUPLE : PK_LIST, first);
    struct ddts__pk_obj *o = new_obj(m->p, PK_DICT);
    if (o == NULL)
        return oom(m);
    if ((m->sp - first) % 2 != 0)
        return bad(m, "DICT with a key but no value%s", NULL);
    for (size_t i = first; i < m->sp; i++)
        if (push_item(o, m->stack[i]) != 0)
            return oom(m);
    m->sp = first;
    return push(m, val_obj(o));
}

/* LONG1: little-endian two's complement of n bytes, at most 8. */
static enum ddts_status op_long1(struct vm *m)
{
    const uint8_t *s;
    if (take(m, 1, &s) != 0)
        return bad(m, "truncated LONG1%s", NULL);
    size_t k = s[0];
    if (k > 8)
        return bad(m, "an integer above 64 bits%s", NULL);
    if (take(m, k, &s) != 0)
        return bad(m, "truncated LONG1%s", NULL);
    uint64_t v = le(s, k);
    if (k > 0 && k < 8 && (s[k - 1] & 0x80))
        v |= ~UINT64_C(0) << (8 * k);
    return push(m, val_int((int64_t)v, PK_INT));
}

/* BINFLOAT: a big-endian IEEE double. */
static enum ddts_status op_binfloat(struct vm *m)
{
    const uint8_t *s;
    if (take(m, 8, &s) != 0)
        return bad(m, "truncated BINFLOAT%s", NULL);
    uint64_t bits = 0;
    for (int i = 0; i < 8; i++)
        bits = bits << 8 | s[i];
    struct ddts__pk_value v = {0};
    v.kind = PK_FLOAT;
    memcpy(&v.f, &bits, sizeof v.f);
    return push(m, v);
}

static enum ddts_status op_global(struct vm *m)
{
    const uint8_t *mod = m->b + m->at, *nl = memchr(mod, '\n', m->n - m->at);
    if (nl == NULL)
        return bad(m, "truncated GLOBAL%s", NULL);
    const uint8_t *name = nl + 1, *nl2 = memchr(name, '\n', (size_t)(m->b + m->n - name));
    if (nl2 == NULL)
        return bad(m, "truncated GLOBAL%s", NULL);
    m->at = (size_t)(nl2 + 1 - m->b);
    return global(m, (const char *)mod, (size_t)(nl - mod), (const char *)name,
                  (size_t)(nl2 - name));
}

static enum ddts_status op_stack_global(struct vm *m)
{
    if (m->sp < 2 || m->stack[m->sp - 1].kind != PK_STR || m->stack[m->sp - 2].kind != PK_STR)
        return bad(m, "STACK_GLOBAL without module and name%s", NULL);
    const struct ddts__pk_obj *mo = m->stack[m->sp - 2].o, *na = m->stack[m->sp - 1].o;
    m->sp -= 2;
    return global(m, (const char *)mo->bytes, mo->nbytes, (const char *)na->bytes, na->nbytes);
}

/*
 * One opcode; *stop set at STOP. Longer than our usual limit on purpose:
 * this switch is the whole list of opcodes the unpickler accepts, each case
 * a few lines (the longer ones call op_* above), and reading it in one place
 * is how the whitelist is audited.
 */
static enum ddts_status step(struct vm *m, int *stop)
{
    const uint8_t *s;
    size_t first = 0;
    m->op_at = m->at;
    if (take(m, 1, &s) != 0)
        return bad(m, "the pickle ends without STOP%s", NULL);
    uint8_t op = s[0];
    switch (op) {
    case 0x80: /* PROTO */
        if (take(m, 1, &s) != 0 || s[0] < 2 || s[0] > 5)
            return bad(m, "protocol is not 2 to 5%s", NULL);
        return DDTS_OK;
    case 0x95: /* FRAME: a length hint */
        return take(m, 8, &s) != 0 ? bad(m, "truncated FRAME%s", NULL) : DDTS_OK;
    case '.':
        *stop = 1;
        return DDTS_OK;
    case '(':
        return op_mark(m);
    case ']':
    case '}':
    case ')': {
        if (op == ')')
            return make_seq(m, PK_TUPLE, m->sp);
        struct ddts__pk_obj *o = new_obj(m->p, op == ']' ? PK_LIST : PK_DICT);
        return o == NULL ? oom(m) : push(m, val_obj(o));
    }
    case 't':
    case 'l':
    case 'd':
        return op_from_mark(m, op);
    case 0x85: /* TUPLE1..3 */
    case 0x86:
    case 0x87: {
        size_t k = (size_t)(op - 0x84);
        if (m->sp < k || (m->n_marks > 0 && m->sp - k < m->marks[m->n_marks - 1]))
            return bad(m, "TUPLE%s of too few items", op == 0x85 ? "1" : op == 0x86 ? "2" : "3");
        return make_seq(m, PK_TUPLE, m->sp - k);
    }
    case 'a':
        if (m->sp < 2)
            return bad(m, "APPEND on an empty stack%s", NULL);
        return add_items(m, m->sp - 1, 0);
    case 's':
        if (m->sp < 3)
            return bad(m, "SETITEM on an empty stack%s", NULL);
        return add_items(m, m->sp - 2, 1);
    case 'e':
    case 'u': {
        enum ddts_status st = pop_mark(m, &first);
        return st != DDTS_OK ? st : add_items(m, first, op == 'u');
    }
    case 'N':
        return push(m, val_int(0, PK_NONE));
    case 0x88:
    case 0x89:
        return push(m, val_int(op == 0x88, PK_BOOL));
    case 'K':
        if (take(m, 1, &s) != 0)
            return bad(m, "truncated BININT1%s", NULL);
        return push(m, val_int(s[0], PK_INT));
    case 'M':
        if (take(m, 2, &s) != 0)
            return bad(m, "truncated BININT2%s", NULL);
        return push(m, val_int((int64_t)le(s, 2), PK_INT));
    case 'J':
        if (take(m, 4, &s) != 0)
            return bad(m, "truncated BININT%s", NULL);
        return push(m, val_int((int32_t)(uint32_t)le(s, 4), PK_INT));
    case 0x8a: /* LONG1 */
        return op_long1(m);
    case 'G':
        return op_binfloat(m);
    case 'U':  /* SHORT_BINSTRING (Python 2 str): bytes */
    case 'C':  /* SHORT_BINBYTES */
    case 0x8c: /* SHORT_BINUNICODE */
        if (take(m, 1, &s) != 0)
            return bad(m, "truncated string length%s", NULL);
        return string_value(m, s[0], op == 0x8c ? PK_STR : PK_BYTES);
    case 'T': /* BINSTRING */
    case 'B': /* BINBYTES */
    case 'X': /* BINUNICODE */
        if (take(m, 4, &s) != 0)
            return bad(m, "truncated string length%s", NULL);
        return string_value(m, (size_t)le(s, 4), op == 'X' ? PK_STR : PK_BYTES);
    case 0x8d: /* BINUNICODE8 */
    case 0x8e: /* BINBYTES8 */
        if (take(m, 8, &s) != 0 || le(s, 8) > m->n)
            return bad(m, "bad string length%s", NULL);
        return string_value(m, (size_t)le(s, 8), op == 0x8d ? PK_STR : PK_BYTES);
    case 'c': /* GLOBAL "module\nname\n" */
        return op_global(m);
    case 0x93: /* STACK_GLOBAL */
        return op_stack_global(m);
    case 'R':
        return reduce(m);
    case 'b':
        return build(m);
    case 'q':
        if (take(m, 1, &s) != 0)
            return bad(m, "truncated BINPUT%s", NULL);
        return memo_put(m, s[0]);
    case 'r':
        if (take(m, 4, &s) != 0)
            return bad(m, "truncated LONG_BINPUT%s", NULL);
        return memo_put(m, le(s, 4));
    case 0x94: /* MEMOIZE: the next index, len(memo) */
        return memo_put(m, m->n_memo);
    case 'h':
        if (take(m, 1, &s) != 0)
            return bad(m, "truncated BINGET%s", NULL);
        return memo_get(m, s[0]);
    case 'j':
        if (take(m, 4, &s) != 0)
            return bad(m, "truncated LONG_BINGET%s", NULL);
        return memo_get(m, le(s, 4));
    case '0': /* POP */
        if (m->sp == 0)
            return bad(m, "POP on an empty stack%s", NULL);
        m->sp--;
        return DDTS_OK;
    default: {
        char hex[8];
        snprintf(hex, sizeof hex, "0x%02x", op);
        return bad(m, "opcode %s is not allowed", hex);
    }
    }
}

enum ddts_status ddts__pickle_load(const void *buf, size_t nbytes, const char *name,
                                   struct ddts__pickle **out, struct ddts__pk_value *root,
                                   struct ddts_error *err)
{
    *out = NULL;
    memset(root, 0, sizeof *root);
    if (name == NULL)
        name = "pickle";
    struct vm m = {0};
    m.p = ddts_calloc(1, sizeof *m.p);
    if (m.p == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
    m.b = buf;
    m.n = nbytes;
    m.name = name;
    m.err = err;
    enum ddts_status st = DDTS_OK;
    int stop = 0;
    while (st == DDTS_OK && !stop)
        st = step(&m, &stop);
    if (st == DDTS_OK && (m.sp != 1 || m.n_marks != 0))
        st = fail(err, name, m.op_at, "STOP with %s on the stack",
                  m.sp != 1 ? "not one value" : "a MARK");
    if (st == DDTS_OK) {
        *root = m.stack[0];
        *out = m.p;
    } else {
        ddts__pickle_destroy(m.p);
    }
    ddts_free(m.stack);
    ddts_free(m.marks);
    ddts_free(m.memo);
    return st;
}

const struct ddts__pk_value *ddts__pk_dict_get(const struct ddts__pk_value *dict, const char *key)
{
    if (dict->kind != PK_DICT)
        return NULL;
    for (size_t i = 0; i + 1 < dict->o->n; i += 2)
        if (text_is(&dict->o->items[i], key))
            return &dict->o->items[i + 1];
    return NULL;
}
