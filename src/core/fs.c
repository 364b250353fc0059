/* Safe file writing (temporary name, fsync, rename) and small file helpers. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddts/fs.h"

char *ddts_path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    int slash = la > 0 && a[la - 1] != '/';
    char *p = ddts_malloc(la + (size_t)slash + lb + 1);
    if (p == NULL)
        return NULL;
    /* NOLINTNEXTLINE(bugprone-not-null-terminated-result): the NUL comes with b */
    memcpy(p, a, la);
    if (slash)
        p[la] = '/';
    memcpy(p + la + (size_t)slash, b, lb + 1);
    return p;
}

/*
 * The mode of new files: 0666 less the process's umask, read from
 * /proc/self/status (umask(2) cannot read it without changing it, which is
 * not thread-safe); 0600 when it cannot be read.
 */
static mode_t file_mode(void)
{
    char buf[2048];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0600;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0600;
    buf[n] = '\0';
    const char *p = strstr(buf, "\nUmask:");
    if (p == NULL)
        return 0600;
    char *end = NULL;
    unsigned long mask = strtoul(p + 8, &end, 8);
    if (end == p + 8 || mask > 0777)
        return 0600;
    return (mode_t)(0666 & ~mask);
}

enum ddts_status ddts_atomic_open(struct ddts_atomic_file *f, const char *path,
                                  struct ddts_error *err)
{
    memset(f, 0, sizeof *f);
    size_t len = strlen(path);
    f->path = ddts_strdup(path);
    f->tmp_path = ddts_malloc(len + 16);
    if (f->path == NULL || f->tmp_path == NULL) {
        ddts_atomic_abort(f);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
    }
    memcpy(f->tmp_path, path, len);
    memcpy(f->tmp_path + len, ".tmp.XXXXXX", 12);
    int fd = mkstemp(f->tmp_path);
    if (fd < 0) {
        int e = errno;
        ddts_free(f->tmp_path);
        f->tmp_path = NULL;
        ddts_atomic_abort(f);
        return ddts_error_set_errno(err, DDTS_EIO, e, "%s: cannot create temporary file", path);
    }
    (void)fchmod(fd, file_mode());
    f->fp = fdopen(fd, "wb");
    if (f->fp == NULL) {
        int e = errno;
        close(fd);
        ddts_atomic_abort(f);
        return ddts_error_set_errno(err, DDTS_EIO, e, "%s: cannot open temporary file", path);
    }
    return DDTS_OK;
}

void ddts_atomic_abort(struct ddts_atomic_file *f)
{
    if (f->fp != NULL)
        fclose(f->fp);
    if (f->tmp_path != NULL)
        unlink(f->tmp_path);
    ddts_free(f->tmp_path);
    ddts_free(f->path);
    memset(f, 0, sizeof *f);
}

enum ddts_status ddts_atomic_commit(struct ddts_atomic_file *f, struct ddts_error *err)
{
    enum ddts_status st = DDTS_OK;
    if (fflush(f->fp) != 0 || ferror(f->fp) || fsync(fileno(f->fp)) != 0) {
        st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: write failed", f->path);
        goto out;
    }
    int rc = fclose(f->fp);
    f->fp = NULL;
    if (rc != 0) {
        st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: write failed", f->path);
        goto out;
    }
    if (rename(f->tmp_path, f->path) != 0) {
        st =
            ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot rename temporary file", f->path);
        goto out;
    }
    ddts_free(f->tmp_path);
    f->tmp_path = NULL;
out:
    ddts_atomic_abort(f);
    return st;
}

enum ddts_status ddts_write_file_atomic(const char *path, const void *data, size_t nbytes,
                                        struct ddts_error *err)
{
    struct ddts_atomic_file f;
    enum ddts_status st = ddts_atomic_open(&f, path, err);
    if (st != DDTS_OK)
        return st;
    if (nbytes > 0 && fwrite(data, 1, nbytes, f.fp) != nbytes) {
        int e = errno;
        ddts_atomic_abort(&f);
        return ddts_error_set_errno(err, DDTS_EIO, e, "%s: write failed", path);
    }
    return ddts_atomic_commit(&f, err);
}

enum ddts_status ddts_read_file(const char *path, size_t max_nbytes, char **out, size_t *out_nbytes,
                                struct ddts_error *err)
{
    *out = NULL;
    if (out_nbytes)
        *out_nbytes = 0;
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return ddts_error_set_errno(err, errno == ENOENT ? DDTS_ENOTFOUND : DDTS_EIO, errno,
                                    "%s: cannot open", path);
    enum ddts_status st = DDTS_OK;
    char *buf = NULL;
    struct stat sb;
    if (fstat(fileno(fp), &sb) != 0) {
        st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot stat", path);
        goto out;
    }
    if ((unsigned long long)sb.st_size > max_nbytes) {
        st = ddts_error_set(err, DDTS_ELIMIT, "%s: %lld bytes (max %zu)", path,
                            (long long)sb.st_size, max_nbytes);
        goto out;
    }
    size_t n = (size_t)sb.st_size;
    buf = ddts_malloc(n + 1);
    if (buf == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    if (fread(buf, 1, n, fp) != n) {
        st = ddts_error_set(err, DDTS_EIO, "%s: short read", path);
        goto out;
    }
    buf[n] = '\0';
    *out = buf;
    buf = NULL;
    if (out_nbytes)
        *out_nbytes = n;
out:
    ddts_free(buf);
    fclose(fp);
    return st;
}

enum ddts_status ddts_mkdir_p(const char *path, struct ddts_error *err)
{
    char *p = ddts_strdup(path);
    if (p == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", path);
    enum ddts_status st = DDTS_OK;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == '\0') {
            char c = *s;
            *s = '\0';
            if (mkdir(p, 0755) != 0 && errno != EEXIST) {
                st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot create folder", p);
                break;
            }
            *s = c;
            if (c == '\0')
                break;
        }
    }
    ddts_free(p);
    return st;
}

enum ddts_status ddts_open_dir_beneath(const char *root, const char *rel, int *dirfd,
                                       struct ddts_error *err)
{
    *dirfd = -1;
    int fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return ddts_error_set_errno(err, DDTS_EIO, errno, "%s: cannot open the folder", root);
    char *copy = ddts_strdup(rel);
    if (copy == NULL) {
        close(fd);
        return ddts_error_set(err, DDTS_ENOMEM, "%s: out of memory", root);
    }
    enum ddts_status st = DDTS_OK;
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c != NULL; c = strtok_r(NULL, "/", &save)) {
        if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0) {
            st = ddts_error_set(err, DDTS_EINVAL, "%s/%s: '%s' in a path", root, rel, c);
            break;
        }
        if (mkdirat(fd, c, 0700) != 0 && errno != EEXIST) {
            st = ddts_error_set_errno(err, DDTS_EIO, errno, "%s/%s: cannot create '%s'", root, rel,
                                      c);
            break;
        }
        /* O_NOFOLLOW on every component: a symbolic link anywhere below root is refused. */
        int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0) {
            int e = errno;
            st = ddts_error_set_errno(err, DDTS_EIO, e, "%s/%s: '%s' is %s", root, rel, c,
                                      e == ELOOP || e == ENOTDIR
                                          ? "a symbolic link or not a folder: not followed"
                                          : "not a folder that can be opened");
            break;
        }
        close(fd);
        fd = next;
    }
    ddts_free(copy);
    if (st != DDTS_OK) {
        close(fd);
        return st;
    }
    *dirfd = fd;
    return DDTS_OK;
}
