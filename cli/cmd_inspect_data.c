/* ddts inspect DATAFILE: arrays, shapes, dtypes and ranges of a data file. */
#include <math.h>
#include <string.h>

#include "cli.h"

/* Prints one array's line. The figures come from the statistics the
 * normalizers use (ddts_stats), over all elements as one feature; arrays with
 * NaN fall back to a loop that skips and counts them. */
static int print_array(const char *label, const struct ddts_array *a)
{
    char shape[160];
    ddts_array_shape_str(a, shape, sizeof shape);
    size_t n = ddts_array_count(a);
    printf("  %-12s %-8s %-20s", label, ddts_dtype_name(a->dtype), shape);
    if (n == 0) {
        printf("  (empty)\n");
        return CLI_OK;
    }
    struct ddts_array flat = *a; /* a view: (n, 1), same data, not owned */
    flat.rank = 2;
    flat.shape[0] = (int64_t)n;
    flat.shape[1] = 1;
    struct ddts_stats *st = NULL;
    struct ddts_feature_stats f;
    if (ddts_stats_create(1, &st, NULL) == DDTS_OK &&
        ddts_stats_update(st, &flat, NULL, n, NULL) == DDTS_OK) {
        ddts_stats_feature(st, 0, &f);
        printf("  min %.6g  max %.6g  mean %.6g  std %.6g\n", f.min, f.max, f.mean,
               sqrt(f.m2 / (double)f.count));
        ddts_stats_destroy(st);
        return CLI_OK;
    }
    ddts_stats_destroy(st);
    double mn = INFINITY, mx = -INFINITY, mean = 0;
    size_t n_nan = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        double v = ddts_array_get(a, i);
        if (isnan(v)) {
            n_nan++;
            continue;
        }
        k++;
        mn = v < mn ? v : mn;
        mx = v > mx ? v : mx;
        mean += (v - mean) / (double)k;
    }
    if (k > 0)
        printf("  min %.6g  max %.6g  mean %.6g", mn, mx, mean);
    printf("  (%zu NaN)\n", n_nan);
    return CLI_OK;
}

static const char *const keras_parts[4] = {"x_train", "y_train", "x_test", "y_test"};

enum ddts_status cli_load_data(const char *path, const char *key,
                               const struct ddts_keras_dataset_options *ko, struct ddts_array **out,
                               struct ddts_error *err)
{
    *out = NULL;
    /* convert and inspect only read the array, briefly: a .npy is mapped. */
    if (strncmp(path, "keras:", 6) != 0)
        return ddts_data_load_ex(path, key, DDTS_LOAD_MMAP, out, err);
    struct ddts_array **want[4] = {NULL, NULL, NULL, NULL};
    int k = 0;
    if (key != NULL) {
        for (k = 0; k < 4; k++)
            if (strcmp(key, keras_parts[k]) == 0)
                break;
        if (k == 4)
            return ddts_error_set(err, DDTS_EINVAL,
                                  "%s: key '%s' (expected x_train, y_train, x_test or y_test)",
                                  path, key);
    }
    want[k] = out;
    return ddts_keras_dataset_load_ex(path + 6, ko, want[0], want[1], want[2], want[3], err);
}

static int inspect_keras(const char *path, const char *key)
{
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_array *a[4] = {NULL, NULL, NULL, NULL};
    if (key != NULL) {
        if (cli_load_data(path, key, NULL, &a[0], &err) != DDTS_OK)
            return cli_fail("inspect", &err);
        printf("%s (Keras dataset)\n", path);
        print_array(key, a[0]);
        ddts_array_destroy(a[0]);
        return CLI_OK;
    }
    if (ddts_keras_dataset_load(path + 6, &a[0], &a[1], &a[2], &a[3], &err) != DDTS_OK)
        return cli_fail("inspect", &err);
    printf("%s (Keras dataset, 4 arrays)\n", path);
    for (int i = 0; i < 4; i++) {
        print_array(keras_parts[i], a[i]);
        ddts_array_destroy(a[i]);
    }
    return CLI_OK;
}

int cli_inspect_data(const char *path, const char *key)
{
    struct ddts_error err;
    ddts_error_clear(&err);
    if (strncmp(path, "keras:", 6) == 0)
        return inspect_keras(path, key);
    enum ddts_data_format f = ddts_data_format_of(path);
    if (f == DDTS_FORMAT_UNKNOWN) {
        ddts_error_set(&err, DDTS_EUNSUPPORTED, "%s: unknown data format", path);
        return cli_fail("inspect", &err);
    }
    char **names = NULL;
    size_t n_names = 0;
    if (key != NULL) {
        struct ddts_array *a = NULL;
        if (ddts_data_load_ex(path, key, DDTS_LOAD_MMAP, &a, &err) != DDTS_OK)
            return cli_fail("inspect", &err);
        printf("%s (%s)\n", path, ddts_data_format_name(f));
        print_array(key, a);
        ddts_array_destroy(a);
        return CLI_OK;
    }
    if (ddts_data_keys(path, &names, &n_names, &err) != DDTS_OK)
        return cli_fail("inspect", &err);
    printf("%s (%s, %zu %s)\n", path, ddts_data_format_name(f), n_names,
           f == DDTS_FORMAT_XLSX ? (n_names == 1 ? "sheet" : "sheets")
                                 : (n_names == 1 ? "array" : "arrays"));
    int rc = CLI_OK;
    for (size_t i = 0; i < n_names; i++) {
        struct ddts_array *a = NULL;
        const char *k = names[i][0] ? names[i] : NULL;
        if (ddts_data_load_ex(path, k, DDTS_LOAD_MMAP, &a, &err) != DDTS_OK) {
            printf("  %-12s error: %s\n", names[i], err.msg);
            rc = CLI_FAIL;
            continue;
        }
        print_array(k ? k : "data", a);
        ddts_array_destroy(a);
    }
    ddts_free(names);
    if (rc != CLI_OK)
        fprintf(stderr, "ddts inspect: error: %s: some arrays could not be read\n", path);
    return rc;
}
