/*
 * The live job as the dashboard sees it: the server's reports (on_client,
 * on_round, the log) copied into rows and rings under one mutex. Each call
 * holds it for a copy of a few hundred bytes; requests copy the state out
 * (ddts__dash_snapshot_take) and render without it, so neither the server's
 * threads nor the page wait on each other.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>

#include "dash_int.h"

/* Rows kept: each new client id is a row (the server serves 1024 at once). */
#define MAX_ROWS (4 * DDTS_MAX_CLIENTS)

static double wall_now(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (double)tv.tv_sec + tv.tv_usec * 1e-6;
}

enum ddts_status ddts__dash_live_init(struct ddts__dash_live *lv, struct ddts_error *err)
{
    memset(lv, 0, sizeof *lv);
    lv->events = ddts_calloc(DDTS_DASH_MAX_EVENTS, sizeof *lv->events);
    lv->rounds = ddts_calloc(DDTS_DASH_MAX_ROUNDS, sizeof *lv->rounds);
    if (lv->events == NULL || lv->rounds == NULL) {
        ddts_free(lv->events);
        ddts_free(lv->rounds);
        return ddts_error_set(err, DDTS_ENOMEM, "dashboard: out of memory");
    }
    pthread_mutex_init(&lv->mu, NULL);
    snprintf(lv->status, sizeof lv->status, "running");
    lv->started = wall_now();
    return DDTS_OK;
}

void ddts__dash_live_deinit(struct ddts__dash_live *lv)
{
    for (size_t i = 0; i < lv->n_rows; i++) {
        ddts_free(lv->rows[i].points);
        ddts_free(lv->rows[i].index);
        ddts_free(lv->rows[i].keys);
    }
    ddts_free(lv->rows);
    ddts_free(lv->global);
    ddts_free(lv->events);
    ddts_free(lv->rounds);
    pthread_mutex_destroy(&lv->mu);
}

/* The row of client `id`, added when new (caller holds mu); NULL when full. */
static struct ddts__dash_row *row_for(struct ddts__dash_live *lv, const uint8_t *id)
{
    for (size_t i = 0; i < lv->n_rows; i++)
        if (memcmp(lv->rows[i].id, id, DDTS_CLIENT_ID_BYTES) == 0)
            return &lv->rows[i];
    if (lv->n_rows >= MAX_ROWS)
        return NULL;
    if (lv->n_rows == lv->cap_rows) {
        size_t cap = lv->cap_rows ? 2 * lv->cap_rows : 8;
        struct ddts__dash_row *bigger = ddts_realloc(lv->rows, cap * sizeof *bigger);
        if (bigger == NULL)
            return NULL;
        lv->rows = bigger;
        lv->cap_rows = cap;
    }
    struct ddts__dash_row *r = &lv->rows[lv->n_rows++];
    memset(r, 0, sizeof *r);
    memcpy(r->id, id, DDTS_CLIENT_ID_BYTES);
    r->share = -1;
    return r;
}

/* The first slot to probe for (fold, epoch) in an index of `size` slots. */
static size_t point_slot(uint32_t fold, uint32_t epoch, size_t size)
{
    uint64_t h = ((uint64_t)fold << 32 | epoch) * 0x9E3779B97F4A7C15ull;
    return (size_t)(h >> 32) & (size - 1);
}

/* Indexes point i of the row (its index has a free slot). */
static void index_put(struct ddts__dash_row *r, size_t i)
{
    size_t s = point_slot(r->points[i].fold, r->points[i].epoch, r->index_size);
    while (r->index[s] != 0)
        s = (s + 1) & (r->index_size - 1);
    r->index[s] = (uint32_t)i + 1;
}

/* The row's index anew with `size` slots; -1 when out of memory. */
static int index_rebuild(struct ddts__dash_row *r, size_t size)
{
    uint32_t *t = ddts_calloc(size, sizeof *t);
    if (t == NULL)
        return -1;
    ddts_free(r->index);
    r->index = t;
    r->index_size = size;
    for (size_t i = 0; i < r->n_points; i++)
        index_put(r, i);
    return 0;
}

