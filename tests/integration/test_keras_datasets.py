#!/usr/bin/python3
"""Keras datasets by name as Keras loads them (issue 15): imdb, reuters,
boston_housing, cifar10 and cifar100, from files written here by Debian's
numpy and pickle (the real writers) into a temporary KERAS_HOME, shaped like
Keras' own files but small. `ddts convert keras:NAME` is compared with a
transcription of Keras' load_data (numpy's RandomState(113) shuffle,
start/OOV/index_from, num_words, skip_top, maxlen) and of pad_sequences.
Also: CIFAR from the .tar.gz Keras downloads, a Python 2 style pickle (what
the real CIFAR files are), and hostile pickles (a global that is not allowed,
truncation) refused with a message. Never the network: DDTS_OFFLINE=1.
"""
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import zipfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import Checks  # noqa: E402

DDTS = os.path.abspath(os.environ.get("DDTS", "build/ddts"))
WORK = tempfile.mkdtemp(prefix="ddts-test_keras_datasets-")
check = Checks()


def run(home, *args):
    env = dict(os.environ, KERAS_HOME=home, DDTS_OFFLINE="1", HOME=os.path.join(WORK, "nohome"))
    p = subprocess.run([DDTS, *args], capture_output=True, text=True, timeout=120, env=env,
                       cwd=WORK)
    return p.returncode, p.stdout + p.stderr


def home(name):
    d = os.path.join(WORK, name)
    os.makedirs(os.path.join(d, "datasets"), exist_ok=True)
    return d


def got(h, ds, key, *opts):
    out = os.path.join(WORK, "out.npy")
    if os.path.exists(out):
        os.remove(out)
    rc, msg = run(h, "convert", *opts, "keras:" + ds, out, "--key", key, "--dtype", "keep")
    return (np.load(out) if rc == 0 else None), msg


# ---- Keras' load_data, transcribed (keras/src/datasets/imdb.py, reuters.py) ----
def remove_long_seq(maxlen, seq, label):
    new_seq, new_label = [], []
    for x, y in zip(seq, label):
        if len(x) < maxlen:
            new_seq.append(x)
            new_label.append(y)
    return new_seq, new_label


def pad_sequences(seqs, maxlen):
    """keras.utils.pad_sequences(dtype='int32', padding='pre', truncating='pre', value=0)."""
    if maxlen is None:
        maxlen = max(len(s) for s in seqs)
    out = np.zeros((len(seqs), maxlen), dtype=np.int32)
    for i, s in enumerate(seqs):
        s = s[-maxlen:]
        if len(s):
            out[i, -len(s):] = s
    return out


def keras_imdb(path, num_words=None, skip_top=0, maxlen=None, seed=113, start_char=1,
               oov_char=2, index_from=3):
    with np.load(path, allow_pickle=True) as f:
        x_train, labels_train = f["x_train"], f["y_train"]
        x_test, labels_test = f["x_test"], f["y_test"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(x_train))
    rng.shuffle(indices)
    x_train = x_train[indices]
    labels_train = labels_train[indices]
    indices = np.arange(len(x_test))
    rng.shuffle(indices)
    x_test = x_test[indices]
    labels_test = labels_test[indices]
    x_train = [[start_char] + [w + index_from for w in x] for x in x_train]
    x_test = [[start_char] + [w + index_from for w in x] for x in x_test]
    if maxlen:
        x_train, labels_train = remove_long_seq(maxlen, x_train, labels_train)
        x_test, labels_test = remove_long_seq(maxlen, x_test, labels_test)
    xs = x_train + x_test
    labels = np.concatenate([labels_train, labels_test])
    if not num_words:
        num_words = max(max(x) for x in xs)
    xs = [[w if (skip_top <= w < num_words) else oov_char for w in x] for x in xs]
    idx = len(x_train)
    longest = max(len(x) for x in xs)
    pad = maxlen or longest
    return (pad_sequences(xs[:idx], pad), labels[:idx]), (pad_sequences(xs[idx:], pad),
                                                          labels[idx:])


