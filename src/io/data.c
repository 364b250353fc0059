/*
 * Data files by name: format detection, loading one file, a folder, or an
 * X/ and Y/ pair.
 */
#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddts/fs.h"
#include "io.h"

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcasecmp(s + n - k, suffix) == 0;
}

enum ddts_data_format ddts_data_format_of(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (ends_with(base, ".npy"))
        return DDTS_FORMAT_NPY;
    if (ends_with(base, ".npz"))
        return DDTS_FORMAT_NPZ;
    if (ends_with(base, ".csv"))
        return DDTS_FORMAT_CSV;
    if (ends_with(base, ".xlsx"))
        return DDTS_FORMAT_XLSX;
    if (ends_with(base, ".idx") || ends_with(base, ".idx.gz") || ends_with(base, "-ubyte") ||
        ends_with(base, "-ubyte.gz"))
        return DDTS_FORMAT_IDX;
    /* MNIST's own names: "train-images.idx3-ubyte", "t10k-labels-idx1-ubyte.gz". */
    if (strstr(base, "idx1") || strstr(base, "idx2") || strstr(base, "idx3") ||
        strstr(base, "idx4"))
        return DDTS_FORMAT_IDX;
    return DDTS_FORMAT_UNKNOWN;
}

const char *ddts_data_format_name(enum ddts_data_format format)
{
    switch (format) {
    case DDTS_FORMAT_NPY:
        return "npy";
    case DDTS_FORMAT_NPZ:
        return "npz";
    case DDTS_FORMAT_CSV:
        return "csv";
    case DDTS_FORMAT_XLSX:
        return "xlsx";
    case DDTS_FORMAT_IDX:
        return "idx";
    case DDTS_FORMAT_UNKNOWN:
        break;
    }
    return "unknown";
}

/* Whole files up to this size are read into memory (or mapped) for csv. */
#define MAX_WHOLE_FILE (DDTS_MAX_ARRAY_BYTES)

struct file_reader {
    FILE *fp;
    const char *path;
};

static enum ddts_status file_read(void *ctx, void *dst, size_t n, struct ddts_error *err)
{
    struct file_reader *f = ctx;
    if (fread(dst, 1, n, f->fp) != n) {
        if (ferror(f->fp))
            return ddts_error_set_errno(err, DDTS_EIO, errno, "read failed");
        return ddts_error_set(err, DDTS_EFORMAT, "file truncated");
    }
    return DDTS_OK;
}

