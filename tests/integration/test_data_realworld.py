#!/usr/bin/python3
"""Data as people have it (issue 13, section 4), through the real `ddts`
program: labels (N,) and (N, 1) in one folder, pandas' column-index CSV
header, header names in CSV and xlsx messages, NaN / inf / empty cells in
training data, .npz files with several arrays (--x-key, --y-key and the
x / x_train defaults), --order XX with X/ only, and --samples beyond the data.
Files are written here by numpy and pandas (Debian's python3-numpy,
python3-pandas when installed).
"""
import os
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
WORK = tempfile.mkdtemp(prefix="ddts-test_data_realworld-")
check = Checks()
try:
    import pandas as pd
except ImportError:  # pragma: no cover
    pd = None
try:
    import openpyxl
except ImportError:  # pragma: no cover
    openpyxl = None


def run(*args):
    p = subprocess.run([DDTS, *args], capture_output=True, text=True, timeout=120, cwd=WORK)
    return p.returncode, p.stdout + p.stderr


def path(*parts):
    return os.path.join(WORK, *parts)


def folder(name, xs, ys):
    """A dataset folder: xs / ys map file names to arrays (or text for .csv)."""
    for sub, files in (("X", xs), ("Y", ys)):
        if files is None:
            continue
        os.makedirs(path(name, sub), exist_ok=True)
        for fn, a in files.items():
            p = path(name, sub, fn)
            if fn.endswith(".npy"):
                np.save(p, a)
            elif fn.endswith(".npz"):
                np.savez(p, **a)
            else:
                with open(p, "w") as f:
                    f.write(a)
    return path(name)


def train(dataset, *flags, model="clf.h5"):
    return run("train", "--model", model, "--dataset", dataset, "--epochs", "1", "--seed", "1",
               "--threads", "1", "--out", path("out-" + os.path.basename(dataset)), *flags)


rc, out = run("model", "new", "--layers", "dense:3:softmax", "--input-shape", "4", "-o", "clf.h5")
check(rc == 0, "model new clf: " + out)
rc, out = run("model", "new", "--layers", "dense:2:relu,dense:4", "--input-shape", "4",
              "--loss", "mse", "-o", "ae.h5")
check(rc == 0, "model new ae: " + out)
rng = np.random.default_rng(7)

# Labels (N,) and (N, 1) from two files of one folder concatenate.
d = folder("labels", {"a.npy": rng.random((6, 4), dtype=np.float32),
                      "b.npy": rng.random((4, 4), dtype=np.float32)},
           {"a.npy": np.arange(6) % 3, "b.npy": (np.arange(4) % 3).reshape(4, 1)})
rc, out = train(d)
check(rc == 0, "labels (6,) + (4, 1) should train: " + out)
# A real mismatch names both files and both shapes.
d = folder("labels_bad", {"a.npy": rng.random((6, 4)), "b.npy": rng.random((4, 3))},
           {"a.npy": np.arange(6) % 3, "b.npy": np.arange(4) % 3})
rc, out = train(d)
check(rc == 1 and "X/a.npy has shape (6, 4)" in out and "X/b.npy has shape (4, 3)" in out,
      "mismatch message: " + out)

# pandas' column-index header 0,1,...,K-1 is a header (row 1 is not data).
x = rng.random((5, 4))
csv_text = "0,1,2,3\n" + "".join(",".join("%.6f" % v for v in r) + "\n" for r in x)
if pd is not None:
    pd.DataFrame(x).to_csv(path("pandas.csv"), index=False)
    csv_text = open(path("pandas.csv")).read()
    check(csv_text.startswith("0,1,2,3\n"), "pandas wrote: " + csv_text[:20])
with open(path("index.csv"), "w") as f:
    f.write(csv_text)
