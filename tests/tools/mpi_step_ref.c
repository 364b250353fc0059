/*
 * The single-process reference of tests/integration/test_mpi_sync.sh: checks
 * that `mpirun -np N ddts train --distributed mpi --sync step` at batch b
 * computed what one process computes at batch N*b, and that --sync epoch
 * computed the sample-weighted average of N models trained on the shares.
 *
 * usage: mpi_step_ref step|epoch MODEL.h5 X.npy Y.npy N B SEED EPOCHS OPTIMIZER LR NORMALIZER
 *                     CHECKPOINT [VALIDATION_SPLIT]
 *
 * It rebuilds, with the library's public functions, the global batches of
 * the MPI run: the equal shares (ddts_split_shards with the job's seed, each
 * share cut to the smallest), each rank's per-epoch shuffle of its share
 * (seed + rank * DDTS_RANK_SEED_STEP, as fit draws it), and global batch i =
 * rank 0's batch i, then rank 1's, ... Then one process fits the job's model
 * on those batches in that order at batch N*b (no shuffling), with the
 * normalizer's statistics computed over all samples at once (the MPI run
 * merged per-rank statistics), and compares its weights with the checkpoint
 * rank 0 wrote after the last epoch. A control fits the same samples at batch
 * b (the combined batch not formed): it must differ by far more than the
 * tolerance, or the comparison would prove nothing.
 *
 * epoch: N models start from the file's weights; in each epoch model r fits
 * rank r's shuffled share at batch b, then all take the weighted mean of
 * the N weight vectors (each keeps its own optimizer state, as each rank
 * does). The control skips the averaging (rank 0's model alone).
 *
 * VALIDATION_SPLIT (default 0): the last samples are held out as Keras'
 * validation_split takes them, the shares are drawn from the others, the
 * normalizer's statistics include the held-out samples (as ddts train's
 * do), and after every epoch the one process (step, at batch N*b) or the
 * averaged model (epoch) is validated on all of them: it prints val_loss and
 * val_accuracy per epoch, what history.csv of the MPI run (each rank
 * validating a slice, the sums combined) must show.
 *
 * Prints both comparisons; exit 0 when the MPI weights match within the
 * tolerance and the control does not, 1 otherwise.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddts/ddts.h"

static int die(const char *what, const struct ddts_error *err)
{
    fprintf(stderr, "mpi_step_ref: %s: %s\n", what, err->msg);
    return 1;
}

/* Training loss and accuracy of each epoch of the reference (not the
 * control), for the caller to print. */
static double ref_loss[64], ref_acc[64];
/* The reference's weights after each epoch (step: the one process; epoch:
 * the averaged model), to compare with the checkpoint's best model. */
static float *ref_w[64];
/* Validation figures of each epoch of the reference (VALIDATION_SPLIT > 0). */
static double ref_val_loss[64], ref_val_acc[64];
static const struct ddts_dataset *ref_val; /* the held-out samples; NULL: none */

/* Fits epoch `ep` of `m` over the samples order[0..n), in that order; adds
 * `share` times the epoch's training loss to *loss_sum (may be NULL) and its
 * accuracy to ref_acc[ep]; the reference (loss_sum given, step) also
 * validates on ref_val. */
static enum ddts_status fit_epoch(struct ddts_model *m, struct ddts_dataset *d,
                                  const uint32_t *order, size_t n, int ep, int batch, double share,
                                  double *loss_sum, struct ddts_error *err)
{
    d->idx = order;
    d->n = n;
    struct ddts_fit_options fo = {.epochs = ep + 1,
                                  .initial_epoch = ep,
                                  .batch_size = batch,
                                  .shuffle = 0,
                                  .validation = share == 1.0 && loss_sum ? ref_val : NULL};
    struct ddts_history *h = NULL;
    enum ddts_status st = ddts_model_fit(m, d, &fo, &h, err);
    if (st == DDTS_OK && loss_sum != NULL && h->n_epochs == 1 && h->n_columns > 0 &&
        strcmp(h->columns[0], "loss") == 0)
        *loss_sum += share * h->values[0];
    for (size_t c = 0; st == DDTS_OK && loss_sum != NULL && c < h->n_columns; c++)
        if (strcmp(h->columns[c], "accuracy") == 0)
            ref_acc[ep] += share * h->values[c];
    for (size_t c = 0; st == DDTS_OK && fo.validation != NULL && c < h->n_columns; c++) {
        if (strcmp(h->columns[c], "val_loss") == 0)
            ref_val_loss[ep] = h->values[c];
        if (strcmp(h->columns[c], "val_accuracy") == 0)
            ref_val_acc[ep] = h->values[c];
    }
    ddts_history_destroy(h);
    return st;
}

