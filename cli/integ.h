/* The CLI's integration helpers: model files, the demo's report. */
#ifndef DDTS_CLI_INTEG_H
#define DDTS_CLI_INTEG_H

#include "ddts/ddts.h"

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