rc, out = run("convert", "index.csv", "index.npy")
got = np.load(path("index.npy")) if rc == 0 else None
check(rc == 0 and got.shape == (5, 4) and np.allclose(got, x, atol=1e-6),
      "index header: shape %s, %s" % (None if got is None else got.shape, out))
# ... but one-hot rows "0,1" that repeat below are data.
with open(path("onehot.csv"), "w") as f:
    f.write("0,1\n1,0\n0,1\n")
rc, out = run("convert", "onehot.csv", "onehot.npy")
check(rc == 0 and np.load(path("onehot.npy")).shape == (3, 2), "one-hot rows: " + out)

# The same in .xlsx: pandas.DataFrame.to_excel(index=False) writes the column
# index 0..K-1 as numbers in row 1; it is the header, not a row of data.
if openpyxl is not None:
    if pd is not None:
        pd.DataFrame(x).to_excel(path("pandas.xlsx"), index=False)
    else:
        wb = openpyxl.Workbook()
        wb.active.append([0, 1, 2, 3])
        for r in x:
            wb.active.append([float(v) for v in r])
        wb.save(path("pandas.xlsx"))
    rc, out = run("convert", "pandas.xlsx", "pandas_xlsx.npy")
    got = np.load(path("pandas_xlsx.npy")) if rc == 0 else None
    check(rc == 0 and got.shape == (5, 4) and np.allclose(got, x, atol=1e-12),
          "xlsx index header: shape %s, %s" % (None if got is None else got.shape, out))
    # One-hot rows 0, 1 repeated below are data; a row 0, 1, 2 over 4 columns too.
    for name, rows_, shape in (("onehot.xlsx", [[0, 1], [1, 0], [0, 1]], (3, 2)),
                               ("short.xlsx", [[0, 1, 2, None], [5, 6, 7, 8], [1, 2, 3, 4]],
                                None),
                               ("notindex.xlsx", [[0, 2, 1], [5, 6, 7]], (2, 3))):
        wb = openpyxl.Workbook()
        for r in rows_:
            wb.active.append(r)
        wb.save(path(name))
        rc, out = run("convert", name, name + ".npy")
        if shape is None:
            check(rc == 1 and "row 1, column 4 (cell D1): empty cell" in out,
                  "%s: row 1 is data (0,1,2 is not the index of 4 columns): %s" % (name, out))
        else:
            check(rc == 0 and np.load(path(name + ".npy")).shape == shape, "%s: %s" % (name, out))
    # An error in a sheet with the index header names the column by number and header.
    wb = openpyxl.Workbook()
    for r in ([0, 1, 2], [1, 2, 3], [4, "x", 6]):
        wb.active.append(r)
    wb.save(path("index_bad.xlsx"))
    rc, out = run("convert", "index_bad.xlsx", "index_bad.npy")
    check(rc == 1 and "row 3, column 2 ('1') (cell B3): text 'x' is not a number" in out,
          "xlsx index header in a message: " + out)

# Header names in CSV messages.
with open(path("iris.csv"), "w") as f:
    f.write("sepal,petal,width,species\n1,2,3,4\n5,6,7,x\n")
rc, out = run("convert", "iris.csv", "iris.npy")
check(rc == 1 and "row 3 (line 3), column 4 ('species'): 'x' is not a number" in out,
      "csv column name: " + out)
if openpyxl is not None:
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["sepal", "petal", "species"])
    ws.append([1, 2, 3])
    ws.append([4, 5, "oops"])
    wb.save(path("iris.xlsx"))
    rc, out = run("convert", "iris.xlsx", "iris2.npy")
    check(rc == 1 and "row 3, column 3 ('species') (cell C3): text 'oops'" in out,
          "xlsx column name: " + out)
    # openpyxl writes NaN as an empty value: a missing cell in training data.
    wb = openpyxl.Workbook()
    ws = wb.active
    ws.append(["f1", "f2", "f3", "f4"])
    ws.append([1, 2, 3, 4])
    ws.append([5, float("nan"), 7, 8])
    os.makedirs(path("bad_xlsx", "X"))
    os.makedirs(path("bad_xlsx", "Y"))
    wb.save(path("bad_xlsx", "X", "a.xlsx"))
    np.save(path("bad_xlsx", "Y", "a.npy"), np.array([0, 1]))
    rc, out = train(path("bad_xlsx"))
    check(rc == 1 and "X/a.xlsx: row 3, column 2 ('f2') (cell B3): empty cell" in out,
          "NaN in xlsx: " + out)

