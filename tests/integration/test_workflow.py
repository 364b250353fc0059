#!/usr/bin/python3
"""The original workflow's failure paths (issue 13), with the real ddts programs.

1. Checks before serving: a file that is not a model, a model whose input
   does not fit the samples, a label out of range for the loss (named by its
   file and row), labels that do not fit the loss's outputs: `ddts server`
   fails at once, naming the file, and leaves no job in the work folder
   (nothing split, nothing served; before, it split the data and waited for
   clients that could only fail).
"""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, free_port  # noqa: E402

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
check = Checks()


def server(work, *args, timeout=60, tag="w"):
    """Runs `ddts server` (stdin not a terminal); (exit status, stderr, stdout)."""
    argv = [DDTS, "server", "--host", "127.0.0.1", "--port", str(free_port()),
            "--passphrase-file", os.path.join(work, "pass"), "--epochs", "1", "--threads", "1",
            "--seed", "1", "--client-timeout", "20"] + list(args)
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                           timeout=timeout)
        return p.returncode, p.stderr, p.stdout
    except subprocess.TimeoutExpired as e:
        return "timeout", (e.stderr or b"").decode(errors="replace"), ""


def make_data(work):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 8)).astype("float32")
    y = (x[:, 0] > 0).astype("int64")
    for d in ("data/X", "data/Y", "bad/X", "bad/Y"):
        os.makedirs(os.path.join(work, d))
    np.save(os.path.join(work, "data/X/x.npy"), x)
    np.save(os.path.join(work, "data/Y/y.npy"), y)
    # Two files per folder: the bad label is row 7 of the second one.
    np.save(os.path.join(work, "bad/X/a.npy"), x[:60])
    np.save(os.path.join(work, "bad/X/b.npy"), x[60:])
    np.save(os.path.join(work, "bad/Y/a.npy"), y[:60])
    yb = y[60:].copy()
    yb[7] = 5
    np.save(os.path.join(work, "bad/Y/b.npy"), yb)
    with open(os.path.join(work, "pass"), "w") as f:
        f.write("workflow passphrase\n")
    os.chmod(os.path.join(work, "pass"), 0o600)
    for name, shape in (("m.h5", "8"), ("m5.h5", "5")):
        subprocess.run([DDTS, "model", "new", "--layers", "dense:16:relu,dense:2:softmax",
                        "--input-shape", shape, "-o", os.path.join(work, name)], check=True,
                       stdout=subprocess.DEVNULL)
    with open(os.path.join(work, "notmodel.h5"), "w") as f:
        f.write("this is not a model\n")


def section1(work):
    cases = [
        ("not a model", ["--model", os.path.join(work, "notmodel.h5"), "--dataset",
                         os.path.join(work, "data")], ["notmodel.h5", "Keras model file"]),
        ("input does not fit", ["--model", os.path.join(work, "m5.h5"), "--dataset",
                                os.path.join(work, "data")], ["m5.h5", "(5,)", "8 values"]),
        ("label out of range", ["--model", os.path.join(work, "m.h5"), "--dataset",
                                os.path.join(work, "bad")],
         ["bad/Y/b.npy, sample 7", "label 5", "[0, 2)"]),
        ("labels do not fit the loss", ["--model", os.path.join(work, "m.h5"), "--dataset",
                                        os.path.join(work, "data"), "--loss",
                                        "categorical_crossentropy"],
         ["m.h5", "categorical_crossentropy needs 2"]),
    ]
    for i, (what, args, needles) in enumerate(cases):
        wd = os.path.join(work, "s1-%d" % i)
        t0 = time.time()
        rc, err, _ = server(work, "--clients", "2", "--data", "server", "--workdir", wd, *args,
                            timeout=25)
        check(rc == 1, "%s: server exited %s (expected 1 at once): %s" % (what, rc, err[-600:]))
        check(time.time() - t0 < 20, "%s: the server did not fail at start" % what)
        for n in needles:
            check(n in err, "%s: the error does not name %r: %s" % (what, n, err[-600:]))
        jobs = os.listdir(wd) if os.path.isdir(wd) else []
        check(not any(os.path.isdir(os.path.join(wd, j, "shards")) for j in jobs),
              "%s: the data was split into shares anyway: %s" % (what, jobs))


def main():
    work = tempfile.mkdtemp(prefix="ddts-test_workflow-")
    make_data(work)
    section1(work)
    print("test_workflow: %d passed, %d failed" % (check.passed, check.failed))
    if check.failed == 0:
        subprocess.run(["rm", "-rf", work])
    else:
        print("work folder kept:", work)
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
