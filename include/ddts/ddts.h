/*
 * ddts: distributed deep-learning training of Keras models, in C.
 *
 * A short tour of the library:
 *
 *   core.h    status codes, error messages, allocation, logging, RNG
 *   limits.h  every limit, with its reason
 *   array.h   typed n-dimensional arrays (what data loaders return)
 *   fs.h      atomic file writes (temporary name + rename)
 *   nn.h      the training engine: Keras models, fit/evaluate/predict
 *
 * Each module below has its own header; this one includes them all. Every
 * fallible function returns an enum ddts_status and fills an optional
 * struct ddts_error with a message naming what is wrong.
 */
#ifndef DDTS_DDTS_H
#define DDTS_DDTS_H

#define DDTS_VERSION "0.1.0"

#include "array.h"
#include "core.h"
#include "fs.h"
#include "limits.h"
#include "nn.h"

#endif
