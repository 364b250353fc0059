/*
 * Splits of n samples: shards among clients, k-fold folds, Keras'
 * validation_split. Every shuffle uses struct ddts_rng seeded with the
 * caller's seed, so the same seed gives the same indices everywhere.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/data.h"

static enum ddts_status identity_perm(size_t n, uint64_t seed, uint32_t **out,
                                      struct ddts_error *err)
{
    *out = NULL;
    if (n > UINT32_MAX)
        return ddts_error_set(err, DDTS_ELIMIT, "split: %zu samples (max %u)", n, UINT32_MAX);
    uint32_t *p = ddts_mallocarray(n ? n : 1, sizeof *p);
    if (p == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "split: out of memory");
    for (size_t i = 0; i < n; i++)
        p[i] = (uint32_t)i;
    struct ddts_rng rng;
    ddts_rng_seed(&rng, seed);
    ddts_rng_shuffle_u32(&rng, p, n);
    *out = p;
    return DDTS_OK;
}

struct keyed {
    int64_t cls;
    uint32_t pos; /* position in the shuffled order: keeps the sort stable */
    uint32_t idx;
};

static int cmp_keyed(const void *a, const void *b)
{
    const struct keyed *x = a, *y = b;
    if (x->cls != y->cls)
        return x->cls < y->cls ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* The class of sample i: its value, or the argmax of a one-hot row. */
static int64_t class_of(const struct ddts_array *labels, size_t i)
{
    size_t w = ddts_array_sample_count(labels);
    if (w <= 1)
        return (int64_t)llround(ddts_array_get(labels, i));
    size_t best = 0;
    double bv = ddts_array_get(labels, i * w);
    for (size_t j = 1; j < w; j++) {
        double v = ddts_array_get(labels, i * w + j);
        if (v > bv) {
            bv = v;
            best = j;
        }
    }
    return (int64_t)best;
}

enum ddts_status ddts_split_shards(size_t n, size_t n_clients, uint64_t seed,
                                   const struct ddts_array *labels, uint32_t **idx, size_t *counts,
                                   struct ddts_error *err)
{
    *idx = NULL;
    if (n_clients == 0 || n_clients > n)
        return ddts_error_set(err, DDTS_EINVAL, "split: %zu samples among %zu clients", n,
                              n_clients);
    if (labels != NULL && (labels->rank == 0 || (size_t)labels->shape[0] != n))
        return ddts_error_set(err, DDTS_EINVAL, "split: %lld labels for %zu samples",
                              labels->rank ? (long long)labels->shape[0] : 0LL, n);
    uint32_t *perm;
    enum ddts_status st = identity_perm(n, seed, &perm, err);
    if (st != DDTS_OK)
        return st;
    size_t base = n / n_clients, extra = n % n_clients;
    for (size_t c = 0; c < n_clients; c++)
        counts[c] = base + (c < extra);
    if (labels == NULL) {
        /* Consecutive slices of one shuffled permutation. */
        *idx = perm;
        return DDTS_OK;
    }
    struct keyed *k = ddts_mallocarray(n, sizeof *k);
    uint32_t *out = ddts_mallocarray(n, sizeof *out);
    if (k == NULL || out == NULL) {
        ddts_free(k);
        ddts_free(out);
        ddts_free(perm);
        return ddts_error_set(err, DDTS_ENOMEM, "split: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        k[i].cls = class_of(labels, perm[i]);
        k[i].pos = (uint32_t)i;
        k[i].idx = perm[i];
    }
    qsort(k, n, sizeof *k, cmp_keyed);
    /* Deal class by class, round-robin: sample i of the sorted order goes to
     * client i % n_clients, so each client gets its share of every class and
     * client c ends with base + (c < extra) samples. */
    size_t *fill = ddts_calloc(n_clients, sizeof *fill);
    if (fill == NULL) {
        ddts_free(k);
        ddts_free(out);
        ddts_free(perm);
        return ddts_error_set(err, DDTS_ENOMEM, "split: out of memory");
    }
    size_t off = 0;
    for (size_t c = 0; c < n_clients; c++) {
        fill[c] = off;
        off += counts[c];
    }
    for (size_t i = 0; i < n; i++)
        out[fill[i % n_clients]++] = k[i].idx;
    /* Within each shard, shuffle so that classes are interleaved. */
    struct ddts_rng rng;
    ddts_rng_derive(&rng, seed, 1);
    off = 0;
    for (size_t c = 0; c < n_clients; c++) {
        ddts_rng_shuffle_u32(&rng, out + off, counts[c]);
        off += counts[c];
    }
    ddts_free(fill);
    ddts_free(k);
    ddts_free(perm);
    *idx = out;
    return DDTS_OK;
}

enum ddts_status ddts_kfold(size_t n, size_t k, uint64_t seed, size_t fold, uint32_t **train,
                            size_t *n_train, uint32_t **val, size_t *n_val, struct ddts_error *err)
{
    *train = NULL;
    *val = NULL;
    *n_train = 0;
    *n_val = 0;
    if (k < 2 || k > n || fold >= k)
        return ddts_error_set(err, DDTS_EINVAL, "kfold: fold %zu of %zu over %zu samples", fold, k,
                              n);
    uint32_t *perm;
    enum ddts_status st = identity_perm(n, seed, &perm, err);
    if (st != DDTS_OK)
        return st;
    /* sklearn: fold sizes n // k, plus one for the first n % k folds. */
    size_t base = n / k, extra = n % k, start = 0;
    for (size_t f = 0; f < fold; f++)
        start += base + (f < extra);
    size_t nv = base + (fold < extra);
    uint32_t *v = ddts_mallocarray(nv, sizeof *v);
    uint32_t *t = ddts_mallocarray(n - nv, sizeof *t);
    uint8_t *in_val = ddts_calloc(n, 1);
    if (v == NULL || t == NULL || in_val == NULL) {
        ddts_free(v);
        ddts_free(t);
        ddts_free(in_val);
        ddts_free(perm);
        return ddts_error_set(err, DDTS_ENOMEM, "kfold: out of memory");
    }
    for (size_t i = 0; i < nv; i++) {
        v[i] = perm[start + i];
        in_val[v[i]] = 1;
    }
    size_t nt = 0;
    for (size_t i = 0; i < n; i++)
        if (!in_val[i])
            t[nt++] = (uint32_t)i;
    ddts_free(in_val);
    ddts_free(perm);
    *train = t;
    *n_train = nt;
    *val = v;
    *n_val = nv;
    return DDTS_OK;
}

enum ddts_status ddts_validation_split(size_t n, double fraction, size_t *n_train, size_t *n_val,
                                       struct ddts_error *err)
{
    *n_train = 0;
    *n_val = 0;
    if (!(fraction >= 0.0 && fraction < 1.0))
        return ddts_error_set(err, DDTS_EINVAL, "validation split %g: expected a number in [0, 1)",
                              fraction);
    /* Keras: split_at = int(math.floor(n * (1.0 - validation_split))). */
    size_t at = (size_t)floor((double)n * (1.0 - fraction));
    if (at > n)
        at = n;
    if (at == 0)
        return ddts_error_set(err, DDTS_EINVAL,
                              "validation split %g of %zu samples leaves no training sample",
                              fraction, n);
    *n_train = at;
    *n_val = n - at;
    return DDTS_OK;
}