/*
 * The point of epoch `epoch` of fold `fold`, else a new one (figures NaN);
 * NULL when full or out of memory. PROGRESS repeats an epoch end while the
 * client syncs, EPOCH follows it, and a share trained again (taken over, or
 * after a lost connection) repeats its epochs: each epoch is one point, with
 * its newest figures. Found through the row's index: O(1) under the lock,
 * however many points the row holds.
 */
static struct ddts__dash_point *point_for(struct ddts__dash_row *r, uint32_t fold, uint32_t epoch)
{
    if (r->index_size > 0)
        for (size_t s = point_slot(fold, epoch, r->index_size); r->index[s] != 0;
             s = (s + 1) & (r->index_size - 1)) {
            struct ddts__dash_point *pt = &r->points[r->index[s] - 1];
            if (pt->fold == fold && pt->epoch == epoch)
                return pt;
        }
    if (r->n_points >= DDTS_DASH_MAX_POINTS)
        return NULL;
    if (r->n_points == r->cap_points) {
        size_t cap = r->cap_points ? 2 * r->cap_points : 16;
        struct ddts__dash_point *bigger = ddts_realloc(r->points, cap * sizeof *bigger);
        if (bigger == NULL)
            return NULL;
        r->points = bigger;
        r->cap_points = cap;
    }
    if (2 * (r->n_points + 1) > r->index_size &&
        index_rebuild(r, r->index_size ? 2 * r->index_size : 32) != 0)
        return NULL;
    struct ddts__dash_point *pt = &r->points[r->n_points++];
    memset(pt, 0, sizeof *pt);
    pt->fold = fold;
    pt->epoch = epoch;
    pt->loss = pt->accuracy = NAN;
    pt->t = wall_now();
    index_put(r, r->n_points - 1);
    return pt;
}

/* Records an epoch end's training figures (PROGRESS). */
static void add_point(struct ddts__dash_row *r, const struct ddts_wire_progress *p)
{
    struct ddts__dash_point *pt = point_for(r, p->fold, p->epoch);
    if (pt != NULL) {
        pt->loss = p->loss;
        pt->accuracy = p->accuracy;
    }
}

/* The column of figure `name` in the row's keys, added when new; -1 when full. */
static int key_index(struct ddts__dash_keys *k, const char *name)
{
    for (size_t i = 0; i < k->n; i++)
        if (strcmp(k->names[i], name) == 0)
            return (int)i;
    if (k->n >= DDTS_MAX_EPOCH_FIGURES)
        return -1;
    snprintf(k->names[k->n], sizeof k->names[k->n], "%s", name);
    return (int)k->n++;
}

void ddts_dash_on_epoch(struct ddts_dash *d, const struct ddts_server_client *c,
                        const struct ddts_wire_epoch *e)
{
    if (d == NULL || c == NULL || e == NULL)
        return;
    struct ddts__dash_live *lv = &d->live;
    pthread_mutex_lock(&lv->mu);
    struct ddts__dash_row *r = row_for(lv, c->id);
    if (r != NULL && r->keys == NULL)
        r->keys = ddts_calloc(1, sizeof *r->keys);
    struct ddts__dash_point *pt =
        r != NULL && r->keys != NULL ? point_for(r, e->fold, e->epoch) : NULL;
    if (pt != NULL) {
        if (r->name[0] == '\0')
            snprintf(r->name, sizeof r->name, "%s", c->name != NULL ? c->name : "");
        for (size_t k = 0; k < DDTS_MAX_EPOCH_FIGURES; k++)
            pt->values[k] = NAN;
        for (uint32_t i = 0; i < e->n && i < DDTS_MAX_EPOCH_FIGURES; i++) {
            int k = key_index(r->keys, e->names[i]);
            if (k >= 0)
                pt->values[k] = e->values[i];
        }
        pt->has_row = true;
    }
    pthread_mutex_unlock(&lv->mu);
}

void ddts_dash_on_global(struct ddts_dash *d, uint64_t epoch, double loss, double accuracy)
{
    if (d == NULL)
        return;
    struct ddts__dash_live *lv = &d->live;
    pthread_mutex_lock(&lv->mu);
    if (lv->n_global == lv->cap_global && lv->n_global < DDTS_DASH_MAX_POINTS) {
        size_t cap = lv->cap_global ? 2 * lv->cap_global : 64;
        struct ddts__dash_global *bigger = ddts_realloc(lv->global, cap * sizeof *bigger);
        if (bigger != NULL) {
            lv->global = bigger;
            lv->cap_global = cap;
        }
    }
    if (lv->n_global < lv->cap_global)
        lv->global[lv->n_global++] = (struct ddts__dash_global){epoch, loss, accuracy};
    pthread_mutex_unlock(&lv->mu);
}