static int host_is_little(void)
{
    const uint16_t one = 1;
    uint8_t b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/*
 * DDTS_LOAD_MMAP: maps the file when its data can be used as it lies.
 * Returns 1 with *out set, 0 when the caller should read the file instead
 * (any doubt, including a header we refuse: the read path reports it).
 */
static int map_npy(int fd, uint64_t file_nbytes, struct ddts_array **out)
{
    uint8_t head[4096];
    size_t n = file_nbytes < sizeof head ? (size_t)file_nbytes : sizeof head;
    if (pread(fd, head, n, 0) != (ssize_t)n)
        return 0;
    struct ddts_npy_header hdr;
    if (ddts_npy_parse_header(head, n, &hdr, NULL) != DDTS_OK)
        return 0;
    int swap = hdr.big_endian == (bool)host_is_little() && ddts_dtype_size(hdr.dtype) > 1;
    if (hdr.data_nbytes == 0 || swap || (hdr.fortran_order && hdr.rank > 1) ||
        hdr.data_offset % 64 != 0 || file_nbytes < hdr.data_offset ||
        file_nbytes - hdr.data_offset < hdr.data_nbytes)
        return 0;
    size_t map_n = hdr.data_offset + hdr.data_nbytes;
    void *m = mmap(NULL, map_n, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED)
        return 0;
    if (ddts_array_wrap_mapping(hdr.dtype, hdr.rank, hdr.shape, m, map_n, hdr.data_offset, out,
                                NULL) != DDTS_OK) {
        munmap(m, map_n);
        return 0;
    }
    return 1;
}

/* `path` opened for reading when it is a regular file, with its size. */
static enum ddts_status open_regular(const char *path, FILE **fp, uint64_t *size,
                                     struct ddts_error *err)
{
    *fp = fopen(path, "rb");
    if (*fp == NULL)
        return ddts_error_set_errno(err, errno == ENOENT ? DDTS_ENOTFOUND : DDTS_EIO, errno,
                                    "%s: cannot open", path);
    struct stat sb;
    if (fstat(fileno(*fp), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(*fp);
        *fp = NULL;
        return ddts_error_set(err, DDTS_EIO, "%s: not a regular file", path);
    }
    *size = (uint64_t)sb.st_size;
    return DDTS_OK;
}

/* .npy straight from the file into the array: no whole-file buffer. */
static enum ddts_status load_npy(const char *path, unsigned flags, struct ddts_array **out,
                                 struct ddts_error *err)
{
    FILE *fp = NULL;
    uint64_t size = 0;
    enum ddts_status st = open_regular(path, &fp, &size, err);
    if (st != DDTS_OK)
        return st;
    if ((flags & DDTS_LOAD_MMAP) && map_npy(fileno(fp), size, out)) {
        fclose(fp);
        return DDTS_OK;
    }
    struct file_reader fr = {fp, path};
    st = ddts__npy_read(file_read, &fr, size, path, out, err);
    fclose(fp);
    return st;
}

/*
 * CSV text mapped read-only and prefaulted: no copy of the file into a
 * buffer. The mapping lives only while the text is parsed (a file truncated
 * by another process in that window would fault); a failed mmap falls back
 * to reading the file.
 */
static enum ddts_status load_csv(const char *path, unsigned flags, struct ddts_array **out,
                                 struct ddts_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return ddts_error_set_errno(err, errno == ENOENT ? DDTS_ENOTFOUND : DDTS_EIO, errno,
                                    "%s: cannot open", path);
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return ddts_error_set(err, DDTS_EIO, "%s: not a regular file", path);
    }
    if ((uint64_t)sb.st_size > MAX_WHOLE_FILE) {
        close(fd);
        return ddts_error_set(err, DDTS_ELIMIT, "%s: %lld bytes (max %llu)", path,
                              (long long)sb.st_size, (unsigned long long)MAX_WHOLE_FILE);
    }
    size_t n = (size_t)sb.st_size;
    void *m = n > 0 ? mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0) : MAP_FAILED;
    close(fd);
    if (m == MAP_FAILED) {
        char *buf = NULL;
        enum ddts_status st = ddts_read_file(path, MAX_WHOLE_FILE, &buf, &n, err);
        if (st != DDTS_OK)
            return st;
        st = ddts__csv_parse(buf, n, path, flags, out, err);
        ddts_free(buf);
        return st;
    }
    enum ddts_status st = ddts__csv_parse(m, n, path, flags, out, err);
    munmap(m, n);
    return st;
}

static enum ddts_status check_key(const char *path, enum ddts_data_format f, const char *key,
                                  struct ddts_error *err)
{
    if (key != NULL && f != DDTS_FORMAT_NPZ && f != DDTS_FORMAT_XLSX)
        return ddts_error_set(err, DDTS_EINVAL,
                              "%s: a key ('%s') applies to .npz arrays and .xlsx sheets only", path,
                              key);
    return DDTS_OK;
}

/*
 * DDTS_LOAD_FINITE for arrays: the first NaN or infinity of a float array,
 * named by its numpy index (x[3, 2]).
 */
static enum ddts_status check_finite(const char *path, const struct ddts_array *a,
                                     struct ddts_error *err)
{
    if (a->dtype != DDTS_F16 && a->dtype != DDTS_F32 && a->dtype != DDTS_F64)
        return DDTS_OK;
    size_t n = ddts_array_count(a);
    for (size_t i = 0; i < n; i++) {
        double v = ddts_array_get(a, i);
        if (isfinite(v))
            continue;
        char idx[200];
        size_t at = 0, rest = i;
        int64_t pos[DDTS_MAX_ARRAY_RANK];
        for (int k = a->rank - 1; k >= 0; k--) {
            pos[k] = a->shape[k] > 0 ? (int64_t)(rest % (size_t)a->shape[k]) : 0;
            rest = a->shape[k] > 0 ? rest / (size_t)a->shape[k] : 0;
        }
        for (int k = 0; k < a->rank && at < sizeof idx; k++)
            at += (size_t)snprintf(idx + at, sizeof idx - at, "%s%lld", k ? ", " : "",
                                   (long long)pos[k]);
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: element [%s] (sample %lld) is %s: training data must not hold "
                              "NaN or infinities",
                              path, idx, a->rank > 0 ? (long long)pos[0] : 0LL,
                              isnan(v) ? "NaN"
                              : v > 0  ? "inf"
                                       : "-inf");
    }
    return DDTS_OK;
}

