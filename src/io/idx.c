/*
 * idx files (the MNIST family), plain or gzip-compressed. The only user of zlib.
 *
 *   u8 0, u8 0, u8 type, u8 rank, then rank big-endian u32 dimensions,
 *   then the data, big endian, C order.
 *   type: 0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64.
 *
 * Compressed input is inflated straight into the array: the header first
 * (a few bytes), then, once its size is checked against the limits, the
 * compression ratio and the gzip trailer's ISIZE, the data.
 */
#include <string.h>
#include <zlib.h>

#include "io.h"

/* Reads the data through a plain buffer or an inflating z_stream. */
struct idx_src {
    const uint8_t *buf;
    size_t nbytes, pos;
    int gz;
    z_stream zs;
};

static enum ddts_status src_read(struct idx_src *s, void *dst, size_t n, struct ddts_error *err)
{
    if (!s->gz) {
        if (n > s->nbytes - s->pos)
            return ddts_error_set(err, DDTS_EFORMAT,
                                  "idx: truncated: %zu bytes needed, %zu present", n,
                                  s->nbytes - s->pos);
        memcpy(dst, s->buf + s->pos, n);
        s->pos += n;
        return DDTS_OK;
    }
    uint8_t *p = dst;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        s->zs.next_out = p;
        s->zs.avail_out = chunk;
        int rc = inflate(&s->zs, Z_NO_FLUSH);
        size_t got = chunk - s->zs.avail_out;
        p += got;
        n -= got;
        if (rc == Z_STREAM_END && n > 0)
            return ddts_error_set(err, DDTS_EFORMAT,
                                  "idx: gzip stream ends %zu bytes before the data does", n);
        if (rc != Z_OK && rc != Z_STREAM_END)
            return ddts_error_set(err, DDTS_EFORMAT, "idx: corrupt gzip data (%s)",
                                  s->zs.msg ? s->zs.msg : "inflate failed");
        if (got == 0 && rc == Z_OK && s->zs.avail_in == 0)
            return ddts_error_set(err, DDTS_EFORMAT, "idx: truncated gzip data");
    }
    return DDTS_OK;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

enum ddts_status ddts_idx_parse(const void *buf, size_t nbytes, struct ddts_array **out,
                                struct ddts_error *err)
{
    *out = NULL;
    struct idx_src s = {.buf = buf, .nbytes = nbytes};
    struct ddts_array *a = NULL;
    enum ddts_status st;
    const uint8_t *b = buf;
    s.gz = nbytes >= 2 && b[0] == 0x1f && b[1] == 0x8b;
    if (s.gz) {
        if (nbytes < 18)
            return ddts_error_set(err, DDTS_EFORMAT, "idx: truncated gzip file");
        /* inflateInit2 with 16 + MAX_WBITS reads a gzip wrapper. */
        s.zs.next_in = (Bytef *)(uintptr_t)buf;
        s.zs.avail_in = nbytes > UINT32_MAX ? UINT32_MAX : (uInt)nbytes;
        if (nbytes > UINT32_MAX)
            return ddts_error_set(err, DDTS_ELIMIT, "idx: gzip file above 4 GiB");
        if (inflateInit2(&s.zs, 16 + MAX_WBITS) != Z_OK)
            return ddts_error_set(err, DDTS_ENOMEM, "idx: cannot start zlib");
    }
    uint8_t head[4 + 4 * 255];
    st = src_read(&s, head, 4, err);
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
    st = src_read(&s, head + 4, 4 * (size_t)rank, err);
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
    if (!s.gz && total > nbytes) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "idx: truncated: the header's shape needs %zu bytes, the file has %zu",
                            total, nbytes);
        goto out;
    }
    if (!s.gz && total < nbytes) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "idx: %zu bytes after the data (the header's shape needs %zu)",
                            nbytes - total, total);
        goto out;
    }
    if (s.gz) {
        /* Before allocating: the gzip trailer's ISIZE (size mod 2^32) must agree with
         * the header's shape, and the ratio must be one deflate can reach honestly. */
        uint32_t isize = (uint32_t)b[nbytes - 4] | (uint32_t)b[nbytes - 3] << 8 |
                         (uint32_t)b[nbytes - 2] << 16 | (uint32_t)b[nbytes - 1] << 24;
        if (isize != (uint32_t)total) {
            st = ddts_error_set(err, DDTS_EFORMAT,
                                "idx: the gzip trailer says %u bytes uncompressed, the header's "
                                "shape needs %zu",
                                isize, total);
            goto out;
        }
        if (total / nbytes > DDTS_MAX_ZIP_RATIO) {
            st = ddts_error_set(err, DDTS_ELIMIT,
                                "idx: compression ratio %zu above %d (a zip bomb?)", total / nbytes,
                                DDTS_MAX_ZIP_RATIO);
            goto out;
        }
    }
    st = ddts_array_create(dt, rank, shape, &a, err);
    if (st != DDTS_OK)
        goto out;
    if (a->nbytes > 0) {
        st = src_read(&s, a->data, a->nbytes, err);
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
    if (s.gz)
        inflateEnd(&s.zs);
    if (st != DDTS_OK) {
        ddts_array_destroy(a);
        return st;
    }
    *out = a;
    return DDTS_OK;
}
