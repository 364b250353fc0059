"""Keras model files made with h5py, reproducing each Keras version's layout.

Used by test_keras_files.py (and to make the fuzz seed corpora). Each
function writes one file and returns nothing; the layouts follow the Keras
sources cited in docs/file-formats.md ("Keras"):

  tf.keras 2.x  tensorflow/python/keras/saving/hdf5_format.py (2.2.4-tf .. 2.15)
  Keras 2.2     keras/engine/saving.py (standalone Keras 2.2.x, h5py 2.x)
  Keras 3 h5    keras/src/legacy/saving/legacy_h5_format.py
  Keras 3 zip   keras/src/saving/saving_lib.py (H5IOStore, _save_container_state)
"""
import io
import json
import zipfile

import h5py
import numpy as np

HDF5_OBJECT_HEADER_LIMIT = 64512


def save_attributes(group, name, data):
    """tf.keras' save_attributes_to_hdf5_group: a list of bytes, split in chunks."""
    data_npy = np.asarray(data)
    num_chunks = 1
    chunked = np.array_split(data_npy, num_chunks)
    while any(x.nbytes > HDF5_OBJECT_HEADER_LIMIT for x in chunked):
        num_chunks += 1
        chunked = np.array_split(data_npy, num_chunks)
    if num_chunks > 1:
        for i, chunk in enumerate(chunked):
            group.attrs["%s%d" % (name, i)] = chunk
    else:
        group.attrs[name] = data


def rng_weights(seed, *shapes, dtype=np.float32):
    r = np.random.default_rng(seed)
    return [r.standard_normal(s).astype(dtype) for s in shapes]


def dense_cfg(name, units, activation="linear", use_bias=True, extra=None):
    c = {"name": name, "trainable": True, "dtype": "float32", "units": units,
         "activation": activation, "use_bias": use_bias,
         "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": None}},
         "bias_initializer": {"class_name": "Zeros", "config": {}}}
    if extra:
        c.update(extra)
    return {"class_name": "Dense", "config": c}


def write_legacy(path, layers, model_config, training_config=None, keras_version="2.15.0",
                 str_kind="tf2", optimizer=None, weight_suffix=":0"):
    """layers: list of (name, [(weight short name or full name, array), ...]).

    str_kind "tf2": root keras_version/backend as str (vlen UTF-8), configs as
    bytes (vlen ASCII); "fixed": every string np.bytes_ (fixed-length, as
    h5py 2.x wrote Python 2/3 bytes for Keras 2.2).
    """
    with h5py.File(path, "w") as f:
        def put(obj, key, value, json_bytes=False):
            if str_kind == "fixed":
                obj.attrs[key] = np.bytes_(value.encode("utf8"))
            elif json_bytes:
                obj.attrs[key] = value.encode("utf8")
            else:
                obj.attrs[key] = value
        put(f, "keras_version", keras_version)
        put(f, "backend", "tensorflow")
        put(f, "model_config", json.dumps(model_config), json_bytes=True)
        if training_config is not None:
            put(f, "training_config", json.dumps(training_config), json_bytes=True)
        mw = f.create_group("model_weights")
        save_attributes(mw, "layer_names", [n.encode("utf8") for n, _ in layers])
        if str_kind == "fixed":
            mw.attrs["backend"] = np.bytes_(b"tensorflow")
            mw.attrs["keras_version"] = np.bytes_(keras_version.encode())
        else:
            mw.attrs["backend"] = b"tensorflow"
            mw.attrs["keras_version"] = keras_version.encode()
        for name, weights in layers:
            g = mw.create_group(name)
            names = []
            for wname, _ in weights:
                full = wname if "/" in wname else "%s/%s%s" % (name, wname, weight_suffix)
                names.append(full.encode("utf8"))
            save_attributes(g, "weight_names", names)
            for wname, (_, val) in zip(names, weights):
                d = g.create_dataset(wname.decode(), val.shape, dtype=val.dtype)
                if not val.shape:
                    d[()] = val
                else:
                    d[:] = val
        if optimizer is not None:
            og = f.create_group("optimizer_weights")
            save_attributes(og, "weight_names", [n.encode() for n, _ in optimizer])
            for n, val in optimizer:
                d = og.create_dataset(n, val.shape, dtype=val.dtype)
                if not val.shape:
                    d[()] = val
                else:
                    d[:] = val


