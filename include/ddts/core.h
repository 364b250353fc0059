/*
 * ddts core: the one error vocabulary, allocation, logging and randomness.
 *
 * Conventions shared by every module of the library:
 *
 *   - Every fallible function returns an `enum ddts_status`; results come back
 *     through out-parameters, which are cleared on failure.
 *   - An optional `struct ddts_error *` (may be NULL) receives a message that
 *     names what is wrong ("npy: header is 70000 bytes (max 65535)").
 *   - Objects come in create/destroy pairs; destroy accepts NULL.
 *   - The library never prints, exits or aborts. Long-lived objects log through
 *     a `struct ddts_logger` given in their configuration.
 *   - There is no global mutable state, with one documented exception: the
 *     per-thread allocation fault injector used by tests.
 */
#ifndef DDTS_CORE_H
#define DDTS_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * DDTS_API marks every function of the public API, and only those: the
 * library is built with -fvisibility=hidden, so libddts.so exports what
 * include/ddts/ declares and nothing else (not the internal ddts__ functions,
 * not the private headers under src/). tests/integration/test_install.sh
 * checks both directions.
 */
#if defined(__GNUC__)
#define DDTS_API          __attribute__((visibility("default")))
#define DDTS_NODISCARD    __attribute__((warn_unused_result))
#define DDTS_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define DDTS_API
#define DDTS_NODISCARD
#define DDTS_PRINTF(a, b)
#endif

/* The library's one status vocabulary. 0 is success; values are stable. */
enum ddts_status {
    DDTS_OK = 0,
    DDTS_EINVAL = 1,       /* an argument or setting is invalid */
    DDTS_ENOMEM = 2,       /* an allocation failed */
    DDTS_EIO = 3,          /* a system call on a file or socket failed (see sys_errno) */
    DDTS_EFORMAT = 4,      /* input bytes do not follow their format */
    DDTS_ELIMIT = 5,       /* input exceeds a documented limit (limits.h) */
    DDTS_EUNSUPPORTED = 6, /* valid input that ddts does not support */
    DDTS_ENOTFOUND = 7,    /* a file, key, array, layer or sheet is missing */
    DDTS_ESHAPE = 8,       /* shapes do not agree */
    DDTS_EAUTH = 9,        /* authentication failed (wrong passphrase, bad tag) */
    DDTS_EPROTO = 10,      /* the peer broke the wire protocol */
    DDTS_ETIMEOUT = 11,    /* a deadline passed */
    DDTS_ECLOSED = 12,     /* the peer closed the connection */
    DDTS_ENUMERIC = 13,    /* a NaN or infinity appeared (e.g. the loss diverged) */
    DDTS_ECANCELED = 14,   /* stopped on request */
    DDTS_EBANNED = 15,     /* the address is refused after failed handshakes */
    DDTS_EEXIST = 16,      /* the thing already exists (e.g. a duplicate client) */
    DDTS_ESTATE = 17,      /* the call does not fit the object's state */
};

/* Returns a short English name for `status` ("invalid argument"); never NULL. */
DDTS_API const char *ddts_status_str(enum ddts_status status);

/* Error details. Callers own the storage; the library fills it on failure. */
#define DDTS_ERROR_MSG_MAX 512
struct ddts_error {
    enum ddts_status status;
    int sys_errno;                /* errno of the failed system call, or 0 */
    char msg[DDTS_ERROR_MSG_MAX]; /* NUL-terminated, no trailing newline */
};

/* Clears `err` (may be NULL). */
DDTS_API void ddts_error_clear(struct ddts_error *err);

/*
 * Fills `err` (may be NULL) with `status` and a formatted message; returns
 * `status` so that a failure path can read `return ddts_error_set(...)`.
 */
DDTS_API enum ddts_status ddts_error_set(struct ddts_error *err, enum ddts_status status,
                                         const char *fmt, ...) DDTS_PRINTF(3, 4);
DDTS_API enum ddts_status ddts_error_setv(struct ddts_error *err, enum ddts_status status,
                                          const char *fmt, va_list ap);
/* As ddts_error_set, with `sys_errno` recorded and strerror(sys_errno) appended. */
DDTS_API enum ddts_status ddts_error_set_errno(struct ddts_error *err, enum ddts_status status,
                                               int sys_errno, const char *fmt, ...)
    DDTS_PRINTF(4, 5);
/*
 * For the static analyzer only (clang-tidy's clang-analyzer-*): it analyses one
 * translation unit at a time and cannot see that these return `status`, so it
 * would explore "st = ddts_error_set(..., DDTS_ENOMEM, ...) == DDTS_OK" paths and
 * report null dereferences on them. The macros state the contract; compiled
 * code never sees them.
 */
#ifdef __clang_analyzer__
#define ddts_error_set(err, status, ...) (ddts_error_set((err), (status), __VA_ARGS__), (status))
#define ddts_error_set_errno(err, status, sys_errno, ...)                                          \
    (ddts_error_set_errno((err), (status), (sys_errno), __VA_ARGS__), (status))