enum ddts_status ddts_data_load(const char *path, const char *key, struct ddts_array **out,
                                struct ddts_error *err)
{
    return ddts_data_load_ex(path, key, 0, out, err);
}

enum ddts_status ddts_data_load_ex(const char *path, const char *key, unsigned flags,
                                   struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    enum ddts_data_format f = ddts_data_format_of(path);
    if (f == DDTS_FORMAT_UNKNOWN)
        return ddts_error_set(err, DDTS_EUNSUPPORTED,
                              "%s: unknown data format (expected .npy, .npz, .csv, .xlsx, .idx or "
                              ".idx.gz)",
                              path);
    enum ddts_status st = check_key(path, f, key, err);
    if (st != DDTS_OK)
        return st;
    switch (f) {
    case DDTS_FORMAT_NPY:
        st = load_npy(path, flags, out, err);
        break;
    case DDTS_FORMAT_NPZ:
        st = ddts__npz_load(path, key, out, err);
        break;
    case DDTS_FORMAT_XLSX:
        return ddts__xlsx_load(path, key, flags, out, err);
    case DDTS_FORMAT_IDX:
        st = ddts__idx_load(path, out, err);
        break;
    case DDTS_FORMAT_CSV:
        return load_csv(path, flags, out, err);
    default:
        break;
    }
    if (f == DDTS_FORMAT_NPY || f == DDTS_FORMAT_NPZ || f == DDTS_FORMAT_IDX) {
        if (st == DDTS_OK && (flags & DDTS_LOAD_FINITE))
            st = check_finite(path, *out, err);
        if (st != DDTS_OK) {
            ddts_array_destroy(*out);
            *out = NULL;
        }
        return st;
    }
    char *buf = NULL;
    size_t n = 0;
    st = ddts_read_file(path, MAX_WHOLE_FILE, &buf, &n, err);
    if (st != DDTS_OK) {
        if (err != NULL && err->sys_errno == ENOENT)
            err->status = st = DDTS_ENOTFOUND;
        return st;
    }
    st = ddts_data_parse(buf, n, f, path, NULL, out, err);
    ddts_free(buf);
    return st;
}

enum ddts_status ddts_data_parse(const void *buf, size_t nbytes, enum ddts_data_format format,
                                 const char *name, const char *key, struct ddts_array **out,
                                 struct ddts_error *err)
{
    *out = NULL;
    if (name == NULL)
        name = ddts_data_format_name(format);
    enum ddts_status st = check_key(name, format, key, err);
    if (st != DDTS_OK)
        return st;
    switch (format) {
    case DDTS_FORMAT_NPY:
        st = ddts_npy_parse(buf, nbytes, out, err);
        break;
    case DDTS_FORMAT_IDX:
        st = ddts_idx_parse(buf, nbytes, out, err);
        break;
    case DDTS_FORMAT_CSV:
        return ddts_csv_parse(buf, nbytes, name, out, err);
    case DDTS_FORMAT_NPZ:
        return ddts_npz_parse(buf, nbytes, name, key, out, err);
    case DDTS_FORMAT_XLSX:
        return ddts_xlsx_parse(buf, nbytes, name, key, out, err);
    case DDTS_FORMAT_UNKNOWN:
        return ddts_error_set(err, DDTS_EINVAL, "%s: unknown data format", name);
    }
    if (st != DDTS_OK)
        ddts_error_prefix(err, "%s: ", name);
    return st;
}

