"""Real Keras files with recurrent, embedding and 1-D layers (../shared/keras-fixtures).

For each of the 14 files (Keras 2.0 to 3.13, .h5 and .keras, one HDF5 file
named .keras):
  1. `ddts predict` on the fixture's input matches the output of TensorFlow.js
     (NAME.tfjs.npy) or, for the two GRU reset_after=True models TF.js cannot
     run, of the fixtures' float64 numpy forward pass (NAME.numpy.npy), within
     1e-5 absolute + 1e-4 relative;
  2. `ddts train` runs one epoch on it (targets: the reference outputs, as
     class indices for a sparse loss) and writes the model back in its source
     format with the same structure: the same HDF5 groups and datasets with
     the same shapes and dtypes (for a .keras zip: the same members, the same
     config.json, and the same structure inside model.weights.h5);
  3. the written file holds trained weights (some differ from the source),
     and loads again with the same predictions: `ddts predict` on it agrees
     with the fixtures' numpy forward pass (tools/npref.py), which reads the
     weights itself with h5py, within the same tolerance.

Run by CTest with the build folder as working directory.
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

DDTS = os.environ.get("DDTS", os.path.abspath("ddts"))
SRC = os.environ.get("DDTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FX = os.path.normpath(os.path.join(SRC, "..", "shared", "keras-fixtures"))
check = Checks()


def ddts(*args):
    return subprocess.run([DDTS] + list(args), capture_output=True, text=True, timeout=300)


def close(a, ref):
    return a.shape == ref.shape and bool(np.all(np.abs(a - ref) <= 1e-5 + 1e-4 * np.abs(ref)))


def is_zip(path):
    with open(path, "rb") as f:
        return f.read(2) == b"PK"


def h5_structure(f):
    """Every group and dataset of an open h5 file: kind, shape and dtype."""
    d = {}

    def visit(name, obj):
        d[name] = ("dataset", obj.shape, obj.dtype.str) if isinstance(obj, h5py.Dataset) else "group"
    f.visititems(visit)
    return d


def structure(path):
    if is_zip(path):
        z = zipfile.ZipFile(path)
        with h5py.File(io.BytesIO(z.read("model.weights.h5")), "r") as f:
            return (sorted(z.namelist()), json.loads(z.read("config.json")), h5_structure(f))
    with h5py.File(path, "r") as f:
        return ("h5", json.loads(f.attrs["model_config"]), h5_structure(f))


def layer_weights(path):
    """Every dataset outside the optimizer state, by path."""
    out = {}

    def grab(f):
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and not name.startswith(("optimizer", "optimizer_weights")):
                out[name] = obj[()]
        f.visititems(visit)
    if is_zip(path):
        with h5py.File(io.BytesIO(zipfile.ZipFile(path).read("model.weights.h5")), "r") as f:
            grab(f)
    else:
        with h5py.File(path, "r") as f:
            grab(f)
    return out


def loss_of(path):
    if is_zip(path):
        cfg = json.loads(zipfile.ZipFile(path).read("config.json"))
        loss = cfg.get("compile_config", {}).get("loss")
    else:
        with h5py.File(path, "r") as f:
            tc = f.attrs.get("training_config")
            loss = json.loads(tc).get("loss") if tc is not None else None
    if isinstance(loss, dict):
        loss = loss.get("config", loss.get("class_name"))
        if isinstance(loss, dict):
            loss = loss.get("name")
    return str(loss or "")


def npref(model, x, out):
    r = subprocess.run([sys.executable, os.path.join(FX, "tools", "npref.py"), model, x, out],
                       capture_output=True, text=True, timeout=300)
    return r.returncode == 0, r.stderr


def one(tmp, fname):
    name = fname.rsplit(".", 1)[0]
    model = os.path.join(FX, fname)
    x = os.path.join(FX, name + ".x.npy")
    ref_path = os.path.join(FX, name + ".tfjs.npy")
    if not os.path.exists(ref_path):
        ref_path = os.path.join(FX, name + ".numpy.npy")
    ref = np.load(ref_path)
    work = os.path.join(tmp, name)
    os.makedirs(os.path.join(work, "ds", "X"))
    os.makedirs(os.path.join(work, "ds", "Y"))

    # 1. predictions against TF.js / numpy
    pred = os.path.join(work, "pred.npy")
    r = ddts("predict", "--model", model, "--x", x, "-o", pred, "--threads", "1")
    if not check(r.returncode == 0, "%s: predict exit %d: %s" % (name, r.returncode, r.stderr)):
        return
    p = np.load(pred).reshape(ref.shape)
    check(close(p, ref), "%s: predictions differ from %s by %g" %
          (name, os.path.basename(ref_path), float(np.abs(p - ref).max())))

    # 2. one epoch of training, written back in the source format
    y = ref.astype(np.float32)
    if "sparse" in loss_of(model).lower():
        y = ref.argmax(-1).astype(np.float32)
    np.save(os.path.join(work, "ds", "X", "x.npy"), np.load(x))
    np.save(os.path.join(work, "ds", "Y", "y.npy"), y)
    out = os.path.join(work, "out")
    r = ddts("train", "--model", model, "--dataset", os.path.join(work, "ds"), "--epochs", "1",
             "--batch-size", "4", "--seed", "1", "--threads", "1", "--out", out)
    if not check(r.returncode == 0, "%s: train exit %d: %s" % (name, r.returncode, r.stderr[-2000:])):
        return
    ext = ".keras" if is_zip(model) else os.path.splitext(fname)[1]
    trained = os.path.join(out, "model" + ext)
    if not check(os.path.exists(trained), "%s: no %s in %s" % (name, trained, os.listdir(out))):
        return
    check(structure(trained) == structure(model), "%s: the written file's structure differs" % name)
    w0, w1 = layer_weights(model), layer_weights(trained)
    check(w0.keys() == w1.keys() and any(not np.array_equal(w0[k], w1[k]) for k in w0),
          "%s: the written file does not hold trained weights" % name)
    check(all(np.all(np.isfinite(v)) for v in w1.values()), "%s: non-finite weights written" % name)

    # 3. the written file loads again: ddts and an independent reader agree
    pred2 = os.path.join(work, "pred2.npy")
    r = ddts("predict", "--model", trained, "--x", x, "-o", pred2, "--threads", "1")
    if not check(r.returncode == 0, "%s: predict on the trained file: %s" % (name, r.stderr)):
        return
    oracle = os.path.join(work, "oracle.npy")
    ok, err = npref(trained, x, oracle)
    if not check(ok, "%s: npref.py on the trained file: %s" % (name, err[-1000:])):
        return
    a, b = np.load(pred2), np.load(oracle)
    b = b.reshape(a.shape)
    check(close(a, b.astype(np.float32)), "%s: trained file: ddts and npref.py differ by %g" %
          (name, float(np.abs(a - b).max())))


def main():
    if not os.path.isdir(FX):
        print("FAIL: the fixtures are not at", FX)
        return 1
    names = sorted(f for f in os.listdir(FX) if f.endswith((".h5", ".keras")))
    check(len(names) == 14, "expected 14 fixtures, found %d" % len(names))
    with tempfile.TemporaryDirectory(prefix="ddts-rnn-") as tmp:
        for fname in names:
            one(tmp, fname)
    return 0 if check.finish("test_recurrent_fixtures") else 1


if __name__ == "__main__":
    sys.exit(main())
