/*
 * The ddts wire format (docs/protocol.md), pure encode/decode.
 *
 *   frame   = u32 L (little-endian) || body[L]
 *             1 <= L <= 1024 before authentication; L <= 16 MiB + 17 after
 *   body    = message (before authentication)
 *           | secretstream ciphertext of a message (after)
 *   message = u8 type || payload
 *   payload = fields: u8/u16/u32/u64 little-endian, f64 as its u64 bit pattern,
 *             str/bytes as u32 length || bytes, fixed-size raw byte arrays
 *
 * Nothing here allocates or performs I/O: readers borrow their input and
 * writers fill caller storage, so the functions are fuzzed directly.
 */
#include <math.h>
#include <string.h>

#include "ddts/limits.h"
#include "wire.h"

const char *ddts_msg_str(uint8_t type)
{
    switch (type) {
    case DDTS_MSG_HELLO_C:
        return "HELLO_C";
    case DDTS_MSG_HELLO_S:
        return "HELLO_S";
    case DDTS_MSG_SHARE_C:
        return "SHARE_C";
    case DDTS_MSG_SHARE_S:
        return "SHARE_S";
    case DDTS_MSG_CONFIRM_C:
        return "CONFIRM_C";
    case DDTS_MSG_AUTH_FAIL:
        return "AUTH_FAIL";
    case DDTS_MSG_HEARTBEAT:
        return "HEARTBEAT";
    case DDTS_MSG_ERROR:
        return "ERROR";
    case DDTS_MSG_BYE:
        return "BYE";
    case DDTS_MSG_JOIN:
        return "JOIN";
    case DDTS_MSG_JOB:
        return "JOB";
    case DDTS_MSG_FILE_BEGIN:
        return "FILE_BEGIN";
    case DDTS_MSG_FILE_DATA:
        return "FILE_DATA";
    case DDTS_MSG_FILE_END:
        return "FILE_END";
    case DDTS_MSG_FILES_DONE:
        return "FILES_DONE";
    case DDTS_MSG_READY:
        return "READY";
    case DDTS_MSG_SYNC:
        return "SYNC";
    case DDTS_MSG_SYNC_RESULT:
        return "SYNC_RESULT";
    case DDTS_MSG_TRAINED:
        return "TRAINED";
    case DDTS_MSG_RECEIPT:
        return "RECEIPT";
    case DDTS_MSG_NEXT:
        return "NEXT";
    case DDTS_MSG_DONE:
        return "DONE";
    case DDTS_MSG_PROGRESS:
        return "PROGRESS";
    case DDTS_MSG_EPOCH:
        return "EPOCH";
    default:
        return "?";
    }
}

void ddts_wire_frame_header_encode(uint8_t out[DDTS_WIRE_HEADER_BYTES], uint32_t len)
{
    out[0] = (uint8_t)len;
    out[1] = (uint8_t)(len >> 8);
    out[2] = (uint8_t)(len >> 16);
    out[3] = (uint8_t)(len >> 24);
}

enum ddts_status ddts_wire_frame_header_decode(const uint8_t in[DDTS_WIRE_HEADER_BYTES],
                                               uint32_t max_len, uint32_t *len,
                                               struct ddts_error *err)
{
    uint32_t v =
        (uint32_t)in[0] | (uint32_t)in[1] << 8 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 24;
    *len = 0;
    if (v == 0)
        return ddts_error_set(err, DDTS_EPROTO, "wire: empty frame");
    if (v > max_len)
        return ddts_error_set(err, DDTS_ELIMIT, "wire: frame of %u bytes (max %u)", v, max_len);
    *len = v;
    return DDTS_OK;
}

void ddts_wire_writer_init(struct ddts_wire_writer *w, uint8_t *buf, size_t cap)
{
    w->buf = buf;
    w->cap = cap;
    w->len = 0;
    w->status = DDTS_OK;
}

