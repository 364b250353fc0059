/*
 * ddts data: loaders for every data file ddts accepts, Keras built-in
 * datasets, per-feature statistics and normalizers, and splits.
 *
 * A short tour:
 *
 *   struct ddts_array *x = NULL;
 *   struct ddts_error err;
 *   if (ddts_data_load("train.npz", "x_train", &x, &err) != DDTS_OK)
 *       ... err.msg names the file and what is wrong ...
 *
 *   Loaders return the array in its stored dtype (uint8 images stay uint8);
 *   conversion to float32 is late (ddts_array_to_f32, ddts_array_convert).
 *   Shapes are the file's: an (N, 28, 28) idx file gives rank 3.
 *
 *   Statistics are computed per shard (ddts_stats_update), merged exactly
 *   (ddts_stats_merge) and turned into one normalizer for the whole job
 *   (ddts_normalizer_from_stats), expressed as a Keras Normalization layer's
 *   (mean, variance).
 *
 * Formats (chosen by file name, case-insensitive):
 *   .npy            numpy arrays: every numeric dtype and bool, both endians,
 *                   C and Fortran order, format versions 1.0 to 3.0.
 *   .npz            zip of .npy members, stored or deflated, zip64.
 *   .csv            RFC 4180; delimiter (, ; tab |) and header row detected;
 *                   CRLF; UTF-8 BOM; numbers parsed independently of the
 *                   locale. Result: float64, shape (rows, columns).
 *   .xlsx           first sheet or one named; shared and inline strings,
 *                   numbers, booleans, cached formula values, sparse cells
 *                   (empty is an error), header row. Result: float64.
 *   .idx .idx.gz    the MNIST family, also named "*-idx3-ubyte[.gz]".
 *
 * Every loader refuses hostile input (truncated files, sizes that lie, zip
 * bombs, absurd shapes) with DDTS_EFORMAT or DDTS_ELIMIT before any large
 * allocation. Functions here are reentrant and keep no global state.
 */
#ifndef DDTS_DATA_H
#define DDTS_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "array.h"
#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Loading                                                                  */
/* ------------------------------------------------------------------------ */

enum ddts_data_format {
    DDTS_FORMAT_UNKNOWN = 0,
    DDTS_FORMAT_NPY,
    DDTS_FORMAT_NPZ,
    DDTS_FORMAT_CSV,
    DDTS_FORMAT_XLSX,
    DDTS_FORMAT_IDX, /* plain or gzip-compressed (detected from the bytes) */
};

/* The format a file name implies (".npy", ".idx.gz", "train-images-idx3-ubyte.gz", ...);
 * DDTS_FORMAT_UNKNOWN for anything else. */
DDTS_API enum ddts_data_format ddts_data_format_of(const char *path);
/* "npy", "npz", "csv", "xlsx", "idx" or "unknown". */
DDTS_API const char *ddts_data_format_name(enum ddts_data_format format);

/*
 * Loads one file, its format chosen by extension. `key` is the npz array
 * name or the xlsx sheet name; NULL picks the default (npz: the only array,
 * else DDTS_ENOTFOUND with a message listing the names; xlsx: the first
 * sheet). For other formats a non-NULL key is DDTS_EINVAL.
 * On success *out is a new array (caller destroys); on failure NULL.
 * Returns DDTS_OK, DDTS_EIO, DDTS_EFORMAT, DDTS_ELIMIT, DDTS_EUNSUPPORTED,
 * DDTS_ENOTFOUND, DDTS_EINVAL or DDTS_ENOMEM; messages start with the path.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_data_load(const char *path, const char *key, struct ddts_array **out, struct ddts_error *err);

/* Flags of ddts_data_load_ex. */
enum ddts_load_flags {
    /*
     * A .npy file whose data needs no conversion (C order, native endian,
     * data 64-byte aligned in the file, as numpy writes it) is mapped
     * instead of read: loading costs no copy and pages come in as they are
     * touched. The mapping is private (copy on write): writing into the
     * array never changes the file. The caller promises that nobody
     * truncates the file while the array lives (reading a page past the
     * new end would raise SIGBUS). Other files load as without the flag.
     */
    DDTS_LOAD_MMAP = 1u << 0,
    /*
     * Training data: NaN and infinite values (CSV "nan", "inf", an overflowing
     * "1e999"; float arrays of npy, npz and idx files) are DDTS_EFORMAT,
     * naming the file, the row and the column (CSV, xlsx) or the element
     * (x[3, 2] for arrays). Empty cells are always errors.
     */
    DDTS_LOAD_FINITE = 1u << 1,
};

