"""Keras model files: read, write back, and compare with h5py (an independent oracle).

For each layout of keras_layouts.py (tf.keras 2.x, Keras 2.2, Keras 3 h5, split
layer_names, nested model, .keras zips) the helper tests/tools/keras_roundtrip
reads the file with ddts and writes it back (unchanged, then with every layer
weight scaled by 2). The written file must have exactly the input's structure
(attributes with their values and string kinds, groups, dataset names,
shapes, dtypes), unchanged weights bit for bit, scaled weights doubled, the
optimizer state untouched. Files from ddts_keras_write_new are checked
against the tf.keras 2.x layout. Hostile files must give a clear error (exit
1 naming the file and the object), never a crash.

Run by CTest with the build folder as working directory.
"""
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile

import h5py
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import keras_layouts as K  # noqa: E402
from checks import Checks  # noqa: E402

TOOL = os.path.abspath("keras_roundtrip")
check = Checks()



def run(*args):
    return subprocess.run([TOOL] + list(args), capture_output=True, text=True, timeout=120)


def type_desc(t):
    """What kind of HDF5 type: string kind (vlen/fixed, cset, padding, size) or numpy dtype."""
    if isinstance(t, h5py.h5t.TypeStringID):
        if t.is_variable_str():
            return ("vlen-str", t.get_cset())
        return ("fixed-str", t.get_cset(), t.get_strpad(), t.get_size())
    return ("num", str(t.dtype))


def attrs_desc(obj):
    out = {}
    for k in obj.attrs:
        a = obj.attrs.get_id(k)
        v = obj.attrs[k]
        if isinstance(v, np.ndarray):
            v = (v.dtype.str, v.shape, v.tolist())
        out[k] = (type_desc(a.get_type()), a.shape, repr(v))
    return out


def describe(f):
    """Every object of an open h5 file: kind, attributes, dataset shape and dtype."""
    d = {"/": ("group", attrs_desc(f))}

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            d[name] = ("dataset", attrs_desc(obj), obj.shape, obj.dtype.str,
                       obj.id.get_create_plist().get_layout())
        else:
            d[name] = ("group", attrs_desc(obj))
    f.visititems(visit)
    return d


def datasets(f):
    out = {}
    f.visititems(lambda n, o: out.__setitem__(n, o[()]) if isinstance(o, h5py.Dataset) else None)
    return out


def h5_of(path):
    """An open h5py File for an .h5 file, or for the model.weights.h5 inside a .keras zip."""
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            return h5py.File(io.BytesIO(z.read("model.weights.h5")), "r")
    return h5py.File(path, "r")


def is_optimizer(name):
    return name.startswith("optimizer_weights/") or name.startswith("optimizer/")


def compare(src, dst, scale, label):
    if src.endswith(".keras"):
        with zipfile.ZipFile(src) as a, zipfile.ZipFile(dst) as b:
            ia, ib = a.infolist(), b.infolist()
            check([i.filename for i in ia] == [i.filename for i in ib],
                  "%s: zip members %s vs %s" % (label, [i.filename for i in ia],
                                                [i.filename for i in ib]))
            check([i.compress_type for i in ia] == [i.compress_type for i in ib],
                  "%s: zip compression methods differ" % label)
            for i in ia:
                if i.filename != "model.weights.h5":
                    check(a.read(i.filename) == b.read(i.filename),
                          "%s: zip member %s changed" % (label, i.filename))
    with h5_of(src) as fa, h5_of(dst) as fb:
        da, db = describe(fa), describe(fb)
        check(da == db, "%s: structure differs:\n  %s" % (
            label, [(k, da.get(k), db.get(k)) for k in set(da) | set(db) if da.get(k) != db.get(k)][:3]))
        va, vb = datasets(fa), datasets(fb)
        n_changed = 0
        for name, a in va.items():
            b = vb.get(name)
            if b is None:
                continue
            if scale == 1.0 or is_optimizer(name):
                ok = a.dtype == b.dtype and a.tobytes() == b.tobytes()
                check(ok, "%s: %s not bit-identical" % (label, name))
            else:
                want = (a.astype(np.float32) * np.float32(scale)).astype(a.dtype)
                ok = np.array_equal(b, want)
                n_changed += a.size > 0
                check(ok, "%s: %s: got %s, want %s" % (label, name, b.ravel()[:3], want.ravel()[:3]))
        if scale != 1.0:
            check(n_changed > 0, "%s: no weight was scaled" % label)


