/*
 * idx files (the MNIST family), plain or gzip-compressed. The only user of zlib.
 *
 *   u8 0, u8 0, u8 type, u8 rank, then rank big-endian u32 dimensions,
 *   then the data, big endian, C order.
 *   type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
 *
 * Compressed input is inflated straight into the array: the header first
 * (a few bytes), then, once its size is checked against the limits, the
 * compression ratio and the gzip trailer's ISIZE, the data. Files stream
 * through a 256 KiB buffer, so loading needs the array and nothing more.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "io.h"

#define FILE_CHUNK (256u << 10)

/* The input: a buffer or a file, plain or inflated through a z_stream. */
struct idx_src {
    const uint8_t *buf; /* memory input, or NULL */
    FILE *fp;           /* file input, or NULL */
    uint8_t *chunk;     /* compressed bytes read from fp */
    uint64_t nbytes;    /* input size */
    uint64_t pos;       /* plain input: bytes consumed */
    uint32_t isize;     /* gzip trailer: uncompressed size mod 2^32 */
    int gz;
    z_stream zs;
};

static enum ddts_status src_read(struct idx_src *s, void *dst, size_t n, struct ddts_error *err)
{
    if (!s->gz) {
        if (n > s->nbytes - s->pos)
            return ddts_error_set(err, DDTS_EFORMAT,
                                  "idx: truncated: %zu bytes needed, %llu present", n,
                                  (unsigned long long)(s->nbytes - s->pos));
        if (s->buf != NULL)
            memcpy(dst, s->buf + s->pos, n);
        else if (fread(dst, 1, n, s->fp) != n)
            return ddts_error_set(err, DDTS_EIO, "idx: read failed");
        s->pos += n;
        return DDTS_OK;
    }
    uint8_t *p = dst;
    while (n > 0) {
        if (s->zs.avail_in == 0 && s->fp != NULL) {
            size_t got = fread(s->chunk, 1, FILE_CHUNK, s->fp);
            s->zs.next_in = s->chunk;
            s->zs.avail_in = (uInt)got;
        }
        uInt want = n > (1u << 30) ? (1u << 30) : (uInt)n;
        s->zs.next_out = p;
        s->zs.avail_out = want;
        int rc = inflate(&s->zs, Z_NO_FLUSH);
        size_t got = want - s->zs.avail_out;
        p += got;
        n -= got;
        if (rc == Z_STREAM_END && n > 0)
            return ddts_error_set(err, DDTS_EFORMAT,
                                  "idx: gzip stream ends %zu bytes before the data does", n);
        if (rc != Z_OK && rc != Z_STREAM_END && !(rc == Z_BUF_ERROR && s->zs.avail_in == 0))
            return ddts_error_set(err, DDTS_EFORMAT, "idx: corrupt gzip data (%s)",
                                  s->zs.msg ? s->zs.msg : "inflate failed");
        if (got == 0 && s->zs.avail_in == 0 && (s->fp == NULL || feof(s->fp)))
            return ddts_error_set(err, DDTS_EFORMAT, "idx: truncated gzip data");
    }
    return DDTS_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Everything after the source is set up (and its z_stream initialised). */
static enum ddts_status idx_read(struct idx_src *src, struct ddts_array **out,
                                 struct ddts_error *err)
{
    uint64_t nbytes = src->nbytes;
    struct ddts_array *a = NULL;
    enum ddts_status st;
    uint8_t head[4 + 4 * 255];
    st = src_read(src, head, 4, err);
    if (st != DDTS_OK)
        goto out;
    if (head[0] != 0 || head[1] != 0) {
        st = ddts_error_set(err, DDTS_EFORMAT, "idx: bad magic %02x %02x (expected 00 00)", head[0],
                            head[1]);
        goto out;
    }
    enum ddts_dtype dt;
    switch (head[2]) {
    case 0x08:
        dt = DDTS_U8;
        break;
    case 0x09:
        dt = DDTS_I8;
        break;
    case 0x0B:
        dt = DDTS_I16;
        break;
    case 0x0C:
        dt = DDTS_I32;
        break;
    case 0x0D:
        dt = DDTS_F32;
        break;
    case 0x0E:
        dt = DDTS_F64;
        break;
    default:
        st = ddts_error_set(err, DDTS_EFORMAT, "idx: unknown type code 0x%02x", head[2]);
        goto out;
    }
    int rank = head[3];
    if (rank == 0 || rank > DDTS_MAX_ARRAY_RANK) {
        st = ddts_error_set(err, rank == 0 ? DDTS_EFORMAT : DDTS_ELIMIT,
                            "idx: rank %d (1 to %d supported)", rank, DDTS_MAX_ARRAY_RANK);
        goto out;
    }
    st = src_read(src, head + 4, 4 * (size_t)rank, err);
    if (st != DDTS_OK)
        goto out;
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    size_t data_nbytes = ddts_dtype_size(dt);
    for (int i = 0; i < rank; i++) {
        shape[i] = be32(head + 4 + 4 * i);
        if (ddts_size_mul(data_nbytes, (size_t)shape[i], &data_nbytes) != 0 ||
            data_nbytes > DDTS_MAX_ARRAY_BYTES) {
            st = ddts_error_set(err, DDTS_ELIMIT, "idx: array exceeds %llu bytes",
                                (unsigned long long)DDTS_MAX_ARRAY_BYTES);
            goto out;
        }
    }
    size_t total = 4 + 4 * (size_t)rank + data_nbytes;
    if (!src->gz && total > nbytes) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "idx: truncated: the header's shape needs %zu bytes, the file has %llu",
                            total, (unsigned long long)nbytes);
        goto out;
    }
    if (!src->gz && total < nbytes) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "idx: %llu bytes after the data (the header's shape needs %zu)",
                            (unsigned long long)(nbytes - total), total);
        goto out;
    }
    if (src->gz) {
        /* Before allocating: the gzip trailer's ISIZE (size mod 2^32) must agree with
         * the header's shape, and the ratio must be one deflate can reach honestly. */
        uint32_t isize = src->isize;
        if (isize != (uint32_t)total) {
            st = ddts_error_set(err, DDTS_EFORMAT,
                                "idx: the gzip trailer says %u bytes uncompressed, the header's "
                                "shape needs %zu",
                                isize, total);
            goto out;
        }
        if (total / nbytes > DDTS_MAX_ZIP_RATIO) {
            st = ddts_error_set(err, DDTS_ELIMIT,
                                "idx: compression ratio %llu above %d (a zip bomb?)",
                                (unsigned long long)(total / nbytes), DDTS_MAX_ZIP_RATIO);
            goto out;
        }
    }
    /* Every byte is read below (or the array is dropped): no zeroing pass. */
    st = ddts_array_create_uninit(dt, rank, shape, &a, err);
    if (st != DDTS_OK)
        goto out;
    if (a->nbytes > 0) {
        st = src_read(src, a->data, a->nbytes, err);
        if (st != DDTS_OK)
            goto out;
    }
    /* idx data is big endian. */
    size_t es = ddts_dtype_size(dt), count = ddts_array_count(a);
    uint8_t *p = a->data;
    for (size_t i = 0; es > 1 && i < count; i++, p += es)
        for (size_t x = 0, y = es - 1; x < y; x++, y--) {
            uint8_t t = p[x];
            p[x] = p[y];
            p[y] = t;
        }
