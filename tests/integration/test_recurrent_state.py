"""return_state, initial_state and Bidirectional(merge_mode=None) in functional models (#15).

tests/data/recurrent_state/ holds three tf.keras 2.13 legacy .h5 files (made
by its make.py with h5py, seeded weights) with the output of TensorFlow.js
4.22 for a fixed input of each (NAME.tfjs.npy):
  encdec_lstm        Masking -> LSTM(return_state) whose h and c start a second
                     LSTM (initial_state), padded and masked steps in the input
  gru_simple_states  GRU(return_sequences, return_state) -> SimpleRNN(return_state),
                     a go_backwards GRU started from the first GRU's state
  bidir_none         Bidirectional(LSTM(return_state), merge_mode=None): six outputs,
                     the backward states starting another LSTM
For each: `ddts predict` matches TF.js within 1e-5 absolute + 1e-4 relative;
the reference depends on the states (the same file with the decoder's
initial_state removed predicts something else); `ddts train` runs and writes
the file back with the same HDF5 structure, which loads and predicts again.
A Sequential model with return_state is refused by name. `ddts inspect`
lists every output of a layer with several (return_state, merge_mode=None),
each shape as Keras defines it from the layer's config.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402
import keras_layouts  # noqa: E402

DDTS = os.environ.get("DDTS", os.path.abspath("ddts"))
SRC = os.path.abspath(os.environ.get("DDTS_SOURCE_DIR",
                                     os.path.join(os.path.dirname(__file__), "..", "..")))
DATA = os.path.join(SRC, "tests", "data", "recurrent_state")
WORK = tempfile.mkdtemp(prefix="ddts-test_recurrent_state-")
check = Checks()


def ddts(*args):
    return subprocess.run([DDTS] + list(args), capture_output=True, text=True, timeout=300,
                          cwd=WORK)


def close(a, ref):
    return a.shape == ref.shape and bool(np.all(np.abs(a - ref) <= 1e-5 + 1e-4 * np.abs(ref)))


def predict(model, x):
    out = os.path.join(WORK, "pred.npy")
    p = ddts("predict", "--model", model, "--x", x, "-o", out)
    return (np.load(out) if p.returncode == 0 else None), p.stdout + p.stderr


def structure(path):
    d = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda n, o: d.__setitem__(
            n, ("dataset", o.shape, o.dtype.str) if isinstance(o, h5py.Dataset) else "group"))
    return d


for name in ("encdec_lstm", "gru_simple_states", "bidir_none"):
    model = os.path.join(DATA, name + ".h5")
    x = os.path.join(DATA, name + ".x.npy")
    ref = np.load(os.path.join(DATA, name + ".tfjs.npy"))
    got, out = predict(model, x)
    check(got is not None and close(got, ref),
          "%s: ddts predict vs TF.js: %s" % (name, out if got is None else
                                            "max diff %g" % float(np.max(np.abs(got - ref)))
                                            if got.shape == ref.shape else got.shape))
    # train: the reference outputs as targets, one folder per model
    d = os.path.join(WORK, name)
    os.makedirs(os.path.join(d, "X"))
    os.makedirs(os.path.join(d, "Y"))
    shutil.copy(x, os.path.join(d, "X", "x.npy"))
    np.save(os.path.join(d, "Y", "y.npy"), ref + 0.1)
    p = ddts("train", "--model", model, "--dataset", d, "--epochs", "4", "--batch-size", "8",
             "--validation-split", "0", "--seed", "1", "--learning-rate", "0.01",
             "--out", "out-" + name)
    check(p.returncode == 0, "%s: ddts train: %s" % (name, p.stderr[-800:]))
    written = os.path.join(WORK, "out-" + name, "model.h5")
    if p.returncode == 0:
        check(structure(written) == structure(model),
              "%s: the written file's HDF5 structure differs from the source's" % name)
        again, out = predict(written, x)
        check(again is not None and again.shape == ref.shape and not close(again, ref),
              "%s: the written model (trained weights) predicts: %s" % (name, out))
        hist = np.genfromtxt(os.path.join(WORK, "out-" + name, "history.csv"), delimiter=",",
                             names=True)
        check(hist["loss"][-1] < hist["loss"][0], "%s: the loss did not fall: %s"
              % (name, hist["loss"]))

# The TF.js reference depends on the states: without the decoder's initial_state
# (the same weights), the prediction is another.
src = os.path.join(DATA, "encdec_lstm.h5")
cut = os.path.join(WORK, "no_initial_state.h5")
shutil.copy(src, cut)
with h5py.File(cut, "r+") as f:
    cfg = json.loads(f.attrs["model_config"])
    for layer in cfg["config"]["layers"]:
        if layer["name"] == "dec":
            layer["inbound_nodes"] = [[layer["inbound_nodes"][0][0]]]
    f.attrs["model_config"] = json.dumps(cfg).encode()
got, out = predict(cut, os.path.join(DATA, "encdec_lstm.x.npy"))
ref = np.load(os.path.join(DATA, "encdec_lstm.tfjs.npy"))
check(got is not None and float(np.max(np.abs(got - ref))) > 1e-2,
      "without initial_state the prediction should differ from the reference: %s" % out)



def keras_outputs(layer, steps):
    """The output shapes Keras gives a recurrent layer (or Bidirectional of
    one) of this config over `steps` time steps, in tensor index order."""
    cfg = layer["config"]
    cell = cfg["layer"] if layer["class_name"] == "Bidirectional" else layer
    c = cell["config"]
    seq = "(None, %d, %d)" % (steps, c["units"]) if c.get("return_sequences") else \
        "(None, %d)" % c["units"]
    states = ["(None, %d)" % c["units"]] * (2 if cell["class_name"] == "LSTM" else 1)
    if not c.get("return_state"):
        states = []
    if layer["class_name"] != "Bidirectional":
        return [seq] + states
    assert cfg.get("merge_mode") is None  # the only Bidirectional in these files
    return [seq, seq] + states + states


def inspect_outputs(text, name, cls):
    """The shapes `ddts inspect` prints for layer `name`: its row and the
    continuation lines under it, up to the blank line."""
    lines = text.split("\n")
    head = [i for i, l in enumerate(lines) if l.startswith(" %s (%s) " % (name, cls))]
    if len(head) != 1:
        return None
    shapes = []
    for l in lines[head[0]:]:
        if not l.strip():
            break
        shapes += re.findall(r"\(None(?:, \d+)*\)", l)
    return shapes


n_multi = 0
for name in ("encdec_lstm", "gru_simple_states", "bidir_none"):
    path = os.path.join(DATA, name + ".h5")
    with h5py.File(path, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
    steps = [l for l in cfg["config"]["layers"] if l["class_name"] == "InputLayer"][0]
    steps = steps["config"]["batch_input_shape"][1]
    p = ddts("inspect", path)
    for layer in cfg["config"]["layers"]:
        if layer["class_name"] not in ("LSTM", "GRU", "SimpleRNN", "Bidirectional"):
            continue
        want = keras_outputs(layer, steps)
        n_multi += len(want) > 1
        got = inspect_outputs(p.stdout, layer["name"], layer["class_name"])
        check(got == want, "%s: ddts inspect, layer %s: %s, Keras gives %s\n%s"
              % (name, layer["name"], got, want, p.stdout + p.stderr))
check(n_multi == 4, "layers with several outputs in the three files (enc, g, s, bi): %d" % n_multi)

# return_state in a Sequential model (Keras itself cannot build one): refused by name.
seq = os.path.join(WORK, "seq_state.h5")
lstm = {"class_name": "LSTM", "config": {"name": "l", "units": 2, "return_state": True,
                                         "batch_input_shape": [None, 3, 2]}}
keras_layouts.write_legacy(seq, [("l", [("kernel", np.zeros((2, 8), np.float32)),
                                        ("recurrent_kernel", np.zeros((2, 8), np.float32)),
                                        ("bias", np.zeros((8,), np.float32))])],
                           {"class_name": "Sequential", "config": {"name": "s", "layers": [lstm]}})
p = ddts("inspect", seq)
check(p.returncode != 0 and "return_state" in p.stderr and "Sequential" in p.stderr,
      "a Sequential with return_state: %s" % (p.stdout + p.stderr)[-400:])

sys.exit(0 if check.finish("test_recurrent_state", WORK) else 1)
