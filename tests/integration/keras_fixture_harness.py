"""The Keras fixture check shared by test_keras_fixtures2.py (real files of
../shared/keras-fixtures-2) and test_keras_layers20.py (the issue-20 files of
tests/data/keras20). For one model file, `one()` checks:
  1. `ddts predict` on its fixed input matches the committed reference within 1e-5
     absolute + 1e-4 relative;
  2. `ddts train` runs one epoch (batch 4, every sample in training) and writes the
     trained model in the source format;
  3. the written file has the input's structure: the same model_weights groups and
     datasets (names, shapes, dtypes) and the same top-level attributes (and for a
     .keras file the same model config);
  4. its weights changed (training happened and was written), a weight of the named
     layer among them, and `ddts predict` on it agrees with a float64 numpy forward
     pass of the written file (an npref tool that reads every weight by name,
     independently of ddts) within the same tolerance: the trained weights were
     written where Keras looks for them.
"""
import io
import json
import os
import subprocess
import sys
import zipfile

import h5py
import numpy as np

DDTS = os.environ.get("DDTS", os.path.abspath("ddts"))
SRC = os.environ.get("DDTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FIX2 = os.path.join(SRC, "..", "shared", "keras-fixtures-2")


def close(a, r):
    return a.shape == r.shape and bool(np.all(np.abs(a - r) <= 1e-5 + 1e-4 * np.abs(r)))


def run(args, timeout=300):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout)


def x_flags(xs):
    """One --x per input, in the model's input order (xs: a path or a list of them)."""
    return [a for x in ([xs] if isinstance(xs, str) else xs) for a in ("--x", x)]


def predict(check, model, xs, out):
    p = run([DDTS, "predict", "--model", model] + x_flags(xs) + ["-o", out, "--threads", "2"])
    if not check(p.returncode == 0, "predict %s: %s" % (model, p.stderr.strip())):
        return None
    return np.load(out)


