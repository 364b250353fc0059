"""Models with several inputs: data folders with X/, X2/, ..., one --x per input.

The model is the two-input recommender of ../shared/keras-fixtures-2 (Embedding of a
user id and of a job id, Flatten, Dot), a real tf.keras 2.13 file. The data are 240
(user, job) pairs, all different, with a rating.

1. `ddts train` on a folder with X/ (user ids), X2/ (job ids) and Y/ trains two
   epochs and writes the model; its predictions (`ddts predict --x X --x X2`) agree
   with the fixtures' own float64 numpy forward pass of the written file
   (tools/npref.py, independent of ddts) and differ from the untrained model's;
   `ddts evaluate` with --dataset and with two --x gives the same loss.
2. A server job (`--data server`, 2 clients) on that folder: both shares train, and
   each share's rows (the packed x.npy of the share and its y.npy) are rows of the
   original data, user, job and rating of one sample together (row-aligned).
3. `ddts inspect` lists the inputs in order. Clear errors when the number of inputs
   differs from the model's: one --x for the
   two-input model, a folder with X/ only, X/ and X2/ for a one-input model (train
   and a server job, which refuses at start), and X2/ holding other rows than X/.

Run by CTest with the build folder as working directory.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, data_job_args, free_port, run_job, write_passphrase  # noqa: E402

DDTS = os.environ.get("DDTS", os.path.abspath("ddts"))
SRC = os.environ.get("DDTS_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(SRC, "..", "shared", "keras-fixtures-2")
MODEL = os.path.join(FIX, "tfk2_13_embedding_dot_recommender.h5")
check = Checks()


def run(args, timeout=120):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def close(a, r):
    return a.shape == r.shape and bool(np.all(np.abs(a - r) <= 1e-5 + 1e-4 * np.abs(r)))


def make_data(tmp):
    rng = np.random.default_rng(7)
    pairs = set()
    while len(pairs) < 240:
        pairs.add((int(rng.integers(1, 1281)), int(rng.integers(1, 71))))
    pairs = sorted(pairs, key=lambda p: (p[0] * 7919 + p[1] * 104729) % 1000003)
    users = np.array([[p[0]] for p in pairs], dtype=np.int32)
    jobs = np.array([[p[1]] for p in pairs], dtype=np.float32)
    rating = ((users[:, 0] % 5) + (jobs[:, 0] % 3)).astype(np.float32)[:, None]
    data = os.path.join(tmp, "data")
    for sub, arr in (("X", users), ("X2", jobs), ("Y", rating)):
        os.makedirs(os.path.join(data, sub))
        np.save(os.path.join(data, sub, "part.npy"), arr)
    np.save(os.path.join(tmp, "users.npy"), users)
    np.save(os.path.join(tmp, "jobs.npy"), jobs)
    return data, users, jobs, rating


def predict(model, xs, out):
    p = run([DDTS, "predict", "--model", model] + [a for x in xs for a in ("--x", x)] +
            ["-o", out, "--threads", "1"])
    check(p.returncode == 0, "predict %s: %s" % (model, p.stderr.strip()))
    return np.load(out) if p.returncode == 0 else None


def loss_of(stdout):
    for line in stdout.splitlines():
        if line.startswith("loss: "):
            return float(line.split()[1])
    return None


def section1(tmp, data):
    xs = [os.path.join(tmp, "users.npy"), os.path.join(tmp, "jobs.npy")]
    out = os.path.join(tmp, "train")
    p = run([DDTS, "train", "--model", MODEL, "--data", "server", "--dataset", data, "--epochs",
             "2", "--batch-size", "16", "--validation-split", "0.25", "--threads", "1", "--seed",
             "3", "--out", out])
    if not check(p.returncode == 0, "train on X/ + X2/: %s" % p.stderr.strip()[-800:]):
        return
    trained = os.path.join(out, "model.h5")
    check(os.path.exists(trained), "no model.h5 in %s" % os.listdir(out))
    hist = open(os.path.join(out, "history.csv")).read().strip().splitlines()
    check(len(hist) == 3 and "val_loss" in hist[0], "history.csv: %r" % hist)
    before = predict(MODEL, xs, os.path.join(tmp, "before.npy"))
    after = predict(trained, xs, os.path.join(tmp, "after.npy"))
    npo = os.path.join(tmp, "npref.npy")
    q = run([sys.executable, os.path.join(FIX, "tools", "npref.py"), trained, ",".join(xs), npo])
    if check(q.returncode == 0, "npref: %s" % q.stderr.strip()[-500:]) and after is not None:
        ref = np.load(npo)
        check(close(after, ref), "trained model: ddts and numpy differ by %g"
              % float(np.abs(after - ref).max()))
        check(before is not None and not np.array_equal(before, after),
              "training did not change the predictions")
    # evaluate: the folder and two --x files give the same loss
    e1 = run([DDTS, "evaluate", "--model", trained, "--dataset", data, "--threads", "1"])
    e2 = run([DDTS, "evaluate", "--model", trained, "--x", xs[0], "--x", xs[1], "--y",
              os.path.join(data, "Y", "part.npy"), "--threads", "1"])
    check(e1.returncode == 0 and e2.returncode == 0,
          "evaluate: %s %s" % (e1.stderr.strip(), e2.stderr.strip()))
    l1, l2 = loss_of(e1.stdout), loss_of(e2.stdout)
    check(l1 is not None and l1 == l2, "evaluate: loss %r (--dataset) vs %r (--x --x)" % (l1, l2))
    if after is not None and l1 is not None:
        y = np.load(os.path.join(data, "Y", "part.npy"))
        mse = float(np.mean((after.astype(np.float64) - y) ** 2))
        check(abs(mse - l1) <= 1e-4 * max(1.0, mse), "evaluate's loss %g, numpy's mse %g"
              % (l1, mse))


def section2(tmp, data, users, jobs, rating):
    write_passphrase(tmp, "multi input passphrase")
    wd = os.path.join(tmp, "work")
    job = run_job(DDTS, tmp, data_job_args(MODEL, data, wd, "rec",
                                           extra=["--epochs", "2", "--batch-size", "16"]),
                  ("c0", "c1"))
    check(job.rc == 0, "server job on X/ + X2/: exit %s: %s\nclients: %s"
          % (job.rc, job.err[-800:], job.logs[-800:]))
    rows = {(int(u), float(j), float(r)) for u, j, r in zip(users[:, 0], jobs[:, 0], rating[:, 0])}
    seen = 0
    for c in range(2):
        sd = os.path.join(wd, "rec", "shards", "shard_%d" % c)
        if not check(os.path.exists(os.path.join(sd, "x.npy")), "no share %d in %s" % (c, sd)):
            continue
        x, y = np.load(os.path.join(sd, "x.npy")), np.load(os.path.join(sd, "y.npy"))
        check(x.ndim == 2 and x.shape[1] == 2, "share %d: x.npy has shape %s, not (n, 2)"
              % (c, x.shape))
        got = {(int(a), float(b), float(r)) for (a, b), r in zip(x, y[:, 0])}
        check(len(got) == len(x) and got <= rows,
              "share %d: %d of %d rows are not rows of the data (inputs not row-aligned)"
              % (c, len(got - rows), len(x)))
        seen += len(x)
    check(seen == len(users), "the shares hold %d samples, the data %d" % (seen, len(users)))


def section3(tmp, data):
    xs = [os.path.join(tmp, "users.npy"), os.path.join(tmp, "jobs.npy")]
    p = run([DDTS, "inspect", MODEL])
    check(p.returncode == 0 and "Inputs (--x and X/, X2/, ... in this order): input_1 (None, 1), "
          "input_2 (None, 1)" in p.stdout, "inspect does not list the inputs: %s" % p.stdout[-400:])
    p = run([DDTS, "predict", "--model", MODEL, "--x", xs[0], "-o",
             os.path.join(tmp, "p.npy")])
    check(p.returncode != 0 and "takes 2 inputs (input_1, input_2, in this order); --x gives 1"
          in p.stderr, "predict with one --x: %s" % p.stderr.strip())
    only_x = os.path.join(tmp, "only_x")
    shutil.copytree(data, only_x)
    shutil.rmtree(os.path.join(only_x, "X2"))
    p = run([DDTS, "train", "--model", MODEL, "--data", "server", "--dataset", only_x,
             "--epochs", "1", "--threads", "1", "--out", os.path.join(tmp, "t1")])
    check(p.returncode != 0 and "takes 2 inputs" in p.stderr and "gives 1" in p.stderr,
          "train with X/ only: %s" % p.stderr.strip()[-500:])
    # a one-input model on X/ + X2/
    one = os.path.join(tmp, "one.h5")
    run([DDTS, "model", "new", "--layers", "dense:1", "--input-shape", "1", "-o", one])
    p = run([DDTS, "train", "--model", one, "--data", "server", "--dataset", data, "--epochs",
             "1", "--threads", "1", "--out", os.path.join(tmp, "t2")])
    check(p.returncode != 0 and "takes 1 input" in p.stderr and "gives 2" in p.stderr,
          "one-input model, X/ + X2/: %s" % p.stderr.strip()[-500:])
    t0 = time.time()
    p = run([DDTS, "server", "--host", "127.0.0.1", "--port", str(free_port()),
             "--passphrase-file", os.path.join(tmp, "pass"), "--model", one, "--clients", "2",
             "--data", "server", "--dataset", data, "--epochs", "1", "--workdir",
             os.path.join(tmp, "w3")], timeout=30)
    check(p.returncode == 1 and "takes 1 input" in p.stderr and time.time() - t0 < 25,
          "server, one-input model on X/ + X2/: exit %s: %s" % (p.returncode,
                                                                p.stderr.strip()[-500:]))
    # X2/ with rows of its own
    bad = os.path.join(tmp, "bad")
    shutil.copytree(data, bad)
    np.save(os.path.join(bad, "X2", "more.npy"), np.ones((3, 1), dtype=np.float32))
    p = run([DDTS, "train", "--model", MODEL, "--data", "server", "--dataset", bad, "--epochs",
             "1", "--threads", "1", "--out", os.path.join(tmp, "t3")])
    check(p.returncode != 0 and "X holds 240 samples but" in p.stderr and "X2 holds 243"
          in p.stderr, "X2/ with other rows: %s" % p.stderr.strip()[-500:])


def main():
    if not os.path.exists(MODEL):
        print("FAIL: %s is missing" % MODEL)
        return 1
    with tempfile.TemporaryDirectory(prefix="ddts-multiin-") as tmp:
        data, users, jobs, rating = make_data(tmp)
        section1(tmp, data)
        section2(tmp, data, users, jobs, rating)
        section3(tmp, data)
    return 0 if check.finish("test_multi_input") else 1


if __name__ == "__main__":
    sys.exit(main())
