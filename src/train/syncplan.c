/*
 * Where the clients of a job exchange weights (--sync steps:K and step):
 * every client computes the same points from the job's settings and the
 * smallest share, so that each round gets one contribution from everyone.
 */
#include <math.h>

#include "ddts/trainer.h"

/* The training samples of the smallest share: without the validation part
 * that trainer.c holds out when there is no separate validation data. */
static size_t min_train(const struct ddts_job *job, size_t min_share, int has_val_data)
{
    if (has_val_data || !(job->validation_split > 0) || job->validation_split >= 1)
        return min_share;
    /* ddts_validation_split: n_train = floor(n * (1 - fraction)), as Keras. */
    return (size_t)floor((double)min_share * (1.0 - job->validation_split));
}

size_t ddts_train_sync_batch_limit(const struct ddts_job *job, size_t min_share, int has_val_data)
{
    size_t batch = job->batch_size > 0 ? (size_t)job->batch_size : 32;
    size_t n = min_train(job, min_share, has_val_data);
    /* Batches 1..limit end before the last batch of every share (each has at
     * least n samples, so at least ceil(n / batch) > (n - 1) / batch batches):
     * the epoch-end exchange that follows always carries samples. */
    return n > 0 ? (n - 1) / batch : 0;
}

uint64_t ddts_train_rounds_per_epoch(const struct ddts_job *job, size_t min_share, int has_val_data)
{
    if (job->method != DDTS_JOB_FIT || job->sync == DDTS_JOB_SYNC_NONE)
        return 0;
    if (job->sync == DDTS_JOB_SYNC_EPOCH)
        return 1;
    size_t k = job->sync_steps > 0 ? (size_t)job->sync_steps : 1;
    return (uint64_t)(ddts_train_sync_batch_limit(job, min_share, has_val_data) / k) + 1;
}
