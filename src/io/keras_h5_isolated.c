/*
 * The HDF5 readers in a child process (keras_internal.h): input that did not
 * come from this process is parsed the way browsers parse images. libhdf5
 * has crashed (SIGSEGV, a ~2^47-byte memcpy) and spun forever (H5HG_read) on
 * damaged files; in the child that costs the child only.
 *
 * The child is a fork of this process: it closes every inherited descriptor
 * but its end of a pipe (no sockets, no other files), sets limits (CPU
 * seconds, address space, open files, no file writes, no core dump),
 * installs a seccomp filter that refuses socket, connect, exec and ptrace
 * where the architecture is known (x86-64, arm64), runs the *_inproc reader
 * of keras_h5.c and writes its result (status, message, the model's strings
 * and weights, or an HDF5 image) to the pipe. The parent reads it within a
 * wall-clock deadline, reaps the child and decodes the result with every
 * length checked against what arrived.
 *
 * fork in a threaded process: the child runs only this thread. glibc makes
 * malloc usable after fork; libhdf5's own lock (thread-safe builds) is free
 * unless another thread of the parent is inside libhdf5, which ddts never
 * does while reading a model (a deadlock there would show as a timeout).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if defined(__linux__)
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#endif

#include "ddts/core.h"
#include "ddts/keras.h"
#include "ddts/limits.h"
#include "io/keras_internal.h"

#define RESULT_MAGIC 0x35484444u /* "DDH5" */
/*
 * CPU seconds the child may use: a base plus 1 s per 50 MB of input (the
 * real models take a few ms per MB); the wall-clock deadline is 3 x that + 2 s
 * (a loaded machine gives the child less than a core).
 */
#define CHILD_CPU_BASE_S   10
#define CHILD_CPU_PER_BYTE (1.0 / 50e6)
static _Atomic long child_cpu_base_ms = CHILD_CPU_BASE_S * 1000;

void ddts__keras_h5_set_child_cpu(double seconds)
{
    child_cpu_base_ms = seconds >= 1 ? (long)(seconds * 1000) : CHILD_CPU_BASE_S * 1000;
}
/* Address space the child may add to what it inherits: 1 GiB plus 8 x the input. */
#define CHILD_AS_BASE (1ull << 30)

/* ---- the result stream ---- */

struct blob {
    uint8_t *p;
    size_t n, cap;
    int oom;
};

