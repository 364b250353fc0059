/*
 * Logs and reports of a training run (SPEC §5):
 *
 *   history.csv   Keras CSVLogger's file, byte for byte: header "epoch" then
 *                 the metric names sorted ("epoch,accuracy,loss,val_accuracy,
 *                 val_loss"), 0-based epochs, numbers as Python's repr of a
 *                 float ("0.41234567165374756", "1e-05"), missing values "NA",
 *                 lines ending in "\r\n" (Python's csv.excel dialect).
 *   train.log     readable lines "2026-11-27 00:10:49 message" (also error.log).
 *   *.png         loss and accuracy curves, drawn with cairo.
 *   summary.json  the run's settings, per-client results and output paths.
 *
 * Plus pure formatters for the terminal: Keras-like progress lines and the
 * server's live table of clients. Formatters write into caller buffers and
 * return the length the full text needs (like snprintf), never allocating.
 *
 * Writers are used by one thread at a time, except struct ddts_textlog,
 * which is thread-safe.
 */
#ifndef DDTS_REPORT_H
#define DDTS_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Numbers as Python prints them                                            */
/* ------------------------------------------------------------------------ */

/* Python's repr(float(v)): the shortest text that reads back as v, fixed
 * notation for 1e-4 <= |v| < 1e16 ("0.0001", "123.0"), else scientific
 * ("1e-05", "1.5e+16"); "nan", "inf", "-inf". Returns the length (< 32);
 * buf holds at least 32 bytes. */
DDTS_API size_t ddts_format_pyfloat(double v, char buf[32]);

/* ------------------------------------------------------------------------ */
/* history.csv (Keras CSVLogger)                                            */
/* ------------------------------------------------------------------------ */

/* A metric name and its value for one epoch ("loss", 0.41). */
struct ddts_metric {
    const char *name;
    double value;
};

struct ddts_history_writer; /* opaque */

/*
 * Opens `path` like CSVLogger(path, append=append): with append and an
 * existing non-empty file, rows are added without a header (the column set
 * is read back from its header); otherwise the file is created and the
 * header is written with the first row. Each row is flushed to disk before
 * ddts_history_writer_row returns, so a crash loses at most the row being
 * written. DDTS_EIO, DDTS_ENOMEM, DDTS_EFORMAT (append to a file that is
 * not a history).
 */
/*
 * Keeps the header of history.csv at `path` and its rows of epochs below
 * `n_epochs` (0-based, in order), dropping the rest: a run resumed at epoch
 * n_epochs appends its rows after the ones it keeps, so that no epoch is
 * lost or written twice. A missing file is DDTS_OK.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_history_keep_epochs(const char *path, long n_epochs,
                                                                  struct ddts_error *err);
DDTS_API DDTS_NODISCARD enum ddts_status ddts_history_writer_open(const char *path, bool append,
                                                                  struct ddts_history_writer **out,
                                                                  struct ddts_error *err);
/*
 * Writes one epoch (0-based). The first row fixes the columns: its metric
 * names, sorted by strcmp (as Python's sorted()). Later rows write "NA" for a
 * missing column; a metric that is not a column is ignored (as CSVLogger).
 * Names must be non-empty, without ',', '"' or line breaks (DDTS_EINVAL).
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_history_writer_row(struct ddts_history_writer *w,
                                                                 int64_t epoch,
                                                                 const struct ddts_metric *metrics,
                                                                 size_t n_metrics,
                                                                 struct ddts_error *err);
/* Closes the file; accepts NULL. */
DDTS_API void ddts_history_writer_close(struct ddts_history_writer *w);

/* A history read back: n_epochs rows of n_keys values (NaN for "NA"). */
struct ddts_csv_history {
    size_t n_keys;   /* columns after "epoch" */
    char **keys;     /* n_keys names, in file order */
    size_t n_epochs; /* rows */
    int64_t *epochs; /* n_epochs epoch numbers */
    double *values;  /* (n_epochs, n_keys), row-major */
};

/* Reads a CSVLogger file (any line ending; "," separator). Errors name the
 * file, row and column: DDTS_EIO, DDTS_EFORMAT, DDTS_ELIMIT, DDTS_ENOMEM.
 * *out is a new history (ddts_csv_history_destroy). */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_csv_history_read(const char *path, struct ddts_csv_history **out, struct ddts_error *err);
/* As ddts_csv_history_read, from a buffer (`name` is used in messages). */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_csv_history_parse(const char *name, const char *text,
                                                                size_t nbytes,
                                                                struct ddts_csv_history **out,
                                                                struct ddts_error *err);
DDTS_API void ddts_csv_history_destroy(struct ddts_csv_history *h);
/* Column index of `key`, or -1. */
DDTS_API long ddts_csv_history_column(const struct ddts_csv_history *h, const char *key);

/* ------------------------------------------------------------------------ */
/* train.log, error.log                                                     */
/* ------------------------------------------------------------------------ */

struct ddts_textlog; /* opaque; thread-safe */

