/*
 * libFuzzer target: the Keras HDF5 readers (keras_h5.c) and the in-place
 * writer, on hostile files.
 *
 * By default the input is a recipe: its bytes drive the HDF5 API to build a
 * Keras-shaped file that is wrong in chosen ways (missing groups, names
 * that point nowhere, string attributes of every kind or not strings at
 * all, layer_names split into chunks, datasets with huge or unwritten
 * shapes, ranks up to 10, non-numeric dtypes), then the legacy reader or
 * the .keras weights reader reads the image, and a successful read is
 * written back in memory. This exercises our handling of hostile structure
 * without fuzzing libhdf5's own byte parser.
 *
 * With DDTS_FUZZ_H5_RAW=1 in the environment the input is instead written
 * to a temporary file and read with ddts_keras_read, as raw bytes. That
 * mostly fuzzes libhdf5 itself (whose parser has known crashes on corrupt
 * files that ddts cannot fix), so it is not part of `make check`.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hdf5.h>

#include "ddts/keras.h"
#include "ddts/trainer.h"
#include "io/keras_internal.h"

struct recipe {
    const uint8_t *p;
    size_t n;
};

static unsigned take(struct recipe *r, unsigned bound)
{
    if (r->n == 0 || bound == 0)
        return 0;
    unsigned v = r->p[0];
    r->p++;
    r->n--;
    return v % bound;
}

static const char *const names[] = {"dense", "dense_1", "dropout",        "sequential", "a/b",   "",
                                    ".",     "x:0",     "dense/kernel:0", "vars",       "layers"};
#define N_NAMES (sizeof names / sizeof names[0])

static const char *const configs[] = {
    "{\"class_name\":\"Sequential\",\"config\":{\"name\":\"s\",\"layers\":["
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"dense\"}},"
    "{\"class_name\":\"Dropout\",\"config\":{\"name\":\"dropout\"}},"
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"dense_1\",\"use_bias\":false}}]}}",
    "{\"class_name\":\"Functional\",\"config\":{\"layers\":["
    "{\"class_name\":\"Sequential\",\"name\":\"sequential\",\"config\":{\"layers\":["
    "{\"class_name\":\"Dense\",\"config\":{\"name\":\"dense\"}}]}},"
    "{\"class_name\":\"Dense\",\"name\":\"dense_1\",\"config\":{}}]}}",
    "{\"class_name\":\"Sequential\",\"config\":[]}",
    "not json",
};

/* A string attribute of a chosen kind: vlen UTF-8 / ASCII, fixed NUL-padded,
 * fixed space-padded, a number, an empty float64 array, a 2-d array. */
static void put_strings(struct recipe *r, hid_t obj, const char *key, const char *const *v,
                        size_t n)
{
    unsigned kind = take(r, 7);
    hsize_t dim = n;
    hid_t s = n == 1 && take(r, 2) ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &dim, NULL);
    hid_t t = -1;
    if (kind <= 1) {
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        H5Tset_cset(t, kind ? H5T_CSET_UTF8 : H5T_CSET_ASCII);
        hid_t a = H5Acreate2(obj, key, t, s, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            H5Awrite(a, t, v);
            H5Aclose(a);
        }
    } else if (kind <= 3) {
        size_t item = 1 + take(r, 24);
        char *buf = calloc(n ? n : 1, item);
        for (size_t i = 0; i < n; i++)
            memcpy(buf + i * item, v[i], strnlen(v[i], item));
        if (kind == 3)
            for (size_t i = 0; i < n * item; i++)
                if (buf[i] == 0)
                    buf[i] = ' ';
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, item);
        H5Tset_strpad(t, kind == 3 ? H5T_STR_SPACEPAD : H5T_STR_NULLPAD);
        hid_t a = H5Acreate2(obj, key, t, s, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            H5Awrite(a, t, buf);
            H5Aclose(a);
        }
        free(buf);
    } else if (kind == 4) {
        double x[64] = {0};
        hid_t a = H5Acreate2(obj, key, H5T_IEEE_F64LE, s, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0 && n <= 64) {
            H5Awrite(a, H5T_NATIVE_DOUBLE, x);
        }
        if (a >= 0)
            H5Aclose(a);
    } else if (kind == 5) {
        hsize_t zero = 0;
        hid_t z = H5Screate_simple(1, &zero, NULL);
        hid_t a = H5Acreate2(obj, key, H5T_IEEE_F64LE, z, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0)
            H5Aclose(a);
        H5Sclose(z);
    } else {
        hsize_t d2[2] = {1, n};
        hid_t s2 = H5Screate_simple(2, d2, NULL);
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, H5T_VARIABLE);
        hid_t a = H5Acreate2(obj, key, t, s2, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            H5Awrite(a, t, v);
            H5Aclose(a);
        }
        H5Sclose(s2);
    }
    if (t >= 0)
        H5Tclose(t);
    H5Sclose(s);
}