static void put(struct blob *b, const void *p, size_t n)
{
    if (b->oom || n == 0)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        uint8_t *q = ddts_realloc(b->p, cap);
        if (q == NULL) {
            b->oom = 1;
            return;
        }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void put_u64(struct blob *b, uint64_t v)
{
    put(b, &v, sizeof v);
}

/* A string: u64 length + 1 (0: NULL), then its bytes. */
static void put_str(struct blob *b, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    put_u64(b, s ? (uint64_t)n + 1 : 0);
    put(b, s, n);
}

static void put_weights(struct blob *b, const struct ddts_keras_weight *w, size_t n)
{
    put_u64(b, n);
    for (size_t i = 0; i < n; i++) {
        put_str(b, w[i].name);
        put_str(b, w[i].short_name);
        put_str(b, w[i].layer_name);
        put_str(b, w[i].h5_path);
        put_u64(b, (uint64_t)w[i].rank);
        for (int k = 0; k < w[i].rank && k < DDTS_MAX_RANK; k++)
            put_u64(b, (uint64_t)w[i].shape[k]);
        put_u64(b, w[i].count);
        put_u64(b, (uint64_t)(int64_t)w[i].stored_dtype);
        put_u64(b, w[i].data != NULL);
        if (w[i].data != NULL)
            put(b, w[i].data, w[i].count * sizeof(float));
    }
}

/* What a read gives back: the strings it may fill in, the layers, the optimizer state. */
static void put_model(struct blob *b, const struct ddts_keras_model *m)
{
    put_str(b, m->keras_version);
    put_str(b, m->backend);
    put_str(b, m->model_config);
    put_str(b, m->training_config);
    put_u64(b, m->n_layers);
    for (size_t i = 0; i < m->n_layers; i++) {
        put_str(b, m->layers[i].name);
        put_str(b, m->layers[i].class_name);
        put_weights(b, m->layers[i].weights, m->layers[i].n_weights);
    }
    put_u64(b, (uint64_t)m->has_optimizer_weights);
    put_weights(b, m->optimizer_weights, m->n_optimizer_weights);
}

struct reader {
    const uint8_t *p;
    size_t n, pos;
    int bad;
};

static uint64_t get_u64(struct reader *r)
{
    uint64_t v = 0;
    if (r->bad || r->n - r->pos < sizeof v) {
        r->bad = 1;
        return 0;
    }
    memcpy(&v, r->p + r->pos, sizeof v);
    r->pos += sizeof v;
    return v;
}

static const void *get_bytes(struct reader *r, uint64_t n)
{
    if (r->bad || n > r->n - r->pos) {
        r->bad = 1;
        return NULL;
    }
    const void *p = r->p + r->pos;
    r->pos += (size_t)n;
    return p;
}

/* A string as put_str wrote it, in new memory; *oom on allocation failure. */
static char *get_str(struct reader *r, int *oom)
{
    uint64_t n = get_u64(r);
    if (n == 0 || r->bad)
        return NULL;
    const char *s = get_bytes(r, n - 1);
    if (s == NULL || memchr(s, '\0', (size_t)(n - 1)) != NULL) {
        r->bad = 1;
        return NULL;
    }
    char *out = ddts_strndup(s, (size_t)(n - 1));
    *oom |= out == NULL;
    return out;
}

static struct ddts_keras_weight *get_weights(struct reader *r, size_t *n_out, int *oom)
{
    *n_out = 0;
    uint64_t n = get_u64(r);
    if (r->bad || n > DDTS_MAX_KERAS_WEIGHTS) {
        r->bad = 1;
        return NULL;
    }
    struct ddts_keras_weight *w = ddts_calloc(n ? (size_t)n : 1, sizeof *w);
    if (w == NULL) {
        *oom = 1;
        return NULL;
    }
    *n_out = (size_t)n;
    for (size_t i = 0; i < n && !r->bad && !*oom; i++) {
        w[i].name = get_str(r, oom);
        w[i].short_name = get_str(r, oom);
        w[i].layer_name = get_str(r, oom);
        w[i].h5_path = get_str(r, oom);
        uint64_t rank = get_u64(r);
        if (rank > DDTS_MAX_RANK) {
            r->bad = 1;
            break;
        }
        w[i].rank = (int)rank;
        uint64_t count = 1;
        for (uint64_t k = 0; k < rank; k++) {
            w[i].shape[k] = (int64_t)get_u64(r);
            if (w[i].shape[k] < 0 || __builtin_mul_overflow(count, (uint64_t)w[i].shape[k], &count))
                r->bad = 1;
        }
        w[i].count = (size_t)get_u64(r);
        w[i].stored_dtype = (int)(int64_t)get_u64(r);
        if (r->bad || w[i].count != count || count > DDTS_MAX_KERAS_PARAMS) {
            r->bad = 1;
            break;
        }
        if (get_u64(r) != 0) {
            const void *data = get_bytes(r, (uint64_t)w[i].count * sizeof(float));
            w[i].data = data ? ddts_mallocarray(w[i].count ? w[i].count : 1, sizeof(float)) : NULL;
            if (data != NULL && w[i].data == NULL)
                *oom = 1;
            else if (data != NULL)
                memcpy(w[i].data, data, w[i].count * sizeof(float));
        }
    }
    return w;
}

/* Fills the fields a read sets that `m` does not have yet. */
static void take_str(char **dst, char *src)
{
    if (*dst == NULL)
        *dst = src;
    else
        ddts_free(src);
}

static enum ddts_status get_model(struct reader *r, const char *label, struct ddts_keras_model *m,
                                  struct ddts_error *err)
{
    int oom = 0;
    take_str(&m->keras_version, get_str(r, &oom));
    take_str(&m->backend, get_str(r, &oom));
    take_str(&m->model_config, get_str(r, &oom));
    take_str(&m->training_config, get_str(r, &oom));
    uint64_t n_layers = get_u64(r);
    if (!r->bad && n_layers > DDTS_MAX_LAYERS)
        r->bad = 1;
    if (!r->bad && !oom) {
        m->layers = ddts_calloc(n_layers ? (size_t)n_layers : 1, sizeof *m->layers);
        oom = m->layers == NULL;
    }
    for (size_t i = 0; m->layers != NULL && i < n_layers && !r->bad && !oom; i++) {
        m->n_layers = i + 1;
        m->layers[i].name = get_str(r, &oom);
        m->layers[i].class_name = get_str(r, &oom);
        m->layers[i].weights = get_weights(r, &m->layers[i].n_weights, &oom);
    }
    m->has_optimizer_weights = get_u64(r) != 0;
    if (!r->bad && !oom)
        m->optimizer_weights = get_weights(r, &m->n_optimizer_weights, &oom);
    if (oom)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", label);
    if (r->bad || r->pos != r->n)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: the HDF5 reader sent a malformed result: the file is damaged "
                              "or hostile",
                              label);
    return DDTS_OK;
}

