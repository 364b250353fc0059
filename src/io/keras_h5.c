/*
 * Keras model files in HDF5: the legacy `.h5` model format and the
 * model.weights.h5 member of a `.keras` zip. The only user of libhdf5 in
 * ddts. Every fact about the layouts is in docs/file-formats.md ("Keras"),
 * with its source.
 *
 * Error mapping: any HDF5 call that fails becomes DDTS_EFORMAT (reading) or
 * DDTS_EIO (writing) with a message naming the file and the object path;
 * HDF5's own error printing is switched off (H5Eset_auto2) inside every entry
 * point and the program's handler restored on return (QUIET). Memory images (core driver without a
 * backing store) let the .keras reader, the writers and the fuzz targets work without temporary
 * files.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <hdf5.h>

#include "ddts/array.h"
#include "ddts/fs.h"
#include "ddts/keras.h"
#include "io/keras_internal.h"

/* tf.keras' HDF5_OBJECT_HEADER_LIMIT: attributes above it are split into
 * name0, name1, ... (tensorflow/python/keras/saving/hdf5_format.py). */
#define OBJECT_HEADER_LIMIT 64512

struct ctx {
    const char *label; /* file name for messages */
    struct ddts_error *err;
    size_t total_params; /* float values read so far (DDTS_MAX_KERAS_PARAMS) */
};

/*
 * HDF5 prints its error stack to stderr unless its error handler is switched
 * off. The handler belongs to the program (libhdf5 keeps it per process, or
 * per thread in thread-safe builds), so each entry point switches it off with
 * QUIET() for its own duration only: the cleanup attribute restores the
 * program's handler on every return path.
 */
struct h5_handler {
    H5E_auto2_t fn;
    void *data;
};

static struct h5_handler quiet_begin(void)
{
    struct h5_handler h = {NULL, NULL};
    if (H5Eget_auto2(H5E_DEFAULT, &h.fn, &h.data) < 0)
        h.fn = NULL, h.data = NULL;
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    return h;
}

static void quiet_end(const struct h5_handler *h)
{
    H5Eset_auto2(H5E_DEFAULT, h->fn, h->data);
}

#define QUIET()                                                                                    \
    __attribute__((cleanup(quiet_end), unused)) struct h5_handler quiet_scope_ = quiet_begin()

static void close_id(hid_t id)
{
    if (id < 0)
        return;
    switch (H5Iget_type(id)) {
    case H5I_FILE:
        H5Fclose(id);
        break;
    case H5I_GROUP:
        H5Gclose(id);
        break;
    case H5I_DATASET:
        H5Dclose(id);
        break;
    case H5I_ATTR:
        H5Aclose(id);
        break;
    case H5I_DATATYPE:
        H5Tclose(id);
        break;
    case H5I_DATASPACE:
        H5Sclose(id);
        break;
    case H5I_GENPROP_LST:
        H5Pclose(id);
        break;
    default:
        break;
    }
}

/* External links would make a hostile model read other HDF5 files of the
 * machine into its weights: every open goes through a property list whose
 * external-link callback refuses the traversal. */
static herr_t deny_elink(const char *parent_file, const char *parent_group, const char *child_file,
                         const char *child_object, unsigned *flags, hid_t fapl, void *op_data)
{
    (void)parent_file;
    (void)parent_group;
    (void)child_file;
    (void)child_object;
    (void)flags;
    (void)fapl;
    (void)op_data;
    return -1;
}

static hid_t no_elinks(hid_t cls)
{
    hid_t p = H5Pcreate(cls);
    if (p >= 0 && H5Pset_elink_cb(p, deny_elink, NULL) < 0) {
        H5Pclose(p);
        return -1;
    }
    return p;
}

static hid_t open_group(hid_t loc, const char *name)
{
    hid_t gapl = no_elinks(H5P_GROUP_ACCESS);
    hid_t g = gapl < 0 ? -1 : H5Gopen2(loc, name, gapl);
    close_id(gapl);
    return g;
}

static hid_t open_dataset(hid_t loc, const char *name)
{
    hid_t dapl = no_elinks(H5P_DATASET_ACCESS);
    hid_t d = dapl < 0 ? -1 : H5Dopen2(loc, name, dapl);
    close_id(dapl);
    return d;
}

static void free_strings(char **s, size_t n)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        ddts_free(s[i]);
    ddts_free(s);
}

/* Copies one stored string, checking its length and that it has no NUL. */
static enum ddts_status take_string(struct ctx *c, const char *where, const char *src, size_t n,
                                    size_t max, char **out)
{
    if (n > max)
        return ddts_error_set(c->err, DDTS_ELIMIT, "%s: %s: a string of %zu bytes (max %zu)",
                              c->label, where, n, max);
    *out = ddts_strndup(src, n);
    if (*out == NULL)
        return ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
    return DDTS_OK;
}

/*
 * Reads string attribute `name` of `obj` (at `where`) as a list: a scalar or
 * a 1-d array of variable-length or fixed-length (NUL-padded, NUL-terminated
 * or space-padded) strings. An empty numeric array (what h5py stores for
 * np.asarray([]): a weightless layer's weight_names) is an empty list.
 * *found is 0 and the list empty when the attribute does not exist.
 */
/* The n variable-length strings of attribute `a` (type t, space s) into list[]. */
static enum ddts_status read_vlen_strings(struct ctx *c, hid_t a, hid_t t, hid_t s,
                                          const char *where, const char *name, size_t n,
                                          size_t max_len, char **list)
{
    enum ddts_status st = DDTS_OK;
    char **ptrs = NULL;
    hid_t mt = H5Tcopy(H5T_C_S1);
    if (mt < 0 || H5Tset_size(mt, H5T_VARIABLE) < 0 || H5Tset_cset(mt, H5Tget_cset(t)) < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: bad string type of attribute %s",
                            c->label, where, name);
        goto done;
    }
    ptrs = ddts_calloc(n ? n : 1, sizeof *ptrs);
    if (ptrs == NULL) {
        st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
        goto done;
    }
    if (H5Aread(a, mt, ptrs) < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: cannot read attribute %s", c->label,
                            where, name);
        goto done;
    }
    for (size_t i = 0; i < n && st == DDTS_OK; i++) {
        const char *p = ptrs[i] ? ptrs[i] : "";
        st = take_string(c, where, p, strnlen(p, max_len + 1), max_len, &list[i]);
    }
    H5Dvlen_reclaim(mt, s, H5P_DEFAULT, ptrs);
done:
    ddts_free(ptrs);
    close_id(mt);
    return st;
}

/* The n fixed-length strings of attribute `a` (type t) into list[]: NUL-padded,
 * NUL-terminated or space-padded. */
static enum ddts_status read_fixed_strings(struct ctx *c, hid_t a, hid_t t, const char *where,
                                           const char *name, size_t n, size_t max_len, char **list)
{
    enum ddts_status st = DDTS_OK;
    hid_t mt = -1;
    void *buf = NULL;
    size_t size = H5Tget_size(t);
    size_t total;
    if (size == 0 || ddts_size_mul(size, n, &total) != 0 || total > DDTS_MAX_KERAS_ATTR_BYTES) {
        st = ddts_error_set(c->err, DDTS_ELIMIT,
                            "%s: %s: attribute %s: %zu strings of %zu bytes (max %u bytes)",
                            c->label, where, name, n, size, DDTS_MAX_KERAS_ATTR_BYTES);
        goto done;
    }
    mt = H5Tcopy(t);
    buf = ddts_malloc(total ? total : 1);
    if (mt < 0 || buf == NULL) {
        st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
        goto done;
    }
    if (n > 0 && H5Aread(a, mt, buf) < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: cannot read attribute %s", c->label,
                            where, name);
        goto done;
    }
    int spacepad = H5Tget_strpad(t) == H5T_STR_SPACEPAD;
    for (size_t i = 0; i < n && st == DDTS_OK; i++) {
        const char *p = (const char *)buf + i * size;
        size_t len = strnlen(p, size);
        while (spacepad && len > 0 && p[len - 1] == ' ')
            len--;
        st = take_string(c, where, p, len, max_len, &list[i]);
    }
