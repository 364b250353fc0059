/*
 * .npy files (numpy's format, versions 1.0 to 3.0):
 *
 *   "\x93NUMPY" major minor  header_len (u16 LE in 1.0, u32 LE in 2.0/3.0)
 *   header: a Python dict literal, e.g.
 *     {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), }
 *   padded with spaces and a '\n' so that the data starts 64-byte aligned.
 *
 * The data follows in the dtype and order the header states. We convert to
 * native endian and C order in place (Fortran order needs one scratch copy).
 */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "ddts/fs.h"
#include "io.h"

#define NPY_MAGIC     "\x93NUMPY"
#define NPY_MAGIC_LEN 6

static int host_is_little(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* A cursor over the header dict text. */
struct cursor {
    const char *p, *end;
};

static void skip_space(struct cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(struct cursor *c, char ch)
{
    skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string (no escapes needed in npy headers); [s, s+n). */
static int parse_str(struct cursor *c, const char **s, size_t *n)
{
    skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return -1;
    char q = *c->p++;
    const char *start = c->p;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\')
            return -1;
        c->p++;
    }
    if (c->p >= c->end)
        return -1;
    *s = start;
    *n = (size_t)(c->p - start);
    c->p++;
    return 0;
}

static int parse_word(struct cursor *c, const char *word)
{
    skip_space(c);
    size_t n = strlen(word);
    if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
        c->p += n;
        return 0;
    }
    return -1;
}

static int parse_int(struct cursor *c, int64_t *out)
{
    skip_space(c);
    int64_t v = 0;
    const char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, *c->p - '0', &v))
            return -1;
        c->p++;
    }
    /* Python 2 era numpy wrote "3L". */
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    if (c->p == start)
        return -1;
    *out = v;
    return 0;
}

static enum ddts_status parse_descr(const char *s, size_t n, struct ddts_npy_header *hdr,
                                    struct ddts_error *err)
{
    if (n < 3 || n > 4)
        return ddts_error_set(err, DDTS_EUNSUPPORTED, "npy: dtype '%.*s' is not supported",
                              (int)(n < 32 ? n : 32), s);
    char order = s[0], kind = s[1];
    size_t size = 0;
    for (size_t i = 2; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed dtype '%.*s'", (int)n, s);
        size = size * 10 + (size_t)(s[i] - '0');
    }
    if (order != '<' && order != '>' && order != '|' && order != '=')
        return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed dtype '%.*s'", (int)n, s);
    enum ddts_dtype dt = DDTS_N_DTYPES;
    if (kind == 'b' && size == 1)
        dt = DDTS_BOOL;
    else if (kind == 'i')
        dt = size == 1   ? DDTS_I8
             : size == 2 ? DDTS_I16
             : size == 4 ? DDTS_I32
             : size == 8 ? DDTS_I64
                         : dt;
    else if (kind == 'u')
        dt = size == 1   ? DDTS_U8
             : size == 2 ? DDTS_U16
             : size == 4 ? DDTS_U32
             : size == 8 ? DDTS_U64
                         : dt;
    else if (kind == 'f')
        dt = size == 2 ? DDTS_F16 : size == 4 ? DDTS_F32 : size == 8 ? DDTS_F64 : dt;
    if (dt == DDTS_N_DTYPES)
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "npy: dtype '%.*s' is not supported (numeric and bool only)", (int)n,
                              s);
    hdr->dtype = dt;
    hdr->big_endian = size > 1 && (order == '>' || (order == '=' && !host_is_little()));
    return DDTS_OK;
}

enum ddts_status ddts_npy_parse_header(const void *buf, size_t nbytes, struct ddts_npy_header *hdr,
                                       struct ddts_error *err)
{
    const uint8_t *b = buf;
    memset(hdr, 0, sizeof *hdr);
    if (nbytes < 10 || memcmp(b, NPY_MAGIC, NPY_MAGIC_LEN) != 0)
        return ddts_error_set(err, DDTS_EFORMAT, "npy: not a .npy file (bad magic)");
    int major = b[6];
    size_t hlen, start;
    if (major == 1) {
        hlen = (size_t)b[8] | (size_t)b[9] << 8;
        start = 10;
    } else if (major == 2 || major == 3) {
        if (nbytes < 12)
            return ddts_error_set(err, DDTS_EFORMAT, "npy: truncated header");
        hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
        start = 12;
    } else {
        return ddts_error_set(err, DDTS_EUNSUPPORTED, "npy: format version %d.%d (1.0-3.0 known)",
                              major, b[7]);
    }
    if (hlen > DDTS_MAX_NPY_HEADER)
        return ddts_error_set(err, DDTS_ELIMIT, "npy: header is %zu bytes (max %u)", hlen,
                              (unsigned)DDTS_MAX_NPY_HEADER);
    if (nbytes - start < hlen)
        return ddts_error_set(err, DDTS_EFORMAT, "npy: truncated header (%zu of %zu bytes)",
                              nbytes - start, hlen);
    hdr->version_major = major;
    hdr->data_offset = start + hlen;

