/* Loading a job's data on this machine: X/Y folders or a Keras dataset. */
#include <string.h>

#include "cli.h"
#include "integ.h"

static enum ddts_status take_first(struct ddts_array **a, size_t n, struct ddts_error *err)
{
    if (*a == NULL || (*a)->rank == 0 || (size_t)(*a)->shape[0] <= n)
        return DDTS_OK;
    uint32_t *idx = ddts_mallocarray(n ? n : 1, sizeof(uint32_t));
    if (idx == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    struct ddts_array *out = NULL;
    enum ddts_status st = ddts_array_take(*a, idx, n, &out, err);
    ddts_free(idx);
    if (st != DDTS_OK)
        return st;
    ddts_array_destroy(*a);
    *a = out;
    return DDTS_OK;
}

enum ddts_status cli_load_job_xy(const struct ddts_job *job, const char *dir, struct ddts_array **x,
                                 struct ddts_array **y, struct ddts_error *err)
{
    /* Training data: NaN and infinities are refused where they are (file,
     * row, column); --order XX needs no Y/. */
    struct ddts_xy_options o = {job->x_key[0] ? job->x_key : NULL,
                                job->y_key[0] ? job->y_key : NULL, DDTS_LOAD_FINITE,
                                job->order == DDTS_JOB_ORDER_XX};
    return ddts_data_load_xy_ex(dir, &o, x, y, err);
}

enum ddts_status cli_load_job_data(const struct ddts_job *job, struct ddts_array **x,
                                   struct ddts_array **y, struct ddts_array **x_test,
                                   struct ddts_array **y_test, struct ddts_error *err)
{
    *x = *y = NULL;
    if (x_test != NULL)
        *x_test = NULL;
    if (y_test != NULL)
        *y_test = NULL;
    enum ddts_status st;
    if (job->data == DDTS_JOB_DATA_KERAS) {
        struct ddts_keras_dataset_options ko = {job->num_words, job->skip_top, job->maxlen,
                                                job->label_mode[0] ? job->label_mode : NULL};
        st = ddts_keras_dataset_load_ex(job->keras_dataset, &ko, x, y, x_test, y_test, err);
    } else {
        st = cli_load_job_xy(job, job->dataset, x, y, err);
    }
    if (st == DDTS_OK && job->samples > 0 && (*x)->rank > 0 && job->samples > (*x)->shape[0])
        st = ddts_error_set(err, DDTS_EINVAL,
                            "--samples %lld: the data (%s) holds only %lld training samples",
                            (long long)job->samples,
                            job->data == DDTS_JOB_DATA_KERAS ? job->keras_dataset : job->dataset,
                            (long long)(*x)->shape[0]);
    if (st == DDTS_OK && job->samples > 0) {
        st = take_first(x, (size_t)job->samples, err);
        if (st == DDTS_OK)
            st = take_first(y, (size_t)job->samples, err);
    }
    if (st != DDTS_OK) {
        ddts_array_destroy(*x);
        ddts_array_destroy(*y);
        *x = *y = NULL;
        if (x_test != NULL) {
            ddts_array_destroy(*x_test);
            *x_test = NULL;
        }
        if (y_test != NULL) {
            ddts_array_destroy(*y_test);
            *y_test = NULL;
        }
    }
    return st;
}
