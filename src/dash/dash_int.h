/*
 * Inside the dashboard (include/ddts/dash.h): the live job's state (state.c),
 * the JSON answers and the job folder on disk (api.c), and the HTTP front
 * (http.c, the only user of libmicrohttpd).
 */
#ifndef DDTS_DASH_INT_H
#define DDTS_DASH_INT_H

#include <pthread.h>
#include <stdbool.h>

#include "ddts/dash.h"
#include "ddts/limits.h"
#include "net/wire.h"

/* One epoch end of a live client: its training figures from PROGRESS, and its
 * history row from EPOCH (protocol 3 clients) once that arrives. */
struct ddts__dash_point {
    uint32_t fold, epoch;
    double loss, accuracy; /* from PROGRESS; NaN: unknown */
    double t;              /* wall clock */
    bool has_row;          /* values holds the EPOCH row */
    /* values[k]: the figure named keys[k] of the row's client (NaN: not in this row) */
    double values[DDTS_MAX_EPOCH_FIGURES];
};

/* The names of a client's history columns, in the order they first came. */
struct ddts__dash_keys {
    size_t n;
    char names[DDTS_MAX_EPOCH_FIGURES][DDTS_MAX_EPOCH_NAME_BYTES + 1];
};

/* The global model on the test data after an epoch (ddts_dash_on_global). */
struct ddts__dash_global {
    uint64_t epoch;
    double loss, accuracy;
};

/* A live client, keyed by its persistent id (a reconnecting client keeps its row). */
struct ddts__dash_row {
    uint8_t id[DDTS_CLIENT_ID_BYTES];
    char name[DDTS_MAX_NAME_BYTES + 1];
    char address[64];
    enum ddts_client_state state;
    long share;
    int has_progress;
    struct ddts_wire_progress progress;
    double progress_at;
    char error[256]; /* state FAILED: the client's error text (as it sent it, cut); "" else */
    struct ddts__dash_point *points; /* not copied by snapshots */
    size_t n_points, cap_points;
    /* points by (fold, epoch): open addressing, slot = point index + 1 (0: empty),
     * at most half full; index_size a power of two. Not copied by snapshots. */
    uint32_t *index;
    size_t index_size;
    struct ddts__dash_keys *keys; /* NULL until an EPOCH row; not copied by snapshots */
};

struct ddts__dash_event {
    double t; /* wall clock (time(NULL) with sub-second part) */
    enum ddts_log_level level;
    char msg[512];
};

struct ddts__dash_round {
    uint64_t round;
    double t; /* wall clock */
};

/* The live job, guarded by mu. Rings keep the newest DDTS_DASH_MAX_* entries. */
struct ddts__dash_live {
    pthread_mutex_t mu;
    char status[16];
    double started; /* wall clock */
    struct ddts__dash_row *rows;
    size_t n_rows, cap_rows;
    struct ddts__dash_event *events; /* ring of DDTS_DASH_MAX_EVENTS */
    uint64_t n_events;               /* ever added */
    struct ddts__dash_round *rounds; /* ring of DDTS_DASH_MAX_ROUNDS */
    uint64_t n_rounds;
    struct ddts__dash_global *global; /* at most DDTS_DASH_MAX_POINTS, by epoch */
    size_t n_global, cap_global;
};

/* What one request sees of the live job: copied under mu, read without it. */
struct ddts__dash_snapshot {
    char status[16];
    double started, now;
    struct ddts__dash_row *rows; /* points NULL */
    size_t n_rows;
    struct ddts__dash_event *events; /* oldest first */
    size_t n_events;
    struct ddts__dash_round *rounds; /* oldest first */
    size_t n_rounds;
    uint64_t n_rounds_total;
};

struct MHD_Daemon;

struct ddts_dash {
    char *workdir;
    char live_job[DDTS_MAX_NAME_BYTES + 1]; /* "" when none */
    char *settings_json;
    struct ddts__dash_live live;
    struct MHD_Daemon *mhd;
    uint16_t port;
    bool need_token;
    char token[33];
    char url[128];
};

enum ddts_status ddts__dash_live_init(struct ddts__dash_live *lv, struct ddts_error *err);
void ddts__dash_live_deinit(struct ddts__dash_live *lv);
/* Copies the live state (everything but the points); DDTS_ENOMEM. */
enum ddts_status ddts__dash_snapshot_take(struct ddts__dash_live *lv,
                                          struct ddts__dash_snapshot *out);
void ddts__dash_snapshot_deinit(struct ddts__dash_snapshot *s);
/*
 * Copies the epoch ends of every row named `name` (*out NULL and *n 0 when
 * none) and the history column names of the last such row with any (*keys
 * zeroed when none).
 */
enum ddts_status ddts__dash_points_take(struct ddts__dash_live *lv, const char *name,
                                        struct ddts__dash_point **out, size_t *n,
                                        struct ddts__dash_keys *keys);
/* Copies the global model's live points (*out NULL and *n 0 when none). */
enum ddts_status ddts__dash_global_take(struct ddts__dash_live *lv, struct ddts__dash_global **out,
                                        size_t *n);

/* An answer: a body (owned, ddts_free) with its content type and HTTP status. */
struct ddts__dash_reply {
    unsigned status;
    const char *type;
    char *body;
    size_t n;
    int fd; /* >= 0: a file to send (n bytes) instead of body */
};

/* GET `path` with query lookup `arg(cls, key)` (NULL when absent): fills *r. */
void ddts__dash_route(struct ddts_dash *d, const char *path,
                      const char *(*arg)(void *cls, const char *key), void *cls,
                      struct ddts__dash_reply *r);

/*
 * A result file's path relative to a job folder, as /files/ accepts it:
 * components of [A-Za-z0-9._-] (none "." or ".." or empty) joined by '/',
 * under clients/ or global/ or one of the job's report files, ending in a
 * result's extension (.h5 .keras .csv .png .json .txt .log). 0 when accepted.
 */
int ddts__dash_check_path(const char *rel);

/* The embedded page (generated from src/dash/assets/ by CMakeLists.txt). */
extern const char ddts__dash_index_html[], ddts__dash_app_js[], ddts__dash_style_css[];

#endif