def h5_of(path):
    """(open h5py File, weights group name): model_weights of an .h5, layers of a .keras."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return h5py.File(io.BytesIO(z.read("model.weights.h5")), "r"), "layers"
    return h5py.File(path, "r"), "model_weights"


def loss_text(path):
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return json.dumps(json.loads(z.read("config.json")).get("compile_config"))
    with h5py.File(path, "r") as f:
        return str(f.attrs.get("training_config", ""))


def structure(path):
    """Top-level attribute names and every weights object: (kind, shape, dtype)."""
    f, top = h5_of(path)
    with f:
        d = {"attrs": sorted(f.attrs.keys())}
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                d["zip"] = sorted(z.namelist())
        g = f[top]

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                d[name] = ("dataset", obj.shape, obj.dtype.str)
            else:
                d[name] = ("group", sorted(obj.attrs.keys()))
        g.visititems(visit)
    return d


def kernels(path):
    out = {}
    f, top = h5_of(path)
    with f:
        f[top].visititems(
            lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def one(check, tmp, folder, fname, ref_kind, trained_layer, npref, needs=()):
    """Checks 1-4 for folder/fname (reference NAME.REF_KIND.npy, input NAME.x.npy, or
    NAME.x0.npy, NAME.x1.npy for two inputs);
    trained_layer: a layer name (or a list) whose weights training must change;
    npref: the numpy forward tool; a predict failure naming one of `needs` skips."""
    name = fname.rsplit(".", 1)[0]
    ext = fname.rsplit(".", 1)[1]
    model = os.path.join(folder, fname)
    x = os.path.join(folder, name + ".x.npy")
    # a model with several inputs: NAME.x0.npy, NAME.x1.npy, ... in its input order
    xs = [x] if os.path.exists(x) else [os.path.join(folder, "%s.x%d.npy" % (name, i))
                                        for i in range(2)]
    ref = np.load(os.path.join(folder, "%s.%s.npy" % (name, ref_kind)))
    p = run([DDTS, "predict", "--model", model] + x_flags(xs) +
            ["-o", os.path.join(tmp, "probe.npy"), "--threads", "2"])
    if p.returncode != 0 and any(n in p.stderr for n in needs):
        print("SKIP %s: %s" % (name, p.stderr.strip()))
        return
    got = predict(check, model, xs, os.path.join(tmp, name + ".pred.npy"))
    if got is None:
        return
    check(close(got, ref), "%s: predict differs from the reference by %g"
          % (name, float(np.abs(got - ref).max()) if got.shape == ref.shape else -1))
    # one epoch on the fixed input with labels cycling through the classes
    # (a model with several inputs: one folder per input, X/, X2/, ...)
    data = os.path.join(tmp, name + "_data")
    os.makedirs(os.path.join(data, "Y"))
    for i, xi in enumerate(xs):
        os.makedirs(os.path.join(data, "X%s" % (i + 1 if i else "")))
        np.save(os.path.join(data, "X%s" % (i + 1 if i else ""), "x.npy"), np.load(xi))
    k = ref.shape[1]
    labels = np.arange(len(ref)) % k
    loss = loss_text(model)
    if '"loss": "mse"' in loss:  # a regression (the recommender's rating)
        target = (ref + 1.0).astype(np.float32)
    elif "sparse" in loss:
        target = labels.astype(np.float32)
    else:
        target = np.eye(k, dtype=np.float32)[labels]
    np.save(os.path.join(data, "Y", "y.npy"), target)
    out = os.path.join(tmp, name + "_train")
    p = run([DDTS, "train", "--model", model, "--data", "server", "--dataset", data, "--epochs",
             "1", "--batch-size", "4", "--validation-split", "0", "--threads", "2", "--out", out])
    if not check(p.returncode == 0, "%s: train: %s" % (name, p.stderr.strip()[-500:])):
        return
    written = [n for n in os.listdir(out) if n.startswith("model.")]
    if not check(len(written) == 1, "%s: no model written: %s" % (name, os.listdir(out))):
        return
    trained = os.path.join(out, written[0])
    # legacy HDF5 stays HDF5 (.hdf5 is written as .h5)
    check(written[0].endswith("5") == ext.endswith("5"), "%s: wrote %s" % (name, written[0]))
    check(structure(trained) == structure(model), "%s: written file's structure differs" % name)
    if zipfile.is_zipfile(model):  # the model config (Keras 3 op nodes included) unchanged
        with zipfile.ZipFile(model) as a, zipfile.ZipFile(trained) as b:
            ca, cb = json.loads(a.read("config.json")), json.loads(b.read("config.json"))
        check(ca["config"] == cb["config"], "%s: model config changed on write-back" % name)
    before, after = kernels(model), kernels(trained)
    changed = [n for n in before if n in after and before[n].shape == after[n].shape
               and before[n].dtype.kind == "f" and not np.array_equal(before[n], after[n])]
    check(len(changed) > 0, "%s: no weight changed in training" % name)
    # the new layers' weights are among the trained ones
    for tl in trained_layer if isinstance(trained_layer, (list, tuple)) else [trained_layer]:
        check(any(tl in n for n in changed), "%s: %s not trained" % (name, tl))
    got2 = predict(check, trained, xs, os.path.join(tmp, name + ".pred2.npy"))
    np_out = os.path.join(tmp, name + ".npref.npy")
    p = run([sys.executable, npref, trained, ",".join(xs), np_out])
    if not check(p.returncode == 0, "%s: npref: %s" % (name, p.stderr.strip()[-500:])):
        return
    npr = np.load(np_out)
    if got2 is not None:
        check(close(got2, npr), "%s: trained file: ddts and numpy differ by %g"
              % (name, float(np.abs(got2 - npr).max())))
        check(not np.array_equal(got2, got), "%s: trained predictions equal the original" % name)