/* ---- the child ---- */

#if defined(__linux__) && (defined(__x86_64__) || defined(__aarch64__))
#if defined(__x86_64__)
#define AUDIT_ARCH_SELF AUDIT_ARCH_X86_64
#else
#define AUDIT_ARCH_SELF AUDIT_ARCH_AARCH64
#endif
#define DENY(nr)                                                                                   \
    BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1),                                               \
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA))

/* Refuses the system calls a parser never needs: networking, exec, tracing. */
static void install_seccomp(void)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_SELF, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        DENY(__NR_socket),
        DENY(__NR_socketpair),
        DENY(__NR_connect),
        DENY(__NR_bind),
        DENY(__NR_listen),
        DENY(__NR_accept4),
        DENY(__NR_execve),
        DENY(__NR_execveat),
        DENY(__NR_ptrace),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {(unsigned short)(sizeof filter / sizeof filter[0]), filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0)
        (void)prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
}
#else
static void install_seccomp(void) {}
#endif

/* The child's virtual memory size now, in bytes (0: unknown). */
static uint64_t vm_size(void)
{
    char buf[64];
    int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    unsigned long long pages = 0;
    for (const char *p = buf; *p >= '0' && *p <= '9'; p++)
        pages = pages * 10 + (unsigned long long)(*p - '0');
    return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

static void set_limit(int resource, rlim_t soft, rlim_t hard)
{
    struct rlimit rl = {soft, hard};
    (void)setrlimit(resource, &rl);
}

static void write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(4);
        p += w;
        n -= (size_t)w;
    }
}

typedef enum ddts_status (*child_fn)(void *arg, struct blob *out, struct ddts_error *err);

/* Runs in the child: never returns. */
static void child_main(int fd, child_fn fn, void *arg, uint64_t input_bytes, double cpu_s)
{
    if (fd != 3) {
        if (dup2(fd, 3) < 0)
            _exit(5);
        fd = 3;
    }
    if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0)
        for (int i = 4; i < 65536; i++)
            close(i);
    uint64_t as = vm_size() + CHILD_AS_BASE + 8 * input_bytes;
    set_limit(RLIMIT_CPU, (rlim_t)(cpu_s + 0.999), (rlim_t)cpu_s + 2);
    if (as > CHILD_AS_BASE)
        set_limit(RLIMIT_AS, (rlim_t)as, (rlim_t)as);
    set_limit(RLIMIT_NOFILE, 16, 16);
    set_limit(RLIMIT_FSIZE, 0, 0);
    set_limit(RLIMIT_CORE, 0, 0);
    /* The parent's signal handlers must not run here (a test runner's SIGSEGV handler
     * would carry on with the parent's work): every signal to its default, none blocked. */
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            signal(sig, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    install_seccomp();
    struct ddts_error err;
    ddts_error_clear(&err);
    struct blob payload = {0};
    enum ddts_status st = fn(arg, &payload, &err);
    if (payload.oom)
        st = ddts_error_set(&err, DDTS_ENOMEM, "the HDF5 reader ran out of memory");
    /* The header in fixed storage: it must get out even when memory ran out. */
    uint8_t head[3 * sizeof(uint64_t) + DDTS_ERROR_MSG_MAX];
    uint64_t v[3] = {RESULT_MAGIC, (uint64_t)st, 0};
    size_t msg_n = strnlen(err.msg, DDTS_ERROR_MSG_MAX - 1);
    v[2] = (uint64_t)msg_n + 1;
    memcpy(head, v, sizeof v);
    memcpy(head + sizeof v, err.msg, msg_n);
    write_all(fd, head, sizeof v + msg_n);
    if (st == DDTS_OK)
        write_all(fd, payload.p, payload.n);
    _exit(0);
}

