/* The error vocabulary: status names and message formatting. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ddts/core.h"

/* The analyzer-only macros of core.h must not rename the definitions below. */
#undef ddts_error_set
#undef ddts_error_set_errno

const char *ddts_status_str(enum ddts_status status)
{
    switch (status) {
    case DDTS_OK:
        return "ok";
    case DDTS_EINVAL:
        return "invalid argument";
    case DDTS_ENOMEM:
        return "out of memory";
    case DDTS_EIO:
        return "input/output error";
    case DDTS_EFORMAT:
        return "bad format";
    case DDTS_ELIMIT:
        return "limit exceeded";
    case DDTS_EUNSUPPORTED:
        return "not supported";
    case DDTS_ENOTFOUND:
        return "not found";
    case DDTS_ESHAPE:
        return "shape mismatch";
    case DDTS_EAUTH:
        return "authentication failed";
    case DDTS_EPROTO:
        return "protocol violation";
    case DDTS_ETIMEOUT:
        return "timed out";
    case DDTS_ECLOSED:
        return "connection closed";
    case DDTS_ENUMERIC:
        return "numeric error";
    case DDTS_ECANCELED:
        return "canceled";
    case DDTS_EBANNED:
        return "banned";
    case DDTS_EEXIST:
        return "already exists";
    case DDTS_ESTATE:
        return "wrong state";
    }
    return "unknown status";
}

void ddts_error_clear(struct ddts_error *err)
{
    if (err == NULL)
        return;
    err->status = DDTS_OK;
    err->sys_errno = 0;
    err->msg[0] = '\0';
}

enum ddts_status ddts_error_setv(struct ddts_error *err, enum ddts_status status, const char *fmt,
                                 va_list ap)
{
    if (err == NULL)
        return status;
    err->status = status;
    err->sys_errno = 0;
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    return status;
}

enum ddts_status ddts_error_set(struct ddts_error *err, enum ddts_status status, const char *fmt,
                                ...)
{
    va_list ap;
    va_start(ap, fmt);
    ddts_error_setv(err, status, fmt, ap);
    va_end(ap);
    return status;
}

enum ddts_status ddts_error_set_errno(struct ddts_error *err, enum ddts_status status,
                                      int sys_errno, const char *fmt, ...)
{
    if (err == NULL)
        return status;
    va_list ap;
    va_start(ap, fmt);
    ddts_error_setv(err, status, fmt, ap);
    va_end(ap);
    err->sys_errno = sys_errno;
    size_t len = strlen(err->msg);
    if (len < sizeof err->msg)
        snprintf(err->msg + len, sizeof err->msg - len, ": %s", strerror(sys_errno));
    return status;
}

void ddts_error_prefix(struct ddts_error *err, const char *fmt, ...)
{
    if (err == NULL)
        return;
    char prefix[DDTS_ERROR_MSG_MAX];
    char old[DDTS_ERROR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t lp = strnlen(prefix, sizeof prefix);
    size_t lo = strnlen(old, sizeof old);
    if (lp > sizeof err->msg - 1)
        lp = sizeof err->msg - 1;
    if (lo > sizeof err->msg - 1 - lp)
        lo = sizeof err->msg - 1 - lp;
    memcpy(err->msg, prefix, lp);
    memcpy(err->msg + lp, old, lo);
    err->msg[lp + lo] = '\0';
}

enum ddts_status ddts_format(char *buf, size_t cap, struct ddts_error *err, const char *fmt, ...)
{
    if (buf == NULL || cap == 0)
        return ddts_error_set(err, DDTS_EINVAL, "format: no room for the text");
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0) {
        buf[0] = '\0';
        return ddts_error_set(err, DDTS_EINVAL, "format: encoding error in \"%s\"", fmt);
    }
    if ((size_t)n >= cap) {
        enum ddts_status st = ddts_error_set(
            err, DDTS_ELIMIT, "\"%.48s...\" is %d bytes long (max %zu)", buf, n, cap - 1);
        buf[0] = '\0';
        return st;
    }
    return DDTS_OK;
}
