/*
 * ddts nn: the training engine. Keras models built from their JSON config,
 * trained natively in C on OpenBLAS and OpenMP.
 *
 * A short tour:
 *
 *   struct ddts_model *m;
 *   ddts_model_from_keras_config(json, strlen(json), &m, &err);   build the graph
 *   ddts_model_init_weights(m, seed, &err);                        or copy weights in
 *   struct ddts_compile_options co = {.loss = "sparse_categorical_crossentropy"};
 *   ddts_model_compile(m, &co, &err);                              loss, optimizer
 *   struct ddts_dataset train = {.x = x, .y = y};
 *   struct ddts_fit_options fo = {.epochs = 2, .batch_size = 32, .shuffle = 1};
 *   ddts_model_fit(m, &train, &fo, &history, &err);
 *   ddts_model_evaluate(m, &test, 128, &logs, &err);
 *   ddts_model_destroy(m);
 *
 * Tensors are float32, batch first and channels last (N, H, W, C) as in Keras,
 * so that Keras weights need no conversion. All weights of a model live in one
 * flat buffer (ddts_model_weights_flat), in Keras' own order: layers in the
 * order of the config (the order of model_weights/layer_names in an .h5 file),
 * and within a layer its weights in Keras' order (kernel, bias; gamma, beta,
 * moving_mean, moving_variance). A nested model is one layer entry whose
 * weights are its sublayers' trainable weights in order, then their
 * non-trainable weights in order (Keras' legacy weight order).
 *
 * A model is used by one thread at a time. Its compute uses `threads` threads
 * (OpenMP and OpenBLAS, never both at once); for a fixed seed and thread count
 * results are bit-identical, and other thread counts differ from them by float
 * rounding only (docs/engine.md, "Threads and determinism": small models of
 * per-sample layers split the batch, which sums the weight gradients in
 * blocks). OpenBLAS's own thread count is process-wide:
 * fit, evaluate and predict set it to 1 while they run and put the program's
 * value back when they return (the last of concurrent calls, if several).
 */
#ifndef DDTS_NN_H
#define DDTS_NN_H

#include <stddef.h>
#include <stdint.h>

#include "array.h"
#include "core.h"
#include "limits.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ddts_model;

/*
 * Builds a model from a Keras model config JSON: the `model_config` root
 * attribute of a Keras .h5 file or config.json of a .keras zip,
 * {"class_name": "Sequential"|"Functional"|"Model", "config": {...}}.
 * Handles Keras 2.2 to Keras 3 spellings (bare-list Sequential configs,
 * batch_input_shape/batch_shape/input_shape, dtype policies, both forms of
 * inbound_nodes, nested models). Weights are zero until ddts_model_init_weights
 * or a copy into ddts_model_weights_flat.
 * Returns DDTS_EFORMAT for malformed JSON or config, DDTS_EUNSUPPORTED naming
 * the layer name and class for a layer, activation or option ddts does not
 * implement, DDTS_ESHAPE when shapes do not agree, DDTS_ELIMIT beyond
 * DDTS_MAX_CONFIG_BYTES or DDTS_MAX_LAYERS, DDTS_ENOMEM.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_model_from_keras_config(const char *json,
                                                                      size_t json_nbytes,
                                                                      struct ddts_model **out,
                                                                      struct ddts_error *err);
DDTS_API void ddts_model_destroy(struct ddts_model *m);

/* The model's name from its config ("sequential"). */
DDTS_API const char *ddts_model_name(const struct ddts_model *m);

/* Number of top-level layers, weightless ones (InputLayer, Flatten...) included. */
DDTS_API size_t ddts_model_n_layers(const struct ddts_model *m);

