"""Shared layers (a layer called several times on one set of weights) in Keras files
(tests/data/shared_layers, made by its make_fixtures.py as tf.keras 2.15 writes a .h5 and
as Keras 3.13 writes a .keras): a two-input siamese model whose Conv2D / MaxPooling2D /
Flatten / Dense stack is called on both inputs and whose Dense `proj` is called three
times, the third time on a tensor that comes later in the layer list; and the common
siamese form, a nested Functional model `base` called on both inputs.

For each file, the checks of keras_fixture_harness.py: `ddts predict --x A --x B` matches
the committed TensorFlow.js reference within 1e-5 absolute + 1e-4 relative; one epoch of
`ddts train` writes a file of the same structure (each shared layer's weights once, where
they were), the shared layers' weights changed, and its predictions agree with a float64
numpy pass (npref_shared.py) of the written file. Then `ddts inspect` counts each shared
layer's weights once and lists its calls. Last, a server job (2 clients, weights exchanged
every epoch) trains the nested siamese model: the clients' flat weight vectors hold each
shared weight once, and the job's global model has the file's structure and agrees with
npref_shared.py.

Run by CTest with the build folder as working directory.
"""
import os
import re
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks, data_job_args, run_job, write_passphrase  # noqa: E402
from keras_fixture_harness import DDTS, SRC, close, one, predict, run, structure  # noqa: E402

DATA = os.path.join(SRC, "tests", "data", "shared_layers")
NPREF = os.path.join(DATA, "npref_shared.py")
check = Checks()

# (file, reference, the shared layers whose weights training must change, Keras' parameter
# count (each shared layer once), the calls `ddts inspect` must list)
SHARED = "conv x2, pool x2, flatten x2, embed x2, proj x3"
FIXTURES = [
    ("tfk2_siamese_shared.h5", "tfjs", ["conv/conv/kernel", "embed/embed/kernel",
                                        "proj/proj/kernel"], 532, SHARED),
    # Keras 3 keys weights by class: conv2d is conv, dense embed, dense_1 proj
    ("k3_siamese_shared.keras", "tfjs", ["conv2d/vars/0", "dense/vars/0", "dense_1/vars/0"], 532,
     SHARED),
    # a nested model called on both inputs: its weights are one group
    ("tfk2_siamese_nested.h5", "tfjs", ["base/h/kernel", "base/e/kernel"], 154, "base x2"),
    ("k3_siamese_nested.keras", "tfjs", ["functional/layers/dense/vars/0",
                                         "functional/layers/dense_1/vars/0"], 154, "base x2"),
]


def server_job(tmp):
    model = os.path.join(DATA, "tfk2_siamese_nested.h5")
    rng = np.random.default_rng(5)
    data = os.path.join(tmp, "job_data")
    xs = [rng.random((48, 10), dtype=np.float32) for _ in range(2)]
    y = np.eye(3, dtype=np.float32)[(xs[0].sum(1) > xs[1].sum(1)).astype(int)]
    for sub, arr in (("X", xs[0]), ("X2", xs[1]), ("Y", y)):
        os.makedirs(os.path.join(data, sub))
        np.save(os.path.join(data, sub, "d.npy"), arr)
    write_passphrase(tmp, "shared layers passphrase")
    wd = os.path.join(tmp, "work")
    job = run_job(DDTS, tmp, data_job_args(model, data, wd, "siam",
                                           extra=["--epochs", "2", "--batch-size", "8"]),
                  ("c0", "c1"))
    if not check(job.rc == 0, "server job: exit %s: %s" % (job.rc, (job.err + job.logs)[-1500:])):
        return
    g = os.path.join(wd, "siam", "global", "model.h5")
    if not check(os.path.exists(g), "no global model at %s" % g):
        return
    check(structure(g) == structure(model), "the global model's structure differs")
    xf = [os.path.join(tmp, "x%d.npy" % i) for i in range(2)]
    for i, f in enumerate(xf):
        np.save(f, xs[i][:8])
    got = predict(check, g, xf, os.path.join(tmp, "g.npy"))
    p = run([sys.executable, NPREF, g, ",".join(xf), os.path.join(tmp, "g_np.npy")])
    ok = check(p.returncode == 0, "npref on the global model: %s" % p.stderr[-500:])
    if ok and got is not None:
        ref = np.load(os.path.join(tmp, "g_np.npy"))
        check(close(got, ref), "global model: ddts and numpy differ by %g"
              % float(np.abs(got - ref).max()))
        orig = predict(check, model, xf, os.path.join(tmp, "o.npy"))
        check(orig is not None and not np.array_equal(orig, got), "the job changed nothing")


def main():
    with tempfile.TemporaryDirectory(prefix="ddts-shared-") as tmp:
        for fname, ref_kind, trained_layer, n_params, shared in FIXTURES:
            one(check, tmp, DATA, fname, ref_kind, trained_layer, NPREF)
            p = run([DDTS, "inspect", os.path.join(DATA, fname)])
            if not check(p.returncode == 0, "inspect %s: %s" % (fname, p.stderr.strip())):
                continue
            # Keras' count (siamese: conv 76 + embed 390 + proj 42 + out 24; nested: h 88 +
            # e 36 + out 30), each shared layer once
            check("Total params: %d " % n_params in p.stdout, "%s: params not counted once:\n%s"
                  % (fname, p.stdout))
            rows = re.findall(r"^ (\w+) \((\w+)\) ", p.stdout, re.M)
            first = shared.split()[0]
            check([r[0] for r in rows].count(first) == 1, "%s: %s not one row" % (fname, first))
            check(re.search(r"^Shared layers .*: %s$" % shared, p.stdout, re.M) is not None,
                  "%s: the shared layers' calls are not listed:\n%s" % (fname, p.stdout))
        server_job(tmp)
    return 0 if check.finish("test_shared_layers") else 1


if __name__ == "__main__":
    sys.exit(main())
