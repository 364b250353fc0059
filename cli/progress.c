/*
 * Progress on the terminal: Keras' per-epoch bar refreshed in place, the
 * server's table of clients redrawn in place, transfers. On a terminal lines
 * are redrawn at most REFRESH_S apart; otherwise only the lines that end an
 * epoch (or a transfer) are printed, one per line, as Keras does with
 * verbose=2. The text itself comes from the library's pure formatters
 * (include/ddts/report.h).
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

#define REFRESH_S 0.1

void cli_progress_init(struct cli_progress *p, FILE *fp)
{
    memset(p, 0, sizeof *p);
    p->fp = fp;
    p->tty = isatty(fileno(fp)) != 0;
}

void cli_progress_begin_epoch(struct cli_progress *p, int epoch, int epochs)
{
    char line[64];
    ddts_progress_epoch_header(line, sizeof line, epoch, epochs);
    fprintf(p->fp, "%s\n", line);
    fflush(p->fp);
    p->start = ddts_now();
    p->last = 0;
    p->drawn = false;
}

void cli_progress_update(struct cli_progress *p, int64_t done, int64_t total,
                         const struct ddts_metric *metrics, size_t n_metrics)
{
    double now = ddts_now();
    if (!p->tty || (p->drawn && now - p->last < REFRESH_S))
        return;
    char line[1024];
    ddts_progress_format(line, sizeof line, done, total, now - p->start, metrics, n_metrics);
    /* Carriage return, the line, then erase what an older, longer line left. */
    fprintf(p->fp, "\r%s\033[K", line);
    fflush(p->fp);
    p->last = now;
    p->drawn = true;
}

void cli_progress_end_epoch(struct cli_progress *p, int64_t total,
                            const struct ddts_metric *metrics, size_t n_metrics)
{
    char line[1024];
    ddts_progress_format(line, sizeof line, total, total, ddts_now() - p->start, metrics,
                         n_metrics);
    if (p->tty)
        fprintf(p->fp, "\r%s\033[K\n", line);
    else
        fprintf(p->fp, "%s\n", line);
    fflush(p->fp);
    p->drawn = false;
}

void cli_transfer_update(struct cli_progress *p, const char *label, uint64_t done, uint64_t total)
{
    double now = ddts_now();
    if (p->start == 0)
        p->start = now;
    bool finished = total > 0 && done >= total;
    if (!finished && (!p->tty || (p->drawn && now - p->last < REFRESH_S)))
        return;
    char line[512];
    ddts_transfer_format(line, sizeof line, label, done, total, now - p->start);
    if (p->tty)
        fprintf(p->fp, "\r%s\033[K%s", line, finished ? "\n" : "");
    else
        fprintf(p->fp, "%s\n", line);
    fflush(p->fp);
    p->last = now;
    p->drawn = !finished;
    if (finished)
        p->start = 0;
}

void cli_table_init(struct cli_table *t, FILE *fp)
{
    memset(t, 0, sizeof *t);
    t->fp = fp;
    const char *term = getenv("TERM");
    t->tty = isatty(fileno(fp)) != 0 && term != NULL && strcmp(term, "dumb") != 0;
}

void cli_table_refresh(struct cli_table *t, const struct ddts_client_row *rows, size_t n_rows,
                       bool force)
{
    double now = ddts_now();
    if (!t->tty && !force)
        return;
    if (t->tty && !force && t->lines_drawn > 0 && now - t->last < 0.5)
        return;
    size_t need = ddts_client_table_format(NULL, 0, rows, n_rows, NULL) + 1;
    char *buf = ddts_malloc(need);
    if (buf == NULL)
        return;
    size_t lines = 0;
    ddts_client_table_format(buf, need, rows, n_rows, &lines);
    if (t->tty && t->lines_drawn > 0)
        fprintf(t->fp, "\033[%zuA\r\033[J", t->lines_drawn); /* up, then clear below */
    fputs(buf, t->fp);
    fflush(t->fp);
    ddts_free(buf);
    t->lines_drawn = t->tty ? lines : 0;
    t->last = now;
}

void cli_table_forget(struct cli_table *t)
{
    t->lines_drawn = 0;
}
