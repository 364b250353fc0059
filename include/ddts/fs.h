/*
 * Files written safely: to a temporary name in the same folder, flushed,
 * then renamed over the target, so that a crash or a full disk never leaves a
 * half-written result under the final name.
 */
#ifndef DDTS_FS_H
#define DDTS_FS_H

#include <stddef.h>
#include <stdio.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

struct ddts_atomic_file {
    FILE *fp;       /* write through this */
    char *path;     /* final name (owned) */
    char *tmp_path; /* temporary name (owned) */
};

/* Opens `path`.tmp.XXXXXX for writing. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_atomic_open(struct ddts_atomic_file *f,
                                                          const char *path, struct ddts_error *err);
/* Flushes, fsyncs and renames onto the final name; on any failure removes the
 * temporary file and reports which step failed. Always releases `f`. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_atomic_commit(struct ddts_atomic_file *f,
                                                            struct ddts_error *err);
/* Removes the temporary file and releases `f`. */
DDTS_API void ddts_atomic_abort(struct ddts_atomic_file *f);

/* Writes `nbytes` from `data` to `path` atomically. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_write_file_atomic(const char *path, const void *data, size_t nbytes, struct ddts_error *err);
/* Reads a whole file (up to `max_nbytes`) into a new buffer with a NUL after it. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_read_file(const char *path, size_t max_nbytes,
                                                        char **out, size_t *out_nbytes,
                                                        struct ddts_error *err);
/* Creates `path` and its parents (mode 0755); existing folders are fine. */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_mkdir_p(const char *path, struct ddts_error *err);
/* Joins two path parts into a new string; NULL when out of memory. */
DDTS_API char *ddts_path_join(const char *a, const char *b);

#ifdef __cplusplus
}
#endif
#endif
