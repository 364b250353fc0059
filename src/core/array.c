/* Typed arrays: creation with checked sizes, element access, conversion. */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "ddts/array.h"

static const struct {
    const char *name;
    size_t size;
} dtypes[DDTS_N_DTYPES] = {
    [DDTS_BOOL] = {"bool", 1},   [DDTS_I8] = {"int8", 1},     [DDTS_U8] = {"uint8", 1},
    [DDTS_I16] = {"int16", 2},   [DDTS_U16] = {"uint16", 2},  [DDTS_I32] = {"int32", 4},
    [DDTS_U32] = {"uint32", 4},  [DDTS_I64] = {"int64", 8},   [DDTS_U64] = {"uint64", 8},
    [DDTS_F16] = {"float16", 2}, [DDTS_F32] = {"float32", 4}, [DDTS_F64] = {"float64", 8},
};

size_t ddts_dtype_size(enum ddts_dtype dtype)
{
    if ((unsigned)dtype >= DDTS_N_DTYPES)
        return 0;
    return dtypes[dtype].size;
}

const char *ddts_dtype_name(enum ddts_dtype dtype)
{
    if ((unsigned)dtype >= DDTS_N_DTYPES)
        return "?";
    return dtypes[dtype].name;
}

enum ddts_status ddts_dtype_parse(const char *name, enum ddts_dtype *out)
{
    for (int i = 0; i < DDTS_N_DTYPES; i++) {
        if (strcmp(name, dtypes[i].name) == 0) {
            *out = (enum ddts_dtype)i;
            return DDTS_OK;
        }
    }
    return DDTS_EINVAL;
}

/* mode: 0 uninitialised, 1 zeroed, 2 no data (the caller maps it). */
static enum ddts_status create(enum ddts_dtype dtype, int rank, const int64_t *shape, int mode,
                               struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if ((unsigned)dtype >= DDTS_N_DTYPES)
        return ddts_error_set(err, DDTS_EINVAL, "array: invalid dtype %d", (int)dtype);
    if (rank < 0 || rank > DDTS_MAX_ARRAY_RANK)
        return ddts_error_set(err, DDTS_ELIMIT, "array: rank %d (max %d)", rank,
                              DDTS_MAX_ARRAY_RANK);
    size_t nbytes = ddts_dtype_size(dtype);
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0)
            return ddts_error_set(err, DDTS_EINVAL, "array: negative dimension %lld",
                                  (long long)shape[i]);
        if (ddts_size_mul(nbytes, (size_t)shape[i], &nbytes) != 0 || nbytes > DDTS_MAX_ARRAY_BYTES)
            return ddts_error_set(err, DDTS_ELIMIT, "array: size exceeds %llu bytes",
                                  (unsigned long long)DDTS_MAX_ARRAY_BYTES);
    }
    struct ddts_array *a = ddts_calloc(1, sizeof *a);
    if (a == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "array: out of memory");
    a->dtype = dtype;
    a->rank = rank;
    for (int i = 0; i < rank; i++)
        a->shape[i] = shape[i];
    a->nbytes = nbytes;
    if (nbytes > 0 && mode != 2) {
        a->data = ddts_aligned_alloc(nbytes);
        if (a->data == NULL) {
            ddts_free(a);
            return ddts_error_set(err, DDTS_ENOMEM, "array: cannot allocate %zu bytes", nbytes);
        }
        if (mode == 1)
            memset(a->data, 0, nbytes);
    }
    *out = a;
    return DDTS_OK;
}

enum ddts_status ddts_array_create(enum ddts_dtype dtype, int rank, const int64_t *shape,
                                   struct ddts_array **out, struct ddts_error *err)
{
    return create(dtype, rank, shape, 1, out, err);
}

enum ddts_status ddts_array_create_uninit(enum ddts_dtype dtype, int rank, const int64_t *shape,
                                          struct ddts_array **out, struct ddts_error *err)
{
    return create(dtype, rank, shape, 0, out, err);
}

