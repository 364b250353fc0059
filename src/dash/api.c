/*
 * The dashboard's answers: the JSON API (docs/cli.md, "ddts dashboard") and
 * the result files, built from a snapshot of the live job and from the job
 * folder on disk. Every string goes through jansson, so whatever a peer sent
 * (a client's error message, a file it uploaded) reaches the page as JSON
 * text; the page puts it in the DOM as text only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dash_int.h"
#include "ddts/fs.h"
#include "ddts/report.h"

/* Client name of the global model's curve in /api/history ('@' is not a name character). */
#define GLOBAL_NAME "@global"
/* The most files /api/job lists (a k-fold job with many clients has a few per fold). */
#define MAX_FILES 4096
/* Summary and state files are small; a bigger one is not ours. */
#define MAX_SMALL_FILE (4u << 20)

static json_t *num(double v)
{
    return isfinite(v) ? json_real(v) : json_null();
}

/* A JSON string of text a peer may have written: bytes that are not UTF-8 become '?'. */
static json_t *peer_text(const char *s)
{
    json_t *j = json_string(s);
    if (j != NULL)
        return j;
    char *copy = ddts_strdup(s);
    if (copy == NULL)
        return json_null();
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    ddts_free(copy);
    return j != NULL ? j : json_null();
}

/* ---- paths ---------------------------------------------------------------- */

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

static int has_result_ext(const char *name)
{
    static const char *const exts[] = {".h5", ".keras", ".csv", ".png", ".json", ".txt", ".log"};
    const char *dot = strrchr(name, '.');
    if (dot == NULL)
        return 0;
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++)
        if (strcmp(dot, exts[i]) == 0)
            return 1;
    return 0;
}

int ddts__dash_check_path(const char *rel)
{
    size_t n = strnlen(rel, DDTS_DASH_MAX_URL_BYTES + 1);
    if (n == 0 || n > DDTS_DASH_MAX_URL_BYTES)
        return -1;
    char comp[4][DDTS_MAX_NAME_BYTES + 1];
    size_t k = 0;
    const char *p = rel;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t len = slash != NULL ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || len > DDTS_MAX_NAME_BYTES || k == 4)
            return -1;
        for (size_t i = 0; i < len; i++)
            if (!name_char(p[i]))
                return -1;
        memcpy(comp[k], p, len);
        comp[k][len] = '\0';
        if (strcmp(comp[k], ".") == 0 || strcmp(comp[k], "..") == 0)
            return -1;
        k++;
        if (slash == NULL)
            break;
        p = slash + 1;
    }
    if (!has_result_ext(comp[k - 1]))
        return -1;
    if (k == 1)
        return strcmp(comp[0], "report.png") == 0 || strcmp(comp[0], "summary.json") == 0 ||
                       strcmp(comp[0], "summary.txt") == 0 || strcmp(comp[0], "events.log") == 0
                   ? 0
                   : -1;
    if (strcmp(comp[0], "global") == 0)
        return k == 2 ? 0 : -1;
    if (strcmp(comp[0], "clients") == 0)
        return k >= 3 ? 0 : -1;
    return -1;
}

