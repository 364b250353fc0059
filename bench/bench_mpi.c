/*
 * Time per exchange of ddts' MPI path (src/mpi/mpi.c) for model sizes from
 * the MLP's 0.2 MB... to 25 MB, no compute: what --sync step (gradients,
 * float32) and --sync epoch / steps:K (weights, float64 sums) cost per
 * exchange on this machine's transport. Run under mpirun:
 *
 *     mpirun -np N bench_mpi [--sizes 0.2,1,5,25] [--repeats R]
 *
 * One line per size and exchange on rank 0: the median time over R
 * exchanges (each after a barrier), the bytes each rank hands to
 * MPI_Allreduce, and the bytes a ring allreduce sends per rank,
 * 2 (N - 1) / N of that. Built only with MPI (CMake DDTS_MPI).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/ddts.h"
#include "mpi/ddts_mpi.h"

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    struct ddts_mpi *c = NULL;
    struct ddts_error err;
    ddts_error_clear(&err);
    if (ddts_mpi_init(&argc, &argv, &c, &err) != DDTS_OK) {
        fprintf(stderr, "bench_mpi: %s\n", err.msg);
        return 1;
    }
    const char *sizes = "0.2,1,5,25";
    int repeats = 20;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--sizes") == 0)
            sizes = argv[i + 1];
        else if (strcmp(argv[i], "--repeats") == 0)
            repeats = (int)strtol(argv[i + 1], NULL, 10);
    }
    if (repeats < 1 || repeats > 10000)
        repeats = 20;
    int rank = ddts_mpi_rank(c), n_ranks = ddts_mpi_size(c);
    double *t = calloc((size_t)repeats, sizeof *t);
    char *list = strdup(sizes);
    float *w = NULL;
    if (t == NULL || list == NULL) {
        snprintf(err.msg, sizeof err.msg, "out of memory");
        goto fail;
    }
    for (char *tok = strtok(list, ","); tok != NULL; tok = strtok(NULL, ",")) {
        double mb = strtod(tok, NULL);
        if (!(mb > 0 && mb <= 4096)) {
            snprintf(err.msg, sizeof err.msg, "--sizes: '%s' is not a size in MB from 0 to 4096",
                     tok);
            goto fail;
        }
        size_t n = (size_t)(mb * 1e6 / 4);
        w = calloc(n ? n : 1, sizeof *w);
        if (w == NULL) {
            snprintf(err.msg, sizeof err.msg, "out of memory for a %.2f MB model", mb);
            goto fail;
        }
        for (size_t i = 0; i < n; i++)
            w[i] = (float)(i % 97) * 0.01f;
        for (int mode = 0; mode < 2; mode++) {
            struct ddts_mpi_traffic before, after;
            for (int r = -2; r < repeats; r++) { /* two warm-up exchanges */
                if (ddts_mpi_barrier(c, &err) != DDTS_OK)
                    goto fail;
                ddts_mpi_traffic(c, &before);
                double t0 = ddts_now();
                enum ddts_status st = mode == 0 ? ddts_mpi_grad_exchange(c, w, n, 32, &err)
                                                : ddts_mpi_weight_exchange(c, w, n, 1000, &err);
                if (st != DDTS_OK)
                    goto fail;
                ddts_mpi_traffic(c, &after);
                if (r >= 0)
                    t[r] = ddts_now() - t0;
            }
            qsort(t, (size_t)repeats, sizeof *t, cmp_double);
            double bytes = (double)(after.bytes - before.bytes);
            if (rank == 0)
                printf("mpi %s exchange, %d ranks, %.2f MB model: %.3f ms per exchange "
                       "(median of %d), %.2f MB per rank into MPI_Allreduce, ring sends "
                       "%.2f MB per rank\n",
                       mode == 0 ? "gradient (--sync step)" : "weight (--sync epoch)", n_ranks, mb,
                       t[repeats / 2] * 1e3, repeats, bytes / 1e6,
                       bytes / 1e6 * 2.0 * (n_ranks - 1) / n_ranks);
        }
        free(w);
        w = NULL;
    }
    free(list);
    free(t);
    ddts_mpi_finalize(c);
    return 0;
fail:
    free(w);
    free(list);
    free(t);
    fprintf(stderr, "bench_mpi: %s\n", err.msg);
    ddts_mpi_fail(c, 1);
    return 1;
}
