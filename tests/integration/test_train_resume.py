"""ddts train stopped with Ctrl-C resumes from its last finished epoch (#13).

The oracle is the same run left alone: with one thread, a fixed seed and the
shuffling and dropout streams derived from (seed, epoch), a run stopped after
some epochs and resumed must end with the same history.csv (every epoch once),
the same model.h5 and the same best_model.h5, byte for byte. The labels are
random, so val_loss is lowest in an early epoch (before the stop) and grows as
the model memorises: a resumed run that lost its best-model state would pick a
later epoch. A rerun with other settings is refused, naming them.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
WORK = tempfile.mkdtemp(prefix="ddts-test_train_resume-")
check = Checks()


def path(*p):
    return os.path.join(WORK, *p)


def run(*args):
    p = subprocess.run([DDTS, *args], capture_output=True, text=True, timeout=300, cwd=WORK)
    return p.returncode, p.stdout + p.stderr


def rows(csv):
    try:
        with open(csv) as f:
            return max(0, len(f.read().splitlines()) - 1)
    except OSError:
        return 0


def same_file(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


rng = np.random.default_rng(3)
os.makedirs(path("d", "X"))
os.makedirs(path("d", "Y"))
np.save(path("d", "X", "x.npy"), rng.standard_normal((6000, 64)).astype(np.float32))
np.save(path("d", "Y", "y.npy"), rng.integers(0, 10, 6000).astype(np.int64))
rc, out = run("model", "new", "--layers", "dense:256:relu,dense:256:relu,dense:10:softmax",
              "--input-shape", "64", "--loss", "sparse_categorical_crossentropy",
              "--learning-rate", "0.003", "-o", "m.h5")
check(rc == 0, "model new: " + out)
EPOCHS = 8
SETTINGS = ["--model", "m.h5", "--dataset", "d", "--epochs", str(EPOCHS), "--seed", "5",
            "--threads", "1", "--monitor", "val_loss"]

rc, out = run("train", *SETTINGS, "--out", "whole")
check(rc == 0, "the run left alone: " + out)
check(not os.path.exists(path("whole", "checkpoint.bin")), "a finished run removes its checkpoint")

# The same run, stopped with SIGINT once three epochs are in history.csv.
log = open(path("stopped.txt"), "w")
p = subprocess.Popen([DDTS, "train", *SETTINGS, "--out", "stopped"], cwd=WORK, stdout=log,
                     stderr=subprocess.STDOUT)
deadline = time.time() + 120
while rows(path("stopped", "history.csv")) < 3 and p.poll() is None and time.time() < deadline:
    time.sleep(0.02)
p.send_signal(signal.SIGINT)
rc = p.wait(timeout=60)
log.close()
with open(path("stopped.txt")) as f:
    stopped_out = f.read()
done_before = rows(path("stopped", "history.csv"))
check(rc == -signal.SIGINT and done_before < EPOCHS,
      "stopped by SIGINT after %d epochs (rc %s): %s" % (done_before, rc, stopped_out[-500:]))
check("run the same command again to resume" in stopped_out, "Ctrl-C says how to resume: "
      + stopped_out[-300:])
check(os.path.exists(path("stopped", "checkpoint.bin")), "checkpoint.bin after the stop")

# Other settings are refused, naming each difference; nothing is touched.
rc, out = run("train", *SETTINGS[:5], str(EPOCHS + 2), *SETTINGS[6:], "--out", "stopped")
check(rc == 1 and "other settings" in out and "--epochs %d (now %d)" % (EPOCHS, EPOCHS + 2) in out
      and "another --out" in out, "a rerun with other epochs: " + out)
rc, out = run("train", *SETTINGS[:7], "6", *SETTINGS[8:], "--out", "stopped")
check(rc == 1 and "--seed 5 (now 6)" in out, "a rerun with another seed: " + out)
check(rows(path("stopped", "history.csv")) == done_before, "a refused rerun keeps history.csv")

# The same settings resume (the seed need not be given again: the run's stays).
rc, out = run("train", *SETTINGS[:6], *SETTINGS[8:], "--out", "stopped")
check(rc == 0, "the rerun: " + out)
resumed = [l for l in out.splitlines() if "resuming from epoch" in l]
check(len(resumed) == 1, "the rerun says it resumes: " + out[-800:])
if resumed:
    first = int(resumed[0].split("resuming from epoch ")[1].split()[0])
    check(first - 1 in (done_before, done_before - 1),
          "resumed at epoch %d after %d rows" % (first, done_before))
    trained = [l for l in out.splitlines() if l.startswith("Epoch ")]
    check(len(trained) == EPOCHS - first + 1, "the rerun trains epochs %d-%d only: %s"
          % (first, EPOCHS, trained))
hist = np.genfromtxt(path("stopped", "history.csv"), delimiter=",", names=True)
check(list(np.atleast_1d(hist["epoch"]).astype(int)) == list(range(EPOCHS)),
      "every epoch once in history.csv: %s" % list(np.atleast_1d(hist["epoch"])))
check(same_file(path("stopped", "history.csv"), path("whole", "history.csv")),
      "history.csv equals the uninterrupted run's")
check(same_file(path("stopped", "model.h5"), path("whole", "model.h5")),
      "model.h5 equals the uninterrupted run's")
whole = np.genfromtxt(path("whole", "history.csv"), delimiter=",", names=True)
best = int(np.argmin(whole["val_loss"]))
check(best < done_before - 1, "the best val_loss (epoch %d) falls before the stop (%d epochs)"
      % (best + 1, done_before))
check(same_file(path("stopped", "best_model.h5"), path("whole", "best_model.h5")),
      "best_model.h5 equals the uninterrupted run's (the best model survived the stop)")
with open(path("stopped", "train.log")) as f:
    tl = f.read()
check("best model: epoch %d by val_loss" % (best + 1) in tl, "train.log's best epoch: " + tl)
check("resumed at epoch" in tl, "train.log says where it resumed")
check(not os.path.exists(path("stopped", "checkpoint.bin")), "the finished rerun removes it")

# Finished: a rerun (even with other settings) is a new run, as before.
rc, out = run("train", *SETTINGS[:5], "2", *SETTINGS[6:], "--out", "stopped")
check(rc == 0 and "resuming" not in out and rows(path("stopped", "history.csv")) == 2,
      "a finished run's folder takes a new run: " + out[-300:])

sys.exit(0 if check.finish("test_train_resume", WORK) else 1)