def parse_listing(text):
    layers, weights = [], []
    for line in text.splitlines():
        p = line.split("\t")
        if p[0] == "layer":
            layers.append((p[1], p[2], int(p[3])))
        elif p[0] == "weight":
            weights.append(tuple(p[1:]))
    return layers, weights


def test_roundtrips(tmp):
    for fname, make in K.LAYOUTS.items():
        src = os.path.join(tmp, fname)
        make(src)
        for scale in (1.0, 2.0):
            dst = os.path.join(tmp, "out_%g_%s" % (scale, fname))
            args = ([] if scale == 1.0 else ["--scale", str(scale)]) + [src, dst]
            r = run(*args)
            check(r.returncode == 0, "%s: roundtrip exit %d: %s" % (fname, r.returncode, r.stderr))
            if r.returncode == 0:
                compare(src, dst, scale, "%s x%g" % (fname, scale))
        # Reading what ddts wrote gives the same listing.
        r1 = run(src)
        r2 = run(os.path.join(tmp, "out_1_%s" % fname))
        check(r1.stdout == r2.stdout and r1.returncode == 0,
              "%s: listing of the written file differs" % fname)
        # In place: writing over the source file itself.
        inplace = os.path.join(tmp, "inplace_" + fname)
        make(inplace)
        r = run("--scale", "2", inplace, inplace)
        check(r.returncode == 0, "%s: in-place write failed: %s" % (fname, r.stderr))
        if r.returncode == 0:
            compare(src, inplace, 2.0, "%s in place" % fname)


def test_listings(tmp):
    """What the reader reports: layers in order, classes, weights, short names."""
    p = os.path.join(tmp, "l_tf2.h5")
    K.tf2_sequential(p)
    r = run(p)
    layers, weights = parse_listing(r.stdout)
    check([l[0] for l in layers] == ["dense", "dropout", "batch_normalization", "dense_1"],
          "tf2 layer order: %s" % layers)
    check(layers[1] == ("dropout", "Dropout", 0), "weightless dropout: %s" % (layers[1],))
    check([w[1] for w in weights if w[2] == "batch_normalization"] ==
          ["gamma", "beta", "moving_mean", "moving_variance"], "bn short names")
    check("model\th5\t2.15.0\ttensorflow\t4\t1\t7" in r.stdout, "tf2 model line: %s" % r.stdout[:80])

    p = os.path.join(tmp, "l_k22.h5")
    K.keras22_sequential(p)
    layers, weights = parse_listing(run(p).stdout)
    check(layers == [("dense_1", "Dense", 2), ("activation_1", "Activation", 0),
                     ("dense_2", "Dense", 2)], "keras 2.2 bare-list config: %s" % layers)

    p = os.path.join(tmp, "l_nested.keras")
    K.keras_zip(p, nested=True)
    layers, weights = parse_listing(run(p).stdout)
    check([l[:2] for l in layers] == [("input_layer_1", "InputLayer"),
                                      ("sequential", "Sequential"), ("dense_3", "Dense")],
          "nested .keras layers: %s" % layers)
    check(("layers/dense/vars/0", "kernel", "dense_3", "2x1", "float32") in weights,
          "nested .keras: top-level dense_3 maps to layers/dense: %s" % weights[-2:])
    bn = [w[1] for w in weights if w[2] == "batch_normalization"]
    check(bn == ["beta", "moving_mean", "moving_variance"], "BN with scale=False: %s" % bn)

    p2 = os.path.join(tmp, "l_tf213.keras")
    K.LAYOUTS["tf213_nested.keras"](p2)
    layers2, weights2 = parse_listing(run(p2).stdout)
    check([l[2] for l in layers2] == [l[2] for l in layers] and
          [w[1:] for w in weights2] == [w[1:] for w in weights] and
          weights2[0][0].startswith("_layer_checkpoint_dependencies/sequential/"
                                    "_layer_checkpoint_dependencies/dense/vars/0"),
          "tf.keras 2.13 .keras container: %s" % weights2[:1])


