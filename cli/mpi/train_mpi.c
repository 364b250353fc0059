/*
 * `ddts train --distributed mpi` in the ddts-mpi program (docs/mpi.md): the
 * job of `ddts train`, data-parallel over the ranks of an MPI job.
 *
 *   1. Rank 0 completes and checks the settings, reads the model file and
 *      broadcasts both (no shared filesystem is assumed).
 *   2. Rank 0 loads the data, holds the validation samples back, splits the
 *      training samples into one equal share per rank (a seeded permutation,
 *      ddts_split_shards; the n % N samples left over are not trained on) and
 *      sends each rank its share, then each rank a slice of the validation
 *      samples (contiguous, sizes within one of each other). With --data
 *      client every rank loads its own --dataset, holds back its own
 *      --validation-split slice, and all trim the training samples to the
 *      smallest. (--sync none: every rank trains its own model, so rank 0
 *      validates its model on all the validation samples, as before.)
 *   3. The normalizer's statistics of every share are gathered and merged in
 *      rank order on every rank (ddts_stats_merge is exact).
 *   4. Every rank runs ddts_train_run on its share with the MPI exchange of
 *      the sync mode; after every epoch each rank validates its slice and the
 *      sums of the figures are combined over the ranks, those of the
 *      training steps too (ddts_mpi_merge_sums), so every rank sees the
 *      figures over every rank's samples and decides alike; rank 0 alone
 *      writes results and, after every epoch, a checkpoint that --resume
 *      continues from.
 */
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../cli.h"
#include "../integ.h"
#include "mpi/ddts_mpi.h"

struct mpi_run {
    struct ddts_mpi *c;
    int rank, size;
    struct ddts_job *job;
    char out_dir[4096];
    char tmp_dir[64];      /* ranks > 0: where the broadcast model file lies */
    char model_path[4096]; /* rank 0: the job's file; others: the copy in tmp_dir */
    struct ddts_array *x, *y, *x_val, *y_val;
    struct ddts_stats *stats; /* merged over the ranks; NULL without a normalizer */
    struct ddts_checkpoint resume;
    struct ddts_best_state best; /* resume's best model, for the request */
    bool resuming;
    float *last_w; /* --sync none: this rank's weights after its latest epoch */
    size_t n_last_w;
    uint64_t n_total;    /* training samples over all ranks */
    bool all_know;       /* every rank learned of the failure (agree): no MPI_Abort needed */
    size_t bucket_bytes; /* --bucket-mb in bytes, rank 0's; 0: the fused exchange */
};

/* Whether the ranks validate slices of the validation samples: one model
 * over several ranks (with --sync none each rank's model is its own). */
static bool val_sliced(const struct mpi_run *r)
{
    return r->size > 1 && r->job->sync != DDTS_JOB_SYNC_NONE;
}