done:
    ddts_free(buf);
    close_id(mt);
    return st;
}

static enum ddts_status read_attr_strings(struct ctx *c, hid_t obj, const char *where,
                                          const char *name, size_t max_items, size_t max_len,
                                          char ***out, size_t *n_out, int *found)
{
    *out = NULL;
    *n_out = 0;
    *found = 0;
    htri_t ex = H5Aexists(obj, name);
    if (ex < 0)
        return ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: cannot look up attribute %s", c->label,
                              where, name);
    if (ex == 0)
        return DDTS_OK;
    *found = 1;
    enum ddts_status st = DDTS_OK;
    hid_t a = -1, t = -1, s = -1;
    char **list = NULL;
    size_t n = 0;
    a = H5Aopen(obj, name, H5P_DEFAULT);
    t = a < 0 ? -1 : H5Aget_type(a);
    s = a < 0 ? -1 : H5Aget_space(a);
    if (a < 0 || t < 0 || s < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: cannot open attribute %s", c->label,
                            where, name);
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(s);
    hssize_t npoints = H5Sget_simple_extent_npoints(s);
    if (rank < 0 || rank > 1 || npoints < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT,
                            "%s: %s: attribute %s has rank %d (a string or a list expected)",
                            c->label, where, name, rank);
        goto done;
    }
    H5T_class_t cls = H5Tget_class(t);
    if (cls != H5T_STRING) {
        if ((cls == H5T_FLOAT || cls == H5T_INTEGER) && npoints == 0)
            goto done; /* np.asarray([]) of a weightless layer */
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: attribute %s is not a string", c->label,
                            where, name);
        goto done;
    }
    if ((size_t)npoints > max_items) {
        st = ddts_error_set(c->err, DDTS_ELIMIT, "%s: %s: attribute %s lists %lld names (max %zu)",
                            c->label, where, name, (long long)npoints, max_items);
        goto done;
    }
    n = (size_t)npoints;
    list = ddts_calloc(n ? n : 1, sizeof *list);
    if (list == NULL) {
        st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
        goto done;
    }
    htri_t vlen = H5Tis_variable_str(t);
    if (vlen < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: bad string type of attribute %s",
                            c->label, where, name);
        goto done;
    }
    st = vlen ? read_vlen_strings(c, a, t, s, where, name, n, max_len, list)
              : read_fixed_strings(c, a, t, where, name, n, max_len, list);
done:
    close_id(s);
    close_id(t);
    close_id(a);
    if (st != DDTS_OK) {
        free_strings(list, n);
        return st;
    }
    *out = list;
    *n_out = n;
    return DDTS_OK;
}

/* One string attribute (a scalar or a one-element list); *out NULL when absent. */
static enum ddts_status read_attr_string(struct ctx *c, hid_t obj, const char *where,
                                         const char *name, size_t max_len, char **out)
{
    *out = NULL;
    char **list;
    size_t n;
    int found;
    enum ddts_status st = read_attr_strings(c, obj, where, name, 1, max_len, &list, &n, &found);
    if (st != DDTS_OK)
        return st;
    if (found && n != 1) {
        free_strings(list, n);
        return ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: attribute %s is not one string",
                              c->label, where, name);
    }
    if (found) {
        *out = list[0];
        ddts_free(list);
    }
    return DDTS_OK;
}

/* A list attribute as Keras' load_attributes_from_hdf5_group reads it:
 * `name`, or else the chunks name0, name1, ... concatenated. */
static enum ddts_status read_name_list(struct ctx *c, hid_t obj, const char *where,
                                       const char *name, size_t max_items, char ***out,
                                       size_t *n_out, int *found)
{
    enum ddts_status st =
        read_attr_strings(c, obj, where, name, max_items, DDTS_MAX_KERAS_NAME, out, n_out, found);
    if (st != DDTS_OK || *found)
        return st;
    char **all = NULL;
    size_t n_all = 0;
    for (int chunk = 0;; chunk++) {
        char key[128];
        snprintf(key, sizeof key, "%s%d", name, chunk);
        char **part;
        size_t n_part;
        int f;
        st = read_attr_strings(c, obj, where, key, max_items, DDTS_MAX_KERAS_NAME, &part, &n_part,
                               &f);
        if (st != DDTS_OK)
            break;
        if (!f)
            break;
        *found = 1;
        if (n_part > max_items - n_all) {
            free_strings(part, n_part);
            st = ddts_error_set(c->err, DDTS_ELIMIT, "%s: %s: %s lists more than %zu names",
                                c->label, where, name, max_items);
            break;
        }
        char **grown = ddts_realloc(all, (n_all + n_part + 1) * sizeof *all);
        if (grown == NULL) {
            free_strings(part, n_part);
            st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
            break;
        }
        all = grown;
        if (n_part > 0)
            memcpy(all + n_all, part, n_part * sizeof *part);
        n_all += n_part;
        ddts_free(part);
    }
    if (st != DDTS_OK) {
        free_strings(all, n_all);
        *found = 0;
        return st;
    }
    *out = all;
    *n_out = n_all;
    return DDTS_OK;
}

static int dtype_of(hid_t t, enum ddts_dtype *out)
{
    size_t size = H5Tget_size(t);
    switch (H5Tget_class(t)) {
    case H5T_FLOAT:
        *out = size == 2 ? DDTS_F16 : size == 4 ? DDTS_F32 : size == 8 ? DDTS_F64 : DDTS_N_DTYPES;
        break;
    case H5T_INTEGER: {
        int sgn = H5Tget_sign(t) == H5T_SGN_2;
        *out = size == 1   ? (sgn ? DDTS_I8 : DDTS_U8)
               : size == 2 ? (sgn ? DDTS_I16 : DDTS_U16)
               : size == 4 ? (sgn ? DDTS_I32 : DDTS_U32)
               : size == 8 ? (sgn ? DDTS_I64 : DDTS_U64)
                           : DDTS_N_DTYPES;
        break;
    }
    default:
        *out = DDTS_N_DTYPES;
        break;
    }
    return *out == DDTS_N_DTYPES ? -1 : 0;
}

/*
 * Reads dataset `rel` (relative to `loc`; `full` is its path for messages)
 * into w: shape, stored dtype, data converted to float32. Checks the rank,
 * the element count against DDTS_MAX_KERAS_PARAMS, and that an unfiltered
 * dataset really stores the bytes its shape claims, before allocating.
 */
struct ddts__keras_h5_arena *ddts__keras_h5_arena;

void ddts__keras_h5_before_fork(void)
{
    (void)H5open();
    /* libhdf5 keeps freed blocks on its own free lists (H5FL), one list per block size,
     * searched in turn; after a few reads in this process they hold megabytes. A child
     * forked with them inherits the lists and every block it takes from them is a
     * copy-on-write fault; the lists' length also slows libhdf5 down. Returned to malloc
     * here, the child starts with empty lists (docs/protocol.md, the cost). */
    (void)H5garbage_collect();
}

/* Storage for `count` weight values: from the arena when one is set (64-byte aligned). */
static float *weight_alloc(size_t count)
{
    size_t bytes = (count ? count : 1) * sizeof(float);
    struct ddts__keras_h5_arena *a = ddts__keras_h5_arena;
    if (a == NULL)
        return ddts_malloc(bytes);
    size_t at = (a->n + 63) & ~(size_t)63;
    if (a->full || at > a->cap || bytes > a->cap - at) {
        a->full = 1;
        return NULL;
    }
    a->n = at + bytes;
    return (float *)(void *)(a->p + at);
}

