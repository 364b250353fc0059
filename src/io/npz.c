/*
 * .npz files: a zip archive whose members are .npy files named after the
 * arrays (np.savez: "x_train.npy"). Members may be stored or deflated, and
 * zip64 (np.savez writes zip64 for members over 2 GiB); libzip handles both.
 * Each array is inflated straight into its allocation.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "io.h"
#include "pickle.h"

/* The member of `key` (with or without ".npy"); NULL key: the only member. */
static enum ddts_status find_member(struct ddts__zip *z, const char *name, const char *key,
                                    size_t *index, struct ddts_error *err)
{
    size_t n = ddts__zip_count(z);
    if (key == NULL) {
        if (n == 1) {
            *index = 0;
            return DDTS_OK;
        }
        char list[400];
        size_t used = 0;
        list[0] = '\0';
        for (size_t i = 0; i < n && used + 1 < sizeof list; i++) {
            const char *m = ddts__zip_name(z, i);
            size_t ml = strlen(m);
            if (ml > 4 && strcmp(m + ml - 4, ".npy") == 0)
                ml -= 4;
            int w = snprintf(list + used, sizeof list - used, "%s%.*s", i ? ", " : "", (int)ml, m);
            if (w < 0)
                break;
            used += (size_t)w;
        }
        return ddts_error_set(err, n == 0 ? DDTS_ENOTFOUND : DDTS_EINVAL,
                              "%s: %zu arrays, choose one with a key: %s", name, n,
                              n == 0 ? "(none)" : list);
    }
    char member[512];
    size_t kl = strlen(key);
    if (kl + 5 > sizeof member)
        return ddts_error_set(err, DDTS_EINVAL, "%s: key too long", name);
    memcpy(member, key, kl + 1);
    if (!(kl > 4 && strcmp(key + kl - 4, ".npy") == 0))
        memcpy(member + kl, ".npy", 5);
    if (ddts__zip_find(z, member, index, NULL) == DDTS_OK)
        return DDTS_OK;
    if (ddts__zip_find(z, key, index, NULL) == DDTS_OK)
        return DDTS_OK;
    ddts_error_set(err, DDTS_ENOTFOUND, "%s: no array '%s'", name, key);
    /* List what there is. */
    char list[300];
    size_t used = 0;
    list[0] = '\0';
    for (size_t i = 0; i < n && used + 1 < sizeof list; i++) {
        int w =
            snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", ddts__zip_name(z, i));
        if (w < 0)
            break;
        used += (size_t)w;
    }
    return ddts_error_set(err, DDTS_ENOTFOUND, "%s: no array '%s' (members: %s)", name, key, list);
}

static enum ddts_status read_npz(struct ddts__zip *z, const char *name, const char *key,
                                 struct ddts_array **out, struct ddts_error *err)
{
    size_t index;
    enum ddts_status st = find_member(z, name, key, &index, err);
    if (st != DDTS_OK)
        return st;
    uint64_t size;
    st = ddts__zip_member_open(z, index, DDTS_MAX_ARRAY_BYTES + DDTS_MAX_NPY_HEADER + 12, &size,
                               err);
    if (st != DDTS_OK)
        return st;
    char member_name[600];
    snprintf(member_name, sizeof member_name, "%s: %s", name, ddts__zip_name(z, index));
    st = ddts__npy_read(ddts__zip_member_read_exact, z, size, member_name, out, err);
    if (st != DDTS_OK)
        return st;
    /* Reading to the declared end lets libzip check the CRC. */
    size_t got;
    char extra[16];
    st = ddts__zip_member_read(z, extra, sizeof extra, &got, err);
    if (st == DDTS_OK && got == 0)
        st = ddts__zip_member_read(z, extra, 0, &got, err);
    if (st == DDTS_OK && got != 0)
        st = ddts_error_set(err, DDTS_EFORMAT, "%s: bytes after the array's data", member_name);
    ddts__zip_member_close(z);
    if (st != DDTS_OK) {
        ddts_array_destroy(*out);
        *out = NULL;
    }
    return st;
}

