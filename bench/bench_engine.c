/*
 * Training-engine benchmark on Fashion-MNIST (Debian's dataset-fashion-mnist):
 * the MLP 784-256-128-10 and the CNN of issue 3, Adam. Prints, per model,
 * samples/s at batch 128 with 1 and 2 threads, test accuracy after 2 epochs
 * at batch 32, peak RSS (of training: the images stay uint8 and are
 * normalized per batch, as `ddts train` does), and OpenBLAS's sgemm GFLOP/s.
 *
 *   bench_engine [--quick] [--throughput | --accuracy] [--only mlp|cnn] [--first-seed S]
 *                [--data DIR] [--samples N] [--reps R] [--threads 1|2] [--batch B]
 *
 * --quick trains on 6000 samples only (a smoke run); --throughput measures
 * samples/s only (run.sh alternates it with the peer's), --accuracy the
 * accuracy only, over seeds S to S + 9 (default 1). --samples N sets the
 * throughput epoch's samples for both models (default MLP 20000, CNN 4096)
 * and --reps R its timed epochs, the best kept (default 3): run.sh's train
 * case measures the engine on the epoch `ddts train` runs (N = its samples,
 * R = 1, like its one epoch). --threads T measures T threads only (for
 * profiling; the other count prints 0). --batch B sets the throughput
 * epochs' batch size (default 128: the figure).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "ddts/ddts.h"
#include "nn/nn.h"
#include "tensor/tensor.h"
#include "models.h"

static struct ddts_array *load_idx(const char *path)
{
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return NULL;
    }
    unsigned char hdr[4];
    if (gzread(f, hdr, 4) != 4) {
        gzclose(f);
        return NULL;
    }
    int rank = hdr[3];
    int64_t shape[8];
    for (int i = 0; i < rank; i++) {
        unsigned char b[4];
        if (gzread(f, b, 4) != 4) {
            gzclose(f);
            return NULL;
        }
        shape[i] = ((int64_t)b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3];
    }
    struct ddts_array *a;
    if (ddts_array_create(DDTS_U8, rank, shape, &a, NULL) != DDTS_OK) {
        gzclose(f);
        return NULL;
    }
    if (gzread(f, a->data, (unsigned)a->nbytes) != (int)a->nbytes) {
        gzclose(f);
        ddts_array_destroy(a);
        return NULL;
    }
    gzclose(f);
    return a;
}

/* The images stay uint8 (N, 28, 28, 1), as `ddts train` keeps a shard in its
 * stored dtype; fit normalizes each batch as it gathers it, x * (1/255). */
static float OFFSET[784], SCALE[784];

/* (N, 28, 28) idx images viewed as the models' (N, 28, 28, 1), in place. */
static void as_images(struct ddts_array *a)
{
    a->rank = 4;
    a->shape[3] = 1;
}

static struct ddts_model *build(const char *json, int threads, uint64_t init_seed)
{
    struct ddts_error err = {0};
    struct ddts_model *m;
    if (ddts_model_from_keras_config(json, strlen(json), &m, &err) != DDTS_OK ||
        ddts_model_init_weights(m, init_seed, &err) != DDTS_OK) {
        fprintf(stderr, "model: %s\n", err.msg);
        exit(1);
    }
    struct ddts_compile_options co = {
        .loss = "sparse_categorical_crossentropy", .optimizer = "adam", .threads = threads};
    if (ddts_model_compile(m, &co, &err) != DDTS_OK) {
        fprintf(stderr, "compile: %s\n", err.msg);
        exit(1);
    }
    return m;
}

/* Training FLOPs per sample from the layer shapes (ddts__nn_flops). */
static struct ddts__nn_flops flops_of(const char *json)
{
    struct ddts_model *m = build(json, 1, 42);
    struct ddts__nn_flops f;
    ddts__nn_flops(m, &f);
    ddts_model_destroy(m);
    return f;
}

/* User + system CPU seconds of the process (all its threads). */
static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

/* samples/s of wall time, and in *cpu_rate (if not NULL) per CPU second of
 * the process: with 1 thread the latter is what a quiet machine would give,
 * much less sensitive to other jobs than the wall figure. */
static int REPS = 3;         /* timed epochs per throughput figure (--reps) */
static int BATCH = 128;      /* the throughput epochs' batch size (--batch) */
static int ONLY_THREADS = 0; /* --threads T: that count only (profiling), else 1 and 2 */

/* no_split: the GEMM split even where the batch split applies (nn.h,
 * struct nn_split); *split_steps: the training steps that took the batch split. */