struct ddts_layer_info {
    const char *name;                 /* Keras layer name ("dense_1") */
    const char *class_name;           /* Keras class ("Dense", "Sequential" for a nested model) */
    size_t n_weights;                 /* weights of this entry (see ddts_model_weight) */
    int out_rank;                     /* rank of out_shape, batch included */
    int64_t out_shape[DDTS_MAX_RANK]; /* out_shape[0] = -1 (batch) */
    size_t n_params;                  /* all parameters */
    size_t n_trainable;               /* trainable parameters */
    int n_outputs;  /* its outputs: 1, or several (an LSTM/GRU/SimpleRNN with return_state,
                       Bidirectional with merge_mode=None); out_shape is the first */
    size_t n_calls; /* times the model calls it: > 1 for a shared layer (one set of weights) */
};
/* Describes top-level layer `i` (< ddts_model_n_layers). DDTS_EINVAL when out of range. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_model_layer_info(const struct ddts_model *m, size_t i,
                                                               struct ddts_layer_info *out);
/* Output `k` (< n_outputs, Keras' tensor index order) of top-level layer `i`:
 * its rank, batch included, with shape[0] = -1 (the batch) as out_shape; -1
 * when i or k is out of range. */
DDTS_API int ddts_model_layer_output_shape(const struct ddts_model *m, size_t i, size_t k,
                                           int64_t shape[DDTS_MAX_RANK]);

struct ddts_weight_view {
    const char *name;       /* Keras weight name without layer prefix: "kernel", "bias",
                               "gamma", "beta", "moving_mean", "moving_variance", "mean",
                               "variance", "count" */
    const char *layer_name; /* the (sub)layer that owns it ("dense_1") */
    int rank;
    int64_t shape[DDTS_MAX_RANK]; /* Keras' shape: Dense (in, out), Conv2D (kh, kw, cin, cout) */
    float *data;                  /* points into the flat buffer; C order */
    size_t n_floats;
    size_t offset; /* offset of data in ddts_model_weights_flat, in floats */
    int trainable;
};
/* Weight `j` (< n_weights) of top-level layer `layer`. DDTS_EINVAL when out of range. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_model_weight(struct ddts_model *m, size_t layer,
                                                           size_t j, struct ddts_weight_view *out);

/* The flat buffer of all weights (trainable and not, BN moving statistics
 * included), in the order of the header comment; its length in *n_floats.
 * Writable: the cluster layer averages and overwrites it between steps. */
DDTS_API float *ddts_model_weights_flat(struct ddts_model *m, size_t *n_floats);
/* Total and trainable parameter counts. */
DDTS_API size_t ddts_model_n_params(const struct ddts_model *m);
DDTS_API size_t ddts_model_n_trainable(const struct ddts_model *m);

/* Fresh weights from each layer's configured initializers (kernel_initializer
 * etc., Keras defaults: glorot_uniform kernels, zero biases, BN ones/zeros),
 * drawn from one RNG seeded with `seed`, layer by layer in order. Initializer
 * seeds in the config are ignored so that `seed` decides everything.
 * DDTS_EUNSUPPORTED was already reported at build time for unknown ones. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_model_init_weights(struct ddts_model *m, uint64_t seed, struct ddts_error *err);

/* Per-sample input/output shape, batch excluded; returns the rank and fills
 * shape[0..rank). (28, 28, 1) for a Conv2D MNIST model, (10) for its output.
 * A model with several inputs takes packed samples (ddts_array_hstack): its
 * input shape is (the sum of its inputs' sizes), rank 1. */
DDTS_API int ddts_model_input_shape(const struct ddts_model *m, int64_t shape[DDTS_MAX_RANK]);
DDTS_API int ddts_model_output_shape(const struct ddts_model *m, int64_t shape[DDTS_MAX_RANK]);
/* The model's inputs (1 to DDTS_MAX_INPUTS) in the order of its config's
 * input_layers; input k's per-sample shape (its rank, or -1 when k is out of
 * range) and name (NULL out of range). fit, evaluate and predict take x as
 * the packed samples of all inputs in this order (ddts_array_hstack). */
DDTS_API size_t ddts_model_n_inputs(const struct ddts_model *m);
DDTS_API int ddts_model_input_shape_at(const struct ddts_model *m, size_t k,
                                       int64_t shape[DDTS_MAX_RANK]);
DDTS_API const char *ddts_model_input_name(const struct ddts_model *m, size_t k);
/* DDTS_ESHAPE unless the data gives exactly the model's number of inputs:
 * "the model takes 2 inputs (user, item, in this order); <what> gives 1". */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_model_check_n_inputs(const struct ddts_model *m,
                                                                   size_t n, const char *what,
                                                                   struct ddts_error *err);
