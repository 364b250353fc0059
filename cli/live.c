/*
 * The live view of `ddts server`: the clients of the job's snapshot
 * (ddts_serve_snapshot, include/ddts/serve.h: one row per client, keyed by
 * its persistent id so that a client that reconnects keeps its row).
 *
 * On a terminal the table (cli_table, cli/progress.c) stays at the bottom of
 * the screen, redrawn in place at most 4 times a second; a log line erases
 * it, prints, and draws it again below. Without a terminal nothing is drawn:
 * each client's epoch ends become one log line each, beside the server's
 * usual event lines.
 */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* At most 4 redraws a second; one a second while a client trains (its ETA counts down). */
#define REDRAW_S      0.25
#define TICK_REDRAW_S 1.0

struct cli_live {
    pthread_mutex_t mu;
    struct ddts_logger inner;
    struct cli_table table;
    struct ddts_serve *job; /* the rows come from its snapshot */
    bool dirty;             /* changed since the last draw */
    bool running;           /* a client was training at the last draw */
    bool finished;          /* cli_live_finish: the table stays as it is */
};

struct cli_live *cli_live_create(FILE *fp, const struct ddts_logger *inner)
{
    struct cli_live *lv = ddts_calloc(1, sizeof *lv);
    if (lv == NULL)
        return NULL;
    pthread_mutex_init(&lv->mu, NULL);
    lv->inner = *inner;
    cli_table_init(&lv->table, fp);
    return lv;
}

void cli_live_attach(struct cli_live *lv, struct ddts_serve *job)
{
    if (lv != NULL)
        lv->job = job;
}

void cli_live_destroy(struct cli_live *lv)
{
    if (lv == NULL)
        return;
    pthread_mutex_destroy(&lv->mu);
    ddts_free(lv);
}

/* Draws the table now from the job's snapshot (caller holds mu). */
static void draw_locked(struct cli_live *lv)
{
    if (!lv->table.tty || lv->job == NULL || lv->finished)
        return;
    struct ddts_serve_snapshot snap;
    if (ddts_serve_snapshot(lv->job, &snap, NULL) != DDTS_OK)
        return;
    struct ddts_client_row *rows =
        snap.n_clients > 0 ? ddts_mallocarray(snap.n_clients, sizeof *rows) : NULL;
    if (rows != NULL) {
        lv->running = false;
        for (size_t i = 0; i < snap.n_clients; i++) {
            ddts_serve_client_row(&snap.clients[i], &rows[i]);
            lv->running |= snap.clients[i].state == DDTS_CLIENT_TRAINING;
        }
        cli_table_refresh(&lv->table, rows, snap.n_clients, true);
        lv->dirty = false;
    }
    ddts_free(rows);
    ddts_serve_snapshot_deinit(&snap);
}

static void live_sink(void *userdata, enum ddts_log_level level, const char *msg)
{
    struct cli_live *lv = userdata;
    pthread_mutex_lock(&lv->mu);
    bool shown = lv->table.lines_drawn > 0;
    cli_table_clear(&lv->table);
    if (lv->inner.fn != NULL)
        lv->inner.fn(lv->inner.userdata, level, msg);
    /* The table goes back below the line, now or at the next tick (a burst of
     * log lines does not redraw it for each). */
    if (shown && ddts_now() - lv->table.last >= REDRAW_S)
        draw_locked(lv);
    else if (shown)
        lv->dirty = true;
    pthread_mutex_unlock(&lv->mu);
}

struct ddts_logger cli_live_logger(struct cli_live *lv)
{
    struct ddts_logger l = {live_sink, lv, lv->inner.min};
    return l;
}

/* "client 'alpha' (127.0.0.1): fold 2/5 epoch 3/10 - loss 0.4123 - accuracy 0.8512 - ..." */
static void log_epoch_end(struct cli_live *lv, const struct ddts_server_client *r, double eta)
{
    const struct ddts_wire_progress *p = &r->progress;
    char line[512], t[32];
    size_t n = 0;
    /* A log line may be cut short, but n never passes the end of line. */
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (n < sizeof line) {                                                                     \
            int w_ = snprintf(line + n, sizeof line - n, __VA_ARGS__);                             \
            n = w_ < 0 ? sizeof line : n + (size_t)w_;                                             \
        }                                                                                          \
    } while (0)
    ADD("client '%s' (%s): ", r->name, r->address);
    if (p->n_folds > 0)
        ADD("fold %u/%u ", p->fold, p->n_folds);
    ADD("epoch %u/%u", p->epoch, p->epochs);
    if (isfinite(p->loss))
        ADD(" - loss %.4f", p->loss);
    if (isfinite(p->accuracy))
        ADD(" - accuracy %.4f", p->accuracy);
    ADD(" - %.0f samples/s", p->samples_per_s);
    ddts_format_duration(t, sizeof t, eta);
    ADD(" - ETA %s", t);
#undef ADD
    if (lv->inner.fn != NULL && lv->inner.min <= DDTS_LOG_INFO)
        lv->inner.fn(lv->inner.userdata, DDTS_LOG_INFO, line);
}

void cli_live_on_client(void *userdata, const struct ddts_server_client *c)
{
    (void)c;
    struct cli_live *lv = userdata;
    pthread_mutex_lock(&lv->mu);
    lv->dirty = true;
    if (lv->table.tty && ddts_now() - lv->table.last >= REDRAW_S)
        draw_locked(lv);
    pthread_mutex_unlock(&lv->mu);
}

void cli_live_on_epoch_end(void *userdata, const struct ddts_server_client *c)
{
    struct cli_live *lv = userdata;
    if (lv->table.tty)
        return;
    pthread_mutex_lock(&lv->mu);
    log_epoch_end(lv, c, ddts_server_client_eta(c, ddts_now()));
    pthread_mutex_unlock(&lv->mu);
}

void cli_live_tick(struct cli_live *lv)
{
    if (lv == NULL)
        return;
    pthread_mutex_lock(&lv->mu);
    double since = ddts_now() - lv->table.last;
    if (lv->table.tty &&
        ((lv->dirty && since >= REDRAW_S) || (lv->running && since >= TICK_REDRAW_S)))
        draw_locked(lv);
    pthread_mutex_unlock(&lv->mu);
}

void cli_live_finish(struct cli_live *lv)
{
    if (lv == NULL)
        return;
    pthread_mutex_lock(&lv->mu);
    draw_locked(lv);
    cli_table_forget(&lv->table);
    lv->finished = true;
    pthread_mutex_unlock(&lv->mu);
}
