/*
 * The trainer: one training run of a job on one machine, as `ddts train`
 * runs it and as each client runs its share. It ties the modules together:
 * the Keras file (keras.h) gives the model and its weights, the engine (nn.h)
 * trains it, data arrive as arrays (data.h), and results are written as
 * SPEC §5 lists them: per run (or per fold) the trained model in its source
 * format, the best model by the monitored metric, history.csv, train.log,
 * loss and accuracy plots; summary.json for the whole request.
 *
 * Synchronisation across clients is a callback (`exchange`): it receives the
 * flat weights and the samples trained since the last call and overwrites
 * the weights with the global average.
 */
#ifndef DDTS_TRAINER_H
#define DDTS_TRAINER_H

#include <stdio.h>

#include "array.h"
#include "core.h"
#include "data.h"
#include "job.h"
#include "keras.h"
#include "nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Averages `weights` (`n` floats) with the other clients; see ddts_client_sync_exchange. */
typedef enum ddts_status (*ddts_exchange_fn)(void *userdata, float *weights, size_t n,
                                             uint64_t n_samples, struct ddts_error *err);

/* Averages a batch's gradients (`n` floats, the gradient of the mean loss over
 * `batch_samples` samples) with the other data-parallel workers, in place. */
typedef enum ddts_status (*ddts_grad_exchange_fn)(void *userdata, float *grads, size_t n,
                                                  size_t batch_samples, struct ddts_error *err);
/* During the backward pass (before grad_exchange is called for the batch):
 * grads[from, n) are final for this batch, `from` decreasing to 0 over the
 * calls (on_gradients_ready of struct ddts_fit_callbacks). An exchange may
 * start sending them; grad_exchange must then complete it. Must not write
 * grads. */
typedef enum ddts_status (*ddts_grad_ready_fn)(void *userdata, const float *grads, size_t n,
                                               size_t from, size_t batch_samples,
                                               struct ddts_error *err);
/* Replaces the totals of an epoch over this worker's `n_samples` samples
 * (`sums`, n doubles, each additive over disjoint sets of samples:
 * on_training_sums and on_validation_sums of struct ddts_fit_callbacks) with
 * their sums over every worker's samples, the same values on every worker:
 * `validation` 0 for the epoch's training steps, 1 for its validation pass
 * over this worker's slice. Called on every worker after every epoch's
 * training and after every validation pass (collective). */
typedef enum ddts_status (*ddts_merge_sums_fn)(void *userdata, int validation, double *sums,
                                               size_t n, size_t n_samples, struct ddts_error *err);
/* Called at the end of every epoch (0-based `epoch`), after the exchange: the
 * model holds the epoch's final weights (checkpoints). A failure stops the run. */
typedef enum ddts_status (*ddts_epoch_done_fn)(void *userdata, struct ddts_model *m, int epoch,
                                               struct ddts_error *err);

/* Rank r of an MPI job shuffles (and draws dropout masks) with the job's seed
 * plus r times this constant (the golden ratio in 64 bits): rank 0 draws what
 * `ddts train` draws, the others independent streams. */
#define DDTS_RANK_SEED_STEP 0x9e3779b97f4a7c15ull

/* Where a run is, for a caller that shows or forwards it (ddts client sends it to the server). */
struct ddts_train_progress {
    int fold, n_folds;    /* 1-based fold of n_folds; 0, 0 for fit */
    int epoch, epochs;    /* 1-based epoch of epochs */
    int64_t done, total;  /* samples done in this epoch, samples per epoch */
    double loss;          /* running mean of the epoch so far (NaN: none) */
    double accuracy;      /* running accuracy (NaN when the model has none) */
    double samples_per_s; /* this epoch's throughput so far */
    double elapsed_s;     /* seconds since the epoch began */
    int epoch_end;        /* non-zero: the epoch is over (done == total) */
    /* epoch_end: the epoch's history row, every figure history.csv gets for it
     * (training and validation), borrowed for the call; NULL otherwise. */
    const struct ddts_logs *epoch_logs;
};
/* Called after every batch and once at each epoch end, on the training thread. */
typedef void (*ddts_train_progress_fn)(void *userdata, const struct ddts_train_progress *p);

