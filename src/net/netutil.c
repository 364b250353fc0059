/* Internal helpers shared by the server and the client. */
#include <dirent.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "ddts/fs.h"
#include "conn.h"
#include "wire.h"
#include "netutil.h"

void ddts__file_list_free(struct ddts__file_list *fl)
{
    for (size_t i = 0; i < fl->n; i++)
        ddts_free(fl->rel[i]);
    ddts_free(fl->rel);
    memset(fl, 0, sizeof *fl);
}

enum ddts_status ddts__list_files(const char *root, const char *rel, struct ddts__file_list *fl,
                                  int depth, struct ddts_error *err)
{
    char *dir = rel[0] ? ddts_path_join(root, rel) : ddts_strdup(root);
    if (dir == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    DIR *d = opendir(dir);
    if (d == NULL) {
        enum ddts_status st =
            ddts_error_set_errno(err, DDTS_ENOTFOUND, errno, "%s: cannot open", dir);
        ddts_free(dir);
        return st;
    }
    enum ddts_status st = DDTS_OK;
    struct dirent *e;
    while (st == DDTS_OK && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *r = rel[0] ? ddts_path_join(rel, e->d_name) : ddts_strdup(e->d_name);
        char *full = r != NULL ? ddts_path_join(root, r) : NULL;
        struct stat sb;
        if (r == NULL || full == NULL) {
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        } else if (stat(full, &sb) != 0) {
            st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot stat", full);
        } else if (S_ISDIR(sb.st_mode) && depth < 16) {
            st = ddts__list_files(root, r, fl, depth + 1, err);
        } else if (S_ISREG(sb.st_mode)) {
            st = ddts_wire_check_relpath(r, err);
            if (st == DDTS_OK && fl->n == fl->cap) {
                size_t cap = fl->cap ? fl->cap * 2 : 16;
                char **p = ddts_realloc(fl->rel, cap * sizeof *p);
                if (p == NULL)
                    st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
                else {
                    fl->rel = p;
                    fl->cap = cap;
                }
            }
            if (st == DDTS_OK) {
                fl->rel[fl->n++] = r;
                r = NULL;
            }
        }
        ddts_free(r);
        ddts_free(full);
    }
    closedir(d);
    ddts_free(dir);
    return st;
}

enum ddts_status ddts__mkdir_parent(const char *path, struct ddts_error *err)
{
    char *dir = ddts_strdup(path);
    if (dir == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    char *slash = strrchr(dir, '/');
    enum ddts_status st = DDTS_OK;
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        st = ddts_mkdir_p(dir, err);
    }
    ddts_free(dir);
    return st;
}

enum ddts_status ddts__recv_file_begin(struct ddts_conn *c, uint32_t files,
                                       struct ddts__file_begin *fb, int *done,
                                       struct ddts_error *err)
{
    uint8_t type;
    const uint8_t *p;
    size_t n;
    *done = 0;
    enum ddts_status st = ddts_conn_recv(c, &type, &p, &n, err);
    if (st != DDTS_OK)
        return st;
    struct ddts_wire_reader r;
    ddts_wire_reader_init(&r, p, n);
    if (type == DDTS_MSG_FILES_DONE) {
        uint32_t count;
        ddts_wire_get_u32(&r, &count);
        st = ddts_wire_reader_end(&r, "FILES_DONE", err);
        if (st == DDTS_OK && count != files)
            st =
                ddts_error_set(err, DDTS_EPROTO, "FILES_DONE says %u files, %u came", count, files);
        *done = 1;
        return st;
    }
    if (type != DDTS_MSG_FILE_BEGIN)
        return ddts_error_set(err, DDTS_EPROTO, "expected FILE_BEGIN, got %s", ddts_msg_str(type));
    ddts_wire_get_u8(&r, &fb->kind);
    ddts_wire_get_str(&r, DDTS_MAX_PATH_BYTES, fb->rel, sizeof fb->rel);
    ddts_wire_get_u64(&r, &fb->size);
    st = ddts_wire_reader_end(&r, "FILE_BEGIN", err);
    if (st == DDTS_OK)
        st = ddts_wire_check_relpath(fb->rel, err);
    return st;
}

int ddts__cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return rc;
    rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(cv, &attr);
    pthread_condattr_destroy(&attr);
    return rc;
}

void ddts__cond_wait_for(pthread_cond_t *cv, pthread_mutex_t *mu, double seconds)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (!(seconds > 0))
        seconds = 0;
    double whole = (double)(time_t)seconds;
    ts.tv_sec += (time_t)whole;
    ts.tv_nsec += (long)((seconds - whole) * 1e9);
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}