/* Opens (appending to) a text log. DDTS_EIO, DDTS_ENOMEM. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_textlog_open(const char *path, struct ddts_textlog **out, struct ddts_error *err);
/* Writes "YYYY-MM-DD HH:MM:SS <message>\n" (local time) and flushes. A message
 * with line breaks becomes several lines with the same stamp. Returns
 * DDTS_EIO when the write failed (the log stays usable). */
DDTS_API enum ddts_status ddts_textlog_printf(struct ddts_textlog *log, const char *fmt, ...)
    DDTS_PRINTF(2, 3);
/* A logger (core.h) that writes "<LEVEL> message" lines to this log; the log
 * must outlive the logger's use. */
DDTS_API struct ddts_logger ddts_textlog_logger(struct ddts_textlog *log, enum ddts_log_level min);
DDTS_API void ddts_textlog_close(struct ddts_textlog *log);

/*
 * error.log in `dir` (created; appended to): the exception log of a failed
 * run, beside its train.log, uploaded with a client's results. Lines:
 * "error: <message>", "status: <status name>[, <errno text>]", "context:
 * <context>" and "settings: <settings_json>" (both when not NULL).
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_error_log_write(const char *dir, const struct ddts_error *failure, const char *context,
                     const char *settings_json, struct ddts_error *err);
/* Removes dir/error.log, if any: a new attempt at the run begins. */
DDTS_API void ddts_error_log_remove(const char *dir);
/* The message of the first "error:" line of dir/error.log into buf; false when there is none. */
DDTS_API bool ddts_error_log_reason(const char *dir, char *buf, size_t cap);

/* ------------------------------------------------------------------------ */
/* Plots (PNG, cairo)                                                       */
/* ------------------------------------------------------------------------ */

/* One curve: n points (x[i], y[i]); NaN y values leave a gap. x may be NULL:
 * then x[i] = i + 1 (epochs counted from 1, as a reader expects). */
struct ddts_plot_series {
    const char *label; /* legend text; NULL: not in the legend */
    const double *x;
    const double *y;
    size_t n;
    uint32_t rgb; /* 0xRRGGBB; 0 picks the next colour of the palette */
    bool dashed;  /* validation curves are dashed by convention */
    double width; /* line width in pixels; 0 = 2 */
};

/* One set of axes with its title and labels. */
struct ddts_plot_panel {
    const char *title;  /* "Loss" */
    const char *xlabel; /* "epoch" */
    const char *ylabel; /* "loss" */
    const struct ddts_plot_series *series;
    size_t n_series;
};

/*
 * Draws panels side by side under a figure title into a PNG of width x height
 * pixels (each at least 200 x 150, at most 8192; DDTS_EINVAL otherwise), with
 * white background, axes with "nice" ticks and labels, grid, a legend per
 * panel. Written atomically. DDTS_EIO, DDTS_ENOMEM, DDTS_EINVAL.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_plot_write_png(const char *path, const char *title,
                                                             const struct ddts_plot_panel *panels,
                                                             size_t n_panels, int width, int height,
                                                             struct ddts_error *err);

/* Default size of the plots below (pixels). */
#define DDTS_PLOT_WIDTH  1200
#define DDTS_PLOT_HEIGHT 500

/*
 * The per-run plot: a "Loss" panel (loss, val_loss) and, when the history
 * has it, an accuracy panel (accuracy/acc and val_*), train solid and
 * validation dashed, against epochs 1..n. Other metrics than accuracy are
 * drawn in the second panel when there is no accuracy (the first metric in
 * column order). DDTS_PLOT_WIDTH x DDTS_PLOT_HEIGHT. DDTS_EINVAL for a history
 * without a loss column or without rows.
 */
DDTS_API DDTS_NODISCARD enum ddts_status ddts_plot_history(const char *path, const char *title,
                                                           const struct ddts_csv_history *h,
                                                           struct ddts_error *err);

/*
 * The server's combined plot: each client's validation loss and accuracy (or
 * training ones when it has no validation columns), thin and coloured, one
 * colour per client named names[i], plus the global model's curves (NULL if
 * none) thick and black. Same layout and size as ddts_plot_history.
 */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_plot_combined(const char *path, const char *title,
                   const struct ddts_csv_history *const *clients, const char *const *names,
                   size_t n_clients, const struct ddts_csv_history *global, struct ddts_error *err);

/* ------------------------------------------------------------------------ */
/* Progress lines (Keras fit) and the server's live table                   */
/* ------------------------------------------------------------------------ */

/* "Epoch 3/10" (1-based epoch given). Returns the length needed. */
DDTS_API size_t ddts_progress_epoch_header(char *buf, size_t cap, int epoch, int epochs);

/*
 * A progress line like Keras' Progbar counting samples, e.g.
 *   " 1200/60000 [>.............................] - 12s - ETA: 3:01 - loss: 0.4123 - accuracy:
 * 0.8512" and once done == total (the end-of-epoch line, validation metrics included in `metrics`):
 *   "60000/60000 [==============================] - 72s 1ms/sample - loss: 0.4123 - ..."
 * Numbers: "%.4f", or "%.4e" when |v| < 1e-3 (as Keras). ETA "3:01",
 * "1:02:03" or "12s". No colour, no carriage return: the caller adds "\r" on a
 * terminal. Returns the length the line needs (snprintf-like).
 */
