/*
 * The recurrent family: SimpleRNN, LSTM, GRU, their cells and ConvLSTM.
 * Known by name only so far: files with these layers are read with their
 * weights named (kernel, recurrent_kernel, bias); the engine refuses to
 * build them ("layer class 'LSTM' is not supported"). Engine support adds
 * parse/infer_shape/add_weights/plan/forward/backward hooks here.
 */
#include <stddef.h>

#include "nn/layer.h"

static const char *recurrent_names(const struct nn_weight_flags *f, size_t index)
{
    static const char *const r[] = {"kernel", "recurrent_kernel", "bias"};
    return index < 3 && (index < 2 || f->use_bias) ? r[index] : NULL;
}

static const struct nn_layer_ops recurrent_ops = {
    .class_names = (const char *const[]){"SimpleRNN", "LSTM", "GRU", "SimpleRNNCell", "LSTMCell",
                                         "GRUCell", "ConvLSTM1D", "ConvLSTM2D", "ConvLSTM3D", NULL},
    .kind = NN_NAMED,
    .doc = "not supported by the engine yet; weights kernel, recurrent_kernel, bias",
    .weight_name = recurrent_names,
};

const struct nn_layer_ops *const ddts__nn_family_recurrent[] = {&recurrent_ops, NULL};
