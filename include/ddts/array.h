/*
 * Typed n-dimensional arrays: what data loaders return and what travels on
 * the wire. Data keeps its stored dtype; conversion to float32 is late.
 * Arrays are C-ordered (row major), native endian, in one allocation.
 */
#ifndef DDTS_ARRAY_H
#define DDTS_ARRAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "limits.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ddts_dtype {
    DDTS_BOOL = 0,
    DDTS_I8,
    DDTS_U8,
    DDTS_I16,
    DDTS_U16,
    DDTS_I32,
    DDTS_U32,
    DDTS_I64,
    DDTS_U64,
    DDTS_F16,
    DDTS_F32,
    DDTS_F64,
    DDTS_N_DTYPES
};

/* Size of one element in bytes; 0 for an invalid dtype. */
DDTS_API size_t ddts_dtype_size(enum ddts_dtype dtype);
/* numpy's name ("float32", "uint8", "bool"); "?" for an invalid dtype. */
DDTS_API const char *ddts_dtype_name(enum ddts_dtype dtype);
/* Parses numpy's name; returns DDTS_EINVAL if unknown. */
DDTS_API enum ddts_status ddts_dtype_parse(const char *name, enum ddts_dtype *out);

struct ddts_array {
    enum ddts_dtype dtype;
    int rank; /* 0 ..= DDTS_MAX_ARRAY_RANK */
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    void *data; /* owned, 64-byte aligned; NULL when empty */
    size_t nbytes;
    /* Non-NULL when data lies in a file mapping (ddts_data_load_ex with
     * DDTS_LOAD_MMAP) that ddts_array_destroy unmaps; NULL otherwise. */
    void *map;
    size_t map_nbytes;
};

/* Allocates a zeroed array; checks the size for overflow and DDTS_MAX_ARRAY_BYTES. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_array_create(enum ddts_dtype dtype, int rank,
                                                           const int64_t *shape,
                                                           struct ddts_array **out,
                                                           struct ddts_error *err);
/* The same without zeroing, for loaders that write every element (the
 * kernel then maps the pages as they are first written, in parallel). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_array_create_uninit(enum ddts_dtype dtype, int rank,
                                                                  const int64_t *shape,
                                                                  struct ddts_array **out,
                                                                  struct ddts_error *err);
/* An array over a mapping made with mmap: data is map + data_offset (a
 * multiple of 64), and ddts_array_destroy munmaps [map, map + map_nbytes).
 * Same checks as ddts_array_create; DDTS_EINVAL when the mapping is too
 * short. On failure the mapping stays the caller's. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_array_wrap_mapping(enum ddts_dtype dtype, int rank, const int64_t *shape, void *map,
                        size_t map_nbytes, size_t data_offset, struct ddts_array **out,
                        struct ddts_error *err);
DDTS_API void ddts_array_destroy(struct ddts_array *a);
/* Number of elements (product of the shape; 1 for rank 0). */
DDTS_API size_t ddts_array_count(const struct ddts_array *a);
/* Elements per sample: product of shape[1..rank). */
DDTS_API size_t ddts_array_sample_count(const struct ddts_array *a);
/* Element i converted to double. */
DDTS_API double ddts_array_get(const struct ddts_array *a, size_t i);
/* Converts `n` elements starting at element `first` to float32. */
DDTS_API void ddts_array_to_f32(const struct ddts_array *a, size_t first, size_t n, float *out);
/* Formats the shape as "(60000, 28, 28)" into buf. */
DDTS_API void ddts_array_shape_str(const struct ddts_array *a, char *buf, size_t buf_nbytes);

#ifdef __cplusplus
}
#endif
#endif