/* ddts__keras_weights_free for weights read here: their values may be in the arena. */
static void weights_release(struct ddts_keras_weight *w, size_t n)
{
    for (size_t i = 0; w != NULL && ddts__keras_h5_arena != NULL && i < n; i++)
        w[i].data = NULL; /* arena storage is never freed */
    ddts__keras_weights_free(w, n);
}

static enum ddts_status read_weight(struct ctx *c, hid_t loc, const char *rel, const char *full,
                                    struct ddts_keras_weight *w)
{
    enum ddts_status st = DDTS_OK;
    hid_t d = -1, t = -1, s = -1, dcpl = -1;
    d = open_dataset(loc, rel);
    if (d < 0)
        return ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: missing dataset", c->label, full);
    t = H5Dget_type(d);
    s = H5Dget_space(d);
    dcpl = H5Dget_create_plist(d);
    if (t < 0 || s < 0 || dcpl < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: unreadable dataset", c->label, full);
        goto done;
    }
    enum ddts_dtype dt;
    if (dtype_of(t, &dt) != 0) {
        st = ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                            "%s: %s: dataset type is not a number (class %d, %zu bytes)", c->label,
                            full, (int)H5Tget_class(t), H5Tget_size(t));
        goto done;
    }
    int rank = H5Sget_simple_extent_ndims(s);
    if (rank < 0 || H5Sget_simple_extent_type(s) == H5S_NULL) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: dataset has no shape", c->label, full);
        goto done;
    }
    if (rank > DDTS_MAX_RANK) {
        st = ddts_error_set(c->err, DDTS_ELIMIT, "%s: %s: rank %d (max %d)", c->label, full, rank,
                            DDTS_MAX_RANK);
        goto done;
    }
    hsize_t dims[H5S_MAX_RANK];
    if (H5Sget_simple_extent_dims(s, dims, NULL) < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: dataset has no shape", c->label, full);
        goto done;
    }
    size_t count = 1;
    for (int i = 0; i < rank; i++) {
        if (dims[i] > DDTS_MAX_KERAS_PARAMS || ddts_size_mul(count, (size_t)dims[i], &count) != 0 ||
            count > DDTS_MAX_KERAS_PARAMS) {
            st = ddts_error_set(c->err, DDTS_ELIMIT,
                                "%s: %s: dimension %d is %" PRIu64
                                ": more than %llu values in one weight",
                                c->label, full, i, (uint64_t)dims[i], DDTS_MAX_KERAS_PARAMS);
            goto done;
        }
    }
    if (count > DDTS_MAX_KERAS_PARAMS - c->total_params) {
        st = ddts_error_set(c->err, DDTS_ELIMIT, "%s: %s: the model has more than %llu weights",
                            c->label, full, DDTS_MAX_KERAS_PARAMS);
        goto done;
    }
    /* Raw data kept in other files (external storage, virtual datasets)
     * would read arbitrary files of the machine into the weights. */
    if (H5Pget_external_count(dcpl) != 0 || H5Pget_layout(dcpl) == H5D_VIRTUAL) {
        st = ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                            "%s: %s: dataset keeps its data in other files (external storage "
                            "or a virtual dataset)",
                            c->label, full);
        goto done;
    }
    size_t elem = ddts_dtype_size(dt);
    int nfilters = H5Pget_nfilters(dcpl);
    if (nfilters == 0 && count > 0) {
        hsize_t stored = H5Dget_storage_size(d);
        if (stored < (hsize_t)count * elem) {
            st = ddts_error_set(c->err, DDTS_EFORMAT,
                                "%s: %s: dataset stores %" PRIu64 " bytes but its shape needs %zu",
                                c->label, full, (uint64_t)stored, count * elem);
            goto done;
        }
    }
    w->rank = rank;
    for (int i = 0; i < rank; i++)
        w->shape[i] = (int64_t)dims[i];
    w->count = count;
    w->stored_dtype = (int)dt;
    w->data = weight_alloc(count);
    if (w->data == NULL) {
        st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: %s: out of memory for %zu values", c->label,
                            full, count);
        goto done;
    }
    if (count > 0 && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->data) < 0) {
        st =
            ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: cannot read the dataset", c->label, full);
        goto done;
    }
    c->total_params += count;
done:
    close_id(dcpl);
    close_id(s);
    close_id(t);
    close_id(d);
    return st;
}

static char *join3(const char *a, const char *b, const char *c3)
{
    size_t na = strlen(a), nb = strlen(b), nc = strlen(c3);
    char *p = ddts_malloc(na + nb + nc + 1);
    if (p == NULL)
        return NULL;
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): NUL copied with c3 */
    memcpy(p, a, na);
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): NUL copied with c3 */
    memcpy(p + na, b, nb);
    memcpy(p + na + nb, c3, nc + 1);
    return p;
}

/* Reads the weights listed by `weight_names` of group `g` (at `gpath`). */
static enum ddts_status read_weight_group(struct ctx *c, hid_t g, const char *gpath,
                                          struct ddts_keras_weight **out, size_t *n_out)
{
    *out = NULL;
    *n_out = 0;
    char **names = NULL;
    size_t n = 0;
    int found = 0;
    enum ddts_status st =
        read_name_list(c, g, gpath, "weight_names", DDTS_MAX_KERAS_WEIGHTS, &names, &n, &found);
    if (st != DDTS_OK)
        return st;
    if (!found)
        return ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: no weight_names attribute", c->label,
                              gpath);
    struct ddts_keras_weight *w = ddts_calloc(n ? n : 1, sizeof *w);
    if (w == NULL) {
        free_strings(names, n);
        return ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
    }
    for (size_t i = 0; i < n && st == DDTS_OK; i++) {
        if (names[i][0] == '\0') {
            st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: weight_names[%zu] is empty",
                                c->label, gpath, i);
            break;
        }
        w[i].name = names[i];
        names[i] = NULL;
        w[i].h5_path = join3(gpath, "/", w[i].name);
        if (w[i].h5_path == NULL ||
            ddts__keras_split_weight_name(w[i].name, &w[i].short_name, &w[i].layer_name) != 0) {
            st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
            break;
        }
        st = read_weight(c, g, w[i].name, w[i].h5_path, &w[i]);
    }
    free_strings(names, n);
    if (st != DDTS_OK) {
        weights_release(w, n);
        return st;
    }
    *out = w;
    *n_out = n;
    return DDTS_OK;
}

