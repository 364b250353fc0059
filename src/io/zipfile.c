/*
 * Zip archives (npz, xlsx) through libzip: the only user of libzip.
 *
 * Opening checks the member count; opening a member checks its declared
 * sizes against DDTS_MAX_ZIP_RATIO and the caller's bound before anyone
 * allocates for it. libzip verifies the CRC at the end of each member, and a
 * member that inflates to more or fewer bytes than declared is refused.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
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
}