enum ddts_status ddts_data_keys(const char *path, char ***names, size_t *n_names,
                                struct ddts_error *err)
{
    *names = NULL;
    *n_names = 0;
    enum ddts_data_format f = ddts_data_format_of(path);
    if (f == DDTS_FORMAT_NPZ || f == DDTS_FORMAT_XLSX)
        return ddts__zip_keys(path, f == DDTS_FORMAT_XLSX, names, n_names, err);
    if (f == DDTS_FORMAT_UNKNOWN)
        return ddts_error_set(err, DDTS_EUNSUPPORTED, "%s: unknown data format", path);
    char **v = ddts_malloc(sizeof(char *) + 1);
    if (v == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    v[0] = (char *)(v + 1);
    v[0][0] = '\0';
    *names = v;
    *n_names = 1;
    return DDTS_OK;
}

/* The dtype, rank and shape of a .npy file from its header (data NULL);
 * -1 when the header cannot be read here (a full load then reports why). */
static int probe_npy(const char *path, struct ddts_array *info)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t head[4096];
    ssize_t n = pread(fd, head, sizeof head, 0);
    close(fd);
    struct ddts_npy_header hdr;
    if (n <= 0 || ddts_npy_parse_header(head, (size_t)n, &hdr, NULL) != DDTS_OK)
        return -1;
    memset(info, 0, sizeof *info);
    info->dtype = hdr.dtype;
    info->rank = hdr.rank;
    memcpy(info->shape, hdr.shape, sizeof hdr.shape);
    info->nbytes = hdr.data_nbytes;
    return 0;
}

/* A .npy file read into view->data (its dtype and shape checked). */
static enum ddts_status read_npy_into(const char *path, struct ddts_array *view,
                                      struct ddts_error *err)
{
    FILE *fp = NULL;
    uint64_t size = 0;
    enum ddts_status st = open_regular(path, &fp, &size, err);
    if (st != DDTS_OK)
        return st;
    struct file_reader fr = {fp, path};
    st = ddts__npy_read_into(file_read, &fr, size, path, view, err);
    fclose(fp);
    return st;
}

/* Whether two arrays hold samples of one shape: shape[1:] equal once
 * trailing 1s are dropped, so labels of shape (N,) and (N, 1) (the same
 * values) concatenate; the result takes the first file's shape. */
