/*
 * ddts: distributed deep-learning training of Keras models, in C.
 *
 * A short tour of the library:
 *
 *   core.h    status codes, error messages, allocation, logging, RNG
 *   limits.h  every limit, with its reason
 *   array.h   typed n-dimensional arrays (what data loaders return)
 *   fs.h      atomic file writes (temporary name + rename)
 *   wire.h    frames and messages of the protocol (pure encode/decode)
 *   auth.h    CPace handshake, passphrases, encrypted channel
 *   net.h     connections: handshake, typed messages, file streaming
 *   server.h  the job server (ddts_server_run)
 *   client.h  the client (ddts_client_run) and weight averaging
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
#include "wire.h"
#include "auth.h"
#include "net.h"
#include "server.h"
#include "client.h"

#endif