enum ddts_status ddts_npz_parse(const void *buf, size_t nbytes, const char *name, const char *key,
                                struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if (name == NULL)
        name = "npz";
    struct ddts__zip *z;
    enum ddts_status st = ddts__zip_open_buffer(buf, nbytes, name, &z, err);
    if (st != DDTS_OK)
        return st;
    st = read_npz(z, name, key, out, err);
    ddts__zip_close(z);
    return st;
}

/*
 * An object array (numpy's '|O' dtype: a pickle after the .npy header, what
 * np.save(allow_pickle=True) writes) through the restricted unpickler.
 * *buf holds the member's bytes, which the result points into.
 */
enum ddts_status ddts__npz_load_object(const char *path, const char *key, uint8_t **buf,
                                       struct ddts__pickle **pk, struct ddts__pk_value *root,
                                       struct ddts_error *err)
{
    *buf = NULL;
    *pk = NULL;
    struct ddts__zip *z;
    enum ddts_status st = ddts__zip_open_file(path, &z, err);
    if (st != DDTS_OK)
        return st;
    size_t index;
    uint64_t size = 0;
    st = find_member(z, path, key, &index, err);
    if (st == DDTS_OK)
        st = ddts__zip_member_open(z, index, DDTS_MAX_PICKLE_BYTES, &size, err);
    char name[600];
    snprintf(name, sizeof name, "%s: %s", path, st == DDTS_OK ? ddts__zip_name(z, index) : "");
    if (st == DDTS_OK && (*buf = ddts_malloc(size ? (size_t)size : 1)) == NULL)
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", name);
    if (st == DDTS_OK)
        st = ddts__zip_member_read_exact(z, *buf, (size_t)size, err);
    if (st == DDTS_OK) {
        /* Reading to the declared end lets libzip check the CRC. */
        size_t got = 0;
        char extra[16];
        st = ddts__zip_member_read(z, extra, sizeof extra, &got, err);
        if (st == DDTS_OK && got != 0)
            st = ddts_error_set(err, DDTS_EFORMAT, "%s: bytes after the array", name);
    }
    if (st == DDTS_OK) {
        ddts__zip_member_close(z);
        const uint8_t *b = *buf;
        size_t start = 0, hlen = 0;
        if (size >= 10 && memcmp(b, "\x93NUMPY", 6) == 0 && b[6] == 1) {
            hlen = (size_t)b[8] | (size_t)b[9] << 8;
            start = 10;
        } else if (size >= 12 && memcmp(b, "\x93NUMPY", 6) == 0 && (b[6] == 2 || b[6] == 3)) {
            hlen = (size_t)b[8] | (size_t)b[9] << 8 | (size_t)b[10] << 16 | (size_t)b[11] << 24;
            start = 12;
        }
        if (start == 0 || hlen > DDTS_MAX_NPY_HEADER || size - start < hlen)
            st = ddts_error_set(err, DDTS_EFORMAT, "%s: not a .npy array", name);
        else if (memmem(b + start, hlen, "'descr': '|O'", 13) == NULL)
            st =
                ddts_error_set(err, DDTS_EFORMAT,
                               "%s: not an object array (expected a pickled array of lists)", name);
        else
            st = ddts__pickle_load(b + start + hlen, (size_t)(size - start - hlen), name, pk, root,
                                   err);
    }
    ddts__zip_close(z);
    if (st != DDTS_OK) {
        ddts_free(*buf);
        *buf = NULL;
    }
    return st;
}

enum ddts_status ddts__npz_load(const char *path, const char *key, struct ddts_array **out,
                                struct ddts_error *err)
{
    *out = NULL;
    struct ddts__zip *z;
    enum ddts_status st = ddts__zip_open_file(path, &z, err);
    if (st != DDTS_OK)
        return st;
    st = read_npz(z, path, key, out, err);
    ddts__zip_close(z);
    return st;
}