static int same_samples(const struct ddts_array *a, const struct ddts_array *b)
{
    int ra = a->rank, rb = b->rank;
    while (ra > 1 && a->shape[ra - 1] == 1)
        ra--;
    while (rb > 1 && b->shape[rb - 1] == 1)
        rb--;
    if (ra != rb)
        return 0;
    for (int k = 1; k < ra; k++)
        if (a->shape[k] != b->shape[k])
            return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* How a folder's files are read: the npz array to take, the names taken
 * without one, the flag that chooses (for messages), ddts_data_load_ex flags. */
struct dir_opts {
    const char *key;
    const char *const *defaults; /* NULL-terminated, or NULL */
    const char *flag;            /* "--x-key", or NULL */
    unsigned flags;
};

/* The array of an .npz inside a folder: o->key; without one the only array,
 * else the first of o->defaults present, else an error listing the names. */
static enum ddts_status npz_key(const char *path, const struct dir_opts *o, char *key, size_t cap,
                                struct ddts_error *err)
{
    key[0] = '\0';
    if (o->key != NULL) {
        snprintf(key, cap, "%s", o->key);
        return DDTS_OK;
    }
    char **names = NULL;
    size_t n = 0;
    enum ddts_status st = ddts_data_keys(path, &names, &n, err);
    if (st != DDTS_OK || n <= 1) {
        ddts_free(names);
        return st;
    }
    for (size_t d = 0; o->defaults != NULL && o->defaults[d] != NULL && key[0] == '\0'; d++)
        for (size_t i = 0; i < n && key[0] == '\0'; i++)
            if (strcmp(names[i], o->defaults[d]) == 0)
                snprintf(key, cap, "%s", names[i]);
    if (key[0] == '\0') {
        char list[400];
        size_t at = 0;
        list[0] = '\0';
        for (size_t i = 0; i < n && at < sizeof list; i++)
            at += (size_t)snprintf(list + at, sizeof list - at, "%s'%s'", i ? ", " : "", names[i]);
        char want[160] = "";
        for (size_t d = 0, w = 0; o->defaults != NULL && o->defaults[d] != NULL && w < sizeof want;
             d++)
            w += (size_t)snprintf(want + w, sizeof want - w, "%s'%s'", d ? " or " : "",
                                  o->defaults[d]);
        st = ddts_error_set(
            err, DDTS_EINVAL, "%s holds %zu arrays (%s)%s%s; choose one with %s NAME", path, n,
            list, want[0] ? " and none is named " : "", want, o->flag != NULL ? o->flag : "a key");
    }
    ddts_free(names);
    return st;
}

/* One file of a folder (see struct dir_opts). */
static enum ddts_status load_member(const char *path, const struct dir_opts *o,
                                    struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if (ddts_data_format_of(path) != DDTS_FORMAT_NPZ)
        return ddts_data_load_ex(path, NULL, o->flags, out, err);
    char key[256];
    enum ddts_status st = npz_key(path, o, key, sizeof key, err);
    if (st != DDTS_OK)
        return st;
    return ddts_data_load_ex(path, key[0] ? key : NULL, o->flags, out, err);
}

static enum ddts_status load_dir(const char *dir, const struct dir_opts *o, struct ddts_array **out,
                                 struct ddts_error *err);

enum ddts_status ddts_data_load_dir(const char *dir, struct ddts_array **out,
                                    struct ddts_error *err)
{
    struct dir_opts o = {NULL, NULL, NULL, 0};
    return load_dir(dir, &o, out, err);
}

enum ddts_status ddts_data_load_dir_ex(const char *dir, const char *key, unsigned flags,
                                       struct ddts_array **out, struct ddts_error *err)
{
    struct dir_opts o = {key, NULL, NULL, flags};
    return load_dir(dir, &o, out, err);
}

/* The data files of a folder: regular files of a known format, their paths
 * sorted; names and *n are set even on error, for the caller to free. */
static enum ddts_status list_dir(const char *dir, char ***names_out, size_t *n_out,
                                 struct ddts_error *err)
{
    *names_out = NULL;
    *n_out = 0;
    DIR *d = opendir(dir);
    if (d == NULL)
        return ddts_error_set_errno(err, errno == ENOENT ? DDTS_ENOTFOUND : DDTS_EIO, errno,
                                    "%s: cannot open the folder", dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    enum ddts_status st = DDTS_OK;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || ddts_data_format_of(e->d_name) == DDTS_FORMAT_UNKNOWN)
            continue;
        if (n == DDTS_MAX_DATA_FILES) {
            st = ddts_error_set(err, DDTS_ELIMIT, "%s: more than %d data files", dir,
                                DDTS_MAX_DATA_FILES);
            goto out;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 16;
            char **nn = ddts_realloc(names, nc * sizeof *nn);
            if (nn == NULL) {
                st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", dir);
                goto out;
            }
            names = nn;
            cap = nc;
        }
        names[n] = ddts_path_join(dir, e->d_name);
        if (names[n] == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", dir);
            goto out;
        }
        n++;
    }
    /* Regular files only. */
    for (size_t i = 0; i < n;) {
        struct stat sb;
        if (stat(names[i], &sb) != 0 || !S_ISREG(sb.st_mode)) {
            ddts_free(names[i]);
            names[i] = names[--n];
            continue;
        }
        i++;
    }
    if (n == 0) {
        st = ddts_error_set(err, DDTS_ENOTFOUND,
                            "%s: no data files (.npy .npz .csv .xlsx .idx .idx.gz)", dir);
        goto out;
    }
    qsort(names, n, sizeof *names, cmp_str);
out:
    closedir(d);
    *names_out = names;
    *n_out = n;
    return st;
}

/* Phase 1 of load_dir: every file's dtype and shape into infos[i]; .npy
 * files from their headers alone, the other formats by loading them (their
 * shape is only known then) into parts[i], kept for phase 2. Sets the
 * result's dtype and total sample count. */
static enum ddts_status probe_members(const char *dir, char *const *names, size_t n,
                                      const struct dir_opts *o, struct ddts_array **parts,
                                      struct ddts_array *infos, enum ddts_dtype *dt_out,
                                      int64_t *total_out, struct ddts_error *err)
{
    enum ddts_dtype dt = DDTS_BOOL;
    int64_t total = 0;
    enum ddts_status st;
    for (size_t i = 0; i < n; i++) {
        if (ddts_data_format_of(names[i]) != DDTS_FORMAT_NPY ||
            probe_npy(names[i], &infos[i]) != 0) {
            st = load_member(names[i], o, &parts[i], err);
            if (st != DDTS_OK)
                return st;
            infos[i] = *parts[i];
            infos[i].data = NULL;
        }
        const struct ddts_array *p0 = &infos[0], *pi = &infos[i];
        if (pi->rank == 0)
            return ddts_error_set(err, DDTS_ESHAPE, "%s: a scalar, not samples", names[i]);
        if (!same_samples(p0, pi)) {
            char s0[160], si[160];
            ddts_array_shape_str(p0, s0, sizeof s0);
            ddts_array_shape_str(pi, si, sizeof si);
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "%s has shape %s but %s has shape %s: their samples differ in "
                                  "shape",
                                  names[0], s0, names[i], si);
        }
        if (__builtin_add_overflow(total, pi->shape[0], &total))
            return ddts_error_set(err, DDTS_ELIMIT, "%s: too many samples", dir);
        dt = i == 0 ? pi->dtype : ddts_dtype_promote(dt, pi->dtype);
    }
    *dt_out = dt;
    *total_out = total;
    return DDTS_OK;
}