struct ddts_train_request {
    const struct ddts_job *job;     /* settings (epochs, batch size, loss, method, ...) */
    const char *model_path;         /* the Keras .h5 or .keras file */
    const struct ddts_array *x, *y; /* training samples; y NULL with order XX */
    /* How many inputs x packs (ddts_data_n_inputs: 1 for X/ alone, 2 for X/
     * and X2/, ...), checked against the model's; 0: not known (a share of
     * a job whose server checked it). */
    size_t x_inputs;
    const struct ddts_array *x_val, *y_val; /* NULL: job->validation_split of x, y */
    const struct ddts_stats *norm_stats;    /* job-wide normalizer statistics; NULL: from x */
    const float *init_weights;              /* start from these (flat), or NULL: the file's */
    size_t n_init_weights;
    const char *out_dir;       /* results go here (created); NULL: no files written */
    ddts_exchange_fn exchange; /* NULL: train alone */
    void *exchange_userdata;
    /* Steps:K: exchange every K batches while batch < sync_batch_limit (the
     * batches every client has), and at each epoch end. 0: epoch ends only. */
    uint32_t sync_steps;
    size_t sync_batch_limit;
    /* fit only: the first epoch to train (a share taken over or resumed mid-job
     * skips the epochs it already contributed); at most epochs - 1. */
    int initial_epoch;
    /* Data-parallel SGD (--sync step on MPI): before every optimizer step the
     * batch's gradients go through grad_exchange. NULL: none. */
    ddts_grad_exchange_fn grad_exchange;
    void *grad_exchange_userdata;
    /* With grad_exchange: told during the backward pass which gradients are
     * final (grad_exchange_userdata is its userdata). NULL: none. */
    ddts_grad_ready_fn grad_ready;
    uint64_t seed_offset; /* added to the shuffling and dropout seed (MPI rank r: r * step) */
    /* Resume: the optimizer state (ddts_model_optimizer_state's layout) and
     * step count to continue from; NULL: a fresh optimizer. fit only. */
    const float *init_opt_state;
    size_t n_init_opt_state;
    uint64_t init_iterations;
    bool append_history; /* resume: history.csv and train.log continue */
    /* Resume: the best model so far (fit's checkpoint_monitor), so that the
     * best_model written at the end is the best over every epoch. NULL: none. */
    const struct ddts_best_state *init_best;
    /* Data-parallel workers that train one model (MPI ranks): the figures
     * of every epoch are combined over the workers through this, so that
     * every worker logs and decides (best model, early stopping) on the same
     * figures: the training figures over every worker's samples, and the
     * validation figures over every worker's slice of the validation
     * samples (x_val/y_val are then this worker's slice, possibly empty,
     * never NULL when any worker has one). With an exchange, the epoch-end
     * exchange then comes before the validation pass and the best-model
     * choice (not after them), so that the workers validate and keep the
     * same averaged weights. NULL: this worker's figures. */
    ddts_merge_sums_fn merge_sums;
    void *merge_sums_userdata;
    ddts_epoch_done_fn on_epoch_done; /* NULL: none */
    void *epoch_done_userdata;
    int n_ranks;           /* > 0: summary.json records the ranks and sync mode of an MPI job */
    const char *sync_name; /* "step", "epoch", "steps:K", "none" (with n_ranks) */
    const char *run_name;  /* shown in logs and plot titles */
    const struct ddts_logger *logger;   /* may be NULL */
    FILE *progress;                     /* Keras-like progress; NULL: none */
    ddts_train_progress_fn on_progress; /* NULL: none */
    void *progress_userdata;
};

struct ddts_train_result {
    size_t n_samples;              /* training samples per epoch */
    double seconds;                /* wall time of training */
    double samples_per_s;          /* training throughput */
    double loss, accuracy;         /* last epoch's training figures (accuracy NaN if none) */
    double val_loss, val_accuracy; /* last epoch's validation figures (NaN if none) */
    int n_folds;                   /* 0 for fit */
    double fold_mean, fold_std;    /* k-fold: mean and std of val_accuracy (else val_loss) */
    char fold_metric[32];
};

/*
 * The exchange points of --sync steps:K and step, the same on every client:
 * from the smallest share of the job (`min_share` samples) less the
 * validation part held out when the share has no separate validation data
 * (`has_val_data` 0), mid-epoch exchanges after batches K, 2K, ... up to
 * ddts_train_sync_batch_limit, which always ends before the last batch of
 * every share, so that the exchange at each epoch end is never empty.
 * ddts_train_rounds_per_epoch: the averaging rounds of one epoch (fit;
 * 1 for --sync epoch; 0 without sync or for k-fold).
 */
DDTS_API size_t ddts_train_sync_batch_limit(const struct ddts_job *job, size_t min_share,
                                            int has_val_data);
