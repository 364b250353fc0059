/*
 * The cost of reading Keras .h5 files in the isolated child (keras_h5_isolated.c)
 * against the same reader in this process: median of N loads of each file.
 *
 *     h5_isolation_cost [-n N] FILE.h5...
 *
 * Prints one line per file: in-process ms, isolated ms, extra ms.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/io/keras_internal.h"
#include "ddts/keras.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_ms(const char *path, int isolated, int n)
{
    double t[64];
    for (int i = 0; i < n; i++) {
        struct ddts_keras_model *m = ddts_calloc(1, sizeof *m);
        struct ddts_error err;
        double t0 = ddts_now();
        enum ddts_status st = isolated ? ddts__keras_h5_read_legacy(path, m, &err)
                                       : ddts__keras_h5_read_legacy_inproc(path, m, &err);
        t[i] = (ddts_now() - t0) * 1e3;
        ddts_keras_destroy(m);
        if (st != DDTS_OK) {
            fprintf(stderr, "%s: %s\n", path, err.msg);
            return -1;
        }
    }
    qsort(t, (size_t)n, sizeof t[0], cmp);
    return t[n / 2];
}

int main(int argc, char **argv)
{
    int n = 15, first = 1;
    if (argc > 2 && strcmp(argv[1], "-n") == 0) {
        n = atoi(argv[2]);
        first = 3;
    }
    if (n < 1 || n > 64 || first >= argc) {
        fprintf(stderr, "usage: h5_isolation_cost [-n 1..64] FILE.h5...\n");
        return 2;
    }
    printf("%-60s %10s %10s %10s\n", "file", "inproc_ms", "isolated", "extra_ms");
    for (int i = first; i < argc; i++) {
        double a = median_ms(argv[i], 0, n), b = median_ms(argv[i], 1, n);
        const char *base = strrchr(argv[i], '/');
        printf("%-60s %10.2f %10.2f %10.2f\n", base ? base + 1 : argv[i], a, b, b - a);
    }
    return 0;
}
