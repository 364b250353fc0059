/* ddts inspect DATAFILE: arrays, shapes, dtypes and ranges of a data file. */
#include <math.h>
#include <string.h>

#include "cli.h"

/* Prints one array's line; the figures come from the same statistics the
 * normalizers use (one feature over all elements). */
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
    /* min, max and mean over every element, in double (Welford). */
    double mn = INFINITY, mx = -INFINITY, mean = 0;
    size_t n_nan = 0, k = 0;
    for (size_t i = 0; i < n; i++) {
        double v = ddts_array_get(a, i);
        if (isnan(v)) {
            n_nan++;
            continue;
        }
        k++;
        if (v < mn)
            mn = v;
        if (v > mx)
            mx = v;
        mean += (v - mean) / (double)k;
    }
    if (k > 0)
        printf("  min %.6g  max %.6g  mean %.6g", mn, mx, mean);
    if (n_nan > 0)
        printf("  (%zu NaN)", n_nan);
    printf("\n");
    return CLI_OK;
}

int cli_inspect_data(const char *path, const char *key)
{
    struct ddts_error err;
    ddts_error_clear(&err);
    enum ddts_data_format f = ddts_data_format_of(path);
    if (f == DDTS_FORMAT_UNKNOWN) {
        ddts_error_set(&err, DDTS_EUNSUPPORTED, "%s: unknown data format", path);
        return cli_fail("inspect", &err);
    }
    char **names = NULL;
    size_t n_names = 0;
    if (key != NULL) {
        struct ddts_array *a = NULL;
        if (ddts_data_load(path, key, &a, &err) != DDTS_OK)
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
        if (ddts_data_load(path, k, &a, &err) != DDTS_OK) {
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
