/* Training checkpoints (include/ddts/trainer.h): encode and decode, pure functions over bytes. */
#include <string.h>

#include "ddts/trainer.h"
#include "io/io.h"

#define VERSION    1u
#define HEAD_BYTES (8 + 4 + 4 + 8 + 8 + 8 + 8)

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
    size_t n_floats, body, total;
    if (__builtin_add_overflow(c->n_weights, c->n_opt_state, &n_floats) ||
        __builtin_mul_overflow(n_floats, (size_t)4, &body) ||
        __builtin_add_overflow(body, (size_t)HEAD_BYTES + 4, &total) ||
        total > DDTS_MAX_CHECKPOINT_BYTES)
        return ddts_error_set(err, DDTS_ELIMIT, "checkpoint: %zu + %zu values are too many",
                              c->n_weights, c->n_opt_state);
    uint8_t *buf = ddts_malloc(total);
    if (buf == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    memcpy(buf, MAGIC, sizeof MAGIC);
    put_u32(buf + 8, VERSION);
    put_u32(buf + 12, (uint32_t)c->epochs_done);
    put_u64(buf + 16, c->iterations);
    put_u64(buf + 24, c->seed);
    put_u64(buf + 32, c->n_weights);
    put_u64(buf + 40, c->n_opt_state);
    put_floats(buf + HEAD_BYTES, c->weights, c->n_weights);
    put_floats(buf + HEAD_BYTES + 4 * c->n_weights, c->opt_state, c->n_opt_state);
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
    memset(c, 0, sizeof *c);
}

enum ddts_status ddts_checkpoint_decode(const uint8_t *buf, size_t nbytes,
                                        struct ddts_checkpoint *out, struct ddts_error *err)
{
    memset(out, 0, sizeof *out);
    if (nbytes < HEAD_BYTES + 4 || memcmp(buf, MAGIC, sizeof MAGIC) != 0)
        return ddts_error_set(err, DDTS_EFORMAT, "checkpoint: not a ddts checkpoint");
    uint32_t version = get_u32(buf + 8);
    if (version != VERSION)
        return ddts_error_set(err, DDTS_EFORMAT, "checkpoint: version %u (this ddts reads %u)",
                              version, VERSION);
    int32_t epochs_done = (int32_t)get_u32(buf + 12);
    uint64_t nw = get_u64(buf + 32), no = get_u64(buf + 40), n_floats, want;
    if (epochs_done < 0 || __builtin_add_overflow(nw, no, &n_floats) ||
        __builtin_mul_overflow(n_floats, (uint64_t)4, &want) ||
        __builtin_add_overflow(want, (uint64_t)HEAD_BYTES + 4, &want) || want != nbytes)
        return ddts_error_set(err, DDTS_EFORMAT,
                              "checkpoint: %zu bytes do not hold %llu weights and %llu optimizer "
                              "values",
                              nbytes, (unsigned long long)nw, (unsigned long long)no);
    if (ddts__crc32(0, buf, nbytes - 4) != get_u32(buf + nbytes - 4))
        return ddts_error_set(err, DDTS_EFORMAT, "checkpoint: CRC mismatch (damaged file)");
    out->epochs_done = epochs_done;
    out->iterations = get_u64(buf + 16);
    out->seed = get_u64(buf + 24);
    out->n_weights = (size_t)nw;
    out->n_opt_state = (size_t)no;
    out->weights = ddts_mallocarray(nw ? (size_t)nw : 1, sizeof(float));
    out->opt_state = no > 0 ? ddts_mallocarray((size_t)no, sizeof(float)) : NULL;
    if (out->weights == NULL || (no > 0 && out->opt_state == NULL)) {
        ddts_checkpoint_deinit(out);
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    get_floats(buf + HEAD_BYTES, out->weights, (size_t)nw);
    get_floats(buf + HEAD_BYTES + 4 * nw, out->opt_state, (size_t)no);
    return DDTS_OK;
}
