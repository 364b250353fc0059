/*
 * Checks before serving: the job's model loads and compiles with the job's
 * settings, the samples fit its input (after the documented reshape), and
 * the labels fit its loss and outputs, so that a job that cannot train is
 * refused at start, naming the file, the layer or the sample, instead of
 * failing on every client after the data was split and sent.
 */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ddts/data.h"
#include "ddts/keras.h"
#include "ddts/nn.h"
#include "ddts/trainer.h"
#include "serve.h"

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * Where sample `i` of DIR/Y comes from: the files of the folder in the order
 * ddts_data_load_dir concatenates them (strcmp order of names, known formats
 * only), each one's sample count read again. Only called to word an error.
 */
static void locate_sample(const char *dir, size_t i, char *file, size_t file_cap, size_t *row)
{
    snprintf(file, file_cap, "%s", dir);
    *row = i;
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    char **names = ddts_calloc(4096, sizeof *names);
    size_t n = 0;
    struct dirent *e;
    while (names != NULL && n < 4096 && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' && ddts_data_format_of(e->d_name) != DDTS_FORMAT_UNKNOWN)
            names[n++] = ddts_strdup(e->d_name);
    }
    closedir(d);
    if (names == NULL)
        return;
    for (size_t k = 0; k < n; k++)
        if (names[k] == NULL)
            goto out;
    qsort(names, n, sizeof *names, cmp_name);
    size_t base = 0;
    for (size_t k = 0; k < n; k++) {
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", dir, names[k]);
        struct ddts_array *a = NULL;
        if (ddts_data_load(path, NULL, &a, NULL) != DDTS_OK)
            break;
        size_t rows = a->rank > 0 ? (size_t)a->shape[0] : 1;
        ddts_array_destroy(a);
        if (i < base + rows) {
            snprintf(file, file_cap, "%s", path);
            *row = i - base;
            break;
        }
        base += rows;
    }
out:
    for (size_t k = 0; k < n; k++)
        ddts_free(names[k]);
    ddts_free(names);
}

/* Sparse categorical labels must be class indices of the model's outputs. */
static enum ddts_status check_labels(const struct ddts_serve *sv, struct ddts_model *m,
                                     struct ddts_error *err)
{
    const struct ddts_array *y = sv->y;
    if (y == NULL || sv->job.order == DDTS_JOB_ORDER_XX ||
        strcmp(ddts_model_loss_name(m), "sparse_categorical_crossentropy") != 0)
        return DDTS_OK;
    int64_t shape[DDTS_MAX_RANK];
    int rank = ddts_model_output_shape(m, shape);
    double k = rank > 0 ? (double)shape[rank - 1] : 0;
    size_t n = y->rank > 0 ? (size_t)y->shape[0] : 0, per = ddts_array_sample_count(y);
    for (size_t i = 0; i < n * per; i++) {
        float v;
        ddts_array_to_f32(y, i, 1, &v);
        if (v >= 0 && (double)v < k && v == floorf(v))
            continue;
        size_t sample = i / (per ? per : 1), row = sample;
        char where[4400];
        if (sv->job.data == DDTS_JOB_DATA_KERAS) {
            snprintf(where, sizeof where, "Keras dataset %s", sv->job.keras_dataset);
        } else {
            char ydir[4200];
            snprintf(ydir, sizeof ydir, "%s/Y", sv->job.dataset);
            locate_sample(ydir, sample, where, sizeof where, &row);
        }
        return ddts_error_set(err, DDTS_EINVAL,
                              "%s, sample %zu (0-based): label %g is not a class index of the "
                              "model's %g outputs [0, %g) (loss %s, model %s)",
                              where, row, (double)v, k, k, ddts_model_loss_name(m), sv->model_path);
    }
    return DDTS_OK;
}