# NaN, nan, inf and empty cells in training data: file, row and column.
cases = [("nan", "NaN"), ("nan", "nan"), ("inf", "inf"), ("ninf", "-inf"), ("big", "1e999")]
for tag, cell in cases:
    d = folder("bad_" + tag + cell.replace("-", "m"),
               {"a.csv": "f1,f2,f3,f4\n1,2,3,4\n5,%s,7,8\n" % cell},
               {"a.npy": np.array([0, 1])})
    rc, out = train(d)
    check(rc == 1 and "X/a.csv: row 3 (line 3), column 2 ('f2'): '%s' is not a finite number"
          % cell in out, "%s in a CSV: %s" % (cell, out))
d = folder("bad_empty", {"a.csv": "f1,f2,f3,f4\n1,2,3,4\n5,6,,8\n"}, {"a.npy": np.array([0, 1])})
rc, out = train(d)
check(rc == 1 and "row 3 (line 3), column 3 ('f3'): empty cell" in out, "empty cell: " + out)
a = rng.random((6, 4)).astype(np.float32)
a[4, 1] = np.nan
d = folder("bad_npy", {"a.npy": a}, {"a.npy": np.arange(6) % 3})
rc, out = train(d)
check(rc == 1 and "X/a.npy: element [4, 1] (sample 4) is NaN" in out, "NaN in npy: " + out)
# The same file still converts (inspecting data is not training on it).
rc, out = run("convert", "bad_npy/X/a.npy", "nan_ok.npy")
check(rc == 0, "convert keeps NaN: " + out)

# npz with several arrays: defaults x_train / y, keys, the error lists names.
xa = rng.random((6, 4), dtype=np.float32)
d = folder("npz_default", {"a.npz": {"x_train": xa, "x_test": xa[:2]}},
           {"a.npz": {"y": np.arange(6) % 3, "ids": np.arange(6)}})
rc, out = train(d)
check(rc == 0, "x_train / y defaults: " + out)
d = folder("npz_keys", {"a.npz": {"feat": xa, "other": xa[:2]}},
           {"a.npz": {"labels": np.arange(6) % 3, "ids": np.arange(6)}})
rc, out = train(d)
check(rc == 1 and "X/a.npz holds 2 arrays ('feat', 'other')" in out and "--x-key" in out,
      "no default: " + out)
rc, out = train(d, "--x-key", "feat", "--y-key", "labels")
check(rc == 0, "--x-key/--y-key: " + out)
rc, out = train(d, "--x-key", "feat", "--y-key", "nope")
check(rc == 1 and "no array 'nope'" in out, "--y-key nope: " + out)

# --order XX with DIR/X only.
d = folder("xx", {"a.npy": rng.random((8, 4), dtype=np.float32)}, None)
rc, out = train(d, "--order", "XX", model="ae.h5")
check(rc == 0, "XX without Y/: " + out)
rc, out = train(d, model="ae.h5")
check(rc == 1 and "xx/Y" in out, "XY without Y/ still needs it: " + out)

# The model saved from an XX job maps raw X to raw X: the output carries
# Normalization(invert=True) with the input's statistics. Oracle: numpy runs
# the saved layers from the file's own weights as Keras defines them
# (Normalization: (x - mean) / sqrt(var); invert: mean + x * sqrt(var)).
try:
    import h5py
except ImportError:  # pragma: no cover
    h5py = None