/* A list attribute, sometimes split into key0, key1, ... */
static void put_list(struct recipe *r, hid_t obj, const char *key, const char *const *v, size_t n)
{
    if (n >= 2 && take(r, 4) == 0) {
        char k0[64], k1[64];
        snprintf(k0, sizeof k0, "%s0", key);
        snprintf(k1, sizeof k1, "%s%u", key, 1 + take(r, 2));
        put_strings(r, obj, k0, v, n / 2);
        put_strings(r, obj, k1, v + n / 2, n - n / 2);
    } else {
        put_strings(r, obj, key, v, n);
    }
}

static void put_dataset(struct recipe *r, hid_t loc, const char *path)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    int rank = (int)take(r, 11);
    hsize_t dims[10];
    hsize_t count = 1;
    for (int i = 0; i < rank; i++) {
        unsigned k = take(r, 8);
        dims[i] = k < 6 ? k : (k == 6 ? 1u << 20 : (hsize_t)1 << 40);
        count *= dims[i] ? dims[i] : 1;
        if (count > ((hsize_t)1 << 50))
            dims[i] = 1;
    }
    unsigned ti = take(r, 5);
    hid_t t = H5Tcopy(ti == 0   ? H5T_IEEE_F32LE
                      : ti == 1 ? H5T_IEEE_F64LE
                      : ti == 2 ? H5T_STD_I64LE
                      : ti == 3 ? H5T_STD_U8LE
                                : H5T_C_S1);
    if (ti == 4)
        H5Tset_size(t, 3);
    hid_t s = rank == 0 ? H5Screate(take(r, 4) ? H5S_SCALAR : H5S_NULL)
                        : H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (rank > 0 && take(r, 4) == 0) {
        hsize_t chunk[10];
        for (int i = 0; i < rank; i++)
            chunk[i] = 1;
        H5Pset_chunk(dcpl, rank, chunk);
    }
    hid_t d = H5Dcreate2(loc, path, t, s, lcpl, dcpl, H5P_DEFAULT);
    if (d >= 0) {
        hssize_t npts = H5Sget_simple_extent_npoints(s);
        /* Write small datasets (so that a well-formed one reads back). */
        if (npts > 0 && npts <= 4096 && ti != 4 && take(r, 8) != 0) {
            double *v = calloc((size_t)npts, sizeof *v);
            for (hssize_t i = 0; i < npts; i++)
                v[i] = (double)take(r, 256) - 128.0;
            H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
            free(v);
        }
        H5Dclose(d);
    }
    H5Pclose(dcpl);
    H5Sclose(s);
    H5Tclose(t);
    H5Pclose(lcpl);
}

