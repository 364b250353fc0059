/* Training checkpoints (include/ddts/trainer.h): encode and decode, pure functions over bytes. */
#include <ctype.h>
#include <string.h>

#include "ddts/fs.h"
#include "ddts/trainer.h"
#include "io/io.h"

#define VERSION     1u /* without a best model */
#define VERSION_2   2u /* with the best model */
#define HEAD_BYTES  (8 + 4 + 4 + 8 + 8 + 8 + 8)
#define BEST_BYTES  (4 + 8 + 32 + 8) /* best_epoch, best_value, best_monitor, n_best */
#define HEAD2_BYTES (HEAD_BYTES + BEST_BYTES)

static const uint8_t MAGIC[8] = {'D', 'D', 'T', 'S', 'C', 'K', 'P', 'T'};

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 0; i < 4; i++)
        v |= (uint32_t)p[i] << (8 * i);
    return v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* Floats as little-endian IEEE binary32 (the host order of every machine ddts builds on is
 * checked by the round trip in tests/unit/test_checkpoint.c). */
static void put_floats(uint8_t *p, const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        put_u32(p + 4 * i, u);
    }
}

static void get_floats(const uint8_t *p, float *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t u = get_u32(p + 4 * i);
        memcpy(&v[i], &u, 4);
    }
}

enum ddts_status ddts_checkpoint_encode(const struct ddts_checkpoint *c, uint8_t **out,
                                        size_t *out_nbytes, struct ddts_error *err)
{
    *out = NULL;
    *out_nbytes = 0;
    int with_best = c->n_best > 0;
    size_t head = with_best ? HEAD2_BYTES : HEAD_BYTES;
    size_t n_floats, body, total;
    if (__builtin_add_overflow(c->n_weights, c->n_opt_state, &n_floats) ||
        __builtin_add_overflow(n_floats, c->n_best, &n_floats) ||
        __builtin_mul_overflow(n_floats, (size_t)4, &body) ||
        __builtin_add_overflow(body, head + 4, &total) || total > DDTS_MAX_CHECKPOINT_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "checkpoint: %zu + %zu + %zu values are too many",
                              c->n_weights, c->n_opt_state, c->n_best);
    uint8_t *buf = ddts_malloc(total);
    if (buf == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    memcpy(buf, MAGIC, sizeof MAGIC);
    put_u32(buf + 8, with_best ? VERSION_2 : VERSION);
    put_u32(buf + 12, (uint32_t)c->epochs_done);
    put_u64(buf + 16, c->iterations);
    put_u64(buf + 24, c->seed);
    put_u64(buf + 32, c->n_weights);
    put_u64(buf + 40, c->n_opt_state);
    if (with_best) {
        uint64_t bits;
        memcpy(&bits, &c->best_value, 8);
        put_u32(buf + HEAD_BYTES, (uint32_t)c->best_epoch);
        put_u64(buf + HEAD_BYTES + 4, bits);
        memset(buf + HEAD_BYTES + 12, 0, 32);
        memcpy(buf + HEAD_BYTES + 12, c->best_monitor, strnlen(c->best_monitor, 31));
        put_u64(buf + HEAD_BYTES + 44, c->n_best);
    }
    uint8_t *p = buf + head;
    put_floats(p, c->weights, c->n_weights);
    p += 4 * c->n_weights;
    put_floats(p, c->opt_state, c->n_opt_state);
    p += 4 * c->n_opt_state;
    put_floats(p, c->best, c->n_best);
    put_u32(buf + total - 4, ddts__crc32(0, buf, total - 4));
    *out = buf;
    *out_nbytes = total;
    return DDTS_OK;
}

void ddts_checkpoint_deinit(struct ddts_checkpoint *c)
{
    if (c == NULL)
        return;
    ddts_free(c->weights);
    ddts_free(c->opt_state);
    ddts_free(c->best);
    memset(c, 0, sizeof *c);
    c->best_epoch = -1;
}

/* Version 2's best model: epoch, value, monitor (a name, NUL-padded) and n_best into *out. */
static enum ddts_status decode_best(const uint8_t *p, uint64_t nw, struct ddts_checkpoint *out,
                                    uint64_t *nb, struct ddts_error *err)
{
    int32_t epoch = (int32_t)get_u32(p);
    uint64_t bits = get_u64(p + 4);
    const uint8_t *mon = p + 12;
    *nb = get_u64(p + 44);
    size_t len = strnlen((const char *)mon, 32);
    int name_ok = len > 0 && len < 32;
    for (size_t i = 0; name_ok && i < 32; i++)
        name_ok = i < len ? (mon[i] == '_' || isalnum(mon[i])) : mon[i] == 0;
    if (epoch < 0 || *nb != nw || !name_ok)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "checkpoint: a best model of epoch %d, %llu values (of %llu), "
                              "monitor not a name",
                              epoch, (unsigned long long)*nb, (unsigned long long)nw);
    out->best_epoch = epoch;
    memcpy(&out->best_value, &bits, 8);
    memcpy(out->best_monitor, mon, len);
    out->best_monitor[len] = '\0';
    return DDTS_OK;
}