DDTS_API uint64_t ddts_train_rounds_per_epoch(const struct ddts_job *job, size_t min_share,
                                              int has_val_data);

/* Runs the request; see the header comment. Statuses of the modules it uses. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_train_run(const struct ddts_train_request *req,
                                                        struct ddts_train_result *out,
                                                        struct ddts_error *err);

/*
 * Bridges between Keras files and the engine.
 * ddts_bridge_load: builds the engine's model from a Keras file's config and
 * copies its weights in (by layer name, then position), checking every
 * shape; a layer the file has no weights for keeps fresh weights from
 * `seed`. ddts_bridge_store: copies the model's weights back into `k`.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_bridge_load(const struct ddts_keras_model *k,
                                                          uint64_t seed, struct ddts_model **out,
                                                          struct ddts_error *err);
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_bridge_store(struct ddts_model *m, struct ddts_keras_model *k, struct ddts_error *err);
/* A new in-memory Keras file for `m` (config and training config given as
 * JSON text), to be written with ddts_keras_write_new. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_bridge_new_keras(struct ddts_model *m,
                                                               const char *config_json,
                                                               const char *training_config_json,
                                                               struct ddts_keras_model **out,
                                                               struct ddts_error *err);
/* Writes `m` to `path` in the format of `k` (k's layout, m's weights). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_bridge_write(struct ddts_model *m,
                                                           struct ddts_keras_model *k,
                                                           const char *path,
                                                           struct ddts_error *err);

/*
 * A training checkpoint: what `ddts train` writes after every epoch
 * (OUT/checkpoint.bin) and a rerun with the same --out (or, with
 * --distributed mpi, --resume) continues from. The file: "DDTSCKPT", then
 * little-endian u32 version, i32 epochs_done, u64 iterations, u64 seed,
 * u64 n_weights, u64 n_opt_state; version 2 (with a best model) adds i32
 * best_epoch, f64 best_value, 32 bytes best_monitor (NUL-padded), u64 n_best
 * (= n_weights); then the weights, the optimizer state and the best weights
 * as float32, and a CRC-32 (zip's) of everything before it. Version 1 is
 * written when there is no best model.
 */
struct ddts_checkpoint {
    int32_t epochs_done; /* epochs completed (the next epoch to train, 0-based) */
    uint64_t iterations; /* optimizer steps taken (ddts_model_iterations) */
    uint64_t seed;       /* the job's seed: a resumed job continues with it */
    float *weights;      /* n_weights floats (the flat weight layout) */
    size_t n_weights;
    float *opt_state; /* ddts_model_optimizer_state's layout; NULL when 0 */
    size_t n_opt_state;
    float *best;        /* the best model so far (ddts_best_state); NULL when n_best is 0 */
    size_t n_best;      /* 0 or n_weights */
    int32_t best_epoch; /* 0-based; -1 without a best model */
    double best_value;  /* its monitored value */
    char best_monitor[32];
};
/* Encodes `c` into a new buffer *out of *out_nbytes bytes (ddts_free). DDTS_ENOMEM. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_checkpoint_encode(const struct ddts_checkpoint *c,
                                                                uint8_t **out, size_t *out_nbytes,
                                                                struct ddts_error *err);
/* Decodes `buf` into *out (its arrays new allocations: ddts_checkpoint_deinit).
 * DDTS_EFORMAT for a wrong magic, version, length or CRC; DDTS_ENOMEM. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_checkpoint_decode(const uint8_t *buf, size_t nbytes,
                                                                struct ddts_checkpoint *out,
                                                                struct ddts_error *err);
/* Frees the arrays of `c` (fields cleared); NULL: nothing. */
DDTS_API void ddts_checkpoint_deinit(struct ddts_checkpoint *c);
/* The checkpoint of model `m` after `epochs_done` epochs: *out borrows the
 * model's weights, optimizer state and best model (do not deinit it). */
DDTS_API void ddts_checkpoint_from_model(struct ddts_model *m, int epochs_done, uint64_t seed,
                                         struct ddts_checkpoint *out);
/* Encodes `c` and writes it to `path` atomically. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_checkpoint_write(const char *path, const struct ddts_checkpoint *c, struct ddts_error *err);
/* Reads and decodes the checkpoint at `path` (errors name it; ddts_checkpoint_deinit). */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_checkpoint_read(const char *path, struct ddts_checkpoint *out, struct ddts_error *err);

