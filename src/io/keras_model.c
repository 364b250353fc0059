/*
 * Keras model files: format detection, ownership and the naming rules shared
 * by the h5 and .keras readers. The file formats themselves live in
 * keras_h5.c (libhdf5) and keras_zip.c (libzip).
 */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ddts/fs.h"
#include "ddts/keras.h"
#include "io/keras_internal.h"
#include "nn/layer.h"

/* HDF5 files begin with this signature (at offset 0 for files Keras writes;
 * a user block would move it to 512, 1024, ...: see detect()). */
static const unsigned char hdf5_magic[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};

static enum ddts_status detect(const char *path, enum ddts_keras_format *fmt,
                               struct ddts_error *err)
{
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot open", path);
    unsigned char head[8] = {0};
    size_t got = fread(head, 1, sizeof head, fp);
    int is_h5 = got == 8 && memcmp(head, hdf5_magic, 8) == 0;
    /* HDF5 also looks for the signature at 512, 1024, 2048, ... (a user block). */
    for (long off = 512; !is_h5 && off <= (1L << 20); off *= 2) {
        if (fseek(fp, off, SEEK_SET) != 0)
            break;
        unsigned char sig[8];
        if (fread(sig, 1, 8, fp) != 8)
            break;
        is_h5 = memcmp(sig, hdf5_magic, 8) == 0;
    }
    fclose(fp);
    if (is_h5) {
        *fmt = DDTS_KERAS_H5;
        return DDTS_OK;
    }
    if (got >= 4 && head[0] == 'P' && head[1] == 'K' && head[2] == 3 && head[3] == 4) {
        *fmt = DDTS_KERAS_ZIP;
        return DDTS_OK;
    }
    return ddts_error_set(err, DDTS_EFORMAT,
                          "%s: neither an HDF5 (.h5) nor a zip (.keras) Keras model file", path);
}

enum ddts_status ddts_keras_read(const char *path, struct ddts_keras_model **out,
                                 struct ddts_error *err)
{
    *out = NULL;
    if (path == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "keras: no file name");
    enum ddts_keras_format fmt = DDTS_KERAS_H5;
    enum ddts_status st = detect(path, &fmt, err);
    if (st != DDTS_OK)
        return st;
    struct ddts_keras_model *m = ddts_calloc(1, sizeof *m);
    if (m == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
    m->format = fmt;
    m->source_path = ddts_strdup(path);
    if (m->source_path == NULL) {
        ddts_keras_destroy(m);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
    }
    if (fmt == DDTS_KERAS_H5)
        st = ddts__keras_h5_read_legacy(path, m, err);
    else
        st = ddts__keras_zip_read(path, m, err);
    /* A layer of a class that always has weights (kernels, moving statistics) but
     * none in the file: a damaged or unbuilt model, refused here rather
     * than trained from zeros. */
    for (size_t i = 0; st == DDTS_OK && i < m->n_layers; i++) {
        const struct ddts_keras_layer *L = &m->layers[i];
        if (L->n_weights == 0 && ddts__keras_class_has_weights(L->class_name))
            st = ddts_error_set(
                err, DDTS_EFORMAT, "%s: layer %s (%s) has no weights in the file (%s)", path,
                L->name, L->class_name,
                fmt == DDTS_KERAS_H5 ? "empty weight_names" : "no layers/<class>/vars group");
    }
    if (st != DDTS_OK) {
        ddts_keras_destroy(m);
        return st;
    }
    *out = m;
    return DDTS_OK;
}

void ddts__keras_weights_free(struct ddts_keras_weight *w, size_t n)
{
    if (w == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        ddts_free(w[i].name);
        ddts_free(w[i].short_name);
        ddts_free(w[i].layer_name);
        ddts_free(w[i].h5_path);
        ddts_free(w[i].data);
    }
    ddts_free(w);
}

void ddts_keras_destroy(struct ddts_keras_model *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; m->layers != NULL && i < m->n_layers; i++) {
        ddts_free(m->layers[i].name);
        ddts_free(m->layers[i].class_name);
        ddts__keras_weights_free(m->layers[i].weights, m->layers[i].n_weights);
    }
    ddts_free(m->layers);
    ddts__keras_weights_free(m->optimizer_weights, m->n_optimizer_weights);
    ddts_free(m->source_path);
    ddts_free(m->keras_version);
    ddts_free(m->backend);
    ddts_free(m->model_config);
    ddts_free(m->training_config);
    ddts_free(m->metadata_json);
    ddts_free(m);
}

enum ddts_status ddts_keras_write(const struct ddts_keras_model *m, const char *path,
                                  struct ddts_error *err)
{
    if (m == NULL || path == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "keras: no model or no file name");
    if (m->source_path == NULL)
        return ddts_error_set(err, DDTS_EINVAL,
                              "%s: the model has no source file to rewrite (use "
                              "ddts_keras_write_new)",
                              path);
    if (m->format == DDTS_KERAS_ZIP)
        return ddts__keras_zip_write(m, path, err);
    if (m->format != DDTS_KERAS_H5)
        return ddts_error_set(err, DDTS_EINVAL, "%s: unknown model format %d", path,
                              (int)m->format);
    char *image = NULL;
    size_t n = 0;
    enum ddts_status st =
        ddts_read_file(m->source_path, (size_t)DDTS_MAX_KERAS_FILE_BYTES, &image, &n, err);
    if (st != DDTS_OK)
        return st;
    void *updated = NULL;
    size_t n_updated = 0;
    st = ddts__keras_h5_update_image(image, n, m->source_path, m, &updated, &n_updated, err);
    ddts_free(image);
    if (st != DDTS_OK)
        return st;
    st = ddts_write_file_atomic(path, updated, n_updated, err);
    ddts_free(updated);
    return st;
}

