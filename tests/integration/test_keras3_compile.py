#!/usr/bin/python3
"""Keras 3 compile information and the best-model checkpoint (issue 13, section 5).

- A real Keras 3 .keras file (../shared/keras-fixtures, Keras 3.x) keeps
  compile() in config.json under compile_config: `ddts inspect` shows its
  optimizer and loss, `ddts train` needs no --loss, and the optimizer may be
  an object or a plain name (a copy of the file with compile_config edited).
- best_model is chosen on val_accuracy when the model has an accuracy metric
  (else val_loss), as the original tool's ModelCheckpoint; --monitor NAME
  chooses another logged value, and an unknown name is an error listing them.
"""
import csv
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
SRC = os.environ.get("DDTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.abspath(os.path.join(SRC, "..", "shared", "keras-fixtures"))
WORK = tempfile.mkdtemp(prefix="ddts-test_keras3_compile-")
check = Checks()
MODEL = os.path.join(FIX, "k3_10_embedding_globalavgpool_sentiment.keras")


def run(*args):
    p = subprocess.run([DDTS, *args], capture_output=True, text=True, timeout=120, cwd=WORK)
    return p.returncode, p.stdout + p.stderr


if not os.path.exists(MODEL):
    print("SKIP: no fixture", MODEL)
    sys.exit(0)
cc = json.loads(zipfile.ZipFile(MODEL).read("config.json"))["compile_config"]
check(cc["loss"] == "binary_crossentropy" and cc["optimizer"]["class_name"] == "Adam",
      "fixture's compile_config: %s" % cc)

rc, out = run("inspect", MODEL)
check(rc == 0 and "Loss: binary_crossentropy" in out and "Optimizer: adam (learning rate 0.001)"
      in out and "Not compiled" not in out, "inspect k3_10: " + out[-300:])

# compile(optimizer="rmsprop", loss="mean_squared_error"): the optimizer as a name.
named = os.path.join(WORK, "named.keras")
with zipfile.ZipFile(MODEL) as zin, zipfile.ZipFile(named, "w") as zout:
    for item in zin.infolist():
        data = zin.read(item.filename)
        if item.filename == "config.json":
            cfg = json.loads(data)
            cfg["compile_config"]["optimizer"] = "rmsprop"
            cfg["compile_config"]["loss"] = "mean_squared_error"
            cfg["compile_config"]["metrics"] = None
            data = json.dumps(cfg).encode()
        zout.writestr(item, data)
rc, out = run("inspect", named)
check(rc == 0 and "Loss: mean_squared_error" in out and "Optimizer: rmsprop" in out,
      "inspect named optimizer: " + out[-300:])

# Training without --loss; the best model by val_accuracy.
x = np.load(os.path.join(FIX, "k3_10_embedding_globalavgpool_sentiment.x.npy"))
os.makedirs(os.path.join(WORK, "d", "X"))
os.makedirs(os.path.join(WORK, "d", "Y"))
X = np.concatenate([x] * 8)
np.save(os.path.join(WORK, "d", "X", "x.npy"), X)
np.save(os.path.join(WORK, "d", "Y", "y.npy"), (np.arange(len(X)) % 2).astype(np.float32))


def train(out, *flags):
    return run("train", "--model", MODEL, "--dataset", "d", "--epochs", "4", "--seed", "3",
               "--threads", "1", "--out", out, *flags)


def best_line(out):
    for line in open(os.path.join(WORK, out, "train.log")):
        if "best model: epoch" in line:
            return line.split("best model: ")[1].strip()
    return None


def history(out):
    with open(os.path.join(WORK, out, "history.csv")) as f:
        return list(csv.DictReader(f))


rc, out = train("auto")
check(rc == 0, "train without --loss: " + out[-400:])
if rc == 0:
    h = history("auto")
    acc = [float(r["val_accuracy"]) for r in h]
    want = int(np.argmax(acc)) + 1  # first best, as ModelCheckpoint(save_best_only)
    check(best_line("auto") == "epoch %d by val_accuracy" % want,
          "auto monitor: %s, val_accuracy %s" % (best_line("auto"), acc))
    check(os.path.exists(os.path.join(WORK, "auto", "best_model.keras")), "best_model.keras")
    rc, out = run("inspect", os.path.join(WORK, "auto", "model.keras"))
    check(rc == 0 and "Loss: binary_crossentropy" in out, "written model keeps compile: " + out)
rc, out = train("byloss", "--monitor", "val_loss")
if check(rc == 0, "--monitor val_loss: " + out[-400:]):
    loss = [float(r["val_loss"]) for r in history("byloss")]
    check(best_line("byloss") == "epoch %d by val_loss" % (int(np.argmin(loss)) + 1),
          "val_loss monitor: %s, %s" % (best_line("byloss"), loss))
rc, out = train("bad", "--monitor", "val_mae")
check(rc != 0 and "monitor 'val_mae' is not logged (logged: loss, accuracy, val_loss, "
      "val_accuracy)" in out, "--monitor val_mae: " + out[-300:])
# A model without an accuracy metric: val_loss.
rc, out = run("model", "new", "--layers", "dense:1", "--input-shape", "4", "--loss", "mse",
              "--metrics", "mae", "-o", "reg.h5")
os.makedirs(os.path.join(WORK, "r", "X"))
os.makedirs(os.path.join(WORK, "r", "Y"))
np.save(os.path.join(WORK, "r", "X", "x.npy"), np.random.RandomState(0).rand(40, 4))
np.save(os.path.join(WORK, "r", "Y", "y.npy"), np.random.RandomState(1).rand(40))
rc, out = run("train", "--model", "reg.h5", "--dataset", "r", "--epochs", "3", "--seed", "1",
              "--out", "reg")
if check(rc == 0, "regression: " + out[-300:]):
    check((best_line("reg") or "").endswith("by val_loss"), "regression monitor: %s"
          % best_line("reg"))

sys.exit(0 if check.finish("test_keras3_compile", WORK) else 1)