/*
 * The Keras version that wrote the model's file ("2.15.0", "3.3.3"; NULL or
 * unparsable: no change) decides what the config alone can only guess (the
 * config reader goes by Keras 3's module keys, which tf.keras 2.13+ .keras
 * files have too): hard_sigmoid's slope (0.2 up to Keras 2, 1/6 in Keras 3)
 * and the batch-norm variance update. ddts_bridge_load calls it.
 */
DDTS_API void ddts_model_set_keras_version(struct ddts_model *m, const char *version);

/*
 * For a model whose config leaves an input dimension of unknown size (None,
 * as variable-length sequence models do): gives it the size of x's matching
 * dimension (x is (samples, ...)) and sizes every layer again. Models
 * without such dimensions are left alone. DDTS_ESHAPE when x's rank does
 * not fit or some layer's weights would not fit the new size (the model is
 * then unchanged). fit, evaluate and predict call it themselves.
 */
DDTS_API enum ddts_status ddts_model_bind_input(struct ddts_model *m, const struct ddts_array *x,
                                                struct ddts_error *err);
/* Elements per sample of the input (all inputs together) and of the output. */
DDTS_API size_t ddts_model_input_size(const struct ddts_model *m);
DDTS_API size_t ddts_model_output_size(const struct ddts_model *m);

struct ddts_compile_options {
    const char *loss;      /* Keras name or alias ("sparse_categorical_crossentropy", "mse");
                              NULL: from training_config_json, else an error */
    const char *optimizer; /* "adam", "sgd", "rmsprop", "adamw", "adagrad", "adadelta",
                              "adamax", "nadam"; NULL: from training_config_json, else "adam" */
    double learning_rate;  /* <= 0: training_config's, else the optimizer's Keras default */
    const char *metrics;   /* comma-separated: "accuracy", "mse", "mae"; NULL: training_config's
                              metrics, else "accuracy" for crossentropy losses; "" for none */
    const char *training_config_json; /* Keras `training_config` attribute; may be NULL */
    int threads;                      /* <= 0: 1 */
};
/* Sets loss, metrics and optimizer (state reset to zero). May be called again.
 * DDTS_EUNSUPPORTED for an unknown loss/optimizer/metric, DDTS_EFORMAT for a bad
 * training_config, DDTS_EINVAL when no loss is given anywhere. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_model_compile(struct ddts_model *m,
                                                            const struct ddts_compile_options *o,
                                                            struct ddts_error *err);
/* After compile: canonical loss and optimizer names ("sparse_categorical_crossentropy",
 * "adam"), the learning rate in use; NULL/0 before compile. */
DDTS_API const char *ddts_model_loss_name(const struct ddts_model *m);
DDTS_API const char *ddts_model_optimizer_name(const struct ddts_model *m);
DDTS_API double ddts_model_learning_rate(const struct ddts_model *m);
/* Changes the learning rate (e.g. a schedule run by the caller). */
DDTS_API void ddts_model_set_learning_rate(struct ddts_model *m, double lr);
/* Changes the thread count (<= 0: 1). */
DDTS_API void ddts_model_set_threads(struct ddts_model *m, int threads);

/* Optimizer state as one flat buffer, for checkpoints: k vectors of
 * ddts_model_n_params floats each, in the flat weight layout (Adam: m then v
 * [then vhat]; SGD with momentum: velocity; RMSprop: v [momentum] [mean g];
 * Adagrad: accumulator; Adadelta: accumulated g^2 then updates^2; Adamax:
 * m then u; Nadam: m, v, then one float, the momentum product). NULL (and 0)
 * for plain SGD or before compile. Writable: import by copying into it; the
 * step counter is ddts_model_iterations. compile resets both. */
DDTS_API float *ddts_model_optimizer_state(struct ddts_model *m, size_t *n_floats);
/* Optimizer steps taken (Keras' `iterations`). */
DDTS_API uint64_t ddts_model_iterations(const struct ddts_model *m);
DDTS_API void ddts_model_set_iterations(struct ddts_model *m, uint64_t iterations);