/* Opens WORKDIR/JOB as a directory without following a link at JOB; -1 on failure. */
static int open_job(const struct ddts_dash *d, const char *job)
{
    int wd = open(d->workdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (wd < 0)
        return -1;
    int fd = openat(wd, job, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(wd);
    return fd;
}

/*
 * Opens `rel` (checked by ddts__dash_check_path) inside the job folder one
 * component at a time, refusing symbolic links at every step; only a regular
 * file is returned (its size in *size). -1 on failure.
 */
static int open_result(int jobfd, const char *rel, off_t *size)
{
    char buf[DDTS_DASH_MAX_URL_BYTES + 1];
    snprintf(buf, sizeof buf, "%s", rel);
    int dir = dup(jobfd);
    char *p = buf;
    while (dir >= 0) {
        char *slash = strchr(p, '/');
        if (slash == NULL)
            break;
        *slash = '\0';
        int next = openat(dir, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(dir);
        dir = next;
        p = slash + 1;
    }
    if (dir < 0)
        return -1;
    int fd = openat(dir, p, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    close(dir);
    struct stat sb;
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd >= 0)
        *size = sb.st_size;
    return fd;
}

/* Reads a small file of the job folder (NUL-terminated, ddts_free), NULL if absent. */
static char *read_small(int jobfd, const char *rel, size_t *n_out)
{
    off_t size = 0;
    int fd = open_result(jobfd, rel, &size);
    if (fd < 0)
        return NULL;
    char *buf = NULL;
    if (size >= 0 && (uint64_t)size <= MAX_SMALL_FILE)
        buf = ddts_malloc((size_t)size + 1);
    size_t got = 0;
    while (buf != NULL && got < (size_t)size) {
        ssize_t r = read(fd, buf + got, (size_t)size - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(fd);
    if (buf != NULL)
        buf[got] = '\0';
    if (n_out != NULL)
        *n_out = got;
    return buf;
}

static json_t *read_json(int jobfd, const char *rel)
{
    char *text = read_small(jobfd, rel, NULL);
    json_t *j = text != NULL ? json_loads(text, 0, NULL) : NULL;
    ddts_free(text);
    return j;
}

/* A history.csv of the job folder, or NULL. */
static struct ddts_csv_history *read_history(int jobfd, const char *rel)
{
    size_t n = 0;
    char *text = read_small(jobfd, rel, &n);
    struct ddts_csv_history *h = NULL;
    if (text != NULL && ddts_csv_history_parse(rel, text, n, &h, NULL) != DDTS_OK)
        h = NULL;
    ddts_free(text);
    return h;
}

/* ---- the list of jobs ------------------------------------------------------ */

/* A job folder: a sub-folder of the work folder holding a server's state or summary. */
static int is_job(const struct ddts_dash *d, const char *name, double *mtime)
{
    if (ddts_wire_check_name(name, NULL) != DDTS_OK)
        return 0;
    int fd = open_job(d, name);
    if (fd < 0)
        return 0;
    struct stat sb;
    int ok = fstatat(fd, "state", &sb, AT_SYMLINK_NOFOLLOW) == 0 ||
             fstatat(fd, "summary.json", &sb, AT_SYMLINK_NOFOLLOW) == 0 ||
             strcmp(name, d->live_job) == 0;
    if (ok && mtime != NULL)
        *mtime = fstat(fd, &sb) == 0 ? (double)sb.st_mtime : 0;
    close(fd);
    return ok;
}

static const char *disk_status(int jobfd)
{
    json_t *s = read_json(jobfd, "summary.json");
    const char *st = "interrupted";
    if (s != NULL) {
        const char *v = json_string_value(json_object_get(s, "status"));
        /* summary.json's status: ok, partial (some shares failed) or failed. */
        st = v != NULL && strcmp(v, "ok") == 0        ? "finished"
             : v != NULL && strcmp(v, "partial") == 0 ? "partial"
                                                      : "failed";
        json_decref(s);
    }
    return st;
}

static json_t *api_jobs(struct ddts_dash *d)
{
    json_t *jobs = json_array();
    /* The live job first (listed before its folder exists), then the most recently changed. */
    if (d->live_job[0] != '\0') {
        char status[16];
        pthread_mutex_lock(&d->live.mu);
        memcpy(status, d->live.status, sizeof status);
        pthread_mutex_unlock(&d->live.mu);
        json_array_append_new(jobs, json_pack("{s:s, s:b, s:s, s:f}", "name", d->live_job, "live",
                                              1, "status", status, "modified", (double)time(NULL)));
    }
    DIR *dir = opendir(d->workdir);
    struct dirent *e;
    while (dir != NULL && (e = readdir(dir)) != NULL) {
        double mtime = 0;
        if (e->d_name[0] == '.' || strcmp(e->d_name, d->live_job) == 0 ||
            !is_job(d, e->d_name, &mtime))
            continue;
        const char *status = "interrupted";
        int fd = open_job(d, e->d_name);
        if (fd >= 0) {
            status = disk_status(fd);
            close(fd);
        }
        json_t *job = json_pack("{s:s, s:b, s:s, s:f}", "name", e->d_name, "live", 0, "status",
                                status, "modified", mtime);
        /* Insertion by modification time, newest first, after the live job. */
        size_t at = d->live_job[0] != '\0' ? 1 : 0;
        while (at < json_array_size(jobs) &&
               json_real_value(json_object_get(json_array_get(jobs, at), "modified")) >= mtime)
            at++;
        json_array_insert_new(jobs, at, job);
    }
    if (dir != NULL)
        closedir(dir);
    return json_pack("{s:o}", "jobs", jobs);
}

/* The job a request names (?job=), else the live one, else the newest; 0 when found. */
static int pick_job(struct ddts_dash *d, const char *param, char *name, size_t cap)
{
    if (param != NULL) {
        if (!is_job(d, param, NULL))
            return -1;
        snprintf(name, cap, "%s", param);
        return 0;
    }
    if (d->live_job[0] != '\0') {
        snprintf(name, cap, "%s", d->live_job);
        return 0;
    }
    json_t *jobs = api_jobs(d);
    const char *first = json_string_value(
        json_object_get(json_array_get(json_object_get(jobs, "jobs"), 0), "name"));
    if (first != NULL)
        snprintf(name, cap, "%s", first);
    json_decref(jobs);
    return first != NULL ? 0 : -1;
}

/* ---- /api/job ----------------------------------------------------------------- */

/* Appends the result files under `rel` (a folder of the job, "" for the top) to `files`. */
static void list_files(int jobfd, const char *rel, int depth, json_t *files)
{
    int fd = rel[0] ? -1 : dup(jobfd);
    if (rel[0]) {
        char buf[DDTS_DASH_MAX_URL_BYTES + 1];
        snprintf(buf, sizeof buf, "%s", rel);
        int dir = dup(jobfd);
        char *p = buf;
        while (dir >= 0 && p != NULL) {
            char *slash = strchr(p, '/');
            if (slash != NULL)
                *slash = '\0';
            int next = openat(dir, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            close(dir);
            dir = next;
            p = slash != NULL ? slash + 1 : NULL;
        }
        fd = dir;
    }
    DIR *dir = fd >= 0 ? fdopendir(fd) : NULL;
    if (dir == NULL) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *e;
    while ((e = readdir(dir)) != NULL && json_array_size(files) < MAX_FILES) {
        if (e->d_name[0] == '.')
            continue;
        char path[DDTS_DASH_MAX_URL_BYTES + 1];
        int len = snprintf(path, sizeof path, "%s%s%s", rel, rel[0] ? "/" : "", e->d_name);
        if (len <= 0 || (size_t)len >= sizeof path)
            continue;
        struct stat sb;
        if (fstatat(dirfd(dir), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
            continue;
        if (S_ISDIR(sb.st_mode) && depth > 0 &&
            (rel[0] || strcmp(e->d_name, "clients") == 0 || strcmp(e->d_name, "global") == 0))
            list_files(jobfd, path, depth - 1, files);
        else if (S_ISREG(sb.st_mode) && ddts__dash_check_path(path) == 0)
            json_array_append_new(
                files, json_pack("{s:s, s:I}", "path", path, "bytes", (json_int_t)sb.st_size));
    }
    closedir(dir);
}

static int cmp_path(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "path"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "path"));
    return strcmp(x, y);
}

static json_t *sorted_files(int jobfd)
{
    json_t *files = json_array();
    list_files(jobfd, "", 3, files);
    size_t n = json_array_size(files);
    json_t **items = ddts_mallocarray(n ? n : 1, sizeof(json_t *));
    if (items == NULL)
        return files;
    for (size_t i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(files, i));
    qsort(items, n, sizeof(json_t *), cmp_path);
    json_array_clear(files);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(files, items[i]);
    ddts_free(items);
    return files;
}

static const char *level_str(enum ddts_log_level l)
{
    return l == DDTS_LOG_ERROR ? "error" : l == DDTS_LOG_WARN ? "warn" : "info";
}

/* events.log of a job on disk: "YYYY-MM-DDTHH:MM:SSZ message" lines, the newest kept. */
static json_t *disk_events(int jobfd)
{
    json_t *events = json_array();
    char *text = read_small(jobfd, "events.log", NULL);
    for (char *line = text, *next; line != NULL && *line; line = next) {
        next = strchr(line, '\n');
        if (next != NULL)
            *next++ = '\0';
        struct tm tm;
        memset(&tm, 0, sizeof tm);
        const char *msg = strptime(line, "%Y-%m-%dT%H:%M:%SZ ", &tm);
        if (msg == NULL)
            continue;
        const char *level = strstr(msg, "failed") != NULL ? "error" : "warn";
        json_array_append_new(events, json_pack("{s:f, s:s, s:o}", "t", (double)timegm(&tm),
                                                "level", level, "msg", peer_text(msg)));
        if (json_array_size(events) > DDTS_DASH_MAX_EVENTS)
            json_array_remove(events, 0);
    }
    ddts_free(text);
    return events;
}

/* "round N" of the server's state file (rounds saved), or 0. */
static json_int_t disk_rounds(int jobfd)
{
    char *text = read_small(jobfd, "state", NULL);
    json_int_t r = 0;
    const char *p = text != NULL ? strstr(text, "\nround ") : NULL;
    if (p != NULL)
        r = (json_int_t)strtoll(p + 7, NULL, 10);
    ddts_free(text);
    return r;
}

static json_t *api_job(struct ddts_dash *d, const char *job, int jobfd,
                       const struct ddts__dash_snapshot *s)
{
    json_t *summary = read_json(jobfd, "summary.json");
    json_t *settings = NULL, *events, *rounds = json_array();
    json_int_t n_rounds = 0;
    double started = NAN;
    const char *status;
    if (s != NULL) {
        settings = d->settings_json != NULL ? json_loads(d->settings_json, 0, NULL) : NULL;
        events = json_array();
        for (size_t i = 0; i < s->n_events; i++)
            json_array_append_new(events, json_pack("{s:f, s:s, s:o}", "t", s->events[i].t, "level",
                                                    level_str(s->events[i].level), "msg",
                                                    peer_text(s->events[i].msg)));
        for (size_t i = 0; i < s->n_rounds; i++)
            json_array_append_new(rounds,
                                  json_pack("{s:I, s:f}", "round", (json_int_t)s->rounds[i].round,
                                            "t", s->rounds[i].t));
        n_rounds = (json_int_t)s->n_rounds_total;
        started = s->started;
        status = s->status;
    } else {
        settings = json_incref(json_object_get(summary, "settings"));
        events = disk_events(jobfd);
        n_rounds = disk_rounds(jobfd);
        status = disk_status(jobfd);
    }
    if (!json_is_object(settings)) {
        json_decref(settings);
        settings = json_null();
    }
    return json_pack("{s:s, s:b, s:s, s:o, s:f, s:o, s:{s:I, s:o}, s:o, s:o, s:o}", "name", job,
                     "live", s != NULL, "status", status, "started", num(started), "now",
                     s != NULL ? s->now : (double)time(NULL), "settings", settings, "rounds",
                     "count", n_rounds, "recent", rounds, "events", events, "files",
                     sorted_files(jobfd), "summary", summary != NULL ? summary : json_null());
}

/* ---- /api/clients ----------------------------------------------------------- */

static json_t *live_client(const struct ddts__dash_row *r, double mono_now)
{
    const struct ddts_wire_progress *p = &r->progress;
    int has = r->has_progress != 0;
    int running = r->state == DDTS_CLIENT_TRAINING || r->state == DDTS_CLIENT_SYNCING;
    struct ddts_server_client c = {
        .has_progress = r->has_progress, .progress = r->progress, .progress_at = r->progress_at};
    double frac = has && p->total > 0 ? (double)p->done / (double)p->total : NAN;
    json_t *o = json_pack("{s:s, s:s, s:s, s:I}", "name", r->name, "address", r->address, "state",
                          ddts_client_state_str(r->state), "share", (json_int_t)r->share);
    json_object_set_new(o, "fold", has && p->n_folds ? json_integer(p->fold) : json_null());
    json_object_set_new(o, "folds", has && p->n_folds ? json_integer(p->n_folds) : json_null());
    json_object_set_new(o, "epoch", has ? json_integer(p->epoch) : json_null());
    json_object_set_new(o, "epochs", has ? json_integer(p->epochs) : json_null());
    json_object_set_new(o, "progress", num(frac));
    json_object_set_new(o, "loss", num(has ? p->loss : NAN));
    json_object_set_new(o, "accuracy", num(has ? p->accuracy : NAN));
    json_object_set_new(o, "samples_per_s", num(has && running ? p->samples_per_s : NAN));
    json_object_set_new(o, "eta_s", num(running ? ddts_server_client_eta(&c, mono_now) : NAN));
    json_object_set_new(o, "error", r->error[0] ? peer_text(r->error) : json_null());
    return o;
}

/* The history.csv files of a client on disk: "clients/NAME/history.csv", else its folds. */
static size_t client_histories(int jobfd, const char *name, struct ddts_csv_history **h, int *folds,
                               size_t max)
{
    char rel[256];
    folds[0] = 0;
    if (ddts_format(rel, sizeof rel, NULL, "clients/%s/history.csv", name) != DDTS_OK)
        return 0; /* a name too long to be a client's (checked by the caller) */
    h[0] = read_history(jobfd, rel);
    if (h[0] != NULL)
        return 1;
    size_t n = 0;
    for (int f = 1; n < max && f <= (int)DDTS_MAX_PROGRESS_FOLDS; f++) {
        if (ddts_format(rel, sizeof rel, NULL, "clients/%s/fold_%d/history.csv", name, f) !=
            DDTS_OK)
            break;
        struct ddts_csv_history *one = read_history(jobfd, rel);
        if (one == NULL)
            break;
        h[n] = one;
        folds[n++] = f;
    }
    return n;
}

static double hist_value(const struct ddts_csv_history *h, const char *key)
{
    long c = ddts_csv_history_column(h, key);
    if (c < 0 || h->n_epochs == 0)
        return NAN;
    return h->values[(h->n_epochs - 1) * h->n_keys + (size_t)c];
}

/* A client of a job on disk: its uploaded results. */
static json_t *disk_client(int jobfd, const char *job_dir, const char *name)
{
    struct ddts_csv_history *h[64];
    int folds[64];
    size_t n = client_histories(jobfd, name, h, folds, 64);
    /* A client's upload holds error.log when its training failed (src/train/trainer.c). */
    char rel[256];
    struct stat sb;
    int failed = ddts_format(rel, sizeof rel, NULL, "clients/%s/error.log", name) == DDTS_OK &&
                 fstatat(jobfd, rel, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    int done =
        n > 0 || (ddts_format(rel, sizeof rel, NULL, "clients/%s/summary.json", name) == DDTS_OK &&
                  fstatat(jobfd, rel, &sb, AT_SYMLINK_NOFOLLOW) == 0);
    const char *state = failed ? "failed" : done ? "done" : "incomplete";
    json_t *o = json_pack("{s:s, s:n, s:s, s:n}", "name", name, "address", "state", state, "share");
    const struct ddts_csv_history *last = n > 0 ? h[n - 1] : NULL;
    json_object_set_new(o, "fold",
                        n > 0 && folds[n - 1] ? json_integer(folds[n - 1]) : json_null());
    json_object_set_new(o, "folds",
                        n > 0 && folds[n - 1] ? json_integer((json_int_t)n) : json_null());
    json_object_set_new(o, "epoch",
                        last && last->n_epochs ? json_integer((json_int_t)last->n_epochs)
                                               : json_null());
    json_object_set_new(o, "epochs",
                        last && last->n_epochs ? json_integer((json_int_t)last->n_epochs)
                                               : json_null());
    json_object_set_new(o, "progress", last != NULL ? json_real(1.0) : json_null());
    json_object_set_new(o, "loss", num(last ? hist_value(last, "loss") : NAN));
    json_object_set_new(o, "accuracy", num(last ? hist_value(last, "accuracy") : NAN));
    json_object_set_new(o, "samples_per_s", json_null());
    json_object_set_new(o, "eta_s", json_null());
    /* Why it failed: the first "error:" line of its error.log (a regular file, not a link). */
    char reason[256] = "", dir[4200];
    if (failed && job_dir[0] != '\0' &&
        ddts_format(rel, sizeof rel, NULL, "clients/%s/error.log", name) == DDTS_OK &&
        ddts_format(dir, sizeof dir, NULL, "%s/clients/%s", job_dir, name) == DDTS_OK &&
        fstatat(jobfd, rel, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(sb.st_mode) &&
        ddts_error_log_reason(dir, reason, sizeof reason))
        json_object_set_new(o, "error", peer_text(reason));
    else
        json_object_set_new(o, "error", json_null());
    for (size_t i = 0; i < n; i++)
        ddts_csv_history_destroy(h[i]);
    return o;
}

static json_t *api_clients(const struct ddts_dash *d, const char *job, int jobfd,
                           const struct ddts__dash_snapshot *s)
{
    char job_dir[4200];
    if (ddts_format(job_dir, sizeof job_dir, NULL, "%s/%s", d->workdir, job) != DDTS_OK)
        job_dir[0] = '\0'; /* no error texts from disk (the job's folder was opened by fd) */
    json_t *list = json_array();
    if (s != NULL) {
        double mono = ddts_now();
        for (size_t i = 0; i < s->n_rows; i++)
            json_array_append_new(list, live_client(&s->rows[i], mono));
    } else {
        int cfd = openat(jobfd, "clients", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *dir = cfd >= 0 ? fdopendir(cfd) : NULL;
        if (dir == NULL && cfd >= 0)
            close(cfd);
        struct dirent *e;
        struct stat sb;
        while (dir != NULL && (e = readdir(dir)) != NULL &&
               json_array_size(list) < 4 * DDTS_MAX_CLIENTS)
            if (e->d_name[0] != '.' && ddts_wire_check_name(e->d_name, NULL) == DDTS_OK &&
                fstatat(cfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode))
                json_array_append_new(list, disk_client(jobfd, job_dir, e->d_name));
        if (dir != NULL)
            closedir(dir);
    }
    return json_pack("{s:s, s:o}", "job", job, "clients", list);
}

/* ---- /api/history ------------------------------------------------------------- */

/* A history.csv as columns; its 0-based epochs (Keras' CSVLogger) become 1-based, as live. */
static json_t *history_fold(const struct ddts_csv_history *h, int fold)
{
    json_t *cols = json_object();
    json_t *ep = json_array();
    for (size_t r = 0; r < h->n_epochs; r++)
        json_array_append_new(ep, json_integer((json_int_t)h->epochs[r] + 1));
    json_object_set_new(cols, "epoch", ep);
    for (size_t k = 0; k < h->n_keys; k++) {
        json_t *v = json_array();
        for (size_t r = 0; r < h->n_epochs; r++)
            json_array_append_new(v, num(h->values[r * h->n_keys + k]));
        json_object_set_new(cols, h->keys[k], v);
    }
    return json_pack("{s:i, s:o}", "fold", fold, "columns", cols);
}

/*
 * A live point's figure `name` (column k of the client's keys, -1: none):
 * from its EPOCH row when it has one, else (a protocol-2 client, or the row
 * not in yet) the PROGRESS figures for "loss" and "accuracy".
 */
static double live_value(const struct ddts__dash_point *p, int k, const char *name)
{
    if (p->has_row && k >= 0 && !isnan(p->values[k]))
        return p->values[k];
    if (strcmp(name, "loss") == 0)
        return p->loss;
    if (strcmp(name, "accuracy") == 0)
        return p->accuracy;
    return NAN;
}

/* The live epoch ends as history.csv columns: every column of the EPOCH rows (validation
 * included), else "loss" (and "accuracy") from PROGRESS; one value per epoch, null: none. */
static json_t *live_folds(const struct ddts__dash_point *pts, size_t n,
                          const struct ddts__dash_keys *keys)
{
    json_t *folds = json_array();
    for (size_t i = 0; i < n;) {
        uint32_t f = pts[i].fold;
        size_t end = i;
        int any_acc = 0;
        while (end < n && pts[end].fold == f)
            any_acc |= isfinite(pts[end++].accuracy);
        json_t *cols = json_object(), *ep = json_array();
        for (size_t j = i; j < end; j++)
            json_array_append_new(ep, json_integer(pts[j].epoch));
        json_object_set_new(cols, "epoch", ep);
        /* The columns: the rows' names; a client that sends none (protocol 2) has
         * its PROGRESS figures, loss and (when the model has it) accuracy. */
        const char *names[DDTS_MAX_EPOCH_FIGURES];
        int index[DDTS_MAX_EPOCH_FIGURES];
        size_t nc = 0;
        for (size_t k = 0; k < keys->n; k++) {
            names[nc] = keys->names[k];
            index[nc++] = (int)k;
        }
        if (nc == 0) {
            names[nc] = "loss";
            index[nc++] = -1;
            if (any_acc) {
                names[nc] = "accuracy";
                index[nc++] = -1;
            }
        }
        for (size_t k = 0; k < nc; k++) {
            json_t *v = json_array();
            for (size_t j = i; j < end; j++)
                json_array_append_new(v, num(live_value(&pts[j], index[k], names[k])));
            json_object_set_new(cols, names[k], v);
        }
        json_array_append_new(folds, json_pack("{s:i, s:o}", "fold", (int)f, "columns", cols));
        i = end;
    }
    return folds;
}

/* The global model's live curve: global/history.csv's columns, from ddts_dash_on_global. */
static json_t *live_global(const struct ddts__dash_global *g, size_t n)
{
    json_t *ep = json_array(), *loss = json_array(), *acc = json_array();
    int any_acc = 0;
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(ep, json_integer((json_int_t)g[i].epoch));
        json_array_append_new(loss, num(g[i].loss));
        json_array_append_new(acc, num(g[i].accuracy));
        any_acc |= isfinite(g[i].accuracy);
    }
    json_t *cols = json_pack("{s:o, s:o}", "epoch", ep, "val_loss", loss);
    if (any_acc)
        json_object_set_new(cols, "val_accuracy", acc);
    else
        json_decref(acc);
    return json_pack("[{s:i, s:o}]", "fold", 0, "columns", cols);
}

static json_t *api_history(struct ddts_dash *d, const char *job, int jobfd, const char *client,
                           int live, unsigned *status)
{
    json_t *folds = json_array();
    const char *source = "none";
    if (strcmp(client, GLOBAL_NAME) == 0) {
        struct ddts_csv_history *h = read_history(jobfd, "global/history.csv");
        if (h != NULL) {
            json_array_append_new(folds, history_fold(h, 0));
            source = "history.csv";
        } else if (live) {
            struct ddts__dash_global *g = NULL;
            size_t ng = 0;
            if (ddts__dash_global_take(&d->live, &g, &ng) == DDTS_OK && ng > 0) {
                json_decref(folds);
                folds = live_global(g, ng);
                source = "live";
            }
            ddts_free(g);
        }
        ddts_csv_history_destroy(h);
    } else if (ddts_wire_check_name(client, NULL) != DDTS_OK) {
        json_decref(folds);
        *status = 400;
        return json_pack("{s:s}", "error", "client: not a client name");
    } else {
        struct ddts_csv_history *h[64];
        int fold_no[64];
        size_t n = client_histories(jobfd, client, h, fold_no, 64);
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(folds, history_fold(h[i], fold_no[i]));
            ddts_csv_history_destroy(h[i]);
        }
        if (n > 0) {
            source = "history.csv";
        } else if (live) {
            struct ddts__dash_point *pts = NULL;
            size_t np = 0;
            struct ddts__dash_keys *keys = ddts_malloc(sizeof *keys); /* 1 KiB */
            if (keys != NULL &&
                ddts__dash_points_take(&d->live, client, &pts, &np, keys) == DDTS_OK && np > 0) {
                json_decref(folds);
                folds = live_folds(pts, np, keys);
                source = "live";
            }
            ddts_free(keys);
            ddts_free(pts);
        }
    }
    return json_pack("{s:s, s:s, s:s, s:o}", "job", job, "client", client, "source", source,
                     "folds", folds);
}

/* ---- routing -------------------------------------------------------------------- */

static void reply_json(struct ddts__dash_reply *r, unsigned status, json_t *j)
{
    r->status = status;
    r->type = "application/json";
    /* Compact, every non-ASCII character escaped: the page never sees raw bytes. */
    r->body = j != NULL ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(j);
    if (r->body == NULL) {
        r->status = 500;
        r->body = NULL;
        r->n = 0;
        return;
    }
    /* json_dumps allocates with malloc; the reply is freed with ddts_free (free). */
    r->n = strlen(r->body);
}

static void reply_error(struct ddts__dash_reply *r, unsigned status, const char *msg)
{
    reply_json(r, status, json_pack("{s:s}", "error", msg));
}

static const char *content_type(const char *path)
{
    const char *dot = strrchr(path, '.');
    if (strcmp(dot, ".png") == 0)
        return "image/png";
    if (strcmp(dot, ".json") == 0)
        return "application/json";
    if (strcmp(dot, ".csv") == 0)
        return "text/csv; charset=utf-8";
    if (strcmp(dot, ".txt") == 0 || strcmp(dot, ".log") == 0)
        return "text/plain; charset=utf-8";
    return "application/octet-stream";
}

void ddts__dash_route(struct ddts_dash *d, const char *path,
                      const char *(*arg)(void *cls, const char *key), void *cls,
                      struct ddts__dash_reply *r)
{
    memset(r, 0, sizeof *r);
    r->fd = -1;
    if (strcmp(path, "/api/jobs") == 0) {
        reply_json(r, 200, api_jobs(d));
        return;
    }
    int is_api = strncmp(path, "/api/", 5) == 0, is_file = strncmp(path, "/files/", 7) == 0;
    if (!is_api && !is_file) {
        reply_error(r, 404, "not found");
        return;
    }
    char job[DDTS_MAX_NAME_BYTES + 1];
    if (pick_job(d, arg(cls, "job"), job, sizeof job) != 0) {
        reply_error(r, 404, "no such job");
        return;
    }
    int jobfd = open_job(d, job);
    int live = strcmp(job, d->live_job) == 0;
    if (jobfd < 0 && live) {
        /* The live job before its folder exists (or if it cannot be opened). */
        jobfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    if (jobfd < 0) {
        reply_error(r, 404, "no such job");
        return;
    }
    struct ddts__dash_snapshot snap;
    memset(&snap, 0, sizeof snap);
    int need_snap = live && (strcmp(path, "/api/job") == 0 || strcmp(path, "/api/clients") == 0);
    if (need_snap && ddts__dash_snapshot_take(&d->live, &snap) != DDTS_OK) {
        reply_error(r, 500, "out of memory");
        close(jobfd);
        return;
    }
    if (strcmp(path, "/api/job") == 0) {
        reply_json(r, 200, api_job(d, job, jobfd, need_snap ? &snap : NULL));
    } else if (strcmp(path, "/api/clients") == 0) {
        reply_json(r, 200, api_clients(d, job, jobfd, need_snap ? &snap : NULL));
    } else if (strcmp(path, "/api/history") == 0) {
        const char *client = arg(cls, "client");
        unsigned status = 200;
        if (client == NULL)
            reply_error(r, 400, "client: missing (a client's name, or " GLOBAL_NAME ")");
        else {
            json_t *j = api_history(d, job, jobfd, client, live, &status);
            reply_json(r, status, j);
        }
    } else if (is_file) {
        off_t size = 0;
        const char *rel = path + 7;
        int fd = ddts__dash_check_path(rel) == 0 ? open_result(jobfd, rel, &size) : -1;
        if (fd < 0) {
            reply_error(r, 404, "no such result file");
        } else {
            r->status = 200;
            r->type = content_type(rel);
            r->fd = fd;
            r->n = (size_t)size;
        }
    } else {
        reply_error(r, 404, "not found");
    }
    if (need_snap)
        ddts__dash_snapshot_deinit(&snap);
    close(jobfd);
}