/* ddts_data_load with flags (enum ddts_load_flags, or 0). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_data_load_ex(const char *path, const char *key,
                                                           unsigned flags, struct ddts_array **out,
                                                           struct ddts_error *err);

/*
 * Parses a file already in memory (what the fuzz targets call). `name` is
 * used in messages only; `format` must not be UNKNOWN. Same statuses as
 * ddts_data_load. The buffer is borrowed.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_data_parse(const void *buf, size_t nbytes, enum ddts_data_format format, const char *name,
                const char *key, struct ddts_array **out, struct ddts_error *err);

/*
 * The names inside a container file: npz arrays (without ".npy") or xlsx
 * sheets, in file order; other formats give one name, "" (the whole file).
 * *names is one allocation (an array of n pointers followed by the strings):
 * release it with ddts_free.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_data_keys(const char *path, char ***names,
                                                        size_t *n_names, struct ddts_error *err);

/*
 * All data files of a folder (names starting with '.' and files of unknown
 * formats skipped; sub-folders skipped), in strcmp order of their names,
 * concatenated along axis 0. Every file's sample shape (shape[1:]) must
 * agree (DDTS_ESHAPE naming both files and shapes); dtypes are promoted as
 * numpy would (ddts_dtype_promote). An empty folder is DDTS_ENOTFOUND.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_data_load_dir(const char *dir, struct ddts_array **out, struct ddts_error *err);

/*
 * dir/X and dir/Y loaded with ddts_data_load_dir; their sample counts must
 * agree (DDTS_ESHAPE naming both counts and both folders). On failure both
 * outputs are NULL. Data for a model with several inputs has one folder per
 * input in the model's input order, X/ (the first), X2/, X3/, ... (up to
 * DDTS_MAX_INPUTS, the first missing one ends the list); each holds the same
 * samples row by row, and *x gets them packed side by side
 * (ddts_array_hstack), which is what the engine takes.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_data_load_xy(const char *dir, struct ddts_array **x,
                                                           struct ddts_array **y,
                                                           struct ddts_error *err);

/* How many input folders dir holds: 1 for X/ alone, 2 for X/ and X2/, ...;
 * 0 without X/. */
DDTS_API size_t ddts_data_n_inputs(const char *dir);

/* ddts_data_load_dir with an npz array name (`key`, applied to the folder's
 * .npz files; NULL: each one's only array) and ddts_data_load_ex flags. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_data_load_dir_ex(const char *dir, const char *key,
                                                               unsigned flags,
                                                               struct ddts_array **out,
                                                               struct ddts_error *err);

/* How ddts_data_load_xy_ex reads dir/X and dir/Y. */
struct ddts_xy_options {
    /* The array taken from each .npz file of X/ (Y/); NULL: its only array,
     * else one named "x" or "x_train" ("y", "y_train"), else DDTS_EINVAL
     * listing the names and the flag that chooses (--x-key, --y-key). */
    const char *x_key, *y_key;
    unsigned flags; /* enum ddts_load_flags: DDTS_LOAD_FINITE for training data */
    bool no_y;      /* X/ only (--order XX): *y stays NULL and Y/ need not exist */
};

/* ddts_data_load_xy with options (NULL: the defaults above). */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_data_load_xy_ex(const char *dir, const struct ddts_xy_options *opts, struct ddts_array **x,
                     struct ddts_array **y, struct ddts_error *err);

/* ------------------------------------------------------------------------ */
/* Per-format entry points (in memory; used by ddts_data_parse and fuzzing) */
/* ------------------------------------------------------------------------ */

/* What a .npy header says. */
struct ddts_npy_header {
    int version_major; /* 1, 2 or 3 */
    enum ddts_dtype dtype;
    bool big_endian;    /* data bytes are big endian ('>') */
    bool fortran_order; /* data is column major */
    int rank;
    int64_t shape[DDTS_MAX_ARRAY_RANK];
    size_t data_offset; /* bytes from the start of the file to the data */
    size_t data_nbytes; /* product of the shape times the element size */
};

/* Parses the magic, version and header dict of a .npy file held in `buf`
 * (at least the header bytes; the data may be absent). DDTS_EFORMAT for a
 * malformed header, DDTS_EUNSUPPORTED for a valid but unsupported dtype
 * (complex, structured, object, strings), DDTS_ELIMIT for rank or size
 * limits. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_npy_parse_header(const void *buf, size_t nbytes,
                                                               struct ddts_npy_header *hdr,
                                                               struct ddts_error *err);
/* A whole .npy file in memory to a native-endian C-ordered array. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_npy_parse(const void *buf, size_t nbytes, struct ddts_array **out, struct ddts_error *err);
/* Writes `a` as a version 1.0 .npy file (native little endian, C order), atomically. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_npy_write(const char *path, const struct ddts_array *a, struct ddts_error *err);
/* idx (MNIST) bytes, plain or gzip-compressed, to an array (uint8, int8,
 * int16, int32, float32 or float64 as the magic says). */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_idx_parse(const void *buf, size_t nbytes, struct ddts_array **out, struct ddts_error *err);