void ddts_dash_on_client(struct ddts_dash *d, const struct ddts_server_client *c)
{
    if (d == NULL || c == NULL)
        return;
    struct ddts__dash_live *lv = &d->live;
    pthread_mutex_lock(&lv->mu);
    struct ddts__dash_row *r = row_for(lv, c->id);
    if (r != NULL) {
        snprintf(r->name, sizeof r->name, "%s", c->name != NULL ? c->name : "");
        snprintf(r->address, sizeof r->address, "%s", c->address != NULL ? c->address : "");
        r->state = c->state;
        r->share = c->share;
        snprintf(r->error, sizeof r->error, "%s", c->error != NULL ? c->error : "");
        /* A new share starts without figures; a finished one keeps its last ones. */
        if (c->has_progress || c->state == DDTS_CLIENT_SENDING) {
            r->has_progress = c->has_progress;
            r->progress = c->progress;
            r->progress_at = c->progress_at;
        }
        if (c->has_progress && (c->progress.flags & DDTS_PROGRESS_EPOCH_END))
            add_point(r, &c->progress);
    }
    pthread_mutex_unlock(&lv->mu);
}

void ddts_dash_on_round(struct ddts_dash *d, uint64_t round)
{
    if (d == NULL)
        return;
    struct ddts__dash_live *lv = &d->live;
    double t = wall_now();
    pthread_mutex_lock(&lv->mu);
    lv->rounds[lv->n_rounds % DDTS_DASH_MAX_ROUNDS] = (struct ddts__dash_round){round, t};
    lv->n_rounds++;
    pthread_mutex_unlock(&lv->mu);
}

void ddts_dash_on_log(struct ddts_dash *d, enum ddts_log_level level, const char *msg)
{
    if (d == NULL || msg == NULL)
        return;
    /* The server logs each round ("round 12 complete: ..."): on_round records
     * those for the timeline, and the event log keeps room for the rest. */
    if (level == DDTS_LOG_INFO &&
        (strncmp(msg, "round ", 6) == 0 || strncmp(msg, "reduction ", 10) == 0) &&
        strstr(msg, " complete: ") != NULL)
        return;
    struct ddts__dash_live *lv = &d->live;
    double t = wall_now();
    pthread_mutex_lock(&lv->mu);
    struct ddts__dash_event *e = &lv->events[lv->n_events % DDTS_DASH_MAX_EVENTS];
    e->t = t;
    e->level = level;
    snprintf(e->msg, sizeof e->msg, "%s", msg);
    lv->n_events++;
    pthread_mutex_unlock(&lv->mu);
}

void ddts_dash_set_status(struct ddts_dash *d, const char *status)
{
    if (d == NULL || status == NULL)
        return;
    pthread_mutex_lock(&d->live.mu);
    snprintf(d->live.status, sizeof d->live.status, "%s", status);
    pthread_mutex_unlock(&d->live.mu);
}

/* Copies the newest min(total, cap) entries of a ring, oldest first. */
static void *ring_copy(const void *ring, size_t size, uint64_t total, size_t cap, size_t *n)
{
    size_t k = total < cap ? (size_t)total : cap;
    *n = 0;
    char *out = ddts_mallocarray(k ? k : 1, size);
    if (out == NULL)
        return NULL;
    uint64_t first = total - k;
    for (size_t i = 0; i < k; i++)
        memcpy(out + i * size, (const char *)ring + ((first + i) % cap) * size, size);
    *n = k;
    return out;
}

