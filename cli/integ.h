/* The CLI's integration helpers: model files, job data, the demo's report. */
#ifndef DDTS_CLI_INTEG_H
#define DDTS_CLI_INTEG_H

#include "ddts/ddts.h"

/* DIR/X and DIR/Y as the job's settings say (npz keys, X only for XX). */
enum ddts_status cli_load_job_xy(const struct ddts_job *job, const char *dir, struct ddts_array **x,
                                 struct ddts_array **y, struct ddts_error *err);
/* Loads the job's training data (and a Keras dataset's test split). */
enum ddts_status cli_load_job_data(const struct ddts_job *job, struct ddts_array **x,
                                   struct ddts_array **y, struct ddts_array **x_test,
                                   struct ddts_array **y_test, struct ddts_error *err);
/* Builds a Keras .h5 file with fresh weights from a model JSON (Keras'
 * model.to_json() format) and a compile configuration. */
enum ddts_status cli_model_new(const char *spec_path, const char *out_path, uint64_t seed,
                               const char *loss, const char *optimizer, double learning_rate,
                               const char *metrics, struct ddts_error *err);
/* Prints a Keras-like summary of a model file. */
int cli_inspect_model(const char *path);
/* Prints the demo's final figures and where its results are. */
int cli_demo_report(const char *server_workdir, const char *job);

#endif
