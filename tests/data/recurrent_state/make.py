#!/usr/bin/python3
"""Makes the return_state / initial_state / Bidirectional(merge_mode=None) test models.

Each NAME.h5 is a tf.keras 2.13 legacy HDF5 file written with h5py in the
layout of tests/integration/keras_layouts.py (write_legacy), with seeded
random weights; NAME.x.npy is its input (8 samples) and NAME.tfjs.npy the
output of TensorFlow.js 4.22 for it (an independent implementation of the
Keras layers API), made with ../../../../shared/keras-fixtures/tools
(h5_to_tfjs.py, then predict.js) exactly as the keras-fixtures references:

    /usr/bin/python3 tests/data/recurrent_state/make.py   # from the repository root

Needs h5py, numpy and node with TF.js at /work/tfjs (NODE_PATH). Tests only
read the committed files; they never run this script.
"""
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "integration"))
import keras_layouts  # noqa: E402

TOOLS = os.path.join(HERE, "..", "..", "..", "..", "shared", "keras-fixtures", "tools")
NODE_PATH = os.environ.get("TFJS_NODE_MODULES", "/work/tfjs/node_modules")


def inp(name, shape):
    return {"class_name": "InputLayer", "name": name, "inbound_nodes": [],
            "config": {"batch_input_shape": [None] + list(shape), "dtype": "float32",
                       "sparse": False, "ragged": False, "name": name}}


def ref(name, tensor=0):
    return [name, 0, tensor, {}]


def layer(cls, name, cfg, inbound):
    c = {"name": name, "trainable": True, "dtype": "float32"}
    c.update(cfg)
    return {"class_name": cls, "name": name, "config": c, "inbound_nodes": [inbound]}


def rnn_cfg(cell, units, **kw):
    c = {"units": units, "activation": "tanh", "use_bias": True, "return_sequences": False,
         "return_state": False, "go_backwards": False, "stateful": False, "unroll": False,
         "time_major": False, "dropout": 0.0, "recurrent_dropout": 0.0,
         "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
         "recurrent_initializer": {"class_name": "Orthogonal", "config": {"gain": 1.0, "seed": None}},
         "bias_initializer": {"class_name": "Zeros", "config": {}},
         "kernel_regularizer": None, "recurrent_regularizer": None, "bias_regularizer": None,
         "activity_regularizer": None, "kernel_constraint": None, "recurrent_constraint": None,
         "bias_constraint": None}
    if cell in ("LSTM", "GRU"):
        c["recurrent_activation"] = "sigmoid"
        c["implementation"] = 2
    if cell == "LSTM":
        c["unit_forget_bias"] = True
    if cell == "GRU":
        c["reset_after"] = False
    c.update(kw)
    return c


def dense(name, units, src):
    return layer("Dense", name, {"units": units, "activation": "linear", "use_bias": True,
                                 "kernel_initializer": {"class_name": "GlorotUniform",
                                                        "config": {"seed": None}},
                                 "bias_initializer": {"class_name": "Zeros", "config": {}},
                                 "kernel_regularizer": None, "bias_regularizer": None,
                                 "activity_regularizer": None, "kernel_constraint": None,
                                 "bias_constraint": None}, [ref(src)])


def concat(name, refs):
    return layer("Concatenate", name, {"axis": -1}, refs)


def rnn_weights(rng, cell, F, U):
    g = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}[cell]
    return [("kernel", (0.5 * rng.standard_normal((F, g * U))).astype(np.float32)),
            ("recurrent_kernel", (0.5 * rng.standard_normal((U, g * U))).astype(np.float32)),
            ("bias", (0.3 * rng.standard_normal((g * U,))).astype(np.float32))]


def cell_name(cell):
    return {"LSTM": "lstm_cell", "GRU": "gru_cell", "SimpleRNN": "simple_rnn_cell"}[cell]


def rnn_entry(rng, name, cell, F, U):
    return (name, [("%s/%s/%s:0" % (name, cell_name(cell), w), a)
                   for w, a in rnn_weights(rng, cell, F, U)])


def dense_entry(rng, name, F, U):
    return (name, [("%s/kernel:0" % name, (0.5 * rng.standard_normal((F, U))).astype(np.float32)),
                   ("%s/bias:0" % name, (0.1 * rng.standard_normal((U,))).astype(np.float32))])


def model(name, layers, out):
    return {"class_name": "Functional", "config": {
        "name": name, "layers": layers, "input_layers": [["inp", 0, 0]],
        "output_layers": [[out, 0, 0]]}, "keras_version": "2.13.1", "backend": "tensorflow"}


TRAINING = {"loss": "mse", "metrics": None, "weighted_metrics": None, "loss_weights": None,
            "optimizer_config": {"class_name": "Adam", "config": {"name": "Adam",
                                                                 "learning_rate": 0.001}}}


