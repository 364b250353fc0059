/*
 * Keras 3 `.keras` files: a zip holding config.json (the model
 * configuration), metadata.json ({"keras_version", "date_saved"}) and
 * model.weights.h5 (the weights, read by keras_h5.c), plus optional assets.
 * The only user of libzip in ddts. Layout and sources: docs/file-formats.md.
 *
 * Writing copies every member of the source zip in its order, with its
 * compression method and time, and replaces model.weights.h5 by the updated
 * one; the new zip is built in memory and written atomically.
 */
#include <string.h>

#include <zip.h>

#include "ddts/fs.h"
#include "ddts/keras.h"
#include "io/keras_internal.h"

#define WEIGHTS_MEMBER "model.weights.h5"

static enum ddts_status open_zip(const char *path, zip_t **out, struct ddts_error *err)
{
    int code = 0;
    zip_t *za = zip_open(path, ZIP_RDONLY, &code);
    if (za == NULL) {
        zip_error_t ze;
        zip_error_init_with_code(&ze, code);
        enum ddts_status st = ddts_error_set(err, code == ZIP_ER_OPEN ? DDTS_EIO : DDTS_EFORMAT,
                                             "%s: not a readable zip (.keras) file: %s", path,
                                             zip_error_strerror(&ze));
        zip_error_fini(&ze);
        return st;
    }
    zip_int64_t n = zip_get_num_entries(za, 0);
    if (n < 0 || n > DDTS_MAX_ZIP_MEMBERS) {
        zip_discard(za);
        return ddts_error_set(err, DDTS_ELIMIT, "%s: %lld zip members (max %d)", path, (long long)n,
                              DDTS_MAX_ZIP_MEMBERS);
    }
    *out = za;
    return DDTS_OK;
}

/* Reads member `name` whole (up to `max` bytes, ratio-checked) with a NUL
 * after it. *found is 0 when there is no such member. */