/* The server's global model: the source file with averaged weights, evaluated on test data. */
struct ddts_global_request {
    const struct ddts_job *job;
    const char *model_path; /* the job's Keras file */
    const float *weights;   /* averaged flat weights; NULL: the file's own */
    size_t n_weights;
    const struct ddts_stats *norm_stats;      /* the job's normalizer statistics, or NULL */
    const struct ddts_array *x_test, *y_test; /* may be NULL: no evaluation */
    const char *out_path;   /* where the global model is written; NULL: not written */
    struct ddts_logs *logs; /* out (may be NULL): every figure of the evaluation (n 0: none) */
};
/*
 * The length of the flat weight vector that clients exchange for the model
 * at `model_path` (what the server's rounds average): the server passes it
 * to ddts_server_config.n_weights so that no client chooses it.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_train_count_weights(const char *model_path, size_t *n,
                                                                  struct ddts_error *err);

/* Writes and evaluates the global model; *loss and *accuracy are NaN without test data. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_train_global(const struct ddts_global_request *req,
                                                           double *loss, double *accuracy,
                                                           struct ddts_error *err);

/*
 * Model surgery (src/train/surgery.c): configuration JSON in, JSON out, and
 * new model files written with ddts_keras_write_new. Documented in
 * docs/file-formats.md ("Model surgery").
 */

/* A job's normalizer as a Keras Normalization layer: y = (x - mean) / sqrt(variance). */
struct ddts_norm_layer {
    const float *mean;     /* n_features values (ddts_normalizer_from_stats) */
    const float *variance; /* n_features values */
    size_t n_features;     /* elements per sample of the model's input */
    uint64_t count;        /* samples the statistics came from (Keras' `count` weight) */
    bool invert_output;    /* --order XX: the output gets Normalization(invert=True) with the
                              same statistics, so the saved model maps raw X to raw X */
};

/*
 * Inserts a Normalization layer (axis -1, mean/variance null: "adapted") at
 * the input of the model configuration `config_json` (a Sequential: after
 * its InputLayer; a Functional: after its input, every consumer of the
 * input rewired to it). For an input of rank > 1 (one sample's shape
 * `input_shape[0..input_rank)`), the layer is wrapped as Reshape((F,)) ->
 * Normalization -> Reshape(input_shape) so that every feature keeps its own
 * statistics. *out_json: the new configuration; *norm_name: the name given
 * to the Normalization layer (unique in the model); both ddts_free.
 * Returns DDTS_EFORMAT (not a model config), DDTS_EUNSUPPORTED (several
 * inputs), DDTS_ENOMEM.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_surgery_insert_normalization(const char *config_json, int input_rank,
                                  const int64_t *input_shape, char **out_json, char **norm_name,
                                  struct ddts_error *err);

/*
 * Writes `m` (its current weights; built from `k`) as a new tf.keras 2.x .h5
 * file at `path` whose configuration is k's with the Normalization layer of
 * `norm` inserted (ddts_surgery_insert_normalization); k's training config,
 * keras_version and backend are kept. DDTS_ESHAPE when norm->n_features is
 * not the model's input size. With norm->invert_output (an autoencoder) the
 * model's output also gets a Normalization(invert=True) layer (Keras >= 2.10
 * and Keras 3 load it) with the same statistics, wrapped in Reshapes like the
 * input's; the output must then have n_features values too.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_surgery_write_normalized(struct ddts_model *m, const struct ddts_keras_model *k,
                              const struct ddts_norm_layer *norm, const char *path,
                              struct ddts_error *err);

/*
 * The configuration of a Functional model that averages the outputs of
 * `n` (>= 2) member models: an InputLayer "input" of one sample's shape
 * `input_shape[0..input_rank)`, each member (its model configuration JSON,
 * Sequential or Functional) nested as "member_<i>" (1-based) and called at
 * node index 1, and an Average layer "average". *out_json: ddts_free.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_surgery_ensemble_config(const char *const *member_configs, size_t n, int input_rank,
                             const int64_t *input_shape, char **out_json, struct ddts_error *err);

/*
 * Writes the output-averaging ensemble of `members` (read with
 * ddts_keras_read; same input and output shapes) as a new tf.keras 2.x .h5
 * file at `path`: configuration from ddts_surgery_ensemble_config, each
 * member's weights in its one group ("<sublayer>/<weight>:0"), the first
 * member's training config. `names` (the members' file names) appear in
 * error messages. DDTS_ESHAPE when members' inputs or outputs differ.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_surgery_write_ensemble(const struct ddts_keras_model *const *members, const char *const *names,
                            size_t n, const char *path, struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