z = rng.standard_normal((300, 3))
xr = (50 + 10 * z @ rng.standard_normal((3, 4)) + rng.standard_normal((300, 4))).astype(np.float32)
d = folder("xx_raw", {"x.npy": xr}, None)
rc, out = run("model", "new", "--layers", "dense:2,dense:4", "--input-shape", "4", "--loss", "mse",
              "--learning-rate", "0.02", "-o", "ae2.h5")
rc, out = train(d, "--order", "XX", "--normalizer", "zscore", "--epochs", "20",
                "--validation-split", "0", model="ae2.h5")
saved = path("out-xx_raw", "model.h5")
if check(rc == 0, "XX zscore: " + out):
    rc, out = run("predict", "--model", saved, "--x", "xx_raw/X/x.npy", "-o", "pred.npy")
    pred = np.load(path("pred.npy")) if rc == 0 else None
    check(pred is not None, "predict: " + out)
    rc, out = run("evaluate", "--model", saved, "--x", "xx_raw/X/x.npy", "--y", "xx_raw/X/x.npy")
    ev = [float(l.split()[1]) for l in out.splitlines() if l.startswith("loss:")]
    hist = np.genfromtxt(path("out-xx_raw", "history.csv"), delimiter=",", names=True)
    train_loss = float(np.atleast_1d(hist["loss"])[-1])
    if pred is not None and ev:
        raw_mse = float(np.mean((pred.astype(np.float64) - xr) ** 2))
        check(abs(ev[0] - raw_mse) <= 1e-3 * raw_mse + 1e-6,
              "evaluate %g vs numpy mse of the predictions %g" % (ev[0], raw_mse))
        # The training figures are in raw units too (those of the saved model): the
        # last epoch's loss, a running mean over its batches, equals evaluate's on
        # the final weights once training has settled (no dropout in this model).
        check(abs(ev[0] - train_loss) <= 0.02 * ev[0],
              "evaluate's loss %g vs the last epoch's %g (history.csv)" % (ev[0], train_loss))
    if h5py is not None and pred is not None:
        import json
        f = h5py.File(saved, "r")
        layers = json.loads(f.attrs["model_config"])["config"]["layers"]
        kinds = [(l["class_name"], l["config"].get("invert", False)) for l in layers]
        check(kinds[-1] == ("Normalization", True) and ("Normalization", False) in kinds,
              "layers: %s" % kinds)
        w = {}
        f["model_weights"].visititems(
            lambda n, o: w.__setitem__(n.split("/")[-1].split(":")[0] + "@" + n.split("/")[0], o[()])
            if isinstance(o, h5py.Dataset) else None)
        names = [l["config"]["name"] for l in layers]
        nin, d1, d2, nout = names[1], names[2], names[3], names[4]
        h = (xr - w["mean@" + nin]) / np.sqrt(w["variance@" + nin])
        h = h @ w["kernel@" + d1] + w["bias@" + d1]
        h = h @ w["kernel@" + d2] + w["bias@" + d2]
        h = w["mean@" + nout] + h * np.sqrt(w["variance@" + nout])
        check(np.allclose(w["mean@" + nin], w["mean@" + nout]) and
              np.allclose(w["mean@" + nin], xr.mean(0), rtol=1e-4),
              "denormalizer statistics are the input's")
        check(np.allclose(pred, h, rtol=1e-4, atol=1e-3), "ddts predict vs numpy: max diff %g"
              % float(np.max(np.abs(pred - h))))

# --samples larger than the data says the data's size.
rc, out = train(path("labels"), "--samples", "100")
check(rc == 1 and "--samples 100" in out and "holds only 10 training samples" in out,
      "--samples 100: " + out)
rc, out = train(path("labels"), "--samples", "10")
check(rc == 0, "--samples 10 (all): " + out)

sys.exit(0 if check.finish("test_data_realworld", WORK) else 1)
