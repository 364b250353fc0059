/* Array operations of the data pipeline: dtype promotion, conversion, gather, concatenation. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "ddts/data.h"

static int is_float(enum ddts_dtype d)
{
    return d == DDTS_F16 || d == DDTS_F32 || d == DDTS_F64;
}

static int is_signed(enum ddts_dtype d)
{
    return d == DDTS_I8 || d == DDTS_I16 || d == DDTS_I32 || d == DDTS_I64;
}

static enum ddts_dtype float_of_size(size_t n)
{
    return n <= 2 ? DDTS_F16 : n <= 4 ? DDTS_F32 : DDTS_F64;
}

static enum ddts_dtype int_of_size(size_t n, int sign)
{
    if (sign)
        return n <= 1 ? DDTS_I8 : n <= 2 ? DDTS_I16 : n <= 4 ? DDTS_I32 : DDTS_I64;
    return n <= 1 ? DDTS_U8 : n <= 2 ? DDTS_U16 : n <= 4 ? DDTS_U32 : DDTS_U64;
}

enum ddts_dtype ddts_dtype_promote(enum ddts_dtype a, enum ddts_dtype b)
{
    if (a == b)
        return a;
    if (a == DDTS_BOOL)
        return b;
    if (b == DDTS_BOOL)
        return a;
    size_t sa = ddts_dtype_size(a), sb = ddts_dtype_size(b);
    if (is_float(a) && is_float(b))
        return sa >= sb ? a : b;
    if (is_float(a) || is_float(b)) {
        enum ddts_dtype f = is_float(a) ? a : b, i = is_float(a) ? b : a;
        size_t need = ddts_dtype_size(i) == 1 ? 2 : ddts_dtype_size(i) == 2 ? 4 : 8;
        size_t fs = ddts_dtype_size(f);
        return float_of_size(fs > need ? fs : need);
    }
    if (is_signed(a) == is_signed(b))
        return sa >= sb ? a : b;
    size_t ss = is_signed(a) ? sa : sb, us = is_signed(a) ? sb : sa;
    if (ss > us)
        return int_of_size(ss, 1);
    if (us >= 8)
        return DDTS_F64;
    return int_of_size(us * 2, 1);
}

/* float to IEEE half, round to nearest even, saturating to infinity. */
static uint16_t float_to_half(float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t mant = x & 0x7fffff;
    if (exp == 0xff)
        return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0));
    int e = (int)exp - 127 + 15;
    if (e >= 31)
        return (uint16_t)(sign | 0x7c00);
    if (e <= 0) {
        if (e < -10)
            return (uint16_t)sign;
        mant |= 0x800000;
        int shift = 14 - e;
        uint32_t h = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (h & 1)))
            h++;
        return (uint16_t)(sign | h);
    }
    uint32_t h = ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (h & 1)))
        h++; /* may carry into the exponent, which is right (up to infinity) */
    return (uint16_t)(sign | h);
}

static int64_t get_i64(const struct ddts_array *a, size_t i)
{
    const void *p = a->data;
    switch (a->dtype) {
    case DDTS_I8:
        return ((const int8_t *)p)[i];
    case DDTS_I16:
        return ((const int16_t *)p)[i];
    case DDTS_I32:
        return ((const int32_t *)p)[i];
    case DDTS_I64:
        return ((const int64_t *)p)[i];
    default:
        return 0;
    }
}

static uint64_t get_u64(const struct ddts_array *a, size_t i)
{
    const void *p = a->data;
    switch (a->dtype) {
    case DDTS_BOOL:
        return ((const uint8_t *)p)[i] != 0;
    case DDTS_U8:
        return ((const uint8_t *)p)[i];
    case DDTS_U16:
        return ((const uint16_t *)p)[i];
    case DDTS_U32:
        return ((const uint32_t *)p)[i];
    case DDTS_U64:
        return ((const uint64_t *)p)[i];
    default:
        return 0;
    }
}

/* Saturating double to integer, NaN to 0, truncating toward zero. */
static int64_t sat_i(double v, int64_t lo, int64_t hi)
{
    if (v != v)
        return 0;
    if (v <= (double)lo)
        return lo;
    if (v >= (double)hi)
        return hi;
    return (int64_t)v;
}

static uint64_t sat_u(double v, uint64_t hi)
{
    if (v != v || v <= 0)
        return 0;
    if (v >= (double)hi)
        return hi;
    return (uint64_t)v;
}

