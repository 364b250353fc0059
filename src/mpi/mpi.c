/*
 * The one file of ddts that includes <mpi.h> (see ddts_mpi.h and docs/mpi.md).
 *
 * Why a separate program (`ddts-mpi`) rather than libmpi in `ddts`: OpenMPI's
 * libmpi can be linked into a program started without mpirun (MPI_Init then
 * makes a singleton), but linking it into `ddts` would load libmpi,
 * libopen-pal, hwloc and PMIx into every command (server, client, inspect...)
 * and make every machine that runs ddts install OpenMPI. dlopen would keep
 * the dependency optional but needs a hand-written table of MPI entry points
 * whose ABI differs between MPI implementations. A second program built from
 * the same CLI sources plus this file keeps `ddts` free of MPI and is found
 * next to it: `ddts train --distributed mpi` re-executes itself as ddts-mpi
 * (cli/mpi_launch.c), so `mpirun -np N ddts train --distributed mpi ...`
 * works as documented, and only machines that run MPI jobs need OpenMPI.
 */
#include "mpi/ddts_mpi.h"

#include <limits.h>
#include <mpi.h>
#include <stdbool.h>
#include <string.h>

#include "ddts/limits.h"

struct ddts_mpi {
    int rank, size;
    float *grad_buf; /* n floats of the bucketed gradient exchange, kept between steps */
    size_t grad_cap;
    double *weight_buf; /* n + 1 doubles of the weight exchange */
    size_t weight_cap;
    struct ddts_mpi_traffic traffic;
    /* Bucketed gradient exchange (ddts_mpi_set_bucket_bytes): a step opens
     * with its first ddts_mpi_grad_ready and closes in ddts_mpi_grad_exchange. */
    size_t bucket_floats; /* 0: one fused MPI_Allreduce */
    MPI_Request *reqs;    /* the open step's MPI_Iallreduce requests */
    size_t n_reqs, reqs_cap;
    bool step_open;
    size_t step_n;    /* the open step's gradient count */
    float step_b;     /* and its samples */
    size_t sent_from; /* grad_buf[sent_from, step_n + 1) is in flight */
    double *sums_buf; /* size * (n + 1) doubles of ddts_mpi_merge_sums */
    size_t sums_cap;
    uint64_t *val_counts; /* each rank's validation samples of the latest merge */
    bool grad_steps;      /* gradients were exchanged (their plain mean: equal batches) */
};

/* The largest message of one MPI call: counts are ints. */
#define CHUNK_BYTES  ((size_t)1 << 30)
#define CHUNK_FLOATS (CHUNK_BYTES / sizeof(float))

static enum ddts_status mpi_error(int rc, const char *what, struct ddts_error *err)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        len = 0;
    msg[len < MPI_MAX_ERROR_STRING ? len : MPI_MAX_ERROR_STRING - 1] = '\0';
    return ddts_error_set(err, DDTS_EIO, "MPI: %s failed: %s", what, len > 0 ? msg : "error");
}