enum ddts_status ddts_array_wrap_mapping(enum ddts_dtype dtype, int rank, const int64_t *shape,
                                         void *map, size_t map_nbytes, size_t data_offset,
                                         struct ddts_array **out, struct ddts_error *err)
{
    enum ddts_status st = create(dtype, rank, shape, 2, out, err);
    if (st != DDTS_OK)
        return st;
    struct ddts_array *a = *out;
    if (data_offset > map_nbytes || map_nbytes - data_offset < a->nbytes || data_offset % 64 != 0) {
        ddts_free(a);
        *out = NULL;
        return ddts_error_set(err, DDTS_EINVAL, "array: the mapping does not hold the data");
    }
    a->data = a->nbytes > 0 ? (char *)map + data_offset : NULL;
    a->map = map;
    a->map_nbytes = map_nbytes;
    return DDTS_OK;
}

void ddts_array_destroy(struct ddts_array *a)
{
    if (a == NULL)
        return;
    if (a->map != NULL)
        munmap(a->map, a->map_nbytes);
    else
        ddts_free(a->data);
    ddts_free(a);
}

size_t ddts_array_count(const struct ddts_array *a)
{
    size_t n = 1;
    for (int i = 0; i < a->rank; i++)
        n *= (size_t)a->shape[i];
    return n;
}

size_t ddts_array_sample_count(const struct ddts_array *a)
{
    size_t n = 1;
    for (int i = 1; i < a->rank; i++)
        n *= (size_t)a->shape[i];
    return n;
}

/* IEEE 754 half to float, exact for every half value. */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else {
            /* Subnormal: normalise the mantissa. */
            exp = 127 - 15 + 1;
            while ((mant & 0x400) == 0) {
                mant <<= 1;
                exp--;
            }
            mant &= 0x3ff;
            bits = sign | (exp << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

double ddts_array_get(const struct ddts_array *a, size_t i)
{
    const unsigned char *p = a->data;
    switch (a->dtype) {
    case DDTS_BOOL:
        return p[i] != 0;
    case DDTS_I8:
        return ((const int8_t *)p)[i];
    case DDTS_U8:
        return p[i];
    case DDTS_I16:
        return ((const int16_t *)p)[i];
    case DDTS_U16:
        return ((const uint16_t *)p)[i];
    case DDTS_I32:
        return ((const int32_t *)p)[i];
    case DDTS_U32:
        return ((const uint32_t *)p)[i];
    case DDTS_I64:
        return (double)((const int64_t *)p)[i];
    case DDTS_U64:
        return (double)((const uint64_t *)p)[i];
    case DDTS_F16:
        return half_to_float(((const uint16_t *)p)[i]);
    case DDTS_F32:
        return ((const float *)p)[i];
    case DDTS_F64:
        return ((const double *)p)[i];
    case DDTS_N_DTYPES:
        break;
    }
    return 0.0;
}

void ddts_array_to_f32(const struct ddts_array *a, size_t first, size_t n, float *out)
{
    if (a->dtype == DDTS_F32) {
        memcpy(out, (const float *)a->data + first, n * sizeof(float));
        return;
    }
    if (a->dtype == DDTS_U8) {
        const uint8_t *p = (const uint8_t *)a->data + first;
        for (size_t i = 0; i < n; i++)
            out[i] = (float)p[i];
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = (float)ddts_array_get(a, first + i);
}

void ddts_array_shape_str(const struct ddts_array *a, char *buf, size_t buf_nbytes)
{
    size_t used = 0;
    int w = snprintf(buf, buf_nbytes, "(");
    used = w > 0 ? (size_t)w : 0;
    for (int i = 0; i < a->rank && used < buf_nbytes; i++) {
        w = snprintf(buf + used, buf_nbytes - used, "%s%lld", i ? ", " : "",
                     (long long)a->shape[i]);
        used += w > 0 ? (size_t)w : 0;
    }
    if (used < buf_nbytes)
        snprintf(buf + used, buf_nbytes - used, a->rank == 1 ? ",)" : ")");
}