static enum ddts_status read_member(zip_t *za, const char *path, const char *name, size_t max,
                                    char **out, size_t *n_out, int *found, struct ddts_error *err)
{
    *out = NULL;
    *n_out = 0;
    *found = 0;
    zip_int64_t idx = zip_name_locate(za, name, 0);
    if (idx < 0)
        return DDTS_OK;
    *found = 1;
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_stat_index(za, (zip_uint64_t)idx, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE))
        return ddts_error_set(err, DDTS_EFORMAT, "%s: %s: bad zip entry", path, name);
    if (zs.size > max)
        return ddts_error_set(err, DDTS_ELIMIT, "%s: %s: %llu bytes (max %zu)", path, name,
                              (unsigned long long)zs.size, max);
    if ((zs.valid & ZIP_STAT_COMP_SIZE) && zs.comp_size > 0 &&
        zs.size / zs.comp_size > DDTS_MAX_ZIP_RATIO)
        return ddts_error_set(err, DDTS_ELIMIT,
                              "%s: %s: compressed %llu to 1 (max %d): a zip bomb?", path, name,
                              (unsigned long long)(zs.size / zs.comp_size), DDTS_MAX_ZIP_RATIO);
    size_t n = (size_t)zs.size;
    char *buf = ddts_malloc(n + 1);
    if (buf == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: %s: out of memory", path, name);
    zip_file_t *zf = zip_fopen_index(za, (zip_uint64_t)idx, 0);
    if (zf == NULL) {
        ddts_free(buf);
        return ddts_error_set(err, DDTS_EFORMAT, "%s: %s: cannot open the zip entry: %s", path,
                              name, zip_strerror(za));
    }
    size_t got = 0;
    while (got < n) {
        zip_int64_t r = zip_fread(zf, buf + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    /* One more byte must not be there: the entry is exactly its stated size. */
    char extra;
    zip_int64_t more = got == n ? zip_fread(zf, &extra, 1) : 0;
    zip_fclose(zf);
    if (got != n || more != 0) {
        ddts_free(buf);
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: %s: the zip entry does not hold its stated %zu bytes (bad "
                              "data or checksum)",
                              path, name, n);
    }
    buf[n] = '\0';
    *out = buf;
    *n_out = n;
    return DDTS_OK;
}

static enum ddts_status require_member(zip_t *za, const char *path, const char *name, size_t max,
                                       char **out, size_t *n_out, struct ddts_error *err)
{
    int found;
    enum ddts_status st = read_member(za, path, name, max, out, n_out, &found, err);
    if (st == DDTS_OK && !found)
        st = ddts_error_set(err, DDTS_EFORMAT, "%s: no member %s: not a Keras 3 .keras file", path,
                            name);
    return st;
}

enum ddts_status ddts__keras_zip_read(const char *path, struct ddts_keras_model *m,
                                      struct ddts_error *err)
{
    zip_t *za = NULL;
    enum ddts_status st = open_zip(path, &za, err);
    if (st != DDTS_OK)
        return st;
    char *config = NULL, *weights = NULL, *meta = NULL;
    size_t n_config = 0, n_weights = 0, n_meta = 0;
    struct ddts_keras_config *cfg = NULL;
    st = require_member(za, path, "config.json", DDTS_MAX_CONFIG_BYTES, &config, &n_config, err);
    if (st != DDTS_OK)
        goto done;
    if (strlen(config) != n_config) {
        st = ddts_error_set(err, DDTS_EFORMAT, "%s: config.json holds a NUL byte", path);
        goto done;
    }
    int found = 0;
    st = read_member(za, path, "metadata.json", DDTS_MAX_CONFIG_BYTES, &meta, &n_meta, &found, err);
    if (st != DDTS_OK)
        goto done;
    if (meta != NULL) {
        st = ddts__keras_json_string(meta, n_meta, "keras_version", &m->keras_version, err);
        if (st != DDTS_OK) {
            ddts_error_prefix(err, "%s: metadata.json: ", path);
            goto done;
        }
        if (strlen(meta) == n_meta) {
            m->metadata_json = meta;
            meta = NULL;
        }
    }
    st = ddts_keras_config_parse(config, n_config, &cfg, err);
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "%s: config.json: ", path);
        goto done;
    }
    m->model_config = config;
    config = NULL;
    if (m->training_config == NULL) {
        st = ddts__keras_compile_config(m->model_config, &m->training_config, err);
        if (st != DDTS_OK)
            goto done;
    }
    st = require_member(za, path, WEIGHTS_MEMBER, (size_t)DDTS_MAX_KERAS_FILE_BYTES, &weights,
                        &n_weights, err);
    if (st != DDTS_OK)
        goto done;
    char label[512];
    snprintf(label, sizeof label, "%s: %s", path, WEIGHTS_MEMBER);
    st = ddts__keras_h5_read_zip_weights(weights, n_weights, label, cfg, m, err);
done:
    ddts_keras_config_destroy(cfg);
    ddts_free(config);
    ddts_free(weights);
    ddts_free(meta);
    zip_discard(za);
    return st;
}

