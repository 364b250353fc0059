/*
 * The ddts wire format: pure encoding and decoding over byte buffers.
 * Private to the library (src/net/); the public API is server.h and client.h.
 *
 * Everything on a ddts connection is a frame: a 4-byte little-endian length
 * L followed by L bytes of body. Before authentication the body is a plain
 * message; after it, the body is one crypto_secretstream ciphertext whose
 * plaintext is a message. A message is one type byte (enum ddts_msg) followed
 * by its payload, built from little-endian fixed-width integers, IEEE-754
 * doubles, and length-prefixed (u32) strings and byte strings.
 * docs/protocol.md describes every message; src/net/wire.c repeats the layout.
 *
 * Nothing here allocates, logs or touches a socket, so it is fuzzed directly
 * (fuzz/fuzz_wire.c).
 *
 *     uint8_t buf[64];
 *     struct ddts_wire_writer w;
 *     ddts_wire_writer_init(&w, buf, sizeof buf);
 *     ddts_wire_put_u8(&w, DDTS_MSG_RECEIPT);
 *     ddts_wire_put_u32(&w, n_files);
 *     if (w.status != DDTS_OK) ...  (the buffer was too small)
 *
 *     struct ddts_wire_reader r;
 *     ddts_wire_reader_init(&r, buf, w.len);
 *     uint8_t type; uint32_t n;
 *     ddts_wire_get_u8(&r, &type);
 *     ddts_wire_get_u32(&r, &n);
 *     if (ddts_wire_reader_end(&r, err) != DDTS_OK) ...  (short, or bytes left over)
 *
 * Writers and readers are "sticky": after the first failure every later call
 * does nothing and `status` keeps the first failure, so a sequence of calls is
 * checked once at the end.
 */
#ifndef DDTS_WIRE_H
#define DDTS_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "ddts/core.h"
#include "ddts/server.h" /* struct ddts_wire_progress */