static enum ddts_status read_legacy(struct ctx *c, hid_t f, struct ddts_keras_model *m)
{
    enum ddts_status st;
    hid_t mw = -1, g = -1;
    char **names = NULL;
    size_t n_names = 0;
    struct ddts_keras_config *cfg = NULL;
    st = read_attr_string(c, f, "/", "keras_version", DDTS_MAX_KERAS_NAME, &m->keras_version);
    if (st == DDTS_OK)
        st = read_attr_string(c, f, "/", "backend", DDTS_MAX_KERAS_NAME, &m->backend);
    if (st == DDTS_OK)
        st = read_attr_string(c, f, "/", "model_config", DDTS_MAX_KERAS_ATTR_BYTES,
                              &m->model_config);
    if (st == DDTS_OK)
        st = read_attr_string(c, f, "/", "training_config", DDTS_MAX_KERAS_ATTR_BYTES,
                              &m->training_config);
    if (st != DDTS_OK)
        goto done;
    if (m->model_config == NULL) {
        st = ddts_error_set(c->err, DDTS_EFORMAT,
                            "%s: /: no model_config attribute: not a Keras model file (a "
                            "weights-only file from save_weights has no architecture)",
                            c->label);
        goto done;
    }
    st = ddts_keras_config_parse(m->model_config, strlen(m->model_config), &cfg, c->err);
    if (st != DDTS_OK) {
        ddts_error_prefix(c->err, "%s: /: attribute model_config: ", c->label);
        goto done;
    }
    htri_t ex = H5Lexists(f, "model_weights", H5P_DEFAULT);
    mw = ex > 0 ? open_group(f, "model_weights") : -1;
    if (mw < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: /model_weights: missing group", c->label);
        goto done;
    }
    int found = 0;
    st = read_name_list(c, mw, "/model_weights", "layer_names", DDTS_MAX_LAYERS, &names, &n_names,
                        &found);
    if (st != DDTS_OK)
        goto done;
    if (!found) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: /model_weights: no layer_names attribute",
                            c->label);
        goto done;
    }
    m->layers = ddts_calloc(n_names ? n_names : 1, sizeof *m->layers);
    if (m->layers == NULL) {
        st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
        goto done;
    }
    m->n_layers = n_names;
    for (size_t i = 0; i < n_names; i++) {
        struct ddts_keras_layer *L = &m->layers[i];
        L->name = names[i];
        names[i] = NULL;
        for (size_t j = 0; j < cfg->n_layers; j++) {
            if (cfg->layers[j].depth == 0 && strcmp(cfg->layers[j].name, L->name) == 0) {
                L->class_name = ddts_strdup(cfg->layers[j].class_name);
                if (L->class_name == NULL) {
                    st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
                    goto done;
                }
                break;
            }
        }
        char *gpath = join3("/model_weights/", L->name, "");
        if (gpath == NULL) {
            st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
            goto done;
        }
        g = L->name[0] != '\0' ? open_group(mw, L->name) : -1;
        if (g < 0) {
            st = ddts_error_set(c->err, DDTS_EFORMAT,
                                "%s: %s: missing group (layer %zu of layer_names)", c->label, gpath,
                                i);
            ddts_free(gpath);
            goto done;
        }
        st = read_weight_group(c, g, gpath, &L->weights, &L->n_weights);
        ddts_free(gpath);
        close_id(g);
        g = -1;
        if (st != DDTS_OK)
            goto done;
    }
    ex = H5Lexists(f, "optimizer_weights", H5P_DEFAULT);
    if (ex > 0) {
        m->has_optimizer_weights = 1;
        g = open_group(f, "optimizer_weights");
        if (g < 0) {
            st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: /optimizer_weights: not a group",
                                c->label);
            goto done;
        }
        st = read_weight_group(c, g, "/optimizer_weights", &m->optimizer_weights,
                               &m->n_optimizer_weights);
    }
done:
    close_id(g);
    close_id(mw);
    free_strings(names, n_names);
    ddts_keras_config_destroy(cfg);
    return st;
}

static hid_t image_fapl(const void *image, size_t nbytes)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0)
        return -1;
    if (H5Pset_fapl_core(fapl, 1 << 16, 0) < 0 ||
        (image != NULL && H5Pset_file_image(fapl, (void *)image, nbytes) < 0)) {
        H5Pclose(fapl);
        return -1;
    }
    return fapl;
}

/* Opens a memory image; the name only has to be unique among open files. */
static hid_t open_image(const void *image, size_t nbytes, unsigned flags)
{
    hid_t fapl = image_fapl(image, nbytes);
    if (fapl < 0)
        return -1;
    char name[64];
    snprintf(name, sizeof name, "ddts-image-%p", image);
    hid_t f = H5Fopen(name, flags, fapl);
    H5Pclose(fapl);
    return f;
}

enum ddts_status ddts__keras_h5_read_legacy_inproc(const char *path, struct ddts_keras_model *m,
                                                   struct ddts_error *err)
{
    QUIET();
    struct ctx c = {path, err, 0};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: not a readable HDF5 file", path);
    enum ddts_status st = read_legacy(&c, f, m);
    H5Fclose(f);
    return st;
}

enum ddts_status ddts__keras_h5_read_legacy_image_inproc(const void *image, size_t nbytes,
                                                         const char *label,
                                                         struct ddts_keras_model *m,
                                                         struct ddts_error *err)
{
    QUIET();
    struct ctx c = {label, err, 0};
    hid_t f = open_image(image, nbytes, H5F_ACC_RDONLY);
    if (f < 0)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: not a readable HDF5 file", label);
    enum ddts_status st = read_legacy(&c, f, m);
    H5Fclose(f);
    return st;
}

/* ---- .keras: model.weights.h5 ---------------------------------------- */

struct zip_reader {
    struct ctx *c;
    hid_t f;
    const struct ddts_keras_config *cfg;
    struct ddts_keras_weight *w; /* weights of the current top-level layer */
    size_t n, cap;
    /* The container of a model's layers: "layers" (Keras 3), or
     * "_layer_checkpoint_dependencies" in .keras files of Keras 2.13-2.15
     * (the compatibility branch of Keras 3's H5Entry). */
    const char *container;
};

static enum ddts_status push_weight(struct zip_reader *z, struct ddts_keras_weight **slot)
{
    if (z->n == z->cap) {
        size_t cap = z->cap ? z->cap * 2 : 8;
        struct ddts_keras_weight *p = ddts_realloc(z->w, cap * sizeof *p);
        if (p == NULL)
            return ddts_error_set(z->c->err, DDTS_ENOMEM, "%s: out of memory", z->c->label);
        z->w = p;
        z->cap = cap;
    }
    *slot = &z->w[z->n++];
    memset(*slot, 0, sizeof **slot);
    return DDTS_OK;
}

static int is_group(hid_t loc, const char *path)
{
    if (H5Lexists(loc, path, H5P_DEFAULT) <= 0)
        return 0;
    hid_t lapl = no_elinks(H5P_LINK_ACCESS);
    hid_t o = lapl < 0 ? -1 : H5Oopen(loc, path, lapl);
    close_id(lapl);
    if (o < 0)
        return 0;
    int yes = H5Iget_type(o) == H5I_GROUP;
    H5Oclose(o);
    return yes;
}

/* Reads <path>/vars/0, 1, ... of one object; names and short names from
 * config layer `cl` (may be NULL). */
static enum ddts_status read_vars(struct zip_reader *z, const char *path,
                                  const struct ddts_keras_config_layer *cl, const char *owner,
                                  struct ddts_keras_weight **into, size_t *n_into, size_t *cap_into)
{
    char *vars = join3(path, "/vars", "");
    if (vars == NULL)
        return ddts_error_set(z->c->err, DDTS_ENOMEM, "%s: out of memory", z->c->label);
    enum ddts_status st = DDTS_OK;
    if (!is_group(z->f, vars))
        goto done;
    for (size_t i = 0;; i++) {
        char idx[32];
        snprintf(idx, sizeof idx, "/%zu", i);
        char *full = join3(vars, idx, "");
        if (full == NULL) {
            st = ddts_error_set(z->c->err, DDTS_ENOMEM, "%s: out of memory", z->c->label);
            break;
        }
        if (H5Lexists(z->f, full, H5P_DEFAULT) <= 0) {
            ddts_free(full);
            break;
        }
        if (i >= DDTS_MAX_KERAS_WEIGHTS) {
            ddts_free(full);
            st = ddts_error_set(z->c->err, DDTS_ELIMIT, "%s: %s: more than %d variables",
                                z->c->label, vars, DDTS_MAX_KERAS_WEIGHTS);
            break;
        }
        /* Append to the caller's list (z->w is swapped in and out). */
        z->w = *into;
        z->n = *n_into;
        z->cap = *cap_into;
        struct ddts_keras_weight *w = NULL;
        st = push_weight(z, &w);
        *into = z->w;
        *n_into = z->n;
        *cap_into = z->cap;
        if (st != DDTS_OK) {
            ddts_free(full);
            break;
        }
        w->h5_path = full;
        w->name = ddts_strdup(full + 1);
        w->short_name = ddts__keras_short_name(cl, i);
        w->layer_name = ddts_strdup(owner);
        if (w->name == NULL || w->short_name == NULL || w->layer_name == NULL) {
            st = ddts_error_set(z->c->err, DDTS_ENOMEM, "%s: out of memory", z->c->label);
            break;
        }
        st = read_weight(z->c, z->f, full, full, w);
        if (st != DDTS_OK)
            break;
    }
done:
    ddts_free(vars);
    return st;
}