#endif
/* Prefixes the message already in `err` with formatted context ("model.h5: "). */
DDTS_API void ddts_error_prefix(struct ddts_error *err, const char *fmt, ...) DDTS_PRINTF(2, 3);

/*
 * snprintf for text that must not be cut short (a path, a name): formats
 * into `buf` (capacity `cap`) and returns DDTS_OK, or DDTS_ELIMIT when the
 * text needs more room (the message shows its start and length) and
 * DDTS_EINVAL for an encoding error; on failure `buf` holds "" rather than
 * a truncated text. Text that may be shortened (a message, a terminal line)
 * uses plain snprintf; error messages are cut at DDTS_ERROR_MSG_MAX.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_format(char *buf, size_t cap, struct ddts_error *err,
                                                     const char *fmt, ...) DDTS_PRINTF(4, 5);

/*
 * Allocation. Every allocation of the library goes through these wrappers so
 * that tests can fail the k-th allocation (ddts_alloc_fail_after) and check
 * that each path returns DDTS_ENOMEM and leaks nothing.
 * ddts_aligned_alloc returns 64-byte aligned memory; free it with ddts_free.
 * Sizes given as count and element size are checked for overflow.
 */
DDTS_API void *ddts_malloc(size_t nbytes);
DDTS_API void *ddts_calloc(size_t count, size_t size);
DDTS_API void *ddts_realloc(void *p, size_t nbytes);
DDTS_API void *ddts_mallocarray(size_t count, size_t size);
DDTS_API void *ddts_aligned_alloc(size_t nbytes);
DDTS_API void ddts_free(void *p);
DDTS_API char *ddts_strdup(const char *s);
DDTS_API char *ddts_strndup(const char *s, size_t n);

/*
 * Test hook (per thread): after `n` more successful allocations, every
 * allocation fails until reset with n = -1 (the default: never fail).
 * Returns the number of allocations made since the last call.
 */
DDTS_API long ddts_alloc_fail_after(long n);

/* Overflow-checked size arithmetic; return 0 on success, -1 on overflow. */
static inline int ddts_size_mul(size_t a, size_t b, size_t *out)
{
    return __builtin_mul_overflow(a, b, out) ? -1 : 0;
}
static inline int ddts_size_add(size_t a, size_t b, size_t *out)
{
    return __builtin_add_overflow(a, b, out) ? -1 : 0;
}

/* Logging through a callback; the CLI's sink writes timestamped lines. */
enum ddts_log_level {
    DDTS_LOG_DEBUG = 0,
    DDTS_LOG_INFO = 1,
    DDTS_LOG_WARN = 2,
    DDTS_LOG_ERROR = 3,
};
typedef void (*ddts_log_fn)(void *userdata, enum ddts_log_level level, const char *msg);
struct ddts_logger {
    ddts_log_fn fn; /* NULL: logging is off */
    void *userdata;
    enum ddts_log_level min; /* messages below this level are dropped */
};
/* Formats and sends one message; `logger` may be NULL. */
DDTS_API void ddts_log(const struct ddts_logger *logger, enum ddts_log_level level, const char *fmt,
                       ...) DDTS_PRINTF(3, 4);
DDTS_API const char *ddts_log_level_str(enum ddts_log_level level);

/*
 * Seeded pseudo-random numbers (xoshiro256**, seeded through splitmix64).
 * One object per worker; there is no global generator. Same seed, same
 * sequence, on every platform.
 */
struct ddts_rng {
    uint64_t s[4];
};
DDTS_API void ddts_rng_seed(struct ddts_rng *rng, uint64_t seed);
DDTS_API uint64_t ddts_rng_u64(struct ddts_rng *rng);
/* n 32-bit values: out[2i] and out[2i+1] are the low and high halves of the
 * i-th 64-bit value (an odd n drops the last high half). */
DDTS_API void ddts_rng_fill_u32(struct ddts_rng *rng, uint32_t *out, size_t n);
/* Uniform in [0, bound), without modulo bias; bound > 0. */
DDTS_API uint64_t ddts_rng_below(struct ddts_rng *rng, uint64_t bound);
/* Uniform double in [0, 1). */
DDTS_API double ddts_rng_uniform(struct ddts_rng *rng);
/* Standard normal (Box-Muller, one value per call, deterministic). */
DDTS_API double ddts_rng_normal(struct ddts_rng *rng);
/* Fisher-Yates shuffle of `n` indices. */
DDTS_API void ddts_rng_shuffle_u32(struct ddts_rng *rng, uint32_t *idx, size_t n);
/* Derives an independent stream: a new generator seeded from (seed, stream). */
DDTS_API void ddts_rng_derive(struct ddts_rng *out, uint64_t seed, uint64_t stream);

/* Monotonic clock in seconds. */
DDTS_API double ddts_now(void);
/* CPU seconds the process has used (all its threads); 0 where unknown. */
DDTS_API double ddts_cpu_now(void);

#ifdef __cplusplus
}
#endif
#endif
