/* summary.json and summary.txt of a job: what ran, how it ended, where the results are. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ddts/ddts.h"
#include "ddts/fs.h"
#include "ddts/report.h"

static void json_str(FILE *fp, const char *s)
{
    if (s == NULL) {
        fputs("null", fp);
        return;
    }
    fputc('"', fp);
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '"' || *p == '\\')
            fprintf(fp, "\\%c", *p);
        else if (*p == '\n')
            fputs("\\n", fp);
        else if (*p < 0x20)
            fprintf(fp, "\\u%04x", *p);
        else
            fputc(*p, fp);
    }
    fputc('"', fp);
}

static void json_num(FILE *fp, double v)
{
    if (!isfinite(v)) {
        fputs("null", fp);
        return;
    }
    char buf[32];
    ddts_format_pyfloat(v, buf);
    fputs(buf, fp);
}

static void json_metrics(FILE *fp, const struct ddts_metric *m, size_t n)
{
    fputc('{', fp);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            fputs(", ", fp);
        json_str(fp, m[i].name);
        fputs(": ", fp);
        json_num(fp, m[i].value);
    }
    fputc('}', fp);
}

static void iso_time(double t, char *buf, size_t cap)
{
    if (!(t > 0)) {
        snprintf(buf, cap, "-");
        return;
    }
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* Trims spaces around settings_json and checks it is braced. */
static bool braced(const char *s, size_t *start, size_t *len)
{
    size_t a = 0, b = strlen(s);
    while (a < b && strchr(" \t\r\n", s[a]) != NULL)
        a++;
    while (b > a && strchr(" \t\r\n", s[b - 1]) != NULL)
        b--;
    *start = a;
    *len = b - a;
    return b - a >= 2 && s[a] == '{' && s[b - 1] == '}';
}

enum ddts_status ddts_summary_write_json(const char *path, const struct ddts_summary *s,
                                         struct ddts_error *err)
{
    size_t sj_start = 0, sj_len = 0;
    if (s->settings_json != NULL && !braced(s->settings_json, &sj_start, &sj_len))
        return ddts_error_set(err, DDTS_EINVAL, "%s: settings are not a JSON object", path);
    struct ddts_atomic_file f;
    enum ddts_status st = ddts_atomic_open(&f, path, err);
    if (st != DDTS_OK)
        return st;
    FILE *fp = f.fp;
    char t0[32], t1[32];
    iso_time(s->started, t0, sizeof t0);
    iso_time(s->finished, t1, sizeof t1);
    fputs("{\n  \"ddts_version\": ", fp);
    json_str(fp, DDTS_VERSION);
    fputs(",\n  \"job\": ", fp);
    json_str(fp, s->job);
    fputs(",\n  \"status\": ", fp);
    json_str(fp, s->status);
    fputs(",\n  \"error\": ", fp);
    json_str(fp, s->error);
    fprintf(fp, ",\n  \"seed\": %llu", (unsigned long long)s->seed);
    fputs(",\n  \"started\": ", fp);
    json_str(fp, t0);
    fputs(",\n  \"finished\": ", fp);
    json_str(fp, t1);
    fputs(",\n  \"duration_s\": ", fp);
    json_num(fp, s->finished > 0 && s->started > 0 ? s->finished - s->started : NAN);
    fputs(",\n  \"settings\": ", fp);
    if (s->settings_json != NULL)
        fwrite(s->settings_json + sj_start, 1, sj_len, fp);
    else
        fputs("null", fp);
    fputs(",\n  \"global\": {\"model\": ", fp);
    json_str(fp, s->global_model);
    fputs(", \"plot\": ", fp);
    json_str(fp, s->plot);
    fputs(", \"final\": ", fp);
    json_metrics(fp, s->global_final, s->n_global_final);
    fputs("},\n  \"clients\": [", fp);
    for (size_t i = 0; i < s->n_clients; i++) {
        const struct ddts_summary_client *c = &s->clients[i];
        fputs(i ? ",\n    {\"name\": " : "\n    {\"name\": ", fp);
        json_str(fp, c->name);
        fputs(", \"address\": ", fp);
        json_str(fp, c->address);
        fputs(", \"state\": ", fp);
        json_str(fp, c->state);
        fprintf(fp, ", \"samples\": %lld, \"epochs_done\": %d, \"dir\": ", (long long)c->samples,
                c->epochs_done);
        json_str(fp, c->dir);
        fputs(", \"final\": ", fp);
        json_metrics(fp, c->final, c->n_final);
        if (c->error != NULL) {
            fputs(", \"error\": ", fp);
            json_str(fp, c->error);
        }
        fputc('}', fp);
    }
    fputs(s->n_clients ? "\n  ]\n}\n" : "]\n}\n", fp);
    return ddts_atomic_commit(&f, err);
}

