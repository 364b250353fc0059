/*
 * Recurrent kernels (layer_recurrent.c): SimpleRNN, LSTM and GRU over a
 * batch of sequences, forward and backward, independent of the model graph.
 *
 * Shapes: x (N, T, F), output (N, T, U) with return_sequences or (N, U);
 * G = gates * U with gates 1 (SimpleRNN), 4 (LSTM: i, f, c, o) or 3 (GRU:
 * z, r, h). Weights as Keras stores them: kernel W (F, G), recurrent kernel
 * R (U, G), bias (G) (SimpleRNN (U); GRU reset_after (2, G): input bias then
 * recurrent bias).
 *
 * The input projection of all time steps is one GEMM; only the recurrent
 * part runs step by step, with the gate nonlinearities fused into one pass
 * per step. Every array lives in the caller's scratch (one block of
 * ddts__rnn_scratch_floats floats, planned per batch size): nothing is
 * allocated per step or per call. Internally everything is step major,
 * (T, N, .), so that a step's slice and the whole sequence are both plain
 * row-major matrices.
 */
#ifndef DDTS_NN_RECURRENT_H
#define DDTS_NN_RECURRENT_H

#include <stddef.h>

#include "ddts/core.h"

struct nn_act;

enum rnn_cell { RNN_SIMPLE, RNN_LSTM, RNN_GRU };

struct ddts__rnn_spec {
    enum rnn_cell cell;
    int U, F, T;          /* units, input features, time steps */
    int reset_after;      /* GRU: reset gate after the recurrent matmul (TF2/Keras 3) */
    int go_backwards;     /* process the input from the last step to the first */
    int return_sequences; /* output every step (else the last) */
    int reverse_out;      /* Bidirectional's backward layer: outputs back in input order */
    int use_bias;
    float dropout, recurrent_dropout; /* training only; one mask per sequence */
};

/* Gate count: 1, 4 or 3. */
int ddts__rnn_gates(const struct ddts__rnn_spec *s);
/* Floats of scratch for batch N (0 on overflow). */
size_t ddts__rnn_scratch_floats(const struct ddts__rnn_spec *s, size_t N);

/*
 * Forward pass over x (N, T, F). mask (N, T) or NULL: 0 marks a step whose
 * state and output are carried over from the step before, as Keras does
 * with an input mask. act is the activation, ract the recurrent one. h0, c0
 * (N, U): the initial state (Keras' initial_state; c0 for LSTM only), NULL:
 * zeros. With `training`, dropout masks are drawn from rng (which may be
 * NULL otherwise). Writes y and keeps in scratch what backward needs.
 */
void ddts__rnn_forward(const struct ddts__rnn_spec *s, const struct nn_act *act,
                       const struct nn_act *ract, size_t N, const float *x, const float *mask,
                       const float *W, const float *R, const float *b, const float *h0,
                       const float *c0, float *y, float *scratch, int training,
                       struct ddts_rng *rng, int threads);

/* After ddts__rnn_forward over N sequences: the final state (N, U) in its
 * scratch, which 0 the output state h, 1 the LSTM cell state c (NULL for
 * other cells). What return_state gives (after masked steps: the last kept). */
const float *ddts__rnn_final_state(const struct ddts__rnn_spec *s, size_t N, const float *scratch,
                                   int which);

/* The state's gradients of ddts__rnn_backward, each (N, U) or NULL: dh_T,
 * dc_T in (the gradients of the final states, return_state), dh0, dc0 out
 * (of the initial state; acc_* adds instead of overwriting). c: LSTM only. */
struct ddts__rnn_state_grads {
    const float *dh_T, *dc_T;
    float *dh0, *dc0;
    int acc_h0, acc_c0;
};

/*
 * Backward pass after ddts__rnn_forward with the same arguments: dy has y's
 * shape; sg (NULL: none) the states' gradients. Writes dW, dR, db (each may
 * be NULL: not wanted) and dx (N, T, F) (NULL: not wanted; acc_dx adds to it
 * instead of overwriting).
 */
void ddts__rnn_backward(const struct ddts__rnn_spec *s, const struct nn_act *act,
                        const struct nn_act *ract, size_t N, const float *x, const float *mask,
                        const float *W, const float *R, const float *dy,
                        const struct ddts__rnn_state_grads *sg, float *dx, int acc_dx, float *dW,
                        float *dR, float *db, float *scratch, int training, int threads);

#endif