/* Phase 2 of load_dir: every file lands in its slice of the allocated result
 * res: a .npy of the result's dtype is read straight there, anything else is
 * converted there and released at once. */
static enum ddts_status fill_members(char *const *names, size_t n, const struct dir_opts *o,
                                     struct ddts_array **parts, const struct ddts_array *infos,
                                     struct ddts_array *res, struct ddts_error *err)
{
    enum ddts_dtype dt = res->dtype;
    size_t es = ddts_dtype_size(dt), at = 0;
    enum ddts_status st;
    for (size_t i = 0; i < n; i++) {
        struct ddts_array view = infos[i];
        view.dtype = dt;
        view.nbytes = ddts_array_count(&infos[i]) * es;
        view.data = (uint8_t *)res->data + at;
        view.map = NULL;
        at += view.nbytes;
        if (parts[i] == NULL && infos[i].dtype == dt) {
            st = read_npy_into(names[i], &view, err);
            if (st == DDTS_OK && (o->flags & DDTS_LOAD_FINITE)) {
                view.dtype = infos[i].dtype;
                st = check_finite(names[i], &view, err);
            }
            if (st != DDTS_OK)
                return st;
            continue;
        }
        if (parts[i] == NULL) {
            st = load_member(names[i], o, &parts[i], err);
            if (st != DDTS_OK)
                return st;
            int same = parts[i]->rank == infos[i].rank;
            for (int k = 0; same && k < infos[i].rank; k++)
                same = parts[i]->shape[k] == infos[i].shape[k];
            if (!same)
                return ddts_error_set(err, DDTS_ESTATE, "%s: the file changed while it was loaded",
                                      names[i]);
        }
        ddts_array_convert_into(parts[i], dt, view.data);
        ddts_array_destroy(parts[i]);
        parts[i] = NULL;
    }
    return DDTS_OK;
}

static enum ddts_status load_dir(const char *dir, const struct dir_opts *o, struct ddts_array **out,
                                 struct ddts_error *err)
{
    *out = NULL;
    char **names = NULL;
    size_t n = 0;
    struct ddts_array **parts = NULL;
    struct ddts_array *infos = NULL;
    enum ddts_status st = list_dir(dir, &names, &n, err);
    if (st != DDTS_OK)
        goto out;
    /* NOLINTNEXTLINE(bugprone-sizeof-expression): sizeof *p of a pointer array is the idiom */
    parts = ddts_calloc(n, sizeof *parts);
    infos = ddts_calloc(n, sizeof *infos);
    if (parts == NULL || infos == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    enum ddts_dtype dt = DDTS_BOOL;
    int64_t total = 0;
    st = probe_members(dir, names, n, o, parts, infos, &dt, &total, err);
    if (st != DDTS_OK)
        goto out;
    if (n == 1 && parts[0] != NULL) {
        *out = parts[0];
        parts[0] = NULL;
        goto out;
    }
    /* The result is allocated once (see fill_members). Peak memory: the
     * result plus the non-npy files (plus one npy file needing a conversion). */
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    memcpy(shape, infos[0].shape, sizeof shape);
    shape[0] = total;
    st = ddts_array_create_uninit(dt, infos[0].rank, shape, out, err);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "%s: ", dir);
        goto out;
    }
    st = fill_members(names, n, o, parts, infos, *out, err);
out:
    for (size_t i = 0; i < n; i++) {
        ddts_free(names[i]);
        if (parts != NULL)
            ddts_array_destroy(parts[i]);
    }
    ddts_free(names);
    ddts_free(parts);
    ddts_free(infos);
    if (st != DDTS_OK) {
        ddts_array_destroy(*out);
        *out = NULL;
    }
    return st;
}