/* Broadcasts a length-prefixed byte string from rank 0 (*buf: ddts_free on every rank). */
static enum ddts_status bcast_bytes(struct mpi_run *r, char **buf, size_t *nbytes,
                                    struct ddts_error *err)
{
    uint64_t n = r->rank == 0 ? (uint64_t)*nbytes : 0;
    enum ddts_status st = ddts_mpi_bcast(r->c, &n, sizeof n, 0, err);
    if (st != DDTS_OK)
        return st;
    if (r->rank != 0) {
        *buf = ddts_malloc(n + 1);
        if (*buf == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        (*buf)[n] = '\0';
        *nbytes = (size_t)n;
    }
    return ddts_mpi_bcast(r->c, *buf, (size_t)n, 0, err);
}

/* Rank 0's status to every rank: a failure on rank 0 ends all ranks cleanly. */
static enum ddts_status agree(struct mpi_run *r, enum ddts_status st, struct ddts_error *err)
{
    int32_t v = (int32_t)st;
    enum ddts_status bst = ddts_mpi_bcast(r->c, &v, sizeof v, 0, err);
    if (bst != DDTS_OK)
        return bst;
    r->all_know = v != DDTS_OK;
    if (r->rank != 0 && v != DDTS_OK)
        return ddts_error_set(err, (enum ddts_status)v, "rank 0 failed");
    return (enum ddts_status)v;
}

/* Settings and model file from rank 0 to every rank. */
static enum ddts_status share_job(struct mpi_run *r, struct ddts_error *err)
{
    char *json = NULL, *model = NULL;
    size_t json_n = 0, model_n = 0;
    enum ddts_status st = DDTS_OK;
    if (r->rank == 0) {
        st = ddts_job_to_json(r->job, DDTS_JOB_JSON_ALL | DDTS_JOB_JSON_COMPACT, &json, err);
        if (st == DDTS_OK) {
            json_n = strlen(json);
            st = ddts_read_file(r->model_path, DDTS_MAX_KERAS_FILE_BYTES, &model, &model_n, err);
        }
    }
    st = agree(r, st, err);
    uint64_t seed = r->job->seed;
    if (st == DDTS_OK)
        st = ddts_mpi_bcast(r->c, &seed, sizeof seed, 0, err);
    if (st == DDTS_OK)
        st = bcast_bytes(r, &json, &json_n, err);
    if (st == DDTS_OK)
        st = bcast_bytes(r, &model, &model_n, err);
    if (st == DDTS_OK && r->rank != 0) {
        /* Every rank parsed its own command line too: --dataset stays its own (--data client). */
        char dataset[sizeof r->job->dataset];
        snprintf(dataset, sizeof dataset, "%s", r->job->dataset);
        ddts_job_init_defaults(r->job);
        st = ddts_job_from_json(r->job, json, json_n, err);
        r->job->seed = seed;
        if (r->job->data == DDTS_JOB_DATA_CLIENT)
            snprintf(r->job->dataset, sizeof r->job->dataset, "%s", dataset);
    }
    if (st == DDTS_OK && r->rank != 0) {
        const char *dot = strrchr(r->model_path, '.');
        const char *ext = dot != NULL && strcmp(dot, ".keras") == 0 ? ".keras" : ".h5";
        const char *tmp = getenv("TMPDIR");
        snprintf(r->tmp_dir, sizeof r->tmp_dir, "%s/ddts-mpi-XXXXXX",
                 tmp != NULL && strlen(tmp) < 40 ? tmp : "/tmp");
        if (mkdtemp(r->tmp_dir) == NULL) {
            r->tmp_dir[0] = '\0';
            st = ddts_error_set(err, DDTS_EIO, "cannot create a temporary folder");
        } else {
            st = ddts_format(r->model_path, sizeof r->model_path, err, "%s/model%s", r->tmp_dir,
                             ext);
            if (st == DDTS_OK)
                st = ddts_write_file_atomic(r->model_path, model, model_n, err);
        }
    }
    ddts_free(json);
    ddts_free(model);
    return st;
}

/* The samples `idx[0..n)` of `a` as a new array (a may be NULL: *out NULL). */
static enum ddts_status take(const struct ddts_array *a, const uint32_t *idx, size_t n,
                             struct ddts_array **out, struct ddts_error *err)
{
    *out = NULL;
    return a == NULL ? DDTS_OK : ddts_array_take(a, idx, n, out, err);
}

/* A new array of samples [from, to) of `a`. */
static enum ddts_status range(const struct ddts_array *a, size_t from, size_t to,
                              struct ddts_array **out, struct ddts_error *err)
{
    uint32_t *idx = ddts_mallocarray(to > from ? to - from : 1, sizeof(uint32_t));
    if (idx == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    for (size_t i = from; i < to; i++)
        idx[i - from] = (uint32_t)i;
    enum ddts_status st = take(a, idx, to - from, out, err);
    ddts_free(idx);
    return st;
}

/* Rank 0: load, hold back the validation samples, send every rank its share. */
static enum ddts_status scatter_data(struct mpi_run *r, struct ddts_array **stats_extra,
                                     struct ddts_error *err)
{
    struct ddts_job *job = r->job;
    struct ddts_array *x = NULL, *y = NULL, *xt = NULL, *yt = NULL;
    uint32_t *idx = NULL;
    size_t *counts = NULL;
    enum ddts_status st = DDTS_OK;
    if (r->rank == 0) {
        st = ddts_serve_load_data(job, &x, &y, &xt, &yt, err);
        size_t n = st == DDTS_OK && x->rank > 0 ? (size_t)x->shape[0] : 0, n_train = n;
        if (st == DDTS_OK && job->method == DDTS_JOB_FIT && xt != NULL) {
            r->x_val = xt;
            r->y_val = yt;
            xt = yt = NULL;
        } else if (st == DDTS_OK && job->method == DDTS_JOB_FIT && job->validation_split > 0) {
            /* Keras' validation_split: the last samples, before any shuffling. */
            size_t n_val = 0;
            st = ddts_validation_split(n, job->validation_split, &n_train, &n_val, err);
            if (st == DDTS_OK)
                st = range(x, n_train, n, &r->x_val, err);
            if (st == DDTS_OK)
                st = range(y, n_train, n, &r->y_val, err);
            /* ddts train's statistics include the held-out samples: so do ours. */
            if (st == DDTS_OK && job->normalizer != DDTS_JOB_NORM_NONE)
                st = range(x, n_train, n, stats_extra, err);
        }
        counts = ddts_calloc((size_t)r->size, sizeof *counts);
        if (st == DDTS_OK && counts == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        if (st == DDTS_OK && n_train < (size_t)r->size)
            st = ddts_error_set(err, DDTS_EINVAL, "%zu training samples for %d ranks", n_train,
                                r->size);
        if (st == DDTS_OK && r->size == 1) {
            /* One rank trains the samples in their order, exactly as `ddts train`. */
            idx = ddts_mallocarray(n_train, sizeof *idx);
            if (idx == NULL)
                st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
            for (size_t i = 0; idx != NULL && i < n_train; i++)
                idx[i] = (uint32_t)i;
            counts[0] = n_train;
        } else if (st == DDTS_OK) {
            st = ddts_split_shards(n_train, (size_t)r->size, job->seed, NULL, &idx, counts, err);
        }
    }
    st = agree(r, st, err);
    if (st != DDTS_OK)
        goto out;
    if (r->rank == 0) {
        if (counts == NULL || idx == NULL) { /* agree() returned their failure already */
            st = ddts_error_set(err, DDTS_ESTATE, "no shares");
            goto out;
        }
        /* Equal shares: every rank takes the same steps in every epoch and fold. */
        size_t share = counts[r->size - 1], off = 0;
        r->n_total = (uint64_t)share * (uint64_t)r->size;
        size_t n_train = 0;
        for (int i = 0; i < r->size; i++)
            n_train += counts[i];
        if (n_train > r->n_total) {
            struct ddts_logger log = cli_logger(DDTS_LOG_INFO);
            ddts_log(&log, DDTS_LOG_INFO, "%zu samples in %d equal shares of %zu: %zu left out",
                     n_train, r->size, share, n_train - (size_t)r->n_total);
        }
        for (int i = 0; i < r->size && st == DDTS_OK; i++) {
            struct ddts_array *sx = NULL, *sy = NULL;
            st = take(x, idx + off, share, &sx, err);
            if (st == DDTS_OK && job->order != DDTS_JOB_ORDER_XX)
                st = take(y, idx + off, share, &sy, err);
            off += counts[i];
            if (st == DDTS_OK && i == 0) {
                r->x = sx;
                r->y = sy;
                continue;
            }
            if (st == DDTS_OK)
                st = ddts_mpi_send_array(r->c, sx, i, err);
            if (st == DDTS_OK && sy != NULL)
                st = ddts_mpi_send_array(r->c, sy, i, err);
            ddts_array_destroy(sx);
            ddts_array_destroy(sy);
        }
    } else {
        st = ddts_mpi_recv_array(r->c, 0, &r->x, err);
        if (st == DDTS_OK && job->order != DDTS_JOB_ORDER_XX)
            st = ddts_mpi_recv_array(r->c, 0, &r->y, err);
    }
out:
    ddts_free(idx);
    ddts_free(counts);
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    ddts_array_destroy(xt);
    ddts_array_destroy(yt);
    return st;
}

/* --data client: every rank loads its own files; all trim to the smallest. */
static enum ddts_status load_own_data(struct mpi_run *r, struct ddts_array **stats_extra,
                                      struct ddts_error *err)
{
    struct ddts_array *x = NULL, *y = NULL;
    enum ddts_status st = ddts_serve_load_data(r->job, &x, &y, NULL, NULL, err);
    size_t n_all = st == DDTS_OK && x->rank > 0 ? (size_t)x->shape[0] : 0, n_train = n_all;
    if (st == DDTS_OK && (r->rank == 0 || val_sliced(r)) && r->job->method == DDTS_JOB_FIT &&
        r->job->validation_split > 0) {
        /* Every rank (rank 0 alone with --sync none) validates on the last
         * samples of its own files (Keras' validation_split). */
        size_t n_val = 0;
        st = ddts_validation_split(n_all, r->job->validation_split, &n_train, &n_val, err);
        if (st == DDTS_OK)
            st = range(x, n_train, n_all, &r->x_val, err);
        if (st == DDTS_OK && y != NULL)
            st = range(y, n_train, n_all, &r->y_val, err);
        if (st == DDTS_OK && r->job->normalizer != DDTS_JOB_NORM_NONE)
            st = range(x, n_train, n_all, stats_extra, err);
    }
    uint64_t n[1] = {st == DDTS_OK ? (uint64_t)n_train : 0};
    if (st != DDTS_OK)
        n[0] = 0; /* the others learn of it through the minimum */
    enum ddts_status rst = ddts_mpi_allreduce_min_u64(r->c, n, 1, err);
    if (st == DDTS_OK)
        st = rst;
    if (rst == DDTS_OK && n[0] == 0)
        r->all_know = true; /* a rank failed or has no samples: every rank stops here */
    if (st == DDTS_OK && n[0] == 0)
        st = ddts_error_set(err, DDTS_EINVAL, "a rank has no samples (--data client)");
    if (st == DDTS_OK) {
        r->n_total = n[0] * (uint64_t)r->size;
        st = range(x, 0, (size_t)n[0], &r->x, err);
        if (st == DDTS_OK && y != NULL)
            st = range(y, 0, (size_t)n[0], &r->y, err);
    }
    ddts_array_destroy(x);
    ddts_array_destroy(y);
    return st;
}

/* Rank 0's validation samples [from, to) to rank `dest` (x, then y when has_y). */
static enum ddts_status send_val_slice(struct mpi_run *r, size_t from, size_t to, int dest,
                                       struct ddts_error *err)
{
    struct ddts_array *sx = NULL, *sy = NULL;
    enum ddts_status st = range(r->x_val, from, to, &sx, err);
    if (st == DDTS_OK)
        st = range(r->y_val, from, to, &sy, err);
    if (st == DDTS_OK)
        st = ddts_mpi_send_array(r->c, sx, dest, err);
    if (st == DDTS_OK && sy != NULL)
        st = ddts_mpi_send_array(r->c, sy, dest, err);
    ddts_array_destroy(sx);
    ddts_array_destroy(sy);
    return st;
}

/*
 * The validation samples in one slice per rank (val_sliced): rank 0 keeps
 * the first and sends rank i samples [off_i, off_i + n_i) of its set, n_i =
 * nv / N, one more for the first nv % N ranks (ranks past nv get an empty
 * slice). With --data client every rank holds its own slice already. With
 * no validation sample on any rank, none validates (as `ddts train`).
 */
static enum ddts_status share_validation(struct mpi_run *r, struct ddts_error *err)
{
    if (!val_sliced(r))
        return DDTS_OK;
    uint64_t head[2] = {0, 0}; /* samples, whether y travels */
    uint64_t *all = ddts_calloc((size_t)r->size, sizeof *all);
    if (all == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory"); /* cannot go on alone */
    enum ddts_status st = DDTS_OK;
    if (r->job->data == DDTS_JOB_DATA_CLIENT) {
        uint64_t mine = r->x_val != NULL ? (uint64_t)r->x_val->shape[0] : 0;
        st = ddts_mpi_allgather(r->c, &mine, sizeof mine, all, err);
        for (int i = 0; i < r->size && st == DDTS_OK; i++)
            head[0] += all[i];
    } else {
        if (r->rank == 0 && r->x_val != NULL) {
            head[0] = (uint64_t)r->x_val->shape[0];
            head[1] = r->y_val != NULL;
        }
        st = ddts_mpi_bcast(r->c, head, sizeof head, 0, err);
        size_t nv = (size_t)head[0], n = (size_t)r->size, off = nv / n + (nv % n > 0);
        for (size_t i = 1; i < n && st == DDTS_OK && nv > 0; i++) {
            size_t ni = nv / n + (i < nv % n);
            if (r->rank == 0)
                st = send_val_slice(r, off, off + ni, (int)i, err);
            off += ni;
        }
        if (st == DDTS_OK && nv > 0 && r->rank != 0) {
            st = ddts_mpi_recv_array(r->c, 0, &r->x_val, err);
            if (st == DDTS_OK && head[1])
                st = ddts_mpi_recv_array(r->c, 0, &r->y_val, err);
        } else if (st == DDTS_OK && nv > 0) {
            struct ddts_array *x0 = NULL, *y0 = NULL;
            st = range(r->x_val, 0, nv / n + (nv % n > 0), &x0, err);
            if (st == DDTS_OK)
                st = range(r->y_val, 0, nv / n + (nv % n > 0), &y0, err);
            ddts_array_destroy(r->x_val);
            ddts_array_destroy(r->y_val);
            r->x_val = x0;
            r->y_val = y0;
        }
    }
    if (st == DDTS_OK && head[0] == 0) {
        ddts_array_destroy(r->x_val);
        ddts_array_destroy(r->y_val);
        r->x_val = r->y_val = NULL;
    }
    ddts_free(all);
    return st;
}

/* Every rank's normalizer statistics, merged in rank order on every rank. */
static enum ddts_status merge_stats(struct mpi_run *r, const struct ddts_array *extra,
                                    struct ddts_error *err)
{
    size_t nf = ddts_array_sample_count(r->x);
    struct ddts_stats *mine = NULL, *other = NULL;
    uint8_t *buf = NULL, *all = NULL;
    enum ddts_status st = ddts_stats_create(nf, &mine, err);
    if (st == DDTS_OK)
        st = ddts_stats_update(mine, r->x, NULL, (size_t)r->x->shape[0], err);
    if (st == DDTS_OK && extra != NULL)
        st = ddts_stats_update(mine, extra, NULL, (size_t)extra->shape[0], err);
    size_t nb = mine != NULL ? ddts_stats_encoded_size(mine) : 0;
    if (st == DDTS_OK) {
        buf = ddts_malloc(nb);
        all = ddts_mallocarray((size_t)r->size, nb);
        if (buf == NULL || all == NULL)
            st = ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    if (st == DDTS_OK)
        st = ddts_stats_encode(mine, buf, nb, err);
    if (st == DDTS_OK)
        st = ddts_mpi_allgather(r->c, buf, nb, all, err);
    if (st == DDTS_OK)
        st = ddts_stats_create(nf, &r->stats, err);
    for (int i = 0; i < r->size && st == DDTS_OK; i++) {
        st = ddts_stats_decode(all + (size_t)i * nb, nb, &other, err);
        if (st == DDTS_OK)
            st = ddts_stats_merge(r->stats, other, err);
        ddts_stats_destroy(other);
        other = NULL;
    }
    ddts_stats_destroy(mine);
    ddts_free(buf);
    ddts_free(all);
    return st;
}

/* After every epoch: rank 0 writes the checkpoint --resume continues from;
 * with --sync none every rank keeps its weights for rank 0 to write. */
static enum ddts_status epoch_done(void *userdata, struct ddts_model *m, int epoch,
                                   struct ddts_error *err)
{
    struct mpi_run *r = userdata;
    if (r->job->sync == DDTS_JOB_SYNC_NONE) {
        size_t n = 0;
        const float *w = ddts_model_weights_flat(m, &n);
        if (r->last_w == NULL) {
            r->last_w = ddts_mallocarray(n ? n : 1, sizeof(float));
            if (r->last_w == NULL)
                return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
            r->n_last_w = n;
        }
        memcpy(r->last_w, w, n * sizeof(float));
        return DDTS_OK;
    }
    if (r->rank != 0 || r->job->method != DDTS_JOB_FIT)
        return DDTS_OK;
    struct ddts_checkpoint ck;
    ddts_checkpoint_from_model(m, epoch + 1, r->job->seed, &ck);
    char *path = ddts_path_join(r->out_dir, "checkpoint.bin");
    enum ddts_status st = path != NULL ? ddts_checkpoint_write(path, &ck, err)
                                       : ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    ddts_free(path);
    return st;
}

/* --resume: rank 0 reads the checkpoint, every rank gets it. */
static enum ddts_status share_checkpoint(struct mpi_run *r, struct ddts_error *err)
{
    enum ddts_status st = DDTS_OK;
    char *bytes = NULL;
    size_t nb = 0;
    if (r->rank == 0) {
        char *path = ddts_path_join(r->out_dir, "checkpoint.bin");
        st = path != NULL ? ddts_read_file(path, DDTS_MAX_CHECKPOINT_BYTES, &bytes, &nb, err)
                          : ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        if (st != DDTS_OK)
            ddts_error_prefix(err, "--resume: ");
        ddts_free(path);
    }
    st = agree(r, st, err);
    if (st == DDTS_OK)
        st = bcast_bytes(r, &bytes, &nb, err);
    if (st == DDTS_OK)
        st = ddts_checkpoint_decode((const uint8_t *)bytes, nb, &r->resume, err);
    if (st == DDTS_OK && r->resume.seed != r->job->seed)
        st = ddts_error_set(err, DDTS_EINVAL,
                            "--resume: the checkpoint is of seed %llu, the job's is %llu (pass "
                            "--seed %llu)",
                            (unsigned long long)r->resume.seed, (unsigned long long)r->job->seed,
                            (unsigned long long)r->resume.seed);
    if (st == DDTS_OK && r->resume.epochs_done >= r->job->epochs)
        st = ddts_error_set(err, DDTS_EINVAL,
                            "--resume: the checkpoint has all %d epochs done (raise --epochs to "
                            "train more)",
                            r->resume.epochs_done);
    if (st != DDTS_OK)
        r->all_know = true; /* every rank decoded the same bytes and failed alike */
    /* history.csv keeps the rows of the epochs the checkpoint holds (a rank that
     * died may have ended the job after an epoch's row was written but before
     * its checkpoint). */
    char *hist = st == DDTS_OK && r->rank == 0 ? ddts_path_join(r->out_dir, "history.csv") : NULL;
    if (st == DDTS_OK && r->rank == 0)
        st = hist == NULL ? ddts_error_set(err, DDTS_ENOMEM, "out of memory")
                          : ddts_history_keep_epochs(hist, r->resume.epochs_done, err);
    ddts_free(hist);
    ddts_free(bytes);
    r->resuming = st == DDTS_OK;
    return st;
}

/* --sync none: the models of ranks 1.. go to rank 0, written as OUT/rank_<r>/model<ext>. */
static enum ddts_status gather_models(struct mpi_run *r, const float *weights, size_t n,
                                      struct ddts_error *err)
{
    if (r->rank != 0)
        return ddts_mpi_send(r->c, weights, n * sizeof(float), 0, err);
    float *w = ddts_mallocarray(n ? n : 1, sizeof(float));
    if (w == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    enum ddts_status st = DDTS_OK;
    for (int i = 1; i < r->size && st == DDTS_OK; i++) {
        st = ddts_mpi_recv(r->c, w, n * sizeof(float), i, err);
        char dir[4200], path[4300];
        const char *dot = strrchr(r->model_path, '.');
        if (st == DDTS_OK)
            st = ddts_format(dir, sizeof dir, err, "%s/rank_%d", r->out_dir, i);
        if (st == DDTS_OK)
            st = ddts_format(path, sizeof path, err, "%s/model%s", dir,
                             dot != NULL && strcmp(dot, ".keras") == 0 ? ".keras" : ".h5");
        if (st == DDTS_OK)
            st = ddts_mkdir_p(dir, err);
        struct ddts_global_request g = {.job = r->job,
                                        .model_path = r->model_path,
                                        .weights = w,
                                        .n_weights = n,
                                        .norm_stats = r->stats,
                                        .out_path = path};
        double loss, acc;
        if (st == DDTS_OK)
            st = ddts_train_global(&g, &loss, &acc, err);
    }
    ddts_free(w);
    return st;
}

static void sync_name(const struct ddts_job *job, char *buf, size_t cap)
{
    ddts_job_sync_format(job, buf, cap);
}

/* Per rank (gathered on every rank, printed by rank 0): the training run's
 * wall seconds, its CPU seconds (all threads, from the model's load to the
 * last epoch's files) and the seconds inside the exchanges' MPI calls. A
 * rank that waits less in the exchanges than the others is the slower one. */
static enum ddts_status print_per_rank(struct mpi_run *r, const struct ddts_train_result *res,
                                       double cpu, struct ddts_error *err)
{
    struct ddts_mpi_traffic t;
    ddts_mpi_traffic(r->c, &t);
    double mine[3] = {res->seconds, cpu, t.seconds};
    double *all = ddts_mallocarray((size_t)r->size, sizeof mine);
    if (all == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory"); /* cannot go on alone */
    enum ddts_status st = ddts_mpi_allgather(r->c, mine, sizeof mine, all, err);
    static const char *const names[3] = {"seconds_per_rank", "cpu_seconds_per_rank",
                                         "exchange_seconds_per_rank"};
    for (int k = 0; k < 3 && st == DDTS_OK && r->rank == 0; k++) {
        printf("%s:", names[k]);
        for (int i = 0; i < r->size; i++)
            printf(" %.3f", all[(size_t)i * 3 + (size_t)k]);
        printf("\n");
    }
    ddts_free(all);
    return st;
}

/* Rank 0's standard output: the run's figures (collective: every rank calls it). */
static enum ddts_status print_results(struct mpi_run *r, const struct ddts_train_result *res,
                                      double cpu, const char *sync, int initial_epoch,
                                      struct ddts_error *err)
{
    if (r->rank == 0) {
        printf("ranks: %d\nsync: %s\n", r->size, sync);
        printf("samples: %llu\nseconds: %.2f\nsamples_per_second: %.1f\n",
               (unsigned long long)r->n_total, res->seconds,
               res->seconds > 0
                   ? (double)r->n_total * (r->job->epochs - initial_epoch) / res->seconds
                   : 0.0);
        printf("loss: %.6f\naccuracy: %.6f\nval_loss: %.6f\nval_accuracy: %.6f\n", res->loss,
               res->accuracy, res->val_loss, res->val_accuracy);
        if (res->n_folds > 0)
            printf("%d-fold %s: %.6f +/- %.6f\n", res->n_folds, res->fold_metric, res->fold_mean,
                   res->fold_std);
        struct ddts_mpi_traffic t;
        ddts_mpi_traffic(r->c, &t);
        printf("exchanges: %llu\nexchange_bytes_per_rank: %llu\nexchange_seconds: %.3f\n",
               (unsigned long long)t.n_exchanges, (unsigned long long)t.bytes, t.seconds);
        printf("exchange_buckets: %llu\n", (unsigned long long)t.n_buckets);
        const uint64_t *vc = ddts_mpi_val_counts(r->c);
        if (vc != NULL) {
            /* What each rank validated in the last validation pass (its own count, gathered). */
            printf("validation_samples_per_rank:");
            for (int i = 0; i < r->size; i++)
                printf(" %llu", (unsigned long long)vc[i]);
            printf("\n");
        }
    }
    enum ddts_status st = print_per_rank(r, res, cpu, err);
    if (st == DDTS_OK && r->rank == 0)
        printf("results: %s\n", r->out_dir);
    return st;
}

static enum ddts_status train(struct mpi_run *r, struct ddts_error *err)
{
    struct ddts_job *job = r->job;
    struct ddts_logger log = cli_logger(r->rank == 0 ? DDTS_LOG_INFO : DDTS_LOG_WARN);
    char sync[32];
    sync_name(job, sync, sizeof sync);
    struct ddts_job local = *job;
    local.validation_split = 0; /* rank 0 held the validation samples back already */
    struct ddts_train_request req = {
        .job = &local,
        .model_path = r->model_path,
        .x = r->x,
        .y = r->y,
        .x_val = r->x_val,
        .y_val = r->y_val,
        .norm_stats = r->stats,
        .out_dir = r->rank == 0 ? r->out_dir : NULL,
        .seed_offset = (uint64_t)r->rank * DDTS_RANK_SEED_STEP,
        .n_ranks = r->size,
        .sync_name = sync,
        .run_name = job->name,
        .logger = &log,
        .progress = r->rank == 0 ? stderr : NULL,
    };
    if (job->sync == DDTS_JOB_SYNC_STEP) {
        req.grad_exchange = ddts_mpi_grad_exchange;
        req.grad_exchange_userdata = r->c;
        if (r->bucket_bytes > 0) {
            ddts_mpi_set_bucket_bytes(r->c, r->bucket_bytes);
            req.grad_ready = ddts_mpi_grad_ready;
        }
    } else if (job->sync != DDTS_JOB_SYNC_NONE) {
        req.exchange = ddts_mpi_weight_exchange;
        req.exchange_userdata = r->c;
        req.sync_steps = job->sync == DDTS_JOB_SYNC_STEPS ? (uint32_t)job->sync_steps : 0;
        req.sync_batch_limit = SIZE_MAX; /* equal shares: every rank has every batch */
    }
    if (val_sliced(r)) {
        /* One model: its training figures are those over every rank's
         * samples, its validation figures those over every rank's slice
         * (k-fold: of the fold). */
        req.merge_sums = ddts_mpi_merge_sums;
        req.merge_sums_userdata = r->c;
    }
    req.on_epoch_done = epoch_done;
    req.epoch_done_userdata = r;
    if (r->resuming) {
        req.init_weights = r->resume.weights;
        req.n_init_weights = r->resume.n_weights;
        req.init_opt_state = r->resume.opt_state;
        req.n_init_opt_state = r->resume.n_opt_state;
        req.init_iterations = r->resume.iterations;
        req.initial_epoch = r->resume.epochs_done;
        req.append_history = true;
        if (r->resume.n_best > 0) {
            r->best.weights = r->resume.best;
            r->best.n_weights = r->resume.n_best;
            r->best.epoch = r->resume.best_epoch;
            r->best.value = r->resume.best_value;
            memcpy(r->best.monitor, r->resume.best_monitor, sizeof r->best.monitor);
            req.init_best = &r->best;
        }
    }
    if (r->rank == 0)
        ddts_log(&log, DDTS_LOG_INFO,
                 "%d ranks, %llu training samples (%zu per rank), sync %s%s; validation: %s",
                 r->size, (unsigned long long)r->n_total, (size_t)r->x->shape[0], sync,
                 r->resuming ? ", resumed" : "",
                 r->x_val == NULL         ? "none"
                 : req.merge_sums != NULL ? "a slice per rank"
                                          : "rank 0");
    struct ddts_train_result res;
    double cpu0 = ddts_cpu_now();
    enum ddts_status st = ddts_train_run(&req, &res, err);
    double cpu = ddts_cpu_now() - cpu0;
    if (st == DDTS_OK && job->sync == DDTS_JOB_SYNC_NONE && r->size > 1)
        st = gather_models(r, r->last_w, r->n_last_w, err);
    if (st == DDTS_OK)
        st = print_results(r, &res, cpu, sync, req.initial_epoch, err);
    return st;
}

static void remove_tmp(struct mpi_run *r)
{
    if (r->tmp_dir[0] == '\0')
        return;
    unlink(r->model_path);
    rmdir(r->tmp_dir);
    r->tmp_dir[0] = '\0';
}

int cli_train_mpi(int argc, char **argv, struct ddts_job *job, const char *out, bool resume,
                  double bucket_mb)
{
    struct mpi_run r;
    memset(&r, 0, sizeof r);
    struct ddts_error err;
    ddts_error_clear(&err);
    enum ddts_status st = ddts_mpi_init(&argc, &argv, &r.c, &err);
    if (st != DDTS_OK)
        return cli_fail("train", &err);
    r.rank = ddts_mpi_rank(r.c);
    r.size = ddts_mpi_size(r.c);
    r.job = job;
    job->clients = 1;
    int32_t rc = CLI_OK;
    if (r.rank == 0)
        rc = cli_job_complete("train", job, false, NULL, NULL, 0);
    if (r.rank == 0 && rc == CLI_OK && bucket_mb > 0 && job->sync != DDTS_JOB_SYNC_STEP)
        rc = cli_usage_error("train", "--bucket-mb applies to --sync step only");
    st = ddts_mpi_bcast(r.c, &rc, sizeof rc, 0, &err);
    /* Rank 0's buckets: every rank must start the same collectives. */
    uint64_t bucket_bytes = (uint64_t)(bucket_mb * 1048576.0);
    if (bucket_mb > 0 && bucket_bytes == 0)
        bucket_bytes = 1; /* a tiny MB still asks for buckets: one float each */
    if (st == DDTS_OK && rc == CLI_OK)
        st = ddts_mpi_bcast(r.c, &bucket_bytes, sizeof bucket_bytes, 0, &err);
    r.bucket_bytes = (size_t)bucket_bytes;
    if (st != DDTS_OK || rc != CLI_OK) {
        ddts_mpi_finalize(r.c);
        return st != DDTS_OK ? cli_fail("train", &err) : (int)rc;
    }
    snprintf(r.model_path, sizeof r.model_path, "%s", job->model);
    if (resume && (job->method != DDTS_JOB_FIT || job->sync == DDTS_JOB_SYNC_NONE)) {
        if (r.rank == 0)
            fprintf(stderr, "ddts train: --resume needs --method fit and a synchronising --sync\n");
        ddts_mpi_finalize(r.c);
        return CLI_USAGE;
    }
    st = share_job(&r, &err);
    if (r.rank == 0) {
        if (st == DDTS_OK && out != NULL)
            st = ddts_format(r.out_dir, sizeof r.out_dir, &err, "%s", out);
        else if (st == DDTS_OK)
            st = ddts_format(r.out_dir, sizeof r.out_dir, &err, "%s/%s/train", job->workdir,
                             job->name);
        struct ddts_logger log = cli_logger(DDTS_LOG_INFO);
        ddts_log(&log, DDTS_LOG_INFO, "seed %llu", (unsigned long long)job->seed);
    }
    struct ddts_array *extra = NULL;
    if (st == DDTS_OK && resume)
        st = share_checkpoint(&r, &err);
    if (st == DDTS_OK)
        st = job->data == DDTS_JOB_DATA_CLIENT ? load_own_data(&r, &extra, &err)
                                               : scatter_data(&r, &extra, &err);
    if (st == DDTS_OK && job->normalizer != DDTS_JOB_NORM_NONE)
        st = merge_stats(&r, extra, &err);
    if (st == DDTS_OK)
        st = share_validation(&r, &err);
    ddts_array_destroy(extra);
    if (st == DDTS_OK)
        st = train(&r, &err);
    if (st != DDTS_OK && (r.rank == 0 || !r.all_know))
        fprintf(stderr, "ddts train: rank %d of %d: error: %s\n", r.rank, r.size, err.msg);
    if (st != DDTS_OK && !r.all_know && r.size > 1) {
        /* A rank that cannot go on alone ends the job: the others would wait for it forever. */
        remove_tmp(&r);
        fflush(NULL);
        ddts_mpi_fail(r.c, CLI_FAIL);
    }
    remove_tmp(&r);
    ddts_checkpoint_deinit(&r.resume);
    ddts_free(r.last_w);
    ddts_stats_destroy(r.stats);
    ddts_array_destroy(r.x);
    ddts_array_destroy(r.y);
    ddts_array_destroy(r.x_val);
    ddts_array_destroy(r.y_val);
    ddts_mpi_finalize(r.c);
    return st == DDTS_OK ? CLI_OK : CLI_FAIL;
}