def tf2_sequential(path):
    k1, b1 = rng_weights(1, (4, 8), (8,))
    g, b, mm, mv = rng_weights(2, (8,), (8,), (8,), (8,))
    mv = np.abs(mv)
    k2, b2 = rng_weights(3, (8, 3), (3,))
    cfg = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32",
                                                "sparse": False, "ragged": False,
                                                "name": "dense_input"}},
        dense_cfg("dense", 8, "relu", extra={"batch_input_shape": [None, 4]}),
        {"class_name": "Dropout", "config": {"name": "dropout", "trainable": True,
                                             "dtype": "float32", "rate": 0.5}},
        {"class_name": "BatchNormalization", "config": {"name": "batch_normalization",
                                                        "axis": [1], "momentum": 0.99,
                                                        "epsilon": 0.001, "center": True,
                                                        "scale": True}},
        dense_cfg("dense_1", 3, "softmax")]}, "keras_version": "2.15.0", "backend": "tensorflow"}
    tc = {"loss": "categorical_crossentropy", "metrics": [[{"class_name": "MeanMetricWrapper",
          "config": {"name": "accuracy", "dtype": "float32", "fn": "categorical_accuracy"}}]],
          "weighted_metrics": None, "loss_weights": None,
          "optimizer_config": {"class_name": "Custom>Adam", "config": {
              "name": "Adam", "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
              "epsilon": 1e-07, "amsgrad": False, "is_legacy_optimizer": False}}}
    layers = [("dense", [("kernel", k1), ("bias", b1)]), ("dropout", []),
              ("batch_normalization", [("gamma", g), ("beta", b), ("moving_mean", mm),
                                       ("moving_variance", mv)]),
              ("dense_1", [("kernel", k2), ("bias", b2)])]
    opt = [("Adam/iter:0", np.array(7, dtype=np.int64))]
    for lname, ws in layers:
        for wn, v in ws:
            if wn in ("kernel", "bias", "gamma", "beta"):
                opt.append(("Adam/%s/%s/m:0" % (lname, wn), (v * 0.1).astype(np.float32)))
    write_legacy(path, layers, cfg, tc, optimizer=opt)


def keras22_sequential(path):
    """Keras 2.2.0-2.2.2: Sequential config is a bare list; h5py 2 fixed strings; lr."""
    k1, b1 = rng_weights(4, (5, 6), (6,))
    k2, b2 = rng_weights(5, (6, 2), (2,))
    cfg = {"class_name": "Sequential", "config": [
        dense_cfg("dense_1", 6, "tanh", extra={"batch_input_shape": [None, 5]}),
        {"class_name": "Activation", "config": {"name": "activation_1", "trainable": True,
                                                "activation": "relu"}},
        dense_cfg("dense_2", 2, "sigmoid")]}
    tc = {"optimizer_config": {"class_name": "SGD", "config": {
        "lr": 0.009999999776482582, "momentum": 0.0, "decay": 0.0, "nesterov": False}},
        "loss": "binary_crossentropy", "metrics": ["accuracy"], "sample_weight_mode": None,
        "loss_weights": None}
    layers = [("dense_1", [("kernel", k1), ("bias", b1)]), ("activation_1", []),
              ("dense_2", [("kernel", k2), ("bias", b2)])]
    opt = [("training/SGD/Variable:0", np.zeros((5, 6), np.float32)),
           ("training/SGD/Variable_1:0", np.zeros((6,), np.float32))]
    write_legacy(path, layers, cfg, tc, keras_version="2.2.2", str_kind="fixed", optimizer=opt)