static double throughput(const char *json, int threads, int no_split, struct ddts_array *x,
                         struct ddts_array *y, size_t n, double *cpu_rate, uint64_t *split_steps)
{
    struct ddts_model *m = build(json, threads, 42);
    m->no_batch_split = no_split;
    struct ddts_dataset d = {.x = x, .y = y, .n = n, .x_offset = OFFSET, .x_scale = SCALE};
    struct ddts_fit_options fo = {.epochs = 1, .batch_size = BATCH, .shuffle = 1, .seed = 1};
    struct ddts_error err = {0};
    /* warm-up epoch on a slice, then the timed one */
    struct ddts_dataset w = {.x = x, .y = y, .n = 512, .x_offset = OFFSET, .x_scale = SCALE};
    if (ddts_model_fit(m, &w, &fo, NULL, &err) != DDTS_OK) {
        fprintf(stderr, "fit: %s\n", err.msg);
        exit(1);
    }
    /* best of REPS (three): the machine may be shared */
    double best = 0, cpu_best = 0;
    for (int rep = 0; rep < REPS; rep++) {
        double t0 = ddts_now(), c0 = cpu_seconds();
        if (ddts_model_fit(m, &d, &fo, NULL, &err) != DDTS_OK) {
            fprintf(stderr, "fit: %s\n", err.msg);
            exit(1);
        }
        double sps = (double)n / (ddts_now() - t0), cps = (double)n / (cpu_seconds() - c0);
        best = sps > best ? sps : best;
        cpu_best = cps > cpu_best ? cps : cpu_best;
    }
    if (cpu_rate != NULL)
        *cpu_rate = cpu_best;
    if (split_steps != NULL)
        *split_steps = m->split.steps;
    ddts_model_destroy(m);
    return best;
}

static double accuracy(const char *json, int threads, struct ddts_array *x, struct ddts_array *y,
                       size_t n, struct ddts_array *tx, struct ddts_array *ty, uint64_t seed,
                       double *secs)
{
    struct ddts_model *m = build(json, threads, seed);
    struct ddts_dataset d = {.x = x, .y = y, .n = n, .x_offset = OFFSET, .x_scale = SCALE};
    struct ddts_dataset t = {.x = tx, .y = ty, .x_offset = OFFSET, .x_scale = SCALE};
    struct ddts_fit_options fo = {.epochs = 2, .batch_size = 32, .shuffle = 1, .seed = seed};
    struct ddts_error err = {0};
    struct ddts_history *h = NULL;
    double t0 = ddts_now();
    if (ddts_model_fit(m, &d, &fo, &h, &err) != DDTS_OK) {
        fprintf(stderr, "fit: %s\n", err.msg);
        exit(1);
    }
    *secs = ddts_now() - t0;
    struct ddts_logs logs;
    if (ddts_model_evaluate(m, &t, 256, &logs, &err) != DDTS_OK) {
        fprintf(stderr, "evaluate: %s\n", err.msg);
        exit(1);
    }
    double acc = 0;
    (void)ddts_logs_get(&logs, "accuracy", &acc);
    ddts_history_destroy(h);
    ddts_model_destroy(m);
    return acc;
}

#define SEEDS 10 /* accuracy runs per model */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double sgemm_gflops(int threads)
{
    size_t n = 1024;
    float *a = ddts_aligned_alloc(n * n * 4), *b = ddts_aligned_alloc(n * n * 4),
          *c = ddts_aligned_alloc(n * n * 4);
    for (size_t i = 0; i < n * n; i++) {
        a[i] = (float)(i % 7) * 0.1f;
        b[i] = (float)(i % 5) * 0.1f;
    }
    ddts__tensor_set_threads(threads);
    ddts__tensor_sgemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
    int reps = 10;
    double t0 = ddts_now();
    for (int r = 0; r < reps; r++)
        ddts__tensor_sgemm(0, 0, n, n, n, 1, a, n, b, n, 0, c, n);
    double dt = ddts_now() - t0;
    ddts_free(a);
    ddts_free(b);
    ddts_free(c);
    return 2.0 * n * n * n * reps / dt / 1e9;
}

/* sgemm 1024^3 GFLOP/s with `threads` threads, in a child process: the
 * reference GEMM's 12 MiB of matrices and OpenBLAS's buffers for it are not
 * part of training's peak RSS. 0 when the child fails. */
static double sgemm_in_child(int threads)
{
    int fd[2];
    if (pipe(fd) != 0)
        return 0;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        double g = sgemm_gflops(threads);
        ssize_t w = write(fd[1], &g, sizeof g);
        _exit(w == (ssize_t)sizeof g ? 0 : 1);
    }
    close(fd[1]);
    double g = 0;
    if (pid < 0 || read(fd[0], &g, sizeof g) != (ssize_t)sizeof g)
        g = 0;
    close(fd[0]);
    if (pid > 0)
        (void)waitpid(pid, NULL, 0);
    return g;
}