/*
 * Runs fn in a limited child; its payload in *out (ddts_malloc'd) when it
 * reports DDTS_OK. The child's own failure comes back as its status and
 * message; a crash, a limit or a hang is DDTS_EFORMAT naming `label`.
 */
static enum ddts_status run_isolated(const char *label, uint64_t input_bytes, child_fn fn,
                                     void *arg, uint8_t **out, size_t *out_n,
                                     struct ddts_error *err)
{
    *out = NULL;
    *out_n = 0;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot start the HDF5 reader",
                                    label);
    double cpu_s = (double)child_cpu_base_ms / 1000 + (double)input_bytes * CHILD_CPU_PER_BYTE;
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return ddts_error_set_errno(err, DDTS_EIO, e, "%s: cannot start the HDF5 reader", label);
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(fds[1], fn, arg, input_bytes, cpu_s);
    }
    close(fds[1]);
    struct blob got = {0};
    double wall_s = 3 * cpu_s + 2;
    double deadline = ddts_now() + wall_s;
    int timed_out = 0;
    uint64_t cap =
        2 * (uint64_t)DDTS_MAX_KERAS_PARAMS * sizeof(float) + 4ull * DDTS_MAX_CONFIG_BYTES;
    for (;;) {
        double left = deadline - ddts_now();
        if (left <= 0) {
            timed_out = 1;
            break;
        }
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc <= 0)
            continue;
        uint8_t buf[65536];
        ssize_t r = read(fds[0], buf, sizeof buf);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (got.n + (size_t)r > cap) {
            got.oom = 1;
            break;
        }
        put(&got, buf, (size_t)r);
        if (got.oom)
            break;
    }
    close(fds[0]);
    if (timed_out || got.oom)
        kill(pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    enum ddts_status st = DDTS_OK;
    if (got.oom && !timed_out) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory for the HDF5 reader's result",
                            label);
    } else if (timed_out || (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGXCPU)) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "%s: the HDF5 reader timed out (%.0f s): the file is damaged or "
                            "hostile",
                            label, timed_out ? wall_s : cpu_s);
    } else if (WIFSIGNALED(ws)) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "%s: the HDF5 reader crashed (signal %d, %s): the file is damaged or "
                            "hostile",
                            label, WTERMSIG(ws), strsignal(WTERMSIG(ws)));
    } else if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "%s: the HDF5 reader crashed (exit status %d): the file is damaged "
                            "or hostile",
                            label, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    }
    if (st != DDTS_OK) {
        ddts_free(got.p);
        return st;
    }
    /* The header: magic, status, message; then the payload. */
    struct reader r = {got.p, got.n, 0, 0};
    uint64_t magic = get_u64(&r), child_st = get_u64(&r);
    int oom = 0;
    char *msg = get_str(&r, &oom);
    if (r.bad || magic != RESULT_MAGIC || child_st > 255) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "%s: the HDF5 reader crashed (no result): the file is damaged or "
                            "hostile",
                            label);
    } else if (child_st != DDTS_OK) {
        st = ddts_error_set(err, (enum ddts_status)child_st, "%s", msg ? msg : label);
    } else {
        size_t n = got.n - r.pos;
        *out = ddts_malloc(n ? n : 1);
        if (*out == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", label);
        else {
            memcpy(*out, got.p + r.pos, n);
            *out_n = n;
        }
    }
    ddts_free(msg);
    ddts_free(got.p);
    return st;
}

