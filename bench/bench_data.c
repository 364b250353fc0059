/*
 * Load throughput of the data loaders against numpy's np.load and pandas'
 * read_csv / read_excel on the same files in the same run, and the peak RSS
 * of each (every case runs in its own process).
 *
 *   bench_data [DIR]     DIR (default: a new temporary folder) receives the
 *                        files written by bench/bench_data_peer.py
 *
 * Prints one line per case: ddts' best of 3, the peer's best of 3, the
 * ratio (peer / ddts: above 1 means ddts is faster) and both peak RSS.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddts/ddts.h"

struct bench_case {
    const char *name, *file, *peer_case, *peer_name;
};

static const struct bench_case cases[] = {
    {"csv 20 MB (100000 x 10)", "numeric.csv", "csv", "pandas.read_csv"},
    {"npz stored 64 MB float64", "stored.npz", "npz", "np.load"},
    {"npz deflated 47 MB uint8", "deflated.npz", "npz", "np.load"},
    {"xlsx 20000 x 10", "sheet.xlsx", "xlsx", "pandas.read_excel"},
};

static const char *peer_script(void)
{
    static char buf[4096];
    const char *src = getenv("DDTS_SOURCE_DIR");
    snprintf(buf, sizeof buf, "%s/bench/bench_data_peer.py", src ? src : ".");
    return buf;
}

/* Runs the ddts loader in a child: best of 3 seconds and the child's peak RSS. */
static int run_ddts(const char *path, double *best, long *rss_kb)
{
    int fd[2];
    if (pipe(fd) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        double b = 1e30;
        for (int i = 0; i < 3; i++) {
            struct ddts_array *a = NULL;
            struct ddts_error err;
            double t = ddts_now();
            if (ddts_data_load(path, strstr(path, ".npz") ? "x" : NULL, &a, &err) != DDTS_OK) {
                fprintf(stderr, "bench_data: %s\n", err.msg);
                _exit(1);
            }
            t = ddts_now() - t;
            ddts_array_destroy(a);
            if (t < b)
                b = t;
        }
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        char line[64];
        int n = snprintf(line, sizeof line, "%.6f %ld\n", b, ru.ru_maxrss);
        if (write(fd[1], line, (size_t)n) != n)
            _exit(1);
        _exit(0);
    }
    close(fd[1]);
    char line[64] = "";
    ssize_t n = read(fd[0], line, sizeof line - 1);
    close(fd[0]);
    int status;
    waitpid(pid, &status, 0);
    if (n <= 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return -1;
    line[n] = '\0';
    return sscanf(line, "%lf %ld", best, rss_kb) == 2 ? 0 : -1;
}

static int run_peer(const char *c, const char *path, double *best, long *rss_kb)
{
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s time %s %s", peer_script(), c, path);
    FILE *p = popen(cmd, "r");
    if (p == NULL)
        return -1;
    int ok = fscanf(p, "%lf %ld", best, rss_kb) == 2;
    return pclose(p) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    char dir[4096];
    if (argc > 1) {
        snprintf(dir, sizeof dir, "%s", argv[1]);
    } else {
        char tmpl[] = "/tmp/ddts-bench-data-XXXXXX";
        if (mkdtemp(tmpl) == NULL)
            return 1;
        snprintf(dir, sizeof dir, "%s", tmpl);
    }
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/sheet.xlsx", dir);
    struct stat sb;
    if (stat(probe, &sb) != 0) {
        char cmd[8400];
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s gen %s", peer_script(), dir);
        fprintf(stderr, "bench_data: writing the files into %s\n", dir);
        if (system(cmd) != 0) {
            fprintf(stderr, "bench_data: the peer script failed (needs numpy, pandas, openpyxl)\n");
            return 1;
        }
    }
    printf("%-28s %10s %8s %9s | %-18s %10s %9s | %s\n", "case", "ddts s", "MB/s", "rss MB", "peer",
           "peer s", "rss MB", "peer/ddts");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, cases[i].file);
        if (stat(path, &sb) != 0)
            continue;
        double t = 0, pt = 0;
        long rss = 0, prss = 0;
        if (run_ddts(path, &t, &rss) != 0) {
            printf("%-28s failed\n", cases[i].name);
            continue;
        }
        int peer_ok = run_peer(cases[i].peer_case, path, &pt, &prss) == 0;
        double mbs = (double)sb.st_size / 1e6 / t;
        if (peer_ok)
            printf("%-28s %10.4f %8.1f %9.1f | %-18s %10.4f %9.1f | %.2fx\n", cases[i].name, t, mbs,
                   (double)rss / 1024, cases[i].peer_name, pt, (double)prss / 1024, pt / t);
        else
            printf("%-28s %10.4f %8.1f %9.1f | %-18s (unavailable)\n", cases[i].name, t, mbs,
                   (double)rss / 1024, cases[i].peer_name);
        fflush(stdout);
    }
    return 0;
}
