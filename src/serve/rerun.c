/*
 * A job that already exists in the work folder: found for --collect, and
 * compared with the settings of a new run so that a rerun with other
 * settings is refused instead of silently resuming with the old ones.
 *
 * WORKDIR/NAME/job.json records the job's settings (every setting, as a job
 * file) once the server listens; WORKDIR/NAME/state (src/net/server.c) marks
 * a job that was served.
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddts/fs.h"
#include "serve.h"

static int is_job(const char *workdir, const char *name)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/state", workdir, name);
    return access(path, F_OK) == 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum ddts_status ddts_serve_list_jobs(const char *workdir, char ***names, size_t *n,
                                      struct ddts_error *err)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(workdir);
    if (d == NULL)
        return ddts_error_set(err, DDTS_ENOTFOUND, "%s: no such folder", workdir);
    size_t cap = 0;
    enum ddts_status st = DDTS_OK;
    struct dirent *e;
    while (st == DDTS_OK && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' || !is_job(workdir, e->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 8;
            char **bigger = ddts_realloc(*names, cap * sizeof *bigger);
            if (bigger == NULL) {
                st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
                break;
            }
            *names = bigger;
        }
        (*names)[*n] = ddts_strdup(e->d_name);
        if ((*names)[*n] == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        else
            (*n)++;
    }
    closedir(d);
    if (st != DDTS_OK) {
        ddts_serve_jobs_free(*names, *n);
        *names = NULL;
        *n = 0;
        return st;
    }
    if (*n > 1)
        qsort(*names, *n, sizeof **names, cmp_name);
    return DDTS_OK;
}

void ddts_serve_jobs_free(char **names, size_t n)
{
    for (size_t i = 0; names != NULL && i < n; i++)
        ddts_free(names[i]);
    ddts_free(names);
}

/* "a, b, c" of names into buf. */
static void join_names(char *const *names, size_t n, char *buf, size_t cap)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%s", i ? ", " : "", names[i]);
}

/* The recorded settings of WORKDIR/NAME (job.json) into *old; DDTS_ENOTFOUND when none. */
static enum ddts_status read_recorded(const struct ddts_job *job, struct ddts_job *old,
                                      struct ddts_error *err)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/%s/job.json", job->workdir, job->name);
    if (access(path, F_OK) != 0)
        return DDTS_ENOTFOUND;
    char *text = NULL;
    size_t n = 0;
    enum ddts_status st = ddts_read_file(path, 1 << 20, &text, &n, err);
    if (st != DDTS_OK)
        return st;
    ddts_job_init_defaults(old);
    st = ddts_job_from_json(old, text, n, err);
    ddts_free(text);
    if (st != DDTS_OK)
        ddts_error_prefix(err, "%s: ", path);
    return st;
}

/* Takes the recorded settings, keeping this run's server-side ones (address, passphrase...). */
static void adopt(struct ddts_job *job, const struct ddts_job *old)
{
    struct ddts_job keep = *job;
    *job = *old;
    snprintf(job->host, sizeof job->host, "%s", keep.host);
    job->port = keep.port;
    job->collect = keep.collect;
    job->keep_serving = keep.keep_serving;
    job->resume = keep.resume;
    snprintf(job->passphrase_file, sizeof job->passphrase_file, "%s", keep.passphrase_file);
    snprintf(job->workdir, sizeof job->workdir, "%s", keep.workdir);
    snprintf(job->name, sizeof job->name, "%s", keep.name);
    job->ban_after = keep.ban_after;
    job->client_timeout = keep.client_timeout;
    job->io_timeout = keep.io_timeout;
    job->threads = keep.threads;
    job->set_mask = keep.set_mask | old->set_mask;
}

enum ddts_status ddts__serve_find_collect(struct ddts_job *job, struct ddts_error *err)
{
    char **names = NULL;
    size_t n = 0;
    enum ddts_status st = ddts_serve_list_jobs(job->workdir, &names, &n, err);
    if (st != DDTS_OK)
        return st;
    char list[1024];
    join_names(names, n, list, sizeof list);
    if (n == 0) {
        st = ddts_error_set(err, DDTS_ENOTFOUND, "--collect: %s holds no job", job->workdir);
    } else if (ddts_job_is_set(job, "name")) {
        if (!is_job(job->workdir, job->name))
            st = ddts_error_set(err, DDTS_ENOTFOUND, "--collect: no job '%s' in %s (it holds %s)",
                                job->name, job->workdir, list);
    } else if (n > 1) {
        st = ddts_error_set(err, DDTS_EINVAL,
                            "--collect: %s holds %zu jobs (%s): choose one with --name",
                            job->workdir, n, list);
    } else {
        snprintf(job->name, sizeof job->name, "%s", names[0]);
    }
    ddts_serve_jobs_free(names, n);
    if (st != DDTS_OK)
        return st;
    struct ddts_job old;
    st = read_recorded(job, &old, err);
    if (st == DDTS_OK)
        adopt(job, &old);
    if (st != DDTS_ENOTFOUND)
        return st;
    /* A job from before job.json: its shares are those of its state file. */
    char path[4400], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/%s/state", job->workdir, job->name);
    if (ddts_read_file(path, 64u << 20, &text, &len, NULL) == DDTS_OK) {
        const char *p = strstr(text, "\nn_shards ");
        if (p != NULL && job->clients <= 0)
            job->clients = (int)strtol(p + 10, NULL, 10);
        ddts_free(text);
    }
    return DDTS_OK;
}

enum ddts_status ddts__serve_check_rerun(struct ddts_job *job, struct ddts_error *err)
{
    struct ddts_job old;
    enum ddts_status st = read_recorded(job, &old, err);
    if (st == DDTS_ENOTFOUND)
        return DDTS_OK; /* a new job (or one from before job.json: as it was) */
    if (st != DDTS_OK)
        return st;
    /* A seed drawn at random for this run is not a difference: the job's stays. */
    if (!ddts_job_is_set(job, "seed"))
        job->seed = old.seed;
    if (job->resume) {
        adopt(job, &old);
        return DDTS_OK;
    }
    char diff[DDTS_ERROR_MSG_MAX / 2];
    if (ddts_job_differences(&old, job, diff, sizeof diff) == 0)
        return DDTS_OK;
    return ddts_error_set(err, DDTS_EEXIST,
                          "job '%s' in %s was made with other settings: %s. Run with --name NEW "
                          "for a new job, or with --resume to continue this one with its own "
                          "settings",
                          job->name, job->workdir, diff);
}

void ddts__serve_record(const struct ddts_serve *sv)
{
    char *json = NULL;
    struct ddts_error err;
    char path[4400];
    snprintf(path, sizeof path, "%s/job.json", sv->job_dir);
    if (access(path, F_OK) == 0)
        return;
    if (ddts_job_to_json(&sv->job, DDTS_JOB_JSON_ALL, &json, &err) != DDTS_OK ||
        ddts_write_file_atomic(path, json, strlen(json), &err) != DDTS_OK)
        ddts_log(&sv->log, DDTS_LOG_WARN, "job.json: %s", err.msg);
    ddts_free(json);
}
