/*
 * The restricted unpickler (pickle.c): what numpy and Python write for the
 * Keras datasets (object arrays of lists, CIFAR batch dictionaries) and
 * nothing else. Internal to src/io (and the fuzz target).
 */
#ifndef DDTS_IO_PICKLE_H
#define DDTS_IO_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "ddts/array.h"
#include "ddts/core.h"
#include "ddts/limits.h"

enum ddts__pk_kind {
    PK_NONE_SLOT = 0, /* an empty memo slot; never on the stack */
    PK_NONE,
    PK_BOOL,   /* i */
    PK_INT,    /* i */
    PK_FLOAT,  /* f */
    PK_BYTES,  /* o->bytes, o->nbytes (Python 2 str, Python 3 bytes) */
    PK_STR,    /* o->bytes, o->nbytes: UTF-8 */
    PK_TUPLE,  /* o->items, o->n */
    PK_LIST,   /* o->items, o->n */
    PK_DICT,   /* o->items: key, value, key, value... */
    PK_ARRAY,  /* a numpy array: o->dtype, order, rank, shape, data */
    PK_DTYPE,  /* o->dtype, o->order */
    PK_GLOBAL, /* i: which allowed global */
};

/* A value: 16 bytes, numbers inline. */
struct ddts__pk_value {
    enum ddts__pk_kind kind;
    union {
        int64_t i;
        double f;
        struct ddts__pk_obj *o;
    };
};

struct ddts__pk_obj {
    enum ddts__pk_kind kind;
    struct ddts__pk_obj *next; /* the chain of every object of a pickle */
    struct ddts__pk_value *items;
    size_t n, cap;
    const uint8_t *bytes; /* in the input buffer, or owned */
    size_t nbytes;
    uint8_t *owned;
    /* Arrays and dtypes: numpy's type string ("O8", "u1", "<i8" without the
     * order, which is in `order`: '|', '<', '>' or '='). */
    char dtype[8];
    char order;
    int fortran, built, rank;
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    struct ddts__pk_value data; /* PK_BYTES (raw) or PK_LIST (objects) */
};

struct ddts__pickle;

/* Runs the restricted unpickler over buf (borrowed: strings point into it,
 * so it must outlive the result). *root is the pickled value; release
 * everything with ddts__pickle_destroy. DDTS_EFORMAT names the byte offset
 * and what is wrong (a disallowed global by its name). */
enum ddts_status ddts__pickle_load(const void *buf, size_t nbytes, const char *name,
                                   struct ddts__pickle **out, struct ddts__pk_value *root,
                                   struct ddts_error *err);
void ddts__pickle_destroy(struct ddts__pickle *p);
/* dict[key] for a bytes or str key, or NULL. */
const struct ddts__pk_value *ddts__pk_dict_get(const struct ddts__pk_value *dict, const char *key);

#endif
