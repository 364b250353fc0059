/*
 * The HDF5 readers in a child process (keras_internal.h): input that did not
 * come from this process is parsed the way browsers parse images. libhdf5
 * has crashed (SIGSEGV, a ~2^47-byte memcpy) and spun forever (H5HG_read) on
 * damaged files; in the child that costs the child only.
 *
 * The child is a fork of this process: it closes every inherited descriptor
 * but its end of a pipe and the result file (no sockets, no other files),
 * sets limits (CPU
 * seconds, address space, open files, no file writes, no core dump),
 * installs a seccomp filter that refuses socket, connect, exec, ptrace and clone/fork
 * where the architecture is known (x86-64, arm64), runs the *_inproc reader
 * of keras_h5.c, which reads the weight values straight into a shared
 * memory file (memfd; ddts__keras_h5_arena), appends the rest of the model
 * (strings, shapes, offsets of the values) or the HDF5 image it wrote, and
 * writes its status, message and result length to the pipe. The parent reads the pipe within a
 * wall-clock deadline, reaps the child and only then maps the result and decodes it with every
 * length checked against the file's sealed size.
 *
 * Why a memory file and not the pipe (docs/protocol.md, the cost): through
 * a pipe the weights were copied three times more (into a growing buffer,
 * through the pipe into another, out of it), each time into fresh pages; the
 * memory file is written once, by libhdf5 itself, and read in place. It is created and sized by the
 * parent and sealed against shrinking and growing, so the child cannot make the parent's mapping
 * fault (SIGBUS) nor grow it beyond its size.
 *
 * fork in a threaded process: the child runs only this thread. glibc makes
 * malloc usable after fork; libhdf5's own lock (thread-safe builds) is free
 * unless another thread of the parent is inside libhdf5, which ddts never
 * does while reading a model (a deadlock there would show as a timeout).
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
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

/* For tests: a smaller result file than the default (0: the default). */
static _Atomic uint64_t result_cap_override;

void ddts__keras_h5_set_result_cap(uint64_t nbytes)
{
    result_cap_override = nbytes;
}
/*
 * Address space the child may add to what it inherits: 1 GiB plus 8 x the
 * input for its work, and the same again for the result file it maps (the
 * largest result it can write: a result never holds more than the child's
 * own memory held).
 */
#define CHILD_AS_BASE (1ull << 30)
/* The pipe carries the header only: magic, status, message length, message, result length,
 * the offset of the model's description in the result. */
#define HEAD_MAX (5 * sizeof(uint64_t) + DDTS_ERROR_MSG_MAX)

/* ---- the result stream ---- */

/*
 * The result as the child writes it, in place into the mapped result file:
 * first the weight values (the reader allocates them there, keras_h5.c
 * weight_alloc), then the rest of the model (put_model), which refers to the
 * values by offset.
 */
struct blob {
    struct ddts__keras_h5_arena a;
};

