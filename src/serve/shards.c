/* The shares of a job: one folder per client under WORKDIR/NAME/shards/. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/data.h"
#include "ddts/fs.h"
#include "ddts/trainer.h"
#include "serve.h"

static enum ddts_status write_part(const char *dir, const char *name, const struct ddts_array *a,
                                   const uint32_t *idx, size_t n, struct ddts_error *err)
{
    struct ddts_array *part = NULL;
    enum ddts_status st = ddts_array_take(a, idx, n, &part, err);
    if (st != DDTS_OK)
        return st;
    char path[4400];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    st = ddts_npy_write(path, part, err);
    ddts_array_destroy(part);
    return st;
}

/*
 * Writes WORKDIR/NAME/shards/shard_i/ for every client: x.npy, y.npy (the
 * share, in the stored dtype), x_test.npy and y_test.npy (a Keras dataset's
 * test split, the validation data), stats.bin (the job's normalizer
 * statistics over all training samples) and info.txt (the smallest share).
 */
enum ddts_status ddts__serve_write_shards(struct ddts_serve *sv, struct ddts_error *err)
{
    const struct ddts_job *job = &sv->job;
    const char *shards_dir = sv->shards_dir;
    const struct ddts_array *x = sv->x, *y = sv->y, *xt = sv->x_test, *yt = sv->y_test;
    const struct ddts_stats *stats = sv->stats;
    size_t n = (size_t)x->shape[0];
    size_t n_clients = (size_t)job->clients;
    uint32_t *idx = NULL, *all = NULL;
    size_t *counts = ddts_calloc(n_clients, sizeof *counts);
    uint8_t *enc = NULL;
    if (counts == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    enum ddts_status st = ddts_split_shards(n, n_clients, job->seed, NULL, &idx, counts, err);
    if (st != DDTS_OK)
        goto out;
    size_t enc_n = ddts_stats_encoded_size(stats);
    enc = ddts_malloc(enc_n);
    if (enc == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        goto out;
    }
    st = ddts_stats_encode(stats, enc, enc_n, err);
    if (st != DDTS_OK)
        goto out;
    size_t n_min = counts[0];
    for (size_t c = 0; c < n_clients; c++)
        n_min = counts[c] < n_min ? counts[c] : n_min;
    size_t n_test = xt != NULL ? (size_t)xt->shape[0] : 0;
    all = ddts_mallocarray(n_test ? n_test : 1, sizeof(uint32_t));
    if (all == NULL) {
        st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n_test; i++)
        all[i] = (uint32_t)i;
    size_t offset = 0;
    for (size_t c = 0; c < n_clients; c++) {
        char dir[4300], path[4400];
        snprintf(dir, sizeof dir, "%s/shard_%zu", shards_dir, c);
        st = ddts_mkdir_p(dir, err);
        if (st == DDTS_OK)
            st = write_part(dir, "x.npy", x, idx + offset, counts[c], err);
        if (st == DDTS_OK && y != NULL)
            st = write_part(dir, "y.npy", y, idx + offset, counts[c], err);
        if (st == DDTS_OK && xt != NULL && yt != NULL) {
            st = write_part(dir, "x_test.npy", xt, all, n_test, err);
            if (st == DDTS_OK)
                st = write_part(dir, "y_test.npy", yt, all, n_test, err);
        }
        if (st == DDTS_OK) {
            snprintf(path, sizeof path, "%s/stats.bin", dir);
            st = ddts_write_file_atomic(path, enc, enc_n, err);
        }
        if (st == DDTS_OK) {
            char info[128];
            int len = snprintf(info, sizeof info, "min_share %zu\n", n_min);
            snprintf(path, sizeof path, "%s/info.txt", dir);
            st = ddts_write_file_atomic(path, info, (size_t)len, err);
        }
        if (st != DDTS_OK)
            goto out;
        offset += counts[c];
    }
out:
    ddts_free(enc);
    ddts_free(all);
    ddts_free(idx);
    ddts_free(counts);
    return st;
}

/* Reads raw little-endian float32 weights. */
enum ddts_status ddts__serve_read_f32(const char *path, float **out, size_t *n,
                                      struct ddts_error *err)
{
    char *buf = NULL;
    size_t nbytes = 0;
    enum ddts_status st = ddts_read_file(path, (size_t)4 << 30, &buf, &nbytes, err);
    if (st != DDTS_OK)
        return st;
    if (nbytes % 4 != 0) {
        ddts_free(buf);
        return ddts_error_set(err, DDTS_EFORMAT, "%s: %zu bytes is not whole float32 values", path,
                              nbytes);
    }
    *out = (float *)(void *)buf;
    *n = nbytes / 4;
    return DDTS_OK;
}

/* "min_share" of a share's info.txt (0: unknown). */
static size_t read_min_share(const char *shards_dir)
{
    char path[4400];
    snprintf(path, sizeof path, "%s/shard_0/info.txt", shards_dir);
    char *text = NULL;
    size_t n = 0;
    if (ddts_read_file(path, 4096, &text, &n, NULL) != DDTS_OK)
        return 0;
    size_t v = 0;
    const char *p = strstr(text, "min_share ");
    if (p != NULL)
        v = (size_t)strtoull(p + 10, NULL, 10);
    ddts_free(text);
    return v;
}

/* Rounds per epoch of a job, as its clients exchange (ddts_train_rounds_per_epoch). */
uint64_t ddts__serve_rounds_per_epoch(const struct ddts_job *job, const char *shards_dir,
                                      int has_val_data)
{
    size_t min_share = read_min_share(shards_dir);
    if (job->sync != DDTS_JOB_SYNC_EPOCH && min_share == 0)
        return 0;
    return ddts_train_rounds_per_epoch(job, min_share, has_val_data);
}