def test_training_info(tmp):
    """The compiled optimizer and loss, from training_config or compile_config."""
    want = {"tf2_sequential.h5": "adam\t0.001\tcategorical_crossentropy",
            "keras22_sequential.h5": "sgd\t0.00999999978\tbinary_crossentropy",
            "keras3_functional.h5": "rmsprop\t0.001\tmean_squared_error",
            "nested.h5": "-\tnan\t-",
            "sequential.keras": "adam\t0.001\tcategorical_crossentropy"}
    for fname, line in want.items():
        p = os.path.join(tmp, "ti_" + fname)
        K.LAYOUTS[fname](p)
        got = [l for l in run(p).stdout.splitlines() if l.startswith("train\t")]
        check(got == ["train\t" + line], "training info %s: %s" % (fname, got))


def test_write_new(tmp):
    # A .keras model written as legacy h5: a nested model's weights in
    # _legacy_weights order (trainable first), named <layer>/<weight>.
    src = os.path.join(tmp, "wn_nested.keras")
    K.keras_zip(src, nested=True)
    dst = os.path.join(tmp, "wn_nested.h5")
    r = run("--new", src, dst)
    check(r.returncode == 0, "write_new nested.keras: %s" % r.stderr)
    if r.returncode == 0:
        with h5py.File(dst, "r") as f:
            wn = [n.decode() if hasattr(n, "decode") else n
                  for n in f["model_weights/sequential"].attrs["weight_names"]]
            check(wn == ["dense/kernel", "dense/bias", "batch_normalization/beta",
                         "dense_1/kernel", "dense_2/kernel", "dense_2/bias",
                         "batch_normalization/moving_mean",
                         "batch_normalization/moving_variance"],
                  "write_new from .keras: nested order %s" % wn)
            check(f.attrs["keras_version"] == "3.3.3", "write_new keeps keras_version")
    for fname in ("tf2_sequential.h5", "keras3_functional.h5", "sequential.keras", "nested.h5",
                  "split_layer_names.h5"):
        src = os.path.join(tmp, "n_" + fname)
        K.LAYOUTS[fname](src)
        dst = os.path.join(tmp, "new_%s.h5" % fname)
        r = run("--new", src, dst)
        check(r.returncode == 0, "write_new %s: %s" % (fname, r.stderr))
        if r.returncode != 0:
            continue
        layers, weights = parse_listing(r.stdout)
        with h5py.File(dst, "r") as f:
            ta = f.attrs.get_id("keras_version").get_type()
            check(ta.is_variable_str() and ta.get_cset() == h5py.h5t.CSET_UTF8,
                  "new: keras_version is a vlen UTF-8 str")
            check(isinstance(f.attrs["keras_version"], str), "new: keras_version reads as str")
            mc = f.attrs["model_config"]
            mc = mc.decode() if hasattr(mc, "decode") else mc
            json.loads(mc)
            check(f.attrs.get_id("model_config").get_type().is_variable_str(),
                  "new: model_config is a vlen string")
            mw = f["model_weights"]
            names = []
            if "layer_names" in mw.attrs:
                names = [n.decode() if hasattr(n, "decode") else n for n in mw.attrs["layer_names"]]
                t = mw.attrs.get_id("layer_names").get_type()
                check(t.is_variable_str() and t.get_cset() == h5py.h5t.CSET_ASCII,
                      "new: layer_names vlen ASCII as h5py 3 writes a list of bytes")
            else:
                i = 0
                while "layer_names%d" % i in mw.attrs:
                    names += [n.decode() for n in mw.attrs["layer_names%d" % i]]
                    i += 1
            check(names == [l[0] for l in layers], "new %s: layer_names %s" % (fname, names[:4]))
            check(mw.attrs["backend"] in ("tensorflow", b"tensorflow"), "new: model_weights backend")
            for lname, _, nw in layers:
                wn = mw[lname].attrs["weight_names"]
                if nw == 0:
                    check(wn.dtype == np.float64 and wn.shape == (0,),
                          "new: weightless %s has an empty float64 weight_names" % lname)
                else:
                    check(mw[lname].attrs.get_id("weight_names").get_type().is_variable_str()
                          and len(wn) == nw, "new: %s weight_names" % lname)
                    for n in wn:
                        ds = mw[lname][n.decode() if hasattr(n, "decode") else n]
                        check(ds.dtype == np.float32, "new: %s float32" % n)
        # The values equal the source's, and ddts reads its own file back.
        with h5_of(src) as fa, h5py.File(dst, "r") as fb:
            va = [v for k, v in sorted(datasets(fa).items()) if not is_optimizer(k)]
            vb = [v for k, v in sorted(datasets(fb).items())]
            check(sorted(a.astype(np.float32).tobytes() for a in va) ==
                  sorted(b.tobytes() for b in vb), "new %s: weight values" % fname)
        r2 = run(dst)
        l2, w2 = parse_listing(r2.stdout)
        check(r2.returncode == 0 and [(l[0], l[1], l[2]) for l in l2] == layers,
              "new %s: ddts reads it back: %s" % (fname, r2.stderr))


