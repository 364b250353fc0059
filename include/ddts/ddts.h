/*
 * ddts: distributed deep-learning training of Keras models, in C.
 *
 * A short tour of the library:
 *
 *   core.h     status codes, error messages, allocation, logging, RNG
 *   limits.h   every limit, with its reason
 *   array.h    typed n-dimensional arrays (what data loaders return)
 *   fs.h       atomic file writes (temporary name + rename)
 *   data.h     data loaders, Keras datasets, statistics, normalizers, splits
 *   keras.h    Keras .h5 / .keras model files as plain data
 *   nn.h       the training engine: layers, losses, optimizers, fit
 *   job.h      job settings (flags, job files, JSON)
 *   report.h   history.csv, train.log, plots, progress lines, summaries
 *   passphrase.h  passphrases in guarded memory (the server and client borrow one)
 *   server.h   the job server; client.h the client (the protocol itself,
 *              docs/protocol.md, is private to the library: src/net/)
 *   serve.h    a whole job served from this machine (what `ddts server` runs)
 *   trainer.h  one training run of a job, tying the above together
 *
 * Every fallible function returns an enum ddts_status and fills an optional
 * struct ddts_error with a message naming what is wrong. These headers are
 * the whole public API: libddts.so exports the functions they declare
 * (DDTS_API) and nothing else.
 */
#ifndef DDTS_DDTS_H
#define DDTS_DDTS_H

#define DDTS_VERSION "0.1.0"

#include "array.h"
#include "core.h"
#include "limits.h"
#include "fs.h"
#include "data.h"
#include "keras.h"
#include "nn.h"
#include "job.h"
#include "report.h"
#include "passphrase.h"
#include "server.h"
#include "serve.h"
#include "client.h"
#include "trainer.h"
#include "dash.h"

#endif