def keras3_functional_h5(path):
    """Keras 3 legacy h5: batch_shape, DTypePolicy, __keras_tensor__ nodes, names without :0."""
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
              "registered_name": None}

    def kt(layer):
        return {"args": [{"class_name": "__keras_tensor__", "config": {
            "shape": [None, 4], "dtype": "float32", "keras_history": [layer, 0, 0]}}],
            "kwargs": {}}
    k1, b1 = rng_weights(6, (4, 4), (4,))
    k2 = rng_weights(7, (4, 1))[0]
    cfg = {"module": "keras.src.models.functional", "class_name": "Functional", "config": {
        "name": "functional", "trainable": True, "layers": [
            {"module": "keras.layers", "class_name": "InputLayer", "config": {
                "batch_shape": [None, 4], "dtype": "float32", "sparse": False,
                "name": "input_layer"}, "registered_name": None, "name": "input_layer",
             "inbound_nodes": []},
            {"module": "keras.layers", "class_name": "Dense", "config": {
                "name": "dense", "trainable": True, "dtype": policy, "units": 4,
                "activation": "relu", "use_bias": True}, "registered_name": None,
             "build_config": {"input_shape": [None, 4]}, "name": "dense",
             "inbound_nodes": [kt("input_layer")]},
            {"module": "keras.layers", "class_name": "Dense", "config": {
                "name": "dense_1", "trainable": True, "dtype": policy, "units": 1,
                "activation": "linear", "use_bias": False}, "registered_name": None,
             "name": "dense_1", "inbound_nodes": [kt("dense")]}],
        "input_layers": [["input_layer", 0, 0]], "output_layers": [["dense_1", 0, 0]]},
        "registered_name": "Functional"}
    tc = {"loss": "mean_squared_error", "loss_weights": None, "metrics": None,
          "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1,
          "jit_compile": False, "optimizer_config": {"class_name": "RMSprop", "config": {
              "name": "rmsprop", "learning_rate": 0.001, "rho": 0.9}}}
    layers = [("input_layer", []), ("dense", [("dense/kernel", k1), ("dense/bias", b1)]),
              ("dense_1", [("dense_1/kernel", k2)])]
    write_legacy(path, layers, cfg, tc, keras_version="3.3.3")
    with h5py.File(path, "a") as f:
        g = f["model_weights"].create_group("top_level_model_weights")
        g.attrs["weight_names"] = np.asarray([])


def split_layer_names(path):
    """So many long layer names that layer_names is split into layer_names0..N."""
    names = ["activation_%03d_%s" % (i, "x" * 230) for i in range(300)]
    layers_cfg = [dense_cfg("dense", 3, extra={"batch_input_shape": [None, 2]})]
    layers_cfg += [{"class_name": "Activation", "config": {"name": n, "activation": "relu"}}
                   for n in names]
    cfg = {"class_name": "Sequential", "config": {"name": "sequential", "layers": layers_cfg}}
    k, b = rng_weights(8, (2, 3), (3,))
    layers = [("dense", [("kernel", k), ("bias", b)])] + [(n, []) for n in names]
    write_legacy(path, layers, cfg)
    with h5py.File(path, "r") as f:
        assert "layer_names" not in f["model_weights"].attrs
        assert "layer_names1" in f["model_weights"].attrs


def nested_h5(path):
    """tf.keras 2.x functional model holding a Sequential: the inner model's
    weights all live in one group, named by the inner layers."""
    k1, b1 = rng_weights(9, (3, 5), (5,))
    k2, b2 = rng_weights(10, (5, 5), (5,))
    k3, b3 = rng_weights(11, (5, 1), (1,))
    inner = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3],
                                                "dtype": "float32", "name": "dense_input"}},
        dense_cfg("dense", 5, "relu"), dense_cfg("dense_1", 5, "relu")]},
        "name": "sequential", "inbound_nodes": [[["input_1", 0, 0, {}]]]}
    cfg = {"class_name": "Functional", "config": {"name": "model", "layers": [
        {"class_name": "InputLayer", "config": {"batch_input_shape": [None, 3],
                                                "dtype": "float32", "name": "input_1"},
         "name": "input_1", "inbound_nodes": []},
        inner,
        dict(dense_cfg("dense_2", 1), name="dense_2",
             inbound_nodes=[[["sequential", 1, 0, {}]]])],
        "input_layers": [["input_1", 0, 0]], "output_layers": [["dense_2", 0, 0]]}}
    layers = [("input_1", []),
              ("sequential", [("dense/kernel:0", k1), ("dense/bias:0", b1),
                              ("dense_1/kernel:0", k2), ("dense_1/bias:0", b2)]),
              ("dense_2", [("kernel", k3), ("bias", b3)])]
    write_legacy(path, layers, cfg)


