/*
 * The job's snapshot (ddts_serve_snapshot): its phase, its rounds, and what
 * the server reports about each client (ddts_server_config.on_client), in a
 * table of rows keyed by the client's persistent id so that a client that
 * reconnects keeps its row. One mutex guards it: the server's connection
 * threads write, any front-end thread copies.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "serve.h"

/* Distinct clients kept (each new id is a row; the server serves 1024 at once). */
#define MAX_ROWS (4 * DDTS_MAX_CLIENTS)

struct ddts__serve_row {
    struct ddts_serve_client_info info;
    uint32_t epoch_end_fold, epoch_end_epoch; /* the last epoch end seen */
};

void ddts__serve_set_phase(struct ddts_serve *sv, enum ddts_serve_phase p,
                           const struct ddts_error *err)
{
    pthread_mutex_lock(&sv->mu);
    sv->phase = p;
    if (p == DDTS_SERVE_FAILED && err != NULL)
        snprintf(sv->message, sizeof sv->message, "%s", err->msg);
    else if (p != DDTS_SERVE_FAILED)
        sv->message[0] = '\0';
    pthread_mutex_unlock(&sv->mu);
}

void ddts__serve_round(struct ddts_serve *sv)
{
    pthread_mutex_lock(&sv->mu);
    sv->rounds++;
    pthread_mutex_unlock(&sv->mu);
}

void ddts__serve_rows_free(struct ddts_serve *sv)
{
    ddts_free(sv->failures);
    sv->failures = NULL;
    sv->n_failures = 0;
    ddts_free(sv->rows);
    sv->rows = NULL;
    sv->n_rows = sv->cap_rows = 0;
}

/* The row of client `id`, added when new (caller holds mu); NULL on out of memory. */
static struct ddts__serve_row *row_for(struct ddts_serve *sv, const uint8_t *id)
{
    for (size_t i = 0; i < sv->n_rows; i++)
        if (memcmp(sv->rows[i].info.id, id, DDTS_CLIENT_ID_BYTES) == 0)
            return &sv->rows[i];
    if (sv->n_rows >= MAX_ROWS)
        return NULL;
    if (sv->n_rows == sv->cap_rows) {
        size_t cap = sv->cap_rows ? 2 * sv->cap_rows : 8;
        struct ddts__serve_row *bigger = ddts_realloc(sv->rows, cap * sizeof *bigger);
        if (bigger == NULL)
            return NULL;
        sv->rows = bigger;
        sv->cap_rows = cap;
    }
    struct ddts__serve_row *r = &sv->rows[sv->n_rows++];
    memset(r, 0, sizeof *r);
    memcpy(r->info.id, id, DDTS_CLIENT_ID_BYTES);
    return r;
}

/* Two error texts alike but for their numbers (a sample index, a batch, a share). */
static bool same_error(const char *a, const char *b)
{
    for (;;) {
        bool da = *a >= '0' && *a <= '9', db = *b >= '0' && *b <= '9';
        if (da && db) {
            while (*a >= '0' && *a <= '9')
                a++;
            while (*b >= '0' && *b <= '9')
                b++;
            continue;
        }
        if (*a != *b)
            return false;
        if (*a == '\0')
            return true;
        a++;
        b++;
    }
}

/*
 * Records a failed share (caller holds mu). The same error from a second
 * client is deterministic (the data, the model or the settings): the job
 * stops instead of failing every other share the same way.
 */
static void record_failure(struct ddts_serve *sv, const struct ddts_server_client *c, long share)
{
    for (size_t i = 0; i < sv->n_failures; i++) {
        const struct ddts__serve_failure *f = &sv->failures[i];
        if (memcmp(f->id, c->id, DDTS_CLIENT_ID_BYTES) != 0 && same_error(f->msg, c->error) &&
            sv->stop_reason[0] == '\0')
            snprintf(sv->stop_reason, sizeof sv->stop_reason,
                     "share %ld (client '%s') and share %ld (client '%s') failed with the same "
                     "error: %s",
                     f->share, f->name, share, c->name, c->error);
    }
    struct ddts__serve_failure *bigger =
        ddts_realloc(sv->failures, (sv->n_failures + 1) * sizeof *bigger);
    if (bigger == NULL)
        return;
    sv->failures = bigger;
    struct ddts__serve_failure *f = &sv->failures[sv->n_failures++];
    f->share = share;
    memcpy(f->id, c->id, DDTS_CLIENT_ID_BYTES);
    snprintf(f->name, sizeof f->name, "%s", c->name);
    snprintf(f->msg, sizeof f->msg, "%s", c->error);
}