/*
 * Data: samples selected by index from arrays of any dtype, converted to
 * float32 (and normalized, when asked) per batch. x: (N, ...) whose per-sample element count equals
 * the model's input size (reshaped to it). y: labels (N) or (N, 1) for sparse losses, or (N, ...)
 * with the model's output size.
 */
struct ddts_dataset {
    const struct ddts_array *x, *y;
    const uint32_t *idx; /* sample indices into x and y; NULL: all samples 0..n */
    size_t n;            /* number of samples (of idx, or of x when idx is NULL; 0: all of x) */
    /* Optional per-feature normalizers applied as each batch is gathered:
     * v = (v - offset[j]) * scale[j], exactly as ddts_normalize_rows does, so
     * data can stay in its stored dtype (uint8 images: a quarter of float32's
     * memory) instead of being normalized into a float copy. Each pair is
     * both NULL (none) or both x_count (y_count) long. */
    const float *x_offset, *x_scale;
    const float *y_offset, *y_scale;
    /* With y_offset/y_scale (non-sparse losses): non-zero reports the loss and
     * metrics of fit and evaluate in y's own units, on outputs and targets
     * mapped back by v / scale + offset (what a model whose output undoes the
     * normalization, --order XX's saved model, gives on the raw data), while
     * the gradients stay those of the loss on the normalized values. */
    int figures_in_y_units;
};

#define DDTS_LOGS_MAX 16
struct ddts_logs {
    size_t n;
    const char *names[DDTS_LOGS_MAX]; /* "loss", "accuracy", "val_loss", "val_accuracy" */
    double values[DDTS_LOGS_MAX];
};
/* Value of log `name`; returns 0 and sets *value when found, -1 otherwise. */
DDTS_API int ddts_logs_get(const struct ddts_logs *logs, const char *name, double *value);

struct ddts_fit_callbacks {
    void *userdata;
    /* After each batch: progress (running means over the epoch so far). May
     * modify the model's flat weights (steps:K synchronisation). Non-zero
     * stops fit with DDTS_ECANCELED. May be NULL. */
    int (*on_batch_end)(void *userdata, struct ddts_model *m, int epoch, size_t batch,
                        size_t n_batches, size_t samples_done, const struct ddts_logs *running);
    /* After each epoch with its logs (validation included). May modify the
     * flat weights. Non-zero stops fit with DDTS_ECANCELED. May be NULL. */
    int (*on_epoch_end)(void *userdata, struct ddts_model *m, int epoch,
                        const struct ddts_logs *logs);
    /* After the backward pass of each batch, before the optimizer step:
     * `grads` (n floats, the flat weight layout) hold the gradient of the
     * batch's mean loss over its `batch_samples` samples (regularization is
     * added later, by the step). May overwrite them, e.g. with the average
     * over data-parallel workers. Non-zero stops fit with DDTS_ECANCELED.
     * May be NULL. */
    int (*on_gradients)(void *userdata, struct ddts_model *m, float *grads, size_t n,
                        size_t batch_samples);
    /* During the backward pass of each batch, as the layers finish (last to
     * first): grads[from, n) hold their final values for this batch (what
     * on_gradients will get) and grads[0, from) are still being computed.
     * Called with strictly decreasing `from`, the last time with from 0,
     * then on_gradients is called. Must not write grads. For starting the
     * exchange of the last layers' gradients while the first layers' are
     * computed (MPI buckets). Non-zero stops fit with DDTS_ECANCELED after
     * the backward pass. May be NULL. */
    int (*on_gradients_ready)(void *userdata, struct ddts_model *m, const float *grads, size_t n,
                              size_t from, size_t batch_samples);
    /* After each epoch's training, before its validation pass: may modify
     * the flat weights (an epoch-end weight average that the validation and
     * the best weights are to see). Non-zero stops fit with DDTS_ECANCELED.
     * May be NULL. */
    int (*on_epoch_trained)(void *userdata, struct ddts_model *m, int epoch);
    /* After each epoch's validation pass, before its figures are computed:
     * `sums` (n doubles) are the pass's totals over this worker's
     * `n_samples` validation samples (losses, metric counts, samples, rows:
     * an opaque layout), each additive over disjoint sets of samples. A
     * data-parallel worker that validates a slice of the validation samples
     * replaces each by its sum over every worker's slice: the figures (and
     * the best weights and early stopping that follow from them) are then
     * those of the whole validation set, to float rounding. Called with
     * n_samples 0 when this worker's slice is empty. Non-zero stops fit with
     * DDTS_ECANCELED. May be NULL. */
    int (*on_validation_sums)(void *userdata, struct ddts_model *m, double *sums, size_t n,
                              size_t n_samples);
    /* The same for each epoch's training steps, after the last one and
     * before the epoch's training figures are computed: `sums` are the
     * epoch's running totals over this worker's `n_samples` training samples
     * (the layout of on_validation_sums). Data-parallel workers that train
     * one model replace each by its sum over every worker: the training
     * figures, and the best weights and early stopping that follow from them
     * (monitor loss, accuracy), are then those over every worker's samples,
     * alike on every worker. Non-zero stops fit with DDTS_ECANCELED. May be
     * NULL. */
    int (*on_training_sums)(void *userdata, struct ddts_model *m, double *sums, size_t n,
                            size_t n_samples);
};