#ifdef __cplusplus
extern "C" {
#endif

/* Protocol identity, sent in both hellos. */
#define DDTS_WIRE_MAGIC       "DDTS" /* 4 bytes, no NUL on the wire */
#define DDTS_WIRE_MAGIC_BYTES 4
/*
 * 2 added PROGRESS, which a version-1 server refuses; 3 added EPOCH, which a
 * version-2 server refuses. A server accepts clients of
 * DDTS_WIRE_VERSION_MIN..DDTS_WIRE_VERSION and answers in the client's
 * version (and refuses a message newer than it); a client needs a server of
 * its own version.
 */
#define DDTS_WIRE_VERSION      3
#define DDTS_WIRE_VERSION_MIN  1
#define DDTS_WIRE_HEADER_BYTES 4 /* the frame's u32 length */

/* Message types (the first byte of every message). Values are stable. */
enum ddts_msg {
    /* Before authentication, in the clear (docs/protocol.md, "Handshake"). */
    DDTS_MSG_HELLO_C = 0x01,   /* magic, u16 version, client nonce[16] */
    DDTS_MSG_HELLO_S = 0x02,   /* magic, u16 version, u8 status, server sid[16] */
    DDTS_MSG_SHARE_C = 0x03,   /* client CPace share Ya[32] */
    DDTS_MSG_SHARE_S = 0x04,   /* server share Yb[32], tag_S[32], stream header[24] */
    DDTS_MSG_CONFIRM_C = 0x05, /* tag_C[32], stream header[24] */
    DDTS_MSG_AUTH_FAIL = 0x06, /* empty: the client rejected tag_S */

    /* After authentication, encrypted. */
    DDTS_MSG_HEARTBEAT = 0x10,   /* empty; resets the peer's read timeout */
    DDTS_MSG_ERROR = 0x11,       /* u32 status, string message; then close */
    DDTS_MSG_BYE = 0x12,         /* empty, sent with the stream's FINAL tag */
    DDTS_MSG_JOIN = 0x20,        /* c->s: id[16], name, job, job_id[16], u32 share, u8 flags */
    DDTS_MSG_JOB = 0x21,         /* s->c: job (protocol.md), then files, FILES_DONE */
    DDTS_MSG_FILE_BEGIN = 0x22,  /* u8 kind, string relative path, u64 size */
    DDTS_MSG_FILE_DATA = 0x23,   /* bytes (raw, no length prefix: the rest of the message) */
    DDTS_MSG_FILE_END = 0x24,    /* empty */
    DDTS_MSG_FILES_DONE = 0x25,  /* u32 number of files sent */
    DDTS_MSG_READY = 0x26,       /* c->s: job and files are stored; training starts */
    DDTS_MSG_SYNC = 0x30,        /* c->s: u8 op, u8 flags, u64 samples, u64 n; FILE_DATA follows */
    DDTS_MSG_SYNC_RESULT = 0x31, /* s->c: u64 round, u64 total samples, u64 n; FILE_DATA follows */
    DDTS_MSG_TRAINED = 0x32,     /* c->s: u32 status of training, string message */
    DDTS_MSG_RECEIPT = 0x33,     /* s->c: u32 files, u64 bytes */
    DDTS_MSG_NEXT = 0x34,        /* c->s: ready for another share */
    DDTS_MSG_DONE = 0x35,        /* s->c: the job is complete; no more work */
    DDTS_MSG_PROGRESS = 0x36,    /* c->s: training progress (struct ddts_wire_progress) */
    DDTS_MSG_EPOCH = 0x37,       /* c->s: a finished epoch's history row (struct ddts_wire_epoch) */
};

/* FILE_BEGIN's kind: what a file is. Values are stable. */
enum ddts_file_kind {
    DDTS_FILE_MODEL = 1,        /* s->c: the job's model file ("model" + its extension) */
    DDTS_FILE_SHARD = 2,        /* s->c: a file of the client's share of the data */
    DDTS_FILE_INIT_WEIGHTS = 3, /* s->c: the latest global weights ("init_weights.f32") */
    DDTS_FILE_RESULT = 4,       /* c->s: a result file of a trained share */
};

/* JOIN's flags: what the client already holds of its last share. */
enum ddts_join_flags {
    DDTS_JOIN_HAS_FILES = 1u, /* the job's files are stored */
    DDTS_JOIN_TRAINED = 2u,   /* the share is trained */
    DDTS_JOIN_RECEIVED = 4u,  /* the server confirmed receipt of its results */
};

/* SYNC's flags. */
#define DDTS_SYNC_WEIGHTS 1u /* the vector is the model's weights: a round of the job */

/* Returns a name for a message type ("JOIN"), "?" when unknown. */
const char *ddts_msg_str(uint8_t type);

/* Frame header. Encodes `len` as 4 little-endian bytes. */
void ddts_wire_frame_header_encode(uint8_t out[DDTS_WIRE_HEADER_BYTES], uint32_t len);
/*
 * Decodes a frame header into `*len`. DDTS_EPROTO for a zero length,
 * DDTS_ELIMIT when `*len` > `max_len` (checked before anything is read or
 * allocated).
 */
DDTS_NODISCARD enum ddts_status
ddts_wire_frame_header_decode(const uint8_t in[DDTS_WIRE_HEADER_BYTES], uint32_t max_len,
                              uint32_t *len, struct ddts_error *err);

/* A writer over caller storage (never allocates). */
struct ddts_wire_writer {
    uint8_t *buf;
    size_t cap;
    size_t len;
    enum ddts_status status; /* DDTS_OK, or DDTS_ELIMIT once something did not fit */
};
void ddts_wire_writer_init(struct ddts_wire_writer *w, uint8_t *buf, size_t cap);
void ddts_wire_put_u8(struct ddts_wire_writer *w, uint8_t v);
void ddts_wire_put_u16(struct ddts_wire_writer *w, uint16_t v);
void ddts_wire_put_u32(struct ddts_wire_writer *w, uint32_t v);
void ddts_wire_put_u64(struct ddts_wire_writer *w, uint64_t v);
void ddts_wire_put_f64(struct ddts_wire_writer *w, double v);
/* Raw bytes, no length prefix. */
void ddts_wire_put_raw(struct ddts_wire_writer *w, const void *p, size_t n);
/* u32 length + bytes. */
void ddts_wire_put_bytes(struct ddts_wire_writer *w, const void *p, size_t n);
/* u32 length + the bytes of a NUL-terminated string (s may be NULL: empty). */
void ddts_wire_put_str(struct ddts_wire_writer *w, const char *s);

/* A reader over borrowed bytes. */
struct ddts_wire_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
    enum ddts_status status; /* DDTS_OK, or DDTS_EFORMAT/DDTS_ELIMIT at the first problem */
};
void ddts_wire_reader_init(struct ddts_wire_reader *r, const void *buf, size_t len);
/* Each get stores 0 / NULL on failure. */
void ddts_wire_get_u8(struct ddts_wire_reader *r, uint8_t *v);
void ddts_wire_get_u16(struct ddts_wire_reader *r, uint16_t *v);
void ddts_wire_get_u32(struct ddts_wire_reader *r, uint32_t *v);
void ddts_wire_get_u64(struct ddts_wire_reader *r, uint64_t *v);
void ddts_wire_get_f64(struct ddts_wire_reader *r, double *v);
/* `n` raw bytes copied into `out`. */
void ddts_wire_get_raw(struct ddts_wire_reader *r, void *out, size_t n);
/* u32 length (<= max_len, else DDTS_ELIMIT) + bytes, borrowed from the buffer. */
void ddts_wire_get_bytes(struct ddts_wire_reader *r, size_t max_len, const uint8_t **p, size_t *n);
/*
 * A string (<= max_len bytes) copied into `out` (capacity `cap`, which must
 * exceed max_len) with a NUL; an embedded NUL is DDTS_EFORMAT.
 */