    struct cursor c = {(const char *)b + start, (const char *)b + start + hlen};
    int have_descr = 0, have_order = 0, have_shape = 0;
    if (!accept(&c, '{'))
        return ddts_error_set(err, DDTS_EFORMAT, "npy: header is not a dict");
    for (;;) {
        if (accept(&c, '}'))
            break;
        const char *key;
        size_t key_n;
        if (parse_str(&c, &key, &key_n) != 0 || !accept(&c, ':'))
            return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed header dict");
        if (key_n == 5 && memcmp(key, "descr", 5) == 0) {
            const char *d;
            size_t dn;
            skip_space(&c);
            if (c.p < c.end && *c.p == '[')
                return ddts_error_set(err, DDTS_EUNSUPPORTED,
                                      "npy: structured dtypes are not supported");
            if (parse_str(&c, &d, &dn) != 0)
                return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed 'descr'");
            enum ddts_status st = parse_descr(d, dn, hdr, err);
            if (st != DDTS_OK)
                return st;
            have_descr = 1;
        } else if (key_n == 13 && memcmp(key, "fortran_order", 13) == 0) {
            if (parse_word(&c, "True") == 0)
                hdr->fortran_order = true;
            else if (parse_word(&c, "False") == 0)
                hdr->fortran_order = false;
            else
                return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed 'fortran_order'");
            have_order = 1;
        } else if (key_n == 5 && memcmp(key, "shape", 5) == 0) {
            if (!accept(&c, '('))
                return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed 'shape'");
            hdr->rank = 0;
            while (!accept(&c, ')')) {
                int64_t d;
                if (parse_int(&c, &d) != 0)
                    return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed 'shape'");
                if (hdr->rank >= DDTS_MAX_ARRAY_RANK)
                    return ddts_error_set(err, DDTS_ELIMIT, "npy: rank above %d",
                                          DDTS_MAX_ARRAY_RANK);
                hdr->shape[hdr->rank++] = d;
                if (!accept(&c, ',')) {
                    if (!accept(&c, ')'))
                        return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed 'shape'");
                    break;
                }
            }
            have_shape = 1;
        } else {
            return ddts_error_set(err, DDTS_EFORMAT, "npy: unknown header key '%.*s'",
                                  (int)(key_n < 40 ? key_n : 40), key);
        }
        if (!accept(&c, ',')) {
            if (!accept(&c, '}'))
                return ddts_error_set(err, DDTS_EFORMAT, "npy: malformed header dict");
            break;
        }
    }
    if (!have_descr || !have_order || !have_shape)
        return ddts_error_set(err, DDTS_EFORMAT, "npy: header lacks %s",
                              !have_descr   ? "'descr'"
                              : !have_order ? "'fortran_order'"
                                            : "'shape'");
    size_t n = ddts_dtype_size(hdr->dtype);
    for (int i = 0; i < hdr->rank; i++) {
        if ((uint64_t)hdr->shape[i] > (uint64_t)SIZE_MAX ||
            ddts_size_mul(n, (size_t)hdr->shape[i], &n) != 0 || n > DDTS_MAX_ARRAY_BYTES)
            return ddts_error_set(err, DDTS_ELIMIT, "npy: array exceeds %llu bytes",
                                  (unsigned long long)DDTS_MAX_ARRAY_BYTES);
    }
    hdr->data_nbytes = n;
    return DDTS_OK;
}

static void byteswap(void *data, size_t count, size_t size)
{
    uint8_t *p = data;
    for (size_t i = 0; i < count; i++, p += size)
        for (size_t a = 0, b = size - 1; a < b; a++, b--) {
            uint8_t t = p[a];
            p[a] = p[b];
            p[b] = t;
        }
}