struct child_list {
    char **names;
    size_t n, cap;
    int oom;
};

static herr_t list_child(hid_t g, const char *name, const H5L_info_t *info, void *op_data)
{
    struct child_list *l = op_data;
    if (info->type != H5L_TYPE_HARD)
        return 0;
    if (l->n >= DDTS_MAX_KERAS_WEIGHTS)
        return 1;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        char **p = ddts_realloc(l->names, cap * sizeof *p);
        if (p == NULL) {
            l->oom = 1;
            return -1;
        }
        l->names = p;
        l->cap = cap;
    }
    l->names[l->n] = ddts_strdup(name);
    if (l->names[l->n] == NULL) {
        l->oom = 1;
        return -1;
    }
    l->n++;
    return 0;
}

/* Gathers the variables of the object at `path` (config entry `ci`, or -1)
 * and of everything inside it: its own vars, then its nested layers in
 * config order (layers/<snake>[_N]), then any other sub-object by name. */
static enum ddts_status collect(struct zip_reader *z, const char *path, long ci, int depth,
                                struct ddts_keras_weight **into, size_t *n_into, size_t *cap_into)
{
    if (depth > DDTS_MAX_KERAS_NESTING)
        return ddts_error_set(z->c->err, DDTS_ELIMIT, "%s: %s: objects nested more than %d deep",
                              z->c->label, path, DDTS_MAX_KERAS_NESTING);
    if (!is_group(z->f, path))
        return DDTS_OK;
    const struct ddts_keras_config_layer *cl = ci >= 0 ? &z->cfg->layers[ci] : NULL;
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    enum ddts_status st = read_vars(z, path, cl, cl ? cl->name : base, into, n_into, cap_into);
    if (st != DDTS_OK)
        return st;
    int has_children = 0;
    if (ci >= 0) {
        /* Nested model: its layers in config order, named like the top level. */
        struct snake_count {
            char *snake;
            size_t used;
        } *seen = NULL;
        size_t n_seen = 0;
        for (size_t j = (size_t)ci + 1; j < z->cfg->n_layers && st == DDTS_OK; j++) {
            if (z->cfg->layers[j].parent != (int)ci)
                continue;
            has_children = 1;
            char *snake = ddts__keras_snake_case(z->cfg->layers[j].class_name);
            struct snake_count *grown =
                snake ? ddts_realloc(seen, (n_seen + 1) * sizeof *seen) : NULL;
            if (grown == NULL) {
                ddts_free(snake);
                st = ddts_error_set(z->c->err, DDTS_ENOMEM, "%s: out of memory", z->c->label);
                break;
            }
            seen = grown;
            size_t k = 0;
            while (k < n_seen && strcmp(seen[k].snake, snake) != 0)
                k++;
            char suffix[32] = "";
            if (k < n_seen) {
                seen[k].used++;
                snprintf(suffix, sizeof suffix, "_%zu", seen[k].used);
                ddts_free(snake);
                snake = seen[k].snake;
            } else {
                seen[n_seen].snake = snake;
                seen[n_seen].used = 0;
                n_seen++;
            }
            char *child = join3(path, "/", z->container);
            char *tmp = child ? join3(child, "/", snake) : NULL;
            ddts_free(child);
            child = tmp;
            char *child2 = child ? join3(child, suffix, "") : NULL;
            ddts_free(child);
            if (child2 == NULL) {
                st = ddts_error_set(z->c->err, DDTS_ENOMEM, "%s: out of memory", z->c->label);
                break;
            }
            st = collect(z, child2, (long)j, depth + 1, into, n_into, cap_into);
            ddts_free(child2);
        }
        for (size_t k = 0; k < n_seen; k++)
            ddts_free(seen[k].snake);
        ddts_free(seen);
        if (st != DDTS_OK)
            return st;
    }
    /* Other sub-objects (e.g. an RNN layer's cell), in name order. */
    struct child_list l = {NULL, 0, 0, 0};
    hid_t g = open_group(z->f, path);
    if (g < 0)
        return ddts_error_set(z->c->err, DDTS_EFORMAT, "%s: %s: cannot open group", z->c->label,
                              path);
    hsize_t idx = 0;
    herr_t it = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, list_child, &l);
    H5Gclose(g);
    if (it < 0 && l.oom)
        st = ddts_error_set(z->c->err, DDTS_ENOMEM, "%s: out of memory", z->c->label);
    else if (it < 0)
        st = ddts_error_set(z->c->err, DDTS_EFORMAT, "%s: %s: cannot list the group", z->c->label,
                            path);
    /* Bidirectional: Keras lists the forward layer's weights first, while
     * name order would put backward_layer first. */
    for (size_t k = 0; k + 1 < l.n; k++)
        if (strcmp(l.names[k], "backward_layer") == 0)
            for (size_t q = k + 1; q < l.n; q++)
                if (strcmp(l.names[q], "forward_layer") == 0) {
                    char *t = l.names[k];
                    l.names[k] = l.names[q];
                    l.names[q] = t;
                }
    /* A class whose variables live in named sub-groups takes them in its
     * weight order (stable: unlisted ones keep name order, after). */
    for (size_t k = 1; cl != NULL && k < l.n; k++)
        for (size_t j = k; j > 0 && ddts__keras_sub_rank(cl->class_name, l.names[j]) <
                                        ddts__keras_sub_rank(cl->class_name, l.names[j - 1]);
             j--) {
            char *t = l.names[j];
            l.names[j] = l.names[j - 1];
            l.names[j - 1] = t;
        }
    for (size_t k = 0; k < l.n && st == DDTS_OK; k++) {
        if (strcmp(l.names[k], "vars") == 0 ||
            (has_children && strcmp(l.names[k], z->container) == 0))
            continue;
        char *sub = join3(path, "/", l.names[k]);
        if (sub == NULL) {
            st = ddts_error_set(z->c->err, DDTS_ENOMEM, "%s: out of memory", z->c->label);
            break;
        }
        st = collect(z, sub, -1, depth + 1, into, n_into, cap_into);
        ddts_free(sub);
    }
    free_strings(l.names, l.n);
    return st;
}

enum ddts_status ddts__keras_h5_read_zip_weights_inproc(const void *image, size_t nbytes,
                                                        const char *label,
                                                        const struct ddts_keras_config *cfg,
                                                        struct ddts_keras_model *m,
                                                        struct ddts_error *err)
{
    QUIET();
    struct ctx c = {label, err, 0};
    hid_t f = open_image(image, nbytes, H5F_ACC_RDONLY);
    if (f < 0)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: not a readable HDF5 file", label);
    struct zip_reader z = {&c, f, cfg, NULL, 0, 0, "layers"};
    if (!is_group(f, "/layers") && is_group(f, "/_layer_checkpoint_dependencies"))
        z.container = "_layer_checkpoint_dependencies";
    enum ddts_status st = DDTS_OK;
    size_t n_top = 0;
    for (size_t j = 0; j < cfg->n_layers; j++)
        n_top += cfg->layers[j].depth == 0;
    m->layers = ddts_calloc(n_top ? n_top : 1, sizeof *m->layers);
    if (m->layers == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", label);
        goto done;
    }
    /* Top-level layers: /layers/<snake>[_N], numbered per snake name. */
    char **snakes = ddts_calloc(n_top ? n_top : 1, sizeof *snakes);
    if (snakes == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", label);
        goto done;
    }
    size_t t = 0;
    for (size_t j = 0; j < cfg->n_layers && st == DDTS_OK; j++) {
        const struct ddts_keras_config_layer *cl = &cfg->layers[j];
        if (cl->depth != 0)
            continue;
        struct ddts_keras_layer *L = &m->layers[t];
        m->n_layers = t + 1;
        L->name = ddts_strdup(cl->name);
        L->class_name = ddts_strdup(cl->class_name);
        snakes[t] = ddts__keras_snake_case(cl->class_name);
        if (L->name == NULL || L->class_name == NULL || snakes[t] == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", label);
            break;
        }
        size_t used = 0;
        for (size_t k = 0; k < t; k++)
            used += strcmp(snakes[k], snakes[t]) == 0;
        char suffix[32] = "";
        if (used > 0)
            snprintf(suffix, sizeof suffix, "_%zu", used);
        char *prefix = join3("/", z.container, "/");
        char *path = prefix ? join3(prefix, snakes[t], suffix) : NULL;
        ddts_free(prefix);
        t++;
        if (path == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", label);
            break;
        }
        size_t cap = 0;
        st = collect(&z, path, (long)j, 1, &L->weights, &L->n_weights, &cap);
        ddts_free(path);
    }
    free_strings(snakes, n_top);
    if (st != DDTS_OK)
        goto done;
    if (is_group(f, "/optimizer")) {
        m->has_optimizer_weights = 1;
        size_t cap = 0;
        st = read_vars(&z, "/optimizer", NULL, "optimizer", &m->optimizer_weights,
                       &m->n_optimizer_weights, &cap);
    }
done:
    H5Fclose(f);
    return st;
}