enum ddts_status ddts__dash_snapshot_take(struct ddts__dash_live *lv,
                                          struct ddts__dash_snapshot *out)
{
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&lv->mu);
    memcpy(out->status, lv->status, sizeof out->status);
    out->started = lv->started;
    out->now = wall_now();
    out->n_rounds_total = lv->n_rounds;
    out->rows = ddts_mallocarray(lv->n_rows ? lv->n_rows : 1, sizeof *out->rows);
    if (out->rows != NULL) {
        if (lv->n_rows > 0)
            memcpy(out->rows, lv->rows, lv->n_rows * sizeof *out->rows);
        out->n_rows = lv->n_rows;
        for (size_t i = 0; i < out->n_rows; i++) {
            out->rows[i].points = NULL;
            out->rows[i].n_points = out->rows[i].cap_points = 0;
            out->rows[i].index = NULL;
            out->rows[i].index_size = 0;
            out->rows[i].keys = NULL;
        }
    }
    out->events = ring_copy(lv->events, sizeof *lv->events, lv->n_events, DDTS_DASH_MAX_EVENTS,
                            &out->n_events);
    out->rounds = ring_copy(lv->rounds, sizeof *lv->rounds, lv->n_rounds, DDTS_DASH_MAX_ROUNDS,
                            &out->n_rounds);
    pthread_mutex_unlock(&lv->mu);
    if (out->rows == NULL || out->events == NULL || out->rounds == NULL) {
        ddts__dash_snapshot_deinit(out);
        return DDTS_ENOMEM;
    }
    return DDTS_OK;
}

void ddts__dash_snapshot_deinit(struct ddts__dash_snapshot *s)
{
    ddts_free(s->rows);
    ddts_free(s->events);
    ddts_free(s->rounds);
    memset(s, 0, sizeof *s);
}

/*
 * Rows of one name (a client that came back with a new id) share the page's
 * curve: their points' values, indexed by their own row's keys, are moved to
 * the columns of the merged `keys`.
 */
static void remap(struct ddts__dash_keys *keys, const struct ddts__dash_keys *own,
                  struct ddts__dash_point *pts, size_t n)
{
    int to[DDTS_MAX_EPOCH_FIGURES];
    for (size_t k = 0; k < own->n; k++)
        to[k] = key_index(keys, own->names[k]);
    for (size_t i = 0; i < n; i++) {
        double v[DDTS_MAX_EPOCH_FIGURES];
        for (size_t k = 0; k < DDTS_MAX_EPOCH_FIGURES; k++)
            v[k] = NAN;
        for (size_t k = 0; k < own->n; k++)
            if (to[k] >= 0)
                v[to[k]] = pts[i].values[k];
        memcpy(pts[i].values, v, sizeof v);
    }
}

enum ddts_status ddts__dash_points_take(struct ddts__dash_live *lv, const char *name,
                                        struct ddts__dash_point **out, size_t *n,
                                        struct ddts__dash_keys *keys)
{
    *out = NULL;
    *n = 0;
    memset(keys, 0, sizeof *keys);
    enum ddts_status st = DDTS_OK;
    pthread_mutex_lock(&lv->mu);
    size_t total = 0;
    for (size_t i = 0; i < lv->n_rows; i++)
        if (strcmp(lv->rows[i].name, name) == 0)
            total += lv->rows[i].n_points;
    if (total > 0) {
        *out = ddts_mallocarray(total, sizeof **out);
        if (*out == NULL) {
            st = DDTS_ENOMEM;
        } else {
            for (size_t i = 0; i < lv->n_rows; i++) {
                const struct ddts__dash_row *r = &lv->rows[i];
                if (strcmp(r->name, name) != 0 || r->n_points == 0)
                    continue;
                struct ddts__dash_point *dst = *out + *n;
                memcpy(dst, r->points, r->n_points * sizeof **out);
                *n += r->n_points;
                if (r->keys != NULL)
                    remap(keys, r->keys, dst, r->n_points);
            }
        }
    }
    pthread_mutex_unlock(&lv->mu);
    return st;
}

enum ddts_status ddts__dash_global_take(struct ddts__dash_live *lv, struct ddts__dash_global **out,
                                        size_t *n)
{
    *out = NULL;
    *n = 0;
    enum ddts_status st = DDTS_OK;
    pthread_mutex_lock(&lv->mu);
    if (lv->n_global > 0) {
        *out = ddts_mallocarray(lv->n_global, sizeof **out);
        if (*out == NULL) {
            st = DDTS_ENOMEM;
        } else {
            memcpy(*out, lv->global, lv->n_global * sizeof **out);
            *n = lv->n_global;
        }
    }
    pthread_mutex_unlock(&lv->mu);
    return st;
}
