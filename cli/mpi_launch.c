/*
 * `ddts train --distributed mpi` in the `ddts` program, which has no MPI
 * inside (see src/mpi/mpi.c for why): replaces this process with the
 * `ddts-mpi` program and the same arguments. Under mpirun every rank does
 * so; the MPI environment (OMPI_* and PMIx variables) survives exec, and
 * ddts-mpi calls MPI_Init. ddts-mpi is looked up as $DDTS_MPI, next to this
 * program (/proc/self/exe), then on PATH.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

int cli_train_mpi(int argc, char **argv, struct ddts_job *job, const char *out, bool resume,
                  double bucket_mb)
{
    (void)job;
    (void)out;
    (void)resume;
    (void)bucket_mb;
    char **args = calloc((size_t)argc + 2, sizeof *args);
    if (args == NULL) {
        fprintf(stderr, "ddts train: out of memory\n");
        return CLI_FAIL;
    }
    args[0] = "ddts-mpi";
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    args[argc + 1] = NULL;
    /* getopt_long permuted argv; the order of flags does not matter to ddts-mpi. */
    const char *env = getenv("DDTS_MPI");
    if (env != NULL && env[0] != '\0') {
        execv(env, args);
        fprintf(stderr, "ddts train: cannot run DDTS_MPI=%s: %s\n", env, strerror(errno));
        free(args);
        return CLI_FAIL;
    }
    char self[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len > 0) {
        self[len] = '\0';
        char *slash = strrchr(self, '/');
        if (slash != NULL && (size_t)(slash - self) + sizeof "/ddts-mpi" <= sizeof self) {
            memcpy(slash, "/ddts-mpi", sizeof "/ddts-mpi");
            execv(self, args);
        }
    }
    execvp("ddts-mpi", args);
    fprintf(stderr,
            "ddts train: --distributed mpi needs the ddts-mpi program (built when OpenMPI's "
            "development files are installed: make deps), next to ddts or on PATH: %s\n",
            strerror(errno));
    free(args);
    return CLI_FAIL;
}