bool ddts__serve_stopping(struct ddts_serve *sv, char *buf, size_t cap)
{
    pthread_mutex_lock(&sv->mu);
    bool stop = sv->stop_reason[0] != '\0';
    if (stop && buf != NULL)
        snprintf(buf, cap, "%s", sv->stop_reason);
    pthread_mutex_unlock(&sv->mu);
    return stop;
}

bool ddts__serve_on_client(struct ddts_serve *sv, const struct ddts_server_client *c)
{
    pthread_mutex_lock(&sv->mu);
    struct ddts__serve_row *r = row_for(sv, c->id);
    if (c->state == DDTS_CLIENT_FAILED && c->error != NULL)
        record_failure(sv, c, c->share >= 0 || r == NULL ? c->share : r->info.share);
    if (r == NULL) {
        pthread_mutex_unlock(&sv->mu);
        return false;
    }
    struct ddts_serve_client_info *in = &r->info;
    snprintf(in->name, sizeof in->name, "%s", c->name);
    snprintf(in->address, sizeof in->address, "%s", c->address);
    in->state = c->state;
    if (c->share >= 0 || c->state != DDTS_CLIENT_FAILED)
        in->share = c->share;
    /* A new share starts without figures; a finished one keeps its last ones. */
    if (c->has_progress || c->state == DDTS_CLIENT_SENDING) {
        in->has_progress = c->has_progress;
        in->progress = c->progress;
        in->progress_at = c->progress_at;
    }
    const struct ddts_wire_progress *p = &c->progress;
    bool epoch_end = c->has_progress && c->state == DDTS_CLIENT_TRAINING &&
                     (p->flags & DDTS_PROGRESS_EPOCH_END) &&
                     (p->fold != r->epoch_end_fold || p->epoch != r->epoch_end_epoch);
    if (epoch_end) {
        r->epoch_end_fold = p->fold;
        r->epoch_end_epoch = p->epoch;
    }
    pthread_mutex_unlock(&sv->mu);
    return epoch_end;
}

enum ddts_status ddts_serve_snapshot(struct ddts_serve *sv, struct ddts_serve_snapshot *out,
                                     struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&sv->mu);
    out->phase = sv->phase;
    snprintf(out->message, sizeof out->message, "%s", sv->message);
    out->rounds = sv->rounds;
    out->n_shares = sv->job.clients > 0 ? (size_t)sv->job.clients : 0;
    out->taken_at = ddts_now();
    if (sv->n_rows > 0) {
        out->clients = ddts_mallocarray(sv->n_rows, sizeof *out->clients);
        if (out->clients == NULL) {
            pthread_mutex_unlock(&sv->mu);
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        }
    }
    for (size_t i = 0; i < sv->n_rows; i++) {
        struct ddts_serve_client_info *c = &out->clients[i];
        *c = sv->rows[i].info;
        bool running = c->state == DDTS_CLIENT_TRAINING || c->state == DDTS_CLIENT_SYNCING;
        struct ddts_server_client sc = {.has_progress = c->has_progress,
                                        .progress = c->progress,
                                        .progress_at = c->progress_at};
        c->eta_s = running ? ddts_server_client_eta(&sc, out->taken_at) : NAN;
    }
    out->n_clients = sv->n_rows;
    pthread_mutex_unlock(&sv->mu);
    return DDTS_OK;
}

void ddts_serve_snapshot_deinit(struct ddts_serve_snapshot *s)
{
    if (s == NULL)
        return;
    ddts_free(s->clients);
    s->clients = NULL;
    s->n_clients = 0;
}

void ddts_serve_client_row(const struct ddts_serve_client_info *c, struct ddts_client_row *row)
{
    const struct ddts_wire_progress *p = &c->progress;
    bool has = c->has_progress != 0;
    bool running = c->state == DDTS_CLIENT_TRAINING || c->state == DDTS_CLIENT_SYNCING;
    *row = (struct ddts_client_row){
        .name = c->name,
        .address = c->address,
        .state = ddts_client_state_str(c->state),
        .fold = has ? (int)p->fold : 0,
        .n_folds = has ? (int)p->n_folds : 0,
        .epoch = has ? (int)p->epoch : 0,
        .epochs = has ? (int)p->epochs : 0,
        .done = has ? (int64_t)p->done : 0,
        .total = has ? (int64_t)p->total : 0,
        .loss = has ? p->loss : NAN,
        .accuracy = has ? p->accuracy : NAN,
        .samples_per_s = has && running ? p->samples_per_s : NAN,
        .eta_s = c->eta_s,
    };
}
