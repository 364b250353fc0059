/* Internal helpers shared by the data loaders (src/io); not installed. */
#ifndef DDTS_IO_INTERNAL_H
#define DDTS_IO_INTERNAL_H

#include <stdint.h>

#include "ddts/data.h"

/* Reads exactly `n` bytes into `dst`, or fails with a message (truncation is DDTS_EFORMAT). */
typedef enum ddts_status (*ddts__read_fn)(void *ctx, void *dst, size_t n, struct ddts_error *err);

/*
 * Reads a .npy stream of `total_nbytes` bytes (a file's or a zip member's size)
 * through `read`: the header first, then, once the sizes are checked against
 * `total_nbytes`, the data straight into the new array. `name` prefixes messages.
 */
enum ddts_status ddts__npy_read(ddts__read_fn read, void *ctx, uint64_t total_nbytes,
                                const char *name, struct ddts_array **out, struct ddts_error *err);

/* The same into view->data (view: dtype and shape the header must state,
 * data the caller's buffer of view->nbytes, e.g. a slice of a larger array). */
enum ddts_status ddts__npy_read_into(ddts__read_fn read, void *ctx, uint64_t total_nbytes,
                                     const char *name, struct ddts_array *view,
                                     struct ddts_error *err);

/* Locale-independent, correctly rounded number parsing of s[0..n) (spaces
 * around allowed): returns 0 and *out on success, -1 when the text is not a
 * number. *c_locale caches a "C" locale_t for the rare slow path: start with
 * NULL, release with ddts__parse_locale_free. */
int ddts__parse_double(const char *s, size_t n, double *out, void **c_locale);
void ddts__parse_locale_free(void *c_locale);

/* ddts_csv_parse with ddts_data_load_ex's flags (DDTS_LOAD_FINITE). */
enum ddts_status ddts__csv_parse(const void *buf, size_t nbytes, const char *name, unsigned flags,
                                 struct ddts_array **out, struct ddts_error *err);

/* .npz and .xlsx files read from disk through libzip (streamed, no whole-file copy). */
enum ddts_status ddts__npz_load(const char *path, const char *key, struct ddts_array **out,
                                struct ddts_error *err);
enum ddts_status ddts__idx_load(const char *path, struct ddts_array **out, struct ddts_error *err);
enum ddts_status ddts__xlsx_load(const char *path, const char *sheet, unsigned flags,
                                 struct ddts_array **out, struct ddts_error *err);
/* A gzip file inflated whole into *out (at most max_nbytes); idx.c, zlib's home. */
enum ddts_status ddts__gunzip_file(const char *path, size_t max_nbytes, uint8_t **out, size_t *n,
                                   struct ddts_error *err);
/* An npz member holding an object array, unpickled by pickle.c (see pickle.h). */
struct ddts__pickle;
struct ddts__pk_value;
enum ddts_status ddts__npz_load_object(const char *path, const char *key, uint8_t **buf,
                                       struct ddts__pickle **pk, struct ddts__pk_value *root,
                                       struct ddts_error *err);
/* Member names of an npz / sheet names of an xlsx; see ddts_data_keys for *names. */
enum ddts_status ddts__zip_keys(const char *path, int xlsx, char ***names, size_t *n_names,
                                struct ddts_error *err);

/* zip's CRC-32 of data[0..n), continuing `crc` (0 to start) (crc32.c);
 * ddts__crc32_fast() is 1 when the CPU has carry-less multiplication, the
 * fast path (otherwise the computation is bit by bit, slow). */
uint32_t ddts__crc32(uint32_t crc, const void *data, size_t n);
int ddts__crc32_fast(void);

/*
 * Downloads `url` (http or https) to `dest` atomically (download.c, the only
 * user of libcurl): at most `max_nbytes`, checked against `sha256_hex` when
 * not NULL (a mismatch leaves no file). DDTS_EIO for network and HTTP
 * failures (the message names the URL), DDTS_ELIMIT above max_nbytes,
 * DDTS_EFORMAT for a checksum mismatch.
 */
enum ddts_status ddts__download(const char *url, const char *dest, uint64_t max_nbytes,
                                const char *sha256_hex, struct ddts_error *err);

/* A zip archive read through libzip (src/io/zipfile.c, its only user). */
struct ddts__zip;
enum ddts_status ddts__zip_open_file(const char *path, struct ddts__zip **out,
                                     struct ddts_error *err);
enum ddts_status ddts__zip_open_buffer(const void *buf, size_t nbytes, const char *name,
                                       struct ddts__zip **out, struct ddts_error *err);
void ddts__zip_close(struct ddts__zip *z);
size_t ddts__zip_count(const struct ddts__zip *z);
/* Member i's name (borrowed; valid until close). */
const char *ddts__zip_name(const struct ddts__zip *z, size_t i);
/* Index of the member called `name`; DDTS_ENOTFOUND if absent. */
enum ddts_status ddts__zip_find(const struct ddts__zip *z, const char *name, size_t *index,
                                struct ddts_error *err);
/* Opens member i for reading after checking its declared sizes (zip bombs:
 * DDTS_MAX_ZIP_RATIO) and that it is at most `max_nbytes`; *size is its
 * uncompressed size. */
enum ddts_status ddts__zip_member_open(struct ddts__zip *z, size_t i, uint64_t max_nbytes,
                                       uint64_t *size, struct ddts_error *err);
/* Reads up to n bytes of the open member; *got 0 at its end. */
enum ddts_status ddts__zip_member_read(struct ddts__zip *z, void *dst, size_t n, size_t *got,
                                       struct ddts_error *err);
/* The ddts__read_fn over the open member (ctx: the struct ddts__zip). */
enum ddts_status ddts__zip_member_read_exact(void *z, void *dst, size_t n, struct ddts_error *err);
void ddts__zip_member_close(struct ddts__zip *z);

#endif