/* ref_w[ep]: a copy of m's weights after epoch ep. */
static void keep_weights(struct ddts_model *m, int ep)
{
    size_t nw = 0;
    const float *w = ddts_model_weights_flat(m, &nw);
    free(ref_w[ep]);
    ref_w[ep] = malloc((nw ? nw : 1) * sizeof *w);
    memcpy(ref_w[ep], w, nw * sizeof *w);
}

/* Fits `m` (fresh from the file) epoch by epoch over the given global orders. */
static enum ddts_status fit_orders(struct ddts_model *m, struct ddts_dataset *d, uint32_t **orders,
                                   size_t n, int epochs, int batch, double *losses,
                                   struct ddts_error *err)
{
    for (int ep = 0; ep < epochs; ep++) {
        enum ddts_status st =
            fit_epoch(m, d, orders[ep], n, ep, batch, 1.0, losses ? &losses[ep] : NULL, err);
        if (st != DDTS_OK)
            return st;
        if (losses != NULL)
            keep_weights(m, ep);
    }
    return DDTS_OK;
}

static double max_diff(const float *a, const float *b, size_t n, double *max_abs)
{
    double d = 0;
    *max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - (double)b[i]));
        *max_abs = fmax(*max_abs, fabs((double)b[i]));
    }
    return d;
}

/* The checkpoint's best model (when it has one): its monitor, epoch and
 * value, and its weights against the reference's after that epoch (for
 * the caller to check the choice against the reference's figures). */
static int check_best(const struct ddts_checkpoint *ck, double tol)
{
    if (ck->n_best == 0)
        return 1;
    int ep = ck->best_epoch;
    if (ep < 0 || ep >= 64 || ref_w[ep] == NULL || ck->n_best != ck->n_weights) {
        printf("checkpoint best: epoch %d, %zu weights: no reference\n", ep, ck->n_best);
        return 0;
    }
    double wmax = 0, d = max_diff(ck->best, ref_w[ep], ck->n_best, &wmax);
    printf("checkpoint best: %s epoch %d value %.9g\n", ck->best_monitor, ep + 1, ck->best_value);
    printf("best weights: max |w_best - reference after epoch %d| = %.3g (tolerance %.3g)\n",
           ep + 1, d, tol);
    return d <= tol;
}

