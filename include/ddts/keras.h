/*
 * Keras model files as plain data: read and write Keras' legacy HDF5 files
 * (`model.save("m.h5")` of standalone Keras 2.2, tf.keras 2.x and Keras 3)
 * and Keras 3 `.keras` zips. No neural-network code lives here: a model is
 * its configuration JSON (kept as text, exactly as stored) plus, per layer,
 * its weights as float32 arrays in C order. The layouts, and the source of
 * every fact about them, are in docs/file-formats.md ("Keras").
 *
 * Typical use:
 *
 *   struct ddts_keras_model *m;
 *   if (ddts_keras_read("m.h5", &m, &err) != DDTS_OK) ... err.msg ...
 *   struct ddts_keras_layer *d = ddts_keras_layer_find(m, "dense");
 *   ... train: change d->weights[0].data in place (same shape) ...
 *   ddts_keras_write(m, "trained.h5", &err);  // same format, same layout
 *   ddts_keras_destroy(m);
 *
 * Threads: Debian's libhdf5 is the serial build, which is not thread-safe.
 * Call the functions of this header from one thread at a time (the server
 * and client read and write models from their control thread). HDF5's
 * automatic error printing is off while a call runs; the program's own
 * handler (H5Eset_auto2) is back in place when it returns.
 */
#ifndef DDTS_KERAS_H
#define DDTS_KERAS_H

#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "limits.h"

