"""The layer classes of issue 20 in Keras files (tests/data/keras20, made by its
make_fixtures.py as tf.keras 2.15 writes a .h5 and as Keras 3.13 writes a .keras):
predict, train, write back in the same format.

For each file, the checks of keras_fixture_harness.py: `ddts predict` matches the
committed reference (TF.js 4.22 for the PReLU / Cropping2D / Permute / Maximum /
Minimum / noise-layer model; the float64 numpy pass of npref20.py for the
AdditiveAttention / Attention(concat) / Attention(use_scale) model and the masked
attention models of make_masks.py, which TF.js cannot run) within 1e-5
absolute + 1e-4 relative; one epoch of `ddts train` writes a file of the same
structure, the new layers' weights changed, and its predictions agree with
npref20.py on the written file.

Then: a model of only the training-only layers (SpatialDropout2D, GaussianNoise,
GaussianDropout) predicts its input unchanged.

Run by CTest with the build folder as working directory.
"""
import json
import os
import sys
import tempfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402
from keras_fixture_harness import SRC, one, predict  # noqa: E402

DATA = os.path.join(SRC, "tests", "data", "keras20")
NPREF = os.path.join(DATA, "npref20.py")
check = Checks()

# (file, reference, the layers whose weights training must change)
FIXTURES = [
    ("tfk2_prelu_crop_permute_maxmin.h5", "tfjs",
     ["p_re_lu/p_re_lu/", "p_re_lu_1/", "layer_normalization/"]),
    ("tfk2_additive_concat_attention.h5", "numpy",
     ["additive_attention/", "attention/attention/scale", "attention/attention/concat",
      "attention_1/"]),
    # the same models as Keras 3.13 .keras files (weights under layers/<class>/vars/<i>)
    ("k3_prelu_crop_permute_maxmin.keras", "tfjs",
     ["p_re_lu/vars", "p_re_lu_1/vars", "layer_normalization/vars"]),
    ("k3_additive_concat_attention.keras", "numpy",
     ["additive_attention/vars", "attention/vars/0", "attention/vars/1", "attention_1/vars"]),
    # masks (make_masks.py): an attention_mask input and use_causal_mask (MultiHeadAttention,
    # Attention), AdditiveAttention's config causal; Embedding(mask_zero)'s mask through two
    # MultiHeadAttentions (one causal), Attention and AdditiveAttention to a masked pooling
    ("tfk2_attention_masks_causal.h5", "numpy",
     ["multi_head_attention/multi_head_attention/query", "additive_attention/"]),
    ("k3_attention_masks_causal.keras", "numpy",
     ["multi_head_attention/query_dense/vars", "additive_attention/vars"]),
    ("tfk2_mha_mask_zero.h5", "numpy",
     ["embedding/", "multi_head_attention/", "multi_head_attention_1/", "attention/"]),
]


def identity_model(path):
    """Input (4, 5, 3) -> SpatialDropout2D -> GaussianNoise -> GaussianDropout, no weights."""
    def lay(cls, name, **cfg):
        cfg.update(name=name, trainable=True, dtype="float32")
        return {"class_name": cls, "config": cfg}
    cfg = {"class_name": "Sequential", "config": {"name": "s", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4, 5, 3],
                                                "dtype": "float32", "name": "in"}},
        lay("SpatialDropout2D", "sd", rate=0.5, noise_shape=None, seed=None),
        lay("GaussianNoise", "gn", stddev=1.0, seed=None),
        lay("GaussianDropout", "gd", rate=0.5, seed=None)]}}
    with h5py.File(path, "w") as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = json.dumps(cfg)
        g = f.create_group("model_weights")
        g.attrs.create("layer_names", np.array(["sd", "gn", "gd"], dtype=object),
                       dtype=h5py.string_dtype())
        for n in ("sd", "gn", "gd"):
            g.create_group(n).attrs["weight_names"] = np.zeros((0,))


def main():
    with tempfile.TemporaryDirectory(prefix="ddts-l20-") as tmp:
        for fname, ref_kind, trained_layer in FIXTURES:
            one(check, tmp, DATA, fname, ref_kind, trained_layer, NPREF)
        model = os.path.join(tmp, "identity.h5")
        identity_model(model)
        x = np.random.default_rng(3).standard_normal((6, 4, 5, 3)).astype(np.float32)
        np.save(os.path.join(tmp, "x.npy"), x)
        y = predict(check, model, os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy"))
        if y is not None:
            check(y.shape == x.shape and np.array_equal(y, x),
                  "training-only layers change predictions: max |y - x| %g"
                  % (float(np.abs(y - x).max()) if y.shape == x.shape else -1))
    return 0 if check.finish("test_keras_layers20") else 1


if __name__ == "__main__":
    sys.exit(main())