int main(int argc, char **argv)
{
    if ((argc != 13 && argc != 14) ||
        (strcmp(argv[1], "step") != 0 && strcmp(argv[1], "epoch") != 0)) {
        fprintf(stderr, "usage: mpi_step_ref step|epoch MODEL X Y N B SEED EPOCHS OPTIMIZER LR "
                        "NORMALIZER CHECKPOINT [VALIDATION_SPLIT]\n");
        return 2;
    }
    int epoch_mode = strcmp(argv[1], "epoch") == 0;
    double val_split = argc == 14 ? strtod(argv[13], NULL) : 0;
    argv++;
    size_t n_ranks = strtoul(argv[4], NULL, 10), b = strtoul(argv[5], NULL, 10);
    uint64_t seed = strtoull(argv[6], NULL, 10);
    int epochs = atoi(argv[7]);
    if (epochs < 1 || epochs > 64)
        return 2;
    const char *opt = argv[8];
    double lr = strtod(argv[9], NULL);
    int normalize = strcmp(argv[10], "none") != 0;
    struct ddts_error err;
    ddts_error_clear(&err);
    struct ddts_array *x = NULL, *y = NULL;
    if (ddts_data_load(argv[2], NULL, &x, &err) != DDTS_OK ||
        ddts_data_load(argv[3], NULL, &y, &err) != DDTS_OK)
        return die("data", &err);
    size_t n = (size_t)x->shape[0], n_all = n, n_val = 0;
    if (val_split > 0 && ddts_validation_split(n_all, val_split, &n, &n_val, &err) != DDTS_OK)
        return die("validation split", &err);
    uint32_t *val_idx = malloc((n_val ? n_val : 1) * sizeof *val_idx);
    for (size_t i = 0; i < n_val; i++)
        val_idx[i] = (uint32_t)(n + i);

    /* The shares and each rank's order, as ddts-mpi and fit draw them. */
    uint32_t *idx = NULL;
    size_t *counts = calloc(n_ranks, sizeof *counts);
    if (ddts_split_shards(n, n_ranks, seed, NULL, &idx, counts, &err) != DDTS_OK)
        return die("split", &err);
    size_t share = counts[n_ranks - 1], total = share * n_ranks, n_batches = (share + b - 1) / b;
    uint32_t **orders = calloc((size_t)epochs, sizeof *orders);
    /* rank_orders[ep * n_ranks + r]: rank r's samples in epoch ep, in its order. */
    uint32_t **rank_orders = calloc((size_t)epochs * n_ranks, sizeof *rank_orders);
    uint32_t *perm = malloc(share * sizeof *perm);
    for (int ep = 0; ep < epochs; ep++) {
        orders[ep] = malloc(total * sizeof **orders);
        size_t k = 0, off = 0;
        uint32_t **rank_perm = calloc(n_ranks, sizeof *rank_perm);
        for (size_t r = 0; r < n_ranks; r++) {
            rank_perm[r] = malloc(share * sizeof *perm);
            for (size_t i = 0; i < share; i++)
                rank_perm[r][i] = idx[off + i];
            off += counts[r];
            struct ddts_rng rng;
            ddts_rng_derive(&rng, seed + r * DDTS_RANK_SEED_STEP, (uint64_t)ep);
            for (size_t i = 0; i < share; i++)
                perm[i] = (uint32_t)i;
            ddts_rng_shuffle_u32(&rng, perm, share);
            uint32_t *tmp = malloc(share * sizeof *tmp);
            for (size_t i = 0; i < share; i++)
                tmp[i] = rank_perm[r][perm[i]];
            free(rank_perm[r]);
            rank_perm[r] = tmp;
        }
        for (size_t bi = 0; bi < n_batches; bi++)
            for (size_t r = 0; r < n_ranks; r++)
                for (size_t j = bi * b; j < share && j < (bi + 1) * b; j++)
                    orders[ep][k++] = rank_perm[r][j];
        for (size_t r = 0; r < n_ranks; r++)
            rank_orders[(size_t)ep * n_ranks + r] = rank_perm[r];
        free(rank_perm);
    }

    /* The normalizer over every trained sample at once. */
    size_t nf = ddts_array_sample_count(x);
    float *offset = NULL, *scale = NULL;
    if (normalize) {
        struct ddts_stats *stats = NULL;
        enum ddts_normalizer kind;
        offset = malloc(nf * sizeof *offset);
        scale = malloc(nf * sizeof *scale);
        if (ddts_normalizer_parse(argv[10], &kind, &err) != DDTS_OK ||
            ddts_stats_create(nf, &stats, &err) != DDTS_OK ||
            ddts_stats_update(stats, x, orders[0], total, &err) != DDTS_OK ||
            ddts_stats_update(stats, x, val_idx, n_val, &err) != DDTS_OK ||
            ddts_normalizer_affine(kind, stats, offset, scale, &err) != DDTS_OK)
            return die("normalizer", &err);
        ddts_stats_destroy(stats);
    }

    struct ddts_checkpoint ck;
    char *bytes = NULL;
    size_t nb = 0;
    if (ddts_read_file(argv[11], (size_t)1 << 30, &bytes, &nb, &err) != DDTS_OK ||
        ddts_checkpoint_decode((const uint8_t *)bytes, nb, &ck, &err) != DDTS_OK)
        return die("checkpoint", &err);

    double diff[2], wmax[2];
    struct ddts_compile_options co = {.loss = "sparse_categorical_crossentropy",
                                      .optimizer = opt,
                                      .learning_rate = lr,
                                      .threads = 1};
    struct ddts_dataset d = {.x = x, .y = y, .x_offset = offset, .x_scale = scale};
    struct ddts_dataset dv = {
        .x = x, .y = y, .idx = val_idx, .n = n_val, .x_offset = offset, .x_scale = scale};
    ref_val = n_val > 0 ? &dv : NULL;
    for (int control = 0; control < 2; control++) {
        /* step: one model; epoch: one per rank. */
        size_t n_models = epoch_mode ? n_ranks : 1;
        struct ddts_keras_model *k = NULL;
        struct ddts_model **m = calloc(n_models, sizeof *m);
        if (ddts_keras_read(argv[1], &k, &err) != DDTS_OK)
            return die("model", &err);
        for (size_t i = 0; i < n_models; i++)
            if (ddts_bridge_load(k, seed, &m[i], &err) != DDTS_OK ||
                ddts_model_compile(m[i], &co, &err) != DDTS_OK)
                return die("model", &err);
        size_t nw = 0;
        float *w = ddts_model_weights_flat(m[0], &nw);
        if (!epoch_mode) {
            int batch = control ? (int)b : (int)(b * n_ranks);
            if (fit_orders(m[0], &d, orders, total, epochs, batch, control ? NULL : ref_loss,
                           &err) != DDTS_OK)
                return die("fit", &err);
        } else {
            double *sum = calloc(nw, sizeof *sum);
            for (int ep = 0; ep < epochs; ep++) {
                for (size_t r = 0; r < n_models; r++)
                    if (fit_epoch(m[r], &d, rank_orders[(size_t)ep * n_ranks + r], share, ep,
                                  (int)b, 1.0 / (double)n_ranks, control ? NULL : &ref_loss[ep],
                                  &err) != DDTS_OK)
                        return die("fit", &err);
                if (control)
                    continue;
                /* Equal shares: the weighted mean is the plain mean. */
                memset(sum, 0, nw * sizeof *sum);
                for (size_t r = 0; r < n_models; r++) {
                    const float *wr = ddts_model_weights_flat(m[r], &nw);
                    for (size_t i = 0; i < nw; i++)
                        sum[i] += (double)wr[i] * (double)share;
                }
                for (size_t r = 0; r < n_models; r++) {
                    float *wr = ddts_model_weights_flat(m[r], &nw);
                    for (size_t i = 0; i < nw; i++)
                        wr[i] = (float)(sum[i] / ((double)share * (double)n_ranks));
                }
                keep_weights(m[0], ep);
                struct ddts_logs vl;
                if (ref_val != NULL &&
                    ddts_model_evaluate(m[0], ref_val, (int)b, &vl, &err) != DDTS_OK)
                    return die("validation", &err);
                if (ref_val != NULL && (ddts_logs_get(&vl, "loss", &ref_val_loss[ep]) != 0 ||
                                        ddts_logs_get(&vl, "accuracy", &ref_val_acc[ep]) != 0))
                    return die("validation figures", &err);
            }
            free(sum);
        }
        if (nw != ck.n_weights) {
            fprintf(stderr, "mpi_step_ref: %zu weights, the checkpoint holds %zu\n", nw,
                    ck.n_weights);
            return 1;
        }
        diff[control] = max_diff(ck.weights, w, nw, &wmax[control]);
        for (size_t i = 0; i < n_models; i++)
            ddts_model_destroy(m[i]);
        free(m);
        ddts_keras_destroy(k);
    }
    double tol = 1e-5 * fmax(1.0, wmax[0]);
    if (epoch_mode) {
        printf("%zu ranks x batch %zu, %d epochs, --sync epoch: max |w_mpi - mean of %zu "
               "models| = %.3g (tolerance %.3g, max |w| = %.3g)\n",
               n_ranks, b, epochs, n_ranks, diff[0], tol, wmax[0]);
        printf("control: max |w_mpi - rank 0's model, never averaged| = %.3g (must exceed "
               "%.3g)\n",
               diff[1], 100 * tol);
    } else {
        printf("%zu ranks x batch %zu, %zu steps: max |w_mpi - w_one_process(batch %zu)| = %.3g "
               "(tolerance %.3g, max |w| = %.3g)\n",
               n_ranks, b, n_batches * (size_t)epochs, b * n_ranks, diff[0], tol, wmax[0]);
        printf("control: max |w_mpi - w_one_process(batch %zu)| = %.3g (must exceed %.3g)\n", b,
               diff[1], 100 * tol);
    }
    /* The training loss history.csv must show: one process's at the combined
     * batch (step), the ranks' mean (epoch). */
    printf("reference training loss per epoch:");
    for (int ep = 0; ep < epochs; ep++)
        printf(" %.9g", ref_loss[ep]);
    printf("\nreference training accuracy per epoch:");
    for (int ep = 0; ep < epochs; ep++)
        printf(" %.9g", ref_acc[ep]);
    printf("\n");
    if (ref_val != NULL) {
        printf("reference val_loss per epoch:");
        for (int ep = 0; ep < epochs; ep++)
            printf(" %.9g", ref_val_loss[ep]);
        printf("\nreference val_accuracy per epoch:");
        for (int ep = 0; ep < epochs; ep++)
            printf(" %.9g", ref_val_acc[ep]);
        printf("\n");
    }
    int ok = diff[0] <= tol && diff[1] > 100 * tol && check_best(&ck, tol);
    printf("%s\n", ok ? "match" : "MISMATCH");
    return ok ? 0 : 1;
}