def keras_zip(path, nested=False, container="layers", version="3.3.3"):
    """Keras 3 .keras: config.json, metadata.json, model.weights.h5.

    container="_layer_checkpoint_dependencies", version="2.13.1": the .keras
    files of tf.keras 2.13-2.15, which Keras 3 reads through a compatibility
    branch of H5Entry."""
    policy = {"module": "keras", "class_name": "DTypePolicy", "config": {"name": "float32"},
              "registered_name": None}

    def layer(cls, name, **kw):
        c = {"name": name, "trainable": True, "dtype": policy}
        c.update(kw)
        return {"module": "keras.layers", "class_name": cls, "config": c,
                "registered_name": None}
    seq_layers = [
        {"module": "keras.layers", "class_name": "InputLayer", "config": {
            "batch_shape": [None, 6], "dtype": "float32", "sparse": False, "name": "input_layer"},
         "registered_name": None},
        layer("Dense", "dense", units=4, activation="relu", use_bias=True),
        layer("BatchNormalization", "batch_normalization", center=True, scale=False),
        layer("Dense", "dense_1", units=4, activation="relu", use_bias=False),
        layer("Dropout", "dropout", rate=0.1),
        layer("Dense", "dense_2", units=2, activation="softmax")]
    k0, b0 = rng_weights(12, (6, 4), (4,))
    beta, mm, mv = rng_weights(13, (4,), (4,), (4,))
    k1 = rng_weights(14, (4, 4))[0]
    k2, b2 = rng_weights(15, (4, 2), (2,))
    groups = {"dense": [k0, b0], "batch_normalization": [beta, mm, np.abs(mv)],
              "dense_1": [k1], "dense_2": [k2, b2], "input_layer": None, "dropout": []}
    seq = {"module": "keras", "class_name": "Sequential", "config": {
        "name": "sequential", "trainable": True, "dtype": policy, "layers": seq_layers},
        "registered_name": None, "build_config": {"input_shape": [None, 6]},
        "compile_config": {"optimizer": {"module": "keras.optimizers", "class_name": "Adam",
                                         "config": {"name": "adam", "learning_rate": 0.001}},
                           "loss": "categorical_crossentropy", "metrics": ["accuracy"]}}
    if nested:
        k3, b3 = rng_weights(16, (2, 1), (1,))
        inner = dict(seq)
        inner = {"module": "keras", "class_name": "Sequential", "config": seq["config"],
                 "registered_name": None, "name": "sequential",
                 "inbound_nodes": [{"args": [{"class_name": "__keras_tensor__", "config": {
                     "shape": [None, 6], "dtype": "float32",
                     "keras_history": ["input_layer_1", 0, 0]}}], "kwargs": {}}]}
        config = {"module": "keras.src.models.functional", "class_name": "Functional",
                  "config": {"name": "functional", "trainable": True, "layers": [
                      {"module": "keras.layers", "class_name": "InputLayer", "config": {
                          "batch_shape": [None, 6], "dtype": "float32",
                          "name": "input_layer_1"}, "registered_name": None,
                       "name": "input_layer_1", "inbound_nodes": []},
                      inner,
                      dict(layer("Dense", "dense_3", units=1), name="dense_3",
                           inbound_nodes=[])],
                      "input_layers": [["input_layer_1", 0, 0]],
                      "output_layers": [["dense_3", 0, 0]]},
                  "registered_name": "Functional"}
    else:
        config = seq
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f.create_group("vars")

        def put_layers(root, grps):
            for gname, ws in grps.items():
                if ws is None:
                    continue
                v = root.create_group(gname).create_group("vars")
                for i, w in enumerate(ws):
                    v.create_dataset(str(i), data=w)
        if nested:
            put_layers(f.create_group(container), {"input_layer": []})
            s = f[container].create_group("sequential")
            s.create_group("vars")
            put_layers(s.create_group(container), groups)
            put_layers(f[container], {"dense": [k3, b3]})
        else:
            put_layers(f.create_group(container), groups)
        ov = f.create_group("optimizer").create_group("vars")
        ov.create_dataset("0", data=np.array(3, dtype=np.int64))
        ov.create_dataset("1", data=np.array(0.001, dtype=np.float32))
        ov.create_dataset("2", data=np.zeros((6, 4), np.float32))
    meta = {"keras_version": version, "date_saved": "2024-05-01@12:00:00"}
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr(zipfile.ZipInfo("config.json", (2024, 5, 1, 12, 0, 0)), json.dumps(config),
                   compress_type=zipfile.ZIP_DEFLATED)
        z.writestr("model.weights.h5", buf.getvalue())


LAYOUTS = {
    "tf2_sequential.h5": tf2_sequential,
    "keras22_sequential.h5": keras22_sequential,
    "keras3_functional.h5": keras3_functional_h5,
    "split_layer_names.h5": split_layer_names,
    "nested.h5": nested_h5,
    "sequential.keras": keras_zip,
    "nested.keras": lambda p: keras_zip(p, nested=True),
    "tf213_nested.keras": lambda p: keras_zip(p, nested=True,
                                              container="_layer_checkpoint_dependencies",
                                              version="2.13.1"),
}