/* CSV bytes to a float64 (rows, columns) array; `name` appears in messages
 * ("data.csv: row 3, column 2: 'abc' is not a number"); rows and columns
 * count from 1 as a spreadsheet shows them, the header row included. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_csv_parse(const void *buf, size_t nbytes,
                                                        const char *name, struct ddts_array **out,
                                                        struct ddts_error *err);

/* A zip (.npz) in memory: the member `key` (".npy" optional; NULL: the only
 * member). Members larger than their declared size or compressed beyond
 * DDTS_MAX_ZIP_RATIO are refused. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_npz_parse(const void *buf, size_t nbytes,
                                                        const char *name, const char *key,
                                                        struct ddts_array **out,
                                                        struct ddts_error *err);
/* An .xlsx workbook in memory: sheet `sheet` (NULL: the first) to float64
 * (rows, columns); a first row holding any text is taken as a header. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_xlsx_parse(const void *buf, size_t nbytes,
                                                         const char *name, const char *sheet,
                                                         struct ddts_array **out,
                                                         struct ddts_error *err);

/* ------------------------------------------------------------------------ */
/* Arrays                                                                   */
/* ------------------------------------------------------------------------ */

/* The dtype both a and b convert to without loss, as numpy's promote_types
 * (int64 with uint64 gives float64). */
DDTS_API enum ddts_dtype ddts_dtype_promote(enum ddts_dtype a, enum ddts_dtype b);

/* A new array of dtype `to` with a's shape and values (C casts: floats to
 * integers truncate toward zero, out of range saturates; to bool: != 0). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_array_convert(const struct ddts_array *a,
                                                            enum ddts_dtype to,
                                                            struct ddts_array **out,
                                                            struct ddts_error *err);
/* The same into dst, a buffer of ddts_array_count(a) elements of `to`. */
DDTS_API void ddts_array_convert_into(const struct ddts_array *a, enum ddts_dtype to, void *dst);

/* Samples idx[0..n) of `a` (axis 0) gathered into a new array of shape
 * (n, a.shape[1:]). An index out of range is DDTS_EINVAL. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_array_take(const struct ddts_array *a,
                                                         const uint32_t *idx, size_t n,
                                                         struct ddts_array **out,
                                                         struct ddts_error *err);

/* Concatenates `parts` along axis 0 into a new array of their promoted
 * dtype; sample shapes must agree (DDTS_ESHAPE). Rank-0 parts are refused. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_array_concat(const struct ddts_array *const *parts,
                                                           size_t n_parts, struct ddts_array **out,
                                                           struct ddts_error *err);

/* The samples of `parts` side by side: (N, a...) and (N, b...) give
 * (N, size(a...) + size(b...)) of their promoted dtype, each sample the
 * flattened samples of the parts in order. This is how data for a model with
 * several inputs travels (one array, so splits and shares stay row-aligned):
 * the engine hands each input its part (ddts_model_n_inputs). The sample
 * counts must agree (DDTS_ESHAPE); rank-0 parts are refused. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_array_hstack(const struct ddts_array *const *parts,
                                                           size_t n_parts, struct ddts_array **out,
                                                           struct ddts_error *err);

/*
 * Reshapes `a` in place so that each sample has `sample_shape` (rank
 * `sample_rank`, batch dimension excluded), when the element counts per
 * sample agree: (N, 28, 28) to (N, 28, 28, 1) or (N, 784). Otherwise
 * DDTS_ESHAPE with a message naming both shapes. `what` names the data in
 * the message ("X"). Sets *changed when the shape changed (may be NULL).
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_array_fit_samples(struct ddts_array *a, int sample_rank, const int64_t *sample_shape,
                       const char *what, bool *changed, struct ddts_error *err);

/* ------------------------------------------------------------------------ */
/* Keras built-in datasets                                                  */
/* ------------------------------------------------------------------------ */