# Input features of each layout (nested.keras is left out: its fixture config
# is one the engine does not build, a nested layer without inbound_nodes).
NORM_FEATURES = {"tf2_sequential.h5": 4, "keras22_sequential.h5": 5, "keras3_functional.h5": 4,
                 "nested.h5": 3, "sequential.keras": 6, "split_layer_names.h5": 2}


def config_of(path):
    if path.endswith(".keras"):
        with zipfile.ZipFile(path) as z:
            return json.loads(z.read("config.json"))
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["model_config"])


def layer_list(cfg):
    c = cfg["config"]
    return c if isinstance(c, list) else c["layers"]


def weights_by_layer(path):
    """{layer name: {weight name: values}} of a file, whatever its format."""
    out = {}
    with h5_of(path) as f:
        for k, v in datasets(f).items():
            parts = [p for p in k.split("/") if p not in ("model_weights", "layers", "vars")]
            out.setdefault(parts[0] if parts else k, {})[k] = v
    return out


def test_normalizer(tmp):
    """ddts_surgery_write_normalized (the one implementation, used by the
    server): the normalizer as a Keras Normalization layer after the input,
    written as a new .h5 whose Normalization weights are the ones Keras' build()
    creates (mean, variance, count), and every other weight unchanged."""
    for fname, n in NORM_FEATURES.items():
        src = os.path.join(tmp, "ns_" + fname)
        K.LAYOUTS[fname](src)
        dst = os.path.join(tmp, "norm_" + fname + ".h5")
        r = run("--norm", str(n), src, dst)
        check(r.returncode == 0, "norm %s: %s" % (fname, r.stderr))
        if r.returncode != 0:
            continue
        want_mean = np.array([k / 2 for k in range(n)], np.float32)
        want_var = np.array([(k + 1) ** 2 / 4 for k in range(n)], np.float32)
        cfg = config_of(dst)
        layers = layer_list(cfg)
        norm = [l for l in layers if l["class_name"] == "Normalization"]
        check(len(norm) == 1, "norm %s: one Normalization layer" % fname)
        if len(norm) != 1:
            continue
        nl = norm[0]
        pos = layers.index(nl)
        first = layers[0]["class_name"]
        check(pos == (1 if first == "InputLayer" else 0), "norm %s: position %d" % (fname, pos))
        check(nl["config"]["mean"] is None and nl["config"]["variance"] is None,
              "norm %s: adapted (mean/variance in weights, not the config)" % fname)
        # Rewired: no layer but the Normalization consumes the input layer any more.
        if first == "InputLayer" and "input_layers" in cfg["config"]:
            in_name = layers[0].get("name") or layers[0]["config"]["name"]
            text = [json.dumps(l.get("inbound_nodes")) for l in layers if l is not nl]
            check(all('"%s"' % in_name not in t for t in text), "norm %s: rewired" % fname)
            check('"%s"' % in_name in json.dumps(nl["inbound_nodes"]), "norm %s: fed" % fname)
        with h5py.File(dst, "r") as f:
            version = f.attrs["keras_version"]
            version = version.decode() if isinstance(version, bytes) else str(version)
            g = f["model_weights/" + nl["config"]["name"]]
            wn = [w.decode() if isinstance(w, bytes) else str(w) for w in g.attrs["weight_names"]]
            # What Normalization.build creates, tf.keras 2.x and Keras 3 alike
            # (keras/src/layers/preprocessing/normalization.py: mean, variance, and
            # count "for backwards compatibility"); legacy h5 loading matches them
            # by position and refuses a different number of weights.
            want = ["mean", "variance", "count"]
            check([w.split(":")[0] for w in wn] == ["normalization/" + w for w in want],
                  "norm %s (Keras %s): weights %s" % (fname, version, wn))
            vals = [g[w][()] for w in wn]
            check(vals[0].shape == (n,) and vals[0].tobytes() == want_mean.tobytes() and
                  vals[1].tobytes() == want_var.tobytes(), "norm %s: mean/variance values" % fname)
            if len(vals) == 3:
                check(vals[2].shape == () and vals[2] == 7, "norm %s: count %s" % (fname, vals[2]))
        # Every other weight is the source's (matched by layer and weight name).
        a = {k.split("/")[-1].split(":")[0] + "@" + l: v.tobytes()
             for l, ws in weights_by_layer(src).items() for k, v in ws.items()
             if "optimizer" not in k}
        b = {k.split("/")[-1].split(":")[0] + "@" + l: v.tobytes()
             for l, ws in weights_by_layer(dst).items() for k, v in ws.items()
             if l != nl["config"]["name"]}
        check(set(a.values()) == set(b.values()) and len(a) == len(b),
              "norm %s: other weights unchanged (%d, %d)" % (fname, len(a), len(b)))
        # ddts reads it back and finds the normalizer's values.
        r = run(dst)
        line = [l for l in r.stdout.splitlines() if l.startswith("norm\t")]
        check(line == ["norm\tnormalization\t%d\t%d\t%.9g\t%.9g\t%.9g" %
                       (len(want), n, want_mean[-1], want_var[-1], 7 if len(want) == 3 else -1)],
              "norm %s: read back %s" % (fname, line))
    r = run("--norm", "7", os.path.join(tmp, "ns_tf2_sequential.h5"), os.path.join(tmp, "x.h5"))
    check(r.returncode == 1 and "7 features" in r.stderr and not os.path.exists(
        os.path.join(tmp, "x.h5")), "norm: wrong feature count refused: %s" % r.stderr)
    # A spec-made model (`ddts model new --layers`, tf.keras 2.15) gets the tf.keras 2.x weights.
    spec = os.path.join(tmp, "spec_norm.h5")
    r = run("--spec", "dense:3:relu,dense:2", "--input", "5", spec)
    check(r.returncode == 0, "norm spec: %s" % r.stderr)
    dst = os.path.join(tmp, "spec_norm_out.h5")
    r = run("--norm", "5", spec, dst)
    check(r.returncode == 0, "norm spec: %s" % r.stderr)
    if r.returncode == 0:
        with h5py.File(dst, "r") as f:
            wn = [w.decode() if isinstance(w, bytes) else str(w)
                  for w in f["model_weights/normalization"].attrs["weight_names"]]
            check(wn == ["normalization/mean:0", "normalization/variance:0",
                         "normalization/count:0"], "norm spec: weights %s" % wn)