out:
    if (st != DDTS_OK) {
        ddts_array_destroy(a);
        return st;
    }
    *out = a;
    return DDTS_OK;
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

enum ddts_status ddts_idx_parse(const void *buf, size_t nbytes, struct ddts_array **out,
                                struct ddts_error *err)
{
    *out = NULL;
    struct idx_src s;
    memset(&s, 0, sizeof s);
    s.buf = buf;
    s.nbytes = nbytes;
    const uint8_t *b = buf;
    s.gz = nbytes >= 2 && b[0] == 0x1f && b[1] == 0x8b;
    if (!s.gz)
        return idx_read(&s, out, err);
    if (nbytes < 18)
        return ddts_error_set(err, DDTS_EFORMAT, "idx: truncated gzip file");
    if (nbytes > UINT32_MAX)
        return ddts_error_set(err, DDTS_ELIMIT, "idx: gzip file above 4 GiB in memory");
    s.isize = le32(b + nbytes - 4);
    /* inflateInit2 with 16 + MAX_WBITS reads a gzip wrapper. */
    s.zs.next_in = (Bytef *)(uintptr_t)buf;
    s.zs.avail_in = (uInt)nbytes;
    if (inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK)
        return ddts_error_set(err, DDTS_ENOMEM, "idx: cannot start zlib");
    enum ddts_status st = idx_read(&s, out, err);
    inflateEnd(&s.zs);
    return st;
}