/*
 * Loads a Keras built-in dataset as keras.datasets.NAME.load_data() would:
 *   mnist, fashion_mnist  x uint8 (N, 28, 28), y uint8 (N,)
 *   cifar10               x uint8 (N, 32, 32, 3), y uint8 (N, 1)
 *   cifar100              x uint8 (N, 32, 32, 3), y int64 (N, 1) (label_mode fine or coarse)
 *   imdb, reuters         x int32 (N, L): word indices as Keras maps them
 *                         (start 1, OOV 2, index_from 3, num_words, skip_top,
 *                         maxlen; shuffled with Keras' RandomState(113)),
 *                         padded like pad_sequences (pre, value 0) to
 *                         maxlen or the longest sequence; y int64 (N,)
 *   boston_housing        x float64 (404, 13), y float64 (404,) (Keras' split)
 * Looked up, in order, in $KERAS_HOME/datasets, ~/.keras/datasets,
 * /tmp/.keras/datasets (Keras' own files: mnist.npz, imdb.npz, ...;
 * fashion-mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz; the CIFAR
 * batch folders or their .tar.gz) and, for Fashion-MNIST,
 * /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist). When
 * absent, the files are downloaded from Keras' address into the first cache
 * folder (checked against Keras' SHA-256 where Keras gives one), unless the
 * environment sets DDTS_OFFLINE=1; DDTS_KERAS_ORIGIN and
 * DDTS_SYSTEM_DATASETS replace the address and /usr/share/datasets. The
 * pickles inside imdb/reuters/CIFAR files are read by a restricted
 * unpickler (numpy arrays, lists, dicts, numbers and strings only). Any of
 * the four outputs may be NULL when not wanted. Missing files:
 * DDTS_ENOTFOUND naming every place searched and why the download failed.
 * Downloads block the calling thread.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_keras_dataset_load(const char *name, struct ddts_array **x_train, struct ddts_array **y_train,
                        struct ddts_array **x_test, struct ddts_array **y_test,
                        struct ddts_error *err);

/* Keras load_data options (zero: Keras' defaults). */
struct ddts_keras_dataset_options {
    int num_words;          /* imdb, reuters: keep words below num_words; 0 = all */
    int skip_top;           /* imdb, reuters: words below skip_top become OOV */
    int maxlen;             /* imdb, reuters: drop sequences of maxlen words or more (with
                               the start char), pad to maxlen; 0 = no limit, the longest */
    const char *label_mode; /* cifar100: "fine" (NULL) or "coarse" */
};

/* ddts_keras_dataset_load with options (NULL: the defaults). */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_keras_dataset_load_ex(const char *name, const struct ddts_keras_dataset_options *opt,
                           struct ddts_array **x_train, struct ddts_array **y_train,
                           struct ddts_array **x_test, struct ddts_array **y_test,
                           struct ddts_error *err);
/* True for the dataset names ddts_keras_dataset_load supports. */
DDTS_API bool ddts_keras_dataset_supported(const char *name);

/* ------------------------------------------------------------------------ */
/* Statistics and normalizers                                               */
/* ------------------------------------------------------------------------ */

/* Per-feature sufficient statistics over samples (rows). */
struct ddts_stats;

/* One feature's figures. variance = m2 / count (population, as Keras'
 * Normalization.adapt and sklearn's StandardScaler). */
struct ddts_feature_stats {
    uint64_t count;
    double min, max, absmax, mean, m2;
};

DDTS_API DDTS_NODISCARD enum ddts_status
ddts_stats_create(size_t n_features, struct ddts_stats **out, struct ddts_error *err);
DDTS_API void ddts_stats_destroy(struct ddts_stats *stats);
DDTS_API size_t ddts_stats_n_features(const struct ddts_stats *stats);
DDTS_API uint64_t ddts_stats_count(const struct ddts_stats *stats);
/* Feature j's figures (j < n_features). */
DDTS_API void ddts_stats_feature(const struct ddts_stats *stats, size_t j,
                                 struct ddts_feature_stats *out);

/*
 * Adds samples of `x` (shape (N, ...), elements per sample must equal
 * n_features, else DDTS_ESHAPE): rows idx[0..n), or rows [0, n) when idx is
 * NULL. NaN values are DDTS_ENUMERIC naming the row and feature. Uses
 * Welford's update per row, in row order (deterministic).
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_stats_update(struct ddts_stats *stats,
                                                           const struct ddts_array *x,
                                                           const uint32_t *idx, size_t n,
                                                           struct ddts_error *err);
/* dst += src (Chan et al.'s pairwise formula; count, min, max and max|x|
 * exact). Feature counts must agree (DDTS_ESHAPE). */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_stats_merge(struct ddts_stats *dst, const struct ddts_stats *src, struct ddts_error *err);