#ifdef __cplusplus
extern "C" {
#endif

enum ddts_keras_format {
    DDTS_KERAS_H5 = 1,  /* legacy HDF5 (`.h5`, `.hdf5`) */
    DDTS_KERAS_ZIP = 2, /* Keras 3 `.keras` zip */
};

struct ddts_keras_weight {
    /* As stored: h5: the entry of weight_names ("dense/kernel:0", Keras 3
     * h5: "dense/kernel"); .keras: the dataset path inside model.weights.h5
     * ("layers/dense/vars/0"). */
    char *name;
    /* "kernel", "bias", "gamma", "moving_mean", ...: h5: the last component
     * of `name` without ":0"; .keras: from the owning layer's class and
     * config (Dense: kernel, bias; ...); "var<i>" for a class ddts does not
     * know. */
    char *short_name;
    /* The (possibly nested) layer that owns the weight: h5: the component
     * of `name` before the last '/' ("dense" for "dense/kernel:0"; "" for a
     * bare name); .keras: the owning layer's name from config.json (or the
     * group's name for a sub-object that config.json does not list). */
    char *layer_name;
    /* Full path of the dataset in the HDF5 file ("/model_weights/dense/
     * dense/kernel:0"; .keras: "/layers/dense/vars/0" in model.weights.h5). */
    char *h5_path;
    int rank;
    int64_t shape[DDTS_MAX_RANK];
    size_t count;     /* product of shape (1 for rank 0) */
    float *data;      /* float32, C order, `count` values; converted from the stored dtype */
    int stored_dtype; /* enum ddts_dtype of the stored dataset (DDTS_F32 usually) */
};

struct ddts_keras_layer {
    char *name;
    /* From the model config ("Dense", "Conv2D", "Sequential", ...); NULL
     * when the config does not list a layer of this name. */
    char *class_name;
    size_t n_weights;
    struct ddts_keras_weight *weights; /* in weight_names order (h5) / vars order (.keras) */
};

struct ddts_keras_model {
    enum ddts_keras_format format;
    char *source_path;   /* the file read; NULL for a model built in memory */
    char *keras_version; /* e.g. "2.15.0", "3.3.3"; NULL when absent */
    char *backend;       /* e.g. "tensorflow"; NULL when absent */
    char *model_config;  /* JSON text, exactly as stored (.keras: config.json) */
    /* JSON text or NULL (.keras: the compile_config stays in config.json). */
    char *training_config;
    char *metadata_json; /* .keras: metadata.json as stored; NULL for h5 */
    /* Weighted and weightless layers, in layer_names order (h5) / config
     * order (.keras), nested models as one layer holding all their weights. */
    size_t n_layers;
    struct ddts_keras_layer *layers;
    /* Optimizer state: h5 group optimizer_weights / .keras optimizer/vars. */
    int has_optimizer_weights;
    size_t n_optimizer_weights;
    /* Read as stored, written back by ddts_keras_write. */
    struct ddts_keras_weight *optimizer_weights;
};

/*
 * Reads a Keras model file; the format is detected from the first bytes
 * (HDF5 signature or zip), not from the name. On success *out is a new
 * model, to be released with ddts_keras_destroy.
 * Returns DDTS_EIO (cannot open), DDTS_EFORMAT (not a Keras file, a missing
 * group or attribute, a bad string, a weight whose shape or name does not
 * fit, a layer of a weighted class (Dense, Conv2D, ...) without weights;
 * the message names the file and the object path), DDTS_ELIMIT (a
 * limit of limits.h: huge dimensions, too many layers or weights, a huge
 * attribute), DDTS_EUNSUPPORTED (a dataset dtype that is not numeric),
 * DDTS_ENOMEM.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_keras_read(const char *path, struct ddts_keras_model **out, struct ddts_error *err);

/* Releases everything the model owns; accepts NULL. */
DDTS_API void ddts_keras_destroy(struct ddts_keras_model *m);

/*
 * Writes m to `path` in the format of its source (m->format, reading
 * m->source_path again): the same attributes, string types, groups, dataset
 * names and dtypes, the configuration unchanged; only the weight values are
 * replaced by m->layers[*].weights[*].data (and
 * m->optimizer_weights[*].data). The one exception is a model whose layer
 * list a caller changed: then the new model_config and layer_names are
 * written too, in their stored string kinds. Values are converted to the stored
 * dtype; a non-float32 dataset whose values did not change is left untouched, so an unchanged model
 * round-trips bit-exactly. Atomic: written under a temporary name in the same folder, then renamed.
 * `path` may equal m->source_path. Returns DDTS_EINVAL (no source_path: use ddts_keras_write_new),
 * DDTS_ESHAPE (a weight whose shape no longer matches the file), DDTS_EIO, DDTS_EFORMAT (the source
 * changed since it was read), DDTS_ENOMEM.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_keras_write(const struct ddts_keras_model *m,
                                                          const char *path, struct ddts_error *err);

/*
 * Writes a NEW tf.keras-2.x-style .h5 file (readable by tf.keras and Keras 3
 * load_model) from m->model_config, m->training_config (may be NULL),
 * m->keras_version (NULL: "2.15.0"), m->backend (NULL: "tensorflow") and
 * m->layers: root attributes as variable-length strings as tf.keras 2.15
 * writes them with h5py 3 (keras_version and backend UTF-8 from a str,
 * model_config and training_config ASCII from bytes); group model_weights with attributes
 * layer_names (every layer of m: variable-length ASCII strings as h5py 3 writes a list of bytes,
 * split into fixed-length chunks above 64512 bytes as tf.keras does), backend, keras_version; a
 * group per layer with attribute weight_names (an empty float64 array for a weightless layer, as
 * tf.keras writes it) and float32 datasets at model_weights/<layer>/<weight name>, e.g.
 * model_weights/dense/dense/kernel:0. A weight with name NULL is named "<layer>/<short_name>:0". A
 * model read from a .keras file is converted: each layer's weights in the legacy order (a nested
 * model's trainable weights first, then moving statistics and Normalization values), named
 * "<layer_name>/<short_name>" (Keras 3) or with ":0" (Keras 2). Optimizer weights are not written.
 * Atomic (temporary name + rename). Returns DDTS_EINVAL (no model_config, a layer or weight without
 * a name, duplicate names), DDTS_EIO, DDTS_ENOMEM.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_keras_write_new(const struct ddts_keras_model *m, const char *path, struct ddts_error *err);

/* The layer named `name`, or NULL. */
DDTS_API struct ddts_keras_layer *ddts_keras_layer_find(const struct ddts_keras_model *m,
                                                        const char *name);

/* The weight of `layer` whose short_name is `short_name` ("kernel"), or NULL. */
DDTS_API struct ddts_keras_weight *ddts_keras_weight_find(const struct ddts_keras_layer *layer,
                                                          const char *short_name);

/* Total number of weight values (parameters) of all layers. */
DDTS_API size_t ddts_keras_param_count(const struct ddts_keras_model *m);

/*
 * The layers listed by a model configuration (config.json of a .keras file
 * or the model_config attribute of an h5 file): a flat list in config
 * order, nested models' layers after their model entry with depth + 1.
 * Understands Sequential configs as a bare list (Keras <= 2.2.2) or a dict
 * with "layers", Functional/Model configs, and the Keras 3 wrapper
 * {"module", "class_name", "config", ...}.
 */
struct ddts_keras_config_layer {
    char *name;
    char *class_name;
    int depth;    /* 0 for the model's own layers */
    int parent;   /* index of the enclosing nested model's entry, or -1 */
    int use_bias; /* "use_bias" of the layer config; 1 when absent */
    int center;   /* BatchNormalization "center"; 1 when absent */
    int scale;    /* BatchNormalization "scale" (1 when absent); Attention and
                     AdditiveAttention "use_scale" (absent: 0 and 1) */
};
struct ddts_keras_config {
    char *model_class; /* "Sequential", "Functional", "Model", ... */
    char *model_name;  /* NULL when absent */
    size_t n_layers;
    struct ddts_keras_config_layer *layers;
};

/*
 * Parses `json` (`nbytes` bytes, need not be NUL-terminated) into a layer
 * list. Returns DDTS_EFORMAT (not JSON, or not a model config; the message
 * names the JSON path at fault), DDTS_ELIMIT (DDTS_MAX_CONFIG_BYTES,
 * DDTS_MAX_LAYERS, DDTS_MAX_KERAS_NESTING), DDTS_ENOMEM.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_keras_config_parse(const char *json, size_t nbytes,
                                                                 struct ddts_keras_config **out,
                                                                 struct ddts_error *err);
DDTS_API void ddts_keras_config_destroy(struct ddts_keras_config *c);

/*
 * A new model from a compact spec, for `ddts model new` (no TensorFlow).
 * The spec lists layers separated by commas, each kind:arg:arg...:
 *
 *   dense:UNITS[:ACTIVATION]            Dense (glorot_uniform kernel, zero bias)
 *   conv2d:FILTERS:K[xK2][:ACTIVATION][:same|valid]   Conv2D, strides 1
 *   maxpool2d:P | avgpool2d:P           MaxPooling2D / AveragePooling2D, P x P
 *   globalavgpool2d                     GlobalAveragePooling2D
 *   flatten | dropout:RATE | batchnorm | activation:NAME | reshape:D1xD2x...
 *
 * e.g. "conv2d:32:3:relu,maxpool2d:2,flatten,dense:128:relu,dropout:0.2,dense:10:softmax".
 * The result is a model (format DDTS_KERAS_H5, no source_path) whose
 * model_config is a tf.keras 2.15 Sequential configuration (InputLayer with
 * batch_input_shape, layers named as Keras names them: dense, dense_1, ...),
 * whose training_config compiles `loss` with `optimizer` (Keras defaults),
 * and whose weights are initialised as Keras does, from `seed`. Write it
 * with ddts_keras_write_new. Documented in docs/file-formats.md.
 */
struct ddts_keras_spec {
    const char *layers;         /* the compact layer list */
    int input_rank;             /* 1 ..= DDTS_MAX_RANK - 1 */
    const int64_t *input_shape; /* one sample's shape, e.g. {28, 28, 1} */
    const char *loss;           /* Keras loss name; NULL: no training_config */
    const char *optimizer;      /* adam, sgd, rmsprop, adagrad, adamax, nadam; NULL: adam */
    double learning_rate;       /* <= 0: the optimizer's Keras default */
    const char *metrics;        /* Keras metric names, comma-separated ("accuracy,mae"), or NULL */
    uint64_t seed;              /* weight initialisation */
};
/* Returns DDTS_EINVAL naming the layer (by position and text) or the
 * setting at fault, DDTS_ESHAPE when a layer does not fit its input
 * (a kernel larger than the image, a reshape of the wrong size), DDTS_ELIMIT
 * (DDTS_MAX_LAYERS, DDTS_MAX_KERAS_PARAMS), DDTS_ENOMEM. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_keras_spec_build(const struct ddts_keras_spec *spec,
                                                               struct ddts_keras_model **out,
                                                               struct ddts_error *err);

/*
 * The normalizer of a job travels with the model as a Keras Normalization
 * layer: one implementation, ddts_surgery_write_normalized
 * (include/ddts/trainer.h, src/train/surgery.c), which writes the layer's
 * adapted weights (mean, variance, and count for tf.keras 2.x).
 */

/*
 * The compiled loss and optimizer of a model, as plain data: from
 * training_config (h5: {"loss", "optimizer_config": {"class_name",
 * "config"}}) or config.json's compile_config (.keras: {"loss",
 * "optimizer": {"class_name", "config"}}).
 */
struct ddts_keras_training {
    /* Keras' lower-case name: "adam", "sgd", "rmsprop", ... ("Custom>Adam"
     * of some tf.keras versions gives "adam"); NULL when not compiled. */
    char *optimizer;
    double
        learning_rate; /* "learning_rate", or "lr" of Keras <= 2.2; NaN if absent or a schedule */
    char *optimizer_config_json; /* the optimizer's "config" object as JSON text, or NULL */
    /* A string loss as stored ("mse", "categorical_crossentropy"), or a loss
     * object's class in snake case ("CategoricalCrossentropy" ->
     * "categorical_crossentropy"); NULL when absent or several losses. */
    char *loss;
};
/* Fills *out (zeroed first). Returns DDTS_OK also for a model that was not
 * compiled (all NULL), DDTS_EFORMAT when the JSON does not parse, DDTS_ENOMEM. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_keras_training_info(const struct ddts_keras_model *m,
                                                                  struct ddts_keras_training *out,
                                                                  struct ddts_error *err);
DDTS_API void ddts_keras_training_deinit(struct ddts_keras_training *t);

#ifdef __cplusplus
}
#endif
#endif
