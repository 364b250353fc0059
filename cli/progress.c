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
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli.h"

#define REFRESH_S 0.1
/* The live table is redrawn at most 4 times a second. */
#define TABLE_REFRESH_S 0.25

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

/* The terminal's size, 80 x 24 when unknown. */
static void term_size(FILE *fp, int *cols, int *rows)
{
    struct winsize ws;
    *cols = 80;
    *rows = 24;
    if (ioctl(fileno(fp), TIOCGWINSZ, &ws) == 0) {
        if (ws.ws_col > 0)
            *cols = ws.ws_col;
        if (ws.ws_row > 0)
            *rows = ws.ws_row;
    }
}

void cli_table_refresh(struct cli_table *t, const struct ddts_client_row *rows, size_t n_rows,
                       bool force)
{
    double now = ddts_now();
    if (!t->tty && !force)
        return;
    if (t->tty && !force && t->lines_drawn > 0 && now - t->last < TABLE_REFRESH_S)
        return;
    int cols = 80, height = 24;
    if (t->tty)
        term_size(t->fp, &cols, &height);
    /* Moving the cursor up works within the screen only: a table taller than
     * the terminal shows its first clients and a count of the others. */
    size_t shown = n_rows, hidden = 0;
    if (t->tty && height >= 4 && n_rows + 2 > (size_t)height - 1) {
        shown = (size_t)height - 4;
        hidden = n_rows - shown;
    }
    size_t need = ddts_client_table_format_width(NULL, 0, rows, shown, cols, NULL) + 64;
    char *buf = ddts_malloc(need);
    if (buf == NULL)
        return;
    size_t len = ddts_client_table_format_width(buf, need, rows, shown, cols, NULL);
    if (hidden > 0)
        snprintf(buf + len, need - len, "... and %zu more clients\n", hidden);
    /* A line longer than the terminal is wide takes several rows of the screen. */
    size_t screen_rows = 0;
    for (const char *p = buf; *p != '\0';) {
        const char *nl = strchr(p, '\n');
        size_t n = nl != NULL ? (size_t)(nl - p) : strlen(p);
        screen_rows += n == 0 ? 1 : (n + (size_t)cols - 1) / (size_t)cols;
        p += n + (nl != NULL);
    }
    cli_table_clear(t);
    fputs(buf, t->fp);
    fflush(t->fp);
    ddts_free(buf);
    t->lines_drawn = t->tty ? screen_rows : 0;
    t->last = now;
}

void cli_table_clear(struct cli_table *t)
{
    if (t->tty && t->lines_drawn > 0)
        fprintf(t->fp, "\033[%zuA\r\033[J", t->lines_drawn); /* up, then clear below */
    t->lines_drawn = 0;
}

void cli_table_forget(struct cli_table *t)
{
    t->lines_drawn = 0;
}
