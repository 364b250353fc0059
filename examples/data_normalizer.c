/*
 * Example: one normalizer for a job whose data is split among clients.
 *
 * Loads Fashion-MNIST (Keras' cache or Debian's dataset-fashion-mnist),
 * shards the training samples among 3 clients, computes statistics per shard
 * as each client would, merges them as the server would, and prints the
 * zscore normalizer of a few pixels as a Keras Normalization layer's
 * (mean, variance).
 *
 *   ./example_data_normalizer
 */
#include <stdio.h>

#include "ddts/ddts.h"

int main(void)
{
    struct ddts_error err;
    struct ddts_array *x = NULL, *y = NULL;
    if (ddts_keras_dataset_load("fashion_mnist", &x, &y, NULL, NULL, &err) != DDTS_OK) {
        fprintf(stderr, "example: %s\n", err.msg);
        return 1;
    }
    size_t n = (size_t)x->shape[0], features = ddts_array_sample_count(x); /* (N, 28, 28) */
    uint32_t *idx = NULL;
    size_t counts[3];
    struct ddts_stats *global = NULL;
    int rc = 1;
    /* Stratified by label: every client gets its share of every class. */
    if (ddts_split_shards(n, 3, 42, y, &idx, counts, &err) != DDTS_OK ||
        ddts_stats_create(features, &global, &err) != DDTS_OK)
        goto out;
    size_t off = 0;
    for (int c = 0; c < 3; c++) {
        struct ddts_stats *local = NULL;
        if (ddts_stats_create(features, &local, &err) != DDTS_OK)
            goto out;
        enum ddts_status st = ddts_stats_update(local, x, idx + off, counts[c], &err);
        if (st == DDTS_OK)
            st = ddts_stats_merge(global, local, &err);
        ddts_stats_destroy(local);
        if (st != DDTS_OK)
            goto out;
        printf("client %d: %zu samples\n", c, counts[c]);
        off += counts[c];
    }
    static float mean[28 * 28], var[28 * 28];
    if (ddts_normalizer_from_stats(DDTS_NORM_ZSCORE, global, mean, var, &err) != DDTS_OK)
        goto out;
    for (size_t j = 0; j < features; j += 196)
        printf("pixel %3zu: mean %8.3f variance %10.3f\n", j, mean[j], var[j]);
    rc = 0;
out:
    if (rc != 0)
        fprintf(stderr, "example: %s\n", err.msg);
    ddts_stats_destroy(global);
    ddts_free(idx);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    return rc;
}