/* ---- the isolated entry points ---- */

struct read_args {
    const char *path;
    const void *image;
    size_t nbytes;
    const char *label;
    const struct ddts_keras_config *cfg;
    struct ddts_keras_model *m; /* the child's copy */
    const struct ddts_keras_model *src;
};

static enum ddts_status child_read_legacy(void *arg, struct blob *out, struct ddts_error *err)
{
    struct read_args *a = arg;
    enum ddts_status st =
        a->path != NULL
            ? ddts__keras_h5_read_legacy_inproc(a->path, a->m, err)
            : ddts__keras_h5_read_legacy_image_inproc(a->image, a->nbytes, a->label, a->m, err);
    if (st == DDTS_OK)
        put_model(out, a->m);
    return st;
}

static enum ddts_status child_read_zip(void *arg, struct blob *out, struct ddts_error *err)
{
    struct read_args *a = arg;
    enum ddts_status st =
        ddts__keras_h5_read_zip_weights_inproc(a->image, a->nbytes, a->label, a->cfg, a->m, err);
    if (st == DDTS_OK)
        put_model(out, a->m);
    return st;
}

static enum ddts_status child_update(void *arg, struct blob *out, struct ddts_error *err)
{
    struct read_args *a = arg;
    void *img = NULL;
    size_t n = 0;
    enum ddts_status st =
        ddts__keras_h5_update_image_inproc(a->image, a->nbytes, a->label, a->src, &img, &n, err);
    if (st == DDTS_OK)
        put(out, img, n);
    return st;
}

static enum ddts_status read_model(struct read_args *a, child_fn fn, uint64_t input_bytes,
                                   struct ddts_error *err)
{
    uint8_t *res = NULL;
    size_t n = 0;
    enum ddts_status st = run_isolated(a->label, input_bytes, fn, a, &res, &n, err);
    if (st == DDTS_OK) {
        struct reader r = {res, n, 0, 0};
        st = get_model(&r, a->label, a->m, err);
    }
    ddts_free(res);
    return st;
}

static uint64_t file_bytes(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return 0;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : 0;
    fclose(f);
    return n > 0 ? (uint64_t)n : 0;
}

enum ddts_status ddts__keras_h5_read_legacy(const char *path, struct ddts_keras_model *m,
                                            struct ddts_error *err)
{
    struct read_args a = {.path = path, .label = path, .m = m};
    return read_model(&a, child_read_legacy, file_bytes(path), err);
}

enum ddts_status ddts__keras_h5_read_legacy_image(const void *image, size_t nbytes,
                                                  const char *label, struct ddts_keras_model *m,
                                                  struct ddts_error *err)
{
    struct read_args a = {.image = image, .nbytes = nbytes, .label = label, .m = m};
    return read_model(&a, child_read_legacy, nbytes, err);
}

enum ddts_status ddts__keras_h5_read_zip_weights(const void *image, size_t nbytes,
                                                 const char *label,
                                                 const struct ddts_keras_config *cfg,
                                                 struct ddts_keras_model *m, struct ddts_error *err)
{
    struct read_args a = {.image = image, .nbytes = nbytes, .label = label, .cfg = cfg, .m = m};
    return read_model(&a, child_read_zip, nbytes, err);
}

enum ddts_status ddts__keras_h5_update_image(const void *image, size_t nbytes, const char *label,
                                             const struct ddts_keras_model *m, void **out,
                                             size_t *out_nbytes, struct ddts_error *err)
{
    struct read_args a = {.image = image, .nbytes = nbytes, .label = label, .src = m};
    uint8_t *res = NULL;
    size_t n = 0;
    *out = NULL;
    *out_nbytes = 0;
    enum ddts_status st = run_isolated(label, nbytes, child_update, &a, &res, &n, err);
    if (st == DDTS_OK) {
        *out = res;
        *out_nbytes = n;
    }
    return st;
}