static void text_metrics(FILE *fp, const struct ddts_metric *m, size_t n)
{
    if (n == 0)
        fputs("-", fp);
    for (size_t i = 0; i < n; i++) {
        if (isfinite(m[i].value))
            fprintf(fp, "%s%s %.4f", i ? ", " : "", m[i].name, m[i].value);
        else
            fprintf(fp, "%s%s -", i ? ", " : "", m[i].name);
    }
}

/* Text from another machine on one line: control characters as \n, \t or \xHH. */
static void text_escaped(FILE *fp, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p != '\0'; p++) {
        if (*p == '\n')
            fputs("\\n", fp);
        else if (*p == '\t')
            fputs("\\t", fp);
        else if (*p < 0x20 || *p == 0x7f)
            fprintf(fp, "\\x%02x", *p);
        else
            fputc(*p, fp);
    }
}

enum ddts_status ddts_summary_write_text(const char *path, const struct ddts_summary *s,
                                         struct ddts_error *err)
{
    struct ddts_atomic_file f;
    enum ddts_status st = ddts_atomic_open(&f, path, err);
    if (st != DDTS_OK)
        return st;
    FILE *fp = f.fp;
    char t0[32], t1[32], d[32];
    iso_time(s->started, t0, sizeof t0);
    iso_time(s->finished, t1, sizeof t1);
    ddts_format_duration(d, sizeof d,
                         s->finished > 0 && s->started > 0 ? s->finished - s->started : NAN);
    fprintf(fp, "Job        %s\n", s->job ? s->job : "-");
    fprintf(fp, "Status     %s%s", s->status ? s->status : "-", s->error ? ": " : "");
    if (s->error != NULL)
        text_escaped(fp, s->error);
    fputc('\n', fp);
    fprintf(fp, "Seed       %llu\n", (unsigned long long)s->seed);
    fprintf(fp, "Started    %s\nFinished   %s (%s)\n", t0, t1, d);
    fprintf(fp, "Global     ");
    text_metrics(fp, s->global_final, s->n_global_final);
    fprintf(fp, "\n");
    if (s->global_model != NULL)
        fprintf(fp, "Model      %s\n", s->global_model);
    if (s->plot != NULL)
        fprintf(fp, "Plot       %s\n", s->plot);
    fprintf(fp, "\n%-16s %-21s %-8s %10s %6s  %s\n", "CLIENT", "ADDRESS", "STATE", "SAMPLES",
            "EPOCHS", "FINAL");
    for (size_t i = 0; i < s->n_clients; i++) {
        const struct ddts_summary_client *c = &s->clients[i];
        fprintf(fp, "%-16s %-21s %-8s %10lld %6d  ", c->name ? c->name : "-",
                c->address ? c->address : "-", c->state ? c->state : "-", (long long)c->samples,
                c->epochs_done);
        text_metrics(fp, c->final, c->n_final);
        fprintf(fp, "%s%s\n", c->dir ? "  in " : "", c->dir ? c->dir : "");
        if (c->error != NULL) {
            fputs("                 failed: ", fp);
            text_escaped(fp, c->error);
            fputc('\n', fp);
        }
    }
    return ddts_atomic_commit(&f, err);
}