static void put_i64(void *p, size_t i, enum ddts_dtype d, int64_t v)
{
    switch (d) {
    case DDTS_BOOL:
        ((uint8_t *)p)[i] = v != 0;
        break;
    case DDTS_I8:
        ((int8_t *)p)[i] = (int8_t)(v < INT8_MIN ? INT8_MIN : v > INT8_MAX ? INT8_MAX : v);
        break;
    case DDTS_U8:
        ((uint8_t *)p)[i] = (uint8_t)(v < 0 ? 0 : v > UINT8_MAX ? UINT8_MAX : v);
        break;
    case DDTS_I16:
        ((int16_t *)p)[i] = (int16_t)(v < INT16_MIN ? INT16_MIN : v > INT16_MAX ? INT16_MAX : v);
        break;
    case DDTS_U16:
        ((uint16_t *)p)[i] = (uint16_t)(v < 0 ? 0 : v > UINT16_MAX ? UINT16_MAX : v);
        break;
    case DDTS_I32:
        ((int32_t *)p)[i] = (int32_t)(v < INT32_MIN ? INT32_MIN : v > INT32_MAX ? INT32_MAX : v);
        break;
    case DDTS_U32:
        ((uint32_t *)p)[i] = (uint32_t)(v < 0 ? 0 : v > (int64_t)UINT32_MAX ? UINT32_MAX : v);
        break;
    case DDTS_I64:
        ((int64_t *)p)[i] = v;
        break;
    case DDTS_U64:
        ((uint64_t *)p)[i] = v < 0 ? 0 : (uint64_t)v;
        break;
    case DDTS_F16:
        ((uint16_t *)p)[i] = float_to_half((float)v);
        break;
    case DDTS_F32:
        ((float *)p)[i] = (float)v;
        break;
    case DDTS_F64:
        ((double *)p)[i] = (double)v;
        break;
    case DDTS_N_DTYPES:
        break;
    }
}

static void put_u64(void *p, size_t i, enum ddts_dtype d, uint64_t v)
{
    if (d == DDTS_U64) {
        ((uint64_t *)p)[i] = v;
    } else if (d == DDTS_F16 || d == DDTS_F32 || d == DDTS_F64) {
        double x = (double)v;
        if (d == DDTS_F16)
            ((uint16_t *)p)[i] = float_to_half((float)x);
        else if (d == DDTS_F32)
            ((float *)p)[i] = (float)v;
        else
            ((double *)p)[i] = x;
    } else {
        put_i64(p, i, d, v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v);
    }
}

static void put_double(void *p, size_t i, enum ddts_dtype d, double v)
{
    switch (d) {
    case DDTS_BOOL:
        ((uint8_t *)p)[i] = v != 0;
        break;
    case DDTS_I8:
        ((int8_t *)p)[i] = (int8_t)sat_i(v, INT8_MIN, INT8_MAX);
        break;
    case DDTS_U8:
        ((uint8_t *)p)[i] = (uint8_t)sat_u(v, UINT8_MAX);
        break;
    case DDTS_I16:
        ((int16_t *)p)[i] = (int16_t)sat_i(v, INT16_MIN, INT16_MAX);
        break;
    case DDTS_U16:
        ((uint16_t *)p)[i] = (uint16_t)sat_u(v, UINT16_MAX);
        break;
    case DDTS_I32:
        ((int32_t *)p)[i] = (int32_t)sat_i(v, INT32_MIN, INT32_MAX);
        break;
    case DDTS_U32:
        ((uint32_t *)p)[i] = (uint32_t)sat_u(v, UINT32_MAX);
        break;
    case DDTS_I64:
        ((int64_t *)p)[i] = sat_i(v, INT64_MIN, INT64_MAX);
        break;
    case DDTS_U64:
        ((uint64_t *)p)[i] = sat_u(v, UINT64_MAX);
        break;
    case DDTS_F16:
        ((uint16_t *)p)[i] = float_to_half((float)v);
        break;
    case DDTS_F32:
        ((float *)p)[i] = (float)v;
        break;
    case DDTS_F64:
        ((double *)p)[i] = v;
        break;
    case DDTS_N_DTYPES:
        break;
    }
}

