/*
 * Zip archives (npz, xlsx) through libzip: the only user of libzip.
 *
 * Opening checks the member count; opening a member checks its declared
 * sizes against DDTS_MAX_ZIP_RATIO and the caller's bound before anyone
 * allocates for it. libzip verifies the CRC at the end of each member, and a
 * member that inflates to more or fewer bytes than declared is refused.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "io.h"

/* Members this small may have any ratio (a run of zeros compresses ~1000:1). */
#define SMALL_MEMBER_NBYTES (1u << 16)
/* Bytes per libzip read when filling a large buffer (see member_read_exact). */
#define READ_PIECE (512u << 10)

struct ddts__zip {
    zip_t *za;
    zip_file_t *member;
    uint64_t member_left;
    /* The archive's bytes, for the raw path: a file (fd >= 0) or a buffer. */
    int fd;
    const uint8_t *buf;
    uint64_t nbytes;
    /* Raw path: a stored member read at data_off, checksummed by us. */
    int raw;
    uint64_t raw_pos;
    uint32_t crc, crc_want;
    char member_name[256]; /* the open member's name, for messages */
    char *name;            /* the archive's name in messages */
};

static enum ddts_status zip_fail(struct ddts__zip *z, zip_error_t *ze, enum ddts_status st,
                                 const char *what, struct ddts_error *err)
{
    return ddts_error_set(err, st, "%s: %s: %s", z->name, what, zip_error_strerror(ze));
}

static enum ddts_status member_fail(struct ddts__zip *z, struct ddts_error *err)
{
    return ddts_error_set(err, DDTS_EFORMAT, "%s: member '%s' is corrupt: %s", z->name,
                          z->member_name, zip_error_strerror(zip_file_get_error(z->member)));
}

static enum ddts_status finish_open(struct ddts__zip *z, zip_source_t *src, struct ddts_error *err)
{
    zip_error_t ze;
    zip_error_init(&ze);
    z->za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    if (z->za == NULL) {
        zip_source_free(src);
        int code = zip_error_code_zip(&ze);
        enum ddts_status st = code == ZIP_ER_NOENT
                                  ? zip_fail(z, &ze, DDTS_ENOTFOUND, "cannot open", err)
                              : code == ZIP_ER_OPEN || code == ZIP_ER_READ || code == ZIP_ER_SEEK
                                  ? zip_fail(z, &ze, DDTS_EIO, "cannot read", err)
                                  : zip_fail(z, &ze, DDTS_EFORMAT, "not a valid zip archive", err);
        zip_error_fini(&ze);
        return st;
    }
    zip_error_fini(&ze);
    zip_int64_t n = zip_get_num_entries(z->za, 0);
    if (n < 0 || n > DDTS_MAX_ZIP_MEMBERS)
        return ddts_error_set(err, DDTS_ELIMIT, "%s: %lld members (max %d)", z->name, (long long)n,
                              DDTS_MAX_ZIP_MEMBERS);
    return DDTS_OK;
}

static enum ddts_status alloc_zip(const char *name, struct ddts__zip **out, struct ddts_error *err)
{
    struct ddts__zip *z = ddts_calloc(1, sizeof *z);
    if (z == NULL || (z->name = ddts_strdup(name ? name : "zip")) == NULL) {
        ddts_free(z);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name ? name : "zip");
    }
    z->fd = -1;
    *out = z;
    return DDTS_OK;
}