DDTS_API size_t ddts_progress_format(char *buf, size_t cap, int64_t done, int64_t total,
                                     double elapsed_s, const struct ddts_metric *metrics,
                                     size_t n_metrics);

/* "3:01", "1:02:03" or "12s" (Keras' ETA format); negative or non-finite: "-". */
DDTS_API size_t ddts_format_duration(char *buf, size_t cap, double seconds);

/* "1.5 KiB", "12.3 MiB", "2.00 GiB" (binary units), "512 B". Returns the length needed. */
DDTS_API size_t ddts_format_bytes(char *buf, size_t cap, double nbytes);

/*
 * A transfer's progress line, e.g.
 *   "model.h5  12.3 MiB/45.0 MiB [======>.............]  27% 3.2 MiB/s ETA 0:10"
 * and once done == total: "model.h5  45.0 MiB [====================] 100% 3.1 MiB/s 14s".
 * total 0 (unknown): no bar, no ETA. Returns the length needed (snprintf-like).
 */
DDTS_API size_t ddts_transfer_format(char *buf, size_t cap, const char *label, uint64_t done,
                                     uint64_t total, double elapsed_s);

/* One client in the server's live view. NaN numbers print as "-". */
struct ddts_client_row {
    const char *name;
    const char *address;
    const char *state;   /* "training", "uploading", "done", "lost", ... */
    int fold, n_folds;   /* 1-based; n_folds 0: no folds, column shows "-" */
    int epoch, epochs;   /* 1-based */
    int64_t done, total; /* samples of the current epoch */
    double loss;
    double accuracy;
    double samples_per_s;
    double eta_s;
};

/*
 * The live table: a header line and one line per client, columns NAME,
 * ADDRESS, STATE, FOLD ("2/5"), EPOCH ("3/10"), PROG (percent of the epoch),
 * LOSS, ACC, SMP/S (samples per second), ETA ("12:34", "1h02m"), aligned;
 * each line ends with "\n" and is at most `width` - 1 characters long
 * (width < 78 is taken as 78; a figure wider than its column, such as epoch
 * "100/200", is not cut but pushes the rest of its line right): the NAME
 * column takes what the others leave (10 characters at width 80, at most
 * 40). Long names and addresses are cut
 * in the middle with "~" ("clie~b3c4d"), so that names differing only at
 * their end stay apart. Returns the length needed (snprintf-like);
 * *n_lines_out (may be NULL) receives the line count, so a terminal caller
 * can move the cursor up that many lines before the next refresh.
 */
DDTS_API size_t ddts_client_table_format_width(char *buf, size_t cap,
                                               const struct ddts_client_row *rows, size_t n_rows,
                                               int width, size_t *n_lines_out);
/* ddts_client_table_format_width for an 80-column terminal. */
DDTS_API size_t ddts_client_table_format(char *buf, size_t cap, const struct ddts_client_row *rows,
                                         size_t n_rows, size_t *n_lines_out);

/* ------------------------------------------------------------------------ */
/* summary.json and summary.txt                                             */
/* ------------------------------------------------------------------------ */

struct ddts_summary_client {
    const char *name;
    const char *address;
    const char *state; /* "done", "lost", ... */
    int64_t samples;   /* training samples of its share */
    int epochs_done;
    const struct ddts_metric *final; /* last epoch's metrics (loss, val_loss, ...) */
    size_t n_final;
    const char *dir;   /* its results folder, relative to the job folder */
    const char *error; /* why its training failed (the client's error text), or NULL */
};

struct ddts_summary {
    const char *job;           /* job name */
    const char *status;        /* "ok", "partial" (some shares failed), "failed", "canceled" */
    const char *error;         /* why, when failed; NULL otherwise */
    const char *settings_json; /* ddts_job_to_json output (an object), or NULL */
    uint64_t seed;
    double started; /* Unix time, seconds */
    double finished;
    const struct ddts_summary_client *clients;
    size_t n_clients;
    const struct ddts_metric *global_final; /* the global model's last metrics */
    size_t n_global_final;
    const char *global_model; /* path relative to the job folder, or NULL */
    const char *plot;         /* combined plot, relative path, or NULL */
};

/* Writes summary.json (atomically) at `path`. settings_json is embedded as
 * is (DDTS_EINVAL unless it starts with '{' and ends with '}'); NaN and
 * infinite metrics become null. DDTS_EIO, DDTS_ENOMEM. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_summary_write_json(const char *path, const struct ddts_summary *s, struct ddts_error *err);
/* Writes the human-readable summary (aligned text) atomically at `path`. */
DDTS_API DDTS_NODISCARD enum ddts_status
ddts_summary_write_text(const char *path, const struct ddts_summary *s, struct ddts_error *err);

#ifdef __cplusplus
}
#endif
#endif