/* Serialized size: 24 + 40 * n_features bytes. */
DDTS_API size_t ddts_stats_encoded_size(const struct ddts_stats *stats);
/* Little-endian encoding: "DSTA" magic, u32 version 1, u64 n_features,
 * u64 count, then per feature f64 min, max, absmax, mean, m2 (IEEE bits).
 * `buf` holds at least ddts_stats_encoded_size bytes (DDTS_EINVAL if not). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_stats_encode(const struct ddts_stats *stats,
                                                           uint8_t *buf, size_t buf_nbytes,
                                                           struct ddts_error *err);
/* The inverse; every length is checked (DDTS_EFORMAT). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_stats_decode(const uint8_t *buf, size_t nbytes,
                                                           struct ddts_stats **out,
                                                           struct ddts_error *err);

enum ddts_normalizer {
    DDTS_NORM_NONE = 0,   /* x */
    DDTS_NORM_SIMPLE = 1, /* x / max|x| */
    DDTS_NORM_MINMAX = 2, /* (x - min) / (max - min) */
    DDTS_NORM_ZSCORE = 3, /* (x - mean) / std (population) */
};
/* Parses "none", "simple", "minmax", "zscore" (any case) or the seed's "0"-"3". */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_normalizer_parse(const char *s, enum ddts_normalizer *out, struct ddts_error *err);
DDTS_API const char *ddts_normalizer_name(enum ddts_normalizer kind);

/*
 * The normalizer per feature as x' = (x - offset) * scale (offset_out and
 * scale_out, n_features floats each; either may be NULL) and as a Keras
 * Normalization layer y = (x - mean) / sqrt(variance) (mean_out and
 * variance_out, may be NULL): mean = offset, variance = 1 / scale^2.
 * A constant feature (max|x| = 0, max = min, or variance 0) gets scale 1,
 * never a division by zero. An empty stats (count 0) is DDTS_EINVAL unless
 * kind is NONE.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_normalizer_from_stats(enum ddts_normalizer kind, const struct ddts_stats *stats,
                           float *mean_out, float *variance_out, struct ddts_error *err);
DDTS_API DDTS_NODISCARD enum ddts_status ddts_normalizer_affine(enum ddts_normalizer kind,
                                                                const struct ddts_stats *stats,
                                                                float *offset_out, float *scale_out,
                                                                struct ddts_error *err);

/*
 * Converts rows [first, first + n_rows) of `x` (shape (N, ...), F = elements
 * per sample) to float32 and normalizes them: out[r * F + j] =
 * (x - offset[j]) * scale[j] (offset and scale from ddts_normalizer_affine;
 * both NULL: conversion only). `out` holds n_rows * F floats. Rows out of
 * range: DDTS_EINVAL.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_normalize_rows(const struct ddts_array *x, size_t first, size_t n_rows, const float *offset,
                    const float *scale, float *out, struct ddts_error *err);

/* ------------------------------------------------------------------------ */
/* Splits                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Deals n sample indices among n_clients shards, shuffled with `seed`
 * (struct ddts_rng), sizes differing by at most one (the first n % n_clients
 * shards get the extra sample). With `labels` (shape (n,) integer class ids,
 * or (n, C) one-hot rows: argmax), each class is dealt round-robin so that
 * every shard holds its share of every class. Outputs: *idx, one allocation
 * of n indices (ddts_free), shard c at offset counts[0] + ... + counts[c-1]
 * and each shard's indices in shuffled order; counts[n_clients] (caller's).
 * n_clients 0 or > n, or labels of another length: DDTS_EINVAL.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_split_shards(size_t n, size_t n_clients, uint64_t seed, const struct ddts_array *labels,
                  uint32_t **idx, size_t *counts, struct ddts_error *err);

/*
 * Fold `fold` (0-based) of a shuffled k-fold split with sklearn's
 * KFold(n_splits=k, shuffle=True) semantics: indices shuffled with `seed`,
 * folds consecutive slices of the permutation, the first n % k folds one
 * larger. *val: the fold's indices in permuted order; *train: every other
 * index in ascending order. Both are new allocations (ddts_free).
 * k < 2, k > n or fold >= k: DDTS_EINVAL.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_kfold(size_t n, size_t k, uint64_t seed, size_t fold,
                                                    uint32_t **train, size_t *n_train,
                                                    uint32_t **val, size_t *n_val,
                                                    struct ddts_error *err);

/*
 * Keras' validation_split: samples [0, n_train) train and [n_train, n)
 * validate, with n_train = floor(n * (1 - fraction)), taken before any
 * shuffling. fraction must be in [0, 1) (DDTS_EINVAL); a split that leaves
 * no training sample is DDTS_EINVAL.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_validation_split(size_t n, double fraction,
                                                               size_t *n_train, size_t *n_val,
                                                               struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
