/*
 * The cost of reading Keras .h5 files in the isolated reader (keras_h5_isolated.c)
 * against the same reader in this process: N loads of each file.
 *
 *     h5_isolation_cost [-n N] [-m both|inproc|isolated] FILE.h5...
 *
 * Prints one line per file: the median wall time of a load in process and
 * isolated and the difference, then the median CPU time of a load (user + system
 * of this process and of its reaped children, getrusage, around each load) in
 * process and isolated and the difference. CPU time is the figure to compare on a loaded
 * machine; wall time only on a quiet one. `-m` runs one side only (for perf).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "../../src/io/keras_internal.h"
#include "ddts/keras.h"

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double tv_s(struct timeval t)
{
    return (double)t.tv_sec + (double)t.tv_usec * 1e-6;
}

/* User + system CPU seconds of this process and its reaped children. */
static double cpu_s(void)
{
    struct rusage self, kids;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &kids);
    return tv_s(self.ru_utime) + tv_s(self.ru_stime) + tv_s(kids.ru_utime) + tv_s(kids.ru_stime);
}

/* Median wall ms of n loads in *wall, median CPU ms of a load in *cpu; -1 on error. */
static int measure(const char *path, int isolated, int n, double *wall, double *cpu)
{
    double t[64], c[64];
    for (int i = 0; i < n; i++) {
        struct ddts_keras_model *m = ddts_calloc(1, sizeof *m);
        struct ddts_error err;
        double c0 = cpu_s(), t0 = ddts_now();
        enum ddts_status st = isolated ? ddts__keras_h5_read_legacy(path, m, &err)
                                       : ddts__keras_h5_read_legacy_inproc(path, m, &err);
        t[i] = (ddts_now() - t0) * 1e3;
        ddts_keras_destroy(m);
        c[i] = (cpu_s() - c0) * 1e3;
        if (st != DDTS_OK) {
            fprintf(stderr, "%s: %s\n", path, err.msg);
            return -1;
        }
    }
    qsort(t, (size_t)n, sizeof t[0], cmp);
    qsort(c, (size_t)n, sizeof c[0], cmp);
    *wall = t[n / 2];
    *cpu = c[n / 2];
    return 0;
}

int main(int argc, char **argv)
{
    int n = 15, first = 1, mode = 3;
    while (first + 1 < argc && argv[first][0] == '-') {
        if (strcmp(argv[first], "-n") == 0)
            n = (int)strtol(argv[first + 1], NULL, 10);
        else if (strcmp(argv[first], "-m") == 0)
            mode = strcmp(argv[first + 1], "inproc") == 0     ? 1
                   : strcmp(argv[first + 1], "isolated") == 0 ? 2
                   : strcmp(argv[first + 1], "both") == 0     ? 3
                                                              : 0;
        else
            break;
        first += 2;
    }
    if (n < 1 || n > 64 || mode == 0 || first >= argc) {
        fprintf(stderr,
                "usage: h5_isolation_cost [-n 1..64] [-m both|inproc|isolated] FILE.h5...\n");
        return 2;
    }
    printf("%-44s %9s %9s %9s | %9s %9s %9s\n", "file", "wall_in", "wall_iso", "extra_ms", "cpu_in",
           "cpu_iso", "extra_ms");
    for (int i = first; i < argc; i++) {
        double wa = 0, wb = 0, ca = 0, cb = 0;
        if ((mode & 1) && measure(argv[i], 0, n, &wa, &ca) != 0)
            return 1;
        if ((mode & 2) && measure(argv[i], 1, n, &wb, &cb) != 0)
            return 1;
        const char *base = strrchr(argv[i], '/');
        printf("%-44s %9.2f %9.2f %9.2f | %9.2f %9.2f %9.2f\n", base ? base + 1 : argv[i], wa, wb,
               wb - wa, ca, cb, cb - ca);
    }
    return 0;
}