enum ddts_status ddts_checkpoint_decode(const uint8_t *buf, size_t nbytes,
                                        struct ddts_checkpoint *out, struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    out->best_epoch = -1;
    if (nbytes < HEAD_BYTES + 4 || memcmp(buf, MAGIC, sizeof MAGIC) != 0)
        return ddts_error_set(err, DDTS_EFORMAT, "checkpoint: not a ddts checkpoint");
    uint32_t version = get_u32(buf + 8);
    if (version != VERSION && version != VERSION_2)
        return ddts_error_set(err, DDTS_EFORMAT, "checkpoint: version %u (this ddts reads 1 and 2)",
                              version);
    size_t head = version == VERSION_2 ? HEAD2_BYTES : HEAD_BYTES;
    if (nbytes < head + 4)
        return ddts_error_set(err, DDTS_EFORMAT, "checkpoint: %zu bytes are too few", nbytes);
    int32_t epochs_done = (int32_t)get_u32(buf + 12);
    uint64_t nw = get_u64(buf + 32), no = get_u64(buf + 40), nb = 0, n_floats, want;
    enum ddts_status st = DDTS_OK;
    if (version == VERSION_2) {
        st = decode_best(buf + HEAD_BYTES, nw, out, &nb, err);
        if (st != DDTS_OK) {
            out->best_epoch = -1;
            return st;
        }
    }
    if (epochs_done < 0 || __builtin_add_overflow(nw, no, &n_floats) ||
        __builtin_add_overflow(n_floats, nb, &n_floats) ||
        __builtin_mul_overflow(n_floats, (uint64_t)4, &want) ||
        __builtin_add_overflow(want, (uint64_t)head + 4, &want) || want != nbytes) {
        memset(out, 0, sizeof *out);
        out->best_epoch = -1;
        return ddts_error_set(err, DDTS_EFORMAT,
                              "checkpoint: %zu bytes do not hold %llu weights and %llu optimizer "
                              "values",
                              nbytes, (unsigned long long)nw, (unsigned long long)no);
    }
    if (ddts__crc32(0, buf, nbytes - 4) != get_u32(buf + nbytes - 4)) {
        memset(out, 0, sizeof *out);
        out->best_epoch = -1;
        return ddts_error_set(err, DDTS_EFORMAT, "checkpoint: CRC mismatch (damaged file)");
    }
    out->epochs_done = epochs_done;
    out->iterations = get_u64(buf + 16);
    out->seed = get_u64(buf + 24);
    out->n_weights = (size_t)nw;
    out->n_opt_state = (size_t)no;
    out->n_best = (size_t)nb;
    out->weights = ddts_mallocarray(nw ? (size_t)nw : 1, sizeof(float));
    out->opt_state = no > 0 ? ddts_mallocarray((size_t)no, sizeof(float)) : NULL;
    out->best = nb > 0 ? ddts_mallocarray((size_t)nb, sizeof(float)) : NULL;
    if (out->weights == NULL || (no > 0 && out->opt_state == NULL) ||
        (nb > 0 && out->best == NULL)) {
        ddts_checkpoint_deinit(out);
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    const uint8_t *p = buf + head;
    get_floats(p, out->weights, (size_t)nw);
    p += 4 * nw;
    get_floats(p, out->opt_state, (size_t)no);
    p += 4 * no;
    get_floats(p, out->best, (size_t)nb);
    return DDTS_OK;
}

void ddts_checkpoint_from_model(struct ddts_model *m, int epochs_done, uint64_t seed,
                                struct ddts_checkpoint *out)
{
    memset(out, 0, sizeof *out);
    out->epochs_done = epochs_done;
    out->iterations = ddts_model_iterations(m);
    out->seed = seed;
    out->weights = ddts_model_weights_flat(m, &out->n_weights);
    out->opt_state = ddts_model_optimizer_state(m, &out->n_opt_state);
    struct ddts_best_state b;
    out->best_epoch = -1;
    if (ddts_model_best_state(m, &b)) {
        out->best = (float *)b.weights;
        out->n_best = b.n_weights;
        out->best_epoch = b.epoch;
        out->best_value = b.value;
        memcpy(out->best_monitor, b.monitor, sizeof out->best_monitor);
    }
}

enum ddts_status ddts_checkpoint_write(const char *path, const struct ddts_checkpoint *c,
                                       struct ddts_error *err)
{
    uint8_t *buf = NULL;
    size_t nb = 0;
    enum ddts_status st = ddts_checkpoint_encode(c, &buf, &nb, err);
    if (st == DDTS_OK)
        st = ddts_write_file_atomic(path, buf, nb, err);
    ddts_free(buf);
    return st;
}

enum ddts_status ddts_checkpoint_read(const char *path, struct ddts_checkpoint *out,
                                      struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    out->best_epoch = -1;
    char *bytes = NULL;
    size_t nb = 0;
    enum ddts_status st = ddts_read_file(path, DDTS_MAX_CHECKPOINT_BYTES, &bytes, &nb, err);
    if (st == DDTS_OK)
        st = ddts_checkpoint_decode((const uint8_t *)bytes, nb, out, err);
    if (st != DDTS_OK)
        ddts_error_prefix(err, "%s: ", path);
    ddts_free(bytes);
    return st;
}