def keras_reuters(path, num_words=None, skip_top=0, maxlen=None, test_split=0.2, seed=113,
                  start_char=1, oov_char=2, index_from=3):
    with np.load(path, allow_pickle=True) as f:
        xs, labels = f["x"], f["y"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(xs))
    rng.shuffle(indices)
    xs = xs[indices]
    labels = labels[indices]
    xs = [[start_char] + [w + index_from for w in x] for x in xs]
    if maxlen:
        xs, labels = remove_long_seq(maxlen, xs, labels)
    if not num_words:
        num_words = max(max(x) for x in xs)
    xs = [[w if skip_top <= w < num_words else oov_char for w in x] for x in xs]
    idx = int(len(xs) * (1 - test_split))
    pad = maxlen or max(len(x) for x in xs)
    return (pad_sequences(xs[:idx], pad), np.array(labels[:idx])), (
        pad_sequences(xs[idx:], pad), np.array(labels[idx:]))


def keras_boston(path, test_split=0.2, seed=113):
    with np.load(path, allow_pickle=True) as f:
        x = f["x"]
        y = f["y"]
    rng = np.random.RandomState(seed)
    indices = np.arange(len(x))
    rng.shuffle(indices)
    x = x[indices]
    y = y[indices]
    cut = int(len(x) * (1 - test_split))
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def seqs(rng, n, top, longest):
    a = np.empty(n, dtype=object)
    for i in range(n):
        a[i] = [int(v) for v in rng.randint(0, top, size=rng.randint(1, longest))]
    return a


def compare(h, ds, ref, opts=(), what=""):
    (xtr, ytr), (xte, yte) = ref
    for key, want in (("x_train", xtr), ("y_train", ytr), ("x_test", xte), ("y_test", yte)):
        a, msg = got(h, ds, key, *opts)
        ok = a is not None and a.shape == want.shape and a.dtype == want.dtype and \
            np.array_equal(a, want)
        check(ok, "%s %s %s: ddts %s, Keras %s %s %s" % (
            ds, " ".join(opts), key, None if a is None else (a.shape, a.dtype), want.shape,
            want.dtype, msg.strip()[:300]))


rng = np.random.RandomState(5)

# ---- imdb ----
h = home("imdb")
p = os.path.join(h, "datasets", "imdb.npz")
np.savez(p, x_train=seqs(rng, 60, 300, 40), y_train=rng.randint(0, 2, 60),
         x_test=seqs(rng, 45, 300, 40), y_test=rng.randint(0, 2, 45))
compare(h, "imdb", keras_imdb(p))
compare(h, "imdb", keras_imdb(p, num_words=100, skip_top=4, maxlen=25),
        ("--num-words", "100", "--skip-top", "4", "--maxlen", "25"))
compare(h, "imdb", keras_imdb(p, maxlen=10), ("--maxlen", "10"))
rc, msg = run(h, "convert", "--maxlen", "1", "keras:imdb", os.path.join(WORK, "o.npy"))
check(rc == 1 and "no sequence is shorter than --maxlen 1" in msg, "imdb maxlen 1: " + msg)

# ---- reuters ----
h = home("reuters")
p = os.path.join(h, "datasets", "reuters.npz")
np.savez(p, x=seqs(rng, 90, 500, 60), y=rng.randint(0, 46, 90))
compare(h, "reuters", keras_reuters(p))
compare(h, "reuters", keras_reuters(p, num_words=200, maxlen=30),
        ("--num-words", "200", "--maxlen", "30"))

# ---- boston_housing ----
h = home("boston")
p = os.path.join(h, "datasets", "boston_housing.npz")
np.savez(p, x=rng.rand(41, 13) * 100, y=rng.rand(41) * 50)
compare(h, "boston_housing", keras_boston(p))