/* Fortran (column-major) to C order: out[i0,...,ik] = in[i0 + d0*(i1 + d1*(...))]. */
static enum ddts_status fortran_to_c(struct ddts_array *a, struct ddts_error *err)
{
    if (a->rank < 2 || a->nbytes == 0)
        return DDTS_OK;
    uint8_t *src = ddts_aligned_alloc(a->nbytes);
    if (src == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "npy: out of memory for a Fortran-order copy");
    memcpy(src, a->data, a->nbytes);
    size_t es = ddts_dtype_size(a->dtype), count = ddts_array_count(a);
    size_t fstride[DDTS_MAX_ARRAY_RANK];
    int64_t idx[DDTS_MAX_ARRAY_RANK] = {0};
    fstride[0] = 1;
    for (int d = 1; d < a->rank; d++)
        fstride[d] = fstride[d - 1] * (size_t)a->shape[d - 1];
    uint8_t *dst = a->data;
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        memcpy(dst + i * es, src + off * es, es);
        for (int d = a->rank - 1; d >= 0; d--) {
            idx[d]++;
            off += fstride[d];
            if (idx[d] < a->shape[d])
                break;
            off -= fstride[d] * (size_t)a->shape[d];
            idx[d] = 0;
        }
    }
    ddts_free(src);
    return DDTS_OK;
}

/* Reads a .npy stream into a new array (*out), or, when `view` is given,
 * into view->data after checking that the header states view's dtype and
 * shape (the caller allocated it from an earlier look at the header). */
static enum ddts_status read_npy(ddts__read_fn read, void *ctx, uint64_t total_nbytes,
                                 const char *name, struct ddts_array *view, struct ddts_array **out,
                                 struct ddts_error *err)
{
    *out = NULL;
    uint8_t pre[12];
    uint8_t *head = NULL;
    struct ddts_array *a = NULL;
    enum ddts_status st;
    if (total_nbytes < 10) {
        st = ddts_error_set(err, DDTS_EFORMAT, "npy: file is %llu bytes, too short for a header",
                            (unsigned long long)total_nbytes);
        goto fail;
    }
    st = read(ctx, pre, 10, err);
    if (st != DDTS_OK)
        goto fail;
    if (memcmp(pre, NPY_MAGIC, NPY_MAGIC_LEN) != 0) {
        st = ddts_error_set(err, DDTS_EFORMAT, "npy: not a .npy file (bad magic)");
        goto fail;
    }
    size_t start = 10, hlen;
    if (pre[6] >= 2) {
        if (total_nbytes < 12) {
            st = ddts_error_set(err, DDTS_EFORMAT, "npy: truncated header");
            goto fail;
        }
        st = read(ctx, pre + 10, 2, err);
        if (st != DDTS_OK)
            goto fail;
        start = 12;
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
    } else {
        hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
    }
    if (hlen > DDTS_MAX_NPY_HEADER) {
        st = ddts_error_set(err, DDTS_ELIMIT, "npy: header is %zu bytes (max %u)", hlen,
                            (unsigned)DDTS_MAX_NPY_HEADER);
        goto fail;
    }
    if (total_nbytes - start < hlen) {
        st = ddts_error_set(err, DDTS_EFORMAT, "npy: truncated header (%llu of %zu bytes)",
                            (unsigned long long)(total_nbytes - start), hlen);
        goto fail;
    }
    head = ddts_malloc(start + hlen);
    if (head == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "npy: out of memory");
        goto fail;
    }
    memcpy(head, pre, start);
    st = read(ctx, head + start, hlen, err);
    if (st != DDTS_OK)
        goto fail;
    struct ddts_npy_header hdr;
    st = ddts_npy_parse_header(head, start + hlen, &hdr, err);
    if (st != DDTS_OK)
        goto fail;
    if (total_nbytes - hdr.data_offset < hdr.data_nbytes) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "npy: truncated data: %llu bytes present, the header's shape needs %zu",
                            (unsigned long long)(total_nbytes - hdr.data_offset), hdr.data_nbytes);
        goto fail;
    }
    if (view != NULL) {
        int same = view->dtype == hdr.dtype && view->rank == hdr.rank;
        for (int i = 0; same && i < hdr.rank; i++)
            same = view->shape[i] == hdr.shape[i];
        if (!same) {
            st = ddts_error_set(err, DDTS_ESTATE, "npy: the file changed while it was loaded");
            goto fail;
        }
        a = view;
    } else {
        st = ddts_array_create_uninit(hdr.dtype, hdr.rank, hdr.shape, &a, err);
        if (st != DDTS_OK)
            goto fail;
    }
    if (a->nbytes > 0) {
        st = read(ctx, a->data, a->nbytes, err);
        if (st != DDTS_OK)
            goto fail;
    }
    if (hdr.big_endian == (bool)host_is_little())
        byteswap(a->data, ddts_array_count(a), ddts_dtype_size(a->dtype));
    if (hdr.fortran_order) {
        st = fortran_to_c(a, err);
        if (st != DDTS_OK)
            goto fail;
    }
    ddts_free(head);
    if (view == NULL)
        *out = a;
    return DDTS_OK;