struct ddts_fit_options {
    int epochs;        /* last epoch (exclusive), as in Keras: runs initial_epoch..epochs */
    int initial_epoch; /* 0 usually */
    int batch_size;    /* <= 0: 32 */
    int shuffle;       /* shuffle the samples each epoch (seeded by seed and epoch) */
    uint64_t seed;     /* shuffling and dropout */
    const struct ddts_dataset *validation; /* NULL: none */
    const struct ddts_fit_callbacks *callbacks;
    const char *checkpoint_monitor; /* e.g. "val_loss", "val_accuracy", or "auto" (val_accuracy
                                       with an accuracy metric, else val_loss; without
                                       validation accuracy / loss): keep a copy of the best
                                       weights (ddts_model_best_weights); NULL: none */
    int early_stopping_patience;    /* epochs without improvement of the monitor
                                       (checkpoint_monitor, else val_loss or loss); 0: off */
};

struct ddts_history {
    size_t n_epochs;
    size_t n_columns;
    char **columns; /* Keras' names: loss, accuracy, val_loss, val_accuracy */
    int *epochs;    /* epoch number of each row */
    double *values; /* n_epochs x n_columns, row-major */
    int best_epoch; /* epoch of the best monitored value; -1 without checkpoint_monitor */
    int stopped_early;
};

/*
 * Trains: epochs initial_epoch..epochs-1 over `train`, minibatches in order
 * (shuffled per epoch when asked), one optimizer step per batch, the last
 * batch partial. Calling fit again with a later initial_epoch continues with
 * the optimizer state kept. *out (may be NULL) gets the history, caller frees.
 * DDTS_ENUMERIC when the loss becomes NaN or infinite (naming the epoch and
 * batch), DDTS_ESHAPE when data and model disagree, DDTS_ESTATE before compile,
 * DDTS_ECANCELED when a callback asked to stop (the history so far is still
 * returned).
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_model_fit(struct ddts_model *m, const struct ddts_dataset *train,
               const struct ddts_fit_options *o, struct ddts_history **out, struct ddts_error *err);
DDTS_API void ddts_history_destroy(struct ddts_history *h);

/* Best weights kept by fit's checkpoint_monitor (same layout as the flat
 * buffer), or NULL when none; *epoch (may be NULL) gets its epoch. The best
 * value carries over fit calls (fitting epoch by epoch) until the next
 * compile or a different monitor. */
DDTS_API const float *ddts_model_best_weights(const struct ddts_model *m, int *epoch);

/* What fit's checkpoint_monitor keeps (the best weights, their epoch, the
 * monitored value and its name), so that a checkpoint carries it over a
 * restart. ddts_model_best_state: false (and *out cleared, epoch -1) when
 * there is none; out->weights borrows the model's copy.
 * ddts_model_set_best_state (after compile, which clears it): the next fit
 * with the same monitor continues from it. DDTS_ESHAPE when n_weights is not
 * the model's, DDTS_EINVAL without an epoch or a monitor, DDTS_ENOMEM. */