/* samples/s at 1 and 2 threads, each measured right after the sgemm
 * reference at the same thread count (the VM's speed drifts over minutes),
 * and the model's FLOP rate against it. */
static void throughput_line(const char *name, const char *json, struct ddts_array *x,
                            struct ddts_array *y, size_t n)
{
    struct ddts__nn_flops f = flops_of(json);
    double per = f.forward + f.weight_grad + f.input_grad, sps[2], ref[2], cpu[2];
    uint64_t split = 0;
    for (int t = 1; t <= 2; t++) {
        ref[t - 1] = sps[t - 1] = cpu[t - 1] = 0;
        if (ONLY_THREADS > 0 && t != ONLY_THREADS)
            continue;
        ref[t - 1] = sgemm_in_child(t);
        sps[t - 1] = throughput(json, t, 0, x, y, n, &cpu[t - 1], t == 2 ? &split : NULL);
    }
    printf("%s: train samples/s at batch %d: %.0f (1 thread), %.0f (2 threads); %zu samples, "
           "best of %d epoch(s)\n",
           name, BATCH, sps[0], sps[1], n, REPS);
    printf("%s: training FLOPs per sample %.0f (forward %.0f, weight gradients %.0f, input "
           "gradients %.0f%s)\n",
           name, per, f.forward, f.weight_grad, f.input_grad,
           f.n_uncounted ? ", some layers uncounted: a lower bound" : "");
    printf("%s: 1 thread: %.0f samples per CPU second (getrusage: less sensitive to other jobs "
           "than the wall figure)\n",
           name, cpu[0]);
    /* Both threads' CPU time: idle waiting (passive) costs none, spinning
     * and serial stretches with the other thread busy do. */
    printf("%s: 2 threads: %.0f samples per CPU second (%.2f of the 1-thread figure: the CPU "
           "cost of splitting the work)\n",
           name, cpu[1], cpu[0] > 0 ? cpu[1] / cpu[0] : 0);
    if (split > 0) {
        /* The same at 2 threads with each layer's GEMMs split instead of the
         * batch (docs/engine.md, "Threads and determinism"). */
        double c2 = 0, s2 = throughput(json, 2, 1, x, y, n, &c2, NULL);
        printf("%s: 2 threads, batch split (every step): %.0f samples/s, %.2fx the 1-thread "
               "rate; GEMM split instead: %.0f samples/s, %.2fx, %.0f samples per CPU second\n",
               name, sps[1], sps[0] > 0 ? sps[1] / sps[0] : 0, s2, sps[0] > 0 ? s2 / sps[0] : 0,
               c2);
    }
    for (int t = 0; t < 2; t++)
        printf(
            "%s: %d thread(s): %.1f GFLOP/s = %.0f %% of sgemm 1024^3 %.1f GFLOP/s measured just "
            "before\n",
            name, t + 1, sps[t] * per / 1e9, ref[t] > 0 ? 100 * sps[t] * per / 1e9 / ref[t] : 0,
            ref[t]);
    fflush(stdout);
}

/* A whole decimal argument in [lo, hi]; otherwise a clear error and exit 2. */
static long arg_num(const char *opt, const char *s, long lo, long hi)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench_engine: %s needs a whole number from %ld to %ld, not '%s'\n", opt,
                lo, hi, s);
        exit(2);
    }
    return v;
}

static const char USAGE[] =
    "usage: bench_engine [--quick] [--throughput | --accuracy] [--only mlp|cnn]\n"
    "                    [--data DIR] [--samples N] [--reps R] [--threads 1|2]\n"
    "                    [--batch B] [--first-seed S]\n"
    "Trains the bench models on Fashion-MNIST (DIR, default /usr/share/datasets/fashion-mnist)\n"
    "and prints samples/s at 1 and 2 threads, FLOPs per sample and the sgemm reference.\n";