/* ---- writing ------------------------------------------------------------ */

static enum ddts_status update_weight(struct ctx *c, hid_t f, const struct ddts_keras_weight *w)
{
    if (w->h5_path == NULL || w->data == NULL)
        return ddts_error_set(c->err, DDTS_EINVAL, "%s: weight %s has no path or no data", c->label,
                              w->name ? w->name : "?");
    enum ddts_status st = DDTS_OK;
    hid_t d = open_dataset(f, w->h5_path);
    hid_t s = d < 0 ? -1 : H5Dget_space(d);
    hid_t dcpl = d < 0 ? -1 : H5Dget_create_plist(d);
    float *old = NULL;
    if (d < 0 || s < 0 || dcpl < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: missing dataset (the file changed?)",
                            c->label, w->h5_path);
        goto done;
    }
    /* Never write through to other files (the source may have changed). */
    if (H5Pget_external_count(dcpl) != 0 || H5Pget_layout(dcpl) == H5D_VIRTUAL) {
        st = ddts_error_set(c->err, DDTS_EUNSUPPORTED,
                            "%s: %s: dataset keeps its data in other files", c->label, w->h5_path);
        goto done;
    }
    hsize_t dims[H5S_MAX_RANK];
    int rank = H5Sget_simple_extent_ndims(s);
    int same = rank == w->rank && rank >= 0 && rank <= DDTS_MAX_RANK &&
               H5Sget_simple_extent_dims(s, dims, NULL) >= 0;
    for (int i = 0; same && i < rank; i++)
        same = (int64_t)dims[i] == w->shape[i];
    size_t count = 1;
    for (int i = 0; same && i < rank; i++)
        count *= (size_t)dims[i];
    if (!same || count != w->count) {
        st = ddts_error_set(c->err, DDTS_ESHAPE,
                            "%s: %s: the weight's shape no longer matches the file", c->label,
                            w->h5_path);
        goto done;
    }
    if (count == 0)
        goto done;
    if (w->stored_dtype != DDTS_F32) {
        /* Leave a converted dataset untouched when its values did not change,
         * so that float64 or int64 values (an optimizer's iteration count)
         * round-trip exactly. */
        old = ddts_malloc(count * sizeof *old);
        if (old == NULL) {
            st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
            goto done;
        }
        if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, old) >= 0 &&
            memcmp(old, w->data, count * sizeof *old) == 0)
            goto done;
    }
    if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->data) < 0)
        st = ddts_error_set(c->err, DDTS_EIO, "%s: %s: cannot write the dataset", c->label,
                            w->h5_path);
done:
    ddts_free(old);
    close_id(dcpl);
    close_id(s);
    close_id(d);
    return st;
}

static enum ddts_status take_image(struct ctx *c, hid_t f, void **out, size_t *out_nbytes)
{
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0)
        return ddts_error_set(c->err, DDTS_EIO, "%s: cannot flush the HDF5 image", c->label);
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    if (n <= 0)
        return ddts_error_set(c->err, DDTS_EIO, "%s: cannot get the HDF5 image", c->label);
    void *buf = ddts_malloc((size_t)n);
    if (buf == NULL)
        return ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
    if (H5Fget_file_image(f, buf, (size_t)n) != n) {
        ddts_free(buf);
        return ddts_error_set(c->err, DDTS_EIO, "%s: cannot get the HDF5 image", c->label);
    }
    *out = buf;
    *out_nbytes = (size_t)n;
    return DDTS_OK;
}

static int write_name_list(hid_t obj, const char *name, char *const *names, size_t n, int vlen);
static enum ddts_status write_new_layers(struct ctx *c, hid_t mw, const struct ddts_keras_model *m,
                                         int only_missing);

/* Replaces string attribute `name` of `obj` by `value`, keeping its kind:
 * variable-length (same character set) or fixed-length (same padding,
 * sized to the new value). */
