/*
 * The live view of `ddts server`: what the server library reports about each
 * client (ddts_server_config.on_client) kept in a table of rows, keyed by the
 * client's persistent id so that a client that reconnects keeps its row.
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
/* Distinct clients kept (each new id is a row; the server serves 1024 at once). */
#define MAX_ROWS (4 * DDTS_MAX_CLIENTS)

struct live_row {
    uint8_t id[DDTS_CLIENT_ID_BYTES];
    char name[DDTS_MAX_NAME_BYTES + 1];
    char address[64];
    enum ddts_client_state state;
    int has_progress;
    struct ddts_wire_progress progress;
    double progress_at;
    uint32_t printed_fold, printed_epoch; /* the last epoch end logged (plain mode) */
};

struct cli_live {
    pthread_mutex_t mu;
    struct ddts_logger inner;
    struct cli_table table;
    struct live_row *rows;
    size_t n_rows, cap_rows;
    bool dirty;    /* changed since the last draw */
    bool finished; /* cli_live_finish: the table stays as it is */
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

void cli_live_destroy(struct cli_live *lv)
{
    if (lv == NULL)
        return;
    pthread_mutex_destroy(&lv->mu);
    ddts_free(lv->rows);
    ddts_free(lv);
}

/* Draws the table now (caller holds mu). */
static void draw_locked(struct cli_live *lv)
{
    if (!lv->table.tty || lv->n_rows == 0 || lv->finished)
        return;
    struct ddts_client_row *rows = ddts_mallocarray(lv->n_rows, sizeof *rows);
    if (rows == NULL)
        return;
    double now = ddts_now();
    for (size_t i = 0; i < lv->n_rows; i++) {
        const struct live_row *r = &lv->rows[i];
        const struct ddts_wire_progress *p = &r->progress;
        bool has = r->has_progress != 0;
        bool running = r->state == DDTS_CLIENT_TRAINING || r->state == DDTS_CLIENT_SYNCING;
        struct ddts_server_client c = {.has_progress = r->has_progress,
                                       .progress = r->progress,
                                       .progress_at = r->progress_at};
        rows[i] = (struct ddts_client_row){
            .name = r->name,
            .address = r->address,
            .state = ddts_client_state_str(r->state),
            .fold = has ? (int)p->fold : 0,
            .n_folds = has ? (int)p->n_folds : 0,
            .epoch = has ? (int)p->epoch : 0,
            .epochs = has ? (int)p->epochs : 0,
            .done = has ? (int64_t)p->done : 0,
            .total = has ? (int64_t)p->total : 0,
            .loss = has ? p->loss : NAN,
            .accuracy = has ? p->accuracy : NAN,
            .samples_per_s = has && running ? p->samples_per_s : NAN,
            .eta_s = running ? ddts_server_client_eta(&c, now) : NAN,
        };
    }
    cli_table_refresh(&lv->table, rows, lv->n_rows, true);
    ddts_free(rows);
    lv->dirty = false;
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

/* The row of client `id`, added when new (caller holds mu); NULL on out of memory. */
static struct live_row *row_for(struct cli_live *lv, const uint8_t *id)
{
    for (size_t i = 0; i < lv->n_rows; i++)
        if (memcmp(lv->rows[i].id, id, DDTS_CLIENT_ID_BYTES) == 0)
            return &lv->rows[i];
    if (lv->n_rows >= MAX_ROWS)
        return NULL;
    if (lv->n_rows == lv->cap_rows) {
        size_t cap = lv->cap_rows ? 2 * lv->cap_rows : 8;
        struct live_row *bigger = ddts_realloc(lv->rows, cap * sizeof *bigger);
        if (bigger == NULL)
            return NULL;
        lv->rows = bigger;
        lv->cap_rows = cap;
    }
    struct live_row *r = &lv->rows[lv->n_rows++];
    memset(r, 0, sizeof *r);
    memcpy(r->id, id, DDTS_CLIENT_ID_BYTES);
    return r;
}

/* "client 'alpha' (127.0.0.1): fold 2/5 epoch 3/10 - loss 0.4123 - accuracy 0.8512 - ..." */
static void log_epoch_end(struct cli_live *lv, const struct live_row *r, double eta)
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
    struct cli_live *lv = userdata;
    pthread_mutex_lock(&lv->mu);
    struct live_row *r = row_for(lv, c->id);
    if (r == NULL) {
        pthread_mutex_unlock(&lv->mu);
        return;
    }
    snprintf(r->name, sizeof r->name, "%s", c->name);
    snprintf(r->address, sizeof r->address, "%s", c->address);
    r->state = c->state;
    /* A new share starts without figures; a finished one keeps its last ones. */
    if (c->has_progress || c->state == DDTS_CLIENT_SENDING) {
        r->has_progress = c->has_progress;
        r->progress = c->progress;
        r->progress_at = c->progress_at;
    }
    lv->dirty = true;
    const struct ddts_wire_progress *p = &c->progress;
    bool epoch_end = c->has_progress && c->state == DDTS_CLIENT_TRAINING &&
                     (p->flags & DDTS_PROGRESS_EPOCH_END) &&
                     (p->fold != r->printed_fold || p->epoch != r->printed_epoch);
    if (!lv->table.tty) {
        if (epoch_end) {
            r->printed_fold = p->fold;
            r->printed_epoch = p->epoch;
            log_epoch_end(lv, r, ddts_server_client_eta(c, ddts_now()));
        }
    } else if (ddts_now() - lv->table.last >= REDRAW_S) {
        draw_locked(lv);
    }
    pthread_mutex_unlock(&lv->mu);
}

void cli_live_tick(struct cli_live *lv)
{
    if (lv == NULL)
        return;
    pthread_mutex_lock(&lv->mu);
    bool running = false;
    for (size_t i = 0; i < lv->n_rows; i++)
        running |= lv->rows[i].state == DDTS_CLIENT_TRAINING;
    double since = ddts_now() - lv->table.last;
    if (lv->table.tty && ((lv->dirty && since >= REDRAW_S) || (running && since >= TICK_REDRAW_S)))
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