/* Converts n elements of src (from element `first`) into dst's elements from `at`. */
static void convert_range(const struct ddts_array *src, size_t first, size_t n, void *dst,
                          enum ddts_dtype to, size_t at)
{
    enum ddts_dtype from = src->dtype;
    if (from == to) {
        size_t es = ddts_dtype_size(to);
        memcpy((uint8_t *)dst + at * es, (const uint8_t *)src->data + first * es, n * es);
        return;
    }
    if (from == DDTS_U8 && to == DDTS_F64) {
        const uint8_t *s = (const uint8_t *)src->data + first;
        double *d = (double *)dst + at;
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
        return;
    }
    if (from == DDTS_F32 && to == DDTS_F64) {
        const float *s = (const float *)src->data + first;
        double *d = (double *)dst + at;
        for (size_t i = 0; i < n; i++)
            d[i] = s[i];
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (is_signed(from))
            put_i64(dst, at + i, to, get_i64(src, first + i));
        else if (!is_float(from))
            put_u64(dst, at + i, to, get_u64(src, first + i));
        else
            put_double(dst, at + i, to, ddts_array_get(src, first + i));
    }
}

enum ddts_status ddts_array_convert(const struct ddts_array *a, enum ddts_dtype to,
                                    struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if ((unsigned)to >= DDTS_N_DTYPES)
        return ddts_error_set(err, DDTS_EINVAL, "convert: invalid dtype %d", (int)to);
    struct ddts_array *b;
    enum ddts_status st = ddts_array_create(to, a->rank, a->shape, &b, err);
    if (st != DDTS_OK)
        return st;
    convert_range(a, 0, ddts_array_count(a), b->data, to, 0);
    *out = b;
    return DDTS_OK;
}

void ddts_array_convert_into(const struct ddts_array *a, enum ddts_dtype to, void *dst)
{
    convert_range(a, 0, ddts_array_count(a), dst, to, 0);
}

enum ddts_status ddts_array_take(const struct ddts_array *a, const uint32_t *idx, size_t n,
                                 struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if (a->rank == 0)
        return ddts_error_set(err, DDTS_ESHAPE, "take: a scalar has no samples");
    for (size_t i = 0; i < n; i++)
        if ((int64_t)idx[i] >= a->shape[0])
            return ddts_error_set(err, DDTS_EINVAL, "take: index %u out of range (%lld samples)",
                                  idx[i], (long long)a->shape[0]);
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    memcpy(shape, a->shape, sizeof shape);
    shape[0] = (int64_t)n;
    struct ddts_array *b;
    enum ddts_status st = ddts_array_create(a->dtype, a->rank, shape, &b, err);
    if (st != DDTS_OK)
        return st;
    size_t row = ddts_array_sample_count(a) * ddts_dtype_size(a->dtype);
    for (size_t i = 0; i < n; i++)
        memcpy((uint8_t *)b->data + i * row, (const uint8_t *)a->data + (size_t)idx[i] * row, row);
    *out = b;
    return DDTS_OK;
}

enum ddts_status ddts_array_concat(const struct ddts_array *const *parts, size_t n_parts,
                                   struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if (n_parts == 0)
        return ddts_error_set(err, DDTS_EINVAL, "concat: no arrays");
    const struct ddts_array *p0 = parts[0];
    enum ddts_dtype dt = p0->dtype;
    int64_t total = 0;
    for (size_t i = 0; i < n_parts; i++) {
        const struct ddts_array *p = parts[i];
        if (p->rank == 0)
            return ddts_error_set(err, DDTS_ESHAPE, "concat: array %zu is a scalar", i);
        int same = p->rank == p0->rank;
        for (int k = 1; same && k < p->rank; k++)
            same = p->shape[k] == p0->shape[k];
        if (!same) {
            char s0[160], si[160];
            ddts_array_shape_str(p0, s0, sizeof s0);
            ddts_array_shape_str(p, si, sizeof si);
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "concat: array 0 has shape %s, array %zu has shape %s", s0, i,
                                  si);
        }
        if (__builtin_add_overflow(total, p->shape[0], &total))
            return ddts_error_set(err, DDTS_ELIMIT, "concat: too many samples");
        dt = ddts_dtype_promote(dt, p->dtype);
    }
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    memcpy(shape, p0->shape, sizeof shape);
    shape[0] = total;
    struct ddts_array *b;
    enum ddts_status st = ddts_array_create(dt, p0->rank, shape, &b, err);
    if (st != DDTS_OK)
        return st;
    size_t at = 0;
    for (size_t i = 0; i < n_parts; i++) {
        size_t c = ddts_array_count(parts[i]);
        convert_range(parts[i], 0, c, b->data, dt, at);
        at += c;
    }
    *out = b;
    return DDTS_OK;
}