fail:
    ddts_free(head);
    if (a != view)
        ddts_array_destroy(a);
    if (name != NULL)
        ddts_error_prefix(err, "%s: ", name);
    return st;
}

enum ddts_status ddts__npy_read(ddts__read_fn read, void *ctx, uint64_t total_nbytes,
                                const char *name, struct ddts_array **out, struct ddts_error *err)
{
    return read_npy(read, ctx, total_nbytes, name, NULL, out, err);
}

enum ddts_status ddts__npy_read_into(ddts__read_fn read, void *ctx, uint64_t total_nbytes,
                                     const char *name, struct ddts_array *view,
                                     struct ddts_error *err)
{
    struct ddts_array *unused = NULL;
    return read_npy(read, ctx, total_nbytes, name, view, &unused, err);
}

struct mem_reader {
    const uint8_t *p;
    size_t left;
};

static enum ddts_status mem_read(void *ctx, void *dst, size_t n, struct ddts_error *err)
{
    struct mem_reader *m = ctx;
    if (n > m->left)
        return ddts_error_set(err, DDTS_EFORMAT, "npy: truncated");
    memcpy(dst, m->p, n);
    m->p += n;
    m->left -= n;
    return DDTS_OK;
}

enum ddts_status ddts_npy_parse(const void *buf, size_t nbytes, struct ddts_array **out,
                                struct ddts_error *err)
{
    struct mem_reader m = {buf, nbytes};
    return ddts__npy_read(mem_read, &m, nbytes, NULL, out, err);
}

static int descr_of(enum ddts_dtype dt, char *buf, size_t n)
{
    static const char kinds[DDTS_N_DTYPES] = {
        [DDTS_BOOL] = 'b', [DDTS_I8] = 'i',  [DDTS_U8] = 'u',  [DDTS_I16] = 'i',
        [DDTS_U16] = 'u',  [DDTS_I32] = 'i', [DDTS_U32] = 'u', [DDTS_I64] = 'i',
        [DDTS_U64] = 'u',  [DDTS_F16] = 'f', [DDTS_F32] = 'f', [DDTS_F64] = 'f',
    };
    size_t size = ddts_dtype_size(dt);
    if (size == 0)
        return -1;
    char order = size == 1 ? '|' : host_is_little() ? '<' : '>';
    return snprintf(buf, n, "%c%c%zu", order, kinds[dt], size) < (int)n ? 0 : -1;
}

enum ddts_status ddts_npy_write(const char *path, const struct ddts_array *a,
                                struct ddts_error *err)
{
    char descr[8];
    if (descr_of(a->dtype, descr, sizeof descr) != 0)
        return ddts_error_set(err, DDTS_EINVAL, "%s: invalid dtype %d", path, (int)a->dtype);
    char shape[DDTS_MAX_ARRAY_RANK * 24 + 8];
    size_t used = 0;
    shape[0] = '\0';
    for (int i = 0; i < a->rank; i++) {
        int w = snprintf(shape + used, sizeof shape - used, "%s%lld", i ? ", " : "",
                         (long long)a->shape[i]);
        used += (size_t)w;
    }
    if (a->rank == 1)
        snprintf(shape + used, sizeof shape - used, ",");
    /* numpy writes "(3,)" for rank 1 and "(3, 4)" for rank 2. */
    char header[512];
    int hn = snprintf(header, sizeof header,
                      "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }", descr, shape);
    if (hn < 0 || (size_t)hn + 64 > sizeof header)
        return ddts_error_set(err, DDTS_EINVAL, "%s: header too long", path);
    /* Pad with spaces and end with '\n' so that 10 + header_len is a multiple of 64. */
    size_t total = 10 + (size_t)hn + 1;
    size_t pad = (64 - total % 64) % 64;
    memset(header + hn, ' ', pad);
    header[(size_t)hn + pad] = '\n';
    size_t hlen = (size_t)hn + pad + 1;
    uint8_t pre[10] = {
        0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (uint8_t)(hlen & 0xff), (uint8_t)(hlen >> 8)};
    struct ddts_atomic_file f;
    enum ddts_status st = ddts_atomic_open(&f, path, err);
    if (st != DDTS_OK)
        return st;
    if (fwrite(pre, 1, sizeof pre, f.fp) != sizeof pre || fwrite(header, 1, hlen, f.fp) != hlen ||
        (a->nbytes > 0 && fwrite(a->data, 1, a->nbytes, f.fp) != a->nbytes)) {
        ddts_atomic_abort(&f);
        return ddts_error_set(err, DDTS_EIO, "%s: write failed", path);
    }
    return ddts_atomic_commit(&f, err);
}