void ddts_wire_get_str(struct ddts_wire_reader *r, size_t max_len, char *out, size_t cap);
/* The unread rest of the buffer, borrowed; the reader then sits at its end. */
void ddts_wire_get_rest(struct ddts_wire_reader *r, const uint8_t **p, size_t *n);
/*
 * Checks a fully parsed message: DDTS_EPROTO (with `what` in the message)
 * when a get failed or bytes are left over; DDTS_OK otherwise.
 */
DDTS_NODISCARD enum ddts_status ddts_wire_reader_end(const struct ddts_wire_reader *r,
                                                     const char *what, struct ddts_error *err);

/*
 * PROGRESS (client to server, while training): struct ddts_wire_progress
 * (public, in include/ddts/server.h). 66 bytes with the type byte:
 *   u8 type, u32 fold, u32 n_folds, u32 epoch, u32 epochs, u64 done, u64 total,
 *   f64 loss, f64 accuracy, f64 samples_per_s, f64 elapsed_s, u8 flags
 */
#define DDTS_WIRE_PROGRESS_BYTES 66 /* the whole message, type byte included */

/* Writes a whole PROGRESS message (type byte first); check w->status. */
void ddts_wire_progress_encode(struct ddts_wire_writer *w, const struct ddts_wire_progress *p);
/*
 * Decodes a PROGRESS payload (the `n` bytes after the type byte, as
 * ddts_conn_recv gives them) into *out. DDTS_EPROTO, and *out zeroed, when
 * the length is not exact or a value is out of range: fold not in
 * 1..n_folds (or both not 0), n_folds > DDTS_MAX_PROGRESS_FOLDS, epoch not in
 * 1..epochs, epochs > DDTS_MAX_PROGRESS_EPOCHS, done > total, total >
 * DDTS_MAX_PROGRESS_SAMPLES, loss infinite, accuracy neither NaN nor in
 * [0, 1], samples_per_s or elapsed_s negative, not finite or beyond
 * DDTS_MAX_PROGRESS_RATE / DDTS_MAX_PROGRESS_SECONDS, unknown flag bits.
 */
DDTS_NODISCARD enum ddts_status ddts_wire_progress_decode(const uint8_t *payload, size_t n,
                                                          struct ddts_wire_progress *out,
                                                          struct ddts_error *err);

/*
 * EPOCH (client to server, version 3, after the PROGRESS that ends an
 * epoch): struct ddts_wire_epoch (public, in include/ddts/server.h):
 *   u8 type, u32 fold, u32 n_folds, u32 epoch, u32 epochs, u16 n,
 *   n x (str name, f64 value)
 * At most 19 + 16 x (4 + 64 + 8) = 1235 bytes.
 */
#define DDTS_WIRE_EPOCH_MAX_BYTES                                                                  \
    (19 + DDTS_MAX_EPOCH_FIGURES * (4 + DDTS_MAX_EPOCH_NAME_BYTES + 8))

/* Writes a whole EPOCH message (type byte first); check w->status. */
void ddts_wire_epoch_encode(struct ddts_wire_writer *w, const struct ddts_wire_epoch *e);
/*
 * Decodes an EPOCH payload (the `n` bytes after the type byte) into *out.
 * DDTS_EPROTO, and *out zeroed, when the length is not exact or a value is
 * out of range: fold and epoch as for PROGRESS, more than
 * DDTS_MAX_EPOCH_FIGURES figures, a name empty, longer than
 * DDTS_MAX_EPOCH_NAME_BYTES, with a byte outside [A-Za-z0-9._-] or given
 * twice. The values are not judged (a NaN or infinite figure is the
 * client's to report, and the dashboard shows it as no number).
 */
DDTS_NODISCARD enum ddts_status ddts_wire_epoch_decode(const uint8_t *payload, size_t n,
                                                       struct ddts_wire_epoch *out,
                                                       struct ddts_error *err);
/* A figure's name as EPOCH accepts it; 0 when accepted. */
int ddts_wire_epoch_name_ok(const char *name);

/*
 * Validates a relative path received from a peer: 1..DDTS_MAX_PATH_BYTES
 * bytes, components of [A-Za-z0-9._+-] only, no empty, "." or ".." component,
 * not absolute. DDTS_EPROTO naming the path otherwise.
 */
DDTS_NODISCARD enum ddts_status ddts_wire_check_relpath(const char *path, struct ddts_error *err);
/* Validates a client name: 1..DDTS_MAX_NAME_BYTES of [A-Za-z0-9._-], not "." or "..". */
DDTS_NODISCARD enum ddts_status ddts_wire_check_name(const char *name, struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