enum ddts_status ddts_array_hstack(const struct ddts_array *const *parts, size_t n_parts,
                                   struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    if (n_parts == 0)
        return ddts_error_set(err, DDTS_EINVAL, "hstack: no arrays");
    enum ddts_dtype dt = parts[0]->dtype;
    size_t total = 0;
    for (size_t k = 0; k < n_parts; k++) {
        const struct ddts_array *p = parts[k];
        if (p->rank == 0)
            return ddts_error_set(err, DDTS_ESHAPE, "hstack: array %zu is a scalar", k);
        if (p->shape[0] != parts[0]->shape[0])
            return ddts_error_set(err, DDTS_ESHAPE,
                                  "hstack: array 0 holds %lld samples, array %zu holds %lld",
                                  (long long)parts[0]->shape[0], k, (long long)p->shape[0]);
        if (__builtin_add_overflow(total, ddts_array_sample_count(p), &total) ||
            total > (size_t)INT64_MAX)
            return ddts_error_set(err, DDTS_ELIMIT, "hstack: samples too large");
        dt = ddts_dtype_promote(dt, p->dtype);
    }
    int64_t shape[DDTS_MAX_ARRAY_RANK] = {parts[0]->shape[0], (int64_t)total};
    struct ddts_array *b;
    enum ddts_status st = ddts_array_create(dt, 2, shape, &b, err);
    if (st != DDTS_OK)
        return st;
    size_t off = 0;
    for (size_t k = 0; k < n_parts; k++) {
        size_t c = ddts_array_sample_count(parts[k]);
        for (size_t i = 0; i < (size_t)shape[0]; i++)
            convert_range(parts[k], i * c, c, b->data, dt, i * total + off);
        off += c;
    }
    *out = b;
    return DDTS_OK;
}

enum ddts_status ddts_array_fit_samples(struct ddts_array *a, int sample_rank,
                                        const int64_t *sample_shape, const char *what,
                                        bool *changed, struct ddts_error *err)
{
    if (changed != NULL)
        *changed = false;
    if (what == NULL)
        what = "data";
    if (sample_rank < 0 || sample_rank + 1 > DDTS_MAX_ARRAY_RANK)
        return ddts_error_set(err, DDTS_EINVAL, "%s: sample rank %d out of range", what,
                              sample_rank);
    if (a->rank == 0)
        return ddts_error_set(err, DDTS_ESHAPE, "%s: a scalar, not samples", what);
    size_t want = 1;
    int same = a->rank == sample_rank + 1;
    for (int i = 0; i < sample_rank; i++) {
        if (sample_shape[i] < 0 || ddts_size_mul(want, (size_t)sample_shape[i], &want) != 0)
            return ddts_error_set(err, DDTS_EINVAL, "%s: bad sample shape", what);
        if (same && a->shape[i + 1] != sample_shape[i])
            same = 0;
    }
    if (same)
        return DDTS_OK;
    size_t have = ddts_array_sample_count(a);
    if (have != want) {
        char got[160], exp[160] = "(None";
        ddts_array_shape_str(a, got, sizeof got);
        size_t used = strlen(exp);
        for (int i = 0; i < sample_rank && used < sizeof exp; i++) {
            int w = snprintf(exp + used, sizeof exp - used, ", %lld", (long long)sample_shape[i]);
            used += w > 0 ? (size_t)w : 0;
        }
        if (used < sizeof exp)
            snprintf(exp + used, sizeof exp - used, ")");
        return ddts_error_set(err, DDTS_ESHAPE,
                              "%s has shape %s (%zu values per sample) but the model expects %s "
                              "(%zu values per sample)",
                              what, got, have, exp, want);
    }
    a->rank = sample_rank + 1;
    for (int i = 0; i < sample_rank; i++)
        a->shape[i + 1] = sample_shape[i];
    for (int i = sample_rank + 1; i < DDTS_MAX_ARRAY_RANK; i++)
        a->shape[i] = 0;
    if (changed != NULL)
        *changed = true;
    return DDTS_OK;
}