enum ddts_status ddts_data_load_xy(const char *dir, struct ddts_array **x, struct ddts_array **y,
                                   struct ddts_error *err)
{
    return ddts_data_load_xy_ex(dir, NULL, x, y, err);
}

/* The name of the folder of input k (0-based): "X", "X2", "X3", ... */
static void x_folder_name(size_t k, char name[16])
{
    if (k == 0)
        snprintf(name, 16, "X");
    else
        snprintf(name, 16, "X%zu", k + 1);
}

size_t ddts_data_n_inputs(const char *dir)
{
    size_t k = 0;
    for (; k < DDTS_MAX_INPUTS; k++) {
        char name[16];
        x_folder_name(k, name);
        char *p = ddts_path_join(dir, name);
        struct stat sb;
        int there = p != NULL && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
        ddts_free(p);
        if (!there)
            break;
    }
    return k;
}

/* DIR/X, DIR/X2, ... loaded and packed side by side (ddts_array_hstack). */
static enum ddts_status load_inputs(const char *dir, const struct dir_opts *xo,
                                    struct ddts_array **x, struct ddts_error *err)
{
    size_t n = ddts_data_n_inputs(dir);
    if (n <= 1) { /* X/ alone (or missing: load_dir names it) */
        char *xd = ddts_path_join(dir, "X");
        if (xd == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        enum ddts_status st = load_dir(xd, xo, x, err);
        ddts_free(xd);
        return st;
    }
    struct ddts_array *parts[DDTS_MAX_INPUTS] = {NULL};
    enum ddts_status st = DDTS_OK;
    for (size_t k = 0; k < n && st == DDTS_OK; k++) {
        char name[16];
        x_folder_name(k, name);
        char *xd = ddts_path_join(dir, name);
        st = xd == NULL ? ddts_error_set(err, DDTS_ENOMEM, "out of memory")
                        : load_dir(xd, xo, &parts[k], err);
        if (st == DDTS_OK && parts[k]->rank > 0 && parts[0]->rank > 0 &&
            parts[k]->shape[0] != parts[0]->shape[0])
            st = ddts_error_set(err, DDTS_ESHAPE,
                                "%s/X holds %lld samples but %s holds %lld: the inputs' folders "
                                "must hold the same samples, row by row",
                                dir, (long long)parts[0]->shape[0], xd,
                                (long long)parts[k]->shape[0]);
        ddts_free(xd);
    }
    if (st == DDTS_OK)
        st = ddts_array_hstack((const struct ddts_array *const *)parts, n, x, err);
    for (size_t k = 0; k < n; k++)
        ddts_array_destroy(parts[k]);
    return st;
}

enum ddts_status ddts_data_load_xy_ex(const char *dir, const struct ddts_xy_options *opts,
                                      struct ddts_array **x, struct ddts_array **y,
                                      struct ddts_error *err)
{
    static const char *const x_names[] = {"x", "x_train", NULL};
    static const char *const y_names[] = {"y", "y_train", NULL};
    struct ddts_xy_options none = {NULL, NULL, 0, false};
    if (opts == NULL)
        opts = &none;
    struct dir_opts xo = {opts->x_key, x_names, "--x-key", opts->flags};
    struct dir_opts yo = {opts->y_key, y_names, "--y-key", opts->flags};
    *x = NULL;
    *y = NULL;
    char *yd = ddts_path_join(dir, "Y");
    enum ddts_status st;
    if (yd == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        goto out;
    }
    st = load_inputs(dir, &xo, x, err);
    if (st != DDTS_OK || opts->no_y)
        goto out;
    st = load_dir(yd, &yo, y, err);
    if (st != DDTS_OK)
        goto out;
    if (*y != NULL && (*x)->shape[0] != (*y)->shape[0])
        st = ddts_error_set(err, DDTS_ESHAPE, "%s/X holds %lld samples but %s holds %lld", dir,
                            (long long)(*x)->shape[0], yd, (long long)(*y)->shape[0]);
out:
    if (st != DDTS_OK) {
        ddts_array_destroy(*x);
        ddts_array_destroy(*y);
        *x = NULL;
        *y = NULL;
    }
    ddts_free(yd);
    return st;
}