static void build_legacy(struct recipe *r, hid_t f)
{
    if (take(r, 8) != 0) {
        const char *cfg = configs[take(r, 4)];
        put_strings(r, f, "model_config", &cfg, 1);
    }
    const char *ver = "2.15.0";
    put_strings(r, f, "keras_version", &ver, 1);
    if (take(r, 8) == 0)
        return; /* no model_weights */
    hid_t mw = H5Gcreate2(f, "model_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    size_t n_layers = take(r, 5);
    const char *layers[4];
    for (size_t i = 0; i < n_layers; i++)
        layers[i] = names[take(r, N_NAMES)];
    if (take(r, 8) != 0)
        put_list(r, mw, "layer_names", layers, n_layers);
    for (size_t i = 0; i < n_layers; i++) {
        if (take(r, 8) == 0 || layers[i][0] == '\0' || strcmp(layers[i], ".") == 0)
            continue; /* missing layer group */
        hid_t g = H5Lexists(mw, layers[i], H5P_DEFAULT) > 0
                      ? H5Gopen2(mw, layers[i], H5P_DEFAULT)
                      : H5Gcreate2(mw, layers[i], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0)
            continue;
        size_t nw = take(r, 4);
        const char *w[3];
        for (size_t j = 0; j < nw; j++)
            w[j] = names[take(r, N_NAMES)];
        if (take(r, 8) != 0 && H5Aexists(g, "weight_names") == 0)
            put_list(r, g, "weight_names", w, nw);
        for (size_t j = 0; j < nw; j++)
            if (take(r, 8) != 0 && w[j][0] != '\0' && strcmp(w[j], ".") != 0 &&
                H5Lexists(g, w[j], H5P_DEFAULT) <= 0)
                put_dataset(r, g, w[j]);
        H5Gclose(g);
    }
    if (take(r, 4) == 0) {
        hid_t o = H5Gcreate2(f, "optimizer_weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        const char *ow[] = {"Adam/iter:0"};
        put_list(r, o, "weight_names", ow, 1);
        if (take(r, 2))
            put_dataset(r, o, ow[0]);
        H5Gclose(o);
    }
    H5Gclose(mw);
}

static void build_zip_weights(struct recipe *r, hid_t f)
{
    static const char *const paths[] = {"layers/dense/vars/0",
                                        "layers/dense/vars/1",
                                        "layers/dense_1/vars/0",
                                        "layers/dropout/vars",
                                        "layers/sequential/layers/dense/vars/0",
                                        "layers/sequential/vars/0",
                                        "layers/dense/cell/vars/0",
                                        "optimizer/vars/0",
                                        "layers/dense/vars/5"};
    size_t n = take(r, 8);
    for (size_t i = 0; i < n; i++) {
        const char *p = paths[take(r, sizeof paths / sizeof paths[0])];
        if (H5Lexists(f, "layers", H5P_DEFAULT) > 0 && H5Lexists(f, p, H5P_DEFAULT) > 0)
            continue;
        if (strcmp(p, "layers/dropout/vars") == 0) {
            hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
            H5Pset_create_intermediate_group(lcpl, 1);
            hid_t g = H5Gcreate2(f, p, lcpl, H5P_DEFAULT, H5P_DEFAULT);
            if (g >= 0)
                H5Gclose(g);
            H5Pclose(lcpl);
        } else {
            put_dataset(r, f, p);
        }
    }
}

static void read_and_write(const void *img, size_t n, int zip, const struct ddts_keras_config *cfg)
{
    struct ddts_keras_model *m = ddts_calloc(1, sizeof *m);
    if (m == NULL)
        return;
    struct ddts_error err;
    enum ddts_status st;
    if (zip)
        st = ddts__keras_h5_read_zip_weights(img, n, "fuzz", cfg, m, &err);
    else
        st = ddts__keras_h5_read_legacy_image(img, n, "fuzz", m, &err);
    if (st == DDTS_OK) {
        for (size_t i = 0; i < m->n_layers; i++)
            for (size_t j = 0; j < m->layers[i].n_weights; j++) {
                struct ddts_keras_weight *w = &m->layers[i].weights[j];
                for (size_t k = 0; k < w->count; k++)
                    w->data[k] += 1.0f;
            }
        void *out = NULL;
        size_t n_out = 0;
        if (ddts__keras_h5_update_image(img, n, "fuzz", m, &out, &n_out, &err) == DDTS_OK)
            ddts_free(out);
        /* The normalizer's surgery on the file's configuration (src/train/surgery.c). */
        if (m->model_config != NULL) {
            int64_t shape[1] = {4};
            char *json = NULL, *name = NULL;
            if (ddts_surgery_insert_normalization(m->model_config, 1, shape, &json, &name, &err) ==
                DDTS_OK) {
                ddts_free(json);
                ddts_free(name);
            }
        }
    } else if (err.msg[0] == '\0') {
        __builtin_trap(); /* every failure explains itself */
    }
    ddts_keras_destroy(m);
}

static int raw_mode(const uint8_t *data, size_t size)
{
    char path[] = "/tmp/fuzz_keras_h5.XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0)
        return 0;
    FILE *fp = fdopen(fd, "wb");
    fwrite(data, 1, size, fp);
    fclose(fp);
    struct ddts_keras_model *m = NULL;
    struct ddts_error err;
    if (ddts_keras_read(path, &m, &err) == DDTS_OK)
        ddts_keras_destroy(m);
    unlink(path);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int raw = -1;
    if (raw < 0) {
        const char *e = getenv("DDTS_FUZZ_H5_RAW");
        raw = e != NULL && e[0] == '1';
    }
    if (raw)
        return raw_mode(data, size);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    struct recipe r = {data, size};
    int zip = (int)take(&r, 2);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_core(fapl, 1 << 16, 0);
    hid_t f = H5Fcreate("fuzz-recipe", H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return 0;
    struct ddts_keras_config *cfg = NULL;
    if (zip) {
        const char *c = configs[take(&r, 2)];
        if (ddts_keras_config_parse(c, strlen(c), &cfg, NULL) != DDTS_OK) {
            H5Fclose(f);
            return 0;
        }
        build_zip_weights(&r, f);
    } else {
        build_legacy(&r, f);
    }
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    ssize_t n = H5Fget_file_image(f, NULL, 0);
    void *img = n > 0 ? malloc((size_t)n) : NULL;
    if (img != NULL && H5Fget_file_image(f, img, (size_t)n) == n)
        read_and_write(img, (size_t)n, zip, cfg);
    free(img);
    H5Fclose(f);
    ddts_keras_config_destroy(cfg);
    return 0;
}