def test_ensemble(tmp):
    """ddts_surgery_write_ensemble (`ddts ensemble`): nested models averaged, weights in
    legacy order."""
    a = os.path.join(tmp, "ea.h5")
    b = os.path.join(tmp, "eb.h5")
    K.tf2_sequential(a)
    K.tf2_sequential(b)
    with h5py.File(b, "a") as f:
        f["model_weights/dense/dense/kernel:0"][...] *= 3
    out = os.path.join(tmp, "ens.h5")
    r = run("--ensemble", out, a, b)
    check(r.returncode == 0, "ensemble: %s" % r.stderr)
    if r.returncode == 0:
        with h5py.File(out, "r") as f, h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
            cfg = json.loads(f.attrs["model_config"])
            ls = cfg["config"]["layers"]
            check([(l["class_name"], l["name"]) for l in ls] ==
                  [("InputLayer", "input"), ("Sequential", "member_1"),
                   ("Sequential", "member_2"), ("Average", "average")], "ensemble: layers")
            check(ls[3]["inbound_nodes"] == [[["member_1", 1, 0, {}], ["member_2", 1, 0, {}]]],
                  "ensemble: Average fed by node 1 of each nested model")
            check(ls[1]["config"]["layers"] == json.loads(fa.attrs["model_config"])["config"]["layers"],
                  "ensemble: nested config unchanged")
            wn = [n.decode() if hasattr(n, "decode") else n
                  for n in f["model_weights/member_2"].attrs["weight_names"]]
            check(wn[-2:] == ["batch_normalization/moving_mean:0",
                              "batch_normalization/moving_variance:0"] and len(wn) == 8,
                  "ensemble: trainable weights first: %s" % wn)
            check(np.array_equal(f["model_weights/member_2/dense/kernel:0"][()],
                                 fb["model_weights/dense/dense/kernel:0"][()]) and
                  np.array_equal(f["model_weights/member_1/dense/kernel:0"][()],
                                 fa["model_weights/dense/dense/kernel:0"][()]),
                  "ensemble: weights copied")
    k3 = os.path.join(tmp, "ek3.h5")
    K.keras3_functional_h5(k3)
    # Keras 3 members are nested as they are, and ddts reads the ensemble back.
    r = run("--ensemble", out + "2", k3, k3)
    check(r.returncode == 0 and "layer\tmember_2\tFunctional" in r.stdout,
          "ensemble of Keras 3 members: %s %s" % (r.stdout[-300:], r.stderr))
    k22 = os.path.join(tmp, "ek22.h5")
    K.keras22_sequential(k22)
    r = run("--ensemble", out + "3", a, k22)
    check(r.returncode == 1 and "ek22.h5: its input or output shape differs" in r.stderr,
          "ensemble: shapes: %s" % r.stderr)
    r = run("--ensemble", out + "4", k22, k22)
    check(r.returncode == 0, "ensemble of Keras 2.2 bare-list models: %s" % r.stderr)


