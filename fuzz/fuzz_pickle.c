/* libFuzzer target: the restricted unpickler (src/io/pickle.c) and what the
 * Keras dataset readers do with its result (dict lookups, walking arrays). */
#include <stddef.h>
#include <stdint.h>

#include "io/pickle.h"

/* Touches the values reachable from v: depth at most 64 and at most
 * *budget visits (the memo can make a list hold itself twice). */
static size_t walk(const struct ddts__pk_value *v, int depth, size_t *budget)
{
    if (*budget == 0 || depth > 64 || v->kind < PK_BYTES || v->kind == PK_GLOBAL)
        return 1;
    (*budget)--;
    const struct ddts__pk_obj *o = v->o;
    size_t n = o->nbytes;
    if (o->nbytes > 0)
        n += o->bytes[0] + o->bytes[o->nbytes - 1];
    for (size_t i = 0; i < o->n; i++)
        n += walk(&o->items[i], depth + 1, budget);
    if (v->kind == PK_ARRAY && o->built)
        n += walk(&o->data, depth + 1, budget);
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ddts__pickle *p = NULL;
    struct ddts__pk_value root;
    if (ddts__pickle_load(data, size, "fuzz.pkl", &p, &root, NULL) == DDTS_OK) {
        size_t budget = 100000;
        volatile size_t n = walk(&root, 0, &budget);
        (void)n;
        (void)ddts__pk_dict_get(&root, "data");
        (void)ddts__pk_dict_get(&root, "labels");
        ddts__pickle_destroy(p);
    }
    return 0;
}
