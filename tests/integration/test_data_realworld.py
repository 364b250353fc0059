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
import shutil
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
    check(rc == 1 and "row 3, column C ('species') (cell C3): text 'oops'" in out,
          "xlsx column name: " + out)

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

# --samples larger than the data says the data's size.
rc, out = train(path("labels"), "--samples", "100")
check(rc == 1 and "--samples 100" in out and "holds only 10 training samples" in out,
      "--samples 100: " + out)
rc, out = train(path("labels"), "--samples", "10")
check(rc == 0, "--samples 10 (all): " + out)

print("%d checks passed, %d failed" % (check.passed, check.failed))
if not check.failed:
    shutil.rmtree(WORK, ignore_errors=True)
sys.exit(1 if check.failed else 0)