static enum ddts_status rewrite_string_attr(struct ctx *c, hid_t obj, const char *where,
                                            const char *name, const char *value)
{
    enum ddts_status st = DDTS_OK;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    hid_t t = a < 0 ? -1 : H5Aget_type(a);
    hid_t nt = t < 0 ? -1 : H5Tcopy(t);
    hid_t s = H5Screate(H5S_SCALAR);
    close_id(a);
    a = -1;
    if (nt < 0 || s < 0 || H5Tget_class(t) != H5T_STRING) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: %s: attribute %s is not a string", c->label,
                            where, name);
        goto done;
    }
    int vlen = H5Tis_variable_str(t) > 0;
    size_t len = strlen(value);
    if (!vlen && H5Tset_size(nt, len ? len : 1) < 0) {
        st = ddts_error_set(c->err, DDTS_EIO, "%s: %s: cannot size attribute %s", c->label, where,
                            name);
        goto done;
    }
    if (H5Adelete(obj, name) < 0 ||
        (a = H5Acreate2(obj, name, nt, s, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        H5Awrite(a, nt, vlen ? (const void *)&value : (const void *)value) < 0)
        st = ddts_error_set(c->err, DDTS_EIO, "%s: %s: cannot rewrite attribute %s", c->label,
                            where, name);
done:
    close_id(a);
    close_id(s);
    close_id(nt);
    close_id(t);
    return st;
}

/*
 * A legacy file whose model changed shape (a layer added, e.g. the
 * normalizer): rewrites model_config when it differs, layer_names when the
 * layer list differs, and adds a group for each new layer. A file without
 * /model_weights (model.weights.h5 of a .keras zip) has nothing to do here.
 */
static enum ddts_status update_structure(struct ctx *c, hid_t f, const struct ddts_keras_model *m)
{
    if (H5Lexists(f, "model_weights", H5P_DEFAULT) <= 0)
        return DDTS_OK;
    char *stored = NULL;
    char **names = NULL;
    size_t n = 0;
    int found = 0;
    hid_t mw = -1;
    enum ddts_status st =
        read_attr_string(c, f, "/", "model_config", DDTS_MAX_KERAS_ATTR_BYTES, &stored);
    if (st == DDTS_OK && stored != NULL && m->model_config != NULL &&
        strcmp(stored, m->model_config) != 0)
        st = rewrite_string_attr(c, f, "/", "model_config", m->model_config);
    if (st != DDTS_OK)
        goto done;
    mw = open_group(f, "model_weights");
    if (mw < 0) {
        st = ddts_error_set(c->err, DDTS_EFORMAT, "%s: /model_weights: not a group", c->label);
        goto done;
    }
    st =
        read_name_list(c, mw, "/model_weights", "layer_names", DDTS_MAX_LAYERS, &names, &n, &found);
    if (st != DDTS_OK)
        goto done;
    int same = n == m->n_layers;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(names[i], m->layers[i].name) == 0;
    if (!same) {
        char **now = ddts_calloc(m->n_layers ? m->n_layers : 1, sizeof *now);
        if (now == NULL) {
            st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
            goto done;
        }
        for (size_t i = 0; i < m->n_layers; i++)
            now[i] = m->layers[i].name;
        /* Keep the stored kind: unsplit lists of h5py >= 3 are vlen. */
        int was_vlen = 0;
        if (H5Aexists(mw, "layer_names") > 0) {
            hid_t a = H5Aopen(mw, "layer_names", H5P_DEFAULT);
            hid_t t = a < 0 ? -1 : H5Aget_type(a);
            was_vlen = t >= 0 && H5Tget_class(t) == H5T_STRING && H5Tis_variable_str(t) > 0;
            close_id(t);
            close_id(a);
            H5Adelete(mw, "layer_names");
        }
        for (int k = 0;; k++) {
            char key[64];
            snprintf(key, sizeof key, "layer_names%d", k);
            if (H5Aexists(mw, key) <= 0 || H5Adelete(mw, key) < 0)
                break;
        }
        int rc = write_name_list(mw, "layer_names", now, m->n_layers, was_vlen);
        ddts_free(now);
        if (rc == -2)
            st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
        else if (rc < 0)
            st = ddts_error_set(c->err, DDTS_EIO, "%s: /model_weights: cannot write layer_names",
                                c->label);
        if (st == DDTS_OK)
            st = write_new_layers(c, mw, m, 1);
    }
done:
    close_id(mw);
    free_strings(names, n);
    ddts_free(stored);
    return st;
}

enum ddts_status ddts__keras_h5_update_image_inproc(const void *image, size_t nbytes,
                                                    const char *label,
                                                    const struct ddts_keras_model *m, void **out,
                                                    size_t *out_nbytes, struct ddts_error *err)
{
    QUIET();
    *out = NULL;
    *out_nbytes = 0;
    struct ctx c = {label, err, 0};
    hid_t f = open_image(image, nbytes, H5F_ACC_RDWR);
    if (f < 0)
        return ddts_error_set(err, DDTS_EFORMAT, "%s: not a readable HDF5 file", label);
    enum ddts_status st = update_structure(&c, f, m);
    /* Weights without a path belong to layers update_structure just wrote. */
    for (size_t i = 0; i < m->n_layers && st == DDTS_OK; i++)
        for (size_t j = 0; j < m->layers[i].n_weights && st == DDTS_OK; j++)
            if (m->layers[i].weights[j].h5_path != NULL)
                st = update_weight(&c, f, &m->layers[i].weights[j]);
    for (size_t j = 0; j < m->n_optimizer_weights && st == DDTS_OK; j++)
        st = update_weight(&c, f, &m->optimizer_weights[j]);
    if (st == DDTS_OK)
        st = take_image(&c, f, out, out_nbytes);
    H5Fclose(f);
    return st;
}

/* A scalar variable-length string attribute, as h5py writes a Python str
 * (UTF-8) or bytes (ASCII). */
static int write_vlen_attr(hid_t obj, const char *name, const char *value, H5T_cset_t cset)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = -1;
    int rc = -1;
    if (t >= 0 && s >= 0 && H5Tset_size(t, H5T_VARIABLE) >= 0 && H5Tset_cset(t, cset) >= 0) {
        a = H5Acreate2(obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0 && H5Awrite(a, t, &value) >= 0)
            rc = 0;
    }
    close_id(a);
    close_id(s);
    close_id(t);
    return rc;
}

/* A list of names as tf.keras' save_attributes_to_hdf5_group writes it
 * with h5py 3: `attrs[name] = list of bytes` is a 1-d array of
 * variable-length ASCII strings (vlen; with h5py 2, or vlen = 0, fixed-length
 * NUL-padded strings as long as the longest); an empty list is an empty
 * float64 array; when np.asarray(list) (fixed-length) is above
 * OBJECT_HEADER_LIMIT bytes it is split with np.array_split into name0,
 * name1, ..., numpy fixed-length arrays. Returns 0, -1 (HDF5 failed) or -2
 * (out of memory). */