struct ddts_best_state {
    const float *weights;
    size_t n_weights;
    int epoch;        /* 0-based */
    double value;     /* the monitored value at that epoch */
    char monitor[32]; /* "val_loss", "val_accuracy", ... */
};
DDTS_API bool ddts_model_best_state(const struct ddts_model *m, struct ddts_best_state *out);
DDTS_API DDTS_NODISCARD enum ddts_status ddts_model_set_best_state(struct ddts_model *m,
                                                                   const struct ddts_best_state *b,
                                                                   struct ddts_error *err);

/* Loss and metrics over `d` in inference mode (dropout off, BN moving stats).
 * Keras' sample-weighted means over all samples. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_model_evaluate(struct ddts_model *m,
                                                             const struct ddts_dataset *d,
                                                             int batch_size, struct ddts_logs *out,
                                                             struct ddts_error *err);

/* Outputs for every sample of x: float32 (N, out...), caller destroys it. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_model_predict(struct ddts_model *m,
                                                            const struct ddts_array *x,
                                                            int batch_size, struct ddts_array **out,
                                                            struct ddts_error *err);

/* A layer class of the engine's registry (src/nn/layer.h), for listings
 * (`ddts inspect --layers`). Strings are static. */
struct ddts_layer_class {
    const char *name;           /* Keras class name ("Conv2D") */
    const char *const *aliases; /* other accepted spellings, NULL-terminated */
    const char *doc;            /* one line: what it computes */
    int runs;                   /* 1: the engine builds and trains it; 0: known by name (its
                                   files' weights are named) but refused by the engine */
    const char *spec_usage;     /* its `ddts model new --layers` form, or NULL */
};
/* Layer class `i` of the registry, in registry order (families, then their
 * classes). DDTS_ENOTFOUND past the last. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_nn_layer_class(size_t i,
                                                             struct ddts_layer_class *out);

/* The BLAS kernel family OpenBLAS chose for this CPU ("Haswell", "SkylakeX"). */
DDTS_API const char *ddts_nn_blas_core(void);
/*
 * A value for the OPENBLAS_CORETYPE environment variable when OpenBLAS fell
 * back to generic SSE3 kernels on a CPU that has AVX2 or AVX-512 (its CPU
 * table does not know recent models): "SkylakeX" or "Haswell"; NULL when the
 * detected kernels are fine. OpenBLAS reads the variable when it is loaded, so
 * a program sets it and re-executes itself (the CLI does this at start-up).
 * Measured here: sgemm 13 GFLOP/s with the fallback, 70-140 with SkylakeX.
 */
DDTS_API const char *ddts_nn_blas_coretype_hint(void);

/*
 * Environment settings the engine runs best with, for variables not already
 * set: "OPENBLAS_CORETYPE=SkylakeX" when OpenBLAS's detection fell back (see
 * above), "OMP_WAIT_POLICY=passive" (idle OpenMP threads sleep instead of
 * spinning for milliseconds; on a shared 2-core machine this made 2-thread
 * training 6x faster and cost nothing with 1 thread) and, unless either is
 * set, "GOMP_SPINCOUNT=2000" (a short spin before sleeping, ~50-100 us, so that
 * the parallel regions of one training step, microseconds apart, do not pay a
 * wake-up each), and "OPENBLAS_THREAD_TIMEOUT=4" (OpenBLAS's own worker
 * threads, which the engine does not use, sleep at once instead of spinning
 * ~0.1 s after they start: OpenBLAS restarts them after every fork). Both
 * libraries read them when loaded, so a program exports them and
 * re-executes itself once, early in main():
 *
 *   const char *hints[8];
 *   size_t n = ddts_nn_env_hints(hints, 8);
 *   if (n > 0 && getenv("DDTS_REEXEC") == NULL) {
 *       for (size_t i = 0; i < n; i++) putenv((char *)hints[i]);
 *       setenv("DDTS_REEXEC", "1", 1);
 *       execv("/proc/self/exe", argv);   (on failure, just continue)
 *   }
 *
 * Fills out[0..max) with static "NAME=value" strings; returns how many.
 */
DDTS_API size_t ddts_nn_env_hints(const char *out[], size_t max);

#ifdef __cplusplus
}
#endif
#endif
