/*
 * MPI for `ddts train --distributed mpi` (docs/mpi.md): the only interface to
 * MPI in ddts. src/mpi/mpi.c is the one file that includes <mpi.h>; it is
 * compiled into the separate program `ddts-mpi` only, never into libddts or
 * the `ddts` program, so every other command runs without MPI's libraries.
 *
 * Every function here is collective over MPI_COMM_WORLD unless it says
 * otherwise: all ranks call it in the same order with matching arguments.
 * MPI is fail-stop: a rank that dies ends the job (mpirun kills the others);
 * a rank that fails on its own calls ddts_mpi_fail, which ends all ranks.
 * MPI errors are returned (MPI_ERRORS_RETURN) as DDTS_EIO with MPI's message.
 */
#ifndef DDTS_MPI_H
#define DDTS_MPI_H

#include "ddts/array.h"
#include "ddts/core.h"
#include "ddts/nn.h"

struct ddts_mpi; /* the communicator, its scratch buffers and traffic counters */

/* Traffic of the exchanges, for logs and benchmarks. */
struct ddts_mpi_traffic {
    uint64_t n_exchanges; /* gradient and weight exchanges (one per step with buckets too) */
    uint64_t bytes;       /* payload bytes each rank handed to their allreduces */
    double seconds;       /* wall time spent in their MPI calls (waiting for slower ranks
                             included; with buckets: starting, testing and the final wait) */
    uint64_t n_buckets;   /* MPI_Iallreduce calls of bucketed gradient exchanges (0: fused) */
};

/* MPI_Init (a singleton when not started by mpirun: one rank). Not collective
 * before MPI exists; DDTS_EIO when MPI cannot start, DDTS_ENOMEM. */
DDTS_NODISCARD enum ddts_status ddts_mpi_init(int *argc, char ***argv, struct ddts_mpi **out,
                                              struct ddts_error *err);
/* MPI_Finalize and frees `c` (NULL: nothing). */
void ddts_mpi_finalize(struct ddts_mpi *c);
/* Ends every rank of the job with exit code `code` (MPI_Abort): what a rank
 * that cannot continue does, since the others would wait for it forever.
 * Not collective. Does not return. */
void ddts_mpi_fail(struct ddts_mpi *c, int code);

int ddts_mpi_rank(const struct ddts_mpi *c);
int ddts_mpi_size(const struct ddts_mpi *c);
void ddts_mpi_traffic(const struct ddts_mpi *c, struct ddts_mpi_traffic *out);

/* Waits until every rank has called it. */
DDTS_NODISCARD enum ddts_status ddts_mpi_barrier(struct ddts_mpi *c, struct ddts_error *err);
/* `nbytes` bytes of `buf` from rank `root` to every rank (any size: chunked). */
DDTS_NODISCARD enum ddts_status ddts_mpi_bcast(struct ddts_mpi *c, void *buf, size_t nbytes,
                                               int root, struct ddts_error *err);
/* Each rank's `nbytes` bytes (the same count everywhere) into `all`
 * (size * nbytes, rank order), on every rank. */
DDTS_NODISCARD enum ddts_status ddts_mpi_allgather(struct ddts_mpi *c, const void *mine,
                                                   size_t nbytes, void *all,
                                                   struct ddts_error *err);
/* Element-wise minimum and sum of `n` values over the ranks, in place. */
DDTS_NODISCARD enum ddts_status ddts_mpi_allreduce_min_u64(struct ddts_mpi *c, uint64_t *v,
                                                           size_t n, struct ddts_error *err);
DDTS_NODISCARD enum ddts_status ddts_mpi_allreduce_max_i32(struct ddts_mpi *c, int32_t *v, size_t n,
                                                           struct ddts_error *err);

/* Point to point (not collective): an array (dtype, shape, data) from this
 * rank to rank `dest`, and its receipt from `src`. The receiver checks the
 * header (dtype, rank, sizes) before it allocates: DDTS_EPROTO when bad. */
DDTS_NODISCARD enum ddts_status ddts_mpi_send_array(struct ddts_mpi *c, const struct ddts_array *a,
                                                    int dest, struct ddts_error *err);
DDTS_NODISCARD enum ddts_status
ddts_mpi_recv_array(struct ddts_mpi *c, int src, struct ddts_array **out, struct ddts_error *err);
/* Raw bytes between two ranks (not collective). */
DDTS_NODISCARD enum ddts_status ddts_mpi_send(struct ddts_mpi *c, const void *buf, size_t nbytes,
                                              int dest, struct ddts_error *err);