def test_spec(tmp):
    """ddts_keras_spec_build + write_new: a tf.keras 2.x Sequential with Keras' names,
    shapes and initialisation, checked with h5py."""
    out = os.path.join(tmp, "spec.h5")
    spec = "conv2d:8:3:relu,maxpool2d:2,flatten,dense:16:relu,dropout:0.25,dense:10:softmax"
    r = run("--spec", spec, "--input", "28x28x1", "--loss", "categorical_crossentropy",
            "--optimizer", "sgd", out)
    check(r.returncode == 0, "spec: %s" % r.stderr)
    if r.returncode != 0:
        return
    with h5py.File(out, "r") as f:
        cfg = json.loads(f.attrs["model_config"])
        layers = cfg["config"]["layers"]
        check([l["class_name"] for l in layers] == ["InputLayer", "Conv2D", "MaxPooling2D",
                                                    "Flatten", "Dense", "Dropout", "Dense"],
              "spec: classes %s" % [l["class_name"] for l in layers])
        check(layers[0]["config"]["batch_input_shape"] == [None, 28, 28, 1], "spec: input shape")
        check([l["config"]["name"] for l in layers[1:]] ==
              ["conv2d", "max_pooling2d", "flatten", "dense", "dropout", "dense_1"],
              "spec: Keras automatic names")
        tc = json.loads(f.attrs["training_config"])
        check(tc["loss"] == "categorical_crossentropy" and
              tc["optimizer_config"]["class_name"] == "SGD" and
              tc["optimizer_config"]["config"]["learning_rate"] == 0.01, "spec: training_config")
        mw = f["model_weights"]
        k = mw["conv2d/conv2d/kernel:0"][()]
        check(k.shape == (3, 3, 1, 8) and k.dtype == np.float32, "spec: conv kernel shape")
        d = mw["dense/dense/kernel:0"][()]
        check(d.shape == (13 * 13 * 8, 16), "spec: dense kernel shape %s" % (d.shape,))
        limit = np.sqrt(6.0 / (13 * 13 * 8 + 16))
        check(np.abs(d).max() <= limit and np.abs(d).max() > 0.9 * limit and
              abs(d.mean()) < 0.01, "spec: glorot_uniform range")
        check(not mw["dense/dense/bias:0"][()].any(), "spec: zero bias")
        check(mw["dropout"].attrs["weight_names"].dtype == np.float64, "spec: weightless layer")
    for bad, word in (("dense:0", "layer 1"), ("dense:4,conv2d:2:3", "conv2d"),
                      ("dense:4:re lu", "activation"), ("pool:2", "unknown layer kind")):
        r = run("--spec", bad, "--input", "8", out + ".bad")
        check(r.returncode == 1 and word in r.stderr, "spec %r: %s" % (bad, r.stderr))