enum ddts_status ddts__zip_open_file(const char *path, struct ddts__zip **out,
                                     struct ddts_error *err)
{
    *out = NULL;
    struct ddts__zip *z = NULL;
    enum ddts_status st = alloc_zip(path, &z, err);
    if (st != DDTS_OK)
        return st;
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_file_create(path, 0, -1, &ze);
    if (src == NULL) {
        int sys = zip_error_code_system(&ze);
        st = ddts_error_set_errno(err, DDTS_EIO, sys, "%s: cannot open", path);
        zip_error_fini(&ze);
        ddts__zip_close(z);
        return st;
    }
    zip_error_fini(&ze);
    st = finish_open(z, src, err);
    if (st != DDTS_OK) {
        ddts__zip_close(z);
        return st;
    }
    /* Our own descriptor for the raw path (none: libzip reads everything). */
    struct stat sb;
    z->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (z->fd >= 0 && (fstat(z->fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(z->fd);
        z->fd = -1;
    } else if (z->fd >= 0) {
        z->nbytes = (uint64_t)sb.st_size;
    }
    *out = z;
    return DDTS_OK;
}

enum ddts_status ddts__zip_open_buffer(const void *buf, size_t nbytes, const char *name,
                                       struct ddts__zip **out, struct ddts_error *err)
{
    *out = NULL;
    struct ddts__zip *z = NULL;
    enum ddts_status st = alloc_zip(name, &z, err);
    if (st != DDTS_OK)
        return st;
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(buf, nbytes, 0, &ze);
    zip_error_fini(&ze);
    if (src == NULL) {
        ddts__zip_close(z);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
    }
    st = finish_open(z, src, err);
    if (st != DDTS_OK) {
        ddts__zip_close(z);
        return st;
    }
    z->buf = buf;
    z->nbytes = nbytes;
    *out = z;
    return DDTS_OK;
}

void ddts__zip_close(struct ddts__zip *z)
{
    if (z == NULL)
        return;
    ddts__zip_member_close(z);
    if (z->za != NULL)
        zip_discard(z->za);
    if (z->fd >= 0)
        close(z->fd);
    ddts_free(z->name);
    ddts_free(z);
}

size_t ddts__zip_count(const struct ddts__zip *z)
{
    zip_int64_t n = zip_get_num_entries(z->za, 0);
    return n < 0 ? 0 : (size_t)n;
}

const char *ddts__zip_name(const struct ddts__zip *z, size_t i)
{
    const char *s = zip_get_name(z->za, (zip_uint64_t)i, ZIP_FL_ENC_GUESS);
    return s ? s : "";
}

enum ddts_status ddts__zip_find(const struct ddts__zip *z, const char *name, size_t *index,
                                struct ddts_error *err)
{
    zip_int64_t i = zip_name_locate(z->za, name, ZIP_FL_ENC_GUESS);
    if (i < 0)
        return ddts_error_set(err, DDTS_ENOTFOUND, "%s: no member '%s'", z->name, name);
    *index = (size_t)i;
    return DDTS_OK;
}

/* ---- the raw path for stored members ---------------------------------- */

/* Reads n bytes of the archive at off; -1 past its end or on an error. */
static int raw_read(const struct ddts__zip *z, uint64_t off, void *dst, size_t n)
{
    if (off > z->nbytes || z->nbytes - off < n)
        return -1;
    if (z->buf != NULL) {
        memcpy(dst, z->buf + off, n);
        return 0;
    }
    uint8_t *p = dst;
    while (n > 0) {
        ssize_t r = pread(z->fd, p, n, (off_t)off);
        if (r <= 0) {
            if (r < 0 && errno == EINTR)
                continue;
            return -1;
        }
        p += r;
        off += (uint64_t)r;
        n -= (size_t)r;
    }
    return 0;
}

static uint32_t u16(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t u32(const uint8_t *p)
{
    return u16(p) | u16(p + 2) << 16;
}

static uint64_t u64(const uint8_t *p)
{
    return (uint64_t)u32(p) | (uint64_t)u32(p + 4) << 32;
}

/* Central directories above this size keep libzip's path. */
#define RAW_MAX_CD (16u << 20)

/*
 * Where member `index` (named `mname`, `comp_size` bytes, stored) starts in
 * the archive: the end of central directory record (zip64 too), the
 * member's central directory entry, then its local header. libzip has
 * already checked the archive (ZIP_CHECKCONS); anything here that does not
 * add up returns -1 and the member is read through libzip instead.
 */
static int find_data(const struct ddts__zip *z, size_t index, const char *mname, uint64_t comp_size,
                     uint64_t *data_off)
{
    /* The end record: 22 bytes and a comment of up to 65535 at the end. */
    const size_t tail_max = 22 + 65535;
    size_t tn = z->nbytes < tail_max ? (size_t)z->nbytes : tail_max;
    if (tn < 22)
        return -1;
    uint8_t *tail = ddts_malloc(tn);
    if (tail == NULL)
        return -1;
    if (raw_read(z, z->nbytes - tn, tail, tn) != 0) {
        ddts_free(tail);
        return -1;
    }
    size_t e = tn - 22 + 1;
    do {
        e--;
        if (memcmp(tail + e, "PK\x05\x06", 4) == 0 && u16(tail + e + 20) == tn - e - 22)
            break;
    } while (e > 0);
    int found = memcmp(tail + e, "PK\x05\x06", 4) == 0;
    uint64_t eocd = z->nbytes - tn + e;
    uint64_t cd_size = u32(tail + e + 12), cd_off = u32(tail + e + 16);
    int zip64 = u16(tail + e + 10) == 0xffff || cd_size == 0xffffffffu || cd_off == 0xffffffffu;
    ddts_free(tail);
    if (!found)
        return -1;
    if (zip64) {
        uint8_t loc[20], z64[56];
        if (eocd < 20 || raw_read(z, eocd - 20, loc, 20) != 0 ||
            memcmp(loc, "PK\x06\x07", 4) != 0 || raw_read(z, u64(loc + 8), z64, 56) != 0 ||
            memcmp(z64, "PK\x06\x06", 4) != 0)
            return -1;
        cd_size = u64(z64 + 40);
        cd_off = u64(z64 + 48);
    }
    if (cd_size > RAW_MAX_CD || cd_off > eocd || eocd - cd_off < cd_size)
        return -1;
    uint8_t *cd = ddts_malloc((size_t)cd_size);
    if (cd == NULL)
        return -1;
    int rc = -1;
    if (raw_read(z, cd_off, cd, (size_t)cd_size) != 0)
        goto out;
    size_t p = 0;
    for (size_t k = 0;; k++) {
        if (cd_size - p < 46 || memcmp(cd + p, "PK\x01\x02", 4) != 0)
            goto out;
        size_t nlen = u16(cd + p + 28), xlen = u16(cd + p + 30), clen = u16(cd + p + 32);
        if (cd_size - p - 46 < nlen + xlen + clen)
            goto out;
        if (k < index) {
            p += 46 + nlen + xlen + clen;
            continue;
        }
        if (nlen != strlen(mname) || memcmp(cd + p + 46, mname, nlen) != 0)
            goto out;
        uint64_t csize = u32(cd + p + 20), usize = u32(cd + p + 24), lho = u32(cd + p + 42);
        const uint8_t *x = cd + p + 46 + nlen, *xend = x + xlen;
        while (xend - x >= 4) {
            size_t id = u16(x), sz = u16(x + 2);
            if ((size_t)(xend - x - 4) < sz)
                goto out;
            if (id == 1) {
                const uint8_t *v = x + 4, *vend = v + sz;
                if (usize == 0xffffffffu) {
                    if (vend - v < 8)
                        goto out;
                    usize = u64(v);
                    v += 8;
                }
                if (csize == 0xffffffffu) {
                    if (vend - v < 8)
                        goto out;
                    csize = u64(v);
                    v += 8;
                }
                if (lho == 0xffffffffu) {
                    if (vend - v < 8)
                        goto out;
                    lho = u64(v);
                }
            }
            x += 4 + sz;
        }
        if (csize != comp_size || usize != comp_size)
            goto out;
        uint8_t lh[30];
        if (raw_read(z, lho, lh, 30) != 0 || memcmp(lh, "PK\x03\x04", 4) != 0 || u16(lh + 8) != 0)
            goto out;
        uint64_t off = lho + 30 + u16(lh + 26) + u16(lh + 28);
        if (off > cd_off || cd_off - off < comp_size)
            goto out;
        *data_off = off;
        rc = 0;
        goto out;
    }
out:
    ddts_free(cd);
    return rc;
}

enum ddts_status ddts__zip_member_open(struct ddts__zip *z, size_t i, uint64_t max_nbytes,
                                       uint64_t *size, struct ddts_error *err)
{
    ddts__zip_member_close(z);
    zip_stat_t sb;
    zip_stat_init(&sb);
    if (zip_stat_index(z->za, (zip_uint64_t)i, 0, &sb) != 0)
        return zip_fail(z, zip_get_error(z->za), DDTS_EFORMAT, "cannot read a member", err);
    const char *mname = (sb.valid & ZIP_STAT_NAME) ? sb.name : "?";
    if (!(sb.valid & ZIP_STAT_SIZE) || !(sb.valid & ZIP_STAT_COMP_SIZE))
        return ddts_error_set(err, DDTS_EFORMAT, "%s: member '%s' has no sizes", z->name, mname);
    if (sb.size > max_nbytes)
        return ddts_error_set(err, DDTS_ELIMIT, "%s: member '%s' is %llu bytes (max %llu)", z->name,
                              mname, (unsigned long long)sb.size, (unsigned long long)max_nbytes);
    if (sb.size > SMALL_MEMBER_NBYTES &&
        (sb.comp_size == 0 || sb.size / sb.comp_size > DDTS_MAX_ZIP_RATIO))
        return ddts_error_set(err, DDTS_ELIMIT,
                              "%s: member '%s' claims %llu bytes from %llu compressed: ratio "
                              "above %d (a zip bomb?)",
                              z->name, mname, (unsigned long long)sb.size,
                              (unsigned long long)sb.comp_size, DDTS_MAX_ZIP_RATIO);
    /* A stored, unencrypted member is read straight from the archive into
     * the caller's buffer, checksummed by carry-less multiplication:
     * libzip's path would run zlib's table-driven CRC over every byte. */
    uint64_t data_off = 0;
    if ((z->fd >= 0 || z->buf != NULL) && ddts__crc32_fast() && (sb.valid & ZIP_STAT_COMP_METHOD) &&
        sb.comp_method == ZIP_CM_STORE && (sb.valid & ZIP_STAT_ENCRYPTION_METHOD) &&
        sb.encryption_method == ZIP_EM_NONE && (sb.valid & ZIP_STAT_CRC) &&
        sb.comp_size == sb.size && find_data(z, i, mname, sb.size, &data_off) == 0) {
        z->raw = 1;
        z->raw_pos = data_off;
        z->crc = 0;
        z->crc_want = sb.crc;
        z->member_left = sb.size;
        snprintf(z->member_name, sizeof z->member_name, "%s", mname);
        *size = sb.size;
        return DDTS_OK;
    }
    z->member = zip_fopen_index(z->za, (zip_uint64_t)i, 0);
    if (z->member == NULL)
        return zip_fail(z, zip_get_error(z->za), DDTS_EUNSUPPORTED, "cannot open a member", err);
    z->member_left = sb.size;
    snprintf(z->member_name, sizeof z->member_name, "%s", mname);
    *size = sb.size;
    return DDTS_OK;
}

enum ddts_status ddts__zip_member_read(struct ddts__zip *z, void *dst, size_t n, size_t *got,
                                       struct ddts_error *err)
{
    *got = 0;
    if (z->raw) {
        if (n > z->member_left)
            n = (size_t)z->member_left;
        if (n == 0) {
            if (z->crc != z->crc_want)
                return ddts_error_set(err, DDTS_EFORMAT, "%s: member '%s' is corrupt: CRC error",
                                      z->name, z->member_name);
            return DDTS_OK;
        }
        if (raw_read(z, z->raw_pos, dst, n) != 0)
            return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: member '%s': read failed",
                                        z->name, z->member_name);
        z->crc = ddts__crc32(z->crc, dst, n);
        z->raw_pos += n;
        z->member_left -= n;
        *got = n;
        return DDTS_OK;
    }
    if (z->member == NULL)
        return ddts_error_set(err, DDTS_ESTATE, "%s: no member open", z->name);
    if (n > z->member_left)
        n = (size_t)z->member_left;
    if (n == 0) {
        /* At the declared end: libzip checks the CRC here; more data is a lie. */
        char extra;
        zip_int64_t r = zip_fread(z->member, &extra, 1);
        if (r < 0)
            return zip_fail(z, zip_file_get_error(z->member), DDTS_EFORMAT, "corrupt member", err);
        if (r > 0)
            return ddts_error_set(err, DDTS_EFORMAT,
                                  "%s: a member holds more data than its declared size", z->name);
        return DDTS_OK;
    }
    zip_int64_t r = zip_fread(z->member, dst, n);
    if (r < 0)
        return member_fail(z, err);
    if (r == 0)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: member '%s' ends %llu bytes before its declared size", z->name,
                              z->member_name, (unsigned long long)z->member_left);
    z->member_left -= (uint64_t)r;
    *got = (size_t)r;
    return DDTS_OK;
}

enum ddts_status ddts__zip_member_read_exact(void *ctx, void *dst, size_t n, struct ddts_error *err)
{
    struct ddts__zip *z = ctx;
    uint8_t *p = dst;
    while (n > 0) {
        size_t got;
        /* Pieces small enough that libzip's CRC (or inflate's output) reads
         * the bytes while they are still in cache. */
        enum ddts_status st =
            ddts__zip_member_read(z, p, n < READ_PIECE ? n : READ_PIECE, &got, err);
        if (st != DDTS_OK)
            return st;
        if (got == 0)
            return ddts_error_set(err, DDTS_EFORMAT, "%s: member truncated", z->name);
        p += got;
        n -= got;
    }
    return DDTS_OK;
}

void ddts__zip_member_close(struct ddts__zip *z)
{
    if (z->member != NULL)
        zip_fclose(z->member);
    z->member = NULL;
    z->member_left = 0;
    z->raw = 0;
}
