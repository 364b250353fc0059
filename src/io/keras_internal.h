/*
 * Internal interface between the Keras file modules: keras_model.c (format
 * detection, ownership, names), keras_config.c (the only user of jansson
 * here), keras_h5.c (the only user of libhdf5) and keras_zip.c (the only
 * user of libzip).
 */
#ifndef DDTS_IO_KERAS_INTERNAL_H
#define DDTS_IO_KERAS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "ddts/keras.h"

/*
 * HDF5 input that did not come from this process is parsed in a child
 * process (keras_h5_isolated.c): libhdf5 has crashed and hung on damaged
 * files. The four functions below run their *_inproc twin (keras_h5.c) in a
 * forked child with limits on CPU time, address space, open files and file
 * writes, every inherited descriptor closed and (Linux x86-64/arm64) a
 * seccomp filter that refuses sockets, exec and new processes; the result comes back in a
 * sealed memory file, the status over a pipe. A crash, a limit or a hang of the child is
 * DDTS_EFORMAT "LABEL: the HDF5 reader crashed (...)/timed out: the file is damaged or hostile".
 */

/* Reads a legacy HDF5 model file at `path` into `m` (already zeroed, format
 * and source_path set). On failure `m` may hold partial results: the caller
 * destroys it. */
enum ddts_status ddts__keras_h5_read_legacy(const char *path, struct ddts_keras_model *m,
                                            struct ddts_error *err);
/* As above from a file image in memory; `label` names it in messages. */
enum ddts_status ddts__keras_h5_read_legacy_image(const void *image, size_t nbytes,
                                                  const char *label, struct ddts_keras_model *m,
                                                  struct ddts_error *err);
/* Reads the weights of a .keras model.weights.h5 image into m->layers (one
 * per top-level entry of `cfg`) and m->optimizer_weights. */
enum ddts_status ddts__keras_h5_read_zip_weights(const void *image, size_t nbytes,
                                                 const char *label,
                                                 const struct ddts_keras_config *cfg,
                                                 struct ddts_keras_model *m,
                                                 struct ddts_error *err);
/* Opens the HDF5 image, writes every weight of m (by h5_path) into it and
 * returns the new image in *out (ddts_malloc'd). */
enum ddts_status ddts__keras_h5_update_image(const void *image, size_t nbytes, const char *label,
                                             const struct ddts_keras_model *m, void **out,
                                             size_t *out_nbytes, struct ddts_error *err);
/*
 * Where the reader puts weight values: a bump allocator over the isolated
 * reader's result file, so that the values land in the result without a
 * copy. Set (ddts__keras_h5_arena) only in that single-threaded child, for
 * one read; NULL everywhere else: weight values are then ddts_malloc'd.
 * Storage from the arena is never freed (the child exits).
 */
struct ddts__keras_h5_arena {
    unsigned char *p;
    size_t n, cap;
    int full; /* an allocation or a write did not fit */
};
extern struct ddts__keras_h5_arena *ddts__keras_h5_arena;
/* Before a fork of the reader: initialises libhdf5 (once, so that no child has to) and
 * returns the blocks on libhdf5's free lists to malloc (H5garbage_collect). */
void ddts__keras_h5_before_fork(void);
/* For tests: the child's base CPU limit in seconds (>= 1; else the default, 10 s). */
void ddts__keras_h5_set_child_cpu(double seconds);
/* For tests: the size of the child's result file in bytes (0: the default, 1 GiB + 8 x the
 * input); a larger result is DDTS_ENOMEM naming the file. */
void ddts__keras_h5_set_result_cap(uint64_t nbytes);
/* For tests: runs fn in the reader's limited child (the same limits, closed descriptors and
 * seccomp filter) and returns its status and message, or the crash/timeout error naming
 * `label`. */
enum ddts_status ddts__keras_h5_isolated_probe(const char *label,
                                               enum ddts_status (*fn)(void *arg,
                                                                      struct ddts_error *err),
                                               void *arg, struct ddts_error *err);
/* Decodes a result of the child (what the parent does once it has exited): the model's
 * description from byte `meta` on, weight values at offsets into all `nbytes`; every length
 * and offset checked (DDTS_EFORMAT naming `label`). For the fuzz target and tests. */
enum ddts_status ddts__keras_h5_decode_result(const void *result, size_t nbytes, size_t meta,
                                              const char *label, struct ddts_keras_model *m,
                                              struct ddts_error *err);
/* The same in this process: for the fuzz targets and the child. */
enum ddts_status ddts__keras_h5_read_legacy_inproc(const char *path, struct ddts_keras_model *m,
                                                   struct ddts_error *err);
enum ddts_status ddts__keras_h5_read_legacy_image_inproc(const void *image, size_t nbytes,
                                                         const char *label,
                                                         struct ddts_keras_model *m,
                                                         struct ddts_error *err);
enum ddts_status ddts__keras_h5_read_zip_weights_inproc(const void *image, size_t nbytes,
                                                        const char *label,
                                                        const struct ddts_keras_config *cfg,
                                                        struct ddts_keras_model *m,
                                                        struct ddts_error *err);
enum ddts_status ddts__keras_h5_update_image_inproc(const void *image, size_t nbytes,
                                                    const char *label,
                                                    const struct ddts_keras_model *m, void **out,
                                                    size_t *out_nbytes, struct ddts_error *err);

/* Reads a .keras zip at `path` into `m`. */
enum ddts_status ddts__keras_zip_read(const char *path, struct ddts_keras_model *m,
                                      struct ddts_error *err);
/* Rewrites the .keras zip m->source_path to `path` with new weights. */
enum ddts_status ddts__keras_zip_write(const struct ddts_keras_model *m, const char *path,
                                       struct ddts_error *err);
/* The string value of top-level `key` of a JSON object, or NULL in *out when
 * absent or not a string. */
enum ddts_status ddts__keras_json_string(const char *json, size_t nbytes, const char *key,
                                         char **out, struct ddts_error *err);

/* Keras 3's naming.to_snake_case(class_name) into a new string (NULL: ENOMEM). */
char *ddts__keras_snake_case(const char *class_name);
/* config.json's compile_config (Keras 3) as a tf.keras 2 training_config
 * JSON text (*out NULL when the model was not compiled). */
enum ddts_status ddts__keras_compile_config(const char *config_json, char **out,
                                            struct ddts_error *err);
/* The short name of weight `index` of a layer of class `cl` (may be NULL)
 * into a new string, following the variable order of Keras 3's layers. */
char *ddts__keras_short_name(const struct ddts_keras_config_layer *cl, size_t index);
/* 1 when every layer of this class has weights (Dense, Conv2D, ...). */
int ddts__keras_class_has_weights(const char *class_name);
/* Where sub-group `sub` of a layer of class `class_name` comes in Keras' weight
 * order (MultiHeadAttention's query_dense, key_dense, ...); larger: after, by name. */
size_t ddts__keras_sub_rank(const char *class_name, const char *sub);
/* Splits an h5 weight name "a/b/kernel:0" into short_name "kernel" and
 * layer_name "b", both new strings. Returns DDTS_ENOMEM or DDTS_OK. */
enum ddts_status ddts__keras_split_weight_name(const char *name, char **short_name,
                                               char **layer_name);
/* Frees the strings and data of `n` weights and the array itself. */
void ddts__keras_weights_free(struct ddts_keras_weight *w, size_t n);

#endif