def hostile_cases(tmp):
    """(name, maker, words the error must contain)."""
    cases = []

    def mod(fname, fn):
        def make(p):
            K.tf2_sequential(p)
            with h5py.File(p, "a") as f:
                fn(f)
        return make

    def missing_group(f):
        del f["model_weights/dense_1"]
    cases.append(("missing_group.h5", mod("", missing_group), ["/model_weights/dense_1"]))

    def missing_dataset(f):
        del f["model_weights/dense/dense/bias:0"]
    cases.append(("missing_dataset.h5", mod("", missing_dataset), ["dense/bias:0"]))

    def huge_dims(f):
        del f["model_weights/dense/dense/kernel:0"]
        f["model_weights/dense"].create_dataset("dense/kernel:0", shape=(1 << 20, 1 << 20),
                                                dtype="f4")
    cases.append(("huge_dims.h5", mod("", huge_dims), ["dense/kernel:0"]))

    def unwritten(f):
        del f["model_weights/dense/dense/kernel:0"]
        f["model_weights/dense"].create_dataset("dense/kernel:0", shape=(4000, 4000), dtype="f4")
    cases.append(("unwritten.h5", mod("", unwritten), ["dense/kernel:0", "stores"]))

    def bad_names(f):
        f["model_weights"].attrs["layer_names"] = np.arange(3)
    cases.append(("bad_layer_names.h5", mod("", bad_names), ["layer_names", "not a string"]))

    def string_weight(f):
        del f["model_weights/dense/dense/bias:0"]
        f["model_weights/dense"].create_dataset("dense/bias:0", data=np.array([b"ab", b"cd"]))
    cases.append(("string_weight.h5", mod("", string_weight), ["dense/bias:0", "not a number"]))

    def bad_json(f):
        f.attrs["model_config"] = b"{not json"
    cases.append(("bad_json.h5", mod("", bad_json), ["model_config", "not JSON"]))

    def no_model_weights(f):
        del f["model_weights"]
    cases.append(("no_model_weights.h5", mod("", no_model_weights), ["/model_weights"]))

    def rank9(f):
        del f["model_weights/dense/dense/bias:0"]
        f["model_weights/dense"].create_dataset("dense/bias:0", data=np.zeros((1,) * 9, "f4"))
    cases.append(("rank9.h5", mod("", rank9), ["rank 9"]))

    def empty_dense(f):
        f["model_weights/dense_1"].attrs["weight_names"] = np.asarray([])
    cases.append(("empty_dense.h5", mod("", empty_dense), ["dense_1 (Dense)", "no weights"]))

    def zip_missing_group(p):
        K.keras_zip(p)
        with zipfile.ZipFile(p) as z:
            data = {n: z.read(n) for n in z.namelist()}
        buf = io.BytesIO(data["model.weights.h5"])
        with h5py.File(buf, "a") as f:
            del f["layers/dense_2"]
        data["model.weights.h5"] = buf.getvalue()
        with zipfile.ZipFile(p, "w") as z:
            for n, b in data.items():
                z.writestr(n, b)
    cases.append(("missing_group.keras", zip_missing_group, ["dense_2 (Dense)", "no weights"]))

    def external_link(p):
        other = p + ".other.h5"
        K.tf2_sequential(other)
        K.tf2_sequential(p)
        with h5py.File(p, "a") as f:
            del f["model_weights/dense_1"]
            f["model_weights/dense_1"] = h5py.ExternalLink(other, "/model_weights/dense_1")
    cases.append(("external_link.h5", external_link, ["/model_weights/dense_1"]))

    def external_storage(p):
        secret = p + ".secret"
        with open(secret, "wb") as fh:
            fh.write(b"s3cr3t!!" * 4)
        K.tf2_sequential(p)
        with h5py.File(p, "a") as f:
            del f["model_weights/dense_1/dense_1/bias:0"]
            f["model_weights/dense_1"].create_dataset("dense_1/bias:0", shape=(3,), dtype="f4",
                                                      external=[(secret, 0, 12)])
    cases.append(("external_storage.h5", external_storage,
                  ["dense_1/bias:0", "other files"]))

    def truncated(p):
        K.tf2_sequential(p)
        with open(p, "r+b") as fh:
            fh.truncate(3000)
    cases.append(("truncated.h5", truncated, ["truncated.h5"]))

    def zip_no_weights(p):
        with zipfile.ZipFile(p, "w") as z:
            z.writestr("config.json", "{}")
    cases.append(("no_weights.keras", zip_no_weights, ["no_weights.keras"]))

    def zip_bad_config(p):
        K.keras_zip(p)
        data = {}
        with zipfile.ZipFile(p) as z:
            for n in z.namelist():
                data[n] = z.read(n)
        data["config.json"] = b'{"class_name": "Sequential", "config": {"layers": [{"x": 1}]}}'
        with zipfile.ZipFile(p, "w") as z:
            for n, b in data.items():
                z.writestr(n, b)
    cases.append(("bad_config.keras", zip_bad_config, ["config.json", "layers[0]"]))

    def not_keras(p):
        with open(p, "w") as fh:
            fh.write("hello")
    cases.append(("text.h5", not_keras, ["text.h5"]))
    return cases


def test_hostile(tmp):
    for name, make, words in hostile_cases(tmp):
        p = os.path.join(tmp, name)
        make(p)
        r = run(p)
        ok = r.returncode == 1 and all(w in r.stderr for w in words) and name in r.stderr
        check(ok, "%s: exit %d, stderr %r (want the words %s)" % (name, r.returncode,
                                                                  r.stderr.strip(), words))


def main():
    if not os.path.exists(TOOL):
        print("keras_roundtrip not built at", TOOL)
        return 1
    with tempfile.TemporaryDirectory(prefix="ddts-keras-") as tmp:
        test_roundtrips(tmp)
        test_listings(tmp)
        test_training_info(tmp)
        test_write_new(tmp)
        test_spec(tmp)
        test_normalizer(tmp)
        test_ensemble(tmp)
        test_hostile(tmp)
    return 0 if check.finish("test_keras_files") else 1


if __name__ == "__main__":
    sys.exit(main())