# ---- cifar10 / cifar100: protocol 2 pickles with bytes keys, as Keras downloads them ----
def keras_cifar(batches, label_key, label_dtype):
    xs, ys = [], []
    for d in batches:
        xs.append(d[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        ys.append(np.array(d[label_key], dtype=label_dtype).reshape(-1, 1))
    return np.concatenate(xs), np.concatenate(ys)


def batch(n, keys):
    d = {b"batch_label": b"training batch", b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
         b"filenames": [b"f%d.png" % i for i in range(n)]}
    for k, top in keys:
        d[k] = [int(v) for v in rng.randint(0, top, n)]
    return d


c10 = {"data_batch_%d" % i: batch(7 + i, [(b"labels", 10)]) for i in range(1, 6)}
c10["test_batch"] = batch(9, [(b"labels", 10)])
h = home("cifar10")
os.makedirs(os.path.join(h, "datasets", "cifar-10-batches-py"))
for name, d in c10.items():
    with open(os.path.join(h, "datasets", "cifar-10-batches-py", name), "wb") as f:
        pickle.dump(d, f, protocol=2)
xtr, ytr = keras_cifar([c10["data_batch_%d" % i] for i in range(1, 6)], b"labels", np.uint8)
xte, yte = keras_cifar([c10["test_batch"]], b"labels", np.uint8)
compare(h, "cifar10", ((xtr, ytr), (xte, yte)))

# The same from the .tar.gz (Keras' cifar-10-python.tar.gz layout).
h2 = home("cifar10tar")
with tarfile.open(os.path.join(h2, "datasets", "cifar-10-python.tar.gz"), "w:gz") as t:
    for name, d in c10.items():
        b = pickle.dumps(d, protocol=2)
        ti = tarfile.TarInfo("cifar-10-batches-py/" + name)
        ti.size = len(b)
        t.addfile(ti, io.BytesIO(b))
compare(h2, "cifar10", ((xtr, ytr), (xte, yte)), what="tar")

c100 = {"train": batch(23, [(b"fine_labels", 100), (b"coarse_labels", 20)]),
        "test": batch(11, [(b"fine_labels", 100), (b"coarse_labels", 20)])}
h = home("cifar100")
os.makedirs(os.path.join(h, "datasets", "cifar-100-python"))
for name, d in c100.items():
    with open(os.path.join(h, "datasets", "cifar-100-python", name), "wb") as f:
        pickle.dump(d, f, protocol=2)
for mode in ("fine", "coarse"):
    key = (mode + "_labels").encode()
    ref = (keras_cifar([c100["train"]], key, np.int64), keras_cifar([c100["test"]], key, np.int64))
    compare(h, "cifar100", ref, () if mode == "fine" else ("--label-mode", "coarse"))


# ---- a Python 2 cPickle (protocol 2, str as SHORT_BINSTRING/BINSTRING): the real CIFAR files ----
def py2_str(b):
    return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else (b"T" + struct.pack("<I", len(b)) + b)


def py2_batch(data, labels):
    n = data.shape[0]
    out = b"\x80\x02}q\x00(" + py2_str(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85U\x01b\x87R"
    out += b"(K\x01M" + struct.pack("<H", n) + b"M\x00\x0c\x86cnumpy\ndtype\nU\x02u1K\x00K\x01\x87R"
    out += b"(K\x03U\x01|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb\x89" + py2_str(data.tobytes())
    out += b"tb" + py2_str(b"labels") + b"]("
    out += b"".join(b"K" + bytes([v]) for v in labels) + b"eu."
    return out


data = rng.randint(0, 256, (4, 3072)).astype(np.uint8)
labels = [3, 1, 4, 1]
raw = py2_batch(data, labels)
ref = pickle.loads(raw, encoding="bytes")  # Python's own reader, as Keras calls it
check(np.array_equal(ref[b"data"], data) and ref[b"labels"] == labels, "py2 pickle writer")
h = home("cifar10py2")
d = os.path.join(h, "datasets", "cifar-10-batches-py")
os.makedirs(d)
for i in range(1, 6):
    with open(os.path.join(d, "data_batch_%d" % i), "wb") as f:
        f.write(raw)
with open(os.path.join(d, "test_batch"), "wb") as f:
    f.write(raw)
a, msg = got(h, "cifar10", "x_test")
check(a is not None and np.array_equal(a, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)),
      "py2 cifar x_test: " + msg)
a, msg = got(h, "cifar10", "y_train")
check(a is not None and a.shape == (20, 1) and list(a[:4, 0]) == labels, "py2 cifar y: " + msg)


# ---- hostile pickles ----
class Evil:
    def __reduce__(self):
        return (os.system, ("echo PWNED > " + os.path.join(WORK, "pwned"),))


def npz_with_object_pickle(path, payload):
    hdr = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }"
    hdr += " " * (63 - (len(hdr) + 10) % 64) + "\n"
    npy = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + payload
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x_train.npy", npy)
        z.writestr("y_train.npy", npy)
        z.writestr("x_test.npy", npy)
        z.writestr("y_test.npy", npy)


h = home("evil")
npz_with_object_pickle(os.path.join(h, "datasets", "imdb.npz"), pickle.dumps(Evil(), protocol=3))
rc, msg = run(h, "convert", "keras:imdb", os.path.join(WORK, "o.npy"))
check(rc == 1 and "global 'posix.system' is not allowed" in msg, "os.system refused: " + msg)
check(not os.path.exists(os.path.join(WORK, "pwned")), "the pickle ran a command")
good = io.BytesIO()
np.save(good, seqs(rng, 3, 10, 5), allow_pickle=True)
body = good.getvalue()
body = body[body.index(b"\n") + 1:]
for cut in (1, 10, len(body) // 2, len(body) - 1):
    npz_with_object_pickle(os.path.join(h, "datasets", "imdb.npz"), body[:cut])
    rc, msg = run(h, "convert", "keras:imdb", os.path.join(WORK, "o.npy"))
    check(rc == 1 and "pickle byte" in msg, "truncated at %d: %s" % (cut, msg))

# Downloads: from Keras' address (a loopback origin here), checked against
# Keras' SHA-256; the synthetic files do not match and are discarded.
import functools  # noqa: E402
import http.server  # noqa: E402
import threading  # noqa: E402

served = os.path.join(WORK, "origin")
os.makedirs(served)
shutil.copy(os.path.join(WORK, "imdb", "datasets", "imdb.npz"), served)
shutil.copy(os.path.join(WORK, "cifar10tar", "datasets", "cifar-10-python.tar.gz"), served)


class Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                         functools.partial(Quiet, directory=served))
threading.Thread(target=server.serve_forever, daemon=True).start()
try:
    for ds, sha in (("imdb", "69664113be75683a8fe16e3ed0ab59fda8886cb3cd7ada244f7d9544e4676b9f"),
                    ("cifar10", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")):
        h = home("dl_" + ds)
        env = dict(os.environ, KERAS_HOME=h, HOME=os.path.join(WORK, "nohome"),
                   DDTS_KERAS_ORIGIN="http://127.0.0.1:%d/" % server.server_address[1])
        env.pop("DDTS_OFFLINE", None)
        p = subprocess.run([DDTS, "convert", "keras:" + ds, os.path.join(WORK, "o.npy")],
                           capture_output=True, text=True, timeout=120, env=env)
        msg = p.stdout + p.stderr
        check(p.returncode == 1 and "not downloaded" in msg and sha in msg,
              "%s download checked against Keras' SHA-256: %s" % (ds, msg))
        check(os.listdir(os.path.join(h, "datasets")) == [], "%s: left behind %s"
              % (ds, os.listdir(os.path.join(h, "datasets"))))
finally:
    server.shutdown()

# A flipped bit inside the pickle of a stored npz member: the zip CRC says so.
h = home("crc")
p = os.path.join(h, "datasets", "imdb.npz")
shutil.copy(os.path.join(WORK, "imdb", "datasets", "imdb.npz"), p)
b = bytearray(open(p, "rb").read())
b[b.index(b"\x80\x03") + 40] ^= 1
open(p, "wb").write(bytes(b))
rc, msg = run(h, "convert", "keras:imdb", os.path.join(WORK, "o.npy"))
check(rc == 1 and "x_train.npy' is corrupt: CRC error" in msg, "CRC: " + msg)

# Not found: names every place searched.
rc, msg = run(home("empty"), "convert", "keras:reuters", os.path.join(WORK, "o.npy"))
check(rc == 1 and "reuters" in msg and "empty/datasets" in msg, "not found: " + msg)

sys.exit(0 if check.finish("test_keras_datasets", WORK) else 1)
