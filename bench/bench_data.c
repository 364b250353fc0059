/*
 * Data-loading benchmark (issue 5): loads one file with ddts_data_load
 * `repeats` times and prints the median wall time, the throughput in MB of
 * file per second, the array's shape and dtype, and the process's peak RSS.
 * Run once per file, so that the RSS is that file's (bench/run.sh).
 *
 *   bench_data FILE [--key NAME] [--repeats N]
 *
 * Output (one line, parsed by bench/run.sh):
 *   data FILE: median S s over N, X MB/s, shape (..) DTYPE, peak RSS R MiB
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "ddts/ddts.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *path = NULL, *key = NULL;
    int repeats = 5;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--key") == 0 && i + 1 < argc)
            key = argv[++i];
        else if (strcmp(argv[i], "--repeats") == 0 && i + 1 < argc)
            repeats = (int)strtol(argv[++i], NULL, 10);
        else
            path = argv[i];
    }
    if (path == NULL || repeats < 1 || repeats > 100) {
        fprintf(stderr, "usage: bench_data FILE [--key NAME] [--repeats N]\n");
        return 2;
    }
    struct stat sb;
    if (stat(path, &sb) != 0) {
        fprintf(stderr, "%s: cannot stat\n", path);
        return 1;
    }
    double t[100];
    char shape[128] = "";
    const char *dtype = "";
    for (int r = 0; r < repeats; r++) {
        struct ddts_array *a = NULL;
        struct ddts_error err = {0};
        double t0 = ddts_now();
        if (ddts_data_load(path, key, &a, &err) != DDTS_OK) {
            fprintf(stderr, "%s\n", err.msg);
            return 1;
        }
        t[r] = ddts_now() - t0;
        if (r == 0) {
            size_t off = 0;
            for (int d = 0; d < a->rank && off < sizeof shape; d++)
                off += (size_t)snprintf(shape + off, sizeof shape - off, "%s%lld", d ? "," : "",
                                        (long long)a->shape[d]);
            dtype = ddts_dtype_name(a->dtype);
        }
        ddts_array_destroy(a);
    }
    qsort(t, (size_t)repeats, sizeof t[0], cmp_double);
    double med = repeats % 2 ? t[repeats / 2] : 0.5 * (t[repeats / 2 - 1] + t[repeats / 2]);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("data %s: median %.4f s over %d, %.1f MB/s, shape (%s) %s, peak RSS %.1f MiB\n", path,
           med, repeats, (double)sb.st_size / 1e6 / med, shape, dtype, ru.ru_maxrss / 1024.0);
    return 0;
}