enum ddts_status ddts_mpi_init(int *argc, char ***argv, struct ddts_mpi **out,
                               struct ddts_error *err)
{
    *out = NULL;
    int provided = 0;
    /* Only the training thread calls MPI (the engine's OpenMP threads never do). */
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
        return ddts_error_set(err, DDTS_EIO, "MPI: MPI_Init failed (code %d)", rc);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    struct ddts_mpi *c = ddts_calloc(1, sizeof *c);
    if (c == NULL) {
        MPI_Finalize();
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    *out = c;
    return DDTS_OK;
}

void ddts_mpi_finalize(struct ddts_mpi *c)
{
    if (c == NULL)
        return;
    ddts_free(c->grad_buf);
    ddts_free(c->weight_buf);
    ddts_free(c->reqs);
    ddts_free(c->sums_buf);
    ddts_free(c->val_counts);
    ddts_free(c);
    MPI_Finalize();
}

void ddts_mpi_fail(struct ddts_mpi *c, int code)
{
    (void)c;
    MPI_Abort(MPI_COMM_WORLD, code);
}

int ddts_mpi_rank(const struct ddts_mpi *c)
{
    return c->rank;
}

int ddts_mpi_size(const struct ddts_mpi *c)
{
    return c->size;
}

void ddts_mpi_traffic(const struct ddts_mpi *c, struct ddts_mpi_traffic *out)
{
    *out = c->traffic;
}

enum ddts_status ddts_mpi_barrier(struct ddts_mpi *c, struct ddts_error *err)
{
    (void)c;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? DDTS_OK : mpi_error(rc, "MPI_Barrier", err);
}

enum ddts_status ddts_mpi_bcast(struct ddts_mpi *c, void *buf, size_t nbytes, int root,
                                struct ddts_error *err)
{
    (void)c;
    for (size_t off = 0; off < nbytes; off += CHUNK_BYTES) {
        size_t len = nbytes - off < CHUNK_BYTES ? nbytes - off : CHUNK_BYTES;
        int rc = MPI_Bcast((char *)buf + off, (int)len, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_error(rc, "MPI_Bcast", err);
    }
    return DDTS_OK;
}

enum ddts_status ddts_mpi_allgather(struct ddts_mpi *c, const void *mine, size_t nbytes, void *all,
                                    struct ddts_error *err)
{
    (void)c;
    if (nbytes > INT_MAX)
        return ddts_error_set(err, DDTS_ELIMIT, "MPI: allgather of %zu bytes (max %d)", nbytes,
                              INT_MAX);
    int rc = MPI_Allgather(mine, (int)nbytes, MPI_BYTE, all, (int)nbytes, MPI_BYTE, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? DDTS_OK : mpi_error(rc, "MPI_Allgather", err);
}

enum ddts_status ddts_mpi_allreduce_min_u64(struct ddts_mpi *c, uint64_t *v, size_t n,
                                            struct ddts_error *err)
{
    (void)c;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? DDTS_OK : mpi_error(rc, "MPI_Allreduce", err);
}

enum ddts_status ddts_mpi_allreduce_max_i32(struct ddts_mpi *c, int32_t *v, size_t n,
                                            struct ddts_error *err)
{
    (void)c;
    int rc = MPI_Allreduce(MPI_IN_PLACE, v, (int)n, MPI_INT32_T, MPI_MAX, MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? DDTS_OK : mpi_error(rc, "MPI_Allreduce", err);
}

enum ddts_status ddts_mpi_send(struct ddts_mpi *c, const void *buf, size_t nbytes, int dest,
                               struct ddts_error *err)
{
    (void)c;
    for (size_t off = 0; off < nbytes; off += CHUNK_BYTES) {
        size_t len = nbytes - off < CHUNK_BYTES ? nbytes - off : CHUNK_BYTES;
        int rc = MPI_Send((const char *)buf + off, (int)len, MPI_BYTE, dest, 0, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_error(rc, "MPI_Send", err);
    }
    return DDTS_OK;
}

enum ddts_status ddts_mpi_recv(struct ddts_mpi *c, void *buf, size_t nbytes, int src,
                               struct ddts_error *err)
{
    (void)c;
    for (size_t off = 0; off < nbytes; off += CHUNK_BYTES) {
        size_t len = nbytes - off < CHUNK_BYTES ? nbytes - off : CHUNK_BYTES;
        MPI_Status status;
        int rc = MPI_Recv((char *)buf + off, (int)len, MPI_BYTE, src, 0, MPI_COMM_WORLD, &status);
        if (rc != MPI_SUCCESS)
            return mpi_error(rc, "MPI_Recv", err);
        int got = 0;
        MPI_Get_count(&status, MPI_BYTE, &got);
        if (got != (int)len)
            return ddts_error_set(err, DDTS_EPROTO, "MPI: rank %d sent %d bytes, expected %zu", src,
                                  got, len);
    }
    return DDTS_OK;
}

/* An array on the wire: dtype, rank, shape[DDTS_MAX_ARRAY_RANK] as int64, then the data. */
enum ddts_status ddts_mpi_send_array(struct ddts_mpi *c, const struct ddts_array *a, int dest,
                                     struct ddts_error *err)
{
    int64_t head[2 + DDTS_MAX_ARRAY_RANK];
    memset(head, 0, sizeof head);
    head[0] = (int64_t)a->dtype;
    head[1] = a->rank;
    for (int i = 0; i < a->rank; i++)
        head[2 + i] = a->shape[i];
    enum ddts_status st = ddts_mpi_send(c, head, sizeof head, dest, err);
    if (st == DDTS_OK)
        st = ddts_mpi_send(c, a->data, a->nbytes, dest, err);
    return st;
}

enum ddts_status ddts_mpi_recv_array(struct ddts_mpi *c, int src, struct ddts_array **out,
                                     struct ddts_error *err)
{
    *out = NULL;
    int64_t head[2 + DDTS_MAX_ARRAY_RANK];
    enum ddts_status st = ddts_mpi_recv(c, head, sizeof head, src, err);
    if (st != DDTS_OK)
        return st;
    if (head[0] < 0 || head[0] >= DDTS_N_DTYPES || head[1] < 0 || head[1] > DDTS_MAX_ARRAY_RANK)
        return ddts_error_set(err, DDTS_EPROTO, "MPI: rank %d sent a bad array header", src);
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    for (int i = 0; i < (int)head[1]; i++)
        shape[i] = head[2 + i];
    /* ddts_array_create checks every dimension and the byte count's overflow. */
    struct ddts_array *a = NULL;
    st = ddts_array_create_uninit((enum ddts_dtype)head[0], (int)head[1], shape, &a, err);
    if (st != DDTS_OK)
        return st;
    st = ddts_mpi_recv(c, a->data, a->nbytes, src, err);
    if (st != DDTS_OK) {
        ddts_array_destroy(a);
        return st;
    }
    *out = a;
    return DDTS_OK;
}

void ddts_mpi_set_bucket_bytes(struct ddts_mpi *c, size_t nbytes)
{
    c->bucket_floats = nbytes == 0 ? 0 : (nbytes < sizeof(float) ? 1 : nbytes / sizeof(float));
}

/* grad_buf of at least n floats (allocated on the first step, kept). */
static enum ddts_status reserve_grads(struct ddts_mpi *c, size_t n, struct ddts_error *err)
{
    if (c->grad_cap >= n)
        return DDTS_OK;
    ddts_free(c->grad_buf);
    c->grad_cap = 0;
    c->grad_buf = ddts_mallocarray(n ? n : 1, sizeof(float));
    if (c->grad_buf == NULL)
        return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    c->grad_cap = n;
    return DDTS_OK;
}

/*
 * Starts the bucket grad_buf[lo, hi) of the open step: a copy of grads
 * there (the engine's own are not written while it runs), then
 * MPI_Iallreduce (sum, in place) in pieces of at most CHUNK_FLOATS. Every
 * rank starts the same buckets in the same order: they follow from the
 * model's layers and `bucket_floats` alone.
 */
static enum ddts_status start_bucket(struct ddts_mpi *c, const float *grads, size_t lo, size_t hi,
                                     struct ddts_error *err)
{
    float *buf = c->grad_buf;
    memcpy(buf + lo, grads + lo, (hi - lo) * sizeof(float));
    for (size_t at = lo; at < hi;) {
        size_t len = hi - at < CHUNK_FLOATS ? hi - at : CHUNK_FLOATS;
        if (c->n_reqs == c->reqs_cap) {
            /* Grows on the first step only: later steps start the same buckets. */
            size_t cap = c->reqs_cap ? 2 * c->reqs_cap : 16, nbytes = 0;
            MPI_Request *r = ddts_size_mul(cap, sizeof(MPI_Request), &nbytes) == 0
                                 ? ddts_realloc(c->reqs, nbytes)
                                 : NULL;
            if (r == NULL)
                return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
            c->reqs = r;
            c->reqs_cap = cap;
        }
        int rc = MPI_Iallreduce(MPI_IN_PLACE, buf + at, (int)len, MPI_FLOAT, MPI_SUM,
                                MPI_COMM_WORLD, &c->reqs[c->n_reqs]);
        if (rc != MPI_SUCCESS)
            return mpi_error(rc, "MPI_Iallreduce (gradients)", err);
        c->n_reqs++;
        c->traffic.n_buckets++;
        at += len;
    }
    c->sent_from = lo;
    return DDTS_OK;
}

enum ddts_status ddts_mpi_grad_ready(void *userdata, const float *grads, size_t n, size_t from,
                                     size_t batch_samples, struct ddts_error *err)
{
    struct ddts_mpi *c = userdata;
    if (c->bucket_floats == 0)
        return DDTS_OK;
    double t0 = MPI_Wtime();
    enum ddts_status st = DDTS_OK;
    if (!c->step_open) {
        st = reserve_grads(c, n, err);
        if (st != DDTS_OK)
            return st;
        c->step_open = true;
        c->step_n = n;
        c->step_b = (float)batch_samples;
        c->sent_from = n; /* nothing in flight yet */
        c->n_reqs = 0;
    } else if (n != c->step_n || from >= c->sent_from) {
        return ddts_error_set(err, DDTS_ESTATE, "MPI: gradients [%zu, %zu) announced out of order",
                              from, n);
    }
    /* Everything in [from, sent_from) is final: a bucket once it is large
     * enough, or the last one when the backward pass is done. */
    if (c->sent_from - from >= c->bucket_floats || from == 0)
        st = start_bucket(c, grads, from, c->sent_from, err);
    /* OpenMPI progresses a nonblocking collective only inside MPI calls (no
     * progress thread by default): test the open requests at every layer. */
    int done = 0;
    if (st == DDTS_OK && c->n_reqs > 0) {
        int rc = MPI_Testall((int)c->n_reqs, c->reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            st = mpi_error(rc, "MPI_Testall (gradients)", err);
    }
    c->traffic.seconds += MPI_Wtime() - t0;
    return st;
}

/* grads = sum (in `sum`, which may be grads itself) / size: the ranks' mean. */
static void finish_grads(struct ddts_mpi *c, float *grads, const float *sum, size_t n)
{
    c->traffic.n_exchanges++;
    c->traffic.bytes += n * sizeof(float);
    c->grad_steps = true;
    if (c->size == 1 && sum == grads)
        return;
    float inv = 1.0f / (float)c->size;
    for (size_t i = 0; i < n; i++)
        grads[i] = sum[i] * inv;
}

/* The open step of the bucketed exchange: the rest as the last bucket, then wait for all. */
static enum ddts_status close_step(struct ddts_mpi *c, float *grads, size_t n, size_t batch_samples,
                                   struct ddts_error *err)
{
    c->step_open = false;
    if (n != c->step_n || (float)batch_samples != c->step_b)
        return ddts_error_set(err, DDTS_ESTATE,
                              "MPI: the gradient exchange of %zu gradients and %zu samples "
                              "follows buckets of %zu and %g",
                              n, batch_samples, c->step_n, (double)c->step_b);
    double t0 = MPI_Wtime();
    enum ddts_status st = c->sent_from > 0 ? start_bucket(c, grads, 0, c->sent_from, err) : DDTS_OK;
    if (st == DDTS_OK) {
        int rc = MPI_Waitall((int)c->n_reqs, c->reqs, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS)
            st = mpi_error(rc, "MPI_Waitall (gradients)", err);
    }
    c->traffic.seconds += MPI_Wtime() - t0;
    if (st == DDTS_OK)
        finish_grads(c, grads, c->grad_buf, n);
    return st;
}

enum ddts_status ddts_mpi_grad_exchange(void *userdata, float *grads, size_t n,
                                        size_t batch_samples, struct ddts_error *err)
{
    struct ddts_mpi *c = userdata;
    if (c->step_open)
        return close_step(c, grads, n, batch_samples, err);
    if (n > INT_MAX)
        return ddts_error_set(err, DDTS_ELIMIT, "MPI: %zu gradients in one message (max %d)", n,
                              INT_MAX);
    /* In place on the engine's gradients: no copy, no second buffer. */
    double t0 = MPI_Wtime();
    int rc = MPI_Allreduce(MPI_IN_PLACE, grads, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    c->traffic.seconds += MPI_Wtime() - t0;
    if (rc != MPI_SUCCESS)
        return mpi_error(rc, "MPI_Allreduce (gradients)", err);
    finish_grads(c, grads, grads, n);
    return DDTS_OK;
}

enum ddts_status ddts_mpi_weight_exchange(void *userdata, float *weights, size_t n,
                                          uint64_t n_samples, struct ddts_error *err)
{
    struct ddts_mpi *c = userdata;
    if (n + 1 > INT_MAX)
        return ddts_error_set(err, DDTS_ELIMIT, "MPI: %zu weights in one message (max %d)", n,
                              INT_MAX - 1);
    if (c->weight_cap < n + 1) {
        ddts_free(c->weight_buf);
        c->weight_cap = 0;
        c->weight_buf = ddts_mallocarray(n + 1, sizeof(double));
        if (c->weight_buf == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        c->weight_cap = n + 1;
    }
    double *buf = c->weight_buf, w = (double)n_samples;
    for (size_t i = 0; i < n; i++)
        buf[i] = (double)weights[i] * w;
    buf[n] = w;
    double t0 = MPI_Wtime();
    int rc = MPI_Allreduce(MPI_IN_PLACE, buf, (int)(n + 1), MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    c->traffic.seconds += MPI_Wtime() - t0;
    c->traffic.n_exchanges++;
    c->traffic.bytes += (n + 1) * sizeof(double);
    if (rc != MPI_SUCCESS)
        return mpi_error(rc, "MPI_Allreduce (weights)", err);
    if (!(buf[n] > 0))
        return DDTS_OK;
    for (size_t i = 0; i < n; i++)
        weights[i] = (float)(buf[i] / buf[n]);
    return DDTS_OK;
}

enum ddts_status ddts_mpi_merge_sums(void *userdata, int validation, double *sums, size_t n,
                                     size_t n_samples, struct ddts_error *err)
{
    struct ddts_mpi *c = userdata;
    size_t per = n + 1, size = (size_t)c->size;
    if (per > 64)
        return ddts_error_set(err, DDTS_ELIMIT, "MPI: %zu sums (max 63)", n);
    if (c->sums_cap < size * per) {
        ddts_free(c->sums_buf);
        c->sums_cap = 0;
        c->sums_buf = ddts_mallocarray(size * per, sizeof(double));
        if (c->sums_buf == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
        c->sums_cap = size * per;
    }
    if (validation && c->val_counts == NULL) {
        c->val_counts = ddts_calloc(size, sizeof *c->val_counts);
        if (c->val_counts == NULL)
            return ddts_error_set(err, DDTS_ENOMEM, "out of memory");
    }
    double mine[64];
    memcpy(mine, sums, n * sizeof(double));
    mine[n] = (double)n_samples;
    int rc = MPI_Allgather(mine, (int)per, MPI_DOUBLE, c->sums_buf, (int)per, MPI_DOUBLE,
                           MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS)
        return mpi_error(
            rc, validation ? "MPI_Allgather (validation sums)" : "MPI_Allgather (training sums)",
            err);
    for (size_t i = 0; i < n; i++) {
        double t = 0;
        for (size_t r = 0; r < size; r++)
            t += c->sums_buf[r * per + i];
        sums[i] = t;
    }
    for (size_t r = 0; validation && r < size; r++)
        c->val_counts[r] = (uint64_t)c->sums_buf[r * per + n];
    /* The gradient exchange averages the ranks' gradients unweighted, which is
     * the combined batch's gradient when every rank steps with the same batch:
     * equal shares, the same batch size. Checked here, once per epoch. */
    for (size_t r = 1; !validation && c->grad_steps && r < size; r++)
        if (c->sums_buf[r * per + n] != c->sums_buf[n])
            return ddts_error_set(err, DDTS_ESTATE,
                                  "MPI: rank %zu trained %.0f samples in the epoch, rank 0 %.0f: "
                                  "--sync step needs equal shares",
                                  r, c->sums_buf[r * per + n], c->sums_buf[n]);
    return DDTS_OK;
}

const uint64_t *ddts_mpi_val_counts(const struct ddts_mpi *c)
{
    return c->val_counts;
}