def encdec_lstm(rng):
    """Masking -> LSTM(return_state) whose states start a second LSTM (initial_state)."""
    layers = [inp("inp", (5, 3)),
              layer("Masking", "mask", {"mask_value": 0.0}, [ref("inp")]),
              layer("LSTM", "enc", rnn_cfg("LSTM", 4, return_state=True), [ref("mask")]),
              layer("LSTM", "dec", rnn_cfg("LSTM", 4, return_sequences=True),
                    [ref("mask"), ref("enc", 1), ref("enc", 2)]),
              dense("out", 2, "dec")]
    w = [("inp", []), ("mask", []), rnn_entry(rng, "enc", "LSTM", 3, 4),
         rnn_entry(rng, "dec", "LSTM", 3, 4), dense_entry(rng, "out", 4, 2)]
    x = rng.standard_normal((8, 5, 3)).astype(np.float32)
    x[1, 3:] = 0  # padded at the end
    x[2, 4] = 0
    x[5, 2] = 0   # a masked step in the middle
    x[6, :] = 0   # all masked
    return model("encdec_lstm", layers, "out"), w, x


def gru_simple_states(rng):
    """GRU(return_sequences, return_state) -> SimpleRNN(return_state); a backwards GRU
    started from the first GRU's state; every state concatenated."""
    layers = [inp("inp", (6, 3)),
              layer("GRU", "g", rnn_cfg("GRU", 4, return_sequences=True, return_state=True),
                    [ref("inp")]),
              layer("SimpleRNN", "s", rnn_cfg("SimpleRNN", 3, return_state=True), [ref("g")]),
              layer("GRU", "g2", rnn_cfg("GRU", 4, go_backwards=True), [ref("inp"), ref("g", 1)]),
              concat("cat", [ref("g", 1), ref("s"), ref("s", 1), ref("g2")]),
              dense("out", 2, "cat")]
    w = [("inp", []), rnn_entry(rng, "g", "GRU", 3, 4), rnn_entry(rng, "s", "SimpleRNN", 4, 3),
         rnn_entry(rng, "g2", "GRU", 3, 4), ("cat", []), dense_entry(rng, "out", 14, 2)]
    x = rng.standard_normal((8, 6, 3)).astype(np.float32)
    return model("gru_simple_states", layers, "out"), w, x


def bidir_none(rng):
    """Bidirectional(LSTM(return_sequences, return_state), merge_mode=None): six outputs."""
    bi = layer("Bidirectional", "bi", {"layer": {"class_name": "LSTM", "config": dict(
        rnn_cfg("LSTM", 3, return_sequences=True, return_state=True), name="l",
        trainable=True, dtype="float32")}, "merge_mode": None}, [ref("inp")])
    layers = [inp("inp", (5, 3)), bi,
              concat("cat1", [ref("bi", 0), ref("bi", 1)]),
              layer("LSTM", "l2", rnn_cfg("LSTM", 3), [ref("cat1"), ref("bi", 4), ref("bi", 5)]),
              concat("cat2", [ref("l2"), ref("bi", 2), ref("bi", 3)]),
              dense("out", 2, "cat2")]
    fw = rnn_weights(rng, "LSTM", 3, 3)
    bw = rnn_weights(rng, "LSTM", 3, 3)
    w = [("inp", []),
         ("bi", [("bi/forward_l/lstm_cell/%s:0" % n, a) for n, a in fw] +
                [("bi/backward_l/lstm_cell/%s:0" % n, a) for n, a in bw]),
         ("cat1", []), rnn_entry(rng, "l2", "LSTM", 6, 3), ("cat2", []),
         dense_entry(rng, "out", 9, 2)]
    x = rng.standard_normal((8, 5, 3)).astype(np.float32)
    return model("bidir_none", layers, "out"), w, x


def main():
    env = dict(os.environ, NODE_PATH=NODE_PATH)
    for seed, make in enumerate((encdec_lstm, gru_simple_states, bidir_none)):
        rng = np.random.default_rng(100 + seed)
        cfg, weights, x = make(rng)
        name = cfg["config"]["name"]
        h5 = os.path.join(HERE, name + ".h5")
        keras_layouts.write_legacy(h5, weights, cfg, training_config=TRAINING,
                                   keras_version="2.13.1")
        np.save(os.path.join(HERE, name + ".x.npy"), x)
        tj = os.path.join("/tmp", name + ".tfjs.json")
        out = os.path.join("/tmp", name + ".out.json")
        subprocess.run([sys.executable, os.path.join(TOOLS, "h5_to_tfjs.py"), h5, tj], check=True)
        subprocess.run(["node", os.path.join(TOOLS, "predict.js"), tj,
                        os.path.join(HERE, name + ".x.npy"), out], check=True, env=env)
        with open(out) as f:
            r = json.load(f)
        y = np.asarray(r["data"], dtype=np.float32).reshape(r["shape"])
        np.save(os.path.join(HERE, name + ".tfjs.npy"), y)
        print(name, y.shape)


if __name__ == "__main__":
    main()