static int write_name_list(hid_t obj, const char *name, char *const *names, size_t n, int vlen)
{
    if (n == 0) {
        hsize_t zero = 0;
        hid_t s = H5Screate_simple(1, &zero, NULL);
        hid_t a = s < 0 ? -1 : H5Acreate2(obj, name, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
        int rc = a < 0 ? -1 : 0;
        close_id(a);
        close_id(s);
        return rc;
    }
    size_t item = 1;
    for (size_t i = 0; i < n; i++)
        if (strlen(names[i]) > item)
            item = strlen(names[i]);
    size_t chunks = 1;
    while (((n + chunks - 1) / chunks) * item > OBJECT_HEADER_LIMIT && chunks < n)
        chunks++;
    if (chunks == 1 && vlen) {
        /* h5py >= 3 stores a Python list of bytes as variable-length ASCII. */
        hsize_t dim = n;
        hid_t vt = H5Tcopy(H5T_C_S1);
        hid_t s = H5Screate_simple(1, &dim, NULL);
        int rc = vt >= 0 && s >= 0 && H5Tset_size(vt, H5T_VARIABLE) >= 0 ? 0 : -1;
        hid_t a = rc == 0 ? H5Acreate2(obj, name, vt, s, H5P_DEFAULT, H5P_DEFAULT) : -1;
        if (a < 0 || H5Awrite(a, vt, names) < 0)
            rc = -1;
        close_id(a);
        close_id(s);
        close_id(vt);
        return rc;
    }
    char *buf = ddts_calloc(n, item);
    if (buf == NULL)
        return -2;
    for (size_t i = 0; i < n; i++)
        memcpy(buf + i * item, names[i], strlen(names[i]));
    hid_t t = H5Tcopy(H5T_C_S1);
    int rc = t >= 0 && H5Tset_size(t, item) >= 0 && H5Tset_strpad(t, H5T_STR_NULLPAD) >= 0 ? 0 : -1;
    size_t first = 0;
    for (size_t k = 0; k < chunks && rc == 0; k++) {
        /* np.array_split: the first n % chunks parts get one more item. */
        size_t len = n / chunks + (k < n % chunks ? 1 : 0);
        char key[160];
        if (chunks > 1)
            snprintf(key, sizeof key, "%s%zu", name, k);
        else
            snprintf(key, sizeof key, "%s", name);
        hsize_t dim = len;
        hid_t s = H5Screate_simple(1, &dim, NULL);
        hid_t a = s < 0 ? -1 : H5Acreate2(obj, key, t, s, H5P_DEFAULT, H5P_DEFAULT);
        if (a < 0 || H5Awrite(a, t, buf + first * item) < 0)
            rc = -1;
        close_id(a);
        close_id(s);
        first += len;
    }
    close_id(t);
    ddts_free(buf);
    return rc;
}

/* Creates /model_weights/<layer> groups with weight_names and float32
 * datasets: for every layer, or (only_missing) for layers without a group. */
static enum ddts_status write_new_layers(struct ctx *c, hid_t mw, const struct ddts_keras_model *m,
                                         int only_missing)
{
    enum ddts_status st = DDTS_OK;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0) {
        close_id(lcpl);
        return ddts_error_set(c->err, DDTS_EIO, "%s: HDF5 property list failed", c->label);
    }
    for (size_t i = 0; i < m->n_layers && st == DDTS_OK; i++) {
        const struct ddts_keras_layer *L = &m->layers[i];
        if (only_missing && H5Lexists(mw, L->name, H5P_DEFAULT) > 0)
            continue;
        size_t nw = L->n_weights;
        char **names = ddts_calloc(nw ? nw : 1, sizeof *names);
        size_t *order = ddts_calloc(nw ? nw : 1, sizeof *order);
        if (names == NULL || order == NULL) {
            ddts_free(names);
            ddts_free(order);
            st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
            break;
        }
        /* Weights read from a .keras file are in per-layer vars order and
         * named by their vars path. The legacy format wants a layer's (a
         * nested model's) trainable weights first, then the non-trainable
         * ones (_legacy_weights), named "<layer>/<weight>" (":0" before
         * Keras 3); moving statistics and Normalization's values are the
         * non-trainable ones. */
        int from_zip = m->format == DDTS_KERAS_ZIP;
        int k3 = m->keras_version != NULL && m->keras_version[0] == '3';
        size_t at = 0;
        for (int pass = 0; pass < 2; pass++)
            for (size_t j = 0; j < nw; j++) {
                const char *sn = L->weights[j].short_name ? L->weights[j].short_name : "";
                int fixed = strcmp(sn, "moving_mean") == 0 || strcmp(sn, "moving_variance") == 0 ||
                            (L->class_name != NULL && strcmp(L->class_name, "Normalization") == 0);
                if (!from_zip ? pass == 0 : fixed == pass)
                    order[at++] = j;
            }
        for (size_t j = 0; j < nw && st == DDTS_OK; j++) {
            const struct ddts_keras_weight *w = &L->weights[order[j]];
            if (w->name != NULL && !from_zip) {
                names[j] = ddts_strdup(w->name);
            } else if (w->short_name != NULL) {
                const char *owner = from_zip && w->layer_name ? w->layer_name : L->name;
                char *a = join3(owner, "/", w->short_name);
                names[j] = a ? join3(a, k3 ? "" : ":0", "") : NULL;
                ddts_free(a);
            } else {
                st = ddts_error_set(c->err, DDTS_EINVAL,
                                    "%s: layer %s: weight %zu has neither a name nor a short name",
                                    c->label, L->name, j);
                break;
            }
            if (names[j] == NULL)
                st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
        }
        hid_t g = -1;
        if (st == DDTS_OK) {
            g = H5Gcreate2(mw, L->name, lcpl, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0)
                st = ddts_error_set(c->err, DDTS_EINVAL,
                                    "%s: cannot create group /model_weights/%s (a duplicate or "
                                    "bad layer name?)",
                                    c->label, L->name);
        }
        int rc = st == DDTS_OK ? write_name_list(g, "weight_names", names, nw, 1) : 0;
        if (rc == -2)
            st = ddts_error_set(c->err, DDTS_ENOMEM, "%s: out of memory", c->label);
        else if (rc < 0)
            st = ddts_error_set(c->err, DDTS_EIO,
                                "%s: /model_weights/%s: cannot write "
                                "weight_names",
                                c->label, L->name);
        for (size_t j = 0; j < nw && st == DDTS_OK; j++) {
            const struct ddts_keras_weight *w = &L->weights[order[j]];
            hsize_t dims[DDTS_MAX_RANK];
            size_t count = 1;
            int ok = w->rank >= 0 && w->rank <= DDTS_MAX_RANK;
            for (int k = 0; ok && k < w->rank; k++) {
                ok = w->shape[k] >= 0 && ddts_size_mul(count, (size_t)w->shape[k], &count) == 0;
                dims[k] = (hsize_t)w->shape[k];
            }
            if (!ok || count != w->count || (count > 0 && w->data == NULL)) {
                st = ddts_error_set(c->err, DDTS_EINVAL,
                                    "%s: layer %s: weight %s: shape, count and data disagree",
                                    c->label, L->name, names[j]);
                break;
            }
            hid_t s = w->rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(w->rank, dims, NULL);
            hid_t d =
                s < 0 ? -1
                      : H5Dcreate2(g, names[j], H5T_IEEE_F32LE, s, lcpl, H5P_DEFAULT, H5P_DEFAULT);
            if (d < 0)
                st = ddts_error_set(c->err, DDTS_EINVAL,
                                    "%s: /model_weights/%s/%s: cannot create the dataset (a "
                                    "duplicate name?)",
                                    c->label, L->name, names[j]);
            else if (count > 0 &&
                     H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w->data) < 0)
                st = ddts_error_set(c->err, DDTS_EIO, "%s: /model_weights/%s/%s: cannot write",
                                    c->label, L->name, names[j]);
            close_id(d);
            close_id(s);
        }
        close_id(g);
        free_strings(names, nw);
        ddts_free(order);
    }
    close_id(lcpl);
    return st;
}

enum ddts_status ddts_keras_write_new(const struct ddts_keras_model *m, const char *path,
                                      struct ddts_error *err)
{
    if (m == NULL || path == NULL || m->model_config == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "%s: no model configuration to write",
                              path ? path : "keras");
    for (size_t i = 0; i < m->n_layers; i++)
        if (m->layers[i].name == NULL || m->layers[i].name[0] == '\0')
            return ddts_error_set(err, DDTS_EINVAL, "%s: layer %zu has no name", path, i);
    QUIET();
    struct ctx c = {path, err, 0};
    enum ddts_status st = DDTS_OK;
    hid_t fapl = image_fapl(NULL, 0);
    char name[64];
    snprintf(name, sizeof name, "ddts-new-%p", (const void *)m);
    hid_t f = fapl < 0 ? -1 : H5Fcreate(name, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    close_id(fapl);
    hid_t mw = -1;
    char **layer_names = NULL;
    void *image = NULL;
    size_t n_image = 0;
    if (f < 0) {
        st = ddts_error_set(err, DDTS_EIO, "%s: cannot create an HDF5 file in memory", path);
        goto done;
    }
    /* Root attributes as tf.keras 2.x writes them (hdf5_format.py):
     * keras_version and backend are str, the JSON configs are bytes. */
    const char *version = m->keras_version ? m->keras_version : "2.15.0";
    const char *backend = m->backend ? m->backend : "tensorflow";
    if (write_vlen_attr(f, "keras_version", version, H5T_CSET_UTF8) < 0 ||
        write_vlen_attr(f, "backend", backend, H5T_CSET_UTF8) < 0 ||
        write_vlen_attr(f, "model_config", m->model_config, H5T_CSET_ASCII) < 0 ||
        (m->training_config != NULL &&
         write_vlen_attr(f, "training_config", m->training_config, H5T_CSET_ASCII) < 0)) {
        st = ddts_error_set(err, DDTS_EIO, "%s: /: cannot write the root attributes", path);
        goto done;
    }
    mw = H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    layer_names = ddts_calloc(m->n_layers ? m->n_layers : 1, sizeof *layer_names);
    if (mw < 0 || layer_names == NULL) {
        st = ddts_error_set(err, mw < 0 ? DDTS_EIO : DDTS_ENOMEM,
                            "%s: cannot create /model_weights", path);
        goto done;
    }
    for (size_t i = 0; i < m->n_layers; i++)
        layer_names[i] = m->layers[i].name;
    int rc = write_name_list(mw, "layer_names", layer_names, m->n_layers, 1);
    if (rc == -2) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    if (rc < 0 || write_vlen_attr(mw, "backend", backend, H5T_CSET_ASCII) < 0 ||
        write_vlen_attr(mw, "keras_version", version, H5T_CSET_ASCII) < 0) {
        st = ddts_error_set(err, DDTS_EIO, "%s: /model_weights: cannot write the attributes", path);
        goto done;
    }
    st = write_new_layers(&c, mw, m, 0);
    if (st == DDTS_OK)
        st = take_image(&c, f, &image, &n_image);
done:
    ddts_free(layer_names);
    close_id(mw);
    close_id(f);
    if (st == DDTS_OK)
        st = ddts_write_file_atomic(path, image, n_image, err);
    ddts_free(image);
    return st;
}
