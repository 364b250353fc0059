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
layer's weights once and lists its calls.

Run by CTest with the build folder as working directory.
"""
import os
import re
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402
from keras_fixture_harness import DDTS, SRC, one, run  # noqa: E402

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
    print("%d passed, %d failed" % (check.passed, check.failed))
    return 1 if check.failed else 0


if __name__ == "__main__":
    sys.exit(main())