enum ddts_status ddts__idx_load(const char *path, struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    struct idx_src s;
    memset(&s, 0, sizeof s);
    s.fp = fopen(path, "rb");
    if (s.fp == NULL)
        return ddts_error_set_errno(err, errno == ENOENT ? DDTS_ENOTFOUND : DDTS_EIO, errno,
                                    "%s: cannot open", path);
    enum ddts_status st = DDTS_OK;
    int zinit = 0;
    struct stat sb;
    uint8_t m[4];
    if (fstat(fileno(s.fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        st = ddts_error_set(err, DDTS_EIO, "%s: not a regular file", path);
        goto out;
    }
    s.nbytes = (uint64_t)sb.st_size;
    s.gz = s.nbytes >= 2 && fread(m, 1, 2, s.fp) == 2 && m[0] == 0x1f && m[1] == 0x8b;
    if (s.gz) {
        if (s.nbytes < 18) {
            st = ddts_error_set(err, DDTS_EFORMAT, "idx: truncated gzip file");
            goto out;
        }
        if (fseeko(s.fp, -4, SEEK_END) != 0 || fread(m, 1, 4, s.fp) != 4) {
            st = ddts_error_set(err, DDTS_EIO, "%s: cannot read the gzip trailer", path);
            goto out;
        }
        s.isize = le32(m);
        s.chunk = ddts_malloc(FILE_CHUNK);
        if (s.chunk == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        if (inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK) {
            st = ddts_error_set(err, DDTS_ENOMEM, "idx: cannot start zlib");
            goto out;
        }
        zinit = 1;
    }
    rewind(s.fp);
    st = idx_read(&s, out, err);
out:
    if (zinit)
        inflateEnd(&s.zs);
    ddts_free(s.chunk);
    fclose(s.fp);
    if (st != DDTS_OK)
        ddts_error_prefix(err, "%s: ", path);
    return st;
}

/* A whole gzip file inflated into memory (the CIFAR .tar.gz archives);
 * refused above max_nbytes inflated. zlib's only home is this file. */
enum ddts_status ddts__gunzip_file(const char *path, size_t max_nbytes, uint8_t **out, size_t *n,
                                   struct ddts_error *err)
{
    *out = NULL;
    *n = 0;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return ddts_error_set_errno(err, errno == ENOENT ? DDTS_ENOTFOUND : DDTS_EIO, errno,
                                    "%s: cannot open", path);
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    uint8_t *chunk = ddts_malloc(FILE_CHUNK), *buf = NULL;
    size_t cap = 0, used = 0;
    enum ddts_status st = DDTS_OK;
    if (chunk == NULL || inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) {
        ddts_free(chunk);
        fclose(fp);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
    }
    int rc = Z_OK;
    while (rc != Z_STREAM_END && st == DDTS_OK) {
        if (zs.avail_in == 0) {
            size_t got = fread(chunk, 1, FILE_CHUNK, fp);
            if (got == 0) {
                st = ddts_error_set(err, DDTS_EFORMAT, "%s: truncated gzip data", path);
                break;
            }
            zs.next_in = chunk;
            zs.avail_in = (uInt)got;
        }
        if (used == cap) {
            size_t nc = cap ? cap * 2 : (size_t)1 << 20;
            if (cap >= max_nbytes) {
                st = ddts_error_set(err, DDTS_ELIMIT, "%s: inflates to more than %zu bytes", path,
                                    max_nbytes);
                break;
            }
            if (nc > max_nbytes)
                nc = max_nbytes;
            uint8_t *g = ddts_realloc(buf, nc);
            if (g == NULL) {
                st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
                break;
            }
            buf = g;
            cap = nc;
        }
        zs.next_out = buf + used;
        zs.avail_out = (uInt)(cap - used < (1u << 30) ? cap - used : (1u << 30));
        size_t before = zs.avail_out;
        rc = inflate(&zs, Z_NO_FLUSH);
        used += before - zs.avail_out;
        if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR)
            st = ddts_error_set(err, DDTS_EFORMAT, "%s: %s", path,
                                zs.msg ? zs.msg : "gzip data is corrupt");
    }
    inflateEnd(&zs);
    ddts_free(chunk);
    fclose(fp);
    if (st != DDTS_OK) {
        ddts_free(buf);
        return st;
    }
    *out = buf;
    *n = used;
    return DDTS_OK;
}
