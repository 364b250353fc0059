#!/usr/bin/python3
"""The issue-20 examples, trained as users run them (the real ddts programs).

examples/cifar_mobilenet.json (a MobileNet-style CNN: Rescaling, a strided
Conv2D, four depthwise-separable blocks of DepthwiseConv2D, BatchNormalization,
ReLU6 and a 1x1 Conv2D, GlobalAveragePooling2D, Dropout, Dense) on CIFAR-10
shaped data, and examples/imdb_transformer.json (a Transformer encoder block:
Embedding, LayerNormalization, MultiHeadAttention, residual Adds, a
feed-forward pair of Dense, GlobalAveragePooling1D) on imdb-shaped token
sequences. The data are synthetic but learnable (a class is a bright patch at
its own place and channel; a review's sentiment is which of two word ranges
its 12 sentiment words come from), so training must take the validation
accuracy far above chance. Each model is made by `ddts model new`, trained by
`ddts train`, and trained again by a 2-client `ddts server` job; the saved
models are checked with h5py (tf.keras 2.x layout: MultiHeadAttention's
weights under query/key/value/attention_output, as tf.keras names them) and
by `ddts evaluate` against the accuracy ddts train reported.
"""
import json
import os
import subprocess
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, run_job, write_passphrase  # noqa: E402

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
SRC = os.environ.get("DDTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
check = Checks()


def run(*argv, timeout=300):
    return subprocess.run([DDTS] + list(argv), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)


def cifar_like(d, n=600):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 10, n)
    x = rng.integers(0, 80, (n, 32, 32, 3)).astype(np.uint8)
    for i in range(n):
        k = y[i]
        r, c = (k // 5) * 16, (k % 5) * 6
        x[i, r:r + 10, c:c + 6, k % 3] = 230
    save(d, x, y.astype(np.int64))


def imdb_like(d, n=600, maxlen=200):
    rng = np.random.default_rng(2)
    x = rng.integers(100, 10000, (n, maxlen))
    y = rng.integers(0, 2, n)
    for i in range(n):
        at = rng.choice(maxlen, 12, replace=False)
        x[i, at] = rng.integers(2, 50, 12) if y[i] else rng.integers(50, 100, 12)
    save(d, x.astype(np.int32), y.astype(np.int64))


def save(d, x, y):
    os.makedirs(os.path.join(d, "X"))
    os.makedirs(os.path.join(d, "Y"))
    np.save(os.path.join(d, "X", "x.npy"), x)
    np.save(os.path.join(d, "Y", "y.npy"), y)


def summary(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def one_example(work, name, data, loss, epochs, min_acc, job_epochs):
    model = os.path.join(work, name + ".h5")
    p = run("model", "new", os.path.join(SRC, "examples", name + ".json"), "--loss", loss,
            "--seed", "3", "-o", model)
    if not check(p.returncode == 0, "%s: model new: %s" % (name, p.stderr[-400:])):
        return
    out = os.path.join(work, name + "-train")
    p = run("train", "--model", model, "--dataset", data, "--epochs", str(epochs),
            "--batch-size", "32", "--threads", "1", "--seed", "1", "--metrics", "accuracy",
            "--out", out)
    s = summary(os.path.join(out, "summary.json"))
    acc = s.get("val_accuracy") or 0
    print("%s: ddts train val_accuracy %.3f after %d epochs" % (name, acc, epochs))
    check(p.returncode == 0 and acc >= min_acc,
          "%s: ddts train: rc %d, val_accuracy %r: %s" % (name, p.returncode, acc,
                                                          p.stderr[-400:]))
    saved = os.path.join(out, "model.h5")
    if os.path.exists(saved):
        with h5py.File(saved, "r") as f:
            names = []
            f["model_weights"].visit(names.append)
        if name == "imdb_transformer":
            check(any(n.endswith("attention_1/query/kernel:0") for n in names) and
                  any(n.endswith("attention_1/attention_output/bias:0") for n in names),
                  "%s: MultiHeadAttention weights not in tf.keras' names: %s" %
                  (name, [n for n in names if "attention" in n]))
        else:
            check(any(n.endswith("conv_dw_4/depthwise_kernel:0") for n in names),
                  "%s: DepthwiseConv2D weight not as tf.keras names it: %s" % (name, names[:8]))
        # The saved model evaluates as well on all the data as training said.
        p = run("evaluate", "--model", saved, "--dataset", data, "--threads", "1")
        check(p.returncode == 0 and "accuracy" in p.stdout,
              "%s: evaluate the saved model: %s %s" % (name, p.stdout[-300:], p.stderr[-300:]))
        for line in p.stdout.splitlines():
            if line.startswith("accuracy"):
                ev = float(line.split(":")[1])
                print("%s: ddts evaluate accuracy %.3f" % (name, ev))
                check(ev >= min_acc, "%s: saved model's accuracy %.3f" % (name, ev))
    # The same model in a 2-client job.
    wd = os.path.join(work, name + "-job")
    write_passphrase(work, "examples passphrase")
    job = run_job(DDTS, work, ["--model", model, "--clients", "2", "--epochs", str(job_epochs),
                               "--batch-size", "32", "--dataset", data, "--threads", "1",
                               "--seed", "1", "--metrics", "accuracy", "--workdir", wd, "--name",
                               "j"], ["%s-c%d" % (name, i) for i in range(2)], timeout=400,
                  retries=2)
    err = job.err
    s = summary(os.path.join(wd, "j", "summary.json"))
    accs = [(c.get("final") or {}).get("val_accuracy") for c in s.get("clients", [])]
    print("%s: 2-client job status %r, clients' val_accuracy %r" % (name, s.get("status"), accs))
    check(job.rc == 0 and s.get("status") == "ok",
          "%s: 2-client job: rc %r, status %r: %s" % (name, job.rc, s.get("status"),
                                                      err[-600:]))
    glob = os.path.join(wd, "j", "global", "model.h5")
    check(os.path.exists(glob), "%s: the job's global model is missing" % name)
    # The global model (the clients' average after the last epoch) on all the data.
    p = run("evaluate", "--model", glob, "--dataset", data, "--threads", "1")
    ev = [float(l.split(":")[1]) for l in p.stdout.splitlines() if l.startswith("accuracy")]
    print("%s: the job's global model: ddts evaluate accuracy %r" % (name, ev))
    check(p.returncode == 0 and ev and ev[0] >= min_acc,
          "%s: global model accuracy %r: %s" % (name, ev, p.stderr[-300:]))


def main():
    work = tempfile.mkdtemp(prefix="ddts-test_examples_mobile-")
    cifar, imdb = os.path.join(work, "cifar"), os.path.join(work, "imdb")
    cifar_like(cifar)
    imdb_like(imdb)
    # A client trains on a third of the data, 7 steps an epoch: BatchNormalization's
    # moving statistics (momentum 0.9) need about as many steps as ddts train's 4 epochs.
    one_example(work, "cifar_mobilenet", cifar, "sparse_categorical_crossentropy", 4, 0.5, 9)
    one_example(work, "imdb_transformer", imdb, "binary_crossentropy", 3, 0.8, 3)
    return 0 if check.finish("test_examples_mobile", work) else 1


if __name__ == "__main__":
    sys.exit(main())