struct ddts_keras_layer *ddts_keras_layer_find(const struct ddts_keras_model *m, const char *name)
{
    if (m == NULL || name == NULL)
        return NULL;
    for (size_t i = 0; i < m->n_layers; i++)
        if (m->layers[i].name != NULL && strcmp(m->layers[i].name, name) == 0)
            return &m->layers[i];
    return NULL;
}

struct ddts_keras_weight *ddts_keras_weight_find(const struct ddts_keras_layer *layer,
                                                 const char *short_name)
{
    if (layer == NULL || short_name == NULL)
        return NULL;
    for (size_t i = 0; i < layer->n_weights; i++)
        if (layer->weights[i].short_name != NULL &&
            strcmp(layer->weights[i].short_name, short_name) == 0)
            return &layer->weights[i];
    return NULL;
}

size_t ddts_keras_param_count(const struct ddts_keras_model *m)
{
    size_t total = 0;
    if (m == NULL)
        return 0;
    for (size_t i = 0; i < m->n_layers; i++)
        for (size_t j = 0; j < m->layers[i].n_weights; j++)
            total += m->layers[i].weights[j].count;
    return total;
}

/*
 * Keras 3 keras/src/utils/naming.py:
 *   name = re.sub(r"\W+", "", name)
 *   name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
 *   name = re.sub("([a-z])([A-Z])", r"\1_\2", name)
 *   return name.lower()
 * Each step below is that regular expression, scanned left to right with
 * non-overlapping matches as Python's re.sub does.
 */
char *ddts__keras_snake_case(const char *class_name)
{
    size_t n = strlen(class_name);
    size_t cap;
    if (ddts_size_mul(n, 3, &cap) != 0 || ddts_size_add(cap, 1, &cap) != 0)
        return NULL;
    char *a = ddts_malloc(cap), *b = ddts_malloc(cap);
    if (a == NULL || b == NULL) {
        ddts_free(a);
        ddts_free(b);
        return NULL;
    }
    size_t na = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)class_name[i];
        if (isalnum(ch) || ch == '_' || ch >= 0x80)
            a[na++] = (char)ch;
    }
    /* (.)([A-Z][a-z]+) -> \1_\2 */
    size_t nb = 0;
    for (size_t i = 0; i < na;) {
        if (i + 2 < na && a[i] != '\n' && isupper((unsigned char)a[i + 1]) &&
            islower((unsigned char)a[i + 2])) {
            b[nb++] = a[i];
            b[nb++] = '_';
            b[nb++] = a[i + 1];
            size_t j = i + 2;
            while (j < na && islower((unsigned char)a[j]))
                b[nb++] = a[j++];
            i = j;
        } else {
            b[nb++] = a[i++];
        }
    }
    /* ([a-z])([A-Z]) -> \1_\2, then lower case */
    na = 0;
    for (size_t i = 0; i < nb;) {
        if (i + 1 < nb && islower((unsigned char)b[i]) && isupper((unsigned char)b[i + 1])) {
            a[na++] = b[i];
            a[na++] = '_';
            a[na++] = b[i + 1];
            i += 2;
        } else {
            a[na++] = b[i++];
        }
    }
    for (size_t i = 0; i < na; i++)
        a[i] = (char)tolower((unsigned char)a[i]);
    a[na] = '\0';
    ddts_free(b);
    return a;
}

int ddts__keras_class_has_weights(const char *class_name)
{
    return ddts__nn_layer_always_weighted(class_name);
}

size_t ddts__keras_sub_rank(const char *class_name, const char *sub)
{
    return ddts__nn_layer_sub_rank(class_name, sub);
}

char *ddts__keras_short_name(const struct ddts_keras_config_layer *cl, size_t index)
{
    /* The layer's family knows its weights in Keras 3's variable order
     * (src/nn/layer_*.c); "var<i>" for a class no family knows. */
    const char *s = NULL;
    if (cl != NULL && cl->class_name != NULL) {
        struct nn_weight_flags f = {cl->use_bias, cl->center, cl->scale};
        s = ddts__nn_layer_weight_name(cl->class_name, &f, index);
    }
    if (s != NULL)
        return ddts_strdup(s);
    char buf[32];
    snprintf(buf, sizeof buf, "var%zu", index);
    return ddts_strdup(buf);
}

enum ddts_status ddts__keras_split_weight_name(const char *name, char **short_name,
                                               char **layer_name)
{
    *short_name = NULL;
    *layer_name = NULL;
    const char *slash = strrchr(name, '/');
    const char *last = slash ? slash + 1 : name;
    size_t n_last = strlen(last);
    /* "kernel:0" -> "kernel": TF variable names end in ":<output index>". */
    const char *colon = strrchr(last, ':');
    if (colon != NULL && colon[1] != '\0' && strspn(colon + 1, "0123456789") == strlen(colon + 1))
        n_last = (size_t)(colon - last);
    const char *owner = name;
    size_t n_owner = 0;
    if (slash != NULL) {
        const char *prev = slash;
        while (prev > name && prev[-1] != '/')
            prev--;
        owner = prev;
        n_owner = (size_t)(slash - prev);
    }
    *short_name = ddts_strndup(last, n_last);
    *layer_name = ddts_strndup(owner, n_owner);
    if (*short_name == NULL || *layer_name == NULL) {
        ddts_free(*short_name);
        ddts_free(*layer_name);
        *short_name = NULL;
        *layer_name = NULL;
        return DDTS_ENOMEM;
    }
    return DDTS_OK;
}
