/* train.log and error.log: timestamped, flushed lines, safe from several threads. */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ddts/fs.h"
#include "ddts/report.h"

struct ddts_textlog {
    FILE *fp;
    pthread_mutex_t lock;
};

enum ddts_status ddts_textlog_open(const char *path, struct ddts_textlog **out,
                                   struct ddts_error *err)
{
    *out = NULL;
    struct ddts_textlog *log = ddts_calloc(1, sizeof *log);
    if (log == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
    log->fp = fopen(path, "a");
    if (log->fp == NULL) {
        int e = errno;
        ddts_free(log);
        return ddts_error_set_errno(err, DDTS_EIO, e, "%s: cannot open for appending", path);
    }
    pthread_mutex_init(&log->lock, NULL);
    *out = log;
    return DDTS_OK;
}

void ddts_textlog_close(struct ddts_textlog *log)
{
    if (log == NULL)
        return;
    fclose(log->fp);
    pthread_mutex_destroy(&log->lock);
    ddts_free(log);
}

/* Writes `msg` line by line, each with the stamp and `prefix`. */
static enum ddts_status write_lines(struct ddts_textlog *log, const char *prefix, const char *msg)
{
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char stamp[32];
    strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
    pthread_mutex_lock(&log->lock);
    const char *p = msg;
    do {
        const char *nl = strchr(p, '\n');
        int len = nl != NULL ? (int)(nl - p) : (int)strlen(p);
        fprintf(log->fp, "%s %s%.*s\n", stamp, prefix, len, p);
        p = nl != NULL ? nl + 1 : NULL;
    } while (p != NULL && *p != '\0');
    bool ok = fflush(log->fp) == 0 && !ferror(log->fp);
    pthread_mutex_unlock(&log->lock);
    return ok ? DDTS_OK : DDTS_EIO;
}

enum ddts_status ddts_textlog_printf(struct ddts_textlog *log, const char *fmt, ...)
{
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return write_lines(log, "", line);
}

static void textlog_sink(void *userdata, enum ddts_log_level level, const char *msg)
{
    static const char *const prefix[] = {"DEBUG ", "INFO ", "WARNING ", "ERROR "};
    (void)write_lines(userdata, prefix[level <= DDTS_LOG_ERROR ? level : DDTS_LOG_ERROR], msg);
}

struct ddts_logger ddts_textlog_logger(struct ddts_textlog *log, enum ddts_log_level min)
{
    struct ddts_logger l = {textlog_sink, log, min};
    return l;
}

enum ddts_status ddts_error_log_write(const char *dir, const struct ddts_error *failure,
                                      const char *context, const char *settings_json,
                                      struct ddts_error *err)
{
    enum ddts_status st = ddts_mkdir_p(dir, err);
    if (st != DDTS_OK)
        return st;
    char path[4200];
    snprintf(path, sizeof path, "%s/error.log", dir);
    struct ddts_textlog *log = NULL;
    st = ddts_textlog_open(path, &log, err);
    if (st != DDTS_OK)
        return st;
    const char *msg = failure != NULL && failure->msg[0] ? failure->msg : "failed";
    enum ddts_status fs = failure != NULL ? failure->status : DDTS_OK;
    st = ddts_textlog_printf(log, "error: %s", msg);
    if (st == DDTS_OK)
        st = ddts_textlog_printf(
            log, "status: %s%s%s", ddts_status_str(fs),
            failure != NULL && failure->sys_errno ? ", " : "",
            failure != NULL && failure->sys_errno ? strerror(failure->sys_errno) : "");
    if (st == DDTS_OK && context != NULL)
        st = ddts_textlog_printf(log, "context: %s", context);
    if (st == DDTS_OK && settings_json != NULL)
        st = ddts_textlog_printf(log, "settings: %s", settings_json);
    ddts_textlog_close(log);
    if (st != DDTS_OK)
        return ddts_error_set(err, st, "%s: cannot write", path);
    return DDTS_OK;
}

bool ddts_error_log_reason(const char *dir, char *buf, size_t cap)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/error.log", dir);
    char *text = NULL;
    size_t n = 0;
    if (cap == 0 || ddts_read_file(path, 1 << 20, &text, &n, NULL) != DDTS_OK)
        return false;
    /* "YYYY-MM-DD HH:MM:SS error: <message>" (the first such line). */
    const char *p = strstr(text, " error: ");
    bool found = p != NULL;
    if (found) {
        p += 8;
        size_t len = strcspn(p, "\n");
        snprintf(buf, cap, "%.*s", (int)len, p);
    }
    ddts_free(text);
    return found;
}

void ddts_error_log_remove(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/error.log", dir);
    (void)unlink(path);
}