/* The samples fit the model's input; a few of them go through it with their targets. */
static enum ddts_status check_data(const struct ddts_serve *sv, struct ddts_model *m,
                                   struct ddts_error *err)
{
    const struct ddts_array *x = sv->x;
    size_t in_size = ddts_model_input_size(m);
    if (sv->job.data == DDTS_JOB_DATA_SERVER) { /* one folder per input: X/, X2/, ... */
        char what[4200];
        enum ddts_status st =
            ddts_format(what, sizeof what, err, "%s (X/, X2/, ...)", sv->job.dataset);
        if (st == DDTS_OK)
            st = ddts_model_check_n_inputs(m, ddts_data_n_inputs(sv->job.dataset), what, err);
        if (st != DDTS_OK) {
            ddts_error_prefix(err, "%s: ", sv->model_path);
            return st;
        }
    } else if (sv->job.data == DDTS_JOB_DATA_KERAS && ddts_model_n_inputs(m) != 1) {
        return ddts_model_check_n_inputs(m, 1, sv->job.keras_dataset, err);
    }
    if (ddts_array_sample_count(x) != in_size) {
        int64_t shape[DDTS_MAX_RANK];
        int rank = ddts_model_input_shape(m, shape);
        char a[128], b[128];
        struct ddts_array tmp = {.rank = rank};
        memcpy(tmp.shape, shape, sizeof(int64_t) * (size_t)rank);
        ddts_array_shape_str(x, a, sizeof a);
        ddts_array_shape_str(&tmp, b, sizeof b);
        return ddts_error_set(
            err, DDTS_ESHAPE,
            "%s: the samples of %s%s have shape %s (%zu values each); the "
            "model's input is %s (%zu values)",
            sv->model_path, sv->job.data == DDTS_JOB_DATA_KERAS ? "Keras dataset " : "",
            sv->job.data == DDTS_JOB_DATA_KERAS ? sv->job.keras_dataset : sv->job.dataset, a,
            ddts_array_sample_count(x), b, in_size);
    }
    enum ddts_status st = check_labels(sv, m, err);
    if (st != DDTS_OK)
        return st;
    const struct ddts_array *y = sv->job.order == DDTS_JOB_ORDER_XX ? x : sv->y;
    if (y == NULL)
        return ddts_error_set(err, DDTS_EINVAL, "no Y data for order XY");
    size_t n = x->rank > 0 ? (size_t)x->shape[0] : 0;
    struct ddts_dataset d = {.x = x, .y = y, .n = n < 4 ? n : 4};
    struct ddts_logs logs;
    st = ddts_model_evaluate(m, &d, 4, &logs, err);
    if (st != DDTS_OK)
        ddts_error_prefix(err, "%s with the job's data: ", sv->model_path);
    return st;
}

enum ddts_status ddts__serve_check(const struct ddts_serve *sv, struct ddts_error *err)
{
    const struct ddts_job *job = &sv->job;
    struct ddts_keras_model *k = NULL;
    struct ddts_model *m = NULL;
    enum ddts_status st = ddts_keras_read(sv->model_path, &k, err);
    if (st != DDTS_OK) {
        if (strstr(err != NULL ? err->msg : "", sv->model_path) == NULL)
            ddts_error_prefix(err, "%s: ", sv->model_path);
        goto out;
    }
    st = ddts_bridge_load(k, job->seed, &m, err);
    if (st == DDTS_OK) {
        struct ddts_compile_options co = {
            .loss = job->loss[0] ? job->loss : NULL,
            .optimizer = job->optimizer[0] ? job->optimizer : NULL,
            .learning_rate = job->learning_rate,
            .metrics = job->metrics[0] ? job->metrics : NULL,
            .training_config_json = k->training_config,
            .threads = 1,
        };
        st = ddts_model_compile(m, &co, err);
    }
    if (st != DDTS_OK) {
        ddts_error_prefix(err, "%s: ", sv->model_path);
        goto out;
    }
    if (sv->x != NULL)
        st = check_data(sv, m, err);
out:
    ddts_model_destroy(m);
    ddts_keras_destroy(k);
    return st;
}