/* Copies the bytes of a finished in-memory archive out of its source. */
static enum ddts_status source_bytes(zip_source_t *src, const char *path, void **out, size_t *n_out,
                                     struct ddts_error *err)
{
    zip_stat_t zs;
    zip_stat_init(&zs);
    if (zip_source_stat(src, &zs) != 0 || !(zs.valid & ZIP_STAT_SIZE) || zip_source_open(src) != 0)
        return ddts_error_set(err, DDTS_EIO, "%s: cannot read back the new zip", path);
    size_t n = (size_t)zs.size;
    char *buf = ddts_malloc(n ? n : 1);
    size_t got = 0;
    while (buf != NULL && got < n) {
        zip_int64_t r = zip_source_read(src, buf + got, n - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    zip_source_close(src);
    if (buf == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
    if (got != n) {
        ddts_free(buf);
        return ddts_error_set(err, DDTS_EIO, "%s: cannot read back the new zip", path);
    }
    *out = buf;
    *n_out = n;
    return DDTS_OK;
}

enum ddts_status ddts__keras_zip_write(const struct ddts_keras_model *m, const char *path,
                                       struct ddts_error *err)
{
    zip_t *za = NULL, *zo = NULL;
    zip_source_t *out_src = NULL;
    char *weights = NULL;
    void *updated = NULL, *bytes = NULL;
    size_t n_weights = 0, n_updated = 0, n_bytes = 0;
    /* Weights of layers added since reading have no place in the file yet. */
    for (size_t i = 0; i < m->n_layers; i++)
        for (size_t j = 0; j < m->layers[i].n_weights; j++)
            if (m->layers[i].weights[j].h5_path == NULL)
                return ddts_error_set(err, DDTS_EUNSUPPORTED,
                                      "%s: layer %s: a new layer with weights cannot be added to "
                                      "a .keras file (write it with ddts_keras_write_new)",
                                      path, m->layers[i].name);
    enum ddts_status st = open_zip(m->source_path, &za, err);
    if (st != DDTS_OK)
        return st;
    st = require_member(za, m->source_path, WEIGHTS_MEMBER, (size_t)DDTS_MAX_KERAS_FILE_BYTES,
                        &weights, &n_weights, err);
    if (st != DDTS_OK)
        goto done;
    char label[512];
    snprintf(label, sizeof label, "%s: %s", m->source_path, WEIGHTS_MEMBER);
    st = ddts__keras_h5_update_image(weights, n_weights, label, m, &updated, &n_updated, err);
    if (st != DDTS_OK)
        goto done;

    zip_error_t ze;
    zip_error_init(&ze);
    out_src = zip_source_buffer_create(NULL, 0, 0, &ze);
    if (out_src != NULL) {
        zip_source_keep(out_src);
        zo = zip_open_from_source(out_src, ZIP_TRUNCATE, &ze);
    }
    zip_error_fini(&ze);
    if (zo == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: cannot create a zip in memory", path);
        goto done;
    }
    zip_int64_t n = zip_get_num_entries(za, 0);
    for (zip_int64_t i = 0; i < n; i++) {
        zip_stat_t zs;
        zip_stat_init(&zs);
        if (zip_stat_index(za, (zip_uint64_t)i, 0, &zs) != 0 || !(zs.valid & ZIP_STAT_NAME)) {
            st = ddts_error_set(err, DDTS_EFORMAT, "%s: zip entry %lld is unreadable",
                                m->source_path, (long long)i);
            goto done;
        }
        zip_source_t *src;
        if (strcmp(zs.name, WEIGHTS_MEMBER) == 0)
            src = zip_source_buffer(zo, updated, n_updated, 0);
        else if (strcmp(zs.name, "config.json") == 0 && m->model_config != NULL)
            /* As read (byte for byte) unless the model changed shape. */
            src = zip_source_buffer(zo, m->model_config, strlen(m->model_config), 0);
        else
            src = zip_source_zip(zo, za, (zip_uint64_t)i, 0, 0, -1);
        zip_int64_t at = src == NULL ? -1 : zip_file_add(zo, zs.name, src, 0);
        if (at < 0) {
            zip_source_free(src);
            st = ddts_error_set(err, DDTS_EIO, "%s: cannot copy zip entry %s: %s", path, zs.name,
                                zip_strerror(zo));
            goto done;
        }
        zip_int32_t method =
            (zs.valid & ZIP_STAT_COMP_METHOD) ? (zip_int32_t)zs.comp_method : ZIP_CM_STORE;
        if (zip_set_file_compression(zo, (zip_uint64_t)at, method, 0) != 0)
            zip_set_file_compression(zo, (zip_uint64_t)at, ZIP_CM_DEFLATE, 0);
        if (zs.valid & ZIP_STAT_MTIME)
            zip_file_set_mtime(zo, (zip_uint64_t)at, zs.mtime, 0);
    }
    if (zip_close(zo) != 0) {
        st = ddts_error_set(err, DDTS_EIO, "%s: cannot finish the zip: %s", path, zip_strerror(zo));
        zip_discard(zo);
        zo = NULL;
        goto done;
    }
    zo = NULL;
    st = source_bytes(out_src, path, &bytes, &n_bytes, err);
    if (st == DDTS_OK)
        st = ddts_write_file_atomic(path, bytes, n_bytes, err);
done:
    if (zo != NULL)
        zip_discard(zo);
    zip_source_free(out_src);
    zip_discard(za);
    ddts_free(weights);
    ddts_free(updated);
    ddts_free(bytes);
    return st;
}