static void put(struct blob *b, const void *p, size_t n)
{
    if (b->a.full || n == 0)
        return;
    if (n > b->a.cap - b->a.n) {
        b->a.full = 1;
        return;
    }
    memcpy(b->a.p + b->a.n, p, n);
    b->a.n += n;
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

/* Where `count` values at `data` are in the result: in place when the reader put them there. */
static uint64_t data_offset(struct blob *b, const float *data, size_t count)
{
    size_t bytes = count * sizeof(float);
    const unsigned char *d = (const unsigned char *)data;
    if (d >= b->a.p && d <= b->a.p + b->a.n && bytes <= (size_t)(b->a.p + b->a.n - d))
        return (uint64_t)(d - b->a.p);
    uint64_t at = b->a.n;
    put(b, data, bytes);
    return at;
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
            put_u64(b, data_offset(b, w[i].data, w[i].count));
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
    const uint8_t *all; /* the whole result: weight values are at offsets into it */
    size_t all_n;
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

/*
 * memcpy into this process's heap after a fork: each page it writes was made
 * copy-on-write by the fork and faults once; for a large copy the pages are
 * made writable in one call first (a hint; the copy is the same without it).
 */
static void copy_out(void *dst, const void *src, size_t n)
{
#ifdef MADV_POPULATE_WRITE
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    if (n >= 16 * page) {
        uintptr_t a = ((uintptr_t)dst + page - 1) & ~(uintptr_t)(page - 1);
        uintptr_t b = ((uintptr_t)dst + n) & ~(uintptr_t)(page - 1);
        if (b > a)
            (void)madvise((void *)a, b - a, MADV_POPULATE_WRITE);
    }
#endif
    memcpy(dst, src, n);
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
            uint64_t at = get_u64(r), bytes = (uint64_t)w[i].count * sizeof(float);
            if (r->bad || at > r->all_n || bytes > r->all_n - at) {
                r->bad = 1;
                break;
            }
            w[i].data = ddts_mallocarray(w[i].count ? w[i].count : 1, sizeof(float));
            if (w[i].data == NULL)
                *oom = 1;
            else
                copy_out(w[i].data, r->all + at, (size_t)bytes);
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

/*
 * Refuses the system calls a parser never needs: networking, exec, tracing,
 * and new processes or threads (a child that took over the reader could
 * otherwise fork copies that outlive the SIGKILL on timeout, each with a
 * fresh CPU limit).
 */
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
        DENY(__NR_clone),
#ifdef __NR_clone3
        DENY(__NR_clone3),
#endif
#ifdef __NR_fork
        DENY(__NR_fork),
#endif
#ifdef __NR_vfork
        DENY(__NR_vfork),
#endif
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

/* The child's work: its result into *out; *meta: where the model's description starts in it. */
typedef enum ddts_status (*child_fn)(void *arg, struct blob *out, uint64_t *meta,
                                     struct ddts_error *err);

/* Runs in the child: never returns. `fd`: the pipe; `res_fd`: the result file of res_cap bytes. */
static void child_main(const char *label, int fd, int res_fd, uint64_t res_cap, child_fn fn,
                       void *arg, uint64_t input_bytes, double cpu_s)
{
    /* The pipe at 3, the result file at 4 (through higher numbers: either may be 3 or 4). */
    int hi_fd = fcntl(fd, F_DUPFD, 10), hi_res = fcntl(res_fd, F_DUPFD, 10);
    if (hi_fd < 0 || hi_res < 0 || dup2(hi_fd, 3) < 0 || dup2(hi_res, 4) < 0)
        _exit(5);
    fd = 3;
    if (syscall(SYS_close_range, 5u, ~0u, 0u) != 0)
        for (int i = 5; i < 65536; i++)
            close(i);
    struct blob payload = {{NULL, 0, 0, 0}};
    void *map = mmap(NULL, (size_t)res_cap, PROT_READ | PROT_WRITE, MAP_SHARED, 4, 0);
    close(4);
    if (map != MAP_FAILED) {
        payload.a = (struct ddts__keras_h5_arena){map, 0, (size_t)res_cap, 0};
#ifdef MADV_POPULATE_WRITE
        /* The weights are about as large as the file: their pages in one call rather than
         * a fault each (a hint: on an older kernel they fault in as they are written). */
        uint64_t pre = input_bytes < res_cap ? input_bytes : res_cap;
        if (pre >= (1u << 16))
            (void)madvise(map, (size_t)pre, MADV_POPULATE_WRITE);
#endif
    }
    uint64_t as = vm_size() + CHILD_AS_BASE + 8 * input_bytes;
    set_limit(RLIMIT_CPU, (rlim_t)(cpu_s + 0.999), (rlim_t)cpu_s + 2);
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
    uint64_t meta = 0;
    enum ddts_status st = payload.a.p != NULL ? fn(arg, &payload, &meta, &err) : DDTS_OK;
    if (payload.a.p == NULL)
        st = ddts_error_set(&err, DDTS_ENOMEM, "%s: the HDF5 reader cannot map its result file",
                            label);
    else if (payload.a.full)
        st = ddts_error_set(&err, DDTS_ENOMEM,
                            "%s: the HDF5 reader's result is larger than its limit (%" PRIu64
                            " bytes)",
                            label, res_cap);
    /* The header, after the result is in place; in fixed storage. */
    uint8_t head[HEAD_MAX];
    uint64_t v[3] = {RESULT_MAGIC, (uint64_t)st, 0};
    uint64_t tail[2] = {0, 0}; /* result length, model offset: none on failure */
    if (st == DDTS_OK)
        tail[0] = payload.a.n, tail[1] = meta;
    size_t msg_n = strnlen(err.msg, DDTS_ERROR_MSG_MAX - 1);
    v[2] = (uint64_t)msg_n + 1;
    memcpy(head, v, sizeof v);
    memcpy(head + sizeof v, err.msg, msg_n);
    memcpy(head + sizeof v + msg_n, tail, sizeof tail);
    write_all(fd, head, sizeof v + msg_n + sizeof tail);
    _exit(0);
}

/* A result in the parent: the child's result file, mapped read-only. */
struct result {
    const uint8_t *p;
    size_t n;
    size_t meta; /* <= n */
};

static void result_release(struct result *r)
{
    if (r->p != NULL && r->n > 0)
        munmap((void *)r->p, r->n);
    *r = (struct result){NULL, 0, 0};
}

/*
 * The result file: a memfd of `size` bytes (sparse: only the pages the child
 * writes exist), sealed so that its size can no longer change. -1: errno.
 */
static int result_file(uint64_t size)
{
    int fd = memfd_create("ddts-h5-result", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) != 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

/*
 * Reads the child's header from the pipe until it closes or the deadline
 * passes: *head_n bytes in head; *timed_out, *too_long on those failures.
 */
static void read_header(int fd, double deadline, uint8_t *head, size_t *head_n, int *timed_out,
                        int *too_long)
{
    *head_n = 0;
    *timed_out = *too_long = 0;
    for (;;) {
        double left = deadline - ddts_now();
        if (left <= 0) {
            *timed_out = 1;
            return;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int rc = poll(&p, 1, (int)(left * 1000) + 1);
        if (rc <= 0)
            continue;
        uint8_t spill[1];
        ssize_t r = *head_n < HEAD_MAX ? read(fd, head + *head_n, HEAD_MAX - *head_n)
                                       : read(fd, spill, sizeof spill);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return;
        if (*head_n == HEAD_MAX) {
            *too_long = 1;
            return;
        }
        *head_n += (size_t)r;
    }
}

/* The error for a child that did not finish normally (DDTS_OK: it did). */
static enum ddts_status child_failure(const char *label, int ws, int timed_out, double wall_s,
                                      double cpu_s, struct ddts_error *err)
{
    if (timed_out || (WIFSIGNALED(ws) && WTERMSIG(ws) == SIGXCPU))
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: the HDF5 reader timed out (%.0f s): the file is damaged or "
                              "hostile",
                              label, timed_out ? wall_s : cpu_s);
    if (WIFSIGNALED(ws))
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: the HDF5 reader crashed (signal %d, %s): the file is damaged "
                              "or hostile",
                              label, WTERMSIG(ws), strsignal(WTERMSIG(ws)));
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: the HDF5 reader crashed (exit status %d): the file is damaged "
                              "or hostile",
                              label, WIFEXITED(ws) ? WEXITSTATUS(ws) : -1);
    return DDTS_OK;
}

/* Decodes the child's header; on DDTS_OK maps its result (res_cap bytes at most) into *out. */
static enum ddts_status take_result(const char *label, const uint8_t *head, size_t head_n,
                                    int res_fd, uint64_t res_cap, struct result *out,
                                    struct ddts_error *err)
{
    struct reader r = {head, head_n, 0, 0, NULL, 0};
    uint64_t magic = get_u64(&r), child_st = get_u64(&r);
    int oom = 0;
    char *msg = get_str(&r, &oom);
    uint64_t n = get_u64(&r), meta = get_u64(&r);
    enum ddts_status st = DDTS_OK;
    if (r.bad || r.pos != r.n || magic != RESULT_MAGIC || child_st > 255 || n > res_cap ||
        meta > n) {
        st = ddts_error_set(err, DDTS_EFORMAT,
                            "%s: the HDF5 reader crashed (no result): the file is damaged or "
                            "hostile",
                            label);
    } else if (child_st != DDTS_OK) {
        st = ddts_error_set(err, (enum ddts_status)child_st, "%s", msg ? msg : label);
    } else if (n > 0) {
        /* Populated: the child wrote every page; one call instead of a fault per page. */
        void *p = mmap(NULL, (size_t)n, PROT_READ, MAP_SHARED | MAP_POPULATE, res_fd, 0);
        if (p == MAP_FAILED)
            st = ddts_error_set_errno(err, DDTS_ENOMEM, errno,
                                      "%s: cannot map the HDF5 reader's result", label);
        else
            *out = (struct result){p, (size_t)n, (size_t)meta};
    }
    ddts_free(msg);
    return st;
}

/*
 * What this process holds before the fork decides what the fork and the
 * child cost: the fork copies a page-table entry for every present page and
 * write-protects it; every page of the parent's heap that the child writes
 * (malloc reuses the parent's free chunks) is then a copy-on-write fault in
 * the child, and every page the parent writes afterwards a fault in the
 * parent. libhdf5's free lists go back to malloc (keras_h5.c) and malloc
 * gives the free pages of its heap back to the kernel (glibc malloc_trim): the
 * child's allocations then land on pages that are not there (a zero-filled
 * page, no copy) and the fork has fewer pages to copy. Measured on the vww
 * MobileNet (3.0 MB): the child's read 32 -> 23 ms CPU, 16 -> 6-10 ms
 * extra per load (docs/protocol.md). Costs about 0.1-0.5 ms here.
 */
static void shrink_before_fork(void)
{
    ddts__keras_h5_before_fork();
#if defined(__GLIBC__)
    (void)malloc_trim(0);
#endif
}

/*
 * Runs fn in a limited child; its result, mapped, in *out (result_release)
 * when it reports DDTS_OK. The child's own failure comes back as its status
 * and message; a crash, a limit or a hang is DDTS_EFORMAT naming `label`.
 */
static enum ddts_status run_isolated(const char *label, uint64_t input_bytes, child_fn fn,
                                     void *arg, struct result *out, struct ddts_error *err)
{
    *out = (struct result){NULL, 0, 0};
    uint64_t res_cap = result_cap_override ? result_cap_override : CHILD_AS_BASE + 8 * input_bytes;
    int fds[2] = {-1, -1};
    int res_fd = result_file(res_cap);
    if (res_fd < 0 || pipe2(fds, O_CLOEXEC) != 0) {
        int e = errno;
        if (res_fd >= 0)
            close(res_fd);
        return ddts_error_set_errno(err, DDTS_EIO, e, "%s: cannot start the HDF5 reader", label);
    }
    double cpu_s = (double)child_cpu_base_ms / 1000 + (double)input_bytes * CHILD_CPU_PER_BYTE;
    shrink_before_fork();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        close(res_fd);
        return ddts_error_set_errno(err, DDTS_EIO, e, "%s: cannot start the HDF5 reader", label);
    }
    if (pid == 0) {
        close(fds[0]);
        child_main(label, fds[1], res_fd, res_cap, fn, arg, input_bytes, cpu_s);
    }
    close(fds[1]);
    double wall_s = 3 * cpu_s + 2;
    uint8_t head[HEAD_MAX];
    size_t head_n = 0;
    int timed_out = 0, too_long = 0;
    read_header(fds[0], ddts_now() + wall_s, head, &head_n, &timed_out, &too_long);
    close(fds[0]);
    if (timed_out || too_long)
        kill(pid, SIGKILL);
    int ws = 0;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR) {
    }
    /* Only now, with the child gone, is the result file read. */
    enum ddts_status st = child_failure(label, ws, timed_out, wall_s, cpu_s, err);
    if (st == DDTS_OK)
        st = take_result(label, head, too_long ? 0 : head_n, res_fd, res_cap, out, err);
    close(res_fd);
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

/* The reads put the weight values straight into the result (ddts__keras_h5_arena). */
static enum ddts_status child_read_legacy(void *arg, struct blob *out, uint64_t *meta,
                                          struct ddts_error *err)
{
    struct read_args *a = arg;
    ddts__keras_h5_arena = &out->a;
    enum ddts_status st =
        a->path != NULL
            ? ddts__keras_h5_read_legacy_inproc(a->path, a->m, err)
            : ddts__keras_h5_read_legacy_image_inproc(a->image, a->nbytes, a->label, a->m, err);
    ddts__keras_h5_arena = NULL;
    *meta = out->a.n;
    if (st == DDTS_OK)
        put_model(out, a->m);
    return st;
}

static enum ddts_status child_read_zip(void *arg, struct blob *out, uint64_t *meta,
                                       struct ddts_error *err)
{
    struct read_args *a = arg;
    ddts__keras_h5_arena = &out->a;
    enum ddts_status st =
        ddts__keras_h5_read_zip_weights_inproc(a->image, a->nbytes, a->label, a->cfg, a->m, err);
    ddts__keras_h5_arena = NULL;
    *meta = out->a.n;
    if (st == DDTS_OK)
        put_model(out, a->m);
    return st;
}

static enum ddts_status child_update(void *arg, struct blob *out, uint64_t *meta,
                                     struct ddts_error *err)
{
    *meta = 0;
    struct read_args *a = arg;
    void *img = NULL;
    size_t n = 0;
    enum ddts_status st =
        ddts__keras_h5_update_image_inproc(a->image, a->nbytes, a->label, a->src, &img, &n, err);
    if (st == DDTS_OK)
        put(out, img, n);
    return st;
}

struct probe_args {
    enum ddts_status (*fn)(void *arg, struct ddts_error *err);
    void *arg;
};

static enum ddts_status child_probe(void *arg, struct blob *out, uint64_t *meta,
                                    struct ddts_error *err)
{
    (void)out;
    *meta = 0;
    struct probe_args *p = arg;
    return p->fn(p->arg, err);
}

enum ddts_status ddts__keras_h5_isolated_probe(const char *label,
                                               enum ddts_status (*fn)(void *arg,
                                                                      struct ddts_error *err),
                                               void *arg, struct ddts_error *err)
{
    struct probe_args pa = {fn, arg};
    struct result res;
    enum ddts_status st = run_isolated(label, 0, child_probe, &pa, &res, err);
    result_release(&res);
    return st;
}

enum ddts_status ddts__keras_h5_decode_result(const void *result, size_t nbytes, size_t meta,
                                              const char *label, struct ddts_keras_model *m,
                                              struct ddts_error *err)
{
    if (meta > nbytes)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "%s: the HDF5 reader sent a malformed result: the file is damaged "
                              "or hostile",
                              label);
    const uint8_t *p = result;
    struct reader r = {p + meta, nbytes - meta, 0, 0, p, nbytes};
    return get_model(&r, label, m, err);
}

static enum ddts_status read_model(struct read_args *a, child_fn fn, uint64_t input_bytes,
                                   struct ddts_error *err)
{
    struct result res;
    enum ddts_status st = run_isolated(a->label, input_bytes, fn, a, &res, err);
    if (st == DDTS_OK)
        st = ddts__keras_h5_decode_result(res.p, res.n, res.meta, a->label, a->m, err);
    result_release(&res);
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
    struct result res;
    *out = NULL;
    *out_nbytes = 0;
    enum ddts_status st = run_isolated(label, nbytes, child_update, &a, &res, err);
    if (st == DDTS_OK) {
        *out = ddts_malloc(res.n ? res.n : 1);
        if (*out == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", label);
        else if (res.n > 0)
            memcpy(*out, res.p, res.n);
        *out_nbytes = *out != NULL ? res.n : 0;
    }
    result_release(&res);
    return st;
}