int main(int argc, char **argv)
{
    /* OpenBLAS's real kernels and sleeping OpenMP threads (see nn.h). */
    const char *hints[8];
    size_t n_hints = ddts_nn_env_hints(hints, 8);
    if (n_hints > 0 && getenv("DDTS_REEXEC") == NULL) {
        for (size_t i = 0; i < n_hints; i++)
            putenv((char *)hints[i]);
        setenv("DDTS_REEXEC", "1", 1);
        execv("/proc/self/exe", argv);
    }
    printf("OpenBLAS core: %s, OMP_WAIT_POLICY=%s, GOMP_SPINCOUNT=%s\n", ddts_nn_blas_core(),
           getenv("OMP_WAIT_POLICY") ? getenv("OMP_WAIT_POLICY") : "(default)",
           getenv("GOMP_SPINCOUNT") ? getenv("GOMP_SPINCOUNT") : "(default)");
    const char *dir = "/usr/share/datasets/fashion-mnist";
    int quick = 0, tp_only = 0, acc_only = 0, seed0 = 1;
    long n_samples = 0;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(USAGE, stdout);
            return 0;
        } else if (strcmp(argv[i], "--quick") == 0)
            quick = 1;
        else if (strcmp(argv[i], "--throughput") == 0)
            tp_only = 1;
        else if (strcmp(argv[i], "--accuracy") == 0)
            acc_only = 1;
        else if (strcmp(argv[i], "--first-seed") == 0 && i + 1 < argc)
            seed0 = (int)arg_num("--first-seed", argv[++i], 0, INT_MAX);
        else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--data") == 0 && i + 1 < argc)
            dir = argv[++i];
        else if (strcmp(argv[i], "--samples") == 0 && i + 1 < argc)
            n_samples = arg_num("--samples", argv[++i], 1, LONG_MAX);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            REPS = (int)arg_num("--reps", argv[++i], 1, 1000);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            ONLY_THREADS = (int)arg_num("--threads", argv[++i], 1, 2);
        else if (strcmp(argv[i], "--batch") == 0 && i + 1 < argc)
            BATCH = (int)arg_num("--batch", argv[++i], 1, 1 << 20);
        else {
            fprintf(stderr, "bench_engine: unknown argument '%s'\n%s", argv[i], USAGE);
            return 2;
        }
    }
    char p[4][512];
    const char *names[4] = {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                            "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"};
    struct ddts_array *raw[4];
    for (int i = 0; i < 4; i++) {
        snprintf(p[i], sizeof p[i], "%s/%s", dir, names[i]);
        raw[i] = load_idx(p[i]);
        if (!raw[i])
            return 1;
    }
    size_t ntr = quick ? 6000 : (size_t)raw[0]->shape[0];
    for (int j = 0; j < 784; j++)
        SCALE[j] = 1.0f / 255.0f;
    as_images(raw[0]);
    as_images(raw[2]);
    struct ddts_array *x = raw[0], *tx = raw[2];
    double g1 = sgemm_in_child(1), g2 = sgemm_in_child(2);
    printf("sgemm 1024^3: %.1f GFLOP/s (1 thread), %.1f GFLOP/s (2 threads)\n", g1, g2);
    struct {
        const char *name, *json;
        size_t n_tp;
    } models[2] = {{"mlp", MLP, quick ? 6000 : 20000}, {"cnn", CNN, quick ? 1024 : 4096}};
    for (int k = 0; k < 2 && n_samples > 0; k++)
        models[k].n_tp = (size_t)n_samples < ntr ? (size_t)n_samples : ntr;
    for (int k = 0; k < 2; k++) {
        if (only && strcmp(only, models[k].name) != 0)
            continue;
        if (!acc_only)
            throughput_line(models[k].name, models[k].json, x, raw[1], models[k].n_tp);
        if (tp_only)
            continue;
        /* One draw of initial weights and one shuffling order move the
         * accuracy by up to a point (by +-2 on 6000 samples): the median of
         * SEEDS runs, seed s giving both the initial weights and the order. */
        double accs[SEEDS], secs = 0;
        for (int sd = 0; sd < SEEDS; sd++) {
            double s;
            accs[sd] = accuracy(models[k].json, 1, x, raw[1], ntr, tx, raw[3],
                                (uint64_t)sd + (uint64_t)seed0, &s);
            secs += s / SEEDS;
        }
        double sorted[SEEDS];
        memcpy(sorted, accs, sizeof sorted);
        qsort(sorted, SEEDS, sizeof sorted[0], cmp_double);
        printf("%s: test accuracy after 2 epochs (batch 32, adam, %zu samples, 1 thread): %.4f "
               "(%.1f s) median of seeds %d-%d (initial weights and shuffling):",
               models[k].name, ntr, (sorted[(SEEDS - 1) / 2] + sorted[SEEDS / 2]) / 2, secs, seed0,
               seed0 + SEEDS - 1);
        for (int sd = 0; sd < SEEDS; sd++)
            printf(" %.4f", accs[sd]);
        printf("\n");
        fflush(stdout);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    printf("peak RSS: %.1f MiB\n", ru.ru_maxrss / 1024.0);
    for (int i = 0; i < 4; i++)
        ddts_array_destroy(raw[i]);
    return 0;
}