DDTS_NODISCARD enum ddts_status ddts_mpi_recv(struct ddts_mpi *c, void *buf, size_t nbytes, int src,
                                              struct ddts_error *err);

/*
 * The trainer's exchanges (ddts_grad_exchange_fn and ddts_exchange_fn of
 * include/ddts/trainer.h; `userdata` is the struct ddts_mpi).
 *
 * ddts_mpi_grad_exchange: synchronous data-parallel SGD. `grads` (n floats)
 * is the gradient of the mean loss over this rank's `batch_samples` samples;
 * it becomes sum_r(g_r) / N, the gradient of the mean loss over all ranks'
 * samples of the step (what one process computes on the combined batch)
 * when every rank steps with the same batch, as ddts-mpi's equal shares
 * make them do (ddts_mpi_merge_sums checks it once per epoch). One
 * MPI_Allreduce (MPI_FLOAT, MPI_SUM) in place on `grads`, then one scaling
 * pass; no copy, no buffer (one rank: nothing to scale).
 *
 * ddts_mpi_weight_exchange: the server's weighted model average:
 * sum_r(n_r * w_r) / sum_r(n_r) with n_r the samples rank r trained since the
 * last exchange, accumulated in double (one MPI_Allreduce of n + 1 doubles)
 * and rounded to float once. When no rank trained a sample, the weights stay.
 */
DDTS_NODISCARD enum ddts_status ddts_mpi_grad_exchange(void *userdata, float *grads, size_t n,
                                                       size_t batch_samples,
                                                       struct ddts_error *err);

/*
 * Buckets overlapped with the backward pass (--bucket-mb). With a bucket size
 * set (ddts_mpi_set_bucket_bytes, not collective, the same on every rank;
 * 0: the fused exchange above), ddts_mpi_grad_ready (a ddts_grad_ready_fn)
 * runs as the backward pass finishes layers, last to first: once the final
 * gradients not yet sent, grads[from, sent), reach `nbytes` (or `from` is 0)
 * it copies them into grad_buf (the engine's own may not be written while
 * the backward pass runs) and starts one MPI_Iallreduce (sum) over them
 * there, and it tests the open requests at every call, since OpenMPI
 * progresses them only inside MPI calls. ddts_mpi_grad_exchange then starts
 * what is left, waits for every bucket (MPI_Waitall) and divides by N into
 * grads, as the fused path does. Buckets
 * depend only on the model and the size, so every rank starts the same ones
 * in the same order, as collectives must.
 *
 * The result is the fused exchange's: every element is the MPI sum of the
 * same N floats, scaled the same way. On 2 ranks a sum is a0 + a1 in any
 * algorithm, so the bits are the same (test_mpi_sync.sh checks it); on more
 * ranks OpenMPI may add in another order for another message size or for
 * the nonblocking collective (ring segments, recursive doubling), so the
 * weights agree to float rounding (checked against one process like the
 * fused path) but not necessarily bit for bit.
 */
void ddts_mpi_set_bucket_bytes(struct ddts_mpi *c, size_t nbytes);
DDTS_NODISCARD enum ddts_status ddts_mpi_grad_ready(void *userdata, const float *grads, size_t n,
                                                    size_t from, size_t batch_samples,
                                                    struct ddts_error *err);
DDTS_NODISCARD enum ddts_status ddts_mpi_weight_exchange(void *userdata, float *weights, size_t n,
                                                         uint64_t n_samples,
                                                         struct ddts_error *err);

/*
 * ddts_mpi_merge_sums (a ddts_merge_sums_fn): every rank trained on its own
 * share (validation 0), or validated its own slice of the validation
 * samples (validation 1); `sums` (n doubles, each additive over disjoint
 * samples: loss sum, correct predictions, metric sums, samples, rows) become
 * their sums over the ranks, so the figures computed from them are those
 * over every rank's samples (to float rounding): with --sync step the
 * training figures of one process at the combined batch, the validation
 * figures of the whole validation set. One MPI_Allgather of n + 1 doubles
 * per rank (the sums and the rank's sample count), then every rank adds
 * them up in rank order: the same bits on every rank whatever MPI's
 * reduction algorithm, since early stopping and the best model must decide
 * alike everywhere. ddts_mpi_val_counts: each rank's validation samples of
 * the latest validation call (size() values, rank order), or NULL before
 * the first (not collective).
 */
DDTS_NODISCARD enum ddts_status ddts_mpi_merge_sums(void *userdata, int validation, double *sums,
                                                    size_t n, size_t n_samples,
                                                    struct ddts_error *err);
const uint64_t *ddts_mpi_val_counts(const struct ddts_mpi *c);

#endif