/* Reserves n bytes; NULL (and a sticky ELIMIT) when they do not fit. */
static uint8_t *reserve(struct ddts_wire_writer *w, size_t n)
{
    if (w->status != DDTS_OK)
        return NULL;
    if (n > w->cap - w->len) {
        w->status = DDTS_ELIMIT;
        return NULL;
    }
    uint8_t *p = w->buf + w->len;
    w->len += n;
    return p;
}

static void put_le(struct ddts_wire_writer *w, uint64_t v, size_t n)
{
    uint8_t *p = reserve(w, n);
    if (p == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void ddts_wire_put_u8(struct ddts_wire_writer *w, uint8_t v)
{
    put_le(w, v, 1);
}
void ddts_wire_put_u16(struct ddts_wire_writer *w, uint16_t v)
{
    put_le(w, v, 2);
}
void ddts_wire_put_u32(struct ddts_wire_writer *w, uint32_t v)
{
    put_le(w, v, 4);
}
void ddts_wire_put_u64(struct ddts_wire_writer *w, uint64_t v)
{
    put_le(w, v, 8);
}
void ddts_wire_put_f64(struct ddts_wire_writer *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    put_le(w, u, 8);
}

void ddts_wire_put_raw(struct ddts_wire_writer *w, const void *p, size_t n)
{
    uint8_t *d = reserve(w, n);
    if (d != NULL && n > 0)
        memcpy(d, p, n);
}

void ddts_wire_put_bytes(struct ddts_wire_writer *w, const void *p, size_t n)
{
    if (n > UINT32_MAX) {
        if (w->status == DDTS_OK)
            w->status = DDTS_ELIMIT;
        return;
    }
    ddts_wire_put_u32(w, (uint32_t)n);
    ddts_wire_put_raw(w, p, n);
}

void ddts_wire_put_str(struct ddts_wire_writer *w, const char *s)
{
    ddts_wire_put_bytes(w, s, s == NULL ? 0 : strlen(s));
}

void ddts_wire_reader_init(struct ddts_wire_reader *r, const void *buf, size_t len)
{
    r->buf = buf;
    r->len = len;
    r->pos = 0;
    r->status = DDTS_OK;
}

/* Takes n bytes; NULL (and a sticky EFORMAT) when fewer are left. */
static const uint8_t *take(struct ddts_wire_reader *r, size_t n)
{
    if (r->status != DDTS_OK)
        return NULL;
    if (n > r->len - r->pos) {
        r->status = DDTS_EFORMAT;
        return NULL;
    }
    const uint8_t *p = r->buf + r->pos;
    r->pos += n;
    return p;
}

static uint64_t get_le(struct ddts_wire_reader *r, size_t n)
{
    const uint8_t *p = take(r, n);
    uint64_t v = 0;
    if (p == NULL)
        return 0;
    for (size_t i = 0; i < n; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

void ddts_wire_get_u8(struct ddts_wire_reader *r, uint8_t *v)
{
    *v = (uint8_t)get_le(r, 1);
}
void ddts_wire_get_u16(struct ddts_wire_reader *r, uint16_t *v)
{
    *v = (uint16_t)get_le(r, 2);
}
void ddts_wire_get_u32(struct ddts_wire_reader *r, uint32_t *v)
{
    *v = (uint32_t)get_le(r, 4);
}
void ddts_wire_get_u64(struct ddts_wire_reader *r, uint64_t *v)
{
    *v = get_le(r, 8);
}
void ddts_wire_get_f64(struct ddts_wire_reader *r, double *v)
{
    uint64_t u = get_le(r, 8);
    memcpy(v, &u, sizeof *v);
}

void ddts_wire_get_raw(struct ddts_wire_reader *r, void *out, size_t n)
{
    const uint8_t *p = take(r, n);
    if (p == NULL) {
        memset(out, 0, n);
        return;
    }
    if (n > 0)
        memcpy(out, p, n);
}

void ddts_wire_get_bytes(struct ddts_wire_reader *r, size_t max_len, const uint8_t **p, size_t *n)
{
    uint32_t len = 0;
    *p = NULL;
    *n = 0;
    ddts_wire_get_u32(r, &len);
    if (r->status != DDTS_OK)
        return;
    if (len > max_len) {
        r->status = DDTS_ELIMIT;
        return;
    }
    const uint8_t *d = take(r, len);
    if (d == NULL)
        return;
    *p = d;
    *n = len;
}

void ddts_wire_get_str(struct ddts_wire_reader *r, size_t max_len, char *out, size_t cap)
{
    const uint8_t *p;
    size_t n;
    if (cap > 0)
        out[0] = '\0';
    ddts_wire_get_bytes(r, max_len, &p, &n);
    if (r->status != DDTS_OK)
        return;
    if (n >= cap) {
        r->status = DDTS_ELIMIT;
        return;
    }
    if (n > 0 && memchr(p, '\0', n) != NULL) {
        r->status = DDTS_EFORMAT;
        return;
    }
    if (n > 0)
        memcpy(out, p, n);
    out[n] = '\0';
}

void ddts_wire_get_rest(struct ddts_wire_reader *r, const uint8_t **p, size_t *n)
{
    *p = NULL;
    *n = 0;
    if (r->status != DDTS_OK)
        return;
    *p = r->buf + r->pos;
    *n = r->len - r->pos;
    r->pos = r->len;
}

enum ddts_status ddts_wire_reader_end(const struct ddts_wire_reader *r, const char *what,
                                      struct ddts_error *err)
{
    if (r->status == DDTS_ELIMIT)
        return ddts_error_set(err, DDTS_EPROTO, "wire: %s: a field exceeds its limit", what);
    if (r->status != DDTS_OK)
        return ddts_error_set(err, DDTS_EPROTO, "wire: %s: message is truncated (%zu bytes)", what,
                              r->len);
    if (r->pos != r->len)
        return ddts_error_set(err, DDTS_EPROTO, "wire: %s: %zu unexpected trailing bytes", what,
                              r->len - r->pos);
    return DDTS_OK;
}

void ddts_wire_progress_encode(struct ddts_wire_writer *w, const struct ddts_wire_progress *p)
{
    ddts_wire_put_u8(w, DDTS_MSG_PROGRESS);
    ddts_wire_put_u32(w, p->fold);
    ddts_wire_put_u32(w, p->n_folds);
    ddts_wire_put_u32(w, p->epoch);
    ddts_wire_put_u32(w, p->epochs);
    ddts_wire_put_u64(w, p->done);
    ddts_wire_put_u64(w, p->total);
    ddts_wire_put_f64(w, p->loss);
    ddts_wire_put_f64(w, p->accuracy);
    ddts_wire_put_f64(w, p->samples_per_s);
    ddts_wire_put_f64(w, p->elapsed_s);
    ddts_wire_put_u8(w, p->flags);
}

static int name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* Fold of n_folds (both 0, or 1..n_folds <= max) and epoch of epochs (1..epochs <= max). */
static enum ddts_status check_position(const char *what, uint32_t fold, uint32_t n_folds,
                                       uint32_t epoch, uint32_t epochs, struct ddts_error *err)
{
    if (n_folds > DDTS_MAX_PROGRESS_FOLDS ||
        (n_folds == 0 ? fold != 0 : fold < 1 || fold > n_folds))
        return ddts_error_set(err, DDTS_EPROTO, "%s: fold %u of %u", what, fold, n_folds);
    if (epochs < 1 || epochs > DDTS_MAX_PROGRESS_EPOCHS || epoch < 1 || epoch > epochs)
        return ddts_error_set(err, DDTS_EPROTO, "%s: epoch %u of %u", what, epoch, epochs);
    return DDTS_OK;
}

/* A rate or a duration: finite, 0 <= v <= max. */
static int in_range(double v, double max)
{
    return isfinite(v) && v >= 0 && v <= max;
}

enum ddts_status ddts_wire_progress_decode(const uint8_t *payload, size_t n,
                                           struct ddts_wire_progress *out, struct ddts_error *err)
{
    struct ddts_wire_progress p;
    struct ddts_wire_reader r;
    memset(out, 0, sizeof *out);
    ddts_wire_reader_init(&r, payload, n);
    ddts_wire_get_u32(&r, &p.fold);
    ddts_wire_get_u32(&r, &p.n_folds);
    ddts_wire_get_u32(&r, &p.epoch);
    ddts_wire_get_u32(&r, &p.epochs);
    ddts_wire_get_u64(&r, &p.done);
    ddts_wire_get_u64(&r, &p.total);
    ddts_wire_get_f64(&r, &p.loss);
    ddts_wire_get_f64(&r, &p.accuracy);
    ddts_wire_get_f64(&r, &p.samples_per_s);
    ddts_wire_get_f64(&r, &p.elapsed_s);
    ddts_wire_get_u8(&r, &p.flags);
    enum ddts_status st = ddts_wire_reader_end(&r, "PROGRESS", err);
    if (st != DDTS_OK)
        return st;
    /* Every count and figure is checked here, so the server never trusts one. */
    st = check_position("PROGRESS", p.fold, p.n_folds, p.epoch, p.epochs, err);
    if (st != DDTS_OK)
        return st;
    if (p.total > DDTS_MAX_PROGRESS_SAMPLES || p.done > p.total)
        return ddts_error_set(err, DDTS_EPROTO,
                              "PROGRESS: %llu of %llu samples (at most %llu per epoch)",
                              (unsigned long long)p.done, (unsigned long long)p.total,
                              (unsigned long long)DDTS_MAX_PROGRESS_SAMPLES);
    if (isinf(p.loss) || !(isnan(p.accuracy) || (p.accuracy >= 0 && p.accuracy <= 1)))
        return ddts_error_set(err, DDTS_EPROTO, "PROGRESS: loss %g, accuracy %g", p.loss,
                              p.accuracy);
    if (!in_range(p.samples_per_s, DDTS_MAX_PROGRESS_RATE) ||
        !in_range(p.elapsed_s, DDTS_MAX_PROGRESS_SECONDS))
        return ddts_error_set(err, DDTS_EPROTO, "PROGRESS: %g samples/s, %g s elapsed",
                              p.samples_per_s, p.elapsed_s);
    if ((p.flags & ~DDTS_PROGRESS_EPOCH_END) != 0)
        return ddts_error_set(err, DDTS_EPROTO, "PROGRESS: unknown flags 0x%02x", p.flags);
    *out = p;
    return DDTS_OK;
}

void ddts_wire_epoch_encode(struct ddts_wire_writer *w, const struct ddts_wire_epoch *e)
{
    uint32_t n = e->n <= DDTS_MAX_EPOCH_FIGURES ? e->n : DDTS_MAX_EPOCH_FIGURES + 1;
    ddts_wire_put_u8(w, DDTS_MSG_EPOCH);
    ddts_wire_put_u32(w, e->fold);
    ddts_wire_put_u32(w, e->n_folds);
    ddts_wire_put_u32(w, e->epoch);
    ddts_wire_put_u32(w, e->epochs);
    ddts_wire_put_u16(w, (uint16_t)n);
    if (n > DDTS_MAX_EPOCH_FIGURES) {
        /* A count the decoder refuses is not sent at all. */
        if (w->status == DDTS_OK)
            w->status = DDTS_ELIMIT;
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        ddts_wire_put_bytes(w, e->names[i], strnlen(e->names[i], sizeof e->names[i]));
        ddts_wire_put_f64(w, e->values[i]);
    }
}

int ddts_wire_epoch_name_ok(const char *name)
{
    size_t n = strnlen(name, DDTS_MAX_EPOCH_NAME_BYTES + 1);
    if (n == 0 || n > DDTS_MAX_EPOCH_NAME_BYTES)
        return -1;
    for (size_t i = 0; i < n; i++)
        if (!name_char(name[i]))
            return -1;
    return 0;
}

enum ddts_status ddts_wire_epoch_decode(const uint8_t *payload, size_t n,
                                        struct ddts_wire_epoch *out, struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    struct ddts_wire_reader r;
    uint16_t count = 0;
    ddts_wire_reader_init(&r, payload, n);
    ddts_wire_get_u32(&r, &out->fold);
    ddts_wire_get_u32(&r, &out->n_folds);
    ddts_wire_get_u32(&r, &out->epoch);
    ddts_wire_get_u32(&r, &out->epochs);
    ddts_wire_get_u16(&r, &count);
    enum ddts_status st = DDTS_OK;
    /* The count first: the names that follow go into fixed slots. */
    if (r.status == DDTS_OK && count > DDTS_MAX_EPOCH_FIGURES)
        st = ddts_error_set(err, DDTS_EPROTO, "EPOCH: %u figures (at most %u)", count,
                            DDTS_MAX_EPOCH_FIGURES);
    for (uint16_t i = 0; st == DDTS_OK && i < count && r.status == DDTS_OK; i++) {
        ddts_wire_get_str(&r, DDTS_MAX_EPOCH_NAME_BYTES, out->names[i], sizeof out->names[i]);
        ddts_wire_get_f64(&r, &out->values[i]);
        if (r.status != DDTS_OK)
            break;
        if (ddts_wire_epoch_name_ok(out->names[i]) != 0)
            st = ddts_error_set(err, DDTS_EPROTO,
                                "EPOCH: figure %u's name is empty or has a byte outside "
                                "[A-Za-z0-9._-]",
                                (unsigned)i + 1);
        for (uint16_t j = 0; st == DDTS_OK && j < i; j++)
            if (strcmp(out->names[j], out->names[i]) == 0)
                st = ddts_error_set(err, DDTS_EPROTO, "EPOCH: figure '%s' given twice",
                                    out->names[i]);
    }
    if (st == DDTS_OK)
        st = ddts_wire_reader_end(&r, "EPOCH", err);
    if (st == DDTS_OK)
        st = check_position("EPOCH", out->fold, out->n_folds, out->epoch, out->epochs, err);
    if (st != DDTS_OK) {
        memset(out, 0, sizeof *out);
        return st;
    }
    out->n = count;
    return DDTS_OK;
}

enum ddts_status ddts_wire_check_relpath(const char *path, struct ddts_error *err)
{
    size_t n = strlen(path);
    if (n == 0 || n > DDTS_MAX_PATH_BYTES)
        return ddts_error_set(err, DDTS_EPROTO, "wire: path of %zu bytes (1..%d)", n,
                              DDTS_MAX_PATH_BYTES);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i == n || path[i] == '/') {
            size_t len = i - start;
            if (len == 0 || (len == 1 && path[start] == '.') ||
                (len == 2 && path[start] == '.' && path[start + 1] == '.'))
                return ddts_error_set(err, DDTS_EPROTO,
                                      "wire: path '%.100s' has an empty, '.' or '..' component",
                                      path);
            start = i + 1;
        } else if (!name_char(path[i]) && path[i] != '+') {
            return ddts_error_set(err, DDTS_EPROTO,
                                  "wire: path '%.100s' has a character outside [A-Za-z0-9._+-/]",
                                  path);
        }
    }
    return DDTS_OK;
}

enum ddts_status ddts_wire_check_name(const char *name, struct ddts_error *err)
{
    size_t n = strlen(name);
    if (n == 0 || n > DDTS_MAX_NAME_BYTES)
        return ddts_error_set(err, DDTS_EINVAL, "name of %zu bytes (1..%d)", n,
                              DDTS_MAX_NAME_BYTES);
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return ddts_error_set(err, DDTS_EINVAL, "name '%s' is not allowed", name);
    for (size_t i = 0; i < n; i++)
        if (!name_char(name[i]))
            return ddts_error_set(err, DDTS_EINVAL,
                                  "name '%.64s' has a character outside [A-Za-z0-9._-]", name);
    return DDTS_OK;
}
